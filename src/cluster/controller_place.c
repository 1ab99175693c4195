/*
 * controller_place.c — placement, balancing, decommission and maintenance plans
 * (controller_place.h). A `load` holds per-broker replica and preferred-leader counts and
 * per-shard replica counts, indexed by the broker's position in the state's sorted array; plans
 * work on a private copy of every topic's assignments and report the partitions that changed.
 */
#include "cluster/controller_place.h"

#include "kafka/errors.h"

#include <stdlib.h>

typedef struct load {
    const controller_state *st;
    int32_t n;             /* brokers */
    int64_t *replicas;     /* [n] */
    int64_t *leaders;      /* [n] */
    uint32_t *shard_base;  /* [n]: index of the broker's first shard in shards */
    int64_t *shards;       /* [sum of cores] */
} load;

static void load_free(load *l)
{
    free(l->replicas);
    free(l->leaders);
    free(l->shard_base);
    free(l->shards);
    memset(l, 0, sizeof(*l));
}

/* Index of node in st->brokers, or -1. */
static int32_t node_index(const controller_state *st, int32_t node)
{
    const controller_broker *b = controller_broker_find(st, node);
    return b ? (int32_t)(b - st->brokers) : -1;
}

static bool is_active(const load *l, int32_t i)
{
    return l->st->brokers[i].membership == CONTROLLER_NODE_ACTIVE;
}

/* Adds (sign 1) or removes (sign -1) one partition's assignment to the counts. */
static void load_account(load *l, const topic_assignment *a, int sign)
{
    for (int r = 0; r < a->n; r++) {
        int32_t i = node_index(l->st, a->nodes[r]);
        if (i < 0) continue;
        l->replicas[i] += sign;
        if (r == 0) l->leaders[i] += sign;
        uint32_t cores = l->st->brokers[i].cores;
        l->shards[l->shard_base[i] + a->shards[r] % cores] += sign;
    }
}

/* Builds the load of the state's current assignments. Returns 0 or -ENOMEM. */
static int load_init(load *l, const controller_state *st)
{
    memset(l, 0, sizeof(*l));
    l->st = st;
    l->n = st->n_brokers;
    AL_ASSERT(l->n >= 0 && l->n <= CONTROLLER_NODES_MAX); /* apply and snapshot decode keep it */
    size_t total = 0;
    for (int32_t i = 0; i < l->n; i++) total += st->brokers[i].cores;
    l->replicas = calloc((size_t)l->n + 1, sizeof(int64_t));
    l->leaders = calloc((size_t)l->n + 1, sizeof(int64_t));
    l->shard_base = calloc((size_t)l->n + 1, sizeof(uint32_t));
    l->shards = calloc(total + 1, sizeof(int64_t));
    if (!l->replicas || !l->leaders || !l->shard_base || !l->shards) {
        load_free(l);
        return -ENOMEM;
    }
    uint32_t base = 0;
    for (int32_t i = 0; i < l->n; i++) {
        l->shard_base[i] = base;
        base += st->brokers[i].cores;
    }
    for (int32_t t = 0; t < st->topics.n; t++) {
        const topic *tp = topic_table_at(&st->topics, t);
        for (int32_t p = 0; tp->assign && p < tp->partitions; p++)
            load_account(l, &tp->assign[p], 1);
    }
    return 0;
}

/* The least-loaded shard of broker i; ties go to the first from a rotating start. */
static uint16_t least_shard(const load *l, int32_t i, uint32_t rot)
{
    uint32_t cores = l->st->brokers[i].cores;
    const int64_t *c = &l->shards[l->shard_base[i]];
    uint32_t best = rot % cores;
    for (uint32_t k = 0; k < cores; k++) {
        uint32_t s = (rot + k) % cores;
        if (c[s] < c[best]) best = s;
    }
    return (uint16_t)best;
}

/* Whether candidate a is a better target than b: fewer replicas, then fewer leaderships,
 * then earlier in the rotation starting at rot. */
