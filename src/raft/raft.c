/*
 * raft.c — the Raft state machine of one group (see raft.h for the contract and the rules on
 * draining actions). Pre-vote, leader stickiness and check-quorum keep a partitioned or
 * removed node from disrupting a healthy leader; the leader pipelines append requests up to a
 * window per follower, followers acknowledge only durable entries, and the commit index only
 * moves by counting entries of the leader's current term (Raft §5.4.2).
 */
#include "raft/raft.h"

#include <inttypes.h>
#include <stdlib.h>

#include "base/cursor.h"
#include "base/log.h"

/* ---------------------------------------------------------------- small helpers */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Restarts the election (or, on a leader, heartbeat) timer with a fresh random timeout. */
static void timer_reset(raft_group *g)
{
    uint32_t base = g->opt.election_timeout_ms;
    g->timeout = base + (uint32_t)(rng_next(&g->rng) % base);
    g->elapsed_mark = g->clock;
}

bool raft_config_is_voter(const raft_config *c, int32_t id)
{
    for (uint32_t i = 0; i < c->n_voters; i++)
        if (c->voters[i] == id) return true;
    return false;
}

bool raft_config_is_learner(const raft_config *c, int32_t id)
{
    for (uint32_t i = 0; i < c->n_learners; i++)
        if (c->learners[i] == id) return true;
    return false;
}

size_t raft_config_size(const raft_config *c)
{
    return 3 + 4u * (c->n_voters + c->n_learners);
}

size_t raft_config_encode(const raft_config *c, uint8_t *buf)
{
    size_t n = 0;
    buf[n++] = 1; /* version */
    buf[n++] = c->n_voters;
    for (uint32_t i = 0; i < c->n_voters; i++, n += 4)
        al_put_be32(buf + n, (uint32_t)c->voters[i]);
    buf[n++] = c->n_learners;
    for (uint32_t i = 0; i < c->n_learners; i++, n += 4)
        al_put_be32(buf + n, (uint32_t)c->learners[i]);
    return n;
}

static bool config_valid(const raft_config *c)
{
    if (c->n_voters + c->n_learners > RAFT_MAX_NODES) return false;
    for (uint32_t i = 0; i < c->n_voters; i++) {
        if (c->voters[i] < 0) return false;
        for (uint32_t j = i + 1; j < c->n_voters; j++)
            if (c->voters[i] == c->voters[j]) return false;
        if (raft_config_is_learner(c, c->voters[i])) return false;
    }
    for (uint32_t i = 0; i < c->n_learners; i++) {
        if (c->learners[i] < 0) return false;
        for (uint32_t j = i + 1; j < c->n_learners; j++)
            if (c->learners[i] == c->learners[j]) return false;
    }
    return true;
}

int raft_config_decode(const uint8_t *buf, size_t len, raft_config *out)
{
    al_rd rd = al_rd_make(buf, len);
    memset(out, 0, sizeof(*out));
    if (al_rd_u8(&rd) != 1) return rd.err ? rd.err : AL_EMALFORMED;
    uint8_t nv = al_rd_u8(&rd);
    if (nv > RAFT_MAX_NODES) return AL_EMALFORMED;
    for (uint32_t i = 0; i < nv; i++) out->voters[i] = al_rd_i32(&rd);
    uint8_t nl = al_rd_u8(&rd);
    if (nl > RAFT_MAX_NODES) return AL_EMALFORMED;
    for (uint32_t i = 0; i < nl; i++) out->learners[i] = al_rd_i32(&rd);
    if (rd.err) return rd.err;
    if (al_rd_left(&rd)) return AL_EMALFORMED;
    out->n_voters = nv;
    out->n_learners = nl;
    return config_valid(out) ? 0 : AL_EMALFORMED;
}

const char *raft_role_name(int role)
{
    switch (role) {
    case RAFT_FOLLOWER: return "follower";
    case RAFT_PRECANDIDATE: return "precandidate";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_LEADER: return "leader";
    default: return "?";
    }
}

const char *raft_strerror(int err)
{
    if (err == RAFT_ENOTLEADER) return "not the leader";
    if (err == RAFT_EBUSY) return "leadership transfer or membership change in progress";
    if (err == RAFT_ELOST) return "leadership lost before the entries committed";
    return al_strerror(err);
}

void raft_options_default(raft_options *o)
{
    memset(o, 0, sizeof(*o));
    o->election_timeout_ms = 1000;
    o->heartbeat_ms = 100;
    o->max_inflight_msgs = 8;
    o->max_inflight_bytes = 4u << 20;
    o->max_msg_bytes = 1u << 20;
    o->max_msg_entries = 64;
    o->catchup_bytes_per_tick = 0;
    o->max_uncommitted = 100000;
    o->action_capacity = 256;
    o->entry_pool = 1024;
}

/* ---------------------------------------------------------------- actions */

int raft_scratch_init(raft_scratch *sc, uint32_t n_actions, uint32_t n_entries)
{
    memset(sc, 0, sizeof(*sc));
    if (n_actions < 32 || n_entries < 16) return AL_EINVAL;
    sc->actions = calloc(n_actions, sizeof(*sc->actions));
    sc->pool = calloc(n_entries, sizeof(*sc->pool));
    if (!sc->actions || !sc->pool) {
        raft_scratch_free(sc);
        return -ENOMEM;
    }
    sc->cap_actions = n_actions;
    sc->cap_pool = n_entries;
    return 0;
}

void raft_scratch_free(raft_scratch *sc)
{
    free(sc->actions);
    free(sc->pool);
    memset(sc, 0, sizeof(*sc));
}

static bool act_room(const raft_group *g, uint32_t need)
{
    return g->sc->act_n + need <= g->sc->cap_actions;
}

static raft_action *act_push(raft_group *g, uint8_t type)
{
    raft_scratch *sc = g->sc;
    AL_ASSERT(sc->act_n < sc->cap_actions && sc->owner == g);
    raft_action *a = &sc->actions[sc->act_n++];
    memset(a, 0, sizeof(*a));
    a->type = type;
    return a;
}

static void scratch_reset(raft_scratch *sc)
{
    sc->act_head = sc->act_n = 0;
    sc->pool_used = 0;
    sc->owner = NULL;
}

int raft_action_next(raft_group *g, raft_action *out)
{
    raft_scratch *sc = g->sc;
    if (sc->owner != g) return 0;
    if (sc->act_head >= sc->act_n) {
        scratch_reset(sc);
        return 0;
    }
    *out = sc->actions[sc->act_head++];
    if (sc->act_head == sc->act_n) scratch_reset(sc);
    return 1;
}

static raft_entry *pool_take(raft_group *g, uint32_t n)
{
    raft_scratch *sc = g->sc;
    if (sc->pool_used + n > sc->cap_pool) return NULL;
    raft_entry *e = &sc->pool[sc->pool_used];
    sc->pool_used += n;
    return e;
}

/* Forgets a snapshot being received (or installed) and frees its buffer. */
static void rx_reset(raft_group *g)
{
    free(g->rx_buf);
    g->rx_buf = NULL;
    g->rx_cap = g->rx_len = g->rx_total = 0;
    g->rx_offset = -1;
    g->rx_term = 0;
    g->rx_free = false;
}

