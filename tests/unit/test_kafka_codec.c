/*
 * test_kafka_codec.c — the generated Kafka codec (src/kafka/gen): round trip of every message
 * in every version (with and without tagged fields), known-answer bytes as real clients send
 * them, every strict prefix failing cleanly, garbage and mutated inputs never crashing, huge
 * counts not allocating, the arena limit, and the API table.
 */
#include "test.h"

#include "kafka_codec.h"

#include <stdlib.h>

#define ARENA_LIMIT (64u << 20)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Encodes `in` (message d, version v) into a fresh malloc'd buffer of exactly size() bytes;
 * returns the buffer (caller frees) and its length, or NULL when encode fails (rc in *rcp). */
static uint8_t *encode_msg(const struct kafka_msg_desc *d, int16_t v, const void *in,
                           size_t *len, int *rcp)
{
    size_t n = d->size(v, in);
    uint8_t *buf = malloc(n ? n : 1);
    AL_ASSERT(buf);
    al_wr wr = al_wr_make(buf, n);
    int rc = d->encode(&wr, v, in);
    *rcp = rc;
    if (rc) {
        free(buf);
        return NULL;
    }
    *len = (size_t)(wr.p - buf);
    if (*len != n) {
        fprintf(stderr, "    %s v%d: encoded %zu bytes, size() said %zu\n", d->name, v, *len, n);
        *rcp = AL_EINVAL;
        free(buf);
        return NULL;
    }
    return buf;
}

struct rt_counts {
    int pairs_req, pairs_resp, pairs_other;
    int tag_longer; /* pairs whose encoding with tagged fields filled was the longer one */
    size_t bytes;   /* total bytes encoded */
};

/* One round trip: fill, encode (length == size), decode (consumes everything), equal,
 * re-encode to the same bytes. Returns 0 or prints what failed and returns -1. */
static int round_trip_one(const struct kafka_msg_desc *d, int16_t v, uint64_t seed, bool tagged,
                          bool nulls, size_t *enc_len)
{
    int ret = -1, rc;
    kafka_arena fa, da;
    kafka_arena_init(&fa, ARENA_LIMIT);
    kafka_arena_init(&da, ARENA_LIMIT);
    void *m = calloc(1, d->struct_size), *back = calloc(1, d->struct_size);
    uint8_t *buf = NULL, *buf2 = NULL;
    AL_ASSERT(m && back);
    kafka_filler f = {.rng = seed, .arena = &fa, .tagged = tagged, .nulls = nulls,
                      .max_count = 3};
    kafka_msg_fill_test(d, m, v, &f);
    size_t len = 0, len2 = 0;
    buf = encode_msg(d, v, m, &len, &rc);
    if (!buf) {
        fprintf(stderr, "    %s v%d: encode failed: %s\n", d->name, v, al_strerror(rc));
        goto out;
    }
    al_rd rd = al_rd_make(buf, len);
    rc = d->decode(&rd, v, back, &da);
    if (rc || al_rd_left(&rd) != 0) {
        fprintf(stderr, "    %s v%d: decode rc=%s left=%zu of %zu\n", d->name, v,
                al_strerror(rc), al_rd_left(&rd), len);
        goto out;
    }
    if (!d->equal(m, back)) {
        fprintf(stderr, "    %s v%d: decoded message differs from the original\n", d->name, v);
        goto out;
    }
    buf2 = encode_msg(d, v, back, &len2, &rc);
    if (!buf2 || len2 != len || memcmp(buf, buf2, len) != 0) {
        fprintf(stderr, "    %s v%d: re-encoding differs\n", d->name, v);
        goto out;
    }
    *enc_len = len;
    ret = 0;
out:
    free(buf);
    free(buf2);
    free(m);
    free(back);
    kafka_arena_free(&fa);
    kafka_arena_free(&da);
    return ret;
}

TEST(round_trip_every_message_every_version)
{
    uint64_t seed = test_seed();
    struct rt_counts c = {0};
    int req_apis = 0, resp_apis = 0, others = 0, failures = 0;
    for (size_t i = 0; i < kafka_msg_desc_count; i++) {
        const struct kafka_msg_desc *d = &kafka_msg_descs[i];
        bool is_req = !strcmp(d->kind, "request"), is_resp = !strcmp(d->kind, "response");
        req_apis += is_req;
        resp_apis += is_resp;
        others += !is_req && !is_resp;
        for (int16_t v = d->min_version; v <= d->max_version; v++) {
            size_t plain = 0, tagged = 0;
            /* Tagged fields absent and present; nulls off and on; two seeds. */
            for (int round = 0; round < 8; round++) {
                bool tags = round & 1, nulls = (round >> 1) & 1;
                uint64_t s = seed + i * 1000003u + (uint64_t)v * 7919u + (uint64_t)round;
                size_t len = 0;
                if (round_trip_one(d, v, s, tags, nulls, &len) != 0) failures++;
                if (round == 0) plain = len;
                if (round == 1) tagged = len;
            }
            /* Informational: with tagged fields filled the encoding is usually longer. */
            c.tag_longer += tagged > plain;
            c.bytes += plain + tagged;
            if (is_req) c.pairs_req++;
            else if (is_resp) c.pairs_resp++;
            else c.pairs_other++;
        }
    }
    printf("  codec round trip: %d request APIs, %d response APIs, %d (api,version) pairs "
           "(%d request + %d response), plus %d header/data types in %d versions; "
           "%zu bytes encoded, tagged-filled longer in %d pairs\n",
           req_apis, resp_apis, c.pairs_req + c.pairs_resp, c.pairs_req, c.pairs_resp, others,
           c.pairs_other, c.bytes, c.tag_longer);
    CHECK_EQ(failures, 0);
    CHECK_EQ(req_apis, 76);
    CHECK_EQ(resp_apis, 76);
    CHECK_EQ(others, 10);
}