static bool better(const load *l, int32_t a, int32_t b, uint32_t rot)
{
    if (b < 0) return true;
    if (l->replicas[a] != l->replicas[b]) return l->replicas[a] < l->replicas[b];
    if (l->leaders[a] != l->leaders[b]) return l->leaders[a] < l->leaders[b];
    uint32_t n = (uint32_t)l->n;
    return ((uint32_t)a + n - rot % n) % n < ((uint32_t)b + n - rot % n) % n;
}

static bool in_assignment(const topic_assignment *a, int32_t node)
{
    for (int r = 0; r < a->n; r++)
        if (a->nodes[r] == node) return true;
    return false;
}

/* Whether broker i has a rack that a replica of a other than broker skip already uses. */
static bool rack_taken(const load *l, const topic_assignment *a, int32_t i, int32_t skip)
{
    const char *rack = l->st->brokers[i].rack;
    if (!rack[0]) return false;
    for (int r = 0; r < a->n; r++) {
        int32_t j = node_index(l->st, a->nodes[r]);
        if (j < 0 || j == skip) continue;
        if (!strcmp(l->st->brokers[j].rack, rack)) return true;
    }
    return false;
}

/* The best ACTIVE broker index not in a (and not excluded), or -1: a rack a does not use yet
 * (ignoring the excluded broker's) first, then the least loaded. */
static int32_t best_target(const load *l, const topic_assignment *a, int32_t exclude,
                           uint32_t rot)
{
    int32_t best = -1;
    bool best_taken = true;
    for (int32_t i = 0; i < l->n; i++) {
        if (!is_active(l, i) || i == exclude || in_assignment(a, l->st->brokers[i].node_id))
            continue;
        bool taken = rack_taken(l, a, i, exclude);
        if (best >= 0 && taken && !best_taken) continue;
        if ((best >= 0 && !taken && best_taken) || better(l, i, best, rot)) {
            best = i;
            best_taken = taken;
        }
    }
    return best;
}

int32_t controller_active_nodes(const controller_state *st)
{
    int32_t n = 0;
    for (int32_t i = 0; i < st->n_brokers; i++)
        if (st->brokers[i].membership == CONTROLLER_NODE_ACTIVE) n++;
    return n;
}

int16_t controller_effective_rf(const controller_state *st, int16_t requested, int16_t default_rf)
{
    if (requested > 0) return requested;
    int32_t d = default_rf > 0 ? default_rf : 3;
    int32_t active = controller_active_nodes(st);
    int32_t rf = AL_MIN(d, active);
    return (int16_t)AL_MAX(rf, 1);
}

/*
 * Evens out preferred leaders among the new partitions out[0..n): while a partition's leader
 * leads at least 2 more partitions than another (ACTIVE) replica of it, they swap places. Each
 * swap lowers the sum of squared leader counts, so this ends; the bound is a safety net.
 */
static void level_leaders(load *l, topic_assignment *out, int32_t n)
{
    int64_t bound = (int64_t)n * TOPIC_REPLICAS_MAX + 1;
    bool moved = true;
    for (int64_t round = 0; moved && round < bound; round++) {
        moved = false;
        for (int32_t p = 0; p < n; p++) {
            topic_assignment *a = &out[p];
            int32_t li = node_index(l->st, a->nodes[0]);
            int best = -1;
            int32_t bi = -1;
            for (int r = 1; r < a->n; r++) {
                int32_t i = node_index(l->st, a->nodes[r]);
                if (l->leaders[li] - l->leaders[i] < 2) continue;
                if (best < 0 || l->leaders[i] < l->leaders[bi]) best = r, bi = i;
            }
            if (best < 0) continue;
            l->leaders[li]--;
            l->leaders[bi]++;
            int32_t tn = a->nodes[0];
            uint16_t ts = a->shards[0];
            a->nodes[0] = a->nodes[best];
            a->shards[0] = a->shards[best];
            a->nodes[best] = tn;
            a->shards[best] = ts;
            moved = true;
        }
    }
}

