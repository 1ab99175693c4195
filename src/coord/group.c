/* group.c — the classic group coordinator state machine (contracts in group.h), following
 * Apache Kafka 3.8's GroupCoordinator / GroupMetadata / MemberMetadata. Allocation failure is
 * fatal here (as Redis's zmalloc): the coordinator holds bounded state (max_groups, max_size)
 * and a half-applied membership change would be worse than a restart, which reloads the state
 * from __consumer_offsets. */
#include "coord/group.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "base/log.h"
#include "coord/group_records.h"
#include "kafka/errors.h"

#define NO_DEADLINE INT64_MAX

struct member_proto {
    char *name;
    uint8_t *meta;
    size_t len;
};

struct member {
    char *id;
    char *instance_id; /* NULL: dynamic */
    char *client_id;
    char *client_host;
    char *protocol_type;
    int32_t session_ms;
    int32_t rebalance_ms;
    int nprotos;
    struct member_proto *protos;
    uint8_t *assignment;
    size_t assignment_len;
    int64_t deadline; /* session (or new-member join) expiry; NO_DEADLINE when satisfied */
    bool is_new;
    bool pending_sync; /* has not sent SyncGroup for this generation yet */
    group_join_cb join_cb; /* non-NULL: awaiting join */
    void *join_arg;
    group_sync_cb sync_cb; /* non-NULL: awaiting sync */
    void *sync_arg;
};

struct pending_member {
    char *id;
    int64_t deadline;
};

struct offset_entry {
    struct coord_hnode node;
    char *topic;
    int32_t partition;
    int64_t offset;
    int32_t leader_epoch;
    char *metadata;
    int64_t commit_ts;
    int64_t expire_ts; /* -1: none */
};

struct group {
    struct coord_hnode node;
    char *id;
    int state;
    int64_t state_ts; /* -1: unknown (loaded from an old record) */
    int32_t generation;
    char *protocol_type; /* NULL: none */
    char *protocol_name; /* NULL: none */
    char *leader;        /* NULL: none */
    struct member **members;
    int nmembers, cap_members;
    struct pending_member *pending;
    int npending, cap_pending;
    bool new_member_added;
    int64_t join_deadline; /* PreparingRebalance: when the (initial) delayed join fires */
    bool join_initial;
    int64_t initial_remaining;
    int64_t sync_deadline; /* pending-sync expiry */
    bool subscribed_known;
    int nsubscribed;
    char **subscribed;
    struct coord_hmap offsets;
    bool has_meta; /* loading: a GroupMetadata value is in effect */
    bool loaded;   /* loading: touched by a record since the last load_done */
};

/* ---- small helpers ---- */

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) AL_PANIC("group coordinator: out of memory");
    return p;
}