/* Tagged fields: a message with a tagged field set encodes it (longer bytes, decodes back),
 * and with it at its default nothing is written. Checked on every message that has tags. */
/* Encodes m by reference (min_len) and returns the spliced wire bytes (malloc'd, *len), or
 * NULL after printing why: the planned and written references must agree, be in order and
 * inside the contiguous output. *nrefs: how many went by reference. */
static uint8_t *encode_refs_flat(const struct kafka_msg_desc *d, int16_t v, const void *m,
                                 size_t min_len, size_t *len, int *nrefs)
{
    kafka_refs refs = {.min_len = min_len};
    size_t wire = kafka_struct_size_refs(d->desc, v, m, &refs);
    if (wire != d->size(v, m) || refs.planned_bytes > wire) {
        fprintf(stderr, "    %s v%d: size_refs %zu vs size %zu\n", d->name, v, wire, d->size(v, m));
        return NULL;
    }
    size_t clen = wire - refs.planned_bytes;
    uint8_t *c = malloc(clen ? clen : 1), *out = malloc(wire ? wire : 1);
    refs.v = malloc(sizeof(*refs.v) * (size_t)(refs.planned ? refs.planned : 1));
    refs.cap = refs.planned;
    refs.base = c;
    AL_ASSERT(c && out && refs.v);
    al_wr wr = al_wr_make(c, clen);
    int rc = kafka_struct_encode_refs(d->desc, &wr, v, m, &refs);
    bool ok = rc == 0 && !wr.err && wr.p == c + clen && refs.n == refs.planned;
    size_t pos = 0, o = 0;
    for (int32_t i = 0; ok && i < refs.n; i++) {
        const kafka_ref *r = &refs.v[i];
        ok = r->at >= pos && r->at <= clen && r->len >= min_len;
        if (!ok) break;
        memcpy(out + o, c + pos, r->at - pos);
        o += r->at - pos;
        memcpy(out + o, r->ptr, r->len);
        o += r->len;
        pos = r->at;
    }
    if (ok) {
        memcpy(out + o, c + pos, clen - pos);
        o += clen - pos;
        ok = o == wire;
    }
    if (!ok) {
        fprintf(stderr, "    %s v%d: encode_refs rc=%s n=%d planned=%d\n", d->name, v,
                al_strerror(rc), refs.n, refs.planned);
        free(out);
        out = NULL;
    }
    *len = wire;
    *nrefs = refs.n;
    free(c);
    free(refs.v);
    return out;
}

/* Records by reference (zero-copy Fetch): for every message with a records field (Fetch and
 * FetchSnapshot responses, Produce requests), every version, random contents with nulls and
 * tagged fields, and thresholds that take all, some or none of the records by reference, the
 * spliced output is byte for byte the copying encoder's. */
TEST(records_by_reference_byte_identical)
{
    uint64_t seed = test_seed();
    int pairs = 0, refs_total = 0, failures = 0;
    static const size_t mins[] = {1, 6, 13, 24, 1000};
    for (size_t i = 0; i < kafka_msg_desc_count; i++) {
        const struct kafka_msg_desc *d = &kafka_msg_descs[i];
        if (strcmp(d->name, "FetchResponse") && strcmp(d->name, "FetchSnapshotResponse") &&
            strcmp(d->name, "ProduceRequest"))
            continue;
        for (int16_t v = d->min_version; v <= d->max_version; v++) {
            for (int k = 0; k < 20; k++) {
                kafka_arena fa;
                kafka_arena_init(&fa, ARENA_LIMIT);
                void *m = calloc(1, d->struct_size);
                kafka_filler f = {.rng = seed + (uint64_t)k * 131 + (uint64_t)v,
                                  .arena = &fa, .tagged = k & 1, .nulls = k & 2,
                                  .max_count = 4};
                kafka_msg_fill_test(d, m, v, &f);
                size_t len = 0, flen = 0;
                int rc, n = 0;
                uint8_t *copy = encode_msg(d, v, m, &len, &rc);
                uint8_t *flat = encode_refs_flat(d, v, m, mins[k % 5], &flen, &n);
                if (!copy || !flat || len != flen || memcmp(copy, flat, len) != 0) {
                    if (failures++ < 5)
                        fprintf(stderr, "    %s v%d case %d: by reference differs\n", d->name,
                                v, k);
                }
                refs_total += n;
                pairs++;
                free(copy);
                free(flat);
                free(m);
                kafka_arena_free(&fa);
            }
        }
    }
    printf("    %d messages encoded both ways, %d records values by reference\n", pairs,
           refs_total);
    CHECK_EQ(failures, 0);
    CHECK(pairs > 300 && refs_total > 300);
}