int controller_place(const controller_state *st, int32_t n, int16_t rf, topic_assignment *out)
{
    if (n < 1 || n > TOPIC_PARTITIONS_MAX || rf < 1 || rf > TOPIC_REPLICAS_MAX) return AL_EINVAL;
    int32_t active = controller_active_nodes(st);
    if (active == 0) return AL_ENOTFOUND;
    if (rf > active) return AL_ERANGE;
    load l;
    int err = load_init(&l, st);
    if (err) return err;
    /* Rotate tie-breaks by the topic count so equal-load clusters do not always start at the
     * same node. */
    uint32_t rot0 = (uint32_t)st->topics.n;
    for (int32_t p = 0; p < n; p++) {
        topic_assignment a;
        memset(&a, 0, sizeof(a));
        int32_t idx[TOPIC_REPLICAS_MAX];
        uint32_t rot = rot0 + (uint32_t)p;
        for (int r = 0; r < rf; r++) {
            int32_t b = best_target(&l, &a, -1, rot);
            AL_ASSERT(b >= 0);
            idx[r] = b;
            a.nodes[a.n++] = st->brokers[b].node_id;
        }
        /* The least-led chosen node leads. */
        int lead = 0;
        for (int r = 1; r < rf; r++)
            if (l.leaders[idx[r]] < l.leaders[idx[lead]]) lead = r;
        int32_t t = idx[0];
        idx[0] = idx[lead];
        idx[lead] = t;
        for (int r = 0; r < rf; r++) {
            a.nodes[r] = st->brokers[idx[r]].node_id;
            a.shards[r] = least_shard(&l, idx[r], rot);
        }
        AL_ASSERT(topic_assignment_valid(&a));
        load_account(&l, &a, 1);
        out[p] = a;
    }
    level_leaders(&l, out, n);
    load_free(&l);
    return 0;
}

/* ---- plans on a working copy ---- */

typedef struct work {
    load l;
    topic_assignment **as; /* per topic: copy of its assignments (NULL: single-node form) */
    int32_t n_topics;
    int64_t total;        /* partitions with assignments */
    int32_t cur_t, cur_p; /* where the replica scan resumes (a partition with assignments) */
} work;

/* Advances (t, p) to the next partition with assignments, wrapping around (w->total > 0). */
static void work_next(const work *w, int32_t *t, int32_t *p)
{
    (*p)++;
    for (int32_t k = 0; k <= w->n_topics; k++) {
        if (w->as[*t] && *p < topic_table_at(&w->l.st->topics, *t)->partitions) return;
        *t = (*t + 1) % w->n_topics;
        *p = 0;
    }
    AL_PANIC("controller: no partition with assignments to scan");
}

static void work_free(work *w)
{
    for (int32_t t = 0; t < w->n_topics; t++) free(w->as[t]);
    free(w->as);
    load_free(&w->l);
}

/* Builds the load and a private copy of every topic's assignments. Returns 0 or -ENOMEM. */
static int work_init(work *w, const controller_state *st)
{
    memset(w, 0, sizeof(*w));
    int err = load_init(&w->l, st);
    if (err) return err;
    w->as = calloc((size_t)st->topics.n + 1, sizeof(*w->as));
    if (!w->as) goto nomem;
    w->n_topics = st->topics.n;
    for (int32_t t = 0; t < st->topics.n; t++) {
        const topic *tp = topic_table_at(&st->topics, t);
        if (!tp->assign) continue;
        w->as[t] = malloc((size_t)tp->partitions * sizeof(topic_assignment));
        if (!w->as[t]) goto nomem;
        memcpy(w->as[t], tp->assign, (size_t)tp->partitions * sizeof(topic_assignment));
        w->total += tp->partitions;
    }
    if (w->total > 0) {
        w->cur_p = -1;
        work_next(w, &w->cur_t, &w->cur_p);
    }
    return 0;
nomem:
    work_free(w);
    return -ENOMEM;
}