/* Start of every input call: the previous call's actions (of any group sharing the scratch)
 * must have been drained. */
static void call_begin(raft_group *g)
{
    raft_scratch *sc = g->sc;
    AL_ASSERT(sc->act_n == 0 && sc->act_head == 0);
    scratch_reset(sc);
    sc->owner = g;
    g->fresh_from = INT64_MAX;
    if (g->rx_free) rx_reset(g); /* the installed snapshot's action was drained */
}

/* Queues PERSIST of the current term and vote, merged into a PERSIST at the queue's tail. */
static void persist(raft_group *g)
{
    raft_action *a;
    raft_scratch *sc = g->sc;
    if (sc->act_n && sc->actions[sc->act_n - 1].type == RAFT_ACT_PERSIST)
        a = &sc->actions[sc->act_n - 1];
    else
        a = act_push(g, RAFT_ACT_PERSIST);
    a->hs.term = g->term;
    a->hs.vote = g->vote;
}

/* Changes role/known leader, queueing ROLE when either changes. */
static void set_role(raft_group *g, uint8_t role, int32_t leader)
{
    if (g->role == role && g->leader == leader) return;
    g->role = role;
    g->leader = leader;
    raft_action *a = act_push(g, RAFT_ACT_ROLE);
    a->role = role;
    a->term = g->term;
    a->leader = leader;
}

/* Queues a SEND of a message stamped with group, self and term; caller checked act_room. */
static raft_msg *send_msg(raft_group *g, uint8_t type, int32_t to)
{
    raft_action *a = act_push(g, RAFT_ACT_SEND);
    raft_msg *m = &a->msg;
    m->type = type;
    m->group = g->opt.group;
    m->from = g->opt.self;
    m->to = to;
    m->term = g->term;
    return m;
}

/* Raises the commit index to c (never lowers it), queueing COMMIT. */
static void commit_to(raft_group *g, int64_t c)
{
    if (c <= g->commit) return;
    g->commit = c;
    act_push(g, RAFT_ACT_COMMIT)->offset = c;
}

/* ---------------------------------------------------------------- the log view */

/* The entries appended in this call live in the last APPEND action, not yet in the log. */
static const raft_action *fresh_append(const raft_group *g)
{
    if (g->fresh_from == INT64_MAX) return NULL;
    for (uint32_t i = g->sc->act_n; i-- > 0;)
        if (g->sc->actions[i].type == RAFT_ACT_APPEND) return &g->sc->actions[i];
    return NULL;
}

/* Term of the entry holding off in the log as this call left it (log, then fresh entries);
 * 0 for -1, -1 if absent. */
static int64_t term_at(const raft_group *g, int64_t off)
{
    if (off == g->snap_offset) return g->snap_term;
    if (off < g->snap_offset || off > g->last) return -1;
    if (off >= g->fresh_from) {
        const raft_action *a = fresh_append(g);
        for (uint32_t i = 0; a && i < a->n; i++)
            if (off >= a->entries[i].offset && off <= raft_entry_last(&a->entries[i]))
                return a->entries[i].term;
        return -1;
    }
    return g->log->term_at(g->log_ctx, off);
}

/* The largest offset in [-1, upper] whose term is <= term (terms never decrease along the
 * log, so a binary search; at most 64 probes). */
