/*
 * test_client.c — the Kafka client library (src/client/kclient.*, khist.*): address parsing,
 * the latency histogram (bucket bounds, quantile error <= 1/64, merge), the batch builder and
 * fetch iterator round trip for every compression (with record headers), and the connection
 * against a real broker (`ailurus start` from the same build, or $AILURUS_BIN, as a subprocess
 * on 127.0.0.1, port 0): handshake versions, CreateTopics, Produce with acks=1 and acks=0,
 * Fetch back and compare, pipelined async requests answered in order, Metadata leader and
 * FindCoordinator, a host name ("localhost") resolved by the sync API, responses kept in a
 * caller arena across later calls, the version cap, headers through the broker, a refused
 * connection (numeric and by name), and a request timeout against a silent listener.
 */
#include "test.h"

#include "broker_calls.h"
#include "broker_proc.h"

#include "client/khist.h"
#include "client/kclient.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- pure parts ---- */

TEST(parse_addr)
{
    char h[64];
    uint16_t p;
    CHECK_EQ(kclient_parse_addr("127.0.0.1:9092", h, sizeof(h), &p), 0);
    CHECK(!strcmp(h, "127.0.0.1"));
    CHECK_EQ(p, 9092);
    CHECK_EQ(kclient_parse_addr("[::1]:19092", h, sizeof(h), &p), 0);
    CHECK(!strcmp(h, "::1"));
    CHECK_EQ(p, 19092);
    CHECK_EQ(kclient_parse_addr("127.0.0.1", h, sizeof(h), &p), AL_EINVAL);
    CHECK_EQ(kclient_parse_addr("127.0.0.1:0", h, sizeof(h), &p), AL_EINVAL);
    CHECK_EQ(kclient_parse_addr("127.0.0.1:70000", h, sizeof(h), &p), AL_EINVAL);
    CHECK_EQ(kclient_parse_addr(":80", h, sizeof(h), &p), AL_EINVAL);
    CHECK_EQ(kclient_compression_parse("zstd"), STORAGE_COMP_ZSTD);
    CHECK_EQ(kclient_compression_parse("none"), STORAGE_COMP_NONE);
    CHECK_EQ(kclient_compression_parse("brotli"), AL_EINVAL);
}

/* Builds n records with compressible values; keys on even records. */
static void make_records(kclient_record *r, int n, char (*vals)[200], char (*keys)[16])
{
    for (int i = 0; i < n; i++) {
        snprintf(keys[i], 16, "k%d", i);
        memset(vals[i], 'a' + i % 26, 200);
        snprintf(vals[i], 200, "value-%d-", i);
        r[i] = (kclient_record){0};
        r[i].key = i % 2 ? NULL : keys[i];
        r[i].key_len = i % 2 ? -1 : (int32_t)strlen(keys[i]);
        r[i].value = vals[i];
        r[i].value_len = 100 + i % 100;
        r[i].timestamp = 1700000000000 + i;
    }
}

static void check_records(const void *buf, size_t len, const kclient_record *r, int n,
                          int64_t base)
{
    kclient_fetch_iter it;
    kclient_fetch_iter_init(&it, buf, len);
    kclient_fetched f;
    int got = 0, rc;
    while ((rc = kclient_fetch_iter_next(&it, &f)) == 1) {
        CHECK(got < n);
        CHECK_EQ(f.offset, base + got);
        CHECK_EQ(f.timestamp, r[got].timestamp);
        CHECK_EQ(f.value_len, r[got].value_len);
        CHECK_MEM(f.value, r[got].value, (size_t)f.value_len);
        CHECK_EQ(f.key_len, r[got].key_len);
        if (f.key_len > 0) CHECK_MEM(f.key, r[got].key, (size_t)f.key_len);
        got++;
    }
    kclient_fetch_iter_free(&it);
    CHECK_EQ(rc, 0);
    CHECK_EQ(got, n);
}

