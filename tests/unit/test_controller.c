/*
 * test_controller.c — the controller state machine (src/cluster/controller*.c): command encoding
 * round trips and decoder robustness, apply results and errors through real record batches,
 * idempotent replay, determinism (two instances fed the same random command sequence encode to
 * the same snapshot, and so does a third restored from a mid-way snapshot plus the log suffix),
 * snapshot round trip and corruption detection, placement properties over random clusters,
 * balancing, decommission and maintenance plans, and the local reconciliation plan.
 * Random parts print their seed (AL_TEST_SEED replays).
 */
#include "cluster/controller.h"
#include "cluster/controller_place.h"
#include "kafka/errors.h"
#include "reactor/io.h"
#include "storage/batch.h"
#include "test.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static uint32_t rnd_below(uint32_t n)
{
    return n ? (uint32_t)(rnd() % n) : 0;
}

static void seed_rng(void)
{
    rng_state = test_seed() | 1;
}

/* A log of group 0: every applied batch gets the next offsets. */
typedef struct fake_log {
    int64_t next;
} fake_log;

/* Collected results of one apply. */
typedef struct results {
    int n;
    controller_result r[64];
} results;

static void on_result(void *arg, const controller_cmd *c, const controller_result *r)
{
    results *rs = arg;
    (void)c;
    if (rs && rs->n < 64) rs->r[rs->n++] = *r;
}

/* Builds a batch of cmds, stamps it at the log's next offset, applies it to st. Returns the
 * apply result; the batch bytes are returned in *batch/len when batch is not NULL. */
static int apply_cmds(controller_state *st, fake_log *lg, const controller_cmd *cmds, int n,
                      results *rs, uint8_t **batch, size_t *len)
{
    uint8_t *b;
    size_t blen;
    int err = controller_batch_build(cmds, n, 1000, &b, &blen);
    if (err) return err;
    storage_batch_stamp(b, lg->next, 1);
    lg->next += n;
    if (rs) rs->n = 0;
    err = controller_apply(st, b, blen, on_result, rs);
    if (batch) {
        *batch = b;
        *len = blen;
    } else {
        free(b);
    }
    return err;
}

/* Applies one command and returns its Kafka error (or a negative apply error). */
static int apply1(controller_state *st, fake_log *lg, const controller_cmd *c)
{
    results rs;
    int err = apply_cmds(st, lg, c, 1, &rs, NULL, NULL);
    if (err) return err;
    if (rs.n != 1) return -1000;
    return rs.r[0].error;
}

static controller_cmd reg_cmd(int32_t node, uint32_t cores)
{
    controller_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_REGISTER_NODE;
    c.proposer = node;
    c.request_id = (uint64_t)node * 1000 + 1;
    c.ts_ms = 5000 + node;
    c.broker.node_id = node;
    snprintf(c.broker.kafka_host, sizeof(c.broker.kafka_host), "10.0.0.%d", node + 1);
    c.broker.kafka_port = 9092;
    snprintf(c.broker.rpc_host, sizeof(c.broker.rpc_host), "10.0.0.%d", node + 1);
    c.broker.rpc_port = 33145;
    c.broker.cores = cores;
    return c;
}

static void make_id(uint8_t id[16], uint32_t k)
{
    memset(id, 0, 16);
    id[0] = 0xa5;
    memcpy(id + 4, &k, 4);
    id[6] = 0x40;
}

/* A CREATE_TOPIC command placed by controller_place (assignment malloc'd into c->assign). */
static int create_cmd(const controller_state *st, controller_cmd *c, const char *name,
                      int32_t partitions, int16_t rf, uint32_t idk)
{
    memset(c, 0, sizeof(*c));
    c->type = CONTROLLER_CMD_CREATE_TOPIC;
    c->proposer = 0;
    c->request_id = idk;
    c->ts_ms = 7000;
    snprintf(c->name, sizeof(c->name), "%s", name);
    make_id(c->topic_id, idk);
    c->partitions = partitions;
    c->replication_factor = rf;
    c->assign = calloc((size_t)partitions, sizeof(topic_assignment));
    c->n_assign = partitions;
    return controller_place(st, partitions, rf, c->assign);
}

static int create_topic(controller_state *st, fake_log *lg, const char *name, int32_t partitions,
                        int16_t rf, uint32_t idk)
{
    controller_cmd c;
    int err = create_cmd(st, &c, name, partitions, rf, idk);
    if (!err) err = apply1(st, lg, &c);
    free(c.assign);
    return err;
}

static void cluster(controller_state *st, fake_log *lg, int nodes, uint32_t cores)
{
    controller_state_init(st);
    lg->next = 0;
    for (int i = 0; i < nodes; i++) {
        controller_cmd c = reg_cmd(i + 1, cores);
        AL_ASSERT(apply1(st, lg, &c) == 0);
    }
}

static bool snapshots_equal(const controller_state *a, const controller_state *b)
{
    uint8_t *x, *y;
    size_t xl, yl;
    AL_ASSERT(controller_snapshot_encode(a, &x, &xl) == 0);
    AL_ASSERT(controller_snapshot_encode(b, &y, &yl) == 0);
    bool eq = xl == yl && !memcmp(x, y, xl);
    free(x);
    free(y);
    return eq;
}

/* ---- commands ---- */

/* One command of every type with every field set. */
static int sample_cmds(controller_cmd *v, topic_config_kv *kv, char (*rm)[TOPIC_CONFIG_KEY_MAX],
                       topic_assignment *as)
{
    memset(kv, 0, 2 * sizeof(*kv));
    strcpy(kv[0].key, "retention.ms");
    strcpy(kv[0].value, "1000");
    strcpy(kv[1].key, "cleanup.policy");
    strcpy(kv[1].value, "compact");
    strcpy(rm[0], "segment.bytes");
    memset(as, 0, 2 * sizeof(*as));
    as[0].n = 3;
    as[0].nodes[0] = 1, as[0].nodes[1] = 2, as[0].nodes[2] = 3;
    as[0].shards[0] = 0, as[0].shards[1] = 1, as[0].shards[2] = 1;
    as[1].n = 1;
    as[1].nodes[0] = 7;
    as[1].shards[0] = 3;
    int n = 0;
    for (int type = 1; type <= CONTROLLER_CMD_TYPE_MAX; type++) {
        controller_cmd *c = &v[n++];
        memset(c, 0, sizeof(*c));
        c->type = (uint8_t)type;
        c->proposer = 2;
        c->request_id = 0x1122334455667788ull + (uint64_t)type;
        c->ts_ms = 1700000000000 + type;
        switch (type) {
        case CONTROLLER_CMD_REGISTER_NODE:
        case CONTROLLER_CMD_UPDATE_NODE:
            *c = reg_cmd(4, 8);
            c->type = (uint8_t)type;
            strcpy(c->broker.rack, "rack-a");
            break;
        case CONTROLLER_CMD_CREATE_TOPIC:
            strcpy(c->name, "orders");
            make_id(c->topic_id, 9);
            c->partitions = 2;
            c->replication_factor = 3;
            c->internal = true;
            c->configs = kv, c->n_configs = 2;
            c->assign = as, c->n_assign = 2;
            break;
        case CONTROLLER_CMD_DELETE_TOPIC:
            strcpy(c->name, "orders");
            make_id(c->topic_id, 9);
            break;
        case CONTROLLER_CMD_CREATE_PARTITIONS:
            strcpy(c->name, "orders");
            c->partitions = 4;
            c->assign = as, c->n_assign = 2;
            break;
        case CONTROLLER_CMD_REPLACE_TOPIC_CONFIGS:
            strcpy(c->name, "orders");
            c->configs = kv, c->n_configs = 2;
            break;
        case CONTROLLER_CMD_ALTER_TOPIC_CONFIGS:
            strcpy(c->name, "orders");
            c->configs = kv, c->n_configs = 1;
            c->removes = rm, c->n_removes = 1;
            break;
        case CONTROLLER_CMD_SET_CLUSTER_CONFIG:
            c->configs = kv, c->n_configs = 2;
            c->removes = rm, c->n_removes = 1;
            break;
        case CONTROLLER_CMD_MOVE_PARTITION:
            strcpy(c->name, "orders");
            c->partition = 1;
            c->assign = as, c->n_assign = 1;
            break;
        case CONTROLLER_CMD_SET_MAINTENANCE:
            c->node_id = 3;
            c->flag = true;
            break;
        case CONTROLLER_CMD_DECOMMISSION_NODE:
        case CONTROLLER_CMD_RECOMMISSION_NODE:
        case CONTROLLER_CMD_REMOVE_NODE:
            c->node_id = 5;
            break;
        case CONTROLLER_CMD_SET_CLUSTER_ID:
            make_id(c->cluster_id, 77);
            break;
        case CONTROLLER_CMD_ALLOC_IDS:
            c->count = 1000;
            break;
        }
    }
    return n;
}