/* The partitions whose working assignment differs from the state's, as moves. */
static int work_moves(const work *w, controller_move **out, int32_t *n)
{
    const controller_state *st = w->l.st;
    int32_t count = 0, cap = 0;
    controller_move *v = NULL;
    for (int32_t t = 0; t < w->n_topics; t++) {
        const topic *tp = topic_table_at(&st->topics, t);
        for (int32_t p = 0; w->as[t] && p < tp->partitions; p++) {
            if (!memcmp(&w->as[t][p], &tp->assign[p], sizeof(topic_assignment))) continue;
            if (count == cap) {
                int32_t ncap = cap ? cap * 2 : 16;
                controller_move *nv = realloc(v, (size_t)ncap * sizeof(*nv));
                if (!nv) {
                    free(v);
                    return -ENOMEM;
                }
                v = nv;
                cap = ncap;
            }
            controller_move *m = &v[count++];
            memset(m, 0, sizeof(*m));
            strcpy(m->topic, tp->name);
            m->partition = p;
            m->from = tp->assign[p];
            m->to = w->as[t][p];
        }
    }
    *out = v;
    *n = count;
    return 0;
}

/* Replaces replica r of a (on broker index from) with broker index to. */
static void work_replace(work *w, topic_assignment *a, int r, int32_t to, uint32_t rot)
{
    load_account(&w->l, a, -1);
    a->nodes[r] = w->l.st->brokers[to].node_id;
    a->shards[r] = least_shard(&w->l, to, rot);
    load_account(&w->l, a, 1);
}

/* One replica move from the fullest to the emptiest ACTIVE node. Preferred: a partition this
 * plan has not changed yet (one replica to copy per partition, the others stay in sync), then
 * one whose racks stay distinct, then (when the source also leads 2+ more partitions than the
 * target) one it leads (the target takes the leader's place), else one it follows. Returns
 * true if it moved. */
static bool balance_replicas_step(work *w, uint32_t rot)
{
    const load *l = &w->l;
    int32_t hi = -1, lo = -1;
    for (int32_t i = 0; i < l->n; i++) {
        if (!is_active(l, i)) continue;
        if (hi < 0 || l->replicas[i] > l->replicas[hi]) hi = i;
        if (lo < 0 || l->replicas[i] < l->replicas[lo]) lo = i;
    }
    if (hi < 0 || w->total == 0 || l->replicas[hi] - l->replicas[lo] <= 1) return false;
    int32_t hin = l->st->brokers[hi].node_id, lon = l->st->brokers[lo].node_id;
    bool want_leader = l->leaders[hi] - l->leaders[lo] >= 2;
    /* A partition on hi without lo exists (hi has more replicas). */
    topic_assignment *pick = NULL;
    int pick_r = -1, pick_score = -1;
    /* Scan from where the last pick was: the partitions behind it were changed already. */
    int32_t t = w->cur_t, p = w->cur_p;
    for (int64_t k = 0; k < w->total; k++, work_next(w, &t, &p)) {
        const topic *tp = topic_table_at(&l->st->topics, t);
        topic_assignment *a = &w->as[t][p];
        if (in_assignment(a, lon)) continue;
        bool keeps_racks = !rack_taken(l, a, lo, hi);
        bool untouched = !memcmp(a, &tp->assign[p], sizeof(*a));
        for (int r = 0; r < a->n; r++) {
            if (a->nodes[r] != hin) continue;
            int score = (untouched ? 4 : 0) + (keeps_racks ? 2 : 0) +
                        (want_leader == (r == 0) ? 1 : 0);
            if (!pick || score > pick_score) {
                pick = a;
                pick_r = r;
                pick_score = score;
            }
            if (score == 7) {
                w->cur_t = t;
                w->cur_p = p;
                goto found;
            }
        }
    }
    if (!pick) return false;
found:
    work_replace(w, pick, pick_r, lo, rot);
    return true;
}