TEST(tagged_fields_on_the_wire)
{
    /* ApiVersionsResponse v3 has tagged fields SupportedFeatures (0), FinalizedFeaturesEpoch
     * (1), FinalizedFeatures (2), ZkMigrationReady (3). */
    kafka_ApiVersionsResponse r;
    kafka_ApiVersionsResponse_init(&r);
    CHECK_EQ(r.FinalizedFeaturesEpoch, -1);
    size_t base = kafka_ApiVersionsResponse_size(3, &r);
    CHECK_EQ(base, 2 + 1 + 4 + 1); /* error, empty compact array, throttle, no tags */
    r.ZkMigrationReady = true;
    size_t with = kafka_ApiVersionsResponse_size(3, &r);
    CHECK_EQ(with, base + 3); /* tag 3, size 1, value 1 */
    uint8_t buf[64];
    al_wr wr = al_wr_make(buf, sizeof(buf));
    CHECK_EQ(kafka_ApiVersionsResponse_encode(&wr, 3, &r), 0);
    const uint8_t want[] = {0, 0, 1, 0, 0, 0, 0, 1, 3, 1, 1};
    CHECK_EQ((size_t)(wr.p - buf), sizeof(want));
    CHECK_MEM(buf, want, sizeof(want));
    /* In v2 (not flexible) the tagged field does not exist: ignorable, so dropped. */
    wr = al_wr_make(buf, sizeof(buf));
    CHECK_EQ(kafka_ApiVersionsResponse_encode(&wr, 2, &r), 0);
    CHECK_EQ((size_t)(wr.p - buf), 2 + 4 + 4);
    /* An unknown tag is skipped on read; a known tag with a wrong size is rejected. */
    const uint8_t unknown[] = {0, 0, 1, 0, 0, 0, 0, 2, 9, 2, 0xaa, 0xbb, 3, 1, 1};
    kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    kafka_ApiVersionsResponse back;
    al_rd rd = al_rd_make(unknown, sizeof(unknown));
    CHECK_EQ(kafka_ApiVersionsResponse_decode(&rd, 3, &back, &a), 0);
    CHECK(back.ZkMigrationReady);
    CHECK_EQ(al_rd_left(&rd), 0);
    const uint8_t badsize[] = {0, 0, 1, 0, 0, 0, 0, 1, 3, 2, 1, 0};
    rd = al_rd_make(badsize, sizeof(badsize));
    CHECK(kafka_ApiVersionsResponse_decode(&rd, 3, &back, &a) < 0);
    kafka_arena_free(&a);
}

/* librdkafka's first frame: ApiVersions v3 with request header v2 (client id classic). */
TEST(known_answer_api_versions_v3_request)
{
    const uint8_t frame[] = {
        0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,                   /* key, ver, corr */
        0x00, 0x07, 'r', 'd', 'k', 'a', 'f', 'k', 'a',                     /* client id */
        0x00,                                                              /* header tags */
        0x0b, 'l', 'i', 'b', 'r', 'd', 'k', 'a', 'f', 'k', 'a',            /* software name */
        0x06, '2', '.', '0', '.', '2',                                     /* version */
        0x00};                                                             /* body tags */
    al_rd rd = al_rd_make(frame, sizeof(frame));
    kafka_RequestHeader h;
    kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    CHECK_EQ(kafka_request_header_version(18, 3), 2);
    CHECK_EQ(kafka_RequestHeader_decode(&rd, 2, &h, &a), 0);
    CHECK_EQ(h.RequestApiKey, KAFKA_API_API_VERSIONS);
    CHECK_EQ(h.RequestApiVersion, 3);
    CHECK_EQ(h.CorrelationId, 1);
    CHECK(kafka_str_equal(h.ClientId, kafka_str_from("rdkafka")));
    kafka_ApiVersionsRequest r;
    CHECK_EQ(kafka_request_decode(18, 3, &rd, &r, &a), 0);
    CHECK(kafka_str_equal(r.ClientSoftwareName, kafka_str_from("librdkafka")));
    CHECK(kafka_str_equal(r.ClientSoftwareVersion, kafka_str_from("2.0.2")));
    CHECK_EQ(al_rd_left(&rd), 0);
    /* Encoding the decoded values gives the same bytes. */
    uint8_t out[64];
    al_wr wr = al_wr_make(out, sizeof(out));
    CHECK_EQ(kafka_RequestHeader_encode(&wr, 2, &h), 0);
    CHECK_EQ(kafka_ApiVersionsRequest_encode(&wr, 3, &r), 0);
    CHECK_EQ((size_t)(wr.p - out), sizeof(frame));
    CHECK_MEM(out, frame, sizeof(frame));
    kafka_arena_free(&a);
}

/* kafka-python's probe: Metadata v0, header v1, one topic; and v0 with no topics. */
TEST(known_answer_metadata_v0_request)
{
    const uint8_t frame[] = {0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x03, 'k',
                             'p', 'y', 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 't', 0x00, 0x02,
                             'u', 'v'};
    al_rd rd = al_rd_make(frame, sizeof(frame));
    kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    kafka_RequestHeader h;
    CHECK_EQ(kafka_request_header_version(3, 0), 1);
    CHECK_EQ(kafka_RequestHeader_decode(&rd, 1, &h, &a), 0);
    CHECK_EQ(h.RequestApiKey, 3);
    CHECK_EQ(h.CorrelationId, 2);
    CHECK(kafka_str_equal(h.ClientId, kafka_str_from("kpy")));
    kafka_MetadataRequest m;
    CHECK_EQ(kafka_MetadataRequest_decode(&rd, 0, &m, &a), 0);
    CHECK_EQ(m.Topics_count, 2);
    CHECK(kafka_str_equal(m.Topics[0].Name, kafka_str_from("t")));
    CHECK(kafka_str_equal(m.Topics[1].Name, kafka_str_from("uv")));
    CHECK(m.AllowAutoTopicCreation); /* absent in v0: default true */
    CHECK_EQ(al_rd_left(&rd), 0);
    /* v0 cannot say "null topics": encoding null is invalid there, valid in v1. */
    m.Topics_count = -1;
    m.Topics = NULL;
    uint8_t out[64];
    al_wr wr = al_wr_make(out, sizeof(out));
    CHECK_EQ(kafka_MetadataRequest_encode(&wr, 0, &m), AL_EINVAL);
    wr = al_wr_make(out, sizeof(out));
    CHECK_EQ(kafka_MetadataRequest_encode(&wr, 1, &m), 0);
    CHECK_EQ(wr.p - out, 4);
    CHECK_EQ(al_be32(out), 0xffffffffu);
    kafka_arena_free(&a);
}

