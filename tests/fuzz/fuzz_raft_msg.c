/*
 * fuzz_raft_msg.c — libFuzzer target for the Raft wire codec and the state machine's input
 * validation. The input is decoded as a raft message; one that decodes must re-encode to the
 * same bytes. Its group/to fields are then pointed at a follower (node 1 of voters {0, 1, 2},
 * holding a short log) and it is stepped in (HB_BATCH through raft_hb_dispatch); the actions
 * are drained and applied to an in-memory log, and the group is ticked and told of a flush, so
 * arbitrary messages exercise elections, log matching and truncation without crashing or
 * breaking an assertion (SNAPSHOT messages install a snapshot: the log restarts after its
 * point). The input is also tried as a config payload.
 * Seeds: tests/fuzz/corpus/fuzz_raft_msg/ (one encoded message of each type).
 */
#include <stdlib.h>

#include "base/log.h"
#include "raft/raft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FLOG_MAX 2048

typedef struct flog {
    raft_entry e[FLOG_MAX];
    uint32_t n;
} flog;

static int64_t f_snap_off = -1, f_snap_term; /* the log starts after this point */

static int64_t f_term_at(void *ctx, int64_t off)
{
    flog *l = ctx;
    if (off == f_snap_off) return f_snap_term;
    for (uint32_t i = 0; i < l->n; i++)
        if (off >= l->e[i].offset && off <= raft_entry_last(&l->e[i])) return l->e[i].term;
    return -1;
}

static int64_t f_last(void *ctx)
{
    flog *l = ctx;
    return l->n ? raft_entry_last(&l->e[l->n - 1]) : f_snap_off;
}

static int f_read(void *ctx, int64_t from, raft_entry *out, int max, size_t max_bytes)
{
    flog *l = ctx;
    int n = 0;
    for (uint32_t i = 0; i < l->n && n < max; i++)
        if (raft_entry_last(&l->e[i]) >= from) out[n++] = l->e[i];
    (void)max_bytes;
    return n;
}

static const raft_log_ops f_ops = {f_term_at, f_last, f_read};
static flog f_log;
static raft_group f_group;

static void f_drain(raft_group *g)
{
    raft_action a;
    while (raft_action_next(g, &a) == 1) {
        if (a.type == RAFT_ACT_TRUNCATE) {
            while (f_log.n && f_log.e[f_log.n - 1].offset >= a.offset) f_log.n--;
            AL_ASSERT(f_last(&f_log) == a.offset - 1);
        } else if (a.type == RAFT_ACT_APPEND) {
            for (uint32_t i = 0; i < a.n; i++) {
                AL_ASSERT(a.entries[i].offset == f_last(&f_log) + 1);
                AL_ASSERT(f_log.n < FLOG_MAX);
                f_log.e[f_log.n] = a.entries[i];
                f_log.e[f_log.n].data = NULL; /* the message buffer goes away */
                f_log.e[f_log.n].len = 0;
                f_log.n++;
            }
        } else if (a.type == RAFT_ACT_SNAPSHOT) {
            AL_ASSERT(a.len <= RAFT_SNAPSHOT_MAX && (a.len == 0 || a.data));
            f_log.n = 0;
            f_snap_off = a.offset;
            f_snap_term = a.term;
        } else if (a.type == RAFT_ACT_SEND) {
            uint8_t buf[1 << 16];
            size_t sz = raft_msg_size(&a.msg);
            if (sz <= sizeof(buf)) AL_ASSERT(raft_msg_encode(&a.msg, buf, sz) == (int)sz);
        }
    }
}

static raft_group *f_lookup(void *ctx, uint64_t group)
{
    return group == f_group.opt.group ? &f_group : NULL;
}

static void f_after(void *ctx, raft_group *g)
{
    f_drain(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    al_log_set_level(AL_LOG_OFF); /* bad config entries are logged; keep the output quiet */
    raft_config conf;
    raft_config_decode(data, size, &conf);

    static raft_entry ents[RAFT_MSG_MAX_ENTRIES];
    static raft_hb_item hbs[RAFT_MSG_MAX_HB];
    raft_msg m;
    if (raft_msg_decode(data, size, &m, ents, RAFT_MSG_MAX_ENTRIES, hbs, RAFT_MSG_MAX_HB) != 0)
        return 0;
    AL_ASSERT(raft_msg_size(&m) == size);
    uint8_t *re = malloc(size);
    AL_ASSERT(re && raft_msg_encode(&m, re, size) == (int)size);
    AL_ASSERT(memcmp(re, data, size - 4) == 0); /* the CRC is not checked when fuzzing */
    free(re);

    memset(&f_log, 0, sizeof(f_log));
    f_snap_off = -1;
    f_snap_term = 0;
    f_log.e[0] = (raft_entry){.offset = 0, .count = 2, .term = 1};
    f_log.e[1] = (raft_entry){.offset = 2, .count = 1, .term = 1};
    f_log.e[2] = (raft_entry){.offset = 3, .count = 3, .term = 2};
    f_log.n = 3;
    raft_options o;
    raft_options_default(&o);
    o.group = 7;
    o.self = 1;
    o.seed = 1;
    raft_config c = {.n_voters = 3, .voters = {0, 1, 2}};
    raft_hardstate hs = {2, RAFT_NODE_NONE};
    AL_ASSERT(raft_group_init(&f_group, &o, &f_ops, &f_log, &hs, &c, 0) == 0);
    m.group = 7;
    m.to = 1;
    if (m.type == RAFT_MSG_HB_BATCH) {
        for (uint32_t i = 0; i < m.n_hb; i++) hbs[i].group = 7;
        raft_hb_dispatch(&m, f_lookup, f_after, NULL);
    } else {
        raft_step(&f_group, &m);
        f_drain(&f_group);
    }
    raft_append_done(&f_group, f_group.last, f_group.last_term);
    f_drain(&f_group);
    raft_flush_done(&f_group, f_group.last);
    f_drain(&f_group);
    raft_tick(&f_group, 5000);
    f_drain(&f_group);
    AL_ASSERT(f_group.last == f_last(&f_log));
    raft_group_free(&f_group);
    return 0;
}