/* One preferred-leader swap: a partition led by an ACTIVE node that leads 2+ more partitions
 * than another ACTIVE replica of it hands the lead to the least-leading such replica. Sources
 * are tried from the most leading down. Returns true if it swapped. */
static bool balance_leaders_step(work *w)
{
    const load *l = &w->l;
    topic_assignment *pick = NULL;
    int pick_r = -1;
    int32_t pick_i = -1, pick_src = -1;
    for (int32_t t = 0; t < w->n_topics; t++) {
        const topic *tp = topic_table_at(&l->st->topics, t);
        for (int32_t p = 0; w->as[t] && p < tp->partitions; p++) {
            topic_assignment *a = &w->as[t][p];
            int32_t src = node_index(l->st, a->nodes[0]);
            if (src < 0 || !is_active(l, src)) continue;
            if (pick && l->leaders[src] < l->leaders[pick_src]) continue;
            for (int r = 1; r < a->n; r++) {
                int32_t i = node_index(l->st, a->nodes[r]);
                if (i < 0 || !is_active(l, i) || l->leaders[src] - l->leaders[i] <= 1) continue;
                /* Best: the most leading source, then the least leading target. */
                if (!pick || l->leaders[src] > l->leaders[pick_src] ||
                    l->leaders[i] < l->leaders[pick_i]) {
                    pick = a;
                    pick_r = r;
                    pick_i = i;
                    pick_src = src;
                }
            }
        }
    }
    if (!pick) return false;
    load_account(&w->l, pick, -1);
    int32_t tn = pick->nodes[0];
    uint16_t ts = pick->shards[0];
    pick->nodes[0] = pick->nodes[pick_r];
    pick->shards[0] = pick->shards[pick_r];
    pick->nodes[pick_r] = tn;
    pick->shards[pick_r] = ts;
    load_account(&w->l, pick, 1);
    return true;
}

/* The first partition led by src that dst is not in (one keeping racks distinct preferred). */
static topic_assignment *led_without(work *w, int32_t src, int32_t dst)
{
    const load *l = &w->l;
    int32_t srcn = l->st->brokers[src].node_id, dstn = l->st->brokers[dst].node_id;
    topic_assignment *pick = NULL;
    for (int32_t t = 0; t < w->n_topics; t++) {
        const topic *tp = topic_table_at(&l->st->topics, t);
        for (int32_t p = 0; w->as[t] && p < tp->partitions; p++) {
            topic_assignment *a = &w->as[t][p];
            if (a->nodes[0] != srcn || in_assignment(a, dstn)) continue;
            if (!rack_taken(l, a, dst, src)) return a;
            if (!pick) pick = a;
        }
    }
    return pick;
}

/* Hands one partition src leads to dst: outright if both replica counts stay within
 * [rmin, rmax], else (budget >= 2) in exchange for a partition dst follows and src is not in
 * (replica counts unchanged). Returns the partitions changed: 0, 1 or 2. */
static int leader_handover(work *w, int32_t src, int32_t dst, int64_t rmin, int64_t rmax,
                           uint32_t rot, int64_t budget)
{
    const load *l = &w->l;
    topic_assignment *a = led_without(w, src, dst);
    if (!a) return 0;
    if (l->replicas[dst] + 1 <= rmax && l->replicas[src] - 1 >= rmin) {
        work_replace(w, a, 0, dst, rot);
        return 1;
    }
    if (budget < 2) return 0;
    int32_t srcn = l->st->brokers[src].node_id, dstn = l->st->brokers[dst].node_id;
    for (int32_t t = 0; t < w->n_topics; t++) {
        const topic *tp = topic_table_at(&l->st->topics, t);
        for (int32_t p = 0; w->as[t] && p < tp->partitions; p++) {
            topic_assignment *b = &w->as[t][p];
            if (in_assignment(b, srcn)) continue;
            for (int r = 1; r < b->n; r++) {
                if (b->nodes[r] != dstn) continue;
                work_replace(w, a, 0, dst, rot);
                work_replace(w, b, r, src, rot);
                return 2;
            }
        }
    }
    return 0;
}

