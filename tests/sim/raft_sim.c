/*
 * raft_sim.c — the deterministic Raft cluster simulation (see raft_sim.h). Included by the
 * Raft unit-test programs (the Makefile builds tests/unit/test_*.c only).
 *
 * Invariants checked while running (the first violation is recorded in s->failure):
 *   - election safety: at most one leader per term;
 *   - leader completeness: a new leader's log holds every entry known committed;
 *   - state-machine safety: every node's entries up to its commit index equal the committed
 *     record (same term, same batch, same bytes), and no node ever truncates a committed
 *     entry;
 *   - acknowledged writes: a proposal acknowledged by its leader is committed, and at the end
 *     (after healing) is at its offset in every node's log (or below its snapshot point);
 *   - snapshots (prefix truncation): each node applies committed entries to a state machine (a
 *     hash chain); every node's state after an offset is the same; a node cuts its log only
 *     up to an applied and durable entry end, keeping the state there as its snapshot; a
 *     follower that needs cut entries installs the leader's snapshot (data sent in chunks),
 *     whose state must equal the recorded state at that offset.
 * All of these per group; a seed may run up to SIM_MAX_GROUPS groups over the same nodes, whose
 * heartbeats share one batch per node pair and whose actions share one scratch per node.
 */
#include "raft_sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t sim_rand(sim *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t sim_below(sim *s, uint32_t n)
{
    return n ? (uint32_t)(sim_rand(s) % n) : 0;
}

static AL_PRINTF(2, 3) void sim_fail(sim *s, const char *fmt, ...)
{
    if (s->failure[0]) return;
    va_list ap;
    va_start(ap, fmt);
    int k = snprintf(s->failure, sizeof(s->failure), "t=%" PRIu64 "ms: ", s->now);
    vsnprintf(s->failure + k, sizeof(s->failure) - (size_t)k, fmt, ap);
    va_end(ap);
}

static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    AL_ASSERT(q);
    return q;
}

/* ------------------------------------------------------------------ the log model */

static sim_entry ent_copy(const raft_entry *e)
{
    sim_entry c;
    c.e = *e;
    c.st = 0;
    c.buf = malloc(e->len ? e->len : 1);
    AL_ASSERT(c.buf);
    if (e->len) memcpy(c.buf, e->data, e->len);
    c.e.data = c.buf;
    return c;
}

static void ent_push(sim_entry **arr, uint32_t *n, uint32_t *cap, sim_entry e)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *arr = xrealloc(*arr, sizeof(**arr) * *cap);
    }
    (*arr)[(*n)++] = e;
}

static void ent_truncate(sim_entry *arr, uint32_t *n, int64_t from)
{
    while (*n && arr[*n - 1].e.offset >= from) {
        free(arr[*n - 1].buf);
        (*n)--;
    }
    AL_ASSERT(!*n || raft_entry_last(&arr[*n - 1].e) < from); /* truncation on a boundary */
}

static int64_t ents_last(const sim_entry *arr, uint32_t n)
{
    return n ? raft_entry_last(&arr[n - 1].e) : -1;
}

/* The snapshot offset: the last offset before the log's start (-1: none). */
static int64_t snap_of(const sim_log *l)
{
    return l->start - 1;
}

/* Last offset of the log as the node sees it (the snapshot point when empty). */
static int64_t log_last(const sim_log *l)
{
    return l->n_mem ? ents_last(l->mem, l->n_mem) : snap_of(l);
}

/* Drops the entries ending at or below upto from the front of arr. */
static void ent_drop_front(sim_entry *arr, uint32_t *n, int64_t upto)
{
    uint32_t k = 0;
    while (k < *n && raft_entry_last(&arr[k].e) <= upto) free(arr[k++].buf);
    memmove(arr, arr + k, sizeof(*arr) * (*n - k));
    *n -= k;
}