static bool cmd_equal(const controller_cmd *a, const controller_cmd *b)
{
    if (a->type != b->type || a->proposer != b->proposer || a->request_id != b->request_id ||
        a->ts_ms != b->ts_ms || a->node_id != b->node_id || a->flag != b->flag ||
        strcmp(a->name, b->name) || memcmp(a->topic_id, b->topic_id, 16) ||
        a->partitions != b->partitions || a->partition != b->partition ||
        a->replication_factor != b->replication_factor || a->internal != b->internal ||
        a->count != b->count || memcmp(a->cluster_id, b->cluster_id, 16) ||
        a->n_configs != b->n_configs || a->n_removes != b->n_removes || a->n_assign != b->n_assign)
        return false;
    if (a->type == CONTROLLER_CMD_REGISTER_NODE || a->type == CONTROLLER_CMD_UPDATE_NODE) {
        const controller_broker *x = &a->broker, *y = &b->broker;
        if (x->node_id != y->node_id || strcmp(x->kafka_host, y->kafka_host) ||
            strcmp(x->rpc_host, y->rpc_host) || strcmp(x->rack, y->rack) ||
            x->kafka_port != y->kafka_port || x->rpc_port != y->rpc_port || x->cores != y->cores)
            return false;
    }
    for (int32_t i = 0; i < a->n_configs; i++)
        if (strcmp(a->configs[i].key, b->configs[i].key) ||
            strcmp(a->configs[i].value, b->configs[i].value))
            return false;
    for (int32_t i = 0; i < a->n_removes; i++)
        if (strcmp(a->removes[i], b->removes[i])) return false;
    for (int32_t i = 0; i < a->n_assign; i++) {
        if (a->assign[i].n != b->assign[i].n) return false;
        for (int r = 0; r < a->assign[i].n; r++)
            if (a->assign[i].nodes[r] != b->assign[i].nodes[r] ||
                a->assign[i].shards[r] != b->assign[i].shards[r])
                return false;
    }
    return true;
}

TEST(cmd_round_trip)
{
    controller_cmd v[CONTROLLER_CMD_TYPE_MAX];
    topic_config_kv kv[2];
    char rm[1][TOPIC_CONFIG_KEY_MAX];
    topic_assignment as[2];
    int n = sample_cmds(v, kv, rm, as);
    CHECK_EQ(n, CONTROLLER_CMD_TYPE_MAX);
    for (int i = 0; i < n; i++) {
        size_t sz = controller_cmd_size(&v[i]);
        uint8_t buf[8192];
        CHECK(sz <= sizeof(buf));
        CHECK_EQ(controller_cmd_encode(&v[i], buf, sizeof(buf)), (int64_t)sz);
        CHECK_EQ(controller_cmd_encode(&v[i], buf, sz - 1), AL_ETOOLARGE);
        controller_cmd d;
        CHECK_EQ(controller_cmd_decode(buf, sz, &d), 0);
        CHECK(cmd_equal(&v[i], &d));
        uint8_t again[8192];
        CHECK_EQ(controller_cmd_encode(&d, again, sizeof(again)), (int64_t)sz);
        CHECK_MEM(buf, again, sz);
        controller_cmd_free(&d);
        /* Every truncation fails cleanly; so does a trailing byte and a newer format. */
        for (size_t k = 0; k < sz; k++) {
            CHECK(controller_cmd_decode(buf, k, &d) < 0);
            controller_cmd_free(&d);
        }
        buf[sz] = 0;
        CHECK_EQ(controller_cmd_decode(buf, sz + 1, &d), AL_EMALFORMED);
        controller_cmd_free(&d);
        buf[0] = CONTROLLER_CMD_FORMAT + 1;
        CHECK_EQ(controller_cmd_decode(buf, sz, &d), AL_EUNSUPPORTED);
        controller_cmd_free(&d);
    }
    /* Bounds the decoder enforces are refused by the encoder too. */
    controller_cmd bad = v[0];
    bad.type = 0;
    uint8_t buf[64];
    CHECK_EQ(controller_cmd_encode(&bad, buf, sizeof(buf)), AL_EINVAL);
    bad = v[CONTROLLER_CMD_MOVE_PARTITION - 1];
    bad.n_assign = 2;
    CHECK_EQ(controller_cmd_encode(&bad, buf, sizeof(buf)), AL_EINVAL);
    /* A batch of all of them is a valid Kafka batch with one record per command. */
    uint8_t *b;
    size_t blen;
    CHECK_EQ(controller_batch_build(v, n, 42, &b, &blen), 0);
    storage_batch_hdr h;
    CHECK_EQ(storage_batch_validate(b, blen, 0, &h), (int64_t)blen);
    CHECK_EQ(h.records_count, n);
    CHECK_EQ(h.base_timestamp, 42);
    free(b);
    CHECK_EQ(controller_batch_build(v, 0, 42, &b, &blen), AL_EINVAL);
}

TEST(cmd_decode_random_bytes)
{
    seed_rng();
    controller_cmd v[CONTROLLER_CMD_TYPE_MAX];
    topic_config_kv kv[2];
    char rm[1][TOPIC_CONFIG_KEY_MAX];
    topic_assignment as[2];
    int n = sample_cmds(v, kv, rm, as);
    uint8_t buf[4096];
    int ok = 0;
    for (int iter = 0; iter < 20000; iter++) {
        /* Mutate a valid encoding: flips, truncation, random length prefixes. */
        const controller_cmd *src = &v[rnd_below((uint32_t)n)];
        int64_t sz = controller_cmd_encode(src, buf, sizeof(buf));
        CHECK(sz > 0);
        int flips = 1 + (int)rnd_below(4);
        for (int f = 0; f < flips; f++) buf[rnd_below((uint32_t)sz)] = (uint8_t)rnd();
        size_t len = (size_t)sz - rnd_below(3);
        controller_cmd d;
        int err = controller_cmd_decode(buf, len, &d);
        if (!err) {
            /* Whatever decodes re-encodes and decodes to the same command. */
            uint8_t again[4096];
            int64_t k = controller_cmd_encode(&d, again, sizeof(again));
            CHECK(k > 0);
            controller_cmd d2;
            CHECK_EQ(controller_cmd_decode(again, (size_t)k, &d2), 0);
            CHECK(cmd_equal(&d, &d2));
            controller_cmd_free(&d2);
            ok++;
        }
        controller_cmd_free(&d);
    }
    CHECK(ok > 0);
}

/* ---- apply ---- */