/* When no swap helps: the most leading ACTIVE node hands a partition it leads to the least
 * leading node that can take one (leader_handover), trying targets from the least leading up.
 * Returns the partitions changed (0: nothing to do within budget). */
static int balance_leader_move_step(work *w, uint32_t rot, int64_t budget)
{
    const load *l = &w->l;
    int32_t src = -1;
    int64_t rmin = INT64_MAX, rmax = INT64_MIN;
    int32_t order[CONTROLLER_NODES_MAX];
    int32_t n = 0;
    for (int32_t i = 0; i < l->n; i++) {
        if (!is_active(l, i)) continue;
        if (src < 0 || l->leaders[i] > l->leaders[src]) src = i;
        rmin = AL_MIN(rmin, l->replicas[i]);
        rmax = AL_MAX(rmax, l->replicas[i]);
        /* insertion into order[] by leaders ascending (stable: node order on ties) */
        int32_t k = n++;
        while (k > 0 && l->leaders[order[k - 1]] > l->leaders[i]) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = i;
    }
    for (int32_t k = 0; k < n && src >= 0; k++) {
        int32_t dst = order[k];
        if (l->leaders[src] - l->leaders[dst] < 2) break;
        int k2 = leader_handover(w, src, dst, rmin, rmax, rot, budget);
        if (k2) return k2;
    }
    return 0;
}

int controller_balance_plan(const controller_state *st, int32_t max_moves,
                            controller_move **out, int32_t *n)
{
    *out = NULL;
    *n = 0;
    if (max_moves < 0) return AL_EINVAL;
    work w;
    int err = work_init(&w, st);
    if (err) return err;
    int64_t total = 0;
    for (int32_t i = 0; i < w.l.n; i++) total += w.l.replicas[i];
    /* Each step lowers the sum of squared replica (phase 1) or leader (phase 2) counts, so
     * the loops end; the bound is a safety net, and max_moves bounds the changed partitions
     * (steps counts them: one per step, two per exchange). */
    int64_t bound = AL_MIN(total + 1, (int64_t)max_moves);
    int64_t steps = 0;
    while (steps < bound && balance_replicas_step(&w, (uint32_t)steps)) steps++;
    for (int guard = 0; guard < INT32_MAX && steps < bound; guard++) {
        if (balance_leaders_step(&w)) {
            steps++;
            continue;
        }
        int k = balance_leader_move_step(&w, (uint32_t)steps, bound - steps);
        if (!k) break;
        steps += k;
    }
    err = work_moves(&w, out, n);
    work_free(&w);
    return err;
}

int controller_decommission_plan(const controller_state *st, int32_t node,
                                 controller_move **out, int32_t *n, int32_t *unplaceable)
{
    *out = NULL;
    *n = 0;
    *unplaceable = 0;
    int32_t x = node_index(st, node);
    if (x < 0) return AL_ENOTFOUND;
    work w;
    int err = work_init(&w, st);
    if (err) return err;
    uint32_t rot = 0;
    for (int32_t t = 0; t < w.n_topics; t++) {
        const topic *tp = topic_table_at(&st->topics, t);
        for (int32_t p = 0; w.as[t] && p < tp->partitions; p++) {
            topic_assignment *a = &w.as[t][p];
            int r = 0;
            while (r < a->n && a->nodes[r] != node) r++;
            if (r == a->n) continue;
            int32_t to = best_target(&w.l, a, x, rot++);
            if (to < 0) {
                (*unplaceable)++;
                continue;
            }
            /* Take node out (the next replica leads if it led), append the new one. */
            load_account(&w.l, a, -1);
            memmove(&a->nodes[r], &a->nodes[r + 1], (size_t)(a->n - r - 1) * sizeof(int32_t));
            memmove(&a->shards[r], &a->shards[r + 1], (size_t)(a->n - r - 1) * sizeof(uint16_t));
            a->nodes[a->n - 1] = st->brokers[to].node_id;
            a->shards[a->n - 1] = least_shard(&w.l, to, rot);
            load_account(&w.l, a, 1);
        }
    }
    err = work_moves(&w, out, n);
    work_free(&w);
    return err;
}