/* Index of the entry containing off, or -1. */
static int64_t ents_find(const sim_entry *arr, uint32_t n, int64_t off)
{
    if (!n || off < arr[0].e.offset || off > raft_entry_last(&arr[n - 1].e)) return -1;
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        if (arr[mid].e.offset <= off) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static void log_free(sim_log *l)
{
    ent_truncate(l->mem, &l->n_mem, INT64_MIN);
    ent_truncate(l->disk, &l->n_disk, INT64_MIN);
    for (uint32_t i = 0; i < l->n_pend; i++)
        if (l->pend[i].kind == 1) free(l->pend[i].ent.buf);
    free(l->mem);
    free(l->disk);
    free(l->pend);
    memset(l, 0, sizeof(*l));
}

static void pend_push(sim_log *l, sim_op op)
{
    if (l->n_pend == l->cap_pend) {
        l->cap_pend = l->cap_pend ? l->cap_pend * 2 : 64;
        l->pend = xrealloc(l->pend, sizeof(*l->pend) * l->cap_pend);
    }
    l->pend[l->n_pend++] = op;
}

static void log_append(sim_log *l, const raft_entry *e)
{
    AL_ASSERT(e->offset == log_last(l) + 1);
    ent_push(&l->mem, &l->n_mem, &l->cap_mem, ent_copy(e));
    pend_push(l, (sim_op){.kind = 1, .offset = e->offset, .ent = ent_copy(e)});
}

static void log_truncate(sim_log *l, int64_t from)
{
    ent_truncate(l->mem, &l->n_mem, from);
    pend_push(l, (sim_op){.kind = 2, .offset = from});
}

/* Applies the first k pending writes to the durable image; the last may be torn. */
static void log_persist(sim_log *l, uint32_t k, bool torn_last)
{
    for (uint32_t i = 0; i < l->n_pend; i++) {
        sim_op *op = &l->pend[i];
        bool apply = i < k && !(torn_last && i == k - 1);
        if (apply && op->kind == 1) {
            int64_t dl = l->n_disk ? ents_last(l->disk, l->n_disk) : snap_of(l);
            if (op->offset == dl + 1) {
                ent_push(&l->disk, &l->n_disk, &l->cap_disk, op->ent);
                op->ent.buf = NULL;
            }
        } else if (apply && op->kind == 2) {
            ent_truncate(l->disk, &l->n_disk, op->offset);
        }
        if (op->kind == 1) free(op->ent.buf);
    }
    l->n_pend = 0;
}

static void log_flush(sim_log *l)
{
    log_persist(l, l->n_pend, false);
    AL_ASSERT(l->n_disk == l->n_mem);
}

/* The node crashed: what survives is the durable image plus a prefix of the later writes. */
static void log_crash(sim *s, sim_log *l)
{
    uint32_t k = sim_below(s, 2) ? 0 : sim_below(s, l->n_pend + 1);
    log_persist(l, k, k > 0 && sim_below(s, 3) == 0);
    ent_truncate(l->mem, &l->n_mem, INT64_MIN);
    for (uint32_t i = 0; i < l->n_disk; i++)
        ent_push(&l->mem, &l->n_mem, &l->cap_mem, ent_copy(&l->disk[i].e));
}

static int64_t op_term_at(void *ctx, int64_t off)
{
    sim_log *l = ctx;
    if (off == snap_of(l)) return l->snap_term;
    int64_t i = ents_find(l->mem, l->n_mem, off);
    return i < 0 ? -1 : l->mem[i].e.term;
}

static int64_t op_last(void *ctx)
{
    return log_last(ctx);
}

static int64_t op_snapshot(void *ctx, int64_t snap, const uint8_t **data)
{
    sim_log *l = ctx;
    if (snap != snap_of(l) || !l->snap_data) return AL_ERANGE;
    *data = l->snap_data;
    return l->snap_len;
}

static int op_read(void *ctx, int64_t from, raft_entry *out, int max, size_t max_bytes)
{
    sim_log *l = ctx;
    int64_t i = ents_find(l->mem, l->n_mem, from);
    if (i < 0) return 0;
    int n = 0;
    size_t bytes = 0;
    for (; i < l->n_mem && n < max; i++) {
        if (n > 0 && bytes + l->mem[i].e.len > max_bytes) break;
        out[n++] = l->mem[i].e;
        bytes += l->mem[i].e.len;
    }
    return n;
}

static const raft_log_ops sim_log_ops = {op_term_at, op_last, op_read, op_snapshot};

int64_t sim_term_at(sim *s, int i, int64_t off)
{
    return op_term_at(&s->nodes[0][i].log, off);
}

/* ------------------------------------------------------------------ events */

static bool ev_before(const sim_event *a, const sim_event *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void ev_push(sim *s, sim_event e)
{
    if (s->n_ev == s->cap_ev) {
        s->cap_ev = s->cap_ev ? s->cap_ev * 2 : 256;
        s->ev = xrealloc(s->ev, sizeof(*s->ev) * s->cap_ev);
    }
    e.seq = s->ev_seq++;
    uint32_t i = s->n_ev++;
    while (i > 0) { /* binary heap by (at, seq) */
        uint32_t p = (i - 1) / 2;
        if (ev_before(&s->ev[p], &e)) break;
        s->ev[i] = s->ev[p];
        i = p;
    }
    s->ev[i] = e;
}

static sim_event ev_pop(sim *s)
{
    sim_event top = s->ev[0];
    sim_event last = s->ev[--s->n_ev];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= s->n_ev) break;
        if (c + 1 < s->n_ev && ev_before(&s->ev[c + 1], &s->ev[c])) c++;
        if (ev_before(&last, &s->ev[c])) break;
        s->ev[i] = s->ev[c];
        i = c;
    }
    if (s->n_ev) s->ev[i] = last;
    return top;
}

static bool link_up(sim *s, int a, int b)
{
    return s->part[a] == s->part[b] && !s->cut[a][b];
}

static void net_send(sim *s, int from, const raft_msg *m)
{
    int to = m->to;
    s->n_msgs++;
    if (to < 0 || (uint32_t)to >= s->n || !link_up(s, from, to)) {
        s->n_dropped++;
        return;
    }
    size_t sz = raft_msg_size(m);
    uint8_t *buf = malloc(sz);
    AL_ASSERT(buf);
    int rc = raft_msg_encode(m, buf, sz);
    AL_ASSERT(rc == (int)sz);
    uint32_t copies = 1;
    if (s->faults_on) {
        if (sim_below(s, 100) < s->f.drop_pct) copies = 0;
        else if (sim_below(s, 100) < s->f.dup_pct) copies = 2;
    }
    if (!copies) s->n_dropped++;
    for (uint32_t c = 0; c < copies; c++) {
        uint8_t *b = buf; /* the last copy takes buf; earlier ones copy it intact */
        if (c + 1 < copies) {
            b = malloc(sz);
            AL_ASSERT(b);
            memcpy(b, buf, sz);
        }
        bool corrupt = s->faults_on && sim_below(s, 100) < s->f.corrupt_pct;
        if (corrupt) b[sim_below(s, (uint32_t)sz)] ^= (uint8_t)(1u << sim_below(s, 8));
        uint32_t d = s->faults_on
                         ? s->f.delay_min + sim_below(s, s->f.delay_max - s->f.delay_min + 1)
                         : 1 + sim_below(s, 3);
        ev_push(s, (sim_event){.at = s->now + d, .type = 1, .node = to,
                               .epoch = s->host[to].epoch, .bytes = b, .len = (uint32_t)sz,
                               .a = corrupt});
    }
    if (!copies) free(buf);
}