TEST(batch_roundtrip_all_codecs)
{
    enum { N = 50 };
    kclient_record r[N];
    static char vals[N][200], keys[N][16];
    make_records(r, N, vals, keys);
    size_t bound = kclient_batch_bound(r, N);
    uint8_t *buf = malloc(bound * 2);
    for (int codec = 0; codec <= STORAGE_COMP_ZSTD; codec++) {
        int64_t sz = kclient_batch_build(buf, bound, r, N, codec);
        CHECK(sz > 0);
        CHECK((size_t)sz <= bound);
        storage_batch_hdr h;
        CHECK_EQ(storage_batch_validate(buf, (size_t)sz, 0, &h), sz);
        CHECK_EQ(storage_batch_compression(&h), codec); /* compressible: every codec pays */
        if (codec) CHECK((size_t)sz < bound / 2);
        CHECK_EQ(h.records_count, N);
        /* Two batches back to back plus a cut-off third: the iterator stops at the cut. */
        memcpy(buf + sz, buf, (size_t)sz);
        storage_batch_stamp(buf + sz, N, -1);
        check_records(buf, (size_t)sz, r, N, 0);
        kclient_fetch_iter it;
        kclient_fetch_iter_init(&it, buf, (size_t)sz * 2 - 7);
        kclient_fetched f;
        int cnt = 0;
        while (kclient_fetch_iter_next(&it, &f) == 1) cnt++;
        kclient_fetch_iter_free(&it);
        CHECK_EQ(cnt, N);
        /* A flipped byte is caught by the CRC. */
        buf[sz / 2] ^= 0x40;
        kclient_fetch_iter_init(&it, buf, (size_t)sz);
        CHECK_EQ(kclient_fetch_iter_next(&it, &f), AL_ECORRUPT);
        kclient_fetch_iter_free(&it);
    }
    CHECK_EQ(kclient_batch_build(buf, 10, r, N, 0), AL_ETOOLARGE);
    free(buf);
}