int controller_raise_rf_plan(const controller_state *st, const char *name, int16_t rf,
                             controller_move **out, int32_t *n)
{
    *out = NULL;
    *n = 0;
    const topic *tp = topic_table_find(&st->topics, name, strlen(name));
    if (!tp || !tp->assign) return AL_ENOTFOUND;
    int32_t want = AL_MIN((int32_t)rf, controller_active_nodes(st));
    want = AL_MIN(want, TOPIC_REPLICAS_MAX);
    work w;
    int err = work_init(&w, st);
    if (err) return err;
    int32_t t = 0;
    while (t < w.n_topics && topic_table_at(&st->topics, t) != tp) t++;
    uint32_t rot = 0;
    for (int32_t p = 0; t < w.n_topics && w.as[t] && p < tp->partitions; p++) {
        topic_assignment *a = &w.as[t][p];
        for (int guard = 0; a->n < want && guard < TOPIC_REPLICAS_MAX; guard++) {
            int32_t to = best_target(&w.l, a, -1, rot++);
            if (to < 0) break;
            load_account(&w.l, a, -1);
            a->nodes[a->n] = st->brokers[to].node_id;
            a->shards[a->n] = least_shard(&w.l, to, rot);
            a->n++;
            load_account(&w.l, a, 1);
        }
    }
    err = work_moves(&w, out, n);
    work_free(&w);
    return err;
}

int controller_maintenance_plan(const controller_state *st, int32_t node,
                                controller_leader_move **out, int32_t *n, int32_t *stuck)
{
    *out = NULL;
    *n = 0;
    *stuck = 0;
    if (node_index(st, node) < 0) return AL_ENOTFOUND;
    load l;
    int err = load_init(&l, st);
    if (err) return err;
    int32_t count = 0, cap = 0;
    controller_leader_move *v = NULL;
    for (int32_t t = 0; t < st->topics.n; t++) {
        const topic *tp = topic_table_at(&st->topics, t);
        for (int32_t p = 0; tp->assign && p < tp->partitions; p++) {
            const topic_assignment *a = &tp->assign[p];
            if (!in_assignment(a, node)) continue;
            int32_t best = -1;
            for (int r = 0; r < a->n; r++) {
                int32_t i = node_index(st, a->nodes[r]);
                if (a->nodes[r] == node || i < 0 || !is_active(&l, i)) continue;
                if (best < 0 || l.leaders[i] < l.leaders[best]) best = i;
            }
            if (best < 0) {
                (*stuck)++;
                continue;
            }
            if (count == cap) {
                int32_t ncap = cap ? cap * 2 : 16;
                controller_leader_move *nv = realloc(v, (size_t)ncap * sizeof(*nv));
                if (!nv) {
                    err = -ENOMEM;
                    goto out;
                }
                v = nv;
                cap = ncap;
            }
            controller_leader_move *m = &v[count++];
            memset(m, 0, sizeof(*m));
            strcpy(m->topic, tp->name);
            m->partition = p;
            m->from = node;
            m->to = st->brokers[best].node_id;
            l.leaders[best]++;
        }
    }
    *out = v;
    *n = count;
    v = NULL;
out:
    free(v);
    load_free(&l);
    return err;
}

int16_t controller_place_kafka_error(int err)
{
    switch (err) {
    case 0: return 0;
    case AL_ERANGE: return KAFKA_ERR_INVALID_REPLICATION_FACTOR;
    case AL_ENOTFOUND: return KAFKA_ERR_BROKER_NOT_AVAILABLE;
    case AL_EINVAL: return KAFKA_ERR_INVALID_REQUEST;
    default: return KAFKA_ERR_UNKNOWN_SERVER_ERROR;
    }
}