/* ------------------------------------------------------------------ invariants */

static void cm_grow(sim_grp *gr, int64_t off)
{
    if (off < gr->cap_cm) return;
    int64_t cap = gr->cap_cm ? gr->cap_cm : 1024;
    while (cap <= off) cap *= 2;
    gr->cm = xrealloc(gr->cm, sizeof(*gr->cm) * (size_t)cap);
    memset(gr->cm + gr->cap_cm, 0, sizeof(*gr->cm) * (size_t)(cap - gr->cap_cm));
    gr->cap_cm = cap;
}

static uint64_t ent_hash(const raft_entry *e)
{
    return fnv(e->data, e->len) ^ (uint64_t)e->type;
}

/* Checks (and records) group gi's entries on node i up to its commit index against the
 * committed record. */
static void check_committed(sim *s, uint32_t gi, int i, int64_t commit)
{
    sim_node *nd = &s->nodes[gi][i];
    sim_grp *gr = &s->grp[gi];
    sim_log *l = &nd->log;
    if (commit <= nd->verified) return;
    if (commit > log_last(l)) {
        sim_fail(s, "group %u node %d commit %" PRId64 " beyond its log end %" PRId64, gi, i,
                 commit, log_last(l));
        return;
    }
    cm_grow(gr, commit);
    int64_t k = ents_find(l->mem, l->n_mem, AL_MAX(nd->verified, snap_of(l)) + 1);
    for (; k >= 0 && k < l->n_mem && l->mem[k].e.offset <= commit; k++) {
        const raft_entry *e = &l->mem[k].e;
        uint64_t h = ent_hash(e);
        for (int64_t o = e->offset; o <= raft_entry_last(e) && o <= commit; o++) {
            sim_committed *c = &gr->cm[o];
            if (!c->term) {
                c->term = e->term;
                c->base = e->offset;
                c->hash = h;
            } else if (c->term != e->term || c->base != e->offset || c->hash != h) {
                sim_fail(s, "group %u node %d: committed offset %" PRId64 " differs (term %"
                            PRId64 " vs %" PRId64 ", base %" PRId64 " vs %" PRId64 ")",
                         gi, i, o, e->term, c->term, e->offset, c->base);
                return;
            }
        }
    }
    nd->verified = commit;
    if (commit > gr->commit_max) gr->commit_max = commit;
}

/* Does group gi's log on node i hold every committed entry up to upto? */
static bool has_all_committed(sim *s, uint32_t gi, int i, int64_t upto)
{
    sim_log *l = &s->nodes[gi][i].log;
    if (snap_of(l) >= 0 && snap_of(l) <= upto && s->grp[gi].cm[snap_of(l)].state &&
        s->grp[gi].cm[snap_of(l)].state != l->snap_state)
        return false;
    for (int64_t o = l->start; o <= upto; o++) {
        int64_t k = ents_find(l->mem, l->n_mem, o);
        if (k < 0) return false;
        const raft_entry *e = &l->mem[k].e;
        const sim_committed *c = &s->grp[gi].cm[o];
        if (c->term != e->term || c->base != e->offset || c->hash != ent_hash(e)) return false;
        o = raft_entry_last(e);
    }
    return true;
}

static void on_leader(sim *s, uint32_t gi, int i, int64_t term)
{
    sim_grp *gr = &s->grp[gi];
    s->n_elections++;
    if (term >= gr->cap_terms) {
        int64_t cap = gr->cap_terms ? gr->cap_terms : 64;
        while (cap <= term) cap *= 2;
        gr->leader_of = xrealloc(gr->leader_of, sizeof(*gr->leader_of) * (size_t)cap);
        for (int64_t t = gr->cap_terms; t < cap; t++) gr->leader_of[t] = -1;
        gr->cap_terms = cap;
    }
    if (gr->leader_of[term] != -1 && gr->leader_of[term] != i)
        sim_fail(s, "group %u: two leaders in term %" PRId64 ": %d and %d", gi, term,
                 gr->leader_of[term], i);
    gr->leader_of[term] = i;
    if (!has_all_committed(s, gi, i, gr->commit_max))
        sim_fail(s, "group %u: leader %d of term %" PRId64 " lacks committed entries (commit_max %"
                    PRId64 ")", gi, i, term, gr->commit_max);
}

static void on_truncate(sim *s, uint32_t gi, int i, int64_t from)
{
    s->n_truncates++;
    sim_log *l = &s->nodes[gi][i].log;
    const sim_grp *gr = &s->grp[gi];
    for (int64_t k = ents_find(l->mem, l->n_mem, from); k >= 0 && k < l->n_mem; k++) {
        const raft_entry *e = &l->mem[k].e;
        if (e->offset > gr->commit_max) break;
        const sim_committed *c = &gr->cm[e->offset];
        if (c->term == e->term && c->base == e->offset)
            sim_fail(s, "group %u node %d truncates committed entry at %" PRId64, gi, i,
                     e->offset);
    }
}

/* Applies node i's committed entries of group gi to its state machine (a hash chain) and
 * checks the state after each against the one recorded for that offset. */