/* A Produce v7 request header (librdkafka, header v1) and a null transactional id. */
TEST(known_answer_produce_v7_header)
{
    const uint8_t frame[] = {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x05, 0x00, 0x04, 'c',
                             'l', 'i', 'd',
                             0xff, 0xff,             /* transactional id: null */
                             0xff, 0xff,             /* acks -1 */
                             0x00, 0x00, 0x75, 0x30, /* timeout 30000 */
                             0x00, 0x00, 0x00, 0x01, /* one topic */
                             0x00, 0x01, 'x',
                             0x00, 0x00, 0x00, 0x01, /* one partition */
                             0x00, 0x00, 0x00, 0x02, /* index 2 */
                             0x00, 0x00, 0x00, 0x03, 0xaa, 0xbb, 0xcc}; /* records */
    al_rd rd = al_rd_make(frame, sizeof(frame));
    kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    kafka_RequestHeader h;
    CHECK_EQ(kafka_request_header_version(0, 7), 1);
    CHECK_EQ(kafka_RequestHeader_decode(&rd, 1, &h, &a), 0);
    CHECK_EQ(h.RequestApiKey, KAFKA_API_PRODUCE);
    CHECK_EQ(h.RequestApiVersion, 7);
    CHECK_EQ(h.CorrelationId, 5);
    CHECK(kafka_str_equal(h.ClientId, kafka_str_from("clid")));
    kafka_ProduceRequest p;
    CHECK_EQ(kafka_ProduceRequest_decode(&rd, 7, &p, &a), 0);
    CHECK_EQ(p.TransactionalId.len, -1);
    CHECK_EQ(p.Acks, -1);
    CHECK_EQ(p.TimeoutMs, 30000);
    CHECK_EQ(p.TopicData_count, 1);
    CHECK(kafka_str_equal(p.TopicData[0].Name, kafka_str_from("x")));
    CHECK_EQ(p.TopicData[0].PartitionData_count, 1);
    CHECK_EQ(p.TopicData[0].PartitionData[0].Index, 2);
    CHECK_EQ(p.TopicData[0].PartitionData[0].Records.len, 3);
    CHECK_EQ(p.TopicData[0].PartitionData[0].Records.ptr[2], 0xcc);
    CHECK_EQ(al_rd_left(&rd), 0);
    /* Zero copy: records point into the input. */
    CHECK(p.TopicData[0].PartitionData[0].Records.ptr == frame + sizeof(frame) - 3);
    kafka_arena_free(&a);
}

/* An ApiVersions v0 response exactly as the Kafka broker writes it. */
TEST(known_answer_api_versions_v0_response)
{
    kafka_ApiVersionsResponse r;
    kafka_ApiVersionsResponse_init(&r);
    kafka_ApiVersionsResponse_ApiVersion keys[2];
    for (int i = 0; i < 2; i++) kafka_ApiVersionsResponse_ApiVersion_init(&keys[i]);
    keys[0].ApiKey = 18;
    keys[0].MaxVersion = 3;
    keys[1].ApiKey = 3;
    keys[1].MaxVersion = 12;
    r.ApiKeys = keys;
    r.ApiKeys_count = 2;
    r.ThrottleTimeMs = 7; /* absent in v0, ignorable */
    const uint8_t want[] = {0, 0, 0, 0, 0, 2, 0, 18, 0, 0, 0, 3, 0, 3, 0, 0, 0, 12};
    uint8_t out[64];
    CHECK_EQ(kafka_response_size(18, 0, &r), sizeof(want));
    al_wr wr = al_wr_make(out, sizeof(out));
    CHECK_EQ(kafka_response_encode(18, 0, &wr, &r), 0);
    CHECK_EQ((size_t)(wr.p - out), sizeof(want));
    CHECK_MEM(out, want, sizeof(want));
    CHECK_EQ(kafka_response_header_version(18, 3), 0);
    CHECK_EQ(kafka_response_header_version(3, 9), 1);
    CHECK_EQ(kafka_response_header_version(3, 8), 0);
}