TEST(apply_results_and_errors)
{
    controller_state st;
    fake_log lg;
    cluster(&st, &lg, 3, 4);
    CHECK_EQ(st.n_brokers, 3);
    CHECK_EQ(st.next_node_id, 4);
    CHECK_EQ(controller_broker_find(&st, 2)->cores, 4);
    CHECK_EQ(controller_broker_find(&st, 2)->registered_ms, 5002);
    CHECK(controller_broker_find(&st, 9) == NULL);

    /* Results are readable by (proposer, request id) and arrive through the callback. */
    controller_cmd c;
    CHECK_EQ(create_cmd(&st, &c, "orders", 6, 3, 1), 0);
    c.proposer = 2;
    c.request_id = 99;
    results rs;
    CHECK_EQ(apply_cmds(&st, &lg, &c, 1, &rs, NULL, NULL), 0);
    CHECK_EQ(rs.n, 1);
    CHECK_EQ(rs.r[0].error, 0);
    CHECK_EQ(rs.r[0].offset, 3);
    controller_result r;
    CHECK(controller_result_find(&st, 2, 99, &r));
    CHECK_EQ(r.error, 0);
    CHECK_EQ(r.offset, 3);
    CHECK(!controller_result_find(&st, 2, 98, &r));
    const topic *t = topic_table_find(&st.topics, "orders", 6);
    CHECK(t && t->assign);
    CHECK_EQ(t->partitions, 6);
    CHECK_EQ(t->created_ms, 7000);
    /* Same again: already exists; same id under a new name: refused too. */
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_TOPIC_ALREADY_EXISTS);
    strcpy(c.name, "orders2");
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_REQUEST);
    make_id(c.topic_id, 2);
    c.replication_factor = 2; /* assignments have 3 replicas */
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT);
    c.replication_factor = 3;
    c.assign[2].nodes[1] = 42; /* unknown node */
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT);
    c.assign[2].nodes[1] = c.assign[2].nodes[0]; /* duplicate */
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT);
    c.assign[2].nodes[1] = c.assign[2].nodes[2] == 1 ? 2 : 1;
    c.assign[2].nodes[1] = c.assign[2].nodes[0] == 3 || c.assign[2].nodes[2] == 3 ? 0 : 3;
    c.assign[2].shards[0] = 4; /* beyond the node's 4 cores */
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT);
    free(c.assign);
    CHECK_EQ(create_cmd(&st, &c, "bad name", 1, 1, 3), 0);
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_TOPIC_EXCEPTION);
    strcpy(c.name, "p0");
    c.partitions = 0;
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_PARTITIONS);
    free(c.assign);
    CHECK(topic_table_find(&st.topics, "orders2", 7) == NULL);
    uint64_t v_before = st.version;

    /* Add partitions: must grow, with assignments for exactly the new ones. */
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_CREATE_PARTITIONS;
    strcpy(c.name, "orders");
    c.partitions = 6;
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_PARTITIONS);
    topic_assignment more[2];
    CHECK_EQ(controller_place(&st, 2, 3, more), 0);
    c.partitions = 8;
    c.assign = more;
    c.n_assign = 1;
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT);
    c.n_assign = 2;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    CHECK_EQ(topic_table_find(&st.topics, "orders", 6)->partitions, 8);
    strcpy(c.name, "nope");
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION);
    CHECK_EQ(st.version, v_before + 1);

    /* Topic configs: replace, then incremental set/remove. */
    topic_config_kv kv[2] = {{"retention.ms", "100"}, {"cleanup.policy", "compact"}};
    char rm[1][TOPIC_CONFIG_KEY_MAX] = {"retention.ms"};
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_REPLACE_TOPIC_CONFIGS;
    strcpy(c.name, "orders");
    c.configs = kv;
    c.n_configs = 2;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    t = topic_table_find(&st.topics, "orders", 6);
    CHECK(!strcmp(topic_config_value(t, "retention.ms"), "100"));
    topic_config_kv dupkv[2] = {{"a", "1"}, {"a", "2"}};
    c.configs = dupkv;
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_CONFIG);
    c.type = CONTROLLER_CMD_ALTER_TOPIC_CONFIGS;
    topic_config_kv seg = {"segment.bytes", "1048576"};
    c.configs = &seg;
    c.n_configs = 1;
    c.removes = rm;
    c.n_removes = 1;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    t = topic_table_find(&st.topics, "orders", 6);
    CHECK(topic_config_value(t, "retention.ms") == NULL);
    CHECK(!strcmp(topic_config_value(t, "segment.bytes"), "1048576"));
    CHECK(!strcmp(topic_config_value(t, "cleanup.policy"), "compact"));

    /* Cluster config. */
    c.type = CONTROLLER_CMD_SET_CLUSTER_CONFIG;
    c.configs = kv;
    c.n_configs = 2;
    c.n_removes = 0;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    CHECK(!strcmp(controller_config_value(&st, "retention.ms"), "100"));
    CHECK_EQ(st.config_version, 1);
    c.n_configs = 0;
    c.n_removes = 1;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    CHECK(controller_config_value(&st, "retention.ms") == NULL);
    CHECK_EQ(st.n_configs, 1);

    /* Move a partition. */
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_MOVE_PARTITION;
    strcpy(c.name, "orders");
    c.partition = 8;
    topic_assignment mv = {.n = 2, .nodes = {3, 1}, .shards = {0, 3}};
    c.assign = &mv;
    c.n_assign = 1;
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION);
    c.partition = 7;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    CHECK_EQ(topic_table_find(&st.topics, "orders", 6)->assign[7].nodes[0], 3);

    /* Membership. */
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_SET_MAINTENANCE;
    c.node_id = 2;
    c.flag = true;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    CHECK_EQ(controller_broker_find(&st, 2)->membership, CONTROLLER_NODE_DRAINING);
    c.flag = false;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    CHECK_EQ(controller_broker_find(&st, 2)->membership, CONTROLLER_NODE_ACTIVE);
    c.node_id = 9;
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_BROKER_NOT_AVAILABLE);
    c.type = CONTROLLER_CMD_REMOVE_NODE;
    c.node_id = 3;
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_REQUEST); /* not decommissioning */
    c.type = CONTROLLER_CMD_DECOMMISSION_NODE;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    c.type = CONTROLLER_CMD_SET_MAINTENANCE;
    c.flag = true;
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_REQUEST);
    c.type = CONTROLLER_CMD_REMOVE_NODE;
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_REASSIGNMENT_IN_PROGRESS); /* still has replicas */
    c.type = CONTROLLER_CMD_RECOMMISSION_NODE;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    CHECK_EQ(controller_broker_find(&st, 3)->membership, CONTROLLER_NODE_ACTIVE);

    /* Node updates; a bad registration. */
    controller_cmd u = reg_cmd(3, 8);
    u.type = CONTROLLER_CMD_UPDATE_NODE;
    strcpy(u.broker.kafka_host, "n3.example");
    CHECK_EQ(apply1(&st, &lg, &u), 0);
    CHECK(!strcmp(controller_broker_find(&st, 3)->kafka_host, "n3.example"));
    CHECK_EQ(controller_broker_find(&st, 3)->cores, 8);
    CHECK_EQ(controller_broker_find(&st, 3)->registered_ms, 5003);
    u = reg_cmd(12, 0);
    CHECK_EQ(apply1(&st, &lg, &u), KAFKA_ERR_INVALID_REGISTRATION);
    /* node id INT32_MAX: next_node_id (id + 1) would overflow and the snapshot would not
     * decode (found by fuzz_controller_cmd) */
    controller_cmd big = reg_cmd(13, 2);
    big.broker.node_id = INT32_MAX;
    CHECK_EQ(apply1(&st, &lg, &big), KAFKA_ERR_INVALID_REGISTRATION);
    u.type = CONTROLLER_CMD_UPDATE_NODE;
    u.broker.cores = 1;
    CHECK_EQ(apply1(&st, &lg, &u), KAFKA_ERR_BROKER_NOT_AVAILABLE);

    /* Cluster id: first wins; ids blocks. */
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_SET_CLUSTER_ID;
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INVALID_REQUEST);
    make_id(c.cluster_id, 5);
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    make_id(c.cluster_id, 6);
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_INCONSISTENT_CLUSTER_ID);
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_ALLOC_IDS;
    c.count = 1000;
    c.proposer = 1;
    c.request_id = 555;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    CHECK(controller_result_find(&st, 1, 555, &r));
    CHECK_EQ(r.value, 1001); /* newest result of a re-used id */
    CHECK_EQ(st.next_producer_id, 2001);

    /* Delete: by name, guarded by id. */
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_DELETE_TOPIC;
    strcpy(c.name, "orders");
    make_id(c.topic_id, 77);
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_UNKNOWN_TOPIC_ID);
    make_id(c.topic_id, 1);
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    CHECK_EQ(apply1(&st, &lg, &c), KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION);
    CHECK_EQ(st.topics.n, 0);
    controller_state_free(&st);
}