static void *xrealloc(void *p, size_t sz)
{
    p = realloc(p, sz ? sz : 1);
    if (!p) AL_PANIC("group coordinator: out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    char *d = xcalloc(1, n + 1);
    memcpy(d, s, n);
    return d;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = xcalloc(1, n + 1);
    if (n) memcpy(d, s, n);
    return d;
}

static char *xstrdup_cs(struct coord_str s)
{
    return s.len < 0 ? NULL : xstrndup(s.p, (size_t)s.len);
}

static uint8_t *xmemdup(const uint8_t *p, size_t n)
{
    uint8_t *d = xcalloc(1, n);
    if (n) memcpy(d, p, n);
    return d;
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static void set_str(char **dst, const char *src)
{
    char *n = xstrdup(src);
    free(*dst);
    *dst = n;
}

const char *group_state_name(int state)
{
    switch (state) {
    case GROUP_EMPTY: return "Empty";
    case GROUP_PREPARING_REBALANCE: return "PreparingRebalance";
    case GROUP_COMPLETING_REBALANCE: return "CompletingRebalance";
    case GROUP_STABLE: return "Stable";
    case GROUP_DEAD: return "Dead";
    }
    return "Unknown";
}

void group_config_defaults(struct group_config *cfg)
{
    cfg->min_session_timeout_ms = 6000;
    cfg->max_session_timeout_ms = 1800000;
    cfg->initial_rebalance_delay_ms = 3000;
    cfg->max_size = INT32_MAX;
    cfg->new_member_join_timeout_ms = 300000;
    cfg->offset_metadata_max_bytes = 4096;
    cfg->offsets_retention_ms = 7LL * 24 * 3600 * 1000;
    cfg->offsets_retention_check_interval_ms = 600000;
    cfg->max_groups = 1000000;
}

/* ---- members ---- */

static void member_free_protos(struct member *m)
{
    for (int i = 0; i < m->nprotos; i++) {
        free(m->protos[i].name);
        free(m->protos[i].meta);
    }
    free(m->protos);
    m->protos = NULL;
    m->nprotos = 0;
}

static void member_set_protos(struct member *m, const struct group_protocol *p, int n)
{
    member_free_protos(m);
    m->protos = xcalloc((size_t)n, sizeof(*m->protos));
    for (int i = 0; i < n; i++) {
        m->protos[i].name = xstrdup(p[i].name ? p[i].name : "");
        m->protos[i].meta = xmemdup(p[i].metadata, p[i].metadata_len);
        m->protos[i].len = p[i].metadata_len;
    }
    m->nprotos = n;
}

static void member_free(struct member *m)
{
    if (!m) return;
    member_free_protos(m);
    free(m->id);
    free(m->instance_id);
    free(m->client_id);
    free(m->client_host);
    free(m->protocol_type);
    free(m->assignment);
    free(m);
}

static const struct member_proto *member_proto(const struct member *m, const char *name)
{
    if (!name) return NULL;
    for (int i = 0; i < m->nprotos; i++)
        if (!strcmp(m->protos[i].name, name)) return &m->protos[i];
    return NULL;
}

/* Kafka's MemberMetadata.matches: the same protocols, in order, with the same metadata. */
static bool member_matches(const struct member *m, const struct group_protocol *p, int n)
{
    if (m->nprotos != n) return false;
    for (int i = 0; i < n; i++) {
        if (strcmp(m->protos[i].name, p[i].name ? p[i].name : "")) return false;
        if (m->protos[i].len != p[i].metadata_len) return false;
        if (p[i].metadata_len && memcmp(m->protos[i].meta, p[i].metadata, p[i].metadata_len))
            return false;
    }
    return true;
}

static void noop_join_cb(void *arg, const struct group_join_result *r)
{
    AL_UNUSED(arg);
    AL_UNUSED(r);
}

static void noop_sync_cb(void *arg, const struct group_sync_result *r)
{
    AL_UNUSED(arg);
    AL_UNUSED(r);
}

static void invoke_join(struct member *m, const struct group_join_result *r)
{
    if (!m->join_cb) return;
    group_join_cb cb = m->join_cb;
    void *arg = m->join_arg;
    m->join_cb = NULL;
    m->join_arg = NULL;
    cb(arg, r);
}

static void invoke_join_error(struct member *m, const char *member_id, int16_t err)
{
    struct group_join_result r = {err, -1, NULL, NULL, "", member_id, false, 0, NULL};
    invoke_join(m, &r);
}

static void invoke_sync(struct member *m, const struct group_sync_result *r)
{
    if (!m->sync_cb) return;
    group_sync_cb cb = m->sync_cb;
    void *arg = m->sync_arg;
    m->sync_cb = NULL;
    m->sync_arg = NULL;
    cb(arg, r);
}

static void invoke_sync_error(struct member *m, int16_t err)
{
    struct group_sync_result r = {err, NULL, NULL, NULL, 0};
    invoke_sync(m, &r);
}

/* ---- groups ---- */

static uint64_t group_hash(const char *id)
{
    return coord_hash_str(0, id);
}

static struct group *group_get(const struct group_coordinator *c, const char *id)
{
    uint64_t h = group_hash(id);
    for (struct coord_hnode *n = coord_hmap_bucket(&c->groups, h); n; n = n->next) {
        struct group *g = AL_CONTAINER_OF(n, struct group, node);
        if (n->hash == h && !strcmp(g->id, id)) return g;
    }
    return NULL;
}

const struct group *group_find(const struct group_coordinator *c, const char *group_id)
{
    return group_get(c, group_id);
}

static void transition(struct group *g, int state, int64_t now)
{
    g->state = state;
    g->state_ts = now;
}

static struct group *group_create(struct group_coordinator *c, const char *id, int64_t now)
{
    if (c->groups.count >= (size_t)c->cfg.max_groups) return NULL;
    struct group *g = xcalloc(1, sizeof(*g));
    g->id = xstrdup(id);
    g->state = GROUP_EMPTY;
    g->state_ts = now;
    g->join_deadline = NO_DEADLINE;
    g->sync_deadline = NO_DEADLINE;
    if (coord_hmap_insert(&c->groups, &g->node, group_hash(id)) < 0)
        AL_PANIC("group coordinator: out of memory");
    return g;
}

static void offset_free(struct offset_entry *o)
{
    free(o->topic);
    free(o->metadata);
    free(o);
}

static void subscribed_clear(struct group *g)
{
    for (int i = 0; i < g->nsubscribed; i++) free(g->subscribed[i]);
    free(g->subscribed);
    g->subscribed = NULL;
    g->nsubscribed = 0;
    g->subscribed_known = false;
}

static void group_free_members(struct group *g)
{
    for (int i = 0; i < g->nmembers; i++) member_free(g->members[i]);
    g->nmembers = 0;
    for (int i = 0; i < g->npending; i++) free(g->pending[i].id);
    g->npending = 0;
}

/* Frees a group; every pending callback gets err first. */
static void group_destroy(struct group_coordinator *c, struct group *g, int16_t err)
{
    for (int i = 0; i < g->nmembers; i++) {
        invoke_join_error(g->members[i], g->members[i]->id, err);
        invoke_sync_error(g->members[i], err);
    }
    coord_hmap_remove(&c->groups, &g->node);
    group_free_members(g);
    free(g->members);
    free(g->pending);
    size_t b;
    struct coord_hnode *n = coord_hmap_first(&g->offsets, &b);
    while (n) {
        struct coord_hnode *next = coord_hmap_next(&g->offsets, n, &b);
        offset_free(AL_CONTAINER_OF(n, struct offset_entry, node));
        n = next;
    }
    coord_hmap_free(&g->offsets);
    subscribed_clear(g);
    free(g->id);
    free(g->protocol_type);
    free(g->protocol_name);
    free(g->leader);
    free(g);
}

static int member_index(const struct group *g, const char *id)
{
    if (!id) return -1;
    for (int i = 0; i < g->nmembers; i++)
        if (!strcmp(g->members[i]->id, id)) return i;
    return -1;
}

static struct member *member_get(const struct group *g, const char *id)
{
    int i = member_index(g, id);
    return i < 0 ? NULL : g->members[i];
}

static struct member *static_member(const struct group *g, const char *instance_id)
{
    if (!instance_id) return NULL;
    for (int i = 0; i < g->nmembers; i++)
        if (str_eq(g->members[i]->instance_id, instance_id)) return g->members[i];
    return NULL;
}

/* Kafka's validateCurrentMember: with an instance id, it must be a known static member mapped
 * to member_id (else UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID); the member id must exist. */
static int16_t validate_current_member(const struct group *g, const char *member_id,
                                       const char *instance_id)
{
    if (instance_id) {
        const struct member *sm = static_member(g, instance_id);
        if (!sm) return KAFKA_ERR_UNKNOWN_MEMBER_ID;
        if (!str_eq(sm->id, member_id)) return KAFKA_ERR_FENCED_INSTANCE_ID;
    }
    return member_get(g, member_id) ? KAFKA_ERR_NONE : KAFKA_ERR_UNKNOWN_MEMBER_ID;
}

static int pending_index(const struct group *g, const char *id)
{
    for (int i = 0; i < g->npending; i++)
        if (!strcmp(g->pending[i].id, id)) return i;
    return -1;
}

static void pending_remove(struct group *g, int i)
{
    free(g->pending[i].id);
    g->pending[i] = g->pending[--g->npending];
}

static void group_add_member(struct group *g, struct member *m)
{
    if (g->nmembers == 0) set_str(&g->protocol_type, m->protocol_type);
    if (!g->leader) g->leader = xstrdup(m->id);
    if (g->nmembers == g->cap_members) {
        g->cap_members = g->cap_members ? g->cap_members * 2 : 4;
        g->members = xrealloc(g->members, sizeof(*g->members) * (size_t)g->cap_members);
    }
    g->members[g->nmembers++] = m;
}

/* GroupMetadata.remove: unlinks member i (keeping order), re-elects the leader if needed. */
static void group_remove_member(struct group *g, int i)
{
    struct member *m = g->members[i];
    memmove(&g->members[i], &g->members[i + 1],
            sizeof(*g->members) * (size_t)(g->nmembers - i - 1));
    g->nmembers--;
    if (str_eq(g->leader, m->id)) {
        free(g->leader);
        g->leader = g->nmembers ? xstrdup(g->members[0]->id) : NULL;
    }
    member_free(m);
}

static int count_awaiting_join(const struct group *g)
{
    int n = 0;
    for (int i = 0; i < g->nmembers; i++)
        if (g->members[i]->join_cb) n++;
    return n;
}

static int count_supporting(const struct group *g, const char *proto)
{
    int n = 0;
    for (int i = 0; i < g->nmembers; i++)
        if (member_proto(g->members[i], proto)) n++;
    return n;
}

/* GroupMetadata.supportsProtocols. */
static bool supports_protocols(const struct group *g, const char *ptype,
                               const struct group_protocol *p, int n)
{
    if (g->state == GROUP_EMPTY) return ptype && ptype[0] && n > 0;
    if (!ptype || !str_eq(g->protocol_type, ptype)) return false;
    for (int i = 0; i < n; i++)
        if (p[i].name && count_supporting(g, p[i].name) == g->nmembers) return true;
    return false;
}

/* GroupMetadata.selectProtocol: among the protocols every member supports, the one most members
 * list first (each votes for its most preferred candidate); ties go to the first member's
 * preference order. Returns NULL when there is no common protocol. */
static const char *select_protocol(const struct group *g)
{
    if (g->nmembers == 0) return NULL;
    const struct member *first = g->members[0];
    const char *best = NULL;
    int best_votes = -1;
    for (int i = 0; i < first->nprotos; i++) {
        const char *cand = first->protos[i].name;
        if (count_supporting(g, cand) != g->nmembers) continue;
        int votes = 0;
        for (int j = 0; j < g->nmembers; j++) {
            const struct member *m = g->members[j];
            for (int k = 0; k < m->nprotos; k++) {
                if (count_supporting(g, m->protos[k].name) != g->nmembers) continue;
                if (!strcmp(m->protos[k].name, cand)) votes++;
                break; /* a member votes only for its first candidate */
            }
        }
        if (votes > best_votes) best = cand, best_votes = votes;
    }
    return best;
}

static void collect_topic(void *arg, const char *topic, size_t n)
{
    struct group *g = arg;
    for (int i = 0; i < g->nsubscribed; i++)
        if (strlen(g->subscribed[i]) == n && !memcmp(g->subscribed[i], topic, n)) return;
    g->subscribed = xrealloc(g->subscribed, sizeof(char *) * (size_t)(g->nsubscribed + 1));
    g->subscribed[g->nsubscribed++] = xstrndup(topic, n);
}

/* GroupMetadata.computeSubscribedTopics: the union of the consumer members' subscriptions,
 * unknown (subscribed_known false) if any cannot be parsed or the group is not a consumer
 * group. */
static void compute_subscribed(struct group *g)
{
    subscribed_clear(g);
    if (!str_eq(g->protocol_type, "consumer")) return;
    if (g->nmembers == 0) {
        g->subscribed_known = true;
        return;
    }
    if (!g->protocol_name) return;
    for (int i = 0; i < g->nmembers; i++) {
        const struct member_proto *p = member_proto(g->members[i], g->protocol_name);
        if (!p || group_subscription_topics(p->meta, p->len, collect_topic, g) < 0) {
            subscribed_clear(g);
            return;
        }
    }
    g->subscribed_known = true;
}

static bool subscribed_to(const struct group *g, const char *topic)
{
    if (!g->subscribed_known) return true; /* unknown: assume it is, as Kafka does */
    for (int i = 0; i < g->nsubscribed; i++)
        if (!strcmp(g->subscribed[i], topic)) return true;
    return false;
}

static int32_t group_rebalance_timeout(const struct group *g)
{
    int32_t t = 0;
    for (int i = 0; i < g->nmembers; i++) t = AL_MAX(t, g->members[i]->rebalance_ms);
    return t;
}

/* ---- persistence of a group ---- */

/* Emits the GroupMetadata record of g as it is now (members with their assignments). */
static struct coord_str cstr(const char *s)
{
    return s ? (struct coord_str){s, (int32_t)strlen(s)} : (struct coord_str){NULL, -1};
}

static int store_group(struct group_coordinator *c, struct group *g)
{
    if (!c->emit) return 0;
    struct group_record_member *mm = xcalloc((size_t)g->nmembers, sizeof(*mm));
    for (int i = 0; i < g->nmembers; i++) {
        const struct member *m = g->members[i];
        const struct member_proto *p = g->protocol_name ? member_proto(m, g->protocol_name) : NULL;
        mm[i].member_id = cstr(m->id);
        mm[i].group_instance_id = cstr(m->instance_id);
        mm[i].client_id = cstr(m->client_id);
        mm[i].client_host = cstr(m->client_host);
        mm[i].rebalance_timeout_ms = m->rebalance_ms;
        mm[i].session_timeout_ms = m->session_ms;
        mm[i].subscription = p ? p->meta : NULL;
        mm[i].subscription_len = p ? (int32_t)p->len : 0;
        mm[i].assignment = m->assignment;
        mm[i].assignment_len = (int32_t)m->assignment_len;
    }
    struct group_record_meta meta = {
        .protocol_type = cstr(g->protocol_type ? g->protocol_type : ""),
        .protocol = cstr(g->protocol_name),
        .leader = cstr(g->leader),
        .generation = g->generation,
        .state_ts = g->state_ts,
        .nmembers = g->nmembers,
        .members = mm,
    };
    int rc = AL_ETOOLARGE;
    int klen = group_metadata_key_encode(NULL, 0, g->id);
    int vlen = group_metadata_value_encode(NULL, 0, &meta);
    if (klen > 0 && vlen > 0) {
        uint8_t *key = xcalloc(1, (size_t)klen), *val = xcalloc(1, (size_t)vlen);
        group_metadata_key_encode(key, (size_t)klen, g->id);
        group_metadata_value_encode(val, (size_t)vlen, &meta);
        struct group_record r = {key, (size_t)klen, val, (size_t)vlen};
        rc = c->emit(c->emit_ctx, g->id, &r, 1);
        free(key);
        free(val);
    }
    free(mm);
    if (rc < 0) log_warn("group", "storing group %s failed: %s", g->id, al_strerror(rc));
    return rc;
}

/* ---- rebalance machinery ---- */

static void prepare_rebalance(struct group_coordinator *c, struct group *g, int64_t now);

/* Kafka's resetAndPropagateAssignmentError / propagateAssignment with an error. */
static void propagate_assignment_error(struct group *g, int16_t err, int64_t now)
{
    for (int i = 0; i < g->nmembers; i++) {
        struct member *m = g->members[i];
        free(m->assignment);
        m->assignment = NULL;
        m->assignment_len = 0;
        if (m->sync_cb) {
            invoke_sync_error(m, err);
            m->deadline = now + m->session_ms;
        }
    }
}

static void maybe_prepare_rebalance(struct group_coordinator *c, struct group *g, int64_t now)
{
    if (g->state == GROUP_STABLE || g->state == GROUP_COMPLETING_REBALANCE ||
        g->state == GROUP_EMPTY)
        prepare_rebalance(c, g, now);
}

static void prepare_rebalance(struct group_coordinator *c, struct group *g, int64_t now)
{
    if (g->state == GROUP_COMPLETING_REBALANCE)
        propagate_assignment_error(g, KAFKA_ERR_REBALANCE_IN_PROGRESS, now);
    g->sync_deadline = NO_DEADLINE;
    for (int i = 0; i < g->nmembers; i++) g->members[i]->pending_sync = false;
    int32_t rt = group_rebalance_timeout(g);
    if (g->state == GROUP_EMPTY) {
        int32_t delay = c->cfg.initial_rebalance_delay_ms;
        g->join_initial = true;
        g->initial_remaining = AL_MAX((int64_t)rt - delay, 0);
        g->join_deadline = now + delay;
    } else {
        g->join_initial = false;
        g->join_deadline = now + rt;
    }
    transition(g, GROUP_PREPARING_REBALANCE, now);
    log_info("group", "preparing to rebalance group %s (generation %d)", g->id, g->generation);
}

/* GroupMetadata.maybeElectNewJoinedLeader. */
static bool elect_joined_leader(struct group *g)
{
    struct member *l = member_get(g, g->leader);
    if (!l) return false;
    if (l->join_cb) return true;
    for (int i = 0; i < g->nmembers; i++) {
        if (g->members[i]->join_cb) {
            set_str(&g->leader, g->members[i]->id);
            return true;
        }
    }
    return false;
}

static void init_next_generation(struct group *g, int64_t now)
{
    g->generation++;
    if (g->nmembers > 0) {
        set_str(&g->protocol_name, select_protocol(g));
        compute_subscribed(g);
        transition(g, GROUP_COMPLETING_REBALANCE, now);
        for (int i = 0; i < g->nmembers; i++) g->members[i]->pending_sync = true;
    } else {
        set_str(&g->protocol_name, NULL);
        compute_subscribed(g);
        transition(g, GROUP_EMPTY, now);
    }
}

/* The member list the leader gets (metadata of the selected protocol); caller frees. */
static struct group_join_member *join_members(const struct group *g)
{
    struct group_join_member *all = xcalloc((size_t)g->nmembers, sizeof(*all));
    for (int i = 0; i < g->nmembers; i++) {
        const struct member *m = g->members[i];
        const struct member_proto *p = member_proto(m, g->protocol_name);
        all[i] = (struct group_join_member){m->id, m->instance_id, p ? p->meta : NULL,
                                            p ? p->len : 0};
    }
    return all;
}

/* Kafka's onCompleteJoin. */
static void complete_join(struct group_coordinator *c, struct group *g, int64_t now)
{
    g->join_deadline = NO_DEADLINE;
    for (int i = g->nmembers - 1; i >= 0; i--) {
        struct member *m = g->members[i];
        if (!m->join_cb && !m->instance_id) group_remove_member(g, i);
    }
    if (!elect_joined_leader(g) && g->nmembers > 0) {
        log_warn("group", "group %s could not complete rebalance: no member rejoined", g->id);
        g->join_initial = false;
        g->join_deadline = now + group_rebalance_timeout(g);
        return;
    }
    init_next_generation(g, now);
    if (g->state == GROUP_EMPTY) {
        store_group(c, g);
        return;
    }
    log_info("group", "stabilized group %s generation %d (%d members, protocol %s)", g->id,
             g->generation, g->nmembers, g->protocol_name ? g->protocol_name : "-");
    struct group_join_member *all = join_members(g);
    for (int i = 0; i < g->nmembers; i++) {
        struct member *m = g->members[i];
        bool leader = str_eq(m->id, g->leader);
        struct group_join_result r = {KAFKA_ERR_NONE, g->generation, g->protocol_type,
                                      g->protocol_name, g->leader, m->id, false,
                                      leader ? g->nmembers : 0, leader ? all : NULL};
        invoke_join(m, &r);
        m->deadline = now + m->session_ms;
        m->is_new = false;
    }
    free(all);
    g->sync_deadline = now + group_rebalance_timeout(g);
}

static bool all_members_joined(const struct group *g)
{
    return g->npending == 0 && count_awaiting_join(g) == g->nmembers;
}

static void try_complete_join(struct group_coordinator *c, struct group *g, int64_t now)
{
    if (g->state == GROUP_PREPARING_REBALANCE && !g->join_initial && all_members_joined(g))
        complete_join(c, g, now);
}

/* Kafka's removeMemberAndUpdateGroup. */
static void remove_member_and_update(struct group_coordinator *c, struct group *g, int i,
                                     int64_t now)
{
    struct member *m = g->members[i];
    invoke_join_error(m, "", KAFKA_ERR_UNKNOWN_MEMBER_ID);
    invoke_sync_error(m, KAFKA_ERR_UNKNOWN_MEMBER_ID);
    group_remove_member(g, i);
    switch (g->state) {
    case GROUP_STABLE:
    case GROUP_COMPLETING_REBALANCE: maybe_prepare_rebalance(c, g, now); break;
    case GROUP_PREPARING_REBALANCE: try_complete_join(c, g, now); break;
    default: break;
    }
}

/* One due timer of g, handled; returns false when nothing was due. */
static bool run_one_timer(struct group_coordinator *c, struct group *g, int64_t now)
{
    for (int i = 0; i < g->npending; i++) {
        if (g->pending[i].deadline <= now) {
            log_info("group", "pending member %s of group %s expired", g->pending[i].id, g->id);
            pending_remove(g, i);
            if (g->state == GROUP_PREPARING_REBALANCE) try_complete_join(c, g, now);
            return true;
        }
    }
    for (int i = 0; i < g->nmembers; i++) {
        struct member *m = g->members[i];
        if (m->deadline > now) continue;
        if (!m->is_new && (m->join_cb || m->sync_cb)) {
            m->deadline = NO_DEADLINE; /* awaiting a rebalance satisfies the heartbeat */
            return true;
        }
        log_info("group", "member %s of group %s failed (session timeout), removing it", m->id,
                 g->id);
        remove_member_and_update(c, g, i, now);
        return true;
    }
    if (g->state == GROUP_PREPARING_REBALANCE && g->join_deadline <= now) {
        if (g->join_initial && g->new_member_added && g->initial_remaining > 0) {
            int64_t d = AL_MIN((int64_t)c->cfg.initial_rebalance_delay_ms, g->initial_remaining);
            g->new_member_added = false;
            g->initial_remaining = AL_MAX(g->initial_remaining - d, 0);
            g->join_deadline = now + d;
        } else {
            complete_join(c, g, now);
        }
        return true;
    }
    if (g->sync_deadline <= now) {
        g->sync_deadline = NO_DEADLINE;
        if (g->state != GROUP_COMPLETING_REBALANCE && g->state != GROUP_STABLE) return true;
        bool removed = false;
        for (int i = g->nmembers - 1; i >= 0; i--) {
            if (!g->members[i]->pending_sync) continue;
            log_info("group", "member %s of group %s did not sync in time, removing it",
                     g->members[i]->id, g->id);
            invoke_join_error(g->members[i], "", KAFKA_ERR_UNKNOWN_MEMBER_ID);
            group_remove_member(g, i);
            removed = true;
        }
        if (removed) maybe_prepare_rebalance(c, g, now);
        return true;
    }
    return false;
}

static void run_timers(struct group_coordinator *c, struct group *g, int64_t now)
{
    /* each step removes a member or pending member, clears a deadline or advances the join
     * timer: bounded by the group's size plus the initial-delay extensions */
    int64_t bound = 4LL * (g->nmembers + g->npending) + 64;
    for (int64_t k = 0; k < bound && run_one_timer(c, g, now); k++) {
    }
}

/* ---- JoinGroup ---- */

static void make_member_id(struct group_coordinator *c, const char *client_id, char *out,
                           size_t cap)
{
    uint8_t u[16];
    for (int i = 0; i < 2; i++) {
        uint64_t z = (c->rng += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        memcpy(u + 8 * i, &z, 8);
    }
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    snprintf(out, cap,
             "%s-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             client_id ? client_id : "", u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8],
             u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static void join_error(group_join_cb cb, void *arg, const char *member_id, int16_t err)
{
    struct group_join_result r = {err, -1, NULL, NULL, "", member_id ? member_id : "", false, 0,
                                  NULL};
    cb(arg, &r);
}

static void member_update(struct member *m, const struct group_join_request *req,
                          group_join_cb cb, void *arg)
{
    member_set_protos(m, req->protocols, req->nprotocols);
    m->session_ms = req->session_timeout_ms;
    m->rebalance_ms = req->rebalance_timeout_ms;
    if (m->join_cb) invoke_join_error(m, m->id, KAFKA_ERR_REBALANCE_IN_PROGRESS);
    m->join_cb = cb;
    m->join_arg = arg;
}

static void add_member_and_rebalance(struct group_coordinator *c, struct group *g,
                                     const struct group_join_request *req, const char *member_id,
                                     int64_t now, group_join_cb cb, void *arg)
{
    struct member *m = xcalloc(1, sizeof(*m));
    m->id = xstrdup(member_id);
    m->instance_id = xstrdup(req->group_instance_id);
    m->client_id = xstrdup(req->client_id ? req->client_id : "");
    m->client_host = xstrdup(req->client_host ? req->client_host : "");
    m->protocol_type = xstrdup(req->protocol_type);
    m->is_new = true;
    member_update(m, req, cb, arg);
    if (g->state == GROUP_PREPARING_REBALANCE && g->generation == 0) g->new_member_added = true;
    group_add_member(g, m);
    m->deadline = now + c->cfg.new_member_join_timeout_ms;
    maybe_prepare_rebalance(c, g, now);
}

static void update_member_and_rebalance(struct group_coordinator *c, struct group *g,
                                        struct member *m, const struct group_join_request *req,
                                        int64_t now, group_join_cb cb, void *arg)
{
    member_update(m, req, cb, arg);
    maybe_prepare_rebalance(c, g, now);
}

/* Kafka's updateStaticMemberAndRebalance: a known group.instance.id rejoins with a new id. */
static void update_static_member(struct group_coordinator *c, struct group *g, struct member *m,
                                 const char *new_id, const struct group_join_request *req,
                                 int64_t now, group_join_cb cb, void *arg)
{
    char *old_id = m->id;
    char *old_leader = xstrdup(g->leader);
    /* fence whoever still waits with the old id */
    invoke_join_error(m, old_id, KAFKA_ERR_FENCED_INSTANCE_ID);
    invoke_sync_error(m, KAFKA_ERR_FENCED_INSTANCE_ID);
    m->id = xstrdup(new_id);
    if (str_eq(g->leader, old_id)) set_str(&g->leader, new_id);
    m->deadline = now + req->session_timeout_ms;
    /* keep the old protocols to see whether the selected protocol's metadata changed */
    const struct member_proto *op = g->protocol_name ? member_proto(m, g->protocol_name) : NULL;
    uint8_t *old_meta = op ? xmemdup(op->meta, op->len) : NULL;
    size_t old_len = op ? op->len : 0;
    bool had_old = op != NULL;
    member_update(m, req, cb, arg);
    switch (g->state) {
    case GROUP_STABLE: {
        const char *sel = select_protocol(g);
        const struct member_proto *np = sel ? member_proto(m, sel) : NULL;
        bool same = sel && str_eq(sel, g->protocol_name) && had_old && np &&
                    np->len == old_len && (!old_len || !memcmp(np->meta, old_meta, old_len));
        if (!same) {
            maybe_prepare_rebalance(c, g, now);
            break;
        }
        log_info("group", "static member %s of group %s rejoined as %s without a rebalance",
                 m->instance_id, g->id, new_id);
        if (store_group(c, g) < 0) {
            /* revert: the old id stays, the new join is refused */
            if (str_eq(g->leader, new_id)) set_str(&g->leader, old_id);
            free(m->id);
            m->id = old_id;
            old_id = NULL;
            invoke_join_error(m, "", KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
            break;
        }
        /* KIP-814: a static leader that rejoins (v9+) gets the members but must skip the
         * assignment; older clients are told the old leader id so nobody reassigns */
        bool lead = req->support_skip_assignment && str_eq(g->leader, m->id);
        struct group_join_member *all = lead ? join_members(g) : NULL;
        struct group_join_result r = {KAFKA_ERR_NONE, g->generation, g->protocol_type,
                                      g->protocol_name,
                                      req->support_skip_assignment
                                          ? (g->leader ? g->leader : "")
                                          : (old_leader ? old_leader : ""),
                                      m->id, lead, lead ? g->nmembers : 0, all};
        invoke_join(m, &r);
        free(all);
        break;
    }
    case GROUP_COMPLETING_REBALANCE: prepare_rebalance(c, g, now); break;
    case GROUP_PREPARING_REBALANCE: break; /* answered when the join completes */
    default: AL_PANIC("static member %s in group %s in state %s", new_id, g->id,
                      group_state_name(g->state));
    }
    free(old_id);
    free(old_leader);
    free(old_meta);
}

static void do_new_member_join(struct group_coordinator *c, struct group *g,
                               const struct group_join_request *req, int64_t now,
                               group_join_cb cb, void *arg)
{
    if (g->state == GROUP_DEAD) {
        join_error(cb, arg, req->member_id, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
        return;
    }
    if (!supports_protocols(g, req->protocol_type, req->protocols, req->nprotocols)) {
        join_error(cb, arg, req->member_id, KAFKA_ERR_INCONSISTENT_GROUP_PROTOCOL);
        return;
    }
    char new_id[512];
    make_member_id(c, req->client_id, new_id, sizeof(new_id));
    if (req->group_instance_id) {
        struct member *old = static_member(g, req->group_instance_id);
        if (!old)
            add_member_and_rebalance(c, g, req, new_id, now, cb, arg);
        else
            update_static_member(c, g, old, new_id, req, now, cb, arg);
        return;
    }
    if (req->require_known_member_id) {
        if (g->npending == g->cap_pending) {
            g->cap_pending = g->cap_pending ? g->cap_pending * 2 : 4;
            g->pending = xrealloc(g->pending, sizeof(*g->pending) * (size_t)g->cap_pending);
        }
        g->pending[g->npending++] =
            (struct pending_member){xstrdup(new_id), now + req->session_timeout_ms};
        join_error(cb, arg, new_id, KAFKA_ERR_MEMBER_ID_REQUIRED);
        return;
    }
    add_member_and_rebalance(c, g, req, new_id, now, cb, arg);
}

static void do_current_member_join(struct group_coordinator *c, struct group *g,
                                   const struct group_join_request *req, int64_t now,
                                   group_join_cb cb, void *arg)
{
    const char *id = req->member_id;
    if (g->state == GROUP_DEAD) {
        join_error(cb, arg, id, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
        return;
    }
    if (!supports_protocols(g, req->protocol_type, req->protocols, req->nprotocols)) {
        join_error(cb, arg, id, KAFKA_ERR_INCONSISTENT_GROUP_PROTOCOL);
        return;
    }
    int pi = pending_index(g, id);
    if (pi >= 0) {
        if (req->group_instance_id) { /* a pending member is never static */
            join_error(cb, arg, id, KAFKA_ERR_UNKNOWN_MEMBER_ID);
            return;
        }
        pending_remove(g, pi);
        add_member_and_rebalance(c, g, req, id, now, cb, arg);
        return;
    }
    int16_t verr = validate_current_member(g, id, req->group_instance_id);
    if (verr != KAFKA_ERR_NONE) {
        join_error(cb, arg, id, verr);
        return;
    }
    struct member *m = member_get(g, id);
    switch (g->state) {
    case GROUP_PREPARING_REBALANCE:
        update_member_and_rebalance(c, g, m, req, now, cb, arg);
        break;
    case GROUP_COMPLETING_REBALANCE:
        if (member_matches(m, req->protocols, req->nprotocols)) {
            /* it missed the join response: return the current generation again */
            bool leader = str_eq(id, g->leader);
            struct group_join_member *all = leader ? join_members(g) : NULL;
            struct group_join_result r = {KAFKA_ERR_NONE, g->generation, g->protocol_type,
                                          g->protocol_name, g->leader, id, false,
                                          leader ? g->nmembers : 0, all};
            cb(arg, &r);
            free(all);
        } else {
            update_member_and_rebalance(c, g, m, req, now, cb, arg);
        }
        break;
    case GROUP_STABLE:
        if (str_eq(id, g->leader) || !member_matches(m, req->protocols, req->nprotocols)) {
            /* the leader rejoining (e.g. topic metadata changed) or new metadata: rebalance */
            update_member_and_rebalance(c, g, m, req, now, cb, arg);
        } else {
            struct group_join_result r = {KAFKA_ERR_NONE, g->generation, g->protocol_type,
                                          g->protocol_name, g->leader, id, false, 0, NULL};
            cb(arg, &r);
        }
        break;
    default:
        join_error(cb, arg, id, KAFKA_ERR_UNKNOWN_MEMBER_ID);
        break;
    }
}

static bool accept_joining_member(const struct group_coordinator *c, const struct group *g,
                                  const char *member_id)
{
    const struct member *m = member_get(g, member_id);
    switch (g->state) {
    case GROUP_EMPTY:
    case GROUP_DEAD: return true;
    case GROUP_PREPARING_REBALANCE:
        return (m && m->join_cb) || count_awaiting_join(g) < c->cfg.max_size;
    default: return m || g->nmembers < c->cfg.max_size;
    }
}

void group_join(struct group_coordinator *c, const struct group_join_request *req, int64_t now,
                group_join_cb cb, void *arg)
{
    AL_ASSERT(cb && req->member_id);
    if (!req->group_id || !req->group_id[0]) {
        join_error(cb, arg, req->member_id, KAFKA_ERR_INVALID_GROUP_ID);
        return;
    }
    if (req->session_timeout_ms < c->cfg.min_session_timeout_ms ||
        req->session_timeout_ms > c->cfg.max_session_timeout_ms) {
        join_error(cb, arg, req->member_id, KAFKA_ERR_INVALID_SESSION_TIMEOUT);
        return;
    }
    bool unknown = req->member_id[0] == 0;
    struct group *g = group_get(c, req->group_id);
    if (!g) {
        if (!unknown) {
            join_error(cb, arg, req->member_id, KAFKA_ERR_UNKNOWN_MEMBER_ID);
            return;
        }
        g = group_create(c, req->group_id, now);
        if (!g) {
            join_error(cb, arg, req->member_id, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
            return;
        }
    }
    run_timers(c, g, now);
    if (!accept_joining_member(c, g, req->member_id)) {
        /* as Kafka: a known member that did not rejoin in time over the limit is dropped */
        int i = member_index(g, req->member_id);
        if (i >= 0) remove_member_and_update(c, g, i, now);
        join_error(cb, arg, "", KAFKA_ERR_GROUP_MAX_SIZE_REACHED);
        run_timers(c, g, now);
        return;
    }
    if (unknown)
        do_new_member_join(c, g, req, now, cb, arg);
    else
        do_current_member_join(c, g, req, now, cb, arg);
    try_complete_join(c, g, now);
    run_timers(c, g, now);
}

/* ---- SyncGroup ---- */

static void sync_error(group_sync_cb cb, void *arg, int16_t err)
{
    struct group_sync_result r = {err, NULL, NULL, NULL, 0};
    cb(arg, &r);
}

static void complete_sync_as_leader(struct group_coordinator *c, struct group *g,
                                    const struct group_sync_request *req, int64_t now)
{
    for (int i = 0; i < g->nmembers; i++) {
        struct member *m = g->members[i];
        free(m->assignment);
        m->assignment = NULL;
        m->assignment_len = 0;
        for (int j = 0; j < req->nassignments; j++) {
            const struct group_assignment *a = &req->assignments[j];
            if (a->member_id && !strcmp(a->member_id, m->id)) {
                free(m->assignment);
                m->assignment = xmemdup(a->data, a->len);
                m->assignment_len = a->len;
            }
        }
    }
    int gen = g->generation;
    int rc = store_group(c, g);
    if (g->state != GROUP_COMPLETING_REBALANCE || gen != g->generation) return;
    if (rc < 0) {
        propagate_assignment_error(g, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE, now);
        maybe_prepare_rebalance(c, g, now);
        return;
    }
    for (int i = 0; i < g->nmembers; i++) {
        struct member *m = g->members[i];
        if (!m->sync_cb) continue;
        struct group_sync_result r = {KAFKA_ERR_NONE, g->protocol_type, g->protocol_name,
                                      m->assignment, m->assignment_len};
        invoke_sync(m, &r);
        m->deadline = now + m->session_ms;
    }
    transition(g, GROUP_STABLE, now);
}

void group_sync(struct group_coordinator *c, const struct group_sync_request *req, int64_t now,
                group_sync_cb cb, void *arg)
{
    AL_ASSERT(cb);
    if (!req->group_id || !req->group_id[0]) {
        sync_error(cb, arg, KAFKA_ERR_INVALID_GROUP_ID);
        return;
    }
    struct group *g = group_get(c, req->group_id);
    if (!g) {
        sync_error(cb, arg, KAFKA_ERR_UNKNOWN_MEMBER_ID);
        return;
    }
    run_timers(c, g, now);
    struct member *m = member_get(g, req->member_id);
    int16_t verr = g->state == GROUP_DEAD
                       ? KAFKA_ERR_COORDINATOR_NOT_AVAILABLE
                       : validate_current_member(g, req->member_id, req->group_instance_id);
    if (verr != KAFKA_ERR_NONE) {
        sync_error(cb, arg, verr);
    } else if (req->generation_id != g->generation) {
        sync_error(cb, arg, KAFKA_ERR_ILLEGAL_GENERATION);
    } else if ((req->protocol_type && !str_eq(req->protocol_type, g->protocol_type)) ||
               (req->protocol_name && !str_eq(req->protocol_name, g->protocol_name))) {
        sync_error(cb, arg, KAFKA_ERR_INCONSISTENT_GROUP_PROTOCOL);
    } else {
        switch (g->state) {
        case GROUP_EMPTY: sync_error(cb, arg, KAFKA_ERR_UNKNOWN_MEMBER_ID); break;
        case GROUP_PREPARING_REBALANCE:
            sync_error(cb, arg, KAFKA_ERR_REBALANCE_IN_PROGRESS);
            break;
        case GROUP_COMPLETING_REBALANCE:
            if (m->sync_cb) invoke_sync_error(m, KAFKA_ERR_REBALANCE_IN_PROGRESS);
            m->sync_cb = cb;
            m->sync_arg = arg;
            m->pending_sync = false;
            if (str_eq(m->id, g->leader)) complete_sync_as_leader(c, g, req, now);
            break;
        case GROUP_STABLE: {
            m->pending_sync = false;
            struct group_sync_result r = {KAFKA_ERR_NONE, g->protocol_type, g->protocol_name,
                                          m->assignment, m->assignment_len};
            cb(arg, &r);
            m->deadline = now + m->session_ms;
            break;
        }
        default: AL_PANIC("group %s in state %d", g->id, g->state);
        }
    }
    run_timers(c, g, now);
}

/* ---- Heartbeat, LeaveGroup ---- */

int16_t group_heartbeat(struct group_coordinator *c, const char *group_id, const char *member_id,
                        const char *group_instance_id, int32_t generation_id, int64_t now)
{
    if (!group_id || !group_id[0]) return KAFKA_ERR_INVALID_GROUP_ID;
    struct group *g = group_get(c, group_id);
    if (!g) return KAFKA_ERR_UNKNOWN_MEMBER_ID;
    run_timers(c, g, now);
    struct member *m = member_get(g, member_id);
    int16_t err = g->state == GROUP_DEAD
                      ? KAFKA_ERR_COORDINATOR_NOT_AVAILABLE
                      : validate_current_member(g, member_id, group_instance_id);
    if (err != KAFKA_ERR_NONE) return err;
    if (generation_id != g->generation) {
        err = KAFKA_ERR_ILLEGAL_GENERATION;
    } else if (g->state == GROUP_EMPTY) {
        err = KAFKA_ERR_UNKNOWN_MEMBER_ID;
    } else {
        m->deadline = now + m->session_ms;
        err = g->state == GROUP_PREPARING_REBALANCE ? KAFKA_ERR_REBALANCE_IN_PROGRESS
                                                    : KAFKA_ERR_NONE;
    }
    return err;
}

int16_t group_leave(struct group_coordinator *c, const char *group_id,
                    struct group_leave_member *members, int n, int64_t now)
{
    if (!group_id || !group_id[0]) {
        for (int i = 0; i < n; i++) members[i].error = KAFKA_ERR_INVALID_GROUP_ID;
        return KAFKA_ERR_INVALID_GROUP_ID;
    }
    struct group *g = group_get(c, group_id);
    if (!g) {
        for (int i = 0; i < n; i++) members[i].error = KAFKA_ERR_UNKNOWN_MEMBER_ID;
        return KAFKA_ERR_NONE;
    }
    run_timers(c, g, now);
    if (g->state == GROUP_DEAD) {
        for (int i = 0; i < n; i++) members[i].error = KAFKA_ERR_COORDINATOR_NOT_AVAILABLE;
        return KAFKA_ERR_COORDINATOR_NOT_AVAILABLE;
    }
    for (int i = 0; i < n; i++) {
        struct group_leave_member *lm = &members[i];
        const char *id = lm->member_id ? lm->member_id : "";
        if (!id[0]) {
            struct member *sm = static_member(g, lm->group_instance_id);
            if (sm) {
                log_info("group", "static member %s left group %s", sm->instance_id, g->id);
                remove_member_and_update(c, g, member_index(g, sm->id), now);
                lm->error = KAFKA_ERR_NONE;
            } else {
                lm->error = KAFKA_ERR_UNKNOWN_MEMBER_ID;
            }
            continue;
        }
        int pi = pending_index(g, id);
        if (pi >= 0) {
            pending_remove(g, pi);
            if (g->state == GROUP_PREPARING_REBALANCE) try_complete_join(c, g, now);
            lm->error = KAFKA_ERR_NONE;
        } else {
            lm->error = validate_current_member(g, id, lm->group_instance_id);
            if (lm->error == KAFKA_ERR_NONE) {
                log_info("group", "member %s left group %s", id, g->id);
                remove_member_and_update(c, g, member_index(g, id), now);
            }
        }
    }
    run_timers(c, g, now);
    return KAFKA_ERR_NONE;
}

/* ---- offsets ---- */

static uint64_t offset_hash(const char *topic, int32_t partition)
{
    return coord_hash_bytes(coord_hash_str(0, topic), &partition, sizeof(partition));
}

static struct offset_entry *offset_get(const struct group *g, const char *topic, int32_t part)
{
    uint64_t h = offset_hash(topic, part);
    for (struct coord_hnode *n = coord_hmap_bucket(&g->offsets, h); n; n = n->next) {
        struct offset_entry *o = AL_CONTAINER_OF(n, struct offset_entry, node);
        if (n->hash == h && o->partition == part && !strcmp(o->topic, topic)) return o;
    }
    return NULL;
}

static void offset_put(struct group *g, const char *topic, int32_t part, int64_t offset,
                       int32_t leader_epoch, const char *metadata, int64_t commit_ts,
                       int64_t expire_ts)
{
    struct offset_entry *o = offset_get(g, topic, part);
    if (!o) {
        o = xcalloc(1, sizeof(*o));
        o->topic = xstrdup(topic);
        o->partition = part;
        if (coord_hmap_insert(&g->offsets, &o->node, offset_hash(topic, part)) < 0)
            AL_PANIC("group coordinator: out of memory");
    }
    o->offset = offset;
    o->leader_epoch = leader_epoch;
    set_str(&o->metadata, metadata ? metadata : "");
    o->commit_ts = commit_ts;
    o->expire_ts = expire_ts;
}

static void offset_remove(struct group *g, struct offset_entry *o)
{
    coord_hmap_remove(&g->offsets, &o->node);
    offset_free(o);
}

/* A growable list of records to emit (key/value buffers owned here). */
struct rec_list {
    struct group_record *r;
    int n, cap;
};

static void rec_add(struct rec_list *l, uint8_t *key, size_t klen, uint8_t *val, size_t vlen)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->r = xrealloc(l->r, sizeof(*l->r) * (size_t)l->cap);
    }
    l->r[l->n++] = (struct group_record){key, klen, val, vlen};
}

static void rec_free(struct rec_list *l)
{
    for (int i = 0; i < l->n; i++) {
        free((void *)l->r[i].key);
        free((void *)l->r[i].value);
    }
    free(l->r);
    l->r = NULL;
    l->n = l->cap = 0;
}

/* Adds an OffsetCommit record: a tombstone when tomb, else value v3, or v1 when expire > 0. */
static int rec_add_offset(struct rec_list *l, const char *group, const char *topic, int32_t part,
                          bool tomb, int64_t offset, int32_t epoch, const char *meta, int64_t ts,
                          int64_t expire)
{
    int klen = group_offset_key_encode(NULL, 0, group, topic, part);
    if (klen < 0) return klen;
    uint8_t *key = xcalloc(1, (size_t)klen);
    group_offset_key_encode(key, (size_t)klen, group, topic, part);
    uint8_t *val = NULL;
    int vlen = 0;
    if (!tomb) {
        vlen = expire > 0 ? group_offset_value_encode_v1(NULL, 0, offset, meta, ts, expire)
                          : group_offset_value_encode(NULL, 0, offset, epoch, meta, ts);
        if (vlen < 0) {
            free(key);
            return vlen;
        }
        val = xcalloc(1, (size_t)vlen);
        if (expire > 0)
            group_offset_value_encode_v1(val, (size_t)vlen, offset, meta, ts, expire);
        else
            group_offset_value_encode(val, (size_t)vlen, offset, epoch, meta, ts);
    }
    rec_add(l, key, (size_t)klen, val, (size_t)vlen);
    return 0;
}

static int rec_add_group_tombstone(struct rec_list *l, const char *group)
{
    int klen = group_metadata_key_encode(NULL, 0, group);
    if (klen < 0) return klen;
    uint8_t *key = xcalloc(1, (size_t)klen);
    group_metadata_key_encode(key, (size_t)klen, group);
    rec_add(l, key, (size_t)klen, NULL, 0);
    return 0;
}

static int rec_emit(struct group_coordinator *c, const char *group, struct rec_list *l)
{
    if (!c->emit || l->n == 0) return 0;
    int rc = c->emit(c->emit_ctx, group, l->r, l->n);
    if (rc < 0) log_warn("group", "appending %d records of group %s failed: %s", l->n, group,
                         al_strerror(rc));
    return rc;
}

static void store_offsets(struct group_coordinator *c, struct group *g,
                          struct group_offset_commit *parts, int n, int64_t now)
{
    struct rec_list l = {0};
    int rc = 0;
    for (int i = 0; i < n; i++) {
        struct group_offset_commit *p = &parts[i];
        const char *meta = p->metadata ? p->metadata : "";
        if (strlen(meta) > (size_t)c->cfg.offset_metadata_max_bytes) {
            p->error = KAFKA_ERR_OFFSET_METADATA_TOO_LARGE;
            continue;
        }
        p->error = KAFKA_ERR_NONE;
        rc = rec_add_offset(&l, g->id, p->topic, p->partition, false, p->offset, p->leader_epoch,
                            meta, now, p->expire_ts);
        if (rc < 0) p->error = KAFKA_ERR_OFFSET_METADATA_TOO_LARGE; /* a string over 32 KiB */
    }
    rc = rec_emit(c, g->id, &l);
    for (int i = 0; i < n; i++) {
        struct group_offset_commit *p = &parts[i];
        if (p->error != KAFKA_ERR_NONE) continue;
        if (rc < 0) {
            p->error = KAFKA_ERR_COORDINATOR_NOT_AVAILABLE;
            continue;
        }
        /* a v1 value has no leader epoch: keep what a reload would see */
        offset_put(g, p->topic, p->partition, p->offset, p->expire_ts > 0 ? -1 : p->leader_epoch,
                   p->metadata, now, p->expire_ts > 0 ? p->expire_ts : -1);
    }
    rec_free(&l);
}

static int16_t commit_all(struct group_offset_commit *parts, int n, int16_t err)
{
    for (int i = 0; i < n; i++) parts[i].error = err;
    return err;
}

int16_t group_commit_offsets(struct group_coordinator *c, const char *group_id,
                             const char *member_id, const char *group_instance_id,
                             int32_t generation_id, struct group_offset_commit *parts, int n,
                             int64_t now)
{
    if (!group_id) return commit_all(parts, n, KAFKA_ERR_INVALID_GROUP_ID);
    if (!member_id) member_id = "";
    struct group *g = group_get(c, group_id);
    if (!g) {
        if (generation_id >= 0) return commit_all(parts, n, KAFKA_ERR_ILLEGAL_GENERATION);
        g = group_create(c, group_id, now);
        if (!g) return commit_all(parts, n, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
    }
    run_timers(c, g, now);
    struct member *m = member_get(g, member_id);
    if (g->state == GROUP_DEAD)
        return commit_all(parts, n, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
    if (generation_id < 0 && g->state == GROUP_EMPTY) { /* admin or a groupless consumer */
        store_offsets(c, g, parts, n, now);
        return KAFKA_ERR_NONE;
    }
    int16_t verr = validate_current_member(g, member_id, group_instance_id);
    if (verr != KAFKA_ERR_NONE) return commit_all(parts, n, verr);
    if (generation_id != g->generation) return commit_all(parts, n, KAFKA_ERR_ILLEGAL_GENERATION);
    switch (g->state) {
    case GROUP_STABLE:
    case GROUP_PREPARING_REBALANCE:
        m->deadline = now + m->session_ms;
        store_offsets(c, g, parts, n, now);
        return KAFKA_ERR_NONE;
    case GROUP_COMPLETING_REBALANCE:
        return commit_all(parts, n, KAFKA_ERR_REBALANCE_IN_PROGRESS);
    default: AL_PANIC("group %s member %s in state %d", g->id, member_id, g->state);
    }
}

int16_t group_fetch_offsets(struct group_coordinator *c, const char *group_id,
                            struct group_offset_fetch *parts, int n)
{
    if (!group_id) return KAFKA_ERR_INVALID_GROUP_ID;
    struct group *g = group_get(c, group_id);
    for (int i = 0; i < n; i++) {
        struct group_offset_fetch *p = &parts[i];
        const struct offset_entry *o = g ? offset_get(g, p->topic, p->partition) : NULL;
        p->offset = o ? o->offset : -1;
        p->leader_epoch = o ? o->leader_epoch : -1;
        p->metadata = o ? o->metadata : "";
        p->error = KAFKA_ERR_NONE;
    }
    return KAFKA_ERR_NONE;
}

static int offset_cmp(const void *a, const void *b)
{
    const struct offset_entry *x = *(const struct offset_entry *const *)a;
    const struct offset_entry *y = *(const struct offset_entry *const *)b;
    int r = strcmp(x->topic, y->topic);
    if (r) return r;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

/* The group's offsets sorted by (topic, partition), in a malloc'd array of *n. */
static struct offset_entry **offsets_sorted(const struct group *g, size_t *n)
{
    *n = g->offsets.count;
    struct offset_entry **v = xcalloc(*n, sizeof(*v));
    size_t b, i = 0;
    for (struct coord_hnode *x = coord_hmap_first(&g->offsets, &b); x;
         x = coord_hmap_next(&g->offsets, x, &b))
        v[i++] = AL_CONTAINER_OF(x, struct offset_entry, node);
    al_sort(v, *n, sizeof(*v), offset_cmp);
    return v;
}

int16_t group_fetch_all_offsets(struct group_coordinator *c, const char *group_id,
                                group_offset_visit visit, void *arg)
{
    if (!group_id) return KAFKA_ERR_INVALID_GROUP_ID;
    struct group *g = group_get(c, group_id);
    if (!g) return KAFKA_ERR_NONE;
    size_t n;
    struct offset_entry **v = offsets_sorted(g, &n);
    for (size_t i = 0; i < n; i++)
        visit(arg, v[i]->topic, v[i]->partition, v[i]->offset, v[i]->leader_epoch,
              v[i]->metadata);
    free(v);
    return KAFKA_ERR_NONE;
}

int16_t group_delete_offsets(struct group_coordinator *c, const char *group_id,
                             struct group_offset_delete *parts, int n, int64_t now)
{
    if (!group_id || !group_id[0]) return KAFKA_ERR_INVALID_GROUP_ID;
    struct group *g = group_get(c, group_id);
    if (!g || g->state == GROUP_DEAD) return KAFKA_ERR_GROUP_ID_NOT_FOUND;
    run_timers(c, g, now);
    bool consumer = str_eq(g->protocol_type, "consumer");
    if (g->state != GROUP_EMPTY && !consumer) return KAFKA_ERR_NON_EMPTY_GROUP;
    struct rec_list l = {0};
    for (int i = 0; i < n; i++) {
        struct group_offset_delete *p = &parts[i];
        if (g->state != GROUP_EMPTY && subscribed_to(g, p->topic)) {
            p->error = KAFKA_ERR_GROUP_SUBSCRIBED_TO_TOPIC;
            continue;
        }
        p->error = KAFKA_ERR_NONE;
        if (offset_get(g, p->topic, p->partition))
            rec_add_offset(&l, g->id, p->topic, p->partition, true, 0, 0, NULL, 0, 0);
    }
    if (rec_emit(c, g->id, &l) < 0) {
        rec_free(&l);
        return KAFKA_ERR_COORDINATOR_NOT_AVAILABLE;
    }
    rec_free(&l);
    for (int i = 0; i < n; i++) {
        if (parts[i].error != KAFKA_ERR_NONE) continue;
        struct offset_entry *o = offset_get(g, parts[i].topic, parts[i].partition);
        if (o) offset_remove(g, o);
    }
    return KAFKA_ERR_NONE;
}

/* ---- admin ---- */

void group_describe(struct group_coordinator *c, const char *group_id, int16_t api_version,
                    void (*cb)(void *arg, const struct group_description *d), void *arg)
{
    struct group_description d = {KAFKA_ERR_NONE, group_id ? group_id : "", "Dead", "", "", 0,
                                  NULL};
    struct group *g = group_id ? group_get(c, group_id) : NULL;
    if (!group_id) d.error = KAFKA_ERR_INVALID_GROUP_ID;
    else if ((!g || g->state == GROUP_DEAD) && api_version >= 6)
        d.error = KAFKA_ERR_GROUP_ID_NOT_FOUND;
    if (!g || g->state == GROUP_DEAD) {
        cb(arg, &d);
        return;
    }
    bool stable = g->state == GROUP_STABLE;
    struct group_member_desc *md = xcalloc((size_t)g->nmembers, sizeof(*md));
    for (int i = 0; i < g->nmembers; i++) {
        const struct member *m = g->members[i];
        const struct member_proto *p =
            stable && g->protocol_name ? member_proto(m, g->protocol_name) : NULL;
        md[i] = (struct group_member_desc){m->id, m->instance_id, m->client_id, m->client_host,
                                           p ? p->meta : NULL, p ? p->len : 0,
                                           stable ? m->assignment : NULL,
                                           stable ? m->assignment_len : 0};
    }
    d.state = group_state_name(g->state);
    d.protocol_type = g->protocol_type ? g->protocol_type : "";
    d.protocol = stable && g->protocol_name ? g->protocol_name : "";
    d.nmembers = g->nmembers;
    d.members = md;
    cb(arg, &d);
    free(md);
}

void group_list(struct group_coordinator *c, const char *const *states, int nstates,
                void (*visit)(void *arg, const char *group_id, const char *protocol_type,
                              const char *state),
                void *arg)
{
    size_t b;
    for (struct coord_hnode *n = coord_hmap_first(&c->groups, &b); n;
         n = coord_hmap_next(&c->groups, n, &b)) {
        const struct group *g = AL_CONTAINER_OF(n, struct group, node);
        if (g->state == GROUP_DEAD) continue;
        const char *st = group_state_name(g->state);
        bool match = nstates == 0;
        for (int i = 0; i < nstates && !match; i++)
            if (states[i] && !strcasecmp(states[i], st)) match = true;
        if (match) visit(arg, g->id, g->protocol_type ? g->protocol_type : "", st);
    }
}

/* Tombstones for every offset of g and (if it ever had a generation) its metadata. */
static void rec_add_group_delete(struct rec_list *l, const struct group *g)
{
    size_t n;
    struct offset_entry **v = offsets_sorted(g, &n);
    for (size_t i = 0; i < n; i++)
        rec_add_offset(l, g->id, v[i]->topic, v[i]->partition, true, 0, 0, NULL, 0, 0);
    free(v);
    if (g->generation > 0) rec_add_group_tombstone(l, g->id);
}

int16_t group_delete(struct group_coordinator *c, const char *group_id, int64_t now)
{
    if (!group_id) return KAFKA_ERR_INVALID_GROUP_ID;
    struct group *g = group_get(c, group_id);
    if (!g || g->state == GROUP_DEAD) return KAFKA_ERR_GROUP_ID_NOT_FOUND;
    run_timers(c, g, now);
    if (g->state != GROUP_EMPTY) return KAFKA_ERR_NON_EMPTY_GROUP;
    struct rec_list l = {0};
    rec_add_group_delete(&l, g);
    int rc = rec_emit(c, g->id, &l);
    rec_free(&l);
    if (rc < 0) return KAFKA_ERR_COORDINATOR_NOT_AVAILABLE;
    log_info("group", "deleted group %s", g->id);
    group_destroy(c, g, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
    return KAFKA_ERR_NONE;
}

/* ---- offset expiry ---- */

/* Kafka's GroupMetadata.removeExpiredOffsets + cleanupGroupMetadata for one group. Returns true
 * if the group was removed. */
static bool expire_group_offsets(struct group_coordinator *c, struct group *g, int64_t now)
{
    int64_t ret = c->cfg.offsets_retention_ms;
    bool empty_typed = g->protocol_type && g->state == GROUP_EMPTY;
    bool consumer_stable = str_eq(g->protocol_type, "consumer") && g->state == GROUP_STABLE &&
                           g->subscribed_known;
    bool simple = !g->protocol_type;
    struct rec_list l = {0};
    size_t n;
    struct offset_entry **v = offsets_sorted(g, &n);
    bool *expired = xcalloc(n, sizeof(bool));
    for (size_t i = 0; i < n; i++) {
        const struct offset_entry *o = v[i];
        int64_t base;
        if (empty_typed) base = g->state_ts >= 0 ? g->state_ts : o->commit_ts;
        else if (consumer_stable && !subscribed_to(g, o->topic)) base = o->commit_ts;
        else if (simple) base = o->commit_ts;
        else continue;
        bool exp = o->expire_ts > 0 ? now >= o->expire_ts : now - base >= ret;
        if (!exp) continue;
        expired[i] = true;
        rec_add_offset(&l, g->id, o->topic, o->partition, true, 0, 0, NULL, 0, 0);
    }
    bool remove_group = g->state == GROUP_EMPTY && (size_t)l.n == n;
    if (remove_group && g->generation > 0) rec_add_group_tombstone(&l, g->id);
    if (l.n && rec_emit(c, g->id, &l) < 0) {
        remove_group = false;
    } else {
        for (size_t i = 0; i < n; i++)
            if (expired[i]) offset_remove(g, v[i]);
    }
    if (l.n) log_info("group", "expired %zu offsets of group %s", n - g->offsets.count, g->id);
    free(expired);
    free(v);
    rec_free(&l);
    if (remove_group) {
        transition(g, GROUP_DEAD, now);
        group_destroy(c, g, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
        return true;
    }
    return false;
}

/* ---- coordinator ---- */

void group_coordinator_init(struct group_coordinator *c, const struct group_config *cfg,
                            group_emit_fn emit, void *emit_ctx, uint64_t seed)
{
    memset(c, 0, sizeof(*c));
    c->cfg = *cfg;
    c->emit = emit;
    c->emit_ctx = emit_ctx;
    c->rng = seed;
    c->next_cleanup_ms = INT64_MIN;
}

void group_coordinator_destroy(struct group_coordinator *c)
{
    size_t b;
    struct coord_hnode *n = coord_hmap_first(&c->groups, &b);
    while (n) {
        struct coord_hnode *next = coord_hmap_next(&c->groups, n, &b);
        group_destroy(c, AL_CONTAINER_OF(n, struct group, node),
                      KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
        n = next;
    }
    coord_hmap_free(&c->groups);
}

void group_coordinator_tick(struct group_coordinator *c, int64_t now)
{
    if (c->loading) return;
    bool cleanup = now >= c->next_cleanup_ms;
    if (c->next_cleanup_ms == INT64_MIN) cleanup = false; /* first tick: just arm the timer */
    if (c->next_cleanup_ms == INT64_MIN || cleanup)
        c->next_cleanup_ms = now + c->cfg.offsets_retention_check_interval_ms;
    size_t b;
    struct coord_hnode *n = coord_hmap_first(&c->groups, &b);
    while (n) {
        struct coord_hnode *next = coord_hmap_next(&c->groups, n, &b);
        struct group *g = AL_CONTAINER_OF(n, struct group, node);
        run_timers(c, g, now);
        if (cleanup) expire_group_offsets(c, g, now);
        n = next;
    }
}

int64_t group_coordinator_next_deadline(const struct group_coordinator *c)
{
    int64_t t = c->next_cleanup_ms == INT64_MIN ? NO_DEADLINE : c->next_cleanup_ms;
    size_t b;
    for (struct coord_hnode *n = coord_hmap_first(&c->groups, &b); n;
         n = coord_hmap_next(&c->groups, n, &b)) {
        const struct group *g = AL_CONTAINER_OF(n, struct group, node);
        if (g->state == GROUP_PREPARING_REBALANCE) t = AL_MIN(t, g->join_deadline);
        t = AL_MIN(t, g->sync_deadline);
        for (int i = 0; i < g->nmembers; i++) t = AL_MIN(t, g->members[i]->deadline);
        for (int i = 0; i < g->npending; i++) t = AL_MIN(t, g->pending[i].deadline);
    }
    return t;
}

void group_coordinator_forget(struct group_coordinator *c, void *arg)
{
    size_t b;
    for (struct coord_hnode *n = coord_hmap_first(&c->groups, &b); n;
         n = coord_hmap_next(&c->groups, n, &b)) {
        struct group *g = AL_CONTAINER_OF(n, struct group, node);
        for (int i = 0; i < g->nmembers; i++) {
            struct member *m = g->members[i];
            if (m->join_cb && m->join_arg == arg) m->join_cb = noop_join_cb, m->join_arg = NULL;
            if (m->sync_cb && m->sync_arg == arg) m->sync_cb = noop_sync_cb, m->sync_arg = NULL;
        }
    }
}

/* ---- loading ---- */

static void load_group_meta(struct group *g, const struct group_record_meta *meta)
{
    group_free_members(g);
    free(g->protocol_type);
    g->protocol_type = meta->protocol_type.len > 0 ? xstrdup_cs(meta->protocol_type) : NULL;
    free(g->protocol_name);
    g->protocol_name = xstrdup_cs(meta->protocol);
    free(g->leader);
    g->leader = xstrdup_cs(meta->leader);
    g->generation = meta->generation;
    g->state_ts = meta->state_ts;
    for (int32_t i = 0; i < meta->nmembers; i++) {
        const struct group_record_member *rm = &meta->members[i];
        struct member *m = xcalloc(1, sizeof(*m));
        m->id = xstrdup_cs(rm->member_id);
        m->instance_id = xstrdup_cs(rm->group_instance_id);
        m->client_id = xstrdup_cs(rm->client_id);
        m->client_host = xstrdup_cs(rm->client_host);
        m->protocol_type = xstrdup(g->protocol_type);
        m->session_ms = rm->session_timeout_ms;
        m->rebalance_ms = rm->rebalance_timeout_ms;
        if (g->protocol_name) {
            struct group_protocol p = {g->protocol_name, rm->subscription,
                                       rm->subscription_len > 0 ? (size_t)rm->subscription_len
                                                                : 0};
            member_set_protos(m, &p, 1);
        }
        if (rm->assignment_len > 0) {
            m->assignment = xmemdup(rm->assignment, (size_t)rm->assignment_len);
            m->assignment_len = (size_t)rm->assignment_len;
        }
        m->deadline = NO_DEADLINE;
        if (g->nmembers == g->cap_members) {
            g->cap_members = g->cap_members ? g->cap_members * 2 : 4;
            g->members = xrealloc(g->members, sizeof(*g->members) * (size_t)g->cap_members);
        }
        g->members[g->nmembers++] = m;
    }
    g->has_meta = true;
}

int group_coordinator_load(struct group_coordinator *c, const uint8_t *key, size_t key_len,
                           const uint8_t *value, size_t value_len, int64_t now)
{
    c->loading = true;
    struct group_record_key k;
    int rc = group_key_decode(key, key_len, &k);
    if (rc < 0) return rc;
    if (k.kind == GROUP_KEY_KIND_OTHER) return 0;
    char *gid = xstrdup_cs(k.group);
    struct group *g = group_get(c, gid);
    if (!g && !value) goto out; /* a tombstone for something we do not have */
    if (!g) {
        g = group_create(c, gid, now);
        if (!g) {
            rc = AL_EFULL;
            goto out;
        }
        g->state_ts = -1;
    }
    g->loaded = true;
    if (k.kind == GROUP_KEY_KIND_OFFSET) {
        char *topic = xstrdup_cs(k.topic);
        if (!value) {
            struct offset_entry *o = offset_get(g, topic, k.partition);
            if (o) offset_remove(g, o);
        } else {
            struct group_record_offset ov;
            rc = group_offset_value_decode(value, value_len, &ov);
            if (rc == 0) {
                char *meta = ov.metadata.len >= 0 ? xstrdup_cs(ov.metadata) : xstrdup("");
                offset_put(g, topic, k.partition, ov.offset, ov.leader_epoch, meta, ov.commit_ts,
                           ov.expire_ts);
                free(meta);
            }
        }
        free(topic);
        goto out;
    }
    if (!value) {
        /* group tombstone: forget the metadata; offsets may keep it alive as a simple group */
        group_free_members(g);
        set_str(&g->protocol_type, NULL);
        set_str(&g->protocol_name, NULL);
        set_str(&g->leader, NULL);
        g->generation = 0;
        g->has_meta = false;
        goto out;
    }
    int32_t nm = group_metadata_value_count(value, value_len);
    if (nm < 0) {
        rc = nm;
        goto out;
    }
    struct group_record_member *mm = xcalloc((size_t)nm, sizeof(*mm));
    struct group_record_meta meta;
    rc = group_metadata_value_decode(value, value_len, &meta, mm, nm);
    if (rc == 0) load_group_meta(g, &meta);
    free(mm);
out:
    free(gid);
    return rc;
}

void group_coordinator_load_done(struct group_coordinator *c, int64_t now)
{
    c->loading = false;
    size_t b;
    struct coord_hnode *n = coord_hmap_first(&c->groups, &b);
    while (n) {
        struct coord_hnode *next = coord_hmap_next(&c->groups, n, &b);
        struct group *g = AL_CONTAINER_OF(n, struct group, node);
        if (!g->loaded) { /* live before this load (another partition's group) */
            n = next;
            continue;
        }
        g->loaded = false;
        if (!g->has_meta && g->offsets.count == 0 && g->nmembers == 0 && g->generation == 0 &&
            g->state == GROUP_EMPTY) {
            group_destroy(c, g, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
            n = next;
            continue;
        }
        if (g->has_meta) {
            g->state = g->nmembers ? GROUP_STABLE : GROUP_EMPTY;
            for (int i = 0; i < g->nmembers; i++)
                g->members[i]->deadline = now + g->members[i]->session_ms;
            compute_subscribed(g);
            g->has_meta = false;
        }
        n = next;
    }
}

int group_coordinator_unload_partition(struct group_coordinator *c, int32_t partition,
                                       int32_t partitions)
{
    int n = 0;
    size_t b;
    struct coord_hnode *x = coord_hmap_first(&c->groups, &b);
    while (x) {
        struct coord_hnode *next = coord_hmap_next(&c->groups, x, &b);
        struct group *g = AL_CONTAINER_OF(x, struct group, node);
        if (coord_partition_for(g->id, strlen(g->id), partitions) == partition) {
            log_info("group", "unloading group %s (generation %d)", g->id, g->generation);
            group_destroy(c, g, KAFKA_ERR_NOT_COORDINATOR);
            n++;
        }
        x = next;
    }
    return n;
}

/* ---- inspection ---- */

int group_get_state(const struct group *g) { return g->state; }
int32_t group_get_generation(const struct group *g) { return g->generation; }
const char *group_get_leader(const struct group *g) { return g->leader; }
const char *group_get_protocol(const struct group *g) { return g->protocol_name; }
const char *group_get_protocol_type(const struct group *g) { return g->protocol_type; }
int group_get_member_count(const struct group *g) { return g->nmembers; }
size_t group_get_offset_count(const struct group *g) { return g->offsets.count; }

const char *group_get_member_id(const struct group *g, int i)
{
    return i >= 0 && i < g->nmembers ? g->members[i]->id : NULL;
}

const char *group_get_member_instance_id(const struct group *g, int i)
{
    return i >= 0 && i < g->nmembers ? g->members[i]->instance_id : NULL;
}

size_t group_coordinator_group_count(const struct group_coordinator *c)
{
    return c->groups.count;
}