static void apply_committed(sim *s, uint32_t gi, int i, int64_t commit)
{
    sim_node *nd = &s->nodes[gi][i];
    sim_grp *gr = &s->grp[gi];
    sim_log *l = &nd->log;
    int64_t k = ents_find(l->mem, l->n_mem, nd->applied + 1);
    for (; k >= 0 && k < l->n_mem && raft_entry_last(&l->mem[k].e) <= commit; k++) {
        const raft_entry *e = &l->mem[k].e;
        uint64_t st = (nd->state ^ ent_hash(e) ^ ((uint64_t)e->offset * 0x9e3779b97f4a7c15ull) ^
                       (uint64_t)e->term) * 1099511628211ull;
        if (!st) st = 1;
        nd->state = st;
        nd->applied = raft_entry_last(e);
        l->mem[k].st = st;
        cm_grow(gr, nd->applied);
        sim_committed *c = &gr->cm[nd->applied];
        if (!c->state) {
            c->state = st;
        } else if (c->state != st) {
            sim_fail(s, "group %u node %d: state after %" PRId64 " differs", gi, i, nd->applied);
            return;
        }
    }
}

static void on_commit(sim *s, uint32_t gi, int i, int64_t commit)
{
    check_committed(s, gi, i, commit);
    sim_node *nd = &s->nodes[gi][i];
    sim_grp *gr = &s->grp[gi];
    if (!s->failure[0]) apply_committed(s, gi, i, commit);
    if (nd->g.role != RAFT_LEADER) return;
    for (uint32_t p = 0; p < gr->n_props; p++) {
        sim_proposal *pr = &gr->props[p];
        if (pr->acked || pr->node != i || pr->term != nd->g.term || pr->offset > commit) continue;
        int64_t k = ents_find(nd->log.mem, nd->log.n_mem, pr->offset);
        if (pr->offset > snap_of(&nd->log) && (k < 0 || nd->log.mem[k].e.term != pr->term)) {
            sim_fail(s, "group %u: leader %d lost its own proposal at %" PRId64, gi, i,
                     pr->offset);
            return;
        }
        pr->acked = true;
        s->n_acked++;
    }
}

/* ------------------------------------------------------------------ snapshots */

/* Sets node i's snapshot point of group gi (durable at once) and its data. */
static void snap_set(sim *s, sim_log *l, int64_t off, int64_t term, const raft_config *conf,
                     uint64_t state)
{
    l->start = off + 1;
    l->snap_term = term;
    l->snap_conf = *conf;
    l->snap_state = state;
    free(l->snap_data);
    l->snap_len = 8 + s->f.snap_filler;
    l->snap_data = malloc(l->snap_len);
    AL_ASSERT(l->snap_data);
    memcpy(l->snap_data, &state, 8);
    uint64_t x = state;
    for (uint32_t k = 8; k < l->snap_len; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        l->snap_data[k] = (uint8_t)(x >> 56);
    }
}

int64_t sim_compact(sim *s, uint32_t gi, int i, int64_t upto)
{
    sim_node *nd = &s->nodes[gi][i];
    sim_log *l = &nd->log;
    if (!s->host[i].up || !nd->has_group) return -1;
    int64_t x = AL_MIN(AL_MIN(upto, nd->applied), AL_MIN(nd->g.durable, nd->g.commit));
    int64_t k = ents_find(l->mem, l->n_mem, x);
    if (k >= 0 && raft_entry_last(&l->mem[k].e) != x) k--;
    if (k < 0) return -1;
    const sim_entry *e = &l->mem[k];
    x = raft_entry_last(&e->e);
    AL_ASSERT(e->st != 0);
    raft_config conf;
    int rc = raft_compact(&nd->g, x, &conf);
    if (rc < 0) {
        sim_fail(s, "group %u node %d: compact at %" PRId64 ": %s", gi, i, x, al_strerror(rc));
        return -1;
    }
    snap_set(s, l, x, e->e.term, &conf, e->st);
    ent_drop_front(l->mem, &l->n_mem, x);
    ent_drop_front(l->disk, &l->n_disk, x);
    s->n_compactions++;
    return x;
}

/* SNAPSHOT action: the node's log is replaced by the leader's snapshot. */
static void on_install(sim *s, uint32_t gi, int i, const raft_action *a)
{
    sim_node *nd = &s->nodes[gi][i];
    sim_log *l = &nd->log;
    sim_grp *gr = &s->grp[gi];
    uint64_t state = 0;
    if (a->len != 8 + s->f.snap_filler || !a->data) {
        sim_fail(s, "group %u node %d: snapshot at %" PRId64 " has %" PRIu64 " bytes", gi, i,
                 a->offset, a->len);
        return;
    }
    memcpy(&state, a->data, 8);
    cm_grow(gr, a->offset);
    if (gr->cm[a->offset].state && gr->cm[a->offset].state != state) {
        sim_fail(s, "group %u node %d: installed snapshot at %" PRId64 " has the wrong state",
                 gi, i, a->offset);
        return;
    }
    snap_set(s, l, a->offset, a->term, &a->conf, state);
    if (memcmp(l->snap_data, a->data, l->snap_len) != 0)
        sim_fail(s, "group %u node %d: snapshot data at %" PRId64 " corrupted", gi, i,
                 a->offset);
    ent_truncate(l->mem, &l->n_mem, INT64_MIN);
    ent_truncate(l->disk, &l->n_disk, INT64_MIN);
    for (uint32_t k = 0; k < l->n_pend; k++)
        if (l->pend[k].kind == 1) free(l->pend[k].ent.buf);
    l->n_pend = 0;
    nd->applied = a->offset;
    nd->state = state;
    nd->verified = a->offset;
    s->n_installs++;
}

/* ------------------------------------------------------------------ nodes */

static void flush_batches(sim *s, int i)
{
    raft_msg b;
    while (raft_hb_batcher_take(&s->host[i].hb, &b) == 1) {
        s->n_batches++;
        s->n_batch_items += b.n_hb;
        net_send(s, i, &b);
    }
}

