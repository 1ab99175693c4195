/*
 * test_kafka_dispatch.c — the Kafka dispatcher and the first handlers, without I/O: frames are
 * built with the codec, dispatched, and the response frames decoded and checked.
 */
#include "test.h"

#include "config/config.h"
#include "kafka/handlers.h"
#include "kafka/request.h"

#include <stdlib.h>

static al_config cfg;
static struct kafka_broker broker;
static int done_calls;

static void on_done(kafka_req *r)
{
    (void)r;
    done_calls++;
}

static void setup(void)
{
    config_init(&cfg);
    cfg.node_id = 7;
    broker.cfg = &cfg;
    broker.node_id = 7;
    broker.advertised_host = "127.0.0.1";
    broker.advertised_port = 19092;
    broker.cluster_id = "test-cluster-id";
    done_calls = 0;
}

/* Builds a request frame (without the size prefix): header for (key, ver), then body. */
static uint8_t *build_frame(int16_t key, int16_t ver, int32_t corr, const void *body,
                            size_t *len)
{
    int16_t hv = kafka_request_header_version(key, ver);
    kafka_RequestHeader h;
    kafka_RequestHeader_init(&h);
    h.RequestApiKey = key;
    h.RequestApiVersion = ver;
    h.CorrelationId = corr;
    h.ClientId = kafka_str_from("unit-test");
    size_t hs = kafka_RequestHeader_size(hv, &h);
    size_t bs = body ? kafka_request_size(key, ver, body) : 0;
    uint8_t *buf = malloc(hs + bs + 1);
    al_wr wr = al_wr_make(buf, hs + bs);
    CHECK_EQ(kafka_RequestHeader_encode(&wr, hv, &h), 0);
    if (body) CHECK_EQ(kafka_request_encode(key, ver, &wr, body), 0);
    CHECK_EQ(wr.err, 0);
    *len = hs + bs;
    return buf;
}

static kafka_req *run(uint8_t *frame, size_t len)
{
    kafka_req *r = kafka_req_new(frame, len);
    CHECK(r);
    r->broker = &broker;
    r->on_done = on_done;
    r->owner = &broker;
    kafka_dispatch(r);
    return r;
}

/* Checks the response frame's size prefix and correlation id, positions rd at the body. */
static al_rd resp_body(const kafka_req *r, int32_t corr, int16_t hv)
{
    CHECK(r->state == KAFKA_REQ_DONE && !r->fail && r->resp);
    CHECK_EQ(al_be32(r->resp), r->resp_len - 4);
    al_rd rd = al_rd_make(r->resp + 4, r->resp_len - 4);
    kafka_ResponseHeader h;
    kafka_arena a;
    kafka_arena_init(&a, 1 << 16);
    CHECK_EQ(kafka_ResponseHeader_decode(&rd, hv, &h, &a), 0);
    kafka_arena_free(&a);
    CHECK_EQ(h.CorrelationId, corr);
    return rd;
}

TEST(api_versions_all_versions)
{
    setup();
    for (int16_t v = 0; v <= 3; v++) {
        kafka_ApiVersionsRequest q;
        kafka_ApiVersionsRequest_init(&q);
        q.ClientSoftwareName = kafka_str_from("librdkafka");
        q.ClientSoftwareVersion = kafka_str_from("2.0.2");
        size_t len;
        uint8_t *f = build_frame(KAFKA_API_API_VERSIONS, v, 100 + v, &q, &len);
        kafka_req *r = run(f, len);
        CHECK_EQ(done_calls, v + 1);
        al_rd rd = resp_body(r, 100 + v, 0); /* ApiVersions: header v0 always */
        kafka_ApiVersionsResponse p;
        kafka_arena a;
        kafka_arena_init(&a, 1 << 16);
        CHECK_EQ(kafka_ApiVersionsResponse_decode(&rd, v, &p, &a), 0);
        CHECK_EQ(al_rd_left(&rd), 0);
        CHECK_EQ(p.ErrorCode, 0);
        CHECK_EQ(p.ApiKeys_count, (int32_t)kafka_handler_count);
        bool saw_av = false, saw_md = false;
        for (int32_t i = 0; i < p.ApiKeys_count; i++) {
            if (i) CHECK(p.ApiKeys[i - 1].ApiKey < p.ApiKeys[i].ApiKey);
            const struct kafka_handler *h = kafka_handler_find(p.ApiKeys[i].ApiKey);
            CHECK(h);
            CHECK_EQ(p.ApiKeys[i].MinVersion, h->min_version);
            CHECK_EQ(p.ApiKeys[i].MaxVersion, h->max_version);
            if (p.ApiKeys[i].ApiKey == 18) {
                saw_av = true;
                CHECK_EQ(p.ApiKeys[i].MinVersion, 0);
                CHECK_EQ(p.ApiKeys[i].MaxVersion, 3);
            }
            if (p.ApiKeys[i].ApiKey == 3) saw_md = true;
        }
        CHECK(saw_av && saw_md);
        kafka_arena_free(&a);
        kafka_req_free(r);
    }
}

