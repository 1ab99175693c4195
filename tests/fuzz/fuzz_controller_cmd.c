/*
 * fuzz_controller_cmd.c — libFuzzer target for the controller's decoders (src/cluster/
 * controller*.c). The first input byte picks what the rest is:
 *   0: one command value — if it decodes, it must re-encode to bytes that decode to a command
 *      that encodes identically; then it is applied (inside a real record batch) to a small
 *      cluster state, which must still round-trip through its snapshot byte for byte;
 *   1: a snapshot — if it decodes, encode(decode(x)) must decode and re-encode identically, and
 *      the state must keep working (a placement, an apply);
 *   2: a record batch handed to controller_apply on the small state (any error leaves the state
 *      unchanged), followed by the snapshot round trip;
 *   3: a sequence of [u16 length][command value] applied one by one to the small state, then
 *      the plans (balance, decommission, maintenance, placement, local partitions) run on the
 *      result and their outputs are checked (valid distinct replicas, targets that exist).
 * Seeds: tests/fuzz/corpus/fuzz_controller_cmd/ (one of each command, a snapshot, a batch).
 */
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "cluster/controller.h"
#include "cluster/controller_place.h"
#include "storage/batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int64_t next_offset;

/* Applies one command through a real batch at the next offset. */
static void apply_cmd(controller_state *st, const controller_cmd *c)
{
    uint8_t *b;
    size_t len;
    if (controller_batch_build(c, 1, 0, &b, &len)) return;
    storage_batch_stamp(b, next_offset++, 1);
    AL_ASSERT(controller_apply(st, b, len, NULL, NULL) == 0);
    free(b);
}

/* A state with three brokers and one placed topic. */
static void small_state(controller_state *st)
{
    controller_state_init(st);
    next_offset = 0;
    for (int32_t n = 1; n <= 3; n++) {
        controller_cmd c;
        memset(&c, 0, sizeof(c));
        c.type = CONTROLLER_CMD_REGISTER_NODE;
        c.broker.node_id = n;
        snprintf(c.broker.kafka_host, sizeof(c.broker.kafka_host), "h%d", n);
        snprintf(c.broker.rpc_host, sizeof(c.broker.rpc_host), "h%d", n);
        c.broker.cores = 2;
        apply_cmd(st, &c);
    }
    controller_cmd c;
    memset(&c, 0, sizeof(c));
    topic_assignment a[4];
    AL_ASSERT(controller_place(st, 4, 2, a) == 0);
    c.type = CONTROLLER_CMD_CREATE_TOPIC;
    strcpy(c.name, "t");
    c.topic_id[0] = 1;
    c.partitions = 4;
    c.replication_factor = 2;
    c.assign = a;
    c.n_assign = 4;
    apply_cmd(st, &c);
    AL_ASSERT(st->topics.n == 1);
}

/* The state's snapshot must decode to a state with the same snapshot. */
static void check_snapshot(const controller_state *st)
{
    uint8_t *a, *b;
    size_t al, bl;
    AL_ASSERT(controller_snapshot_encode(st, &a, &al) == 0);
    controller_state back;
    controller_state_init(&back);
    AL_ASSERT(controller_snapshot_decode(&back, a, al) == 0);
    AL_ASSERT(controller_snapshot_encode(&back, &b, &bl) == 0);
    AL_ASSERT(al == bl && !memcmp(a, b, al));
    free(a);
    free(b);
    controller_state_free(&back);
}

static void fuzz_cmd(const uint8_t *p, size_t n)
{
    controller_cmd c;
    int err = controller_cmd_decode(p, n, &c);
    if (err == 0) {
        size_t sz = controller_cmd_size(&c);
        uint8_t *e1 = malloc(sz), *e2 = malloc(sz);
        AL_ASSERT(e1 && e2);
        AL_ASSERT(controller_cmd_encode(&c, e1, sz) == (int64_t)sz);
        controller_cmd d;
        AL_ASSERT(controller_cmd_decode(e1, sz, &d) == 0);
        AL_ASSERT(controller_cmd_encode(&d, e2, sz) == (int64_t)sz);
        AL_ASSERT(!memcmp(e1, e2, sz));
        controller_cmd_free(&d);
        free(e1);
        free(e2);
        controller_state st;
        small_state(&st);
        apply_cmd(&st, &c);
        check_snapshot(&st);
        controller_state_free(&st);
    }
    controller_cmd_free(&c);
}