/* Applies group gi's queued actions on node i. */
static void drain_group(sim *s, uint32_t gi, int i)
{
    sim_node *nd = &s->nodes[gi][i];
    sim_host *h = &s->host[i];
    raft_action a;
    if (!nd->has_group) return;
    while (raft_action_next(&nd->g, &a) == 1) {
        switch (a.type) {
        case RAFT_ACT_PERSIST: nd->hs = a.hs; break;
        case RAFT_ACT_SEND: {
            int rc = raft_hb_batcher_add(&h->hb, &a.msg);
            if (rc == AL_EFULL) {
                flush_batches(s, i);
                rc = raft_hb_batcher_add(&h->hb, &a.msg);
            }
            if (rc == 0) net_send(s, i, &a.msg);
            break;
        }
        case RAFT_ACT_APPEND:
            for (uint32_t k = 0; k < a.n; k++) log_append(&nd->log, &a.entries[k]);
            ev_push(s, (sim_event){.at = s->now + sim_below(s, s->f.disk_delay_max + 1),
                                   .type = 2, .node = i, .grp = gi, .epoch = h->epoch,
                                   .a = raft_entry_last(&a.entries[a.n - 1]),
                                   .b = a.entries[a.n - 1].term});
            break;
        case RAFT_ACT_TRUNCATE:
            on_truncate(s, gi, i, a.offset);
            log_truncate(&nd->log, a.offset);
            break;
        case RAFT_ACT_FLUSH:
            if (!nd->flush_pending) {
                nd->flush_pending = true;
                ev_push(s, (sim_event){.at = s->now + 1 + sim_below(s, s->f.disk_delay_max + 1),
                                       .type = 3, .node = i, .grp = gi, .epoch = h->epoch});
            }
            break;
        case RAFT_ACT_COMMIT: on_commit(s, gi, i, a.offset); break;
        case RAFT_ACT_ROLE:
            if (a.role == RAFT_LEADER) on_leader(s, gi, i, a.term);
            break;
        case RAFT_ACT_SNAPSHOT: on_install(s, gi, i, &a); break;
        default: sim_fail(s, "unknown action %d", a.type);
        }
    }
}

void sim_drain(sim *s, int i)
{
    for (uint32_t gi = 0; gi < s->n_groups; gi++) drain_group(s, gi, i);
    flush_batches(s, i);
}

static uint64_t local_now(sim *s, int i)
{
    return (uint64_t)((int64_t)s->now + 1000000 + s->host[i].skew);
}

static void group_start(sim *s, uint32_t gi, int i)
{
    sim_node *nd = &s->nodes[gi][i];
    raft_options o = s->opt;
    o.self = i;
    o.group = gi;
    o.seed = s->seed * 31 + s->host[i].epoch;
    o.scratch = &s->host[i].sc;
    int rc = raft_group_init(&nd->g, &o, &sim_log_ops, &nd->log, &nd->hs, &s->boot,
                             local_now(s, i));
    AL_ASSERT(rc == 0);
    sim_log *l = &nd->log;
    if (snap_of(l) >= 0)
        AL_ASSERT(raft_restore_snapshot(&nd->g, snap_of(l), l->snap_term, &l->snap_conf) == 0);
    nd->applied = snap_of(l);
    nd->state = l->snap_state;
    for (uint32_t k = 0; k < nd->log.n_mem; k++) {
        const raft_entry *e = &nd->log.mem[k].e;
        if (e->type == RAFT_ENTRY_CONFIG)
            AL_ASSERT(raft_restore_config(&nd->g, e->offset, e->data, e->len) == 0);
    }
    nd->has_group = true;
    nd->verified = snap_of(l);
    nd->flush_pending = false;
}

static void node_start(sim *s, int i)
{
    for (uint32_t gi = 0; gi < s->n_groups; gi++) group_start(s, gi, i);
    s->host[i].up = true;
}

void sim_crash(sim *s, int i)
{
    sim_host *h = &s->host[i];
    if (!h->up) return;
    s->n_crashes++;
    h->up = false;
    h->epoch++;
    for (uint32_t gi = 0; gi < s->n_groups; gi++) {
        sim_node *nd = &s->nodes[gi][i];
        raft_group_free(&nd->g);
        nd->has_group = false;
        log_crash(s, &nd->log);
    }
    /* batched messages not yet sent are lost with the process */
    raft_msg b;
    while (raft_hb_batcher_take(&h->hb, &b) == 1) {}
}

void sim_restart(sim *s, int i)
{
    if (s->host[i].up) return;
    node_start(s, i);
}

void sim_partition(sim *s, uint32_t mask)
{
    for (uint32_t i = 0; i < s->n; i++) s->part[i] = (mask >> i) & 1;
}

int sim_init(sim *s, uint32_t n, uint64_t seed)
{
    return sim_init_groups(s, n, n, 1, seed);
}

int sim_init_conf(sim *s, uint32_t n, uint32_t n_voters, uint64_t seed)
{
    return sim_init_groups(s, n, n_voters, 1, seed);
}