/* Checks that f carries exactly the n headers of want (in order). */
static void check_headers(const kclient_fetched *f, const kclient_header *want, int n)
{
    kclient_header_iter hi;
    kclient_header_iter_init(&hi, f);
    kclient_header h;
    int got = 0, rc;
    while ((rc = kclient_header_iter_next(&hi, &h)) == 1) {
        CHECK(got < n);
        if (got >= n) break;
        CHECK_EQ(h.key_len, want[got].key_len);
        CHECK_MEM(h.key, want[got].key, (size_t)h.key_len);
        CHECK_EQ(h.value_len, want[got].value ? want[got].value_len : -1);
        CHECK_EQ(h.value == NULL, want[got].value == NULL);
        if (h.value_len > 0) CHECK_MEM(h.value, want[got].value, (size_t)h.value_len);
        got++;
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(got, n);
    CHECK_EQ(f->header_count, n);
}

/* Record i of make_records gets i % 4 headers out of hdrs (record 0 none). */
static const kclient_header hdrs[3] = {
    {"trace", 5, "abc-123", 7},
    {"empty", 5, "", 0},
    {"nullv", 5, NULL, -1},
};

static void add_headers(kclient_record *r, int n)
{
    for (int i = 0; i < n; i++) {
        r[i].headers = i % 4 ? hdrs : NULL;
        r[i].header_count = i % 4;
    }
}

TEST(headers_roundtrip_all_codecs)
{
    enum { N = 30 };
    kclient_record r[N];
    static char vals[N][200], keys[N][16];
    make_records(r, N, vals, keys);
    add_headers(r, N);
    size_t bound = kclient_batch_bound(r, N);
    size_t bare = bound;
    for (int i = 0; i < N; i++) bare -= (size_t)(r[i].header_count ? 5 : 0);
    uint8_t *buf = malloc(bound);
    for (int codec = 0; codec <= STORAGE_COMP_ZSTD; codec++) {
        int64_t sz = kclient_batch_build(buf, bound, r, N, codec);
        CHECK(sz > 0);
        check_records(buf, (size_t)sz, r, N, 0);
        kclient_fetch_iter it;
        kclient_fetch_iter_init(&it, buf, (size_t)sz);
        kclient_fetched f;
        int i = 0;
        while (kclient_fetch_iter_next(&it, &f) == 1 && i < N) {
            check_headers(&f, hdrs, r[i].header_count);
            i++;
        }
        CHECK_EQ(i, N);
        CHECK_EQ(it.next_offset, N); /* one past the batch's last offset */
        kclient_fetch_iter_free(&it);
    }
    CHECK(bare < bound);
    /* A header block that claims more entries than it holds is malformed, not read past. */
    static const uint8_t bad[] = {0x04 /* 2 headers */, 0x02, 'a', 0x02, 'b'};
    kclient_fetched f = {.headers = bad, .headers_size = sizeof(bad), .header_count = 2};
    kclient_header_iter hi;
    kclient_header_iter_init(&hi, &f);
    kclient_header h;
    CHECK_EQ(kclient_header_iter_next(&hi, &h), 1);
    CHECK_EQ(h.key_len, 1);
    CHECK_EQ(kclient_header_iter_next(&hi, &h), AL_EMALFORMED);
    free(buf);
}

/* ---- latency histogram ---- */

TEST(khist_buckets_and_quantiles)
{
    uint64_t seed = test_seed();
    /* Every value falls in its bucket, and a bucket is at most 1/64 of its low edge wide. */
    for (int i = 0; i < 200000; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t v = seed >> (seed % 64);
        int b = khist_index(v);
        CHECK(b >= 0 && b < KHIST_BUCKETS);
        CHECK(khist_bucket_low(b) <= v);
        if (b + 1 < KHIST_BUCKETS) {
            uint64_t hi = khist_bucket_low(b + 1);
            CHECK(v < hi);
            if (v >= KHIST_SUB) CHECK((hi - khist_bucket_low(b)) * 64 <= khist_bucket_low(b));
        }
    }
    static khist h, a, b2;
    memset(&h, 0, sizeof(h));
    CHECK_EQ(khist_quantile(&h, 0.99), 0);
    memset(&a, 0, sizeof(a));
    memset(&b2, 0, sizeof(b2));
    for (uint64_t v = 1; v <= 100000; v++) {
        khist_add(&h, v * 1000);
        khist_add(v % 2 ? &a : &b2, v * 1000);
    }
    CHECK_EQ(h.count, 100000);
    CHECK_EQ(h.max, 100000000);
    double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (int i = 0; i < 4; i++) {
        double want = qs[i] * 1e8, got = (double)khist_quantile(&h, qs[i]);
        CHECK(got >= want - 1000 && got <= want * (1 + 1.0 / 64) + 1000);
    }
    CHECK_EQ(khist_quantile(&h, 1.0), 100000000);
    CHECK_EQ(khist_quantile(&h, 0.0), khist_bucket_low(khist_index(1000) + 1) - 1);
    khist_merge(&a, &b2);
    CHECK_EQ(a.count, h.count);
    CHECK_EQ(a.max, h.max);
    CHECK_MEM(a.n, h.n, sizeof(h.n));
    /* Values below 64 are exact. */
    memset(&h, 0, sizeof(h));
    for (int v = 0; v < 64; v++) khist_add(&h, (uint64_t)v);
    CHECK_EQ(khist_quantile(&h, 0.5), 31);
}

/* ---- against the broker ---- */

/* Produces one batch to topic/partition with acks; returns the base offset (acks != 0),
 * 0 for acks=0, or a negative error / -(1000 + kafka error). */
static int64_t produce(kclient_sync *s, const char *topic, int32_t part, const void *batch,
                       size_t len, int16_t acks)
{
    kafka_ProduceRequest req;
    kafka_ProduceRequest_init(&req);
    kafka_ProduceRequest_TopicProduceData td;
    kafka_ProduceRequest_TopicProduceData_init(&td);
    kafka_ProduceRequest_PartitionProduceData pd;
    kafka_ProduceRequest_PartitionProduceData_init(&pd);
    pd.Index = part;
    pd.Records = (kafka_bytes){batch, (int32_t)len};
    td.Name = kafka_str_from(topic);
    td.PartitionData_count = 1;
    td.PartitionData = &pd;
    req.Acks = acks;
    req.TimeoutMs = 10000;
    req.TopicData_count = 1;
    req.TopicData = &td;
    const void *rp;
    int rc = kclient_sync_call(s, KAFKA_API_PRODUCE, &req, &rp, NULL);
    if (rc < 0) return rc;
    if (acks == 0) return rp == NULL ? 0 : -2;
    const kafka_ProduceResponse *r = rp;
    if (r->Responses_count != 1 || r->Responses[0].PartitionResponses_count != 1) return -3;
    const kafka_ProduceResponse_PartitionProduceResponse *p =
        &r->Responses[0].PartitionResponses[0];
    if (p->ErrorCode) return -(1000 + p->ErrorCode);
    return p->BaseOffset;
}

/* A Fetch request for one partition from off (ft, fp: storage the request points at). */
static void fetch_req_init(kafka_FetchRequest *req, kafka_FetchRequest_FetchTopic *ft,
                           kafka_FetchRequest_FetchPartition *fp, const char *topic,
                           int32_t part, int64_t off)
{
    kafka_FetchRequest_init(req);
    kafka_FetchRequest_FetchTopic_init(ft);
    kafka_FetchRequest_FetchPartition_init(fp);
    fp->Partition = part;
    fp->FetchOffset = off;
    fp->PartitionMaxBytes = 1 << 20;
    ft->Topic = kafka_str_from(topic);
    ft->Partitions_count = 1;
    ft->Partitions = fp;
    req->ReplicaId = -1;
    req->MaxWaitMs = 100;
    req->MinBytes = 1;
    req->MaxBytes = 4 << 20;
    req->Topics_count = 1;
    req->Topics = ft;
}

/* Fetches from offset; fills *records (valid until the next call on s). */
static int fetch(kclient_sync *s, const char *topic, int32_t part, int64_t off,
                 kafka_bytes *records, int64_t *hwm)
{
    kafka_FetchRequest req;
    kafka_FetchRequest_FetchTopic ft;
    kafka_FetchRequest_FetchPartition fp;
    fetch_req_init(&req, &ft, &fp, topic, part, off);
    const void *rp;
    int rc = kclient_sync_call(s, KAFKA_API_FETCH, &req, &rp, NULL);
    if (rc < 0) return rc;
    const kafka_FetchResponse *r = rp;
    if (r->ErrorCode || r->Responses_count != 1 || r->Responses[0].Partitions_count != 1)
        return -1;
    const kafka_FetchResponse_PartitionData *pd = &r->Responses[0].Partitions[0];
    if (pd->ErrorCode) return -(1000 + pd->ErrorCode);
    *records = pd->Records;
    *hwm = pd->HighWatermark;
    return 0;
}

/* Iterates fetched records from offset `from` on, checking each against r[offset % n] (value,
 * timestamp, headers) and that offsets are consecutive. Returns one past the last offset. */
static int64_t check_fetched(kafka_bytes recs, int64_t from, const kclient_record *r, int n)
{
    kclient_fetch_iter it;
    kclient_fetch_iter_init(&it, recs.ptr, recs.len > 0 ? (size_t)recs.len : 0);
    kclient_fetched f;
    int rc;
    while ((rc = kclient_fetch_iter_next(&it, &f)) == 1) {
        if (f.offset < from) continue;
        CHECK_EQ(f.offset, from);
        int i = (int)(from % n);
        CHECK_EQ(f.value_len, r[i].value_len);
        CHECK_MEM(f.value, r[i].value, (size_t)f.value_len);
        CHECK_EQ(f.timestamp, r[i].timestamp);
        check_headers(&f, r[i].headers, r[i].header_count);
        from++;
    }
    kclient_fetch_iter_free(&it);
    CHECK_EQ(rc, 0);
    return from;
}

TEST(sync_produce_fetch)
{
    CHECK_EQ(test_broker_start(1), 0);
    kclient_sync *s = NULL;
    CHECK_EQ(kclient_sync_open(&s, test_broker_addr, 10000), 0);
    kclient *c = kclient_sync_client(s);
    CHECK(kclient_ready(c));
    CHECK(kclient_api_version(c, KAFKA_API_PRODUCE) >= 3);
    CHECK(kclient_api_version(c, KAFKA_API_FETCH) >= 4);
    CHECK(kclient_api_version(c, KAFKA_API_METADATA) >= 1);
    CHECK_EQ(kclient_api_version(c, KAFKA_API_MAX_KEY + 1), -1);
    CHECK_EQ(test_create_topic(s, "kc-t1", 2), 0);
    CHECK_EQ(test_create_topic(s, "kc-t1", 2), 36); /* TOPIC_ALREADY_EXISTS */

    char leader[80];
    CHECK_EQ(kclient_sync_leader(s, "kc-t1", 1, leader, sizeof(leader)), 0);
    CHECK(!strcmp(leader, test_broker_addr));
    CHECK_EQ(kclient_sync_leader(s, "kc-t1", 7, leader, sizeof(leader)), AL_ENOTFOUND);
    CHECK_EQ(kclient_sync_coordinator(s, "kc-group", 0, leader, sizeof(leader)), 0);
    CHECK(!strcmp(leader, test_broker_addr));

    enum { N = 40 };
    kclient_record r[N];
    static char vals[N][200], keys[N][16];
    make_records(r, N, vals, keys);
    size_t bound = kclient_batch_bound(r, N);
    uint8_t *buf = malloc(bound);
    int64_t sz = kclient_batch_build(buf, bound, r, N, STORAGE_COMP_ZSTD);
    CHECK(sz > 0);
    CHECK_EQ(produce(s, "kc-t1", 1, buf, (size_t)sz, 1), 0);
    CHECK_EQ(produce(s, "kc-t1", 1, buf, (size_t)sz, -1), N);
    sz = kclient_batch_build(buf, bound, r, N, STORAGE_COMP_LZ4);
    CHECK_EQ(produce(s, "kc-t1", 1, buf, (size_t)sz, 0), 0); /* acks=0: no response */
    CHECK_EQ(produce(s, "kc-t1", 1, buf, (size_t)sz, 1), 3 * N);
    free(buf);

    /* Read all four batches back. */
    int64_t off = 0, hwm = -1;
    for (int round = 0; round < 20 && off < 4 * N; round++) {
        kafka_bytes recs = {NULL, -1};
        CHECK_EQ(fetch(s, "kc-t1", 1, off, &recs, &hwm), 0);
        off = check_fetched(recs, off, r, N);
    }
    CHECK_EQ(off, 4 * N);
    CHECK_EQ(hwm, 4 * N);
    kclient_sync_close(s);
}

/* Fetch into a kept response *r (strings and records in arena a). Returns 0, -1 (shape), the
 * partition's Kafka error code or a call error. */
static int fetch_into(kclient_sync *s, const char *topic, int32_t part, int64_t off,
                      kafka_FetchResponse *r, kafka_arena *a)
{
    kafka_FetchRequest req;
    kafka_FetchRequest_FetchTopic ft;
    kafka_FetchRequest_FetchPartition fp;
    fetch_req_init(&req, &ft, &fp, topic, part, off);
    int rc = kclient_sync_call_into(s, KAFKA_API_FETCH, 11, &req, r, a, NULL);
    if (rc < 0) return rc;
    if (r->ErrorCode || r->Responses_count != 1 || r->Responses[0].Partitions_count != 1)
        return -1;
    return r->Responses[0].Partitions[0].ErrorCode;
}

/* "localhost:PORT" resolves (getaddrinfo; ::1 may be refused first), responses decoded into a
 * caller arena outlive later calls, the version cap lowers the version, and headers produced
 * through the broker come back intact. */
TEST(sync_hostname_kept_responses_headers)
{
    CHECK_EQ(test_broker_start(1), 0);
    const char *colon = strrchr(test_broker_addr, ':');
    CHECK(colon != NULL);
    char name_addr[80];
    snprintf(name_addr, sizeof(name_addr), "localhost%s", colon);
    kclient_sync *s = NULL;
    CHECK_EQ(kclient_sync_open(&s, name_addr, 10000), 0);
    CHECK(kclient_sync_ready(s));
    CHECK_EQ(test_create_topic(s, "kc-hdr", 1), 0);

    kafka_arena a;
    kafka_arena_init(&a, 64u << 20);
    /* Metadata at v1 (capped) and at the negotiated version, both kept. */
    kafka_MetadataRequest mreq;
    kafka_MetadataRequest_init(&mreq);
    kafka_MetadataRequest_MetadataRequestTopic mt;
    kafka_MetadataRequest_MetadataRequestTopic_init(&mt);
    mt.Name = kafka_str_from("kc-hdr");
    mreq.Topics_count = 1;
    mreq.Topics = &mt;
    kafka_MetadataResponse md1, md2;
    int16_t v1 = -1, v2 = -1;
    CHECK_EQ(kclient_sync_call_into(s, KAFKA_API_METADATA, 1, &mreq, &md1, &a, &v1), 0);
    CHECK_EQ(v1, 1);
    CHECK_EQ(kclient_sync_call_into(s, KAFKA_API_METADATA, 100, &mreq, &md2, &a, &v2), 0);
    CHECK_EQ(v2, kclient_api_version(kclient_sync_client(s), KAFKA_API_METADATA));
    CHECK(v2 > 1);

    enum { N = 12 };
    kclient_record r[N];
    static char vals[N][200], keys[N][16];
    make_records(r, N, vals, keys);
    add_headers(r, N);
    size_t bound = kclient_batch_bound(r, N);
    uint8_t *buf = malloc(bound);
    int64_t sz = kclient_batch_build(buf, bound, r, N, STORAGE_COMP_SNAPPY);
    CHECK(sz > 0);
    CHECK_EQ(produce(s, "kc-hdr", 0, buf, (size_t)sz, -1), 0);
    sz = kclient_batch_build(buf, bound, r, N, STORAGE_COMP_GZIP);
    CHECK_EQ(produce(s, "kc-hdr", 0, buf, (size_t)sz, -1), N);
    free(buf);

    /* Two fetches kept side by side, then more calls on s (through its own buffers). */
    kafka_FetchResponse f0, f1;
    CHECK_EQ(fetch_into(s, "kc-hdr", 0, 0, &f0, &a), 0);
    CHECK_EQ(fetch_into(s, "kc-hdr", 0, N, &f1, &a), 0);
    kafka_bytes recs;
    int64_t hwm;
    CHECK_EQ(fetch(s, "kc-hdr", 0, 0, &recs, &hwm), 0);
    CHECK_EQ(test_create_topic(s, "kc-hdr", 1), 36);

    /* The kept responses are still whole. */
    CHECK_EQ(md1.Topics_count, 1);
    CHECK_EQ(md2.Topics_count, 1);
    CHECK_EQ(md1.Topics[0].Name.len, 6);
    CHECK_MEM(md1.Topics[0].Name.ptr, "kc-hdr", 6);
    CHECK_MEM(md2.Topics[0].Name.ptr, "kc-hdr", 6);
    CHECK_EQ(md2.Brokers_count, 1);
    const kafka_FetchResponse *fs[2] = {&f0, &f1};
    for (int k = 0; k < 2; k++) {
        int64_t want = k * N; /* f0 fetched from 0 (both batches), f1 from N */
        const kafka_FetchResponse_PartitionData *pd = &fs[k]->Responses[0].Partitions[0];
        CHECK_EQ(pd->HighWatermark, 2 * N);
        want = check_fetched(pd->Records, want, r, N);
        CHECK_EQ(want, 2 * N);
    }
    kafka_arena_free(&a);
    kclient_sync_close(s);
}

/* Async pipelining: many Metadata/ApiVersions requests outstanding at once, answered in
 * order, each callback exactly once. */
struct pipe_state {
    int next_expected;
    int answered;
    int errors;
    bool connected;
    int conn_err;
};

static void pipe_resp(kclient *c, void *ctx, int err, int16_t api, int16_t ver, const void *r)
{
    struct pipe_state *ps = *(struct pipe_state **)ctx;
    AL_UNUSED(c);
    AL_UNUSED(ver);
    if (err < 0 || !r) ps->errors++;
    else if (api == KAFKA_API_API_VERSIONS &&
             ((const kafka_ApiVersionsResponse *)r)->ApiKeys_count < 10)
        ps->errors++;
    ps->answered++;
}

struct pipe_ctx {
    struct pipe_state *ps;
    int id;
};

static void pipe_resp2(kclient *c, void *ctx, int err, int16_t api, int16_t ver, const void *r)
{
    struct pipe_ctx *pc = ctx;
    if (pc->id != pc->ps->next_expected) pc->ps->errors++;
    pc->ps->next_expected++;
    pipe_resp(c, &pc->ps, err, api, ver, r);
}

static void pipe_conn(kclient *c, void *ctx, int err)
{
    struct pipe_state *ps = ctx;
    ps->connected = err == 0;
    ps->conn_err = err;
}

TEST(async_pipelined)
{
    CHECK_EQ(test_broker_start(1), 0);
    io *iop;
    CHECK_EQ(io_uring_create(&iop, NULL), 0);
    kclient *c;
    CHECK_EQ(kclient_create(&c, iop, &(struct kclient_opts){.max_inflight = 64}), 0);
    char host[64];
    uint16_t port;
    CHECK_EQ(kclient_parse_addr(test_broker_addr, host, sizeof(host), &port), 0);
    struct pipe_state ps = {0};
    kclient_connect(c, host, port, pipe_conn, &ps);
    uint64_t dl = io_now_ns(iop) + 10000000000ull;
    while (!ps.connected && !ps.conn_err && io_now_ns(iop) < dl) io_poll(iop, dl);
    CHECK(ps.connected);
    static struct pipe_ctx pcs[200];
    int sent = 0;
    for (int i = 0; i < 200; i++) {
        pcs[i] = (struct pipe_ctx){&ps, i};
        kafka_ApiVersionsRequest av;
        kafka_ApiVersionsRequest_init(&av);
        av.ClientSoftwareName = kafka_str_from("kclient-test"); /* v3 requires both */
        av.ClientSoftwareVersion = kafka_str_from("1");
        kafka_MetadataRequest md;
        kafka_MetadataRequest_init(&md);
        md.Topics_count = -1;
        int rc = i % 2 ? kclient_send(c, KAFKA_API_API_VERSIONS, &av, pipe_resp2, &pcs[i])
                       : kclient_send(c, KAFKA_API_METADATA, &md, pipe_resp2, &pcs[i]);
        if (rc == AL_EFULL) break; /* 64 in flight */
        CHECK_EQ(rc, 0);
        sent++;
    }
    CHECK_EQ(sent, 64);
    CHECK_EQ(kclient_inflight(c), 64);
    while (ps.answered < sent && io_now_ns(iop) < dl) io_poll(iop, dl);
    CHECK_EQ(ps.answered, sent);
    CHECK_EQ(ps.errors, 0);
    CHECK_EQ(kclient_inflight(c), 0);
    /* Close with requests outstanding: each callback runs once with AL_ECLOSED. */
    ps = (struct pipe_state){.connected = true, .next_expected = 0};
    kafka_ApiVersionsRequest av;
    kafka_ApiVersionsRequest_init(&av);
    for (int i = 0; i < 5; i++) CHECK_EQ(kclient_send(c, 18, &av, pipe_resp2, &pcs[i]), 0);
    kclient_close(c);
    CHECK_EQ(ps.answered, 5);
    CHECK_EQ(ps.errors, 5);
    CHECK_EQ(kclient_send(c, 18, &av, pipe_resp2, &pcs[0]), AL_ECLOSED);
    while (kclient_busy(c) && io_now_ns(iop) < dl) io_poll(iop, dl);
    CHECK(!kclient_busy(c));
    kclient_free(c);
    io_destroy(iop);
}

TEST(errors_refused_and_timeout)
{
    io *iop;
    CHECK_EQ(io_uring_create(&iop, NULL), 0);
    /* A listener that never accepts: the kernel completes the TCP handshake, nobody answers. */
    int lfd = io_listen(iop, "127.0.0.1", 0, false, 16);
    CHECK(lfd >= 0);
    int port = io_local_port(iop, lfd);
    CHECK(port > 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    kclient *c;
    CHECK_EQ(kclient_create(&c, iop, &(struct kclient_opts){.timeout_ms = 300}), 0);
    struct pipe_state ps = {0};
    kclient_connect(c, "127.0.0.1", (uint16_t)port, pipe_conn, &ps);
    uint64_t t0 = io_now_ns(iop), dl = t0 + 5000000000ull;
    while (!ps.connected && !ps.conn_err && io_now_ns(iop) < dl) io_poll(iop, dl);
    CHECK(!ps.connected);
    CHECK_EQ(ps.conn_err, AL_ETIMEDOUT);
    CHECK(!kclient_ready(c));
    uint64_t took = io_now_ns(iop) - t0;
    CHECK(took >= 250000000ull && took < 3000000000ull);
    while (kclient_busy(c) && io_now_ns(iop) < dl) io_poll(iop, dl);
    kclient_free(c);
    io_close_now(iop, lfd);
    io_destroy(iop);
    /* Now nobody listens on that port at all. */
    kclient_sync *s = NULL;
    int rc = kclient_sync_open(&s, addr, 2000);
    CHECK_EQ(rc, -ECONNREFUSED);
    CHECK(s == NULL);
    CHECK_EQ(kclient_sync_open(&s, "nonsense", 2000), AL_EINVAL);
    /* A name resolves (getaddrinfo), every address of it is refused: the connect error. */
    snprintf(addr, sizeof(addr), "localhost:%d", port);
    CHECK_EQ(kclient_sync_open(&s, addr, 2000), -ECONNREFUSED);
    CHECK(s == NULL);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    int rc = test_main(argc, argv);
    test_broker_stop();
    return rc;
}