TEST(api_table)
{
    const struct kafka_api_info *i = kafka_api_info(KAFKA_API_FETCH);
    CHECK(i != NULL);
    CHECK(!strcmp(i->name, "Fetch"));
    CHECK_EQ(i->min_version, 0);
    CHECK_EQ(i->max_version, 16);
    CHECK_EQ(i->flexible_min, 12);
    CHECK(kafka_api_info(-1) == NULL);
    CHECK(kafka_api_info(76) == NULL);
    CHECK_EQ(kafka_api_info(KAFKA_API_SASL_HANDSHAKE)->flexible_min, -1);
    CHECK_EQ(KAFKA_API_DESCRIBE_TOPIC_PARTITIONS, 75);
    CHECK_EQ(KAFKA_API_OFFSET_FOR_LEADER_EPOCH, 23);
    CHECK_EQ(kafka_request_header_version(7, 0), 0); /* ControlledShutdown v0 */
    CHECK_EQ(kafka_request_header_version(7, 1), 1);
    CHECK_EQ(kafka_request_header_version(7, 3), 2);
    CHECK_EQ(kafka_request_header_version(18, 4), 2); /* newer ApiVersions still parses */
    CHECK_EQ(kafka_request_header_version(99, 0), -1);
    CHECK_EQ(kafka_request_struct_size(0), sizeof(kafka_ProduceRequest));
    CHECK_EQ(kafka_response_struct_size(1), sizeof(kafka_FetchResponse));
    CHECK_EQ(kafka_request_struct_size(200), 0);
    for (int16_t k = 0; k <= KAFKA_API_MAX_KEY; k++) {
        CHECK(kafka_api_info(k) != NULL);
        CHECK_EQ(kafka_api_info(k)->key, k);
    }
    uint8_t b[4] = {0};
    al_rd rd = al_rd_make(b, 4);
    kafka_ProduceRequest p;
    CHECK_EQ(kafka_request_decode(0, 12, &rd, &p, NULL), AL_EUNSUPPORTED);
    CHECK_EQ(kafka_request_decode(0, -1, &rd, &p, NULL), AL_EUNSUPPORTED);
    CHECK_EQ(kafka_request_decode(500, 0, &rd, &p, NULL), AL_EUNSUPPORTED);
}

/* Defaults from the schemas, including numeric strings, "null", bool and int64 forms. */
TEST(schema_defaults)
{
    kafka_MetadataRequest m;
    kafka_MetadataRequest_init(&m);
    CHECK(m.AllowAutoTopicCreation);
    CHECK_EQ(m.Topics_count, 0);
    kafka_FetchRequest f;
    kafka_FetchRequest_init(&f);
    CHECK_EQ(f.ReplicaId, -1);
    CHECK_EQ(f.MaxBytes, 0x7fffffff);
    CHECK(f.ClusterId.len == -1);
    kafka_RequestHeader h;
    kafka_RequestHeader_init(&h);
    CHECK_EQ(h.ClientId.len, 0);
    kafka_ProduceRequest p;
    kafka_ProduceRequest_init(&p);
    CHECK_EQ(p.TransactionalId.len, -1);
    kafka_FetchResponse_PartitionData pd;
    kafka_FetchResponse_PartitionData_init(&pd);
    CHECK_EQ(pd.PreferredReadReplica, -1);
    CHECK_EQ(pd.Records.len, -1);
    kafka_ConsumerGroupHeartbeatResponse cg;
    kafka_ConsumerGroupHeartbeatResponse_init(&cg);
    CHECK(cg.Assignment_null);
}

/* A non-ignorable field with a non-default value in a version that lacks it is refused. */
TEST(non_ignorable_field_refused)
{
    kafka_MetadataRequest m;
    kafka_MetadataRequest_init(&m);
    m.IncludeTopicAuthorizedOperations = true; /* 8+, not ignorable */
    uint8_t out[64];
    al_wr wr = al_wr_make(out, sizeof(out));
    CHECK_EQ(kafka_MetadataRequest_encode(&wr, 7, &m), AL_EINVAL);
    wr = al_wr_make(out, sizeof(out));
    CHECK_EQ(kafka_MetadataRequest_encode(&wr, 8, &m), 0);
    /* A writer buffer too small is AL_ETOOLARGE. */
    wr = al_wr_make(out, 3);
    CHECK_EQ(kafka_MetadataRequest_encode(&wr, 8, &m), AL_ETOOLARGE);
}

/* Every strict prefix of a valid encoding fails to decode, for every message and version. */
TEST(truncation_every_prefix_fails)
{
    uint64_t seed = test_seed();
    double t0 = now_s();
    long prefixes = 0;
    int bad = 0;
    kafka_arena fa, da;
    kafka_arena_init(&fa, ARENA_LIMIT);
    kafka_arena_init(&da, ARENA_LIMIT);
    for (size_t i = 0; i < kafka_msg_desc_count && now_s() - t0 < 25; i++) {
        const struct kafka_msg_desc *d = &kafka_msg_descs[i];
        void *m = calloc(1, d->struct_size), *back = calloc(1, d->struct_size);
        AL_ASSERT(m && back);
        for (int16_t v = d->min_version; v <= d->max_version; v++) {
            kafka_arena_reset(&fa);
            kafka_filler f = {.rng = seed ^ (i << 20) ^ (uint64_t)v, .arena = &fa,
                              .tagged = true, .nulls = false, .max_count = 2};
            kafka_msg_fill_test(d, m, v, &f);
            size_t len;
            int rc;
            uint8_t *buf = encode_msg(d, v, m, &len, &rc);
            CHECK(buf != NULL);
            for (size_t cut = 0; cut < len; cut++) {
                /* Copy the prefix to its own allocation so ASan sees any overread. */
                uint8_t *p = malloc(cut ? cut : 1);
                AL_ASSERT(p);
                memcpy(p, buf, cut);
                al_rd rd = al_rd_make(p, cut);
                kafka_arena_reset(&da);
                rc = d->decode(&rd, v, back, &da);
                if (rc == 0) {
                    if (bad++ < 5)
                        fprintf(stderr, "    %s v%d: prefix %zu/%zu decoded\n", d->name, v,
                                cut, len);
                }
                free(p);
                prefixes++;
            }
            free(buf);
        }
        free(m);
        free(back);
    }
    kafka_arena_free(&fa);
    kafka_arena_free(&da);
    printf("  %ld strict prefixes checked in %.1fs\n", prefixes, now_s() - t0);
    CHECK_EQ(bad, 0);
    CHECK(prefixes > 10000);
}