TEST(api_versions_unsupported_version_v0_form)
{
    setup();
    for (int16_t v = 4; v <= 9; v += 5) {
        /* The body of a version we do not know is not parsed: send junk after the header. */
        uint8_t junk[3] = {0xde, 0xad, 0xbe};
        size_t hl;
        uint8_t *h = build_frame(KAFKA_API_API_VERSIONS, 3, 55, NULL, &hl);
        h[2] = 0;
        h[3] = (uint8_t)v; /* version field */
        uint8_t *f = malloc(hl + sizeof(junk));
        memcpy(f, h, hl);
        memcpy(f + hl, junk, sizeof(junk));
        free(h);
        kafka_req *r = run(f, hl + sizeof(junk));
        al_rd rd = resp_body(r, 55, 0);
        kafka_ApiVersionsResponse p;
        kafka_arena a;
        kafka_arena_init(&a, 1 << 16);
        CHECK_EQ(kafka_ApiVersionsResponse_decode(&rd, 0, &p, &a), 0);
        CHECK_EQ(al_rd_left(&rd), 0);
        CHECK_EQ(p.ErrorCode, KAFKA_ERR_UNSUPPORTED_VERSION);
        CHECK_EQ(p.ApiKeys_count, 1);
        CHECK_EQ(p.ApiKeys[0].ApiKey, 18);
        CHECK_EQ(p.ApiKeys[0].MinVersion, 0);
        CHECK_EQ(p.ApiKeys[0].MaxVersion, 3);
        kafka_arena_free(&a);
        kafka_req_free(r);
    }
}

TEST(api_versions_v3_invalid_software_name)
{
    setup();
    kafka_ApiVersionsRequest q;
    kafka_ApiVersionsRequest_init(&q);
    q.ClientSoftwareName = kafka_str_from("bad name!");
    q.ClientSoftwareVersion = kafka_str_from("1.0");
    size_t len;
    uint8_t *f = build_frame(KAFKA_API_API_VERSIONS, 3, 9, &q, &len);
    kafka_req *r = run(f, len);
    al_rd rd = resp_body(r, 9, 0);
    kafka_ApiVersionsResponse p;
    kafka_arena a;
    kafka_arena_init(&a, 1 << 16);
    CHECK_EQ(kafka_ApiVersionsResponse_decode(&rd, 3, &p, &a), 0);
    CHECK_EQ(p.ErrorCode, KAFKA_ERR_INVALID_REQUEST);
    kafka_arena_free(&a);
    kafka_req_free(r);
    CHECK(kafka_software_str_valid(kafka_str_from("a")));
    CHECK(kafka_software_str_valid(kafka_str_from("apache-kafka.java")));
    CHECK(!kafka_software_str_valid(kafka_str_from("-a")));
    CHECK(!kafka_software_str_valid(kafka_str_from("a.")));
    CHECK(!kafka_software_str_valid(kafka_str_from("")));
}

TEST(metadata_all_versions)
{
    setup();
    for (int16_t v = 0; v <= 12; v++) {
        kafka_MetadataRequest q;
        kafka_MetadataRequest_init(&q);
        kafka_MetadataRequest_MetadataRequestTopic topics[2];
        kafka_MetadataRequest_MetadataRequestTopic_init(&topics[0]);
        kafka_MetadataRequest_MetadataRequestTopic_init(&topics[1]);
        topics[0].Name = kafka_str_from("orders");
        topics[1].Name = kafka_str_from("payments");
        int ask = v % 3; /* 0: all (null from v1, empty at v0), 1..2: named topics */
        if (ask == 0) {
            q.Topics_count = v == 0 ? 0 : -1;
        } else {
            q.Topics_count = ask;
            q.Topics = topics;
        }
        size_t len;
        uint8_t *f = build_frame(KAFKA_API_METADATA, v, 1000 + v, &q, &len);
        kafka_req *r = run(f, len);
        al_rd rd = resp_body(r, 1000 + v, v >= 9 ? 1 : 0);
        kafka_MetadataResponse p;
        kafka_arena a;
        kafka_arena_init(&a, 1 << 16);
        CHECK_EQ(kafka_MetadataResponse_decode(&rd, v, &p, &a), 0);
        CHECK_EQ(al_rd_left(&rd), 0);
        CHECK_EQ(p.Brokers_count, 1);
        CHECK_EQ(p.Brokers[0].NodeId, 7);
        CHECK_EQ(p.Brokers[0].Port, 19092);
        CHECK(p.Brokers[0].Host.len == 9 && !memcmp(p.Brokers[0].Host.ptr, "127.0.0.1", 9));
        if (v >= 1) CHECK_EQ(p.ControllerId, 7);
        if (v >= 2) CHECK(p.ClusterId.len == 15 && !memcmp(p.ClusterId.ptr, "test-cluster-id", 15));
        CHECK_EQ(p.Topics_count, ask);
        for (int32_t i = 0; i < p.Topics_count; i++) {
            CHECK_EQ(p.Topics[i].ErrorCode, KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION);
            CHECK(kafka_str_equal(p.Topics[i].Name, topics[i].Name));
            CHECK_EQ(p.Topics[i].Partitions_count, 0);
        }
        kafka_arena_free(&a);
        kafka_req_free(r);
    }
}