int sim_init_groups(sim *s, uint32_t n, uint32_t n_voters, uint32_t n_groups, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    AL_ASSERT(n >= 1 && n <= SIM_MAX_NODES);
    AL_ASSERT(n_groups >= 1 && n_groups <= SIM_MAX_GROUPS);
    AL_ASSERT(n_voters >= 1 && n_voters <= n);
    s->n = n;
    s->n_groups = n_groups;
    s->seed = seed;
    s->rng = seed ^ 0x5a5a5a5a12345678ull;
    for (uint32_t gi = 0; gi < n_groups; gi++) s->grp[gi].commit_max = -1;
    raft_options_default(&s->opt);
    s->opt.election_timeout_ms = 300;
    s->opt.heartbeat_ms = 50;
    s->opt.max_inflight_msgs = 4;
    s->opt.max_inflight_bytes = 4096;
    s->opt.max_msg_bytes = 1024;
    s->opt.max_msg_entries = 8;
    s->opt.max_uncommitted = 400;
    s->f.delay_min = 1;
    s->f.delay_max = 3;
    s->f.disk_delay_max = 2;
    s->boot.n_voters = (uint8_t)n_voters;
    for (uint32_t i = 0; i < n_voters; i++) s->boot.voters[i] = (int32_t)i;
    for (uint32_t i = 0; i < n; i++) {
        sim_host *h = &s->host[i];
        if (raft_hb_batcher_init(&h->hb, (int32_t)i, SIM_MAX_NODES, 64) < 0) return -ENOMEM;
        if (raft_scratch_init(&h->sc, 256, 1024) < 0) return -ENOMEM;
        for (uint32_t gi = 0; gi < n_groups; gi++) {
            s->nodes[gi][i].id = (int32_t)i;
            s->nodes[gi][i].hs = (raft_hardstate){0, RAFT_NODE_NONE};
            s->nodes[gi][i].log.snap_conf = s->boot;
        }
        node_start(s, (int)i);
    }
    return 0;
}

void sim_free(sim *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        for (uint32_t gi = 0; gi < s->n_groups; gi++) {
            sim_node *nd = &s->nodes[gi][i];
            if (nd->has_group) raft_group_free(&nd->g);
            free(nd->log.snap_data);
            log_free(&nd->log);
        }
        raft_hb_batcher_free(&s->host[i].hb);
        raft_scratch_free(&s->host[i].sc);
    }
    for (uint32_t i = 0; i < s->n_ev; i++) free(s->ev[i].bytes);
    free(s->ev);
    for (uint32_t gi = 0; gi < s->n_groups; gi++) {
        free(s->grp[gi].cm);
        free(s->grp[gi].leader_of);
        free(s->grp[gi].props);
    }
}

void sim_random_faults(sim *s)
{
    sim_faults *f = &s->f;
    f->drop_pct = sim_below(s, 15);
    f->dup_pct = sim_below(s, 10);
    f->corrupt_pct = sim_below(s, 3);
    f->delay_min = 1 + sim_below(s, 5);
    f->delay_max = f->delay_min + sim_below(s, 60);
    f->crash_per_mille = sim_below(s, 4);
    f->partition_per_mille = sim_below(s, 8);
    f->clock_jump_per_mille = sim_below(s, 4);
    f->transfer_per_mille = sim_below(s, 6);
    f->propose_pct = 20 + sim_below(s, 60);
    f->disk_delay_max = 1 + sim_below(s, 20);
    if (sim_below(s, 3) == 0) f->member_per_mille = 5 + sim_below(s, 30);
    if (sim_below(s, 4) == 0) { /* a crashy profile with slow disks */
        f->crash_per_mille = 5 + sim_below(s, 20);
        f->disk_delay_max = 10 + sim_below(s, 60);
    }
    raft_options *o = &s->opt;
    if (sim_below(s, 3) == 0) o->catchup_bytes_per_tick = 512 + sim_below(s, 4096);
    o->max_msg_entries = 1 + sim_below(s, 8);
    o->max_msg_bytes = 128 + sim_below(s, 2048);
    o->max_inflight_msgs = 1 + sim_below(s, 8);
    o->max_inflight_bytes = 256 + sim_below(s, 8192);
    if (sim_below(s, 2) == 0) { /* prefix truncation and snapshots */
        f->compact_per_mille = 20 + sim_below(s, 200);
        f->snap_filler = sim_below(s, 3000);
    }
    /* restart the groups with these options (nothing has happened yet) */
    for (uint32_t i = 0; i < s->n; i++)
        for (uint32_t gi = 0; gi < s->n_groups; gi++) {
            raft_group_free(&s->nodes[gi][i].g);
            group_start(s, gi, (int)i);
        }
    s->faults_on = true;
}

int sim_leader_g(sim *s, uint32_t gi)
{
    int best = -1;
    for (uint32_t i = 0; i < s->n; i++) {
        sim_node *nd = &s->nodes[gi][i];
        if (s->host[i].up && nd->g.role == RAFT_LEADER &&
            (best < 0 || nd->g.term > s->nodes[gi][best].g.term))
            best = (int)i;
    }
    return best;
}

int sim_leader(sim *s)
{
    return sim_leader_g(s, 0);
}

int64_t sim_propose_g(sim *s, uint32_t gi, int i, int32_t count)
{
    sim_node *nd = &s->nodes[gi][i];
    sim_grp *gr = &s->grp[gi];
    if (!s->host[i].up) return RAFT_ENOTLEADER;
    uint8_t data[300];
    uint32_t len = 16 + sim_below(s, 200);
    for (uint32_t k = 0; k < len; k++) data[k] = (uint8_t)sim_rand(s);
    memcpy(data, &gr->n_props, sizeof(gr->n_props));
    raft_entry e = {.count = count, .len = len, .data = data};
    int64_t base;
    int rc = raft_propose(&nd->g, &e, 1, &base);
    if (rc == 0) {
        if (gr->n_props == gr->cap_props) {
            gr->cap_props = gr->cap_props ? gr->cap_props * 2 : 256;
            gr->props = xrealloc(gr->props, sizeof(*gr->props) * gr->cap_props);
        }
        gr->props[gr->n_props++] = (sim_proposal){.node = i, .term = nd->g.term, .offset = base,
                                                   .count = count,
                                                   .hash = fnv(data, len) ^ RAFT_ENTRY_DATA};
    }
    sim_drain(s, i);
    return rc < 0 ? rc : base;
}