/* If decode accepts an input, re-encoding and decoding again gives an equal message. */
static int check_accepted(const struct kafka_msg_desc *d, int16_t v, const void *msg)
{
    size_t len;
    int rc;
    uint8_t *buf = encode_msg(d, v, msg, &len, &rc);
    if (!buf) {
        fprintf(stderr, "    %s v%d: accepted input does not re-encode: %s\n", d->name, v,
                al_strerror(rc));
        return -1;
    }
    kafka_arena a;
    kafka_arena_init(&a, ARENA_LIMIT);
    void *again = calloc(1, d->struct_size);
    AL_ASSERT(again);
    al_rd rd = al_rd_make(buf, len);
    int ret = 0;
    if (d->decode(&rd, v, again, &a) != 0 || al_rd_left(&rd) || !d->equal(msg, again)) {
        fprintf(stderr, "    %s v%d: re-decode differs\n", d->name, v);
        ret = -1;
    }
    free(again);
    free(buf);
    kafka_arena_free(&a);
    return ret;
}

/* Random bytes and mutated valid encodings: never a crash (ASan), accepted ones round-trip. */
TEST(garbage_and_mutations_never_crash)
{
    uint64_t s = test_seed();
    double t0 = now_s();
    long runs = 0, accepted = 0;
    int bad = 0;
    kafka_arena fa, da;
    kafka_arena_init(&fa, ARENA_LIMIT);
    kafka_arena_init(&da, 1 << 20);
    uint8_t garbage[512];
    for (int round = 0; round < 300 && now_s() - t0 < 15; round++) {
        for (size_t i = 0; i < kafka_msg_desc_count; i++) {
            const struct kafka_msg_desc *d = &kafka_msg_descs[i];
            void *m = calloc(1, d->struct_size), *back = calloc(1, d->struct_size);
            AL_ASSERT(m && back);
            for (int16_t v = d->min_version; v <= d->max_version; v++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                /* 1: pure garbage */
                size_t glen = (size_t)(s >> 33) % sizeof(garbage);
                for (size_t k = 0; k < glen; k++)
                    garbage[k] = (uint8_t)((s = s * 6364136223846793005ull + 1) >> 56);
                uint8_t *g = malloc(glen ? glen : 1);
                AL_ASSERT(g);
                memcpy(g, garbage, glen);
                al_rd rd = al_rd_make(g, glen);
                kafka_arena_reset(&da);
                if (d->decode(&rd, v, back, &da) == 0) {
                    accepted++;
                    if (check_accepted(d, v, back)) bad++;
                }
                free(g);
                /* 2: a valid encoding with a few bytes changed */
                kafka_arena_reset(&fa);
                kafka_filler f = {.rng = s, .arena = &fa, .tagged = (s >> 7) & 1,
                                  .nulls = (s >> 9) & 1, .max_count = 2};
                kafka_msg_fill_test(d, m, v, &f);
                size_t len;
                int rc;
                uint8_t *buf = encode_msg(d, v, m, &len, &rc);
                AL_ASSERT(buf);
                for (int k = 0; k < 3 && len; k++) {
                    s = s * 6364136223846793005ull + 1442695040888963407ull;
                    buf[(s >> 20) % len] ^= (uint8_t)(1u << ((s >> 50) & 7));
                }
                rd = al_rd_make(buf, len);
                kafka_arena_reset(&da);
                if (d->decode(&rd, v, back, &da) == 0) {
                    accepted++;
                    if (check_accepted(d, v, back)) bad++;
                }
                free(buf);
                runs += 2;
            }
            free(m);
            free(back);
        }
    }
    kafka_arena_free(&fa);
    kafka_arena_free(&da);
    printf("  %ld garbage/mutated decodes (%ld accepted and re-checked) in %.1fs\n", runs,
           accepted, now_s() - t0);
    CHECK_EQ(bad, 0);
}

