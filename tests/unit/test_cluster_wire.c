/*
 * test_cluster_wire.c — the pure pieces of the node service (src/cluster/cluster_wire.c): the
 * partition Raft group id and the topic-id collision rule, seed list parsing, the JOIN request
 * and answer encodings, and the forwarded topic operation with its result (round trips, every
 * truncation refused, random bytes never crash the decoders).
 */
#include "test.h"

#include "cluster/cluster.h"
#include "cluster/data_plane.h"
#include "kafka/errors.h"

#include <stdio.h>
#include <stdlib.h>

TEST(group_id_layout)
{
    uint8_t id[16] = {0xab, 0xcd, 0xef, 0x12, 0x34, 0x56, 0x78, 9, 9, 9, 9, 9, 9, 9, 9, 9};
    uint64_t bits = 0xabcdef123456ull & ((1ull << 44) - 1);
    CHECK(cluster_group_id(id, 0) == (bits << 20 | 1));
    CHECK(cluster_group_id(id, 41) == (bits << 20 | 42));
    uint8_t zero[16] = {0};
    CHECK(cluster_group_id(zero, 0) == 1); /* never the controller's group 0 */
    /* Bytes past the first six do not matter; the top 4 bits of the u48 do not either. */
    uint8_t other[16];
    memcpy(other, id, 16);
    other[15] = 1;
    other[0] ^= 0xf0;
    CHECK(cluster_group_id(other, 3) == cluster_group_id(id, 3));
}