TEST(apply_batches_replay_and_garbage)
{
    controller_state st;
    fake_log lg;
    cluster(&st, &lg, 3, 2);
    /* A batch of several commands: one result each, in order, errors independent. */
    controller_cmd v[3];
    CHECK_EQ(create_cmd(&st, &v[0], "a", 3, 2, 1), 0);
    CHECK_EQ(create_cmd(&st, &v[1], "a", 3, 2, 2), 0); /* duplicate name */
    CHECK_EQ(create_cmd(&st, &v[2], "b", 1, 3, 3), 0);
    uint8_t *batch;
    size_t blen;
    results rs;
    CHECK_EQ(apply_cmds(&st, &lg, v, 3, &rs, &batch, &blen), 0);
    CHECK_EQ(rs.n, 3);
    CHECK_EQ(rs.r[0].error, 0);
    CHECK_EQ(rs.r[1].error, KAFKA_ERR_TOPIC_ALREADY_EXISTS);
    CHECK_EQ(rs.r[2].error, 0);
    CHECK_EQ(rs.r[2].offset, 5);
    CHECK_EQ(st.applied_offset, 5);
    for (int i = 0; i < 3; i++) free(v[i].assign);
    /* Replaying a batch already applied changes nothing. */
    uint8_t *snap1;
    size_t s1;
    CHECK_EQ(controller_snapshot_encode(&st, &snap1, &s1), 0);
    rs.n = 0;
    CHECK_EQ(controller_apply(&st, batch, blen, on_result, &rs), 0);
    CHECK_EQ(rs.n, 0);
    uint8_t *snap2;
    size_t s2;
    CHECK_EQ(controller_snapshot_encode(&st, &snap2, &s2), 0);
    CHECK(s1 == s2 && !memcmp(snap1, snap2, s1));
    free(snap2);
    /* A damaged batch is refused as a whole. */
    storage_batch_stamp(batch, 100, 1);
    batch[blen - 3] ^= 1;
    CHECK_EQ(controller_apply(&st, batch, blen, NULL, NULL), AL_ECORRUPT);
    CHECK_EQ(controller_apply(&st, batch, blen - 1, NULL, NULL), AL_ETRUNCATED);
    CHECK_EQ(st.applied_offset, 5);
    free(batch);
    /* A record that is not a command: INVALID_REQUEST, the rest of the batch still applies. */
    uint8_t junk[3] = {CONTROLLER_CMD_FORMAT, 99, 0};
    uint8_t enc[512];
    controller_cmd ok;
    memset(&ok, 0, sizeof(ok));
    ok.type = CONTROLLER_CMD_ALLOC_IDS;
    ok.count = 5;
    int64_t okn = controller_cmd_encode(&ok, enc, sizeof(enc));
    CHECK(okn > 0);
    storage_build_record recs[3] = {{.offset_delta = 0, .key_len = -1, .value = junk,
                                     .value_len = 3},
                                    {.offset_delta = 1, .key_len = -1, .value = NULL,
                                     .value_len = -1},
                                    {.offset_delta = 2, .key_len = -1, .value = enc,
                                     .value_len = (int32_t)okn}};
    storage_build_params p = {.base_offset = 6, .last_offset_delta = -1, .producer_id = -1,
                              .producer_epoch = -1, .base_sequence = -1};
    uint8_t raw[1024];
    int64_t rn = storage_batch_build(raw, sizeof(raw), &p, recs, 3);
    CHECK(rn > 0);
    rs.n = 0;
    CHECK_EQ(controller_apply(&st, raw, (size_t)rn, on_result, &rs), 0);
    CHECK_EQ(rs.n, 3);
    CHECK_EQ(rs.r[0].error, KAFKA_ERR_INVALID_REQUEST);
    CHECK_EQ(rs.r[1].error, KAFKA_ERR_INVALID_REQUEST); /* a null value */
    CHECK_EQ(rs.r[2].error, 0);
    CHECK_EQ(st.next_producer_id, 6);
    CHECK_EQ(st.applied_offset, 8);
    /* Raft's own entries (control batches: NOOP, CONFIG) only advance applied_offset. */
    uint64_t ver = st.version;
    storage_build_params cp = {.base_offset = 9, .attributes = STORAGE_ATTR_CONTROL,
                               .last_offset_delta = 0, .producer_id = -1, .producer_epoch = -1,
                               .base_sequence = -1};
    rn = storage_batch_build(raw, sizeof(raw), &cp, NULL, 0);
    CHECK(rn > 0);
    rs.n = 0;
    CHECK_EQ(controller_apply(&st, raw, (size_t)rn, on_result, &rs), 0);
    CHECK_EQ(rs.n, 0);
    CHECK_EQ(st.applied_offset, 9);
    CHECK_EQ(st.version, ver);
    free(snap1);
    controller_state_free(&st);
}

/* ---- determinism ---- */