int64_t sim_propose(sim *s, int i, int32_t count)
{
    return sim_propose_g(s, 0, i, count);
}

/* ------------------------------------------------------------------ the run loop */

static raft_group *hb_lookup(void *ctx, uint64_t group)
{
    sim *s = ctx;
    if (group >= s->n_groups || !s->host[s->cur].up) return NULL;
    sim_node *nd = &s->nodes[group][s->cur];
    return nd->has_group ? &nd->g : NULL;
}

static void hb_after(void *ctx, raft_group *g)
{
    sim *s = ctx;
    uint32_t gi = (uint32_t)g->opt.group;
    AL_ASSERT(gi < s->n_groups && g == &s->nodes[gi][s->cur].g);
    drain_group(s, gi, s->cur);
}

static void deliver(sim *s, sim_event *ev)
{
    sim_host *h = &s->host[ev->node];
    raft_msg m;
    static raft_entry ents[RAFT_MSG_MAX_ENTRIES];
    static raft_hb_item hbs[256];
    if (!h->up || ev->epoch != h->epoch) return;
    int rc = raft_msg_decode(ev->bytes, ev->len, &m, ents, AL_ARRAY_SIZE(ents), hbs,
                             AL_ARRAY_SIZE(hbs));
    if (rc < 0) {
        if (rc != AL_ECORRUPT && rc != AL_EMALFORMED && rc != AL_ETRUNCATED)
            sim_fail(s, "decode failed: %s", al_strerror(rc));
        if (!ev->a) sim_fail(s, "an intact message failed to decode: %s", al_strerror(rc));
        s->n_dropped++;
        return;
    }
    if (m.to != ev->node || m.from < 0 || (uint32_t)m.from >= s->n ||
        !link_up(s, m.from, ev->node))
        return;
    if (m.type == RAFT_MSG_HB_BATCH) {
        s->cur = ev->node;
        raft_hb_dispatch(&m, hb_lookup, hb_after, s);
    } else if (m.group < s->n_groups) {
        raft_step(&s->nodes[m.group][ev->node].g, &m);
        drain_group(s, (uint32_t)m.group, ev->node);
    }
    flush_batches(s, ev->node);
}

static void handle_event(sim *s, sim_event *ev)
{
    if (ev->type == 1) {
        deliver(s, ev);
        free(ev->bytes);
        return;
    }
    sim_host *h = &s->host[ev->node];
    sim_node *nd = &s->nodes[ev->grp][ev->node];
    if (!h->up || ev->epoch != h->epoch) return;
    if (ev->type == 2) {
        raft_append_done(&nd->g, ev->a, ev->b);
    } else {
        nd->flush_pending = false;
        log_flush(&nd->log);
        raft_flush_done(&nd->g, ents_last(nd->log.mem, nd->log.n_mem));
    }
    sim_drain(s, ev->node);
}

void sim_membership_step(sim *s, uint32_t gi, bool restore)
{
    int l = sim_leader_g(s, gi);
    if (l < 0) return;
    raft_group *g = &s->nodes[gi][l].g;
    if (g->conf_offset > g->commit || g->commit < g->term_start) return;
    const raft_config *c = &g->conf;
    int op = 0;
    int32_t node = -1;
    for (uint32_t i = 0; i < s->n && !op; i++) {
        if (!raft_config_is_voter(c, (int32_t)i) && !raft_config_is_learner(c, (int32_t)i)) {
            op = RAFT_CONF_ADD_LEARNER;
            node = (int32_t)i;
        } else if (raft_config_is_learner(c, (int32_t)i) &&
                   raft_replica_caught_up(g, (int32_t)i)) {
            op = RAFT_CONF_PROMOTE;
            node = (int32_t)i;
        }
    }
    if (!op && !restore && c->n_voters > 2) {
        op = RAFT_CONF_REMOVE;
        node = c->voters[sim_below(s, c->n_voters)];
    }
    if (!op) return;
    if (raft_change_membership(g, op, node) == 0) s->n_conf_changes++;
    sim_drain(s, l);
}

/* Random faults and client load for one 10 ms step. */
static void chaos_step(sim *s)
{
    sim_faults *f = &s->f;
    for (uint32_t i = 0; i < s->n; i++) {
        sim_host *h = &s->host[i];
        if (h->up && sim_below(s, 1000) < f->crash_per_mille) {
            sim_crash(s, (int)i);
            h->restart_at = s->now + 50 + sim_below(s, 2000);
        } else if (!h->up && s->now >= h->restart_at) {
            sim_restart(s, (int)i);
        }
        if (sim_below(s, 1000) < f->clock_jump_per_mille) {
            if (sim_below(s, 4) == 0) h->skew -= sim_below(s, 500);   /* backwards */
            else h->skew += sim_below(s, 3 * s->opt.election_timeout_ms); /* a pause */
        }
    }
    if (sim_below(s, 1000) < f->partition_per_mille) {
        uint32_t kind = sim_below(s, 3);
        if (kind == 0) sim_partition(s, 0);
        else if (kind == 1) sim_partition(s, 1u << sim_below(s, s->n));
        else sim_partition(s, (uint32_t)sim_rand(s) & ((1u << s->n) - 1));
    }
    uint32_t gi = sim_below(s, s->n_groups);
    if (sim_below(s, 1000) < f->member_per_mille) sim_membership_step(s, gi, false);
    if (f->compact_per_mille && sim_below(s, 1000) < f->compact_per_mille) {
        int i = (int)sim_below(s, s->n);
        sim_node *nd = &s->nodes[gi][i];
        if (s->host[i].up && nd->has_group)
            sim_compact(s, gi, i, nd->applied - (int64_t)sim_below(s, 30));
    }
    int l = sim_leader_g(s, gi);
    if (l >= 0 && sim_below(s, 1000) < f->transfer_per_mille) {
        int32_t t = (int32_t)sim_below(s, s->n);
        if (t != l && raft_transfer_leadership(&s->nodes[gi][l].g, t) == 0) s->n_transfers++;
        sim_drain(s, l);
    }
    for (gi = 0; gi < s->n_groups; gi++) {
        if (sim_below(s, 100) >= f->propose_pct) continue;
        /* any node that believes it leads may get the write (stale leaders included) */
        int i = (int)sim_below(s, s->n);
        l = sim_leader_g(s, gi);
        if (s->host[i].up && s->nodes[gi][i].g.role == RAFT_LEADER)
            sim_propose_g(s, gi, i, 1 + (int32_t)sim_below(s, 5));
        else if (l >= 0)
            sim_propose_g(s, gi, l, 1 + (int32_t)sim_below(s, 5));
    }
}