TEST(topic_id_collision)
{
    topic_table tt;
    CHECK(topic_table_init(&tt, NULL, NULL) == 0);
    uint8_t a[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    CHECK(topic_table_create(&tt, "a", 1, 1, NULL, 0, false, a) == 0);
    uint8_t b[16];
    memcpy(b, a, 16);
    b[10] ^= 0xff; /* same 44 group bits, another id */
    CHECK(cluster_topic_id_collides(&tt, b));
    CHECK(!cluster_topic_id_collides(&tt, a)); /* the topic itself */
    b[5] ^= 1;
    CHECK(!cluster_topic_id_collides(&tt, b));
    topic_table_free(&tt);
}

TEST(seeds_parse)
{
    char hosts[4][CONFIG_HOST_MAX];
    uint16_t ports[4];
    CHECK_EQ(cluster_parse_seeds("127.0.0.1:33145", hosts, ports, 4), 1);
    CHECK(!strcmp(hosts[0], "127.0.0.1") && ports[0] == 33145);
    CHECK_EQ(cluster_parse_seeds(" a:1, b.example:2 ,c:65535", hosts, ports, 4), 3);
    CHECK(!strcmp(hosts[1], "b.example") && ports[1] == 2 && ports[2] == 65535);
    CHECK_EQ(cluster_parse_seeds("", hosts, ports, 4), 0);
    CHECK_EQ(cluster_parse_seeds("a", hosts, ports, 4), AL_EINVAL);
    CHECK_EQ(cluster_parse_seeds("a:", hosts, ports, 4), AL_EINVAL);
    CHECK_EQ(cluster_parse_seeds(":5", hosts, ports, 4), AL_EINVAL);
    CHECK_EQ(cluster_parse_seeds("a:0", hosts, ports, 4), AL_EINVAL);
    CHECK_EQ(cluster_parse_seeds("a:65536", hosts, ports, 4), AL_EINVAL);
    CHECK_EQ(cluster_parse_seeds("a:1x", hosts, ports, 4), AL_EINVAL);
    CHECK_EQ(cluster_parse_seeds("a:1,b:2,c:3,d:4,e:5", hosts, ports, 4), AL_EINVAL);
    al_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    CHECK(!cluster_mode(&cfg));
    snprintf(cfg.seed_servers, sizeof(cfg.seed_servers), " , ");
    CHECK(!cluster_mode(&cfg));
    snprintf(cfg.seed_servers, sizeof(cfg.seed_servers), "x:1");
    CHECK(cluster_mode(&cfg));
}

/* Every strict prefix of an encoding must be refused (never read past the end). */
#define CHECK_PREFIXES(buf, n, decode_call)                                                      \
    do {                                                                                         \
        for (size_t cut = 0; cut < (size_t)(n); cut++) {                                         \
            size_t len = cut;                                                                    \
            CHECK(decode_call != 0);                                                             \
        }                                                                                        \
    } while (0)

TEST(join_request_round_trip)
{
    cluster_join_req q = {.node_id = 7, .kafka_port = 9092, .rpc_port = 33145, .cores = 4};
    snprintf(q.kafka_host, sizeof(q.kafka_host), "10.0.0.7");
    snprintf(q.rpc_host, sizeof(q.rpc_host), "10.0.0.7");
    snprintf(q.rack, sizeof(q.rack), "rack-a");
    uint8_t buf[1024];
    int64_t n = cluster_join_req_encode(&q, buf, sizeof(buf));
    CHECK(n > 0);
    cluster_join_req d;
    CHECK_EQ(cluster_join_req_decode(buf, (size_t)n, &d), 0);
    CHECK(d.node_id == 7 && d.kafka_port == 9092 && d.rpc_port == 33145 && d.cores == 4);
    CHECK(!strcmp(d.kafka_host, "10.0.0.7") && !strcmp(d.rack, "rack-a"));
    CHECK_PREFIXES(buf, n, cluster_join_req_decode(buf, len, &d));
    buf[n] = 0;
    CHECK_EQ(cluster_join_req_decode(buf, (size_t)n + 1, &d), AL_EMALFORMED); /* trailing */
    CHECK_EQ(cluster_join_req_encode(&q, buf, 10), AL_ETOOLARGE);
    buf[0] = 2;
    CHECK_EQ(cluster_join_req_decode(buf, (size_t)n, &d), AL_EUNSUPPORTED);
    q.node_id = -1;
    n = cluster_join_req_encode(&q, buf, sizeof(buf));
    CHECK_EQ(cluster_join_req_decode(buf, (size_t)n, &d), AL_EMALFORMED);
}

TEST(join_answer_round_trip)
{
    cluster_join_peer peers[3] = {{1, "127.0.0.1", 1001}, {2, "127.0.0.2", 1002},
                                  {3, "host-3", 1003}};
    cluster_join_resp r = {.error = 0, .leader_id = 1, .leader_port = 1001, .offset = 42,
                           .has_cluster_id = true, .n_brokers = 3, .brokers = peers};
    snprintf(r.leader_host, sizeof(r.leader_host), "127.0.0.1");
    snprintf(r.message, sizeof(r.message), "welcome");
    for (int i = 0; i < 16; i++) r.cluster_id[i] = (uint8_t)(i * 7);
    size_t cap = cluster_join_resp_size(&r);
    uint8_t *buf = malloc(cap + 1);
    CHECK(buf != NULL);
    int64_t n = cluster_join_resp_encode(&r, buf, cap);
    CHECK(n > 0 && (size_t)n <= cap);
    cluster_join_resp d;
    CHECK_EQ(cluster_join_resp_decode(buf, (size_t)n, &d), 0);
    CHECK(d.error == 0 && d.leader_id == 1 && d.leader_port == 1001 && d.offset == 42);
    CHECK(d.has_cluster_id && !memcmp(d.cluster_id, r.cluster_id, 16));
    CHECK(!strcmp(d.message, "welcome") && d.n_brokers == 3);
    CHECK(d.brokers[2].node_id == 3 && !strcmp(d.brokers[2].rpc_host, "host-3") &&
          d.brokers[2].rpc_port == 1003);
    free(d.brokers);
    for (size_t cut = 0; cut < (size_t)n; cut++) {
        CHECK(cluster_join_resp_decode(buf, cut, &d) != 0);
        CHECK(d.brokers == NULL); /* nothing to free after an error */
    }
    /* A NUL inside a string is malformed. */
    buf[1 + 2 + 2] = 0; /* first byte of the message text */
    CHECK_EQ(cluster_join_resp_decode(buf, (size_t)n, &d), AL_EMALFORMED);
    free(buf);
    /* The refusal form: no brokers. */
    cluster_join_resp e = {.error = KAFKA_ERR_DUPLICATE_BROKER_REGISTRATION, .leader_id = -1,
                           .offset = -1};
    uint8_t small[1024];
    n = cluster_join_resp_encode(&e, small, sizeof(small));
    CHECK(n > 0);
    CHECK_EQ(cluster_join_resp_decode(small, (size_t)n, &d), 0);
    CHECK(d.error == KAFKA_ERR_DUPLICATE_BROKER_REGISTRATION && d.n_brokers == 0);
}

TEST(forwarded_op_round_trip)
{
    topic_config_kv kv[3] = {{"retention.ms", "1000"}, {"cleanup.policy", "compact"},
                             {"segment.bytes", ""}};
    bool del[3] = {false, false, true};
    struct data_topic_item items[2];
    memset(items, 0, sizeof(items));
    snprintf(items[0].name, sizeof(items[0].name), "orders");
    items[0].partitions = 6;
    items[0].replication_factor = -1;
    items[0].configs = kv;
    items[0].del = del;
    items[0].n_configs = 3;
    snprintf(items[1].name, sizeof(items[1].name), "payments");
    items[1].partitions = 1;
    items[1].replication_factor = 3;
    struct data_topic_op op = {.kind = DATA_OP_SET_CONFIGS, .items = items, .n = 2};
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_EQ(cluster_op_encode(&op, &buf, &len), 0);
    struct data_topic_op *d = NULL;
    CHECK_EQ(cluster_op_decode(buf, len, &d), 0);
    CHECK(d && d->kind == DATA_OP_SET_CONFIGS && d->n == 2 && !d->done && !d->ctx);
    CHECK(!strcmp(d->items[0].name, "orders") && d->items[0].partitions == 6 &&
          d->items[0].replication_factor == -1 && d->items[0].n_configs == 3);
    CHECK(!strcmp(d->items[0].configs[1].value, "compact") && d->items[0].del[2] &&
          !d->items[0].del[0]);
    CHECK(!strcmp(d->items[1].name, "payments") && d->items[1].n_configs == 0 &&
          d->items[1].replication_factor == 3);
    /* The leader's answer travels back into the forwarding node's items. */
    d->items[0].err = kafka_err_to_internal(KAFKA_ERR_INVALID_REPLICATION_FACTOR);
    d->items[1].err = AL_EEXISTS;
    d->items[1].id[3] = 0x33;
    d->items[1].replication_factor = 3;
    uint8_t *res = NULL;
    size_t rlen = 0;
    CHECK_EQ(cluster_op_result_encode(d, 77, &res, &rlen), 0);
    int64_t off = 0;
    CHECK_EQ(cluster_op_result_decode(res, rlen, &op, &off), 0);
    CHECK(off == 77 && items[1].err == AL_EEXISTS && items[1].id[3] == 0x33);
    CHECK(kafka_err_from_internal(items[0].err) == KAFKA_ERR_INVALID_REPLICATION_FACTOR);
    for (size_t cut = 0; cut < rlen; cut++) CHECK(cluster_op_result_decode(res, cut, &op, &off));
    struct data_topic_op one = {.kind = DATA_OP_CREATE, .items = items, .n = 1};
    CHECK_EQ(cluster_op_result_decode(res, rlen, &one, &off), AL_EMALFORMED); /* count */
    free(res);
    free(d);
    for (size_t cut = 0; cut < len; cut++) {
        d = NULL;
        CHECK(cluster_op_decode(buf, cut, &d) != 0);
        CHECK(d == NULL);
    }
    buf[1] = 99; /* kind */
    CHECK_EQ(cluster_op_decode(buf, len, &d), AL_EMALFORMED);
    free(buf);
    op.kind = (enum data_topic_op_kind)0;
    CHECK_EQ(cluster_op_encode(&op, &buf, &len), AL_EINVAL);
}

TEST(kafka_error_carried_internally)
{
    CHECK_EQ(kafka_err_to_internal(0), 0);
    for (int16_t c = 1; c < 130; c++)
        CHECK_EQ(kafka_err_from_internal(kafka_err_to_internal(c)), c);
    CHECK_EQ(kafka_err_from_internal(AL_ENOTFOUND), KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION);
}

/* Random bytes (and random mutations of valid encodings) never crash the decoders. */
TEST(decoders_on_random_bytes)
{
    uint64_t seed = test_seed();
    uint64_t x = seed | 1;
    uint8_t buf[512];
    int rounds = 0, errors = 0;
    for (int round = 0; round < 20000; round++, rounds++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t len = x % sizeof(buf);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        if (len) buf[0] = 1; /* the format byte, so the decoders go further */
        cluster_join_req q;
        errors += cluster_join_req_decode(buf, len, &q) != 0;
        cluster_join_resp r;
        if (cluster_join_resp_decode(buf, len, &r) == 0) free(r.brokers);
        struct data_topic_op *op = NULL;
        if (cluster_op_decode(buf, len, &op) == 0) free(op);
    }
    CHECK_EQ(rounds, 20000);
    CHECK(errors > 0); /* random bytes are (almost always) refused */
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