/* A random command against st: mostly sensible (placed by controller_place), some invalid. */
static void random_cmd(const controller_state *st, controller_cmd *c, uint32_t k)
{
    memset(c, 0, sizeof(*c));
    c->proposer = (int32_t)rnd_below(4);
    c->request_id = k;
    c->ts_ms = 1000 + k;
    char name[16];
    snprintf(name, sizeof(name), "t%u", rnd_below(12));
    uint32_t what = rnd_below(15);
    int32_t node = 1 + (int32_t)rnd_below(7);
    switch (what) {
    case 0:
    case 1:
        *c = reg_cmd(node, 1 + rnd_below(4));
        c->request_id = k;
        if (what == 1) c->type = CONTROLLER_CMD_UPDATE_NODE;
        break;
    case 2:
    case 3:
    case 4: {
        int16_t rf = (int16_t)(1 + rnd_below(3));
        int32_t parts = 1 + (int32_t)rnd_below(6);
        if (create_cmd(st, c, name, parts, rf, k) != 0) {
            /* could not place: send it anyway with what placement left (invalid) */
            c->n_assign = 0;
        }
        c->request_id = k;
        break;
    }
    case 5:
        c->type = CONTROLLER_CMD_DELETE_TOPIC;
        snprintf(c->name, sizeof(c->name), "%s", name);
        break;
    case 6: {
        const topic *t = topic_table_find(&st->topics, name, strlen(name));
        c->type = CONTROLLER_CMD_CREATE_PARTITIONS;
        snprintf(c->name, sizeof(c->name), "%s", name);
        if (!t) break;
        c->partitions = t->partitions + 1 + (int32_t)rnd_below(3);
        c->assign = calloc((size_t)(c->partitions - t->partitions), sizeof(topic_assignment));
        c->n_assign = c->partitions - t->partitions;
        if (controller_place(st, c->n_assign, t->replication_factor, c->assign)) c->n_assign = 0;
        break;
    }
    case 7:
    case 8: {
        c->type = what == 8 ? CONTROLLER_CMD_SET_CLUSTER_CONFIG
                  : rnd_below(2) ? CONTROLLER_CMD_ALTER_TOPIC_CONFIGS
                                 : CONTROLLER_CMD_REPLACE_TOPIC_CONFIGS;
        snprintf(c->name, sizeof(c->name), "%s", name);
        c->configs = calloc(2, sizeof(topic_config_kv));
        c->n_configs = (int32_t)rnd_below(3);
        for (int i = 0; i < c->n_configs; i++) {
            snprintf(c->configs[i].key, sizeof(c->configs[i].key), "key%u", rnd_below(5));
            if (rnd_below(10) == 0) c->configs[i].key[0] = 0; /* invalid: empty key */
            snprintf(c->configs[i].value, sizeof(c->configs[i].value), "%u", rnd_below(100));
        }
        c->removes = calloc(1, sizeof(*c->removes));
        c->n_removes = (int32_t)rnd_below(2);
        snprintf(c->removes[0], sizeof(c->removes[0]), "key%u", rnd_below(5));
        break;
    }
    case 9: {
        const topic *t = topic_table_find(&st->topics, name, strlen(name));
        c->type = CONTROLLER_CMD_MOVE_PARTITION;
        snprintf(c->name, sizeof(c->name), "%s", name);
        c->assign = calloc(1, sizeof(topic_assignment));
        c->n_assign = 1;
        c->partition = t ? (int32_t)rnd_below((uint32_t)t->partitions + 1) : 0;
        if (controller_place(st, 1, (int16_t)(1 + rnd_below(3)), c->assign)) c->assign->n = 1;
        break;
    }
    case 10:
        c->type = CONTROLLER_CMD_SET_MAINTENANCE;
        c->node_id = node;
        c->flag = rnd_below(2);
        break;
    case 11:
        c->type = (uint8_t)(CONTROLLER_CMD_DECOMMISSION_NODE + rnd_below(3));
        c->node_id = node;
        break;
    case 13:
        /* Drive a decommissioning node to empty: its plan's first move, then its removal. */
        for (int32_t i = 0; i < st->n_brokers; i++) {
            if (st->brokers[i].membership != CONTROLLER_NODE_DECOMMISSIONING) continue;
            controller_move *m;
            int32_t n, unplaceable;
            AL_ASSERT(controller_decommission_plan(st, st->brokers[i].node_id, &m, &n,
                                                   &unplaceable) == 0);
            if (n > 0) {
                c->type = CONTROLLER_CMD_MOVE_PARTITION;
                strcpy(c->name, m[0].topic);
                c->partition = m[0].partition;
                c->assign = malloc(sizeof(topic_assignment));
                *c->assign = m[0].to;
                c->n_assign = 1;
            } else {
                c->type = CONTROLLER_CMD_REMOVE_NODE;
                c->node_id = st->brokers[i].node_id;
            }
            free(m);
            return;
        }
        c->type = CONTROLLER_CMD_REMOVE_NODE;
        c->node_id = node;
        break;
    case 12:
        c->type = CONTROLLER_CMD_SET_CLUSTER_ID;
        make_id(c->cluster_id, 1 + rnd_below(2));
        break;
    default:
        c->type = CONTROLLER_CMD_ALLOC_IDS;
        c->count = rnd_below(2000);
        break;
    }
}

static void random_cmd_free(controller_cmd *c)
{
    free(c->assign);
    free(c->configs);
    free(c->removes);
}

TEST(determinism_and_snapshot_restore)
{
    seed_rng();
    int64_t applied[CONTROLLER_CMD_TYPE_MAX + 1][2];
    memset(applied, 0, sizeof(applied));
    for (int round = 0; round < 100; round++) {
        controller_state a, b, c;
        controller_state_init(&a);
        controller_state_init(&b);
        controller_state_init(&c);
        fake_log la = {0};
        int steps = 150;
        uint8_t *mid = NULL;
        size_t mid_len = 0;
        uint8_t **batches = calloc((size_t)steps, sizeof(*batches));
        size_t *lens = calloc((size_t)steps, sizeof(*lens));
        int restore_at = (int)rnd_below((uint32_t)steps);
        for (int s = 0; s < steps; s++) {
            controller_cmd v[3];
            int n = 1 + (int)rnd_below(3);
            for (int i = 0; i < n; i++) random_cmd(&a, &v[i], (uint32_t)(s * 3 + i));
            results rs;
            CHECK_EQ(apply_cmds(&a, &la, v, n, &rs, &batches[s], &lens[s]), 0);
            CHECK_EQ(rs.n, n);
            for (int i = 0; i < n; i++) {
                applied[v[i].type][rs.r[i].error == 0]++;
                random_cmd_free(&v[i]);
            }
            /* b applies the same bytes, as a follower would. */
            CHECK_EQ(controller_apply(&b, batches[s], lens[s], NULL, NULL), 0);
            if (s == restore_at) CHECK_EQ(controller_snapshot_encode(&a, &mid, &mid_len), 0);
        }
        CHECK(snapshots_equal(&a, &b));
        CHECK(a.version == b.version && a.topics.version == b.topics.version);
        /* c: snapshot at restore_at, then the whole log (the prefix is skipped by offset). */
        CHECK_EQ(controller_snapshot_decode(&c, mid, mid_len), 0);
        for (int s = 0; s < steps; s++)
            CHECK_EQ(controller_apply(&c, batches[s], lens[s], NULL, NULL), 0);
        CHECK(snapshots_equal(&a, &c));
        /* Every stored assignment of a placed topic has valid, distinct replicas. */
        for (int32_t i = 0; i < a.topics.n; i++) {
            const topic *t = topic_table_at(&a.topics, i);
            CHECK(t->assign != NULL);
            for (int32_t p = 0; p < t->partitions; p++)
                CHECK(topic_assignment_valid(&t->assign[p]));
        }
        for (int s = 0; s < steps; s++) free(batches[s]);
        free(batches);
        free(lens);
        free(mid);
        controller_state_free(&a);
        controller_state_free(&b);
        controller_state_free(&c);
    }
    /* The sequence exercised every command type, both accepted and refused. */
    for (int type = 1; type <= CONTROLLER_CMD_TYPE_MAX; type++) {
        if (getenv("AL_TEST_VERBOSE"))
            fprintf(stderr, "  type %d: %lld ok, %lld refused\n", type, (long long)applied[type][1],
                    (long long)applied[type][0]);
        CHECK(applied[type][1] > 0);
        if (type != CONTROLLER_CMD_ALLOC_IDS && type != CONTROLLER_CMD_REGISTER_NODE)
            CHECK(applied[type][0] > 0);
    }
}

/* ---- snapshot ---- */