TEST(metadata_v12_by_topic_id)
{
    setup();
    kafka_MetadataRequest q;
    kafka_MetadataRequest_init(&q);
    kafka_MetadataRequest_MetadataRequestTopic t;
    kafka_MetadataRequest_MetadataRequestTopic_init(&t);
    t.Name.ptr = NULL;
    t.Name.len = -1;
    memset(t.TopicId.b, 0xab, 16);
    q.Topics_count = 1;
    q.Topics = &t;
    size_t len;
    uint8_t *f = build_frame(KAFKA_API_METADATA, 12, 5, &q, &len);
    kafka_req *r = run(f, len);
    al_rd rd = resp_body(r, 5, 1);
    kafka_MetadataResponse p;
    kafka_arena a;
    kafka_arena_init(&a, 1 << 16);
    CHECK_EQ(kafka_MetadataResponse_decode(&rd, 12, &p, &a), 0);
    CHECK_EQ(p.Topics_count, 1);
    CHECK_EQ(p.Topics[0].ErrorCode, KAFKA_ERR_UNKNOWN_TOPIC_ID);
    CHECK_EQ(p.Topics[0].Name.len, -1);
    CHECK(kafka_uuid_equal(&p.Topics[0].TopicId, &t.TopicId));
    kafka_arena_free(&a);
    kafka_req_free(r);
}

TEST(rejects_close_the_connection)
{
    setup();
    size_t len;
    /* Unknown API key. */
    uint8_t *f = build_frame(KAFKA_API_API_VERSIONS, 0, 1, NULL, &len);
    f[0] = 0x7f;
    f[1] = 0x00;
    kafka_req *r = run(f, len);
    CHECK(r->state == KAFKA_REQ_DONE && r->fail < 0 && !r->resp && r->fail_reason);
    CHECK_EQ(done_calls, 1);
    kafka_req_free(r);
    /* A real API we do not implement (Produce). */
    f = build_frame(KAFKA_API_PRODUCE, 7, 1, NULL, &len);
    r = run(f, len);
    CHECK(r->fail < 0);
    kafka_req_free(r);
    /* Metadata above our range. */
    f = build_frame(KAFKA_API_METADATA, 12, 1, NULL, &len);
    f[3] = 13;
    r = run(f, len);
    CHECK(r->fail < 0);
    kafka_req_free(r);
    /* Shorter than a header. */
    f = malloc(5);
    memcpy(f, "\x00\x12\x00\x00\x00", 5);
    r = run(f, 5);
    CHECK(r->fail < 0);
    kafka_req_free(r);
    /* Truncated body: every strict prefix of a valid Metadata v1 request with topics. */
    kafka_MetadataRequest q;
    kafka_MetadataRequest_init(&q);
    kafka_MetadataRequest_MetadataRequestTopic t;
    kafka_MetadataRequest_MetadataRequestTopic_init(&t);
    t.Name = kafka_str_from("orders");
    q.Topics_count = 1;
    q.Topics = &t;
    uint8_t *full = build_frame(KAFKA_API_METADATA, 1, 1, &q, &len);
    for (size_t cut = 0; cut < len; cut++) {
        f = malloc(cut + 1);
        memcpy(f, full, cut);
        r = run(f, cut);
        CHECK(r->state == KAFKA_REQ_DONE && r->fail < 0);
        kafka_req_free(r);
    }
    free(full);
}

/* Deferred completion: a req left DEFERRED completes later through on_done, exactly once. */
TEST(deferred_completion_calls_on_done)
{
    setup();
    uint8_t *f = malloc(8);
    kafka_req *r = kafka_req_new(f, 8);
    r->broker = &broker;
    r->on_done = on_done;
    r->api_key = KAFKA_API_METADATA;
    r->api_version = 1;
    r->correlation_id = 77;
    r->state = KAFKA_REQ_DEFERRED;
    kafka_MetadataResponse p;
    kafka_MetadataResponse_init(&p);
    p.ControllerId = 3;
    CHECK_EQ(kafka_req_respond(r, &p), 0);
    CHECK_EQ(done_calls, 1);
    al_rd rd = resp_body(r, 77, 0);
    kafka_MetadataResponse back;
    kafka_arena a;
    kafka_arena_init(&a, 1 << 16);
    CHECK_EQ(kafka_MetadataResponse_decode(&rd, 1, &back, &a), 0);
    CHECK_EQ(back.ControllerId, 3);
    kafka_arena_free(&a);
    kafka_req_free(r);

    f = malloc(8);
    r = kafka_req_new(f, 8);
    r->on_done = on_done;
    r->state = KAFKA_REQ_DEFERRED;
    kafka_req_respond_none(r);
    CHECK(r->no_response && !r->resp && r->state == KAFKA_REQ_DONE);
    CHECK_EQ(done_calls, 2);
    kafka_req_free(r);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