static void step(sim *s)
{
    uint64_t end = s->now + 10;
    while (s->n_ev && s->ev[0].at <= end && !s->failure[0]) {
        sim_event ev = ev_pop(s);
        if (ev.at > s->now) s->now = ev.at;
        handle_event(s, &ev);
    }
    s->now = end;
    for (uint32_t i = 0; i < s->n && !s->failure[0]; i++) {
        if (!s->host[i].up) continue;
        for (uint32_t gi = 0; gi < s->n_groups; gi++) {
            raft_tick(&s->nodes[gi][i].g, local_now(s, (int)i));
            drain_group(s, gi, (int)i);
        }
        flush_batches(s, (int)i); /* one heartbeat batch per peer for all groups */
    }
    if (s->faults_on && !s->failure[0]) chaos_step(s);
    for (uint32_t gi = 0; gi < s->n_groups && s->restore_members && !s->failure[0]; gi++)
        sim_membership_step(s, gi, true);
}

void sim_run(sim *s, uint64_t ms)
{
    for (uint64_t t = 0; t < ms && !s->failure[0]; t += 10) step(s);
}

bool sim_run_until(sim *s, uint64_t ms, bool (*pred)(sim *s))
{
    for (uint64_t t = 0; t < ms && !s->failure[0]; t += 10) {
        if (pred(s)) return true;
        step(s);
    }
    return pred(s);
}

void sim_heal(sim *s)
{
    s->faults_on = false;
    s->restore_members = true;
    sim_partition(s, 0);
    for (uint32_t i = 0; i < s->n; i++) sim_restart(s, (int)i);
}

static bool group_converged(sim *s, uint32_t gi)
{
    int l = sim_leader_g(s, gi);
    if (l < 0) return false;
    raft_group *lg = &s->nodes[gi][l].g;
    if (lg->commit != lg->last || lg->commit < lg->term_start) return false;
    if (s->restore_members && lg->conf.n_voters != s->n) return false;
    for (uint32_t i = 0; i < s->n; i++) {
        sim_node *nd = &s->nodes[gi][i];
        if (!s->host[i].up) return false;
        if (!raft_config_is_voter(&lg->conf, (int32_t)i) &&
            !raft_config_is_learner(&lg->conf, (int32_t)i))
            continue;
        if (nd->g.last != lg->last || nd->g.commit != lg->commit || nd->g.term != lg->term)
            return false;
    }
    return true;
}

bool sim_converged(sim *s)
{
    for (uint32_t gi = 0; gi < s->n_groups; gi++)
        if (!group_converged(s, gi)) return false;
    return true;
}

static void check_final_group(sim *s, uint32_t gi)
{
    int l = sim_leader_g(s, gi);
    if (l < 0) {
        sim_fail(s, "group %u: no leader at the end", gi);
        return;
    }
    const sim_grp *gr = &s->grp[gi];
    for (uint32_t i = 0; i < s->n && !s->failure[0]; i++) {
        sim_node *nd = &s->nodes[gi][i];
        check_committed(s, gi, (int)i, nd->g.commit);
        const raft_config *c = &s->nodes[gi][l].g.conf;
        if (!raft_config_is_voter(c, (int32_t)i) && !raft_config_is_learner(c, (int32_t)i))
            continue; /* removed replicas stop receiving the log */
        if (snap_of(&nd->log) >= 0 && gr->cm[snap_of(&nd->log)].state != nd->log.snap_state) {
            sim_fail(s, "group %u node %u: snapshot state at %" PRId64 " differs", gi, i,
                     snap_of(&nd->log));
            return;
        }
        for (uint32_t p = 0; p < gr->n_props; p++) {
            const sim_proposal *pr = &gr->props[p];
            if (!pr->acked || pr->offset <= snap_of(&nd->log)) continue;
            int64_t k = ents_find(nd->log.mem, nd->log.n_mem, pr->offset);
            const raft_entry *e = k < 0 ? NULL : &nd->log.mem[k].e;
            if (!e || e->offset != pr->offset || e->term != pr->term || e->count != pr->count ||
                ent_hash(e) != pr->hash) {
                sim_fail(s, "group %u: acknowledged write at %" PRId64 " (term %" PRId64
                            ") missing or different on node %u",
                         gi, pr->offset, pr->term, i);
                return;
            }
        }
    }
}

void sim_check_final(sim *s)
{
    for (uint32_t gi = 0; gi < s->n_groups && !s->failure[0]; gi++) check_final_group(s, gi);
}