TEST(snapshot_round_trip_and_corruption)
{
    seed_rng();
    controller_state st;
    fake_log lg;
    cluster(&st, &lg, 5, 3);
    CHECK_EQ(create_topic(&st, &lg, "x", 10, 3, 1), 0);
    CHECK_EQ(create_topic(&st, &lg, "y", 4, 1, 2), 0);
    controller_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_SET_CLUSTER_CONFIG;
    topic_config_kv kv = {"log_segment_size", "1048576"};
    c.configs = &kv;
    c.n_configs = 1;
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_SET_CLUSTER_ID;
    make_id(c.cluster_id, 3);
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    c.type = CONTROLLER_CMD_SET_MAINTENANCE;
    c.node_id = 4;
    c.flag = true;
    CHECK_EQ(apply1(&st, &lg, &c), 0);

    uint8_t *buf;
    size_t len;
    CHECK_EQ(controller_snapshot_encode(&st, &buf, &len), 0);
    controller_state back;
    controller_state_init(&back);
    CHECK_EQ(controller_snapshot_decode(&back, buf, len), 0);
    CHECK(snapshots_equal(&st, &back));
    CHECK_EQ(back.applied_offset, st.applied_offset);
    CHECK_EQ(back.n_brokers, 5);
    CHECK_EQ(controller_broker_find(&back, 4)->membership, CONTROLLER_NODE_DRAINING);
    CHECK(back.has_cluster_id);
    CHECK(!strcmp(controller_config_value(&back, "log_segment_size"), "1048576"));
    const topic *x = topic_table_find(&back.topics, "x", 1);
    CHECK(x && x->partitions == 10 && x->assign);
    CHECK_MEM(x->assign, topic_table_find(&st.topics, "x", 1)->assign,
              10 * sizeof(topic_assignment));
    /* The decoded state goes on applying like the original. */
    fake_log lb = lg;
    CHECK_EQ(create_topic(&st, &lg, "z", 2, 2, 3), 0);
    CHECK_EQ(create_topic(&back, &lb, "z", 2, 2, 3), 0);
    CHECK(snapshots_equal(&st, &back));

    /* Any flipped bit or truncation is refused; the target stays as it was. */
    for (int i = 0; i < 300; i++) {
        size_t at = rnd_below((uint32_t)len);
        uint8_t saved = buf[at];
        buf[at] ^= (uint8_t)(1u << rnd_below(8));
        int err = controller_snapshot_decode(&back, buf, len);
        CHECK(err == AL_ECORRUPT || err == AL_EUNSUPPORTED);
        buf[at] = saved;
    }
    for (size_t k = 0; k < len; k += 1 + len / 200)
        CHECK(controller_snapshot_decode(&back, buf, k) < 0);
    CHECK(snapshots_equal(&st, &back));
    free(buf);
    /* An empty state round trips too. */
    controller_state empty;
    controller_state_init(&empty);
    CHECK_EQ(controller_snapshot_encode(&empty, &buf, &len), 0);
    CHECK_EQ(controller_snapshot_decode(&back, buf, len), 0);
    CHECK(snapshots_equal(&empty, &back));
    CHECK_EQ(back.n_brokers, 0);
    free(buf);
    controller_state_free(&empty);
    controller_state_free(&back);
    controller_state_free(&st);
}

/* The snapshot as a durable file (io_uring back end): save, load, missing, damaged. */
TEST(snapshot_file)
{
    io *x = NULL;
    struct io_uring_opts o = {.entries = 64, .seed = test_seed()};
    CHECK_EQ(io_uring_create(&x, &o), 0);
    controller_state st;
    fake_log lg;
    cluster(&st, &lg, 3, 2);
    CHECK_EQ(create_topic(&st, &lg, "f", 5, 2, 1), 0);
    char path[1024];
    snprintf(path, sizeof(path), "%s/controller.snapshot", test_tmpdir());
    controller_state back;
    controller_state_init(&back);
    CHECK_EQ(controller_snapshot_load(&back, x, path), -ENOENT);
    CHECK_EQ(controller_snapshot_save(&st, x, path), 0);
    CHECK_EQ(controller_snapshot_load(&back, x, path), 0);
    CHECK(snapshots_equal(&st, &back));
    /* A damaged file is refused and leaves the state as it was. */
    uint8_t *buf;
    size_t len;
    CHECK_EQ(io_fs_read_all(x, path, 1 << 20, &buf, &len), 0);
    buf[len / 2] ^= 0x10;
    CHECK_EQ(io_fs_write_atomic(x, path, buf, len), 0);
    free(buf);
    controller_state other;
    controller_state_init(&other);
    CHECK_EQ(controller_snapshot_load(&other, x, path), AL_ECORRUPT);
    CHECK_EQ(other.n_brokers, 0);
    CHECK_EQ(other.applied_offset, -1);
    controller_state_free(&other);
    controller_state_free(&back);
    controller_state_free(&st);
    io_destroy(x);
}

/* ---- placement ---- */

/* Replica counts per node id (index = node id), preferred-leader counts, shard counts. */
typedef struct counts {
    int64_t rep[16], lead[16], shard[16][8];
} counts;

static void count_all(const controller_state *st, counts *k)
{
    memset(k, 0, sizeof(*k));
    for (int32_t i = 0; i < st->topics.n; i++) {
        const topic *t = topic_table_at(&st->topics, i);
        for (int32_t p = 0; p < t->partitions; p++) {
            const topic_assignment *a = &t->assign[p];
            for (int r = 0; r < a->n; r++) {
                k->rep[a->nodes[r]]++;
                k->shard[a->nodes[r]][a->shards[r]]++;
            }
            k->lead[a->nodes[0]]++;
        }
    }
}

/* max - min of v over the ACTIVE nodes of st. */
static int64_t spread(const controller_state *st, const int64_t *v)
{
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (int32_t i = 0; i < st->n_brokers; i++) {
        if (st->brokers[i].membership != CONTROLLER_NODE_ACTIVE) continue;
        int64_t x = v[st->brokers[i].node_id];
        lo = AL_MIN(lo, x);
        hi = AL_MAX(hi, x);
    }
    return hi - lo;
}

TEST(placement_properties)
{
    seed_rng();
    for (int round = 0; round < 3000; round++) {
        controller_state st;
        fake_log lg;
        int nodes = 1 + (int)rnd_below(7);
        uint32_t cores = 1 + rnd_below(4);
        cluster(&st, &lg, nodes, cores);
        /* Sometimes a node in maintenance: it must receive nothing. */
        int32_t draining = -1;
        if (nodes > 1 && rnd_below(3) == 0) {
            controller_cmd c;
            memset(&c, 0, sizeof(c));
            c.type = CONTROLLER_CMD_SET_MAINTENANCE;
            c.node_id = draining = 1 + (int32_t)rnd_below((uint32_t)nodes);
            c.flag = true;
            CHECK_EQ(apply1(&st, &lg, &c), 0);
        }
        int32_t active = controller_active_nodes(&st);
        CHECK_EQ(active, nodes - (draining >= 0));
        /* Default rf: min(3, active). An explicit rf over the active count is refused. */
        CHECK_EQ(controller_effective_rf(&st, -1, 0), AL_MIN(3, active));
        CHECK_EQ(controller_effective_rf(&st, -1, 1), 1);
        topic_assignment a1[1];
        CHECK_EQ(controller_place(&st, 1, (int16_t)(active + 1), a1), AL_ERANGE);
        CHECK_EQ(controller_place_kafka_error(AL_ERANGE), KAFKA_ERR_INVALID_REPLICATION_FACTOR);
        int topics = 1 + (int)rnd_below(5);
        for (int t = 0; t < topics; t++) {
            int16_t rf = (int16_t)(1 + rnd_below((uint32_t)active));
            int32_t parts = 1 + (int32_t)rnd_below(40);
            char name[16];
            snprintf(name, sizeof(name), "t%d", t);
            CHECK_EQ(create_topic(&st, &lg, name, parts, rf, (uint32_t)t + 1), 0);
            const topic *tp = topic_table_find(&st.topics, name, strlen(name));
            CHECK(tp != NULL);
            for (int32_t p = 0; p < parts; p++) {
                const topic_assignment *a = &tp->assign[p];
                CHECK_EQ(a->n, rf);
                CHECK(topic_assignment_valid(a)); /* distinct nodes */
                for (int r = 0; r < a->n; r++) {
                    CHECK(a->nodes[r] != draining);
                    CHECK(a->shards[r] < cores);
                }
            }
            /* After every topic: replicas within +-1 over active nodes, and each node's
             * replicas within +-1 over its shards. */
            counts k;
            count_all(&st, &k);
            CHECK(spread(&st, k.rep) <= 1);
            /* Preferred leaders of a first topic: within +-1 when the leader is forced (rf 1)
             * or free (rf = active nodes), else within 2 (the greedy swap pass can get stuck
             * one short); later topics mixing rf are evened out by the balance plan. */
            if (t == 0) CHECK(spread(&st, k.lead) <= (rf == 1 || rf == active ? 1 : 2));
            for (int32_t n = 1; n <= nodes; n++) {
                int64_t lo = INT64_MAX, hi = 0;
                for (uint32_t s = 0; s < cores; s++) {
                    lo = AL_MIN(lo, k.shard[n][s]);
                    hi = AL_MAX(hi, k.shard[n][s]);
                }
                CHECK(hi - lo <= 1);
            }
        }
        controller_state_free(&st);
    }
}

/* ---- plans ---- */