/* Huge counts and lengths fail before allocating; the arena limit is enforced. */
TEST(huge_counts_do_not_allocate)
{
    /* Metadata v0: topics count 0x7fffffff followed by 3 bytes. */
    const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 0, 1, 'a'};
    kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    kafka_MetadataRequest m;
    al_rd rd = al_rd_make(huge, sizeof(huge));
    CHECK(kafka_MetadataRequest_decode(&rd, 0, &m, &a) < 0);
    CHECK_EQ(a.used, 0);
    /* Compact (v9): count as uvarint 0xffffffff. */
    const uint8_t huge2[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0};
    rd = al_rd_make(huge2, sizeof(huge2));
    CHECK(kafka_MetadataRequest_decode(&rd, 9, &m, &a) < 0);
    CHECK_EQ(a.used, 0);
    /* A count of -2 is malformed; string length 0x7fff with no bytes is truncated. */
    const uint8_t neg[] = {0xff, 0xff, 0xff, 0xfe};
    rd = al_rd_make(neg, sizeof(neg));
    CHECK_EQ(kafka_MetadataRequest_decode(&rd, 0, &m, &a), AL_EMALFORMED);
    const uint8_t longstr[] = {0, 0, 0, 1, 0x7f, 0xff, 'x'};
    rd = al_rd_make(longstr, sizeof(longstr));
    CHECK_EQ(kafka_MetadataRequest_decode(&rd, 0, &m, &a), AL_ETRUNCATED);
    kafka_arena_free(&a);

    /* Many real elements against a small arena limit: AL_ETOOLARGE, never more memory. */
    enum { N = 1000 };
    uint8_t *big = malloc(4 + N * 2);
    AL_ASSERT(big);
    al_put_be32(big, N);
    memset(big + 4, 0, N * 2); /* N empty topic names */
    kafka_arena_init(&a, 4096);
    rd = al_rd_make(big, 4 + N * 2);
    CHECK_EQ(kafka_MetadataRequest_decode(&rd, 0, &m, &a), AL_ETOOLARGE);
    CHECK(a.used <= 4096);
    kafka_arena_free(&a);
    kafka_arena_init(&a, 1 << 20);
    rd = al_rd_make(big, 4 + N * 2);
    CHECK_EQ(kafka_MetadataRequest_decode(&rd, 0, &m, &a), 0);
    CHECK_EQ(m.Topics_count, N);
    kafka_arena_free(&a);
    free(big);
}

/* The generic JSON printer walks the field tables: names, versions, nulls, nested arrays. */
TEST(json_print_from_tables)
{
    const uint8_t body[] = {0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 't', 0x00, 0x02, 'u', 'v'};
    kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    kafka_MetadataRequest m;
    al_rd rd = al_rd_make(body, sizeof(body));
    CHECK_EQ(kafka_MetadataRequest_decode(&rd, 0, &m, &a), 0);
    char *txt = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&txt, &len);
    CHECK(f != NULL);
    kafka_struct_print_json(f, &kafka_MetadataRequest_desc, 0, &m);
    fputc('|', f);
    m.Topics[1].Name.len = -1; /* v4: null names are not in the schema, but printing is total */
    kafka_struct_print_json(f, &kafka_MetadataRequest_desc, 4, &m);
    fputc('|', f);
    kafka_ConsumerGroupHeartbeatResponse cg;
    kafka_ConsumerGroupHeartbeatResponse_init(&cg);
    kafka_struct_print_json(f, &kafka_ConsumerGroupHeartbeatResponse_desc, 0, &cg);
    fclose(f);
    const char *want =
        "{\"Topics\":[{\"Name\":\"t\"},{\"Name\":\"uv\"}]}|"
        "{\"Topics\":[{\"Name\":\"t\"},{\"Name\":null}],\"AllowAutoTopicCreation\":true}|"
        "{\"ThrottleTimeMs\":0,\"ErrorCode\":0,\"ErrorMessage\":null,\"MemberId\":null,"
        "\"MemberEpoch\":0,\"HeartbeatIntervalMs\":0,\"Assignment\":null}";
    if (strcmp(txt, want)) fprintf(stderr, "    got  %s\n    want %s\n", txt, want);
    CHECK(strcmp(txt, want) == 0);
    free(txt);
    kafka_arena_free(&a);
}

TEST(arena_limit_reset_reuse)
{
    kafka_arena a;
    kafka_arena_init(&a, 100000);
    void *p1 = kafka_arena_alloc(&a, 10);
    CHECK(p1 != NULL);
    CHECK(((uintptr_t)p1 & 15) == 0);
    CHECK(kafka_arena_alloc(&a, 200000) == NULL);
    for (int i = 0; i < 5; i++) CHECK(kafka_arena_alloc(&a, 15000) != NULL);
    CHECK(kafka_arena_alloc(&a, 30000) == NULL); /* 75k + 30k > 100k */
    size_t used = a.used;
    CHECK(used <= 100000);
    kafka_arena_reset(&a);
    CHECK_EQ(a.used, 0);
    void *p2 = kafka_arena_alloc(&a, 10);
    CHECK(p2 == p1); /* first block kept */
    for (int i = 0; i < 5; i++) CHECK(kafka_arena_alloc(&a, 15000) != NULL);
    CHECK(kafka_arena_alloc(&a, 0) != NULL);
    kafka_arena_free(&a);
    CHECK(a.head == NULL);
}

/* The arena sizing rule in codec.h: 32 x the wire bytes is enough for any request. Checked on
 * filled messages of every request version and on the worst case named there (FetchRequest
 * v12 with many topics of empty name and no partitions: 3 wire bytes each). */