static void fuzz_snapshot(const uint8_t *p, size_t n)
{
    controller_state st;
    controller_state_init(&st);
    if (controller_snapshot_decode(&st, p, n) == 0) {
        check_snapshot(&st);
        /* A decoded state keeps its rules: placement and apply still work on it. */
        topic_assignment a[2];
        int err = controller_place(&st, 2, 1, a);
        AL_ASSERT(err == 0 || err == AL_ENOTFOUND);
        controller_move *m;
        int32_t k;
        if (controller_balance_plan(&st, 50, &m, &k) == 0) free(m);
        controller_cmd c;
        memset(&c, 0, sizeof(c));
        c.type = CONTROLLER_CMD_ALLOC_IDS;
        c.count = 10;
        next_offset = st.applied_offset + 1;
        if (next_offset < INT64_MAX / 2) apply_cmd(&st, &c);
        check_snapshot(&st);
    }
    controller_state_free(&st);
}

static void fuzz_batch(const uint8_t *p, size_t n)
{
    controller_state st;
    small_state(&st);
    uint8_t *before;
    size_t blen;
    AL_ASSERT(controller_snapshot_encode(&st, &before, &blen) == 0);
    if (controller_apply(&st, p, n, NULL, NULL) != 0) {
        uint8_t *after;
        size_t alen;
        AL_ASSERT(controller_snapshot_encode(&st, &after, &alen) == 0);
        AL_ASSERT(alen == blen && !memcmp(before, after, blen));
        free(after);
    }
    free(before);
    check_snapshot(&st);
    controller_local_partition *lp;
    int32_t k;
    AL_ASSERT(controller_local_partitions(&st, 1, &lp, &k) == 0);
    free(lp);
    controller_state_free(&st);
}

/* Checks the plans on whatever state the commands produced. */
static void check_plans(const controller_state *st)
{
    controller_move *m;
    int32_t n, un;
    AL_ASSERT(controller_balance_plan(st, 1000, &m, &n) == 0);
    AL_ASSERT(n <= 1000);
    for (int32_t i = 0; i < n; i++) AL_ASSERT(topic_assignment_valid(&m[i].to));
    free(m);
    for (int32_t b = 0; b < st->n_brokers && b < 4; b++) {
        int32_t node = st->brokers[b].node_id;
        AL_ASSERT(controller_decommission_plan(st, node, &m, &n, &un) == 0);
        for (int32_t i = 0; i < n; i++) {
            AL_ASSERT(topic_assignment_valid(&m[i].to));
            for (int r = 0; r < m[i].to.n; r++) AL_ASSERT(m[i].to.nodes[r] != node);
        }
        free(m);
        controller_leader_move *lm;
        AL_ASSERT(controller_maintenance_plan(st, node, &lm, &n, &un) == 0);
        for (int32_t i = 0; i < n; i++) AL_ASSERT(lm[i].from == node && lm[i].to != node);
        free(lm);
    }
    topic_assignment a[3];
    int16_t rf = controller_effective_rf(st, -1, 3);
    int err = controller_place(st, 3, rf, a);
    AL_ASSERT(err == 0 || err == AL_ENOTFOUND);
    for (int i = 0; !err && i < 3; i++) AL_ASSERT(topic_assignment_valid(&a[i]) && a[i].n == rf);
    controller_local_partition *lp;
    AL_ASSERT(controller_local_partitions(st, 2, &lp, &n) == 0);
    free(lp);
}

static void fuzz_sequence(const uint8_t *p, size_t n)
{
    controller_state st;
    small_state(&st);
    size_t off = 0;
    for (int k = 0; k < 64 && n - off >= 2; k++) {
        size_t len = (size_t)p[off] << 8 | p[off + 1];
        off += 2;
        if (len > n - off) break;
        controller_cmd c;
        if (controller_cmd_decode(p + off, len, &c) == 0) apply_cmd(&st, &c);
        controller_cmd_free(&c);
        off += len;
    }
    check_snapshot(&st);
    check_plans(&st);
    controller_state_free(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    al_log_set_level(AL_LOG_OFF);
    if (size < 1) return 0;
    switch (data[0] % 4) {
    case 0: fuzz_cmd(data + 1, size - 1); break;
    case 1: fuzz_snapshot(data + 1, size - 1); break;
    case 2: fuzz_batch(data + 1, size - 1); break;
    default: fuzz_sequence(data + 1, size - 1); break;
    }
    return 0;
}