static bool in_set(const topic_assignment *a, int32_t node)
{
    for (int r = 0; r < a->n; r++)
        if (a->nodes[r] == node) return true;
    return false;
}

/* Applies a move plan through MOVE_PARTITION commands; every one must succeed. */
static void apply_moves(controller_state *st, fake_log *lg, const controller_move *m, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        controller_cmd c;
        memset(&c, 0, sizeof(c));
        c.type = CONTROLLER_CMD_MOVE_PARTITION;
        strcpy(c.name, m[i].topic);
        c.partition = m[i].partition;
        topic_assignment to = m[i].to;
        c.assign = &to;
        c.n_assign = 1;
        AL_ASSERT(apply1(st, lg, &c) == 0);
    }
}

TEST(balance_plan)
{
    seed_rng();
    for (int round = 0; round < 1000; round++) {
        controller_state st;
        fake_log lg;
        int first = 1 + (int)rnd_below(3);
        cluster(&st, &lg, first, 2);
        /* Topics on the first nodes, then more nodes join: unbalanced. */
        for (int t = 0; t < 3; t++) {
            char name[16];
            snprintf(name, sizeof(name), "t%d", t);
            int16_t rf = (int16_t)(1 + rnd_below((uint32_t)first));
            CHECK_EQ(create_topic(&st, &lg, name, 1 + (int32_t)rnd_below(20), rf, (uint32_t)t + 1),
                     0);
        }
        int added = 1 + (int)rnd_below(4);
        for (int i = 0; i < added; i++) {
            controller_cmd c = reg_cmd(first + 1 + i, 2);
            CHECK_EQ(apply1(&st, &lg, &c), 0);
        }
        counts before, after;
        count_all(&st, &before);
        controller_move *m;
        int32_t n;
        int32_t cap = 1 + (int32_t)rnd_below(6); /* a bounded plan changes <= cap partitions */
        CHECK_EQ(controller_balance_plan(&st, cap, &m, &n), 0);
        CHECK(n <= cap);
        free(m);
        CHECK_EQ(controller_balance_plan(&st, 100000, &m, &n), 0);
        for (int32_t i = 0; i < n; i++) {
            CHECK(topic_assignment_valid(&m[i].to)); /* never two replicas on one node */
            CHECK_EQ(m[i].to.n, m[i].from.n);
        }
        apply_moves(&st, &lg, m, n);
        free(m);
        count_all(&st, &after);
        CHECK(spread(&st, after.rep) <= 1);
        CHECK(spread(&st, after.rep) <= spread(&st, before.rep));
        /* Preferred leaders within 1 too (swaps, hand-overs and exchanges). */
        CHECK(spread(&st, after.lead) <= 1);
        /* A balanced cluster needs no moves. */
        CHECK_EQ(controller_balance_plan(&st, 100000, &m, &n), 0);
        bool only_leaders = true;
        for (int32_t i = 0; i < n; i++) {
            for (int r = 0; r < m[i].to.n; r++)
                only_leaders = only_leaders && in_set(&m[i].from, m[i].to.nodes[r]);
        }
        CHECK(only_leaders);
        free(m);
        /* max_moves bounds the plan. */
        CHECK_EQ(controller_balance_plan(&st, 0, &m, &n), 0);
        CHECK_EQ(n, 0);
        controller_state_free(&st);
    }
}

/* Data movement: when the moves fit, every partition copies at most one new replica (the
 * others stay in sync), e.g. a fourth node joining three that hold 60 partitions x 3. */
TEST(balance_spreads_moves)
{
    controller_state st;
    fake_log lg;
    cluster(&st, &lg, 3, 2);
    CHECK_EQ(create_topic(&st, &lg, "big", 60, 3, 1), 0);
    controller_cmd c = reg_cmd(4, 2);
    CHECK_EQ(apply1(&st, &lg, &c), 0);
    controller_move *m;
    int32_t n;
    CHECK_EQ(controller_balance_plan(&st, 100000, &m, &n), 0);
    int32_t replica_moves = 0;
    for (int32_t i = 0; i < n; i++) {
        int changed = 0;
        for (int r = 0; r < m[i].to.n; r++) changed += !in_set(&m[i].from, m[i].to.nodes[r]);
        CHECK(changed <= 1);
        replica_moves += changed;
    }
    CHECK_EQ(replica_moves, 45); /* 180 replicas: 45 per node */
    apply_moves(&st, &lg, m, n);
    free(m);
    counts k;
    count_all(&st, &k);
    for (int32_t node = 1; node <= 4; node++) CHECK_EQ(k.rep[node], 45);
    CHECK(spread(&st, k.lead) <= 1);
    controller_state_free(&st);
}

TEST(decommission_and_maintenance_plans)
{
    seed_rng();
    for (int round = 0; round < 300; round++) {
        controller_state st;
        fake_log lg;
        int nodes = 3 + (int)rnd_below(4);
        cluster(&st, &lg, nodes, 1 + rnd_below(3));
        for (int t = 0; t < 3; t++) {
            char name[16];
            snprintf(name, sizeof(name), "t%d", t);
            int16_t rf = (int16_t)(1 + rnd_below((uint32_t)nodes - 1));
            CHECK_EQ(create_topic(&st, &lg, name, 1 + (int32_t)rnd_below(20), rf, (uint32_t)t + 1),
                     0);
        }
        int32_t victim = 1 + (int32_t)rnd_below((uint32_t)nodes);
        /* Maintenance: every partition of the victim gets another active replica to lead. */
        controller_leader_move *lm;
        int32_t nl, stuck;
        CHECK_EQ(controller_maintenance_plan(&st, victim, &lm, &nl, &stuck), 0);
        for (int32_t i = 0; i < nl; i++) {
            const topic *t = topic_table_find(&st.topics, lm[i].topic, strlen(lm[i].topic));
            CHECK(t && lm[i].from == victim && lm[i].to != victim);
            CHECK(in_set(&t->assign[lm[i].partition], lm[i].to));
            CHECK(in_set(&t->assign[lm[i].partition], victim));
        }
        free(lm);
        /* Decommission: mark it, plan, apply; the node ends up empty and can be removed. */
        controller_cmd c;
        memset(&c, 0, sizeof(c));
        c.type = CONTROLLER_CMD_DECOMMISSION_NODE;
        c.node_id = victim;
        CHECK_EQ(apply1(&st, &lg, &c), 0);
        controller_move *m;
        int32_t n, unplaceable;
        CHECK_EQ(controller_decommission_plan(&st, victim, &m, &n, &unplaceable), 0);
        CHECK_EQ(unplaceable, 0); /* rf < nodes always leaves a target */
        for (int32_t i = 0; i < n; i++) {
            CHECK(topic_assignment_valid(&m[i].to));
            CHECK(!in_set(&m[i].to, victim));
            CHECK_EQ(m[i].to.n, m[i].from.n);
        }
        apply_moves(&st, &lg, m, n);
        free(m);
        counts k;
        count_all(&st, &k);
        CHECK_EQ(k.rep[victim], 0);
        c.type = CONTROLLER_CMD_REMOVE_NODE;
        CHECK_EQ(apply1(&st, &lg, &c), 0);
        CHECK_EQ(controller_broker_find(&st, victim)->membership, CONTROLLER_NODE_REMOVED);
        controller_cmd again = reg_cmd(victim, 2);
        CHECK_EQ(apply1(&st, &lg, &again), KAFKA_ERR_INVALID_REGISTRATION);
        /* Nothing is placed on a removed node, and its maintenance plan is empty. */
        topic_assignment a[8];
        CHECK_EQ(controller_place(&st, 8, 1, a), 0);
        for (int i = 0; i < 8; i++) CHECK(a[i].nodes[0] != victim);
        CHECK_EQ(controller_maintenance_plan(&st, victim, &lm, &nl, &stuck), 0);
        CHECK_EQ(nl + stuck, 0);
        free(lm);
        controller_state_free(&st);
    }
    /* rf = nodes: no target for the decommissioned node's replicas. */
    controller_state st;
    fake_log lg;
    cluster(&st, &lg, 3, 1);
    CHECK_EQ(create_topic(&st, &lg, "full", 4, 3, 1), 0);
    controller_move *m;
    int32_t n, unplaceable;
    CHECK_EQ(controller_decommission_plan(&st, 2, &m, &n, &unplaceable), 0);
    CHECK_EQ(unplaceable, 4);
    CHECK_EQ(n, 0);
    free(m);
    CHECK_EQ(controller_decommission_plan(&st, 9, &m, &n, &unplaceable), AL_ENOTFOUND);
    controller_state_free(&st);
}