static int64_t find_le(const raft_group *g, int64_t upper, int64_t term)
{
    /* below the snapshot point nothing can be compared: the answer leads to a snapshot */
    if (upper < g->snap_offset) return AL_MAX(upper, (int64_t)-1);
    if (g->snap_term > term) return g->snap_offset - 1;
    int64_t lo = g->snap_offset, hi = AL_MIN(upper, g->last);
    if (hi <= lo) return lo;
    int64_t t = term_at(g, hi);
    if (t >= 0 && t <= term) return hi;
    for (int i = 0; i < 64 && hi - lo > 1; i++) { /* term_at(lo) <= term < term_at(hi) */
        int64_t mid = lo + (hi - lo) / 2;
        t = term_at(g, mid);
        if (t >= 0 && t <= term) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* Reads up to max entries starting with the one containing from; from the log, then from
 * this call's fresh entries. Returns the count (0 if none), or a negative error. */
static int read_entries(raft_group *g, int64_t from, raft_entry *out, int max, size_t max_bytes)
{
    int n = 0;
    size_t bytes = 0;
    if (from < g->fresh_from) {
        n = g->log->read(g->log_ctx, from, out, max, max_bytes);
        if (n < 0) return n;
        for (int i = 0; i < n; i++) bytes += out[i].len;
        if (n > 0) from = raft_entry_last(&out[n - 1]) + 1;
        if (n > 0 && (from < g->fresh_from || n >= max || bytes >= max_bytes)) return n;
        if (n == 0 && from < g->fresh_from) return 0;
    }
    const raft_action *a = fresh_append(g);
    for (uint32_t i = 0; a && i < a->n && n < max; i++) {
        const raft_entry *e = &a->entries[i];
        if (raft_entry_last(e) < from) continue;
        if (n > 0 && bytes + e->len > max_bytes) break;
        out[n++] = *e;
        bytes += e->len;
    }
    return n;
}

/* ---------------------------------------------------------------- membership */

static raft_progress *pr_find(raft_group *g, int32_t id)
{
    for (uint32_t i = 0; i < g->n_pr; i++)
        if (g->pr[i].id == id) return &g->pr[i];
    return NULL;
}

static void pr_reset(raft_group *g, raft_progress *p, int32_t id, int64_t next)
{
    memset(p, 0, sizeof(*p));
    p->id = id;
    p->state = RAFT_PR_PROBE;
    p->next = next;
    p->match = -1;
    p->active = true;
    p->last_ack = g->clock;
    p->progress_mark = g->clock;
    p->budget = g->opt.catchup_bytes_per_tick;
}

/* Leader: make the progress table match the config (new replicas start probing at next). */
static void pr_sync(raft_group *g, int64_t next)
{
    raft_progress keep[RAFT_MAX_NODES];
    uint8_t n = 0;
    const raft_config *c = &g->conf;
    for (uint32_t i = 0; i < (uint32_t)c->n_voters + c->n_learners; i++) {
        int32_t id = i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
        if (id == g->opt.self) continue;
        raft_progress *old = pr_find(g, id);
        if (old) keep[n] = *old;
        else pr_reset(g, &keep[n], id, next);
        n++;
    }
    memcpy(g->pr, keep, sizeof(keep[0]) * n);
    g->n_pr = n;
    if (g->transferee != RAFT_NODE_NONE && !pr_find(g, g->transferee))
        g->transferee = RAFT_NODE_NONE; /* the target was removed */
}

/* A config entry at offset was appended: it is effective now; the old one is kept to revert
 * to if the entry is truncated. */
static void conf_apply(raft_group *g, int64_t offset, const raft_config *c)
{
    if (g->n_conf_hist == RAFT_CONF_HISTORY) {
        memmove(&g->conf_hist[0], &g->conf_hist[1],
                sizeof(g->conf_hist[0]) * (RAFT_CONF_HISTORY - 1));
        memmove(&g->conf_hist_offset[0], &g->conf_hist_offset[1],
                sizeof(g->conf_hist_offset[0]) * (RAFT_CONF_HISTORY - 1));
        g->n_conf_hist--;
    }
    g->conf_hist[g->n_conf_hist] = g->conf;
    g->conf_hist_offset[g->n_conf_hist] = g->conf_offset;
    g->n_conf_hist++;
    g->conf = *c;
    g->conf_offset = offset;
    if (g->role == RAFT_LEADER) pr_sync(g, offset);
}

/* The log loses offsets >= from: configs appended there no longer apply. */
static void conf_truncate(raft_group *g, int64_t from)
{
    while (g->conf_offset >= from) {
        AL_ASSERT(g->n_conf_hist > 0);
        g->n_conf_hist--;
        g->conf = g->conf_hist[g->n_conf_hist];
        g->conf_offset = g->conf_hist_offset[g->n_conf_hist];
    }
}

int raft_restore_snapshot(raft_group *g, int64_t offset, int64_t term, const raft_config *conf)
{
    if (offset < -1 || term < 0 || !conf || !config_valid(conf) || g->n_conf_hist ||
        g->conf_offset != -1 || g->log->last_offset(g->log_ctx) < offset)
        return AL_EINVAL;
    g->snap_offset = offset;
    g->snap_term = term;
    g->snap_conf = *conf;
    g->conf = *conf;
    g->conf_offset = offset;
    g->last_term = term_at(g, g->last);
    if (g->last_term < 0) return AL_EINVAL;
    if (offset > g->commit) g->commit = offset;
    return 0;
}

int64_t raft_term_at(const raft_group *g, int64_t offset)
{
    return term_at(g, offset);
}

int raft_config_at(const raft_group *g, int64_t offset, raft_config *out)
{
    if (offset < g->snap_offset || offset > g->last) return AL_ERANGE;
    /* the newest config entry at or below offset (else the snapshot's) */
    *out = g->snap_conf;
    if (g->conf_offset <= offset) {
        *out = g->conf;
    } else {
        for (uint32_t i = g->n_conf_hist; i-- > 0;)
            if (g->conf_hist_offset[i] <= offset && g->conf_hist_offset[i] >= g->snap_offset) {
                *out = g->conf_hist[i];
                break;
            }
    }
    return 0;
}

int raft_compact(raft_group *g, int64_t offset, raft_config *conf_out)
{
    AL_ASSERT(g->sc->owner != g || g->sc->act_n == 0); /* between input calls */
    if (offset <= g->snap_offset) {
        if (conf_out) *conf_out = g->snap_conf;
        return 0;
    }
    if (offset > g->commit || offset > g->durable) return AL_ERANGE;
    int64_t t = term_at(g, offset);
    if (t < 0) return AL_EINVAL;
    raft_config c;
    raft_config_at(g, offset, &c);
    g->snap_offset = offset;
    g->snap_term = t;
    g->snap_conf = c;
    if (conf_out) *conf_out = c;
    return 0;
}

int raft_restore_config(raft_group *g, int64_t offset, const uint8_t *payload, size_t len)
{
    raft_config c;
    int rc = raft_config_decode(payload, len, &c);
    if (rc < 0) return rc;
    if (offset <= g->conf_offset) return AL_EINVAL;
    conf_apply(g, offset, &c);
    return 0;
}

static uint32_t quorum(const raft_group *g)
{
    return g->conf.n_voters / 2u + 1u;
}

/* Emits APPEND for ents (copied into the pool) and updates the log end; applies configs. */
static int append_local(raft_group *g, const raft_entry *ents, uint32_t n)
{
    raft_entry *copy = pool_take(g, n);
    if (!copy || !act_room(g, 1)) return AL_EFULL;
    memcpy(copy, ents, sizeof(*copy) * n);
    raft_action *a = act_push(g, RAFT_ACT_APPEND);
    a->entries = copy;
    a->n = n;
    if (g->fresh_from == INT64_MAX) g->fresh_from = copy[0].offset;
    g->last = raft_entry_last(&copy[n - 1]);
    g->last_term = copy[n - 1].term;
    for (uint32_t i = 0; i < n; i++) {
        if (copy[i].type != RAFT_ENTRY_CONFIG) continue;
        raft_config c;
        if (raft_config_decode(copy[i].data, copy[i].len, &c) == 0)
            conf_apply(g, copy[i].offset, &c);
        else
            log_error("raft", "group %" PRIu64 ": undecodable config entry at %" PRId64,
                      g->opt.group, copy[i].offset);
    }
    return 0;
}

/* ---------------------------------------------------------------- leader: replication */

static void inflight_push(raft_progress *p, int64_t end, uint32_t bytes)
{
    AL_ASSERT(p->n_inflight < RAFT_INFLIGHT_MAX);
    uint32_t i = (p->inflight_head + p->n_inflight) % RAFT_INFLIGHT_MAX;
    p->inflight_end[i] = end;
    p->inflight_sz[i] = bytes;
    p->n_inflight++;
    p->inflight_bytes += bytes;
}

static void inflight_free_to(raft_progress *p, int64_t match)
{
    while (p->n_inflight && p->inflight_end[p->inflight_head] <= match) {
        p->inflight_bytes -= p->inflight_sz[p->inflight_head];
        p->inflight_head = (p->inflight_head + 1) % RAFT_INFLIGHT_MAX;
        p->n_inflight--;
    }
}

static void inflight_clear(raft_progress *p)
{
    p->n_inflight = 0;
    p->inflight_head = 0;
    p->inflight_bytes = 0;
}

static bool window_full(const raft_group *g, const raft_progress *p)
{
    if (p->state == RAFT_PR_PROBE) return p->n_inflight > 0;
    uint32_t maxm = AL_MIN(g->opt.max_inflight_msgs, (uint32_t)RAFT_INFLIGHT_MAX);
    return p->n_inflight >= maxm || p->inflight_bytes >= g->opt.max_inflight_bytes;
}

/* An empty append at p's match (always matches), carrying the commit index. */
static void send_heartbeat(raft_group *g, raft_progress *p)
{
    if (!act_room(g, 1)) return;
    raft_msg *m = send_msg(g, RAFT_MSG_APPEND_REQ, p->id);
    m->prev_offset = AL_MAX(p->match, g->snap_offset);
    m->prev_term = term_at(g, m->prev_offset);
    AL_ASSERT(m->prev_term >= 0);
    m->commit = g->commit;
}

/* Sends append requests to p while its window and the throttle allow. Returns the number of
 * requests sent. */
static int send_snapshot(raft_group *g, raft_progress *p);

static int send_append(raft_group *g, raft_progress *p)
{
    int sent = 0;
    if (p->next <= g->snap_offset || p->state == RAFT_PR_SNAPSHOT) return send_snapshot(g, p);
    uint32_t maxe = AL_MIN(g->opt.max_msg_entries, (uint32_t)RAFT_MSG_MAX_ENTRIES);
    for (uint32_t round = 0; round < RAFT_INFLIGHT_MAX; round++) {
        if (p->next > g->last || window_full(g, p)) break;
        bool from_log = p->next < g->fresh_from;
        if (from_log && g->opt.catchup_bytes_per_tick && p->budget <= 0) break;
        /* keep room for the non-send actions this call may still need */
        if (!act_room(g, 8)) break;
        uint32_t room = g->sc->cap_pool - g->sc->pool_used;
        if (room == 0) break;
        raft_entry *ents = &g->sc->pool[g->sc->pool_used];
        int n = read_entries(g, p->next, ents, (int)AL_MIN(maxe, room), g->opt.max_msg_bytes);
        if (n <= 0) {
            if (n < 0)
                log_error("raft", "group %" PRIu64 ": log read at %" PRId64 ": %s",
                          g->opt.group, p->next, al_strerror(n));
            break;
        }
        g->sc->pool_used += (uint32_t)n;
        uint32_t bytes = 0;
        for (int i = 0; i < n; i++) bytes += ents[i].len;
        raft_msg *m = send_msg(g, RAFT_MSG_APPEND_REQ, p->id);
        m->prev_offset = ents[0].offset - 1;
        m->prev_term = term_at(g, m->prev_offset);
        AL_ASSERT(m->prev_term >= 0);
        m->commit = g->commit;
        m->entries = ents;
        m->n_entries = (uint32_t)n;
        int64_t end = raft_entry_last(&ents[n - 1]);
        if (p->n_inflight == 0) p->progress_mark = g->clock;
        inflight_push(p, end, bytes);
        p->next = end + 1;
        if (from_log) p->budget -= bytes;
        sent++;
    }
    return sent;
}

/* The entries p needs were compacted away: send the snapshot instead, one chunk in flight at
 * a time. Returns the number of messages sent (0 or 1). */
static int send_snapshot(raft_group *g, raft_progress *p)
{
    if (p->state != RAFT_PR_SNAPSHOT || p->snap_for != g->snap_offset) {
        p->state = RAFT_PR_SNAPSHOT;
        p->snap_for = g->snap_offset;
        p->snap_pos = 0;
        inflight_clear(p);
    }
    if (p->n_inflight || !act_room(g, 8)) return 0;
    const uint8_t *data = NULL;
    int64_t total = 0;
    if (g->log->snapshot) {
        total = g->log->snapshot(g->log_ctx, g->snap_offset, &data);
        if (total < 0) return 0; /* not available now: asked again at the next tick */
        if (total > (int64_t)RAFT_SNAPSHOT_MAX) {
            log_error("raft", "group %" PRIu64 ": snapshot of %" PRId64 " bytes is beyond the "
                              "%u byte limit: replica %d cannot catch up",
                      g->opt.group, total, RAFT_SNAPSHOT_MAX, p->id);
            return 0;
        }
    }
    if (p->snap_pos > (uint64_t)total) p->snap_pos = 0;
    uint64_t left = (uint64_t)total - p->snap_pos;
    uint32_t len = (uint32_t)AL_MIN(left, (uint64_t)AL_MAX(g->opt.max_msg_bytes, 64u));
    raft_msg *m = send_msg(g, RAFT_MSG_SNAPSHOT, p->id);
    m->prev_offset = g->snap_offset;
    m->prev_term = g->snap_term;
    m->commit = g->commit;
    m->snap_conf = g->snap_conf;
    m->snap_total = (uint64_t)total;
    m->snap_pos = p->snap_pos;
    m->snap_len = len;
    m->snap_data = len ? data + p->snap_pos : NULL;
    p->progress_mark = g->clock;
    inflight_push(p, g->snap_offset, len);
    return 1;
}

static void broadcast_append(raft_group *g)
{
    for (uint32_t i = 0; i < g->n_pr; i++) send_append(g, &g->pr[i]);
}

static void send_timeout_now(raft_group *g, int32_t to)
{
    if (!act_room(g, 1)) return;
    send_msg(g, RAFT_MSG_TIMEOUT_NOW, to);
}

static void become_follower(raft_group *g, int64_t term, int32_t leader);

/* Leader: the highest offset durable on a majority of voters; commit it if it is of this
 * term (entries of earlier terms are committed only indirectly, Raft §5.4.2). */
static void maybe_commit(raft_group *g)
{
    int64_t m[RAFT_MAX_NODES];
    uint32_t n = 0;
    for (uint32_t i = 0; i < g->conf.n_voters; i++) {
        int32_t id = g->conf.voters[i];
        if (id == g->opt.self) {
            m[n++] = g->durable;
        } else {
            raft_progress *p = pr_find(g, id);
            m[n++] = p ? p->match : -1;
        }
    }
    if (n == 0) return;
    for (uint32_t i = 1; i < n; i++) /* insertion sort, descending; n <= 16 */
        for (uint32_t j = i; j > 0 && m[j] > m[j - 1]; j--) {
            int64_t t = m[j];
            m[j] = m[j - 1];
            m[j - 1] = t;
        }
    int64_t qm = m[quorum(g) - 1];
    if (qm > g->commit && term_at(g, qm) == g->term) commit_to(g, qm);
    /* A leader removed from the config steps down once the removal is committed, handing
     * over to the most up-to-date voter. */
    if (!raft_config_is_voter(&g->conf, g->opt.self) && g->conf_offset <= g->commit) {
        raft_progress *best = NULL;
        for (uint32_t i = 0; i < g->n_pr; i++)
            if (raft_config_is_voter(&g->conf, g->pr[i].id) &&
                (!best || g->pr[i].match > best->match))
                best = &g->pr[i];
        if (best && best->match == g->last) send_timeout_now(g, best->id);
        become_follower(g, g->term, RAFT_NODE_NONE);
    }
}

/* ---------------------------------------------------------------- role changes */

/* Steps down (or adopts a newer term, persisting it with no vote) and restarts the timer. */
static void become_follower(raft_group *g, int64_t term, int32_t leader)
{
    if (term > g->term) {
        g->term = term;
        g->vote = RAFT_NODE_NONE;
        g->ack_end = -1;
        g->acked = -1;
        persist(g);
    }
    g->transferee = RAFT_NODE_NONE;
    g->transfer_campaign = false;
    g->n_pr = 0;
    set_role(g, RAFT_FOLLOWER, leader);
    timer_reset(g);
}

/* Won the election: fresh progress for every replica, a NOOP of this term, first appends. */
static void become_leader(raft_group *g)
{
    set_role(g, RAFT_LEADER, g->opt.self);
    g->transferee = RAFT_NODE_NONE;
    g->quorum_mark = g->clock;
    g->hb_slot = g->last_now / g->opt.heartbeat_ms; /* the first appends go out now */
    g->n_pr = 0;
    pr_sync(g, g->last + 1);
    for (uint32_t i = 0; i < g->n_pr; i++) g->pr[i].next = g->last + 1;
    raft_entry noop = {.offset = g->last + 1, .count = 1, .type = RAFT_ENTRY_NOOP, .term = g->term};
    g->term_start = noop.offset;
    int rc = append_local(g, &noop, 1);
    AL_ASSERT(rc == 0);
    log_debug("raft", "group %" PRIu64 ": node %d leader in term %" PRId64, g->opt.group,
              g->opt.self, g->term);
    broadcast_append(g);
    maybe_commit(g); /* a single voter commits on its own flush; nothing yet */
}

static void votes_reset(raft_group *g)
{
    g->n_voted = 0;
    g->votes_granted = 0;
    g->votes_rejected = 0;
}

/* Records a vote; returns 1 if won, -1 if lost, 0 if undecided. */
static int poll(raft_group *g, int32_t id, bool granted)
{
    if (!raft_config_is_voter(&g->conf, id)) return 0;
    for (uint32_t i = 0; i < g->n_voted; i++)
        if (g->voted_ids[i] == id) goto count;
    if (g->n_voted >= RAFT_MAX_NODES) return 0;
    g->voted_ids[g->n_voted] = id;
    if (granted) g->votes_granted |= 1u << g->n_voted;
    else g->votes_rejected |= 1u << g->n_voted;
    g->n_voted++;
count:;
    uint32_t yes = 0, no = 0;
    for (uint32_t i = 0; i < g->n_voted; i++) {
        if (!raft_config_is_voter(&g->conf, g->voted_ids[i])) continue;
        if (g->votes_granted & (1u << i)) yes++;
        if (g->votes_rejected & (1u << i)) no++;
    }
    if (yes >= quorum(g)) return 1;
    if (no > g->conf.n_voters - quorum(g)) return -1;
    return 0;
}

static void campaign(raft_group *g, bool pre, bool transfer);

static void on_poll_result(raft_group *g, int r)
{
    if (r == 0) return;
    if (r < 0) {
        become_follower(g, g->term, RAFT_NODE_NONE);
        return;
    }
    if (g->role == RAFT_PRECANDIDATE) campaign(g, false, g->transfer_campaign);
    else if (g->role == RAFT_CANDIDATE) become_leader(g);
}

/* Starts a pre-vote (pre: no term change) or a real election (term+1, vote for self,
 * persisted before the requests leave); transfer campaigns bypass leader stickiness. */
static void campaign(raft_group *g, bool pre, bool transfer)
{
    if (!raft_config_is_voter(&g->conf, g->opt.self)) {
        timer_reset(g);
        return;
    }
    votes_reset(g);
    g->transfer_campaign = transfer;
    int64_t term = g->term + 1;
    if (pre) {
        set_role(g, RAFT_PRECANDIDATE, RAFT_NODE_NONE);
    } else {
        g->term = term;
        g->vote = g->opt.self;
        g->ack_end = -1;
        g->acked = -1;
        persist(g); /* before the vote requests leave */
        set_role(g, RAFT_CANDIDATE, RAFT_NODE_NONE);
    }
    timer_reset(g);
    for (uint32_t i = 0; i < g->conf.n_voters; i++) {
        int32_t id = g->conf.voters[i];
        if (id == g->opt.self || !act_room(g, 4)) continue;
        raft_msg *m = send_msg(g, RAFT_MSG_VOTE_REQ, id);
        m->term = term;
        m->flags = (uint8_t)((pre ? RAFT_F_PREVOTE : 0) | (transfer ? RAFT_F_TRANSFER : 0));
        m->last_offset = g->last;
        m->last_term = g->last_term;
    }
    on_poll_result(g, poll(g, g->opt.self, true));
}

/* ---------------------------------------------------------------- message handlers */

/* Grants a (pre-)vote to an up-to-date candidate we can vote for; a real grant is persisted
 * before the response is queued. */
static void handle_vote_req(raft_group *g, const raft_msg *m)
{
    bool pre = m->flags & RAFT_F_PREVOTE;
    bool can_vote = g->vote == m->from ||
                    (g->vote == RAFT_NODE_NONE && g->leader == RAFT_NODE_NONE) ||
                    (pre && m->term > g->term);
    bool up_to_date = m->last_term > g->last_term ||
                      (m->last_term == g->last_term && m->last_offset >= g->last);
    if (!act_room(g, 2)) return;
    if (can_vote && up_to_date) {
        if (!pre) {
            g->vote = m->from;
            persist(g); /* the grant is durable before it is sent */
            timer_reset(g);
        }
        raft_msg *r = send_msg(g, RAFT_MSG_VOTE_RESP, m->from);
        r->term = m->term;
        r->flags = (uint8_t)(RAFT_F_GRANTED | (pre ? RAFT_F_PREVOTE : 0));
    } else {
        raft_msg *r = send_msg(g, RAFT_MSG_VOTE_RESP, m->from);
        r->flags = pre ? RAFT_F_PREVOTE : 0;
    }
}

static void handle_vote_resp(raft_group *g, const raft_msg *m)
{
    bool pre = m->flags & RAFT_F_PREVOTE;
    bool granted = m->flags & RAFT_F_GRANTED;
    if (pre && g->role == RAFT_PRECANDIDATE && (m->term == g->term + 1 || !granted))
        on_poll_result(g, poll(g, m->from, granted));
    else if (!pre && g->role == RAFT_CANDIDATE && m->term == g->term)
        on_poll_result(g, poll(g, m->from, granted));
}

static void follower_respond(raft_group *g, bool success, int64_t match)
{
    if (g->leader == RAFT_NODE_NONE || !act_room(g, 1)) return;
    raft_msg *r = send_msg(g, RAFT_MSG_APPEND_RESP, g->leader);
    r->flags = success ? RAFT_F_SUCCESS : 0;
    r->match = match;
    if (!success) r->hint_term = AL_MAX(term_at(g, match), 0);
    if (success && match > g->acked) g->acked = match;
}

static int check_entries(const raft_msg *m)
{
    int64_t next = m->prev_offset + 1;
    if (m->prev_offset < -1 || m->prev_term < 0) return AL_EINVAL;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const raft_entry *e = &m->entries[i];
        if (e->offset != next || e->count < 1 || e->term < 1 || e->term > m->term ||
            e->term < m->prev_term || (i && e->term < m->entries[i - 1].term))
            return AL_EINVAL;
        next = raft_entry_last(e) + 1;
    }
    return 0;
}

/* Follower side of log replication: log matching on (prev_offset, prev_term), truncation of
 * a conflicting suffix only, append of the new entries, commit = min(leader commit, verified
 * end). New entries are acknowledged on flush; otherwise it answers at once. */
static int handle_append_req(raft_group *g, const raft_msg *m)
{
    int rc = check_entries(m);
    if (rc < 0) return rc;
    if (g->role == RAFT_LEADER) {
        log_error("raft", "group %" PRIu64 ": two leaders in term %" PRId64, g->opt.group,
                  g->term);
        return AL_EINVAL;
    }
    if (g->role != RAFT_FOLLOWER) become_follower(g, g->term, m->from);
    set_role(g, RAFT_FOLLOWER, m->from);
    g->leader_contact = g->clock;
    g->elapsed_mark = g->clock;

    raft_msg trimmed;
    if (m->prev_offset < g->snap_offset) {
        /* our prefix up to the snapshot point is committed, so it matches the leader's: skip
         * the entries it covers and match at the snapshot point instead */
        trimmed = *m;
        uint32_t k = 0;
        while (k < m->n_entries && raft_entry_last(&m->entries[k]) <= g->snap_offset) k++;
        if (k < m->n_entries && m->entries[k].offset <= g->snap_offset) return AL_EINVAL;
        trimmed.prev_offset = g->snap_offset;
        trimmed.prev_term = g->snap_term;
        trimmed.entries = m->entries + k;
        trimmed.n_entries = m->n_entries - k;
        m = &trimmed;
    }

    /* log matching: reject, pointing the leader at our last entry that may still match */
    if (m->prev_offset > g->last) {
        follower_respond(g, false, find_le(g, g->last, m->prev_term));
        return 0;
    }
    if (term_at(g, m->prev_offset) != m->prev_term) {
        follower_respond(g, false, find_le(g, m->prev_offset - 1, m->prev_term));
        return 0;
    }
    uint32_t i = 0;
    for (; i < m->n_entries; i++) {
        const raft_entry *e = &m->entries[i];
        if (e->offset > g->last) break;
        if (raft_entry_last(e) <= g->last && term_at(g, e->offset) == e->term) continue;
        /* conflict: drop our suffix from here (never committed entries: the leader has all) */
        AL_ASSERT(e->offset > g->commit);
        if (!act_room(g, 4)) return AL_EFULL;
        act_push(g, RAFT_ACT_TRUNCATE)->offset = e->offset;
        conf_truncate(g, e->offset);
        g->last = e->offset - 1;
        g->last_term = term_at(g, g->last);
        g->written = AL_MIN(g->written, g->last);
        g->durable = AL_MIN(g->durable, g->last);
        g->flushing = AL_MIN(g->flushing, g->last);
        break;
    }
    bool appended = false;
    uint32_t upto = m->n_entries; /* entries [0, upto) are now in our log */
    if (i < m->n_entries) {
        /* append what the entry pool holds now; the leader resends the rest */
        uint32_t room = g->sc->cap_pool - g->sc->pool_used;
        upto = i + AL_MIN(m->n_entries - i, room);
        if (upto == i) return AL_EFULL;
        rc = append_local(g, &m->entries[i], upto - i);
        if (rc < 0) return rc;
        appended = true;
    }
    int64_t verified = upto ? raft_entry_last(&m->entries[upto - 1]) : m->prev_offset;
    if (verified > g->ack_end) g->ack_end = verified;
    commit_to(g, AL_MIN(m->commit, verified));
    /* New entries are acknowledged when durable (raft_flush_done); otherwise answer now, with
     * what is durable and matching, so heartbeats and duplicates get a response. */
    if (!appended) follower_respond(g, true, AL_MIN(g->durable, g->ack_end));
    return 0;
}

/* Follower side of a snapshot transfer. When the snapshot point is already in our log (same
 * term) or below our own snapshot point, it matches like an empty append there. Otherwise the
 * chunks are gathered in order; the last one installs the snapshot: SNAPSHOT action (the
 * caller replaces its log), the group restarts its log after the point with the snapshot's
 * membership, commits the point and acknowledges it once the action is applied. */
static int handle_snapshot(raft_group *g, const raft_msg *m)
{
    if (m->prev_offset < -1 || m->prev_term < 0 || m->prev_term > m->term ||
        m->snap_total > RAFT_SNAPSHOT_MAX || m->snap_pos > m->snap_total ||
        m->snap_len > m->snap_total - m->snap_pos || (m->snap_len && !m->snap_data))
        return AL_EINVAL;
    if (g->role == RAFT_LEADER) {
        log_error("raft", "group %" PRIu64 ": two leaders in term %" PRId64, g->opt.group,
                  g->term);
        return AL_EINVAL;
    }
    if (g->role != RAFT_FOLLOWER) become_follower(g, g->term, m->from);
    set_role(g, RAFT_FOLLOWER, m->from);
    g->leader_contact = g->clock;
    g->elapsed_mark = g->clock;
    int64_t at = m->prev_offset;
    if (at < g->snap_offset || term_at(g, at) == m->prev_term) {
        /* the point is in our log, or below our own snapshot point (committed, so matching
         * every leader's log): match there like an empty append */
        int64_t verified = AL_MAX(at, g->snap_offset);
        if (verified > g->ack_end) g->ack_end = verified;
        commit_to(g, AL_MIN(m->commit, verified));
        follower_respond(g, true, AL_MIN(g->durable, g->ack_end));
        return 0;
    }
    if (at <= g->commit) { /* a committed entry of another term: cannot be */
        log_error("raft", "group %" PRIu64 ": snapshot at %" PRId64 " term %" PRId64
                          " conflicts with committed entries", g->opt.group, at, m->prev_term);
        return AL_EINVAL;
    }
    if (m->snap_pos == 0 && (g->rx_offset != at || g->rx_term != m->prev_term ||
                             g->rx_total != m->snap_total || g->rx_len != 0)) {
        rx_reset(g);
        g->rx_offset = at;
        g->rx_term = m->prev_term;
        g->rx_total = m->snap_total;
    }
    bool same = g->rx_offset == at && g->rx_term == m->prev_term &&
                g->rx_total == m->snap_total && !g->rx_free;
    if (same && m->snap_pos == g->rx_len && m->snap_len) {
        if (g->rx_cap < g->rx_len + m->snap_len) {
            uint64_t cap = AL_MAX(g->rx_total, (uint64_t)1);
            uint8_t *nb = realloc(g->rx_buf, cap);
            if (!nb) return -ENOMEM;
            g->rx_buf = nb;
            g->rx_cap = cap;
        }
        memcpy(g->rx_buf + g->rx_len, m->snap_data, m->snap_len);
        g->rx_len += m->snap_len;
    }
    if (!same || g->rx_len < g->rx_total) {
        /* progress (or where to resume): the chunk we want next */
        if (g->leader == RAFT_NODE_NONE || !act_room(g, 1)) return 0;
        raft_msg *r = send_msg(g, RAFT_MSG_APPEND_RESP, g->leader);
        r->flags = RAFT_F_SNAP;
        r->match = at;
        r->hint_term = same ? (int64_t)g->rx_len : 0;
        return 0;
    }
    /* complete: install it (never over committed entries: those matched above) */
    AL_ASSERT(at > g->commit);
    if (!act_room(g, 4)) return AL_EFULL;
    raft_action *a = act_push(g, RAFT_ACT_SNAPSHOT);
    a->offset = at;
    a->term = m->prev_term;
    a->conf = m->snap_conf;
    a->data = g->rx_buf;
    a->len = g->rx_len;
    g->rx_free = true; /* the buffer lives until the next input call */
    g->snap_offset = at;
    g->snap_term = m->prev_term;
    g->snap_conf = m->snap_conf;
    g->conf = m->snap_conf;
    g->conf_offset = at;
    g->n_conf_hist = 0;
    g->last = at;
    g->last_term = m->prev_term;
    g->written = g->durable = g->flushing = at;
    g->ack_end = at;
    commit_to(g, at);
    follower_respond(g, true, at);
    return 0;
}

/* Leader side: advance match/next and the window on success (then try to commit), back up
 * and probe on rejection. */
static void handle_append_resp(raft_group *g, const raft_msg *m)
{
    if (g->role != RAFT_LEADER) return;
    raft_progress *p = pr_find(g, m->from);
    if (!p) return;
    p->active = true;
    p->last_ack = g->clock;
    if (m->flags & RAFT_F_SNAP) {
        /* snapshot transfer progress: send the next chunk from what the replica holds */
        if (p->state != RAFT_PR_SNAPSHOT || m->match != p->snap_for) return;
        p->snap_pos = (uint64_t)AL_MAX(m->hint_term, 0);
        inflight_clear(p);
        p->progress_mark = g->clock;
        send_snapshot(g, p);
        return;
    }
    if (m->flags & RAFT_F_SUCCESS) {
        if (m->match > g->last) return; /* cannot be: ignore */
        if (m->match > p->match) {
            p->match = m->match;
            p->progress_mark = g->clock;
        }
        if (p->next <= p->match) p->next = p->match + 1;
        if (p->state == RAFT_PR_SNAPSHOT && p->next > g->snap_offset) { /* installed */
            p->state = RAFT_PR_PROBE;
            inflight_clear(p);
        }
        inflight_free_to(p, p->match);
        if (p->state == RAFT_PR_PROBE && p->n_inflight == 0) p->state = RAFT_PR_REPLICATE;
        maybe_commit(g);
        if (g->role != RAFT_LEADER) return;
        if (g->transferee == p->id && p->match == g->last) send_timeout_now(g, p->id);
    } else {
        if (m->match < p->match) return; /* stale rejection */
        if (p->state == RAFT_PR_SNAPSHOT) return; /* a reply to an append sent before */
        /* back up to our last offset that can match the follower's hint */
        int64_t h = find_le(g, m->match, m->hint_term);
        int64_t next = AL_MIN(h + 1, p->next);
        p->next = AL_MAX(next, p->match + 1);
        p->state = RAFT_PR_PROBE;
        inflight_clear(p);
    }
    send_append(g, p);
}

int raft_step(raft_group *g, const raft_msg *m)
{
    call_begin(g);
    if (m->group != g->opt.group || m->to != g->opt.self || m->term < 0 ||
        m->from == g->opt.self || m->type == RAFT_MSG_HB_BATCH)
        return AL_EINVAL;
    if (m->term > g->term) {
        if (m->type == RAFT_MSG_VOTE_REQ) {
            bool in_lease = g->role == RAFT_LEADER ||
                            (g->leader != RAFT_NODE_NONE &&
                             g->clock - g->leader_contact < g->opt.election_timeout_ms);
            if (!(m->flags & RAFT_F_TRANSFER) && in_lease) return 0; /* stickiness */
        }
        bool pre_req = m->type == RAFT_MSG_VOTE_REQ && (m->flags & RAFT_F_PREVOTE);
        bool pre_grant = m->type == RAFT_MSG_VOTE_RESP && (m->flags & RAFT_F_PREVOTE) &&
                         (m->flags & RAFT_F_GRANTED);
        if (!pre_req && !pre_grant) {
            bool from_leader = m->type == RAFT_MSG_APPEND_REQ ||
                               m->type == RAFT_MSG_TIMEOUT_NOW || m->type == RAFT_MSG_SNAPSHOT;
            become_follower(g, m->term, from_leader ? m->from : RAFT_NODE_NONE);
        }
    } else if (m->term < g->term) {
        /* tell a stale leader or pre-candidate about the newer term */
        if ((m->type == RAFT_MSG_APPEND_REQ || m->type == RAFT_MSG_TIMEOUT_NOW ||
             m->type == RAFT_MSG_SNAPSHOT) &&
            act_room(g, 1)) {
            raft_msg *r = send_msg(g, RAFT_MSG_APPEND_RESP, m->from);
            r->match = g->last;
        } else if (m->type == RAFT_MSG_VOTE_REQ && (m->flags & RAFT_F_PREVOTE) &&
                   act_room(g, 1)) {
            send_msg(g, RAFT_MSG_VOTE_RESP, m->from)->flags = RAFT_F_PREVOTE;
        }
        return 0;
    }
    if (g->role == RAFT_LEADER && m->from != RAFT_NODE_NONE) {
        raft_progress *p = pr_find(g, m->from);
        if (p) p->active = true;
    }
    switch (m->type) {
    case RAFT_MSG_VOTE_REQ: handle_vote_req(g, m); return 0;
    case RAFT_MSG_VOTE_RESP: handle_vote_resp(g, m); return 0;
    case RAFT_MSG_APPEND_REQ: return handle_append_req(g, m);
    case RAFT_MSG_APPEND_RESP: handle_append_resp(g, m); return 0;
    case RAFT_MSG_SNAPSHOT: return handle_snapshot(g, m);
    case RAFT_MSG_TIMEOUT_NOW:
        if (g->role != RAFT_LEADER && m->term == g->term) campaign(g, false, true);
        return 0;
    default: return AL_EINVAL;
    }
}

/* ---------------------------------------------------------------- time and the disk */

/* Leader timers: throttle refill, stalled-window retry, heartbeats, transfer deadline and
 * check-quorum. */
static void leader_tick(raft_group *g)
{
    for (uint32_t i = 0; i < g->n_pr; i++) {
        raft_progress *p = &g->pr[i];
        p->budget = g->opt.catchup_bytes_per_tick;
        /* a request or its answer was lost: probe again from the last known match */
        if (p->n_inflight && g->clock - p->progress_mark >= 3u * g->opt.heartbeat_ms) {
            inflight_clear(p);
            p->progress_mark = g->clock;
            if (p->state == RAFT_PR_SNAPSHOT) continue; /* resend the chunk below */
            p->state = RAFT_PR_PROBE;
            p->next = p->match + 1;
        }
    }
    /* Heartbeats go out when the caller's clock enters a new heartbeat slot, so all the groups
     * of a shard beat in the same tick and their heartbeats share one batch per peer. */
    uint64_t slot = g->last_now / g->opt.heartbeat_ms;
    if (slot != g->hb_slot) {
        g->hb_slot = slot;
        for (uint32_t i = 0; i < g->n_pr; i++)
            if (send_append(g, &g->pr[i]) == 0) send_heartbeat(g, &g->pr[i]);
    } else {
        broadcast_append(g);
    }
    if (g->transferee != RAFT_NODE_NONE && g->clock >= g->transfer_deadline)
        g->transferee = RAFT_NODE_NONE;
    if (g->clock - g->quorum_mark >= g->opt.election_timeout_ms) {
        g->quorum_mark = g->clock;
        uint32_t alive = raft_config_is_voter(&g->conf, g->opt.self) ? 1 : 0;
        for (uint32_t i = 0; i < g->n_pr; i++) {
            if (g->pr[i].active && raft_config_is_voter(&g->conf, g->pr[i].id)) alive++;
            g->pr[i].active = false;
        }
        if (alive < quorum(g)) {
            log_debug("raft", "group %" PRIu64 ": node %d lost quorum, stepping down",
                      g->opt.group, g->opt.self);
            become_follower(g, g->term, RAFT_NODE_NONE);
        }
    }
}

int raft_tick(raft_group *g, uint64_t now_ms)
{
    call_begin(g);
    if (!g->have_now) {
        g->have_now = true;
    } else if (now_ms > g->last_now) {
        g->clock += now_ms - g->last_now;
    }
    g->last_now = now_ms;
    if (g->role == RAFT_LEADER) {
        leader_tick(g);
    } else if (g->clock - g->elapsed_mark >= g->timeout) {
        if (g->leader != RAFT_NODE_NONE) set_role(g, g->role, RAFT_NODE_NONE);
        if (g->no_campaign) {
            if (g->role != RAFT_FOLLOWER) become_follower(g, g->term, RAFT_NODE_NONE);
            timer_reset(g);
        } else {
            campaign(g, true, false);
        }
    }
    return 0;
}

void raft_set_campaign(raft_group *g, bool on)
{
    g->no_campaign = !on;
}

int raft_append_done(raft_group *g, int64_t last_offset, int64_t term)
{
    call_begin(g);
    if (last_offset > g->last || term_at(g, last_offset) != term) return 0; /* truncated since */
    if (last_offset > g->written) g->written = last_offset;
    if (g->written > g->flushing && act_room(g, 1)) {
        g->flushing = g->written;
        act_push(g, RAFT_ACT_FLUSH)->offset = g->written;
    }
    return 0;
}

int raft_flush_done(raft_group *g, int64_t durable_offset)
{
    call_begin(g);
    int64_t d = AL_MIN(durable_offset, g->last);
    if (d <= g->durable) return 0;
    g->durable = d;
    if (g->role == RAFT_LEADER) {
        maybe_commit(g);
    } else if (g->role == RAFT_FOLLOWER) {
        int64_t match = AL_MIN(g->durable, g->ack_end);
        if (match > g->acked) follower_respond(g, true, match);
    }
    return 0;
}

/* ---------------------------------------------------------------- client and admin calls */

int raft_propose(raft_group *g, raft_entry *ents, uint32_t n, int64_t *base_out)
{
    call_begin(g);
    if (g->role != RAFT_LEADER) return RAFT_ENOTLEADER;
    if (g->transferee != RAFT_NODE_NONE) return RAFT_EBUSY;
    if (n == 0 || n > g->opt.max_msg_entries) return AL_EINVAL;
    if (g->last - g->commit > (int64_t)g->opt.max_uncommitted) return AL_EFULL;
    int64_t off = g->last + 1;
    for (uint32_t i = 0; i < n; i++) {
        if (ents[i].count < 1 || (ents[i].len && !ents[i].data)) return AL_EINVAL;
        ents[i].offset = off;
        ents[i].term = g->term;
        ents[i].type = RAFT_ENTRY_DATA;
        off += ents[i].count;
    }
    int rc = append_local(g, ents, n);
    if (rc < 0) return rc;
    if (base_out) *base_out = ents[0].offset;
    broadcast_append(g);
    return 0;
}

int raft_transfer_leadership(raft_group *g, int32_t target)
{
    call_begin(g);
    if (g->role != RAFT_LEADER) return RAFT_ENOTLEADER;
    if (g->transferee != RAFT_NODE_NONE) return RAFT_EBUSY;
    raft_progress *p = pr_find(g, target);
    if (!p || !raft_config_is_voter(&g->conf, target)) return AL_EINVAL;
    g->transferee = target;
    g->transfer_deadline = g->clock + g->opt.election_timeout_ms;
    if (p->match == g->last) send_timeout_now(g, target);
    else send_append(g, p);
    return 0;
}

int raft_change_membership(raft_group *g, int op, int32_t node)
{
    call_begin(g);
    if (g->role != RAFT_LEADER) return RAFT_ENOTLEADER;
    if (g->transferee != RAFT_NODE_NONE || g->conf_offset > g->commit ||
        g->commit < g->term_start)
        return RAFT_EBUSY;
    if (node < 0) return AL_EINVAL;
    raft_config c = g->conf;
    bool voter = raft_config_is_voter(&c, node), learner = raft_config_is_learner(&c, node);
    switch (op) {
    case RAFT_CONF_ADD_LEARNER:
        if (voter || learner) return AL_EEXISTS;
        if (c.n_voters + c.n_learners >= RAFT_MAX_NODES) return AL_ETOOLARGE;
        c.learners[c.n_learners++] = node;
        break;
    case RAFT_CONF_PROMOTE:
        if (voter) return AL_EEXISTS;
        if (!learner) return AL_EINVAL;
        for (uint32_t i = 0; i < c.n_learners; i++)
            if (c.learners[i] == node) c.learners[i] = c.learners[--c.n_learners];
        c.voters[c.n_voters++] = node;
        break;
    case RAFT_CONF_REMOVE:
        if (voter) {
            if (c.n_voters == 1) return AL_EINVAL;
            for (uint32_t i = 0; i < c.n_voters; i++)
                if (c.voters[i] == node) c.voters[i] = c.voters[--c.n_voters];
        } else if (learner) {
            for (uint32_t i = 0; i < c.n_learners; i++)
                if (c.learners[i] == node) c.learners[i] = c.learners[--c.n_learners];
        } else {
            return AL_EINVAL;
        }
        break;
    default: return AL_EINVAL;
    }
    raft_entry e = {.offset = g->last + 1, .count = 1, .type = RAFT_ENTRY_CONFIG,
                    .term = g->term, .data = g->conf_buf};
    e.len = (uint32_t)raft_config_encode(&c, g->conf_buf);
    int rc = append_local(g, &e, 1);
    if (rc < 0) return rc;
    broadcast_append(g);
    return 0;
}

bool raft_replica_caught_up(const raft_group *g, int32_t id)
{
    if (g->role != RAFT_LEADER) return false;
    for (uint32_t i = 0; i < g->n_pr; i++)
        if (g->pr[i].id == id) return g->pr[i].match >= g->commit;
    return false;
}

/* ---------------------------------------------------------------- lifecycle */

int raft_group_init(raft_group *g, const raft_options *opt, const raft_log_ops *log,
                    void *log_ctx, const raft_hardstate *hs, const raft_config *conf,
                    uint64_t now_ms)
{
    memset(g, 0, sizeof(*g));
    if (!opt || !log || !hs || !conf || !config_valid(conf) || opt->self < 0 ||
        opt->election_timeout_ms == 0 || opt->heartbeat_ms == 0 || opt->max_msg_entries == 0 ||
        opt->max_inflight_msgs == 0)
        return AL_EINVAL;
    g->opt = *opt;
    g->log = log;
    g->log_ctx = log_ctx;
    if (opt->scratch) {
        if (opt->scratch->cap_actions < 32 || opt->scratch->cap_pool < 16) return AL_EINVAL;
        g->sc = opt->scratch;
    } else {
        int rc = raft_scratch_init(&g->own, opt->action_capacity, opt->entry_pool);
        if (rc < 0) return rc;
        g->sc = &g->own;
    }
    g->term = hs->term;
    g->vote = hs->vote;
    g->role = RAFT_FOLLOWER;
    g->leader = RAFT_NODE_NONE;
    g->transferee = RAFT_NODE_NONE;
    g->fresh_from = INT64_MAX;
    g->last = log->last_offset(log_ctx);
    g->last_term = log->term_at(log_ctx, g->last);
    AL_ASSERT(g->last >= -1 && g->last_term >= 0);
    /* The caller recovered (and synced) the log before creating the group. */
    g->written = g->durable = g->flushing = g->last;
    g->commit = -1;
    g->ack_end = g->acked = -1;
    g->conf = *conf;
    g->conf_offset = -1;
    g->snap_offset = -1;
    g->snap_term = 0;
    g->snap_conf = *conf;
    g->rx_offset = -1;
    g->rng = opt->seed ^ ((uint64_t)opt->self << 32) ^ opt->group;
    g->last_now = now_ms;
    g->have_now = true;
    timer_reset(g);
    return 0;
}

void raft_group_free(raft_group *g)
{
    if (g->sc && g->sc->owner == g) scratch_reset(g->sc); /* undrained actions die with it */
    rx_reset(g);
    raft_scratch_free(&g->own);
    g->sc = NULL;
}