TEST(arena_sizing_rule_holds)
{
    uint64_t seed = test_seed();
    int checked = 0;
    kafka_arena fa;
    kafka_arena_init(&fa, ARENA_LIMIT);
    for (size_t i = 0; i < kafka_msg_desc_count; i++) {
        const struct kafka_msg_desc *d = &kafka_msg_descs[i];
        if (strcmp(d->kind, "request")) continue;
        void *m = calloc(1, d->struct_size), *back = calloc(1, d->struct_size);
        AL_ASSERT(m && back);
        for (int16_t v = d->min_version; v <= d->max_version; v++) {
            for (int round = 0; round < 4; round++) {
                kafka_arena_reset(&fa);
                kafka_filler f = {.rng = seed + i * 77 + (uint64_t)v * 5 + (uint64_t)round,
                                  .arena = &fa, .tagged = round & 1, .nulls = false,
                                  .max_count = round < 2 ? 1 : 3};
                kafka_msg_fill_test(d, m, v, &f);
                size_t len;
                int rc;
                uint8_t *buf = encode_msg(d, v, m, &len, &rc);
                CHECK(buf != NULL);
                kafka_arena da;
                kafka_arena_init(&da, 32 * len);
                al_rd rd = al_rd_make(buf, len);
                rc = d->decode(&rd, v, back, &da);
                if (rc) fprintf(stderr, "    %s v%d: %zu wire bytes need more than %zu: %s\n",
                                d->name, v, len, 32 * len, al_strerror(rc));
                CHECK_EQ(rc, 0);
                kafka_arena_free(&da);
                free(buf);
                checked++;
            }
        }
        free(m);
        free(back);
    }
    kafka_arena_free(&fa);
    CHECK(checked > 1000);

    enum { NT = 2000 };
    kafka_FetchRequest_FetchTopic *topics = calloc(NT, sizeof(*topics));
    AL_ASSERT(topics);
    for (int i = 0; i < NT; i++) {
        kafka_FetchRequest_FetchTopic_init(&topics[i]);
        topics[i].Topic.ptr = "";
    }
    kafka_FetchRequest fr;
    kafka_FetchRequest_init(&fr);
    fr.Topics = topics;
    fr.Topics_count = NT;
    size_t len;
    int rc;
    uint8_t *buf = encode_msg(kafka_request_desc(KAFKA_API_FETCH), 12, &fr, &len, &rc);
    CHECK(buf != NULL);
    kafka_arena da;
    kafka_arena_init(&da, 32 * len);
    al_rd rd = al_rd_make(buf, len);
    kafka_FetchRequest back;
    CHECK_EQ(kafka_FetchRequest_decode(&rd, 12, &back, &da), 0);
    CHECK_EQ(back.Topics_count, NT);
    CHECK(da.used > 14 * len); /* it really is close to the worst case */
    kafka_arena_free(&da);
    free(buf);
    free(topics);
}

/* Throughput figures for the hot messages (printed, with only a loose sanity bound). */
TEST(codec_speed_figures)
{
    static uint8_t records[1024];
    kafka_ProduceRequest_PartitionProduceData part;
    kafka_ProduceRequest_PartitionProduceData_init(&part);
    part.Index = 3;
    part.Records.ptr = records;
    part.Records.len = sizeof(records);
    kafka_ProduceRequest_TopicProduceData topic;
    kafka_ProduceRequest_TopicProduceData_init(&topic);
    topic.Name = kafka_str_from("orders");
    topic.PartitionData = &part;
    topic.PartitionData_count = 1;
    kafka_ProduceRequest p;
    kafka_ProduceRequest_init(&p);
    p.Acks = -1;
    p.TimeoutMs = 30000;
    p.TopicData = &topic;
    p.TopicData_count = 1;
    uint8_t buf[2048];
    al_wr wr = al_wr_make(buf, sizeof(buf));
    CHECK_EQ(kafka_ProduceRequest_encode(&wr, 9, &p), 0);
    size_t len = (size_t)(wr.p - buf);
    kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    kafka_ProduceRequest back;
    double t0 = now_s(), dt;
    long n = 0;
    do {
        for (int i = 0; i < 1000; i++, n++) {
            kafka_arena_reset(&a);
            al_rd rd = al_rd_make(buf, len);
            CHECK_EQ(kafka_ProduceRequest_decode(&rd, 9, &back, &a), 0);
        }
        dt = now_s() - t0;
    } while (dt < 0.3 && n < 10000000);
    printf("  ProduceRequest v9 decode (1 topic, 1 partition, 1 KiB records): %.0f ns\n",
           dt * 1e9 / (double)n);
    CHECK(kafka_ProduceRequest_equal(&p, &back));

    enum { NP = 16 };
    kafka_FetchResponse_PartitionData pd[NP];
    for (int i = 0; i < NP; i++) {
        kafka_FetchResponse_PartitionData_init(&pd[i]);
        pd[i].PartitionIndex = i;
        pd[i].HighWatermark = 1000 + i;
        pd[i].Records.ptr = records;
        pd[i].Records.len = 64;
    }
    kafka_FetchResponse_FetchableTopicResponse ft;
    kafka_FetchResponse_FetchableTopicResponse_init(&ft);
    ft.Topic = kafka_str_from("orders");
    ft.Partitions = pd;
    ft.Partitions_count = NP;
    kafka_FetchResponse fr;
    kafka_FetchResponse_init(&fr);
    fr.Responses = &ft;
    fr.Responses_count = 1;
    t0 = now_s();
    n = 0;
    do {
        for (int i = 0; i < 1000; i++, n++) {
            size_t sz = kafka_FetchResponse_size(12, &fr);
            wr = al_wr_make(buf, sizeof(buf));
            CHECK_EQ(kafka_FetchResponse_encode(&wr, 12, &fr), 0);
            CHECK_EQ((size_t)(wr.p - buf), sz);
        }
        dt = now_s() - t0;
    } while (dt < 0.3 && n < 10000000);
    printf("  FetchResponse v12 size+encode (16 partitions x 64 B records): %.0f ns\n",
           dt * 1e9 / (double)n);
    CHECK(dt * 1e9 / (double)n < 1e6); /* far above any sane figure; catches pathologies */
    kafka_arena_free(&a);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