/* Racks: replicas of a partition land in distinct racks whenever there are enough racks, also
 * after a decommission, and the replica spread stays within +-1 when racks are even. */
/* __consumer_offsets created on one node, then more join: the plan raises every partition to
 * min(rf, active nodes), keeps the existing replicas first, spreads the new ones, never lowers,
 * and applies as MOVE_PARTITION commands; a second plan is then empty. */
TEST(raise_rf_plan)
{
    seed_rng();
    for (int round = 0; round < 200; round++) {
        controller_state st;
        fake_log lg;
        cluster(&st, &lg, 1, 1 + rnd_below(3));
        CHECK_EQ(create_topic(&st, &lg, "__consumer_offsets", 16, 1, 1), 0);
        int nodes = 2 + (int)rnd_below(5);
        for (int i = 1; i < nodes; i++) {
            controller_cmd c = reg_cmd(i + 1, 1 + rnd_below(3));
            CHECK_EQ(apply1(&st, &lg, &c), 0);
        }
        if (rnd_below(4) == 0) { /* a draining node receives nothing */
            controller_cmd m;
            memset(&m, 0, sizeof(m));
            m.type = CONTROLLER_CMD_SET_MAINTENANCE;
            m.node_id = nodes;
            m.flag = true;
            CHECK_EQ(apply1(&st, &lg, &m), 0);
        }
        int32_t want = AL_MIN(3, controller_active_nodes(&st));
        const topic *t = topic_table_find(&st.topics, "__consumer_offsets", 18);
        topic_assignment before[16];
        memcpy(before, t->assign, sizeof(before));
        controller_move *mv;
        int32_t n;
        CHECK_EQ(controller_raise_rf_plan(&st, "__consumer_offsets", 3, &mv, &n), 0);
        CHECK_EQ(n, want > 1 ? 16 : 0);
        apply_moves(&st, &lg, mv, n);
        free(mv);
        t = topic_table_find(&st.topics, "__consumer_offsets", 18);
        int32_t per_node[8] = {0};
        for (int32_t p = 0; p < 16; p++) {
            const topic_assignment *a = &t->assign[p];
            CHECK_EQ(a->n, want);
            CHECK_EQ(a->nodes[0], before[p].nodes[0]); /* the preferred leader stays */
            for (int r = 0; r < a->n; r++) {
                CHECK(controller_broker_find(&st, a->nodes[r])->membership ==
                      CONTROLLER_NODE_ACTIVE || r == 0);
                per_node[a->nodes[r]]++;
            }
        }
        /* new replicas spread: every active node but the first holds within 1 of the others */
        int32_t lo = INT32_MAX, hi = 0;
        for (int i = 2; i <= nodes && want > 1; i++) {
            if (controller_broker_find(&st, i)->membership != CONTROLLER_NODE_ACTIVE) continue;
            lo = AL_MIN(lo, per_node[i]);
            hi = AL_MAX(hi, per_node[i]);
        }
        if (want > 1) CHECK(hi - lo <= 1);
        CHECK_EQ(controller_raise_rf_plan(&st, "__consumer_offsets", 3, &mv, &n), 0);
        CHECK_EQ(n, 0);
        free(mv);
        CHECK_EQ(controller_raise_rf_plan(&st, "nope", 3, &mv, &n), AL_ENOTFOUND);
        controller_state_free(&st);
    }
}

TEST(rack_aware_placement)
{
    seed_rng();
    for (int round = 0; round < 200; round++) {
        controller_state st;
        fake_log lg;
        controller_state_init(&st);
        lg.next = 0;
        int racks = 2 + (int)rnd_below(3), per = 1 + (int)rnd_below(3);
        int nodes = racks * per + 1; /* the extra node has no rack */
        for (int i = 0; i < nodes; i++) {
            controller_cmd c = reg_cmd(i + 1, 2);
            if (i < racks * per) snprintf(c.broker.rack, sizeof(c.broker.rack), "r%d", i % racks);
            CHECK_EQ(apply1(&st, &lg, &c), 0);
        }
        int16_t rf = (int16_t)(1 + rnd_below((uint32_t)racks));
        CHECK_EQ(create_topic(&st, &lg, "r", 1 + (int32_t)rnd_below(30), rf, 1), 0);
        const topic *t = topic_table_find(&st.topics, "r", 1);
        for (int32_t p = 0; p < t->partitions; p++) {
            const topic_assignment *a = &t->assign[p];
            for (int x = 0; x < a->n; x++)
                for (int y = 0; y < x; y++) {
                    const char *rx = controller_broker_find(&st, a->nodes[x])->rack;
                    const char *ry = controller_broker_find(&st, a->nodes[y])->rack;
                    CHECK(!rx[0] || strcmp(rx, ry));
                }
        }
        /* Decommission a racked node: replacements keep the racks distinct. */
        controller_cmd c;
        memset(&c, 0, sizeof(c));
        c.type = CONTROLLER_CMD_DECOMMISSION_NODE;
        c.node_id = 1;
        CHECK_EQ(apply1(&st, &lg, &c), 0);
        controller_move *m;
        int32_t n, unplaceable;
        CHECK_EQ(controller_decommission_plan(&st, 1, &m, &n, &unplaceable), 0);
        CHECK_EQ(unplaceable, 0);
        for (int32_t i = 0; i < n; i++) {
            const topic_assignment *a = &m[i].to;
            for (int x = 0; x < a->n; x++)
                for (int y = 0; y < x; y++) {
                    const char *rx = controller_broker_find(&st, a->nodes[x])->rack;
                    const char *ry = controller_broker_find(&st, a->nodes[y])->rack;
                    /* distinct unless rack r0 lost its only node (then the rackless node or
                     * a second replica in a rack is the only way) */
                    CHECK(!rx[0] || !ry[0] || strcmp(rx, ry) || per == 1);
                }
        }
        free(m);
        controller_state_free(&st);
    }
}

TEST(local_partitions)
{
    controller_state st;
    fake_log lg;
    cluster(&st, &lg, 4, 4);
    CHECK_EQ(create_topic(&st, &lg, "b", 8, 2, 1), 0);
    CHECK_EQ(create_topic(&st, &lg, "a", 5, 3, 2), 0);
    int64_t total = 0;
    for (int32_t node = 1; node <= 5; node++) {
        controller_local_partition *v;
        int32_t n;
        CHECK_EQ(controller_local_partitions(&st, node, &v, &n), 0);
        total += n;
        for (int32_t i = 0; i < n; i++) {
            CHECK(in_set(&v[i].replicas, node));
            CHECK(v[i].shard < 4);
            CHECK_EQ(topic_partition_local_shard(v[i].topic, v[i].partition, node, 4),
                     (int32_t)v[i].shard);
            if (i > 0) { /* name, then partition order */
                int cmp = strcmp(v[i - 1].topic->name, v[i].topic->name);
                CHECK(cmp < 0 || (cmp == 0 && v[i - 1].partition < v[i].partition));
            }
        }
        if (node == 5) CHECK_EQ(n, 0); /* not registered: hosts nothing */
        free(v);
    }
    CHECK_EQ(total, 8 * 2 + 5 * 3);
    controller_state_free(&st);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
