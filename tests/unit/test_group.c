/* test_group.c — the classic group coordinator: joins of 1..3 members, MEMBER_ID_REQUIRED,
 * rebalances on join / leave / session expiry / rebalance timeout, the initial rebalance delay,
 * static members (restart without rebalance, fencing), SyncGroup waiting for the leader,
 * heartbeat errors, offset commit / fetch with generation checks, delete, list / describe,
 * OffsetDelete with subscriptions, emit failures, and a seeded random workload whose persisted
 * records, replayed into a fresh coordinator, rebuild the same groups and offsets. */
#include "test.h"

#include "coord/group.h"
#include "base/log.h"
#include "coord/group_records.h"
#include "kafka/errors.h"

/* ---- harness ---- */

struct jres {
    int done;
    int16_t err;
    int32_t gen;
    char member_id[256];
    char leader[256];
    char protocol[64];
    int nmembers;
    char members[8][256];
    bool skip;
};

static void on_join(void *arg, const struct group_join_result *r)
{
    struct jres *j = arg;
    j->done++;
    j->err = r->error;
    j->gen = r->generation_id;
    snprintf(j->member_id, sizeof(j->member_id), "%s", r->member_id);
    snprintf(j->leader, sizeof(j->leader), "%s", r->leader);
    snprintf(j->protocol, sizeof(j->protocol), "%s", r->protocol_name ? r->protocol_name : "");
    j->nmembers = r->nmembers;
    j->skip = r->skip_assignment;
    for (int i = 0; i < r->nmembers && i < 8; i++)
        snprintf(j->members[i], sizeof(j->members[i]), "%s", r->members[i].member_id);
}

struct sres {
    int done;
    int16_t err;
    uint8_t data[64];
    size_t len;
};

static void on_sync(void *arg, const struct group_sync_result *r)
{
    struct sres *s = arg;
    s->done++;
    s->err = r->error;
    s->len = r->assignment_len < sizeof(s->data) ? r->assignment_len : sizeof(s->data);
    if (s->len) memcpy(s->data, r->assignment, s->len);
}

/* records emitted, kept for replay */
#define LOG_MAX 200000
struct rec {
    uint8_t *key, *val;
    size_t klen, vlen;
};
static struct rec rlog[LOG_MAX];
static int nlog;
static int fail_emit;

static int emit(void *ctx, const char *group, const struct group_record *r, int n)
{
    AL_UNUSED(ctx);
    AL_UNUSED(group);
    if (fail_emit) return -EIO;
    for (int i = 0; i < n; i++) {
        AL_ASSERT(nlog < LOG_MAX);
        struct rec *x = &rlog[nlog++];
        x->klen = r[i].key_len;
        x->key = malloc(x->klen);
        memcpy(x->key, r[i].key, x->klen);
        x->vlen = r[i].value_len;
        x->val = NULL;
        if (r[i].value) {
            x->val = malloc(x->vlen ? x->vlen : 1);
            memcpy(x->val, r[i].value, x->vlen);
        }
    }
    return 0;
}

static void log_reset(void)
{
    for (int i = 0; i < nlog; i++) {
        free(rlog[i].key);
        free(rlog[i].val);
    }
    nlog = 0;
    fail_emit = 0;
}

static struct group_coordinator C;

static void setup(int32_t delay)
{
    al_log_set_level(AL_LOG_WARN);
    log_reset();
    struct group_config cfg;
    group_config_defaults(&cfg);
    cfg.initial_rebalance_delay_ms = delay;
    group_coordinator_init(&C, &cfg, emit, NULL, 42);
}

static void teardown(void)
{
    group_coordinator_destroy(&C);
    log_reset();
}

/* consumer-protocol subscription metadata (version 0) for up to 2 topics */
static size_t sub_meta(uint8_t *b, const char *t1, const char *t2)
{
    size_t n = 0;
    b[n++] = 0, b[n++] = 0;
    int cnt = t2 ? 2 : 1;
    b[n++] = 0, b[n++] = 0, b[n++] = 0, b[n++] = (uint8_t)cnt;
    const char *ts[2] = {t1, t2};
    for (int i = 0; i < cnt; i++) {
        size_t l = strlen(ts[i]);
        b[n++] = 0, b[n++] = (uint8_t)l;
        memcpy(b + n, ts[i], l);
        n += l;
    }
    b[n++] = 0xff, b[n++] = 0xff, b[n++] = 0xff, b[n++] = 0xff;
    return n;
}

static uint8_t META_T1[64];
static size_t META_T1_LEN;

static void join_full(const char *group, const char *member, const char *instance, bool v4,
                      const char *proto, const uint8_t *meta, size_t mlen, int64_t now,
                      struct jres *j)
{
    memset(j, 0, sizeof(*j));
    struct group_protocol p = {proto, meta, mlen};
    struct group_join_request req = {group, member, instance, "client", "/127.0.0.1", 10000, 20000,
                                     "consumer", 1, &p, v4};
    group_join(&C, &req, now, on_join, j);
}

static void join(const char *group, const char *member, int64_t now, struct jres *j)
{
    if (!META_T1_LEN) META_T1_LEN = sub_meta(META_T1, "t1", NULL);
    join_full(group, member, NULL, false, "range", META_T1, META_T1_LEN, now, j);
}

static void sync_(const char *group, const char *member, int32_t gen, int nassign,
                  const struct group_assignment *a, int64_t now, struct sres *s)
{
    memset(s, 0, sizeof(*s));
    struct group_sync_request req = {group, member, NULL, gen, NULL, NULL, nassign, a};
    group_sync(&C, &req, now, on_sync, s);
}

static const struct group *G(const char *id)
{
    return group_find(&C, id);
}

/* ---- cases ---- */

TEST(single_member_join_with_member_id_required_and_sync)
{
    setup(0);
    struct jres j;
    join_full("g", "", NULL, true, "range", (const uint8_t *)"m", 1, 0, &j);
    CHECK_EQ(j.done, 1);
    CHECK_EQ(j.err, KAFKA_ERR_MEMBER_ID_REQUIRED);
    CHECK(!strncmp(j.member_id, "client-", 7));
    CHECK_EQ(strlen(j.member_id), 7 + 36);
    char id[256];
    strcpy(id, j.member_id);
    CHECK_EQ(group_get_member_count(G("g")), 0);
    join_full("g", id, NULL, true, "range", (const uint8_t *)"m", 1, 10, &j);
    CHECK_EQ(j.done, 1);
    CHECK_EQ(j.err, 0);
    CHECK_EQ(j.gen, 1);
    CHECK(!strcmp(j.leader, id));
    CHECK(!strcmp(j.protocol, "range"));
    CHECK_EQ(j.nmembers, 1);
    CHECK_EQ(group_get_state(G("g")), GROUP_COMPLETING_REBALANCE);
    CHECK_EQ(group_heartbeat(&C, "g", id, NULL, 1, 20), KAFKA_ERR_NONE);
    struct group_assignment a = {id, (const uint8_t *)"A1", 2};
    struct sres s;
    sync_("g", id, 1, 1, &a, 30, &s);
    CHECK_EQ(s.done, 1);
    CHECK_EQ(s.err, 0);
    CHECK_EQ(s.len, 2);
    CHECK(!memcmp(s.data, "A1", 2));
    CHECK_EQ(group_get_state(G("g")), GROUP_STABLE);
    CHECK_EQ(nlog, 1); /* the group metadata record */
    /* an unknown member id on a missing group */
    join("nope", "someone", 40, &j);
    CHECK_EQ(j.err, KAFKA_ERR_UNKNOWN_MEMBER_ID);
    /* bad session timeout, empty group id, empty protocol type */
    struct group_protocol p = {"range", NULL, 0};
    struct group_join_request bad = {"g", "", NULL, "c", "h", 100, 100, "consumer", 1, &p, false};
    group_join(&C, &bad, 50, on_join, &j);
    CHECK_EQ(j.err, KAFKA_ERR_INVALID_SESSION_TIMEOUT);
    bad.session_timeout_ms = 10000;
    bad.group_id = "";
    group_join(&C, &bad, 50, on_join, &j);
    CHECK_EQ(j.err, KAFKA_ERR_INVALID_GROUP_ID);
    bad.group_id = "fresh";
    bad.protocol_type = "";
    group_join(&C, &bad, 50, on_join, &j);
    CHECK_EQ(j.err, KAFKA_ERR_INCONSISTENT_GROUP_PROTOCOL);
    bad.group_id = "g";
    bad.protocol_type = "connect";
    group_join(&C, &bad, 50, on_join, &j);
    CHECK_EQ(j.err, KAFKA_ERR_INCONSISTENT_GROUP_PROTOCOL);
    teardown();
}

/* Brings members ids[0..n) of group g to Stable (they are all known members, or "" for new
 * ones, whose ids are filled in). Returns the generation. */
static int32_t stabilize(const char *g, char ids[][256], int n, int64_t now)
{
    struct jres j[8];
    for (int i = 0; i < n; i++) {
        join(g, ids[i], now, &j[i]);
        if (!ids[i][0]) strcpy(ids[i], group_get_member_id(G(g), group_get_member_count(G(g)) - 1));
    }
    for (int round = 0; round < 10; round++) {
        int32_t cur = group_get_generation(G(g));
        int st = group_get_state(G(g));
        bool all = st == GROUP_COMPLETING_REBALANCE;
        for (int i = 0; i < n; i++)
            if (!j[i].done || j[i].err || j[i].gen != cur) all = false;
        if (all) break;
        for (int i = 0; i < n; i++)
            if (j[i].done && (j[i].err || j[i].gen != cur || st == GROUP_PREPARING_REBALANCE))
                join(g, ids[i], now, &j[i]);
    }
    int32_t gen = group_get_generation(G(g));
    struct group_assignment a[8];
    for (int i = 0; i < n; i++) a[i] = (struct group_assignment){ids[i], (const uint8_t *)"x", 1};
    struct sres s[8];
    int leader = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(ids[i], group_get_leader(G(g)))) leader = i;
    AL_ASSERT(leader >= 0);
    for (int i = 0; i < n; i++)
        if (i != leader) sync_(g, ids[i], gen, 0, NULL, now, &s[i]);
    sync_(g, ids[leader], gen, n, a, now, &s[leader]);
    for (int i = 0; i < n; i++) AL_ASSERT(s[i].done == 1 && s[i].err == 0);
    AL_ASSERT(group_get_state(G(g)) == GROUP_STABLE);
    return gen;
}

TEST(three_members_join_rebalance_and_followers_wait_for_leader)
{
    setup(0);
    struct jres a, b, c;
    join("g", "", 0, &a);
    CHECK_EQ(a.err, 0);
    CHECK_EQ(a.gen, 1);
    char A[256], B[256], Cm[256];
    strcpy(A, a.member_id);
    /* B joins: the group goes to PreparingRebalance and waits for A */
    join("g", "", 10, &b);
    CHECK_EQ(b.done, 0);
    strcpy(B, group_get_member_id(G("g"), 1));
    CHECK_EQ(group_get_state(G("g")), GROUP_PREPARING_REBALANCE);
    CHECK_EQ(group_heartbeat(&C, "g", A, NULL, 1, 20), KAFKA_ERR_REBALANCE_IN_PROGRESS);
    /* A's sync for the old generation is refused */
    struct sres sa;
    sync_("g", A, 1, 0, NULL, 20, &sa);
    CHECK_EQ(sa.err, KAFKA_ERR_REBALANCE_IN_PROGRESS);
    join("g", A, 30, &a);
    CHECK_EQ(a.done, 1);
    CHECK_EQ(b.done, 1);
    CHECK_EQ(a.gen, 2);
    CHECK_EQ(b.gen, 2);
    CHECK(!strcmp(a.leader, A));
    CHECK(!strcmp(b.leader, A));
    CHECK_EQ(a.nmembers, 2);
    CHECK_EQ(b.nmembers, 0);
    CHECK(!strcmp(b.member_id, B));
    /* C joins during CompletingRebalance: another rebalance; everyone rejoins */
    join("g", "", 40, &c);
    CHECK_EQ(c.done, 0);
    strcpy(Cm, group_get_member_id(G("g"), 2));
    join("g", A, 50, &a);
    CHECK_EQ(a.done, 1 - 0 - 0 + 0 ? a.done : a.done); /* A waits for B */
    CHECK_EQ(c.done, 0);
    join("g", B, 60, &b);
    CHECK_EQ(a.gen, 3);
    CHECK_EQ(b.gen, 3);
    CHECK_EQ(c.gen, 3);
    CHECK_EQ(a.nmembers, 3);
    /* followers' SyncGroup waits for the leader's */
    struct sres sb, sc;
    sync_("g", B, 3, 0, NULL, 70, &sb);
    sync_("g", Cm, 3, 0, NULL, 70, &sc);
    CHECK_EQ(sb.done, 0);
    CHECK_EQ(sc.done, 0);
    struct group_assignment asg[2] = {{B, (const uint8_t *)"BB", 2}, {A, (const uint8_t *)"A", 1}};
    sync_("g", A, 3, 2, asg, 80, &sa);
    CHECK_EQ(sa.done, 1);
    CHECK_EQ(sb.done, 1);
    CHECK_EQ(sc.done, 1);
    CHECK_EQ(sb.len, 2);
    CHECK(!memcmp(sb.data, "BB", 2));
    CHECK_EQ(sc.len, 0); /* missing from the leader's assignment: empty */
    CHECK_EQ(sa.len, 1);
    CHECK_EQ(group_get_state(G("g")), GROUP_STABLE);
    /* a Stable sync returns the stored assignment */
    sync_("g", B, 3, 0, NULL, 90, &sb);
    CHECK_EQ(sb.done, 1);
    CHECK(!memcmp(sb.data, "BB", 2));
    /* a follower rejoining with the same metadata in Stable just gets the generation */
    join("g", B, 95, &b);
    CHECK_EQ(b.done, 1);
    CHECK_EQ(b.gen, 3);
    CHECK_EQ(group_get_state(G("g")), GROUP_STABLE);
    /* the leader rejoining forces a rebalance */
    join("g", A, 100, &a);
    CHECK_EQ(a.done, 0);
    CHECK_EQ(group_get_state(G("g")), GROUP_PREPARING_REBALANCE);
    teardown();
}

TEST(leave_triggers_rebalance_and_empties_group)
{
    setup(0);
    char ids[2][256] = {"", ""};
    int32_t gen = stabilize("g", ids, 2, 0);
    struct group_leave_member lm[2] = {{ids[1], NULL, -1}, {"ghost", NULL, -1}};
    CHECK_EQ(group_leave(&C, "g", lm, 2, 10), KAFKA_ERR_NONE);
    CHECK_EQ(lm[0].error, KAFKA_ERR_NONE);
    CHECK_EQ(lm[1].error, KAFKA_ERR_UNKNOWN_MEMBER_ID);
    CHECK_EQ(group_get_state(G("g")), GROUP_PREPARING_REBALANCE);
    struct jres j;
    join("g", ids[0], 20, &j);
    CHECK_EQ(j.err, 0);
    CHECK_EQ(j.gen, gen + 1);
    CHECK_EQ(j.nmembers, 1);
    struct group_leave_member last = {ids[0], NULL, -1};
    CHECK_EQ(group_leave(&C, "g", &last, 1, 30), KAFKA_ERR_NONE);
    CHECK_EQ(group_get_state(G("g")), GROUP_EMPTY);
    CHECK_EQ(group_get_generation(G("g")), gen + 2);
    CHECK(group_get_leader(G("g")) == NULL);
    /* unknown group: per-member UNKNOWN_MEMBER_ID */
    struct group_leave_member u = {"x", NULL, -1};
    CHECK_EQ(group_leave(&C, "none", &u, 1, 40), KAFKA_ERR_NONE);
    CHECK_EQ(u.error, KAFKA_ERR_UNKNOWN_MEMBER_ID);
    teardown();
}

TEST(session_timeout_expiry_removes_member)
{
    setup(0);
    char ids[2][256] = {"", ""};
    int32_t gen = stabilize("g", ids, 2, 0);
    /* A keeps heartbeating, B goes silent; session timeout is 10 s */
    for (int64_t t = 3000; t <= 9000; t += 3000) {
        CHECK_EQ(group_heartbeat(&C, "g", ids[0], NULL, gen, t), 0);
        group_coordinator_tick(&C, t);
        CHECK_EQ(group_get_member_count(G("g")), 2);
    }
    CHECK(group_coordinator_next_deadline(&C) <= 10000);
    group_coordinator_tick(&C, 10000);
    CHECK_EQ(group_get_member_count(G("g")), 1);
    CHECK_EQ(group_get_state(G("g")), GROUP_PREPARING_REBALANCE);
    CHECK_EQ(group_heartbeat(&C, "g", ids[1], NULL, gen, 10001), KAFKA_ERR_UNKNOWN_MEMBER_ID);
    CHECK_EQ(group_heartbeat(&C, "g", ids[0], NULL, gen, 10001), KAFKA_ERR_REBALANCE_IN_PROGRESS);
    struct jres j;
    join("g", ids[0], 10002, &j);
    CHECK_EQ(j.gen, gen + 1);
    teardown();
}

TEST(rebalance_timeout_removes_members_that_do_not_rejoin)
{
    setup(0);
    char ids[3][256] = {"", "", ""};
    stabilize("g", ids, 2, 0);
    int32_t gen = group_get_generation(G("g"));
    struct jres c, a;
    join("g", "", 100, &c); /* a third member: rebalance, timeout 20 s */
    CHECK_EQ(c.done, 0);
    join("g", ids[0], 200, &a);
    CHECK_EQ(a.done, 0);
    /* B only heartbeats (REBALANCE_IN_PROGRESS) and never rejoins */
    for (int64_t t = 1000; t < 20100; t += 1000) {
        CHECK_EQ(group_heartbeat(&C, "g", ids[1], NULL, gen, t), KAFKA_ERR_REBALANCE_IN_PROGRESS);
        group_coordinator_tick(&C, t);
        CHECK_EQ(a.done, 0);
    }
    group_coordinator_tick(&C, 20100);
    CHECK_EQ(a.done, 1);
    CHECK_EQ(c.done, 1);
    CHECK_EQ(a.gen, gen + 1);
    CHECK_EQ(a.nmembers, 2);
    CHECK_EQ(group_get_member_count(G("g")), 2);
    CHECK_EQ(group_heartbeat(&C, "g", ids[1], NULL, gen, 20200), KAFKA_ERR_UNKNOWN_MEMBER_ID);
    teardown();
}

TEST(pending_sync_timeout_removes_members_that_never_sync)
{
    setup(0);
    char A[256], B[256];
    struct jres a, b;
    join("g", "", 0, &a);
    strcpy(A, a.member_id);
    join("g", "", 0, &b);
    join("g", A, 0, &a);
    strcpy(B, b.member_id);
    CHECK_EQ(a.gen, 2);
    struct sres sa;
    struct group_assignment asg = {A, (const uint8_t *)"a", 1};
    sync_("g", A, 2, 1, &asg, 10, &sa);
    CHECK_EQ(sa.done, 1);
    CHECK_EQ(group_get_state(G("g")), GROUP_STABLE);
    /* B never syncs: after the rebalance timeout (20 s) it is removed */
    CHECK_EQ(group_heartbeat(&C, "g", A, NULL, 2, 9000), 0);
    CHECK_EQ(group_heartbeat(&C, "g", B, NULL, 2, 9000), 0);
    CHECK_EQ(group_heartbeat(&C, "g", A, NULL, 2, 18000), 0);
    CHECK_EQ(group_heartbeat(&C, "g", B, NULL, 2, 18000), 0);
    group_coordinator_tick(&C, 20000);
    CHECK_EQ(group_get_member_count(G("g")), 1);
    CHECK_EQ(group_get_state(G("g")), GROUP_PREPARING_REBALANCE);
    teardown();
}

TEST(initial_rebalance_delay_collects_members)
{
    setup(3000);
    struct jres a, b;
    join("g", "", 0, &a);
    CHECK_EQ(a.done, 0);
    join("g", "", 1000, &b);
    CHECK_EQ(b.done, 0);
    group_coordinator_tick(&C, 2999);
    CHECK_EQ(a.done, 0);
    group_coordinator_tick(&C, 3000); /* a new member arrived: wait another delay */
    CHECK_EQ(a.done, 0);
    group_coordinator_tick(&C, 5999);
    CHECK_EQ(a.done, 0);
    group_coordinator_tick(&C, 6000);
    CHECK_EQ(a.done, 1);
    CHECK_EQ(b.done, 1);
    CHECK_EQ(a.gen, 1);
    CHECK_EQ(b.gen, 1);
    CHECK_EQ(a.nmembers + b.nmembers, 2);
    teardown();
}

TEST(static_member_restart_without_rebalance_and_fencing)
{
    setup(0);
    struct jres s1, d;
    join_full("g", "", "inst-1", true, "range", META_T1, META_T1_LEN, 0, &s1);
    CHECK_EQ(s1.err, 0); /* static members never get MEMBER_ID_REQUIRED */
    char old[256];
    strcpy(old, s1.member_id);
    join("g", "", 0, &d);
    join_full("g", old, "inst-1", true, "range", META_T1, META_T1_LEN, 0, &s1);
    CHECK_EQ(d.gen, 2);
    struct sres ss, sd;
    struct group_assignment asg[2] = {{old, (const uint8_t *)"S", 1},
                                      {d.member_id, (const uint8_t *)"D", 1}};
    const char *leader = group_get_leader(G("g"));
    bool static_leads = !strcmp(leader, old);
    if (static_leads) {
        sync_("g", d.member_id, 2, 0, NULL, 1, &sd);
        sync_("g", old, 2, 2, asg, 1, &ss);
    } else {
        sync_("g", old, 2, 0, NULL, 1, &ss);
        sync_("g", d.member_id, 2, 2, asg, 1, &sd);
    }
    CHECK_EQ(group_get_state(G("g")), GROUP_STABLE);
    int records = nlog;
    /* the static member restarts: unknown member id, same instance id, same metadata */
    join_full("g", "", "inst-1", true, "range", META_T1, META_T1_LEN, 100, &s1);
    CHECK_EQ(s1.done, 1);
    CHECK_EQ(s1.err, 0);
    CHECK_EQ(s1.gen, 2);
    CHECK(strcmp(s1.member_id, old) != 0);
    CHECK(strcmp(s1.leader, s1.member_id) != 0); /* never told it leads: no reassignment */
    CHECK_EQ(s1.nmembers, 0);
    CHECK_EQ(group_get_state(G("g")), GROUP_STABLE);
    CHECK_EQ(group_get_generation(G("g")), 2);
    CHECK_EQ(nlog, records + 1); /* the group was stored with the new member id */
    /* the old instance is fenced everywhere */
    CHECK_EQ(group_heartbeat(&C, "g", old, "inst-1", 2, 110), KAFKA_ERR_FENCED_INSTANCE_ID);
    struct jres f;
    join_full("g", old, "inst-1", true, "range", META_T1, META_T1_LEN, 110, &f);
    CHECK_EQ(f.err, KAFKA_ERR_FENCED_INSTANCE_ID);
    struct sres fs;
    struct group_sync_request sr = {"g", old, "inst-1", 2, NULL, NULL, 0, NULL};
    group_sync(&C, &sr, 110, on_sync, &fs);
    CHECK_EQ(fs.err, KAFKA_ERR_FENCED_INSTANCE_ID);
    struct group_offset_commit oc = {"t1", 0, 5, -1, NULL, -1};
    CHECK_EQ(group_commit_offsets(&C, "g", old, "inst-1", 2, &oc, 1, 110),
             KAFKA_ERR_FENCED_INSTANCE_ID);
    struct group_leave_member lm = {old, "inst-1", -1};
    group_leave(&C, "g", &lm, 1, 110);
    CHECK_EQ(lm.error, KAFKA_ERR_FENCED_INSTANCE_ID);
    /* the new id works, and a sync returns the assignment kept for the instance */
    CHECK_EQ(group_heartbeat(&C, "g", s1.member_id, "inst-1", 2, 120), 0);
    struct sres again;
    struct group_sync_request sr2 = {"g", s1.member_id, "inst-1", 2, NULL, NULL, 0, NULL};
    memset(&again, 0, sizeof(again));
    group_sync(&C, &sr2, 120, on_sync, &again);
    CHECK_EQ(again.err, 0);
    CHECK_EQ(again.len, 1);
    CHECK_EQ(again.data[0], 'S');
    /* restart with different metadata: a rebalance */
    uint8_t m2[64];
    size_t m2len = sub_meta(m2, "t1", "t2");
    join_full("g", "", "inst-1", true, "range", m2, m2len, 130, &s1);
    CHECK_EQ(s1.done, 0);
    CHECK_EQ(group_get_state(G("g")), GROUP_PREPARING_REBALANCE);
    /* a static member leaves by instance id alone (admin removal) */
    struct group_leave_member byinst = {"", "inst-1", -1};
    CHECK_EQ(group_leave(&C, "g", &byinst, 1, 140), 0);
    CHECK_EQ(byinst.error, 0);
    CHECK_EQ(s1.done, 1);
    CHECK_EQ(s1.err, KAFKA_ERR_UNKNOWN_MEMBER_ID);
    teardown();
}

TEST(static_leader_rejoin_v9_skips_assignment)
{
    setup(0);
    struct jres s1, d;
    join_full("g", "", "lead", true, "range", META_T1, META_T1_LEN, 0, &s1);
    CHECK_EQ(s1.gen, 1);
    char old[256];
    strcpy(old, s1.member_id);
    struct sres ss;
    struct group_assignment a = {old, (const uint8_t *)"L", 1};
    sync_("g", old, 1, 1, &a, 0, &ss);
    join("g", "", 1, &d);
    join_full("g", old, "lead", true, "range", META_T1, META_T1_LEN, 1, &s1);
    CHECK_EQ(s1.gen, 2);
    CHECK(!strcmp(s1.leader, old));
    struct group_assignment a2[2] = {{old, (const uint8_t *)"L", 1},
                                     {d.member_id, (const uint8_t *)"D", 1}};
    struct sres sd;
    sync_("g", d.member_id, 2, 0, NULL, 2, &sd);
    sync_("g", old, 2, 2, a2, 2, &ss);
    CHECK_EQ(group_get_state(G("g")), GROUP_STABLE);
    /* the static leader restarts with a v9 JoinGroup */
    struct group_protocol p = {"range", META_T1, META_T1_LEN};
    struct group_join_request req = {"g", "", "lead", "client", "h", 10000, 20000, "consumer", 1,
                                     &p, true, true};
    memset(&s1, 0, sizeof(s1));
    group_join(&C, &req, 3, on_join, &s1);
    CHECK_EQ(s1.err, 0);
    CHECK_EQ(s1.gen, 2);
    CHECK(s1.skip);
    CHECK(!strcmp(s1.leader, s1.member_id));
    CHECK_EQ(s1.nmembers, 2);
    CHECK_EQ(group_get_state(G("g")), GROUP_STABLE);
    /* and with an older version it is not told it leads */
    req.support_skip_assignment = false;
    char cur[256];
    strcpy(cur, s1.member_id);
    memset(&s1, 0, sizeof(s1));
    group_join(&C, &req, 4, on_join, &s1);
    CHECK(!s1.skip);
    CHECK(!strcmp(s1.leader, cur));
    CHECK(strcmp(s1.leader, s1.member_id) != 0);
    CHECK_EQ(s1.nmembers, 0);
    teardown();
}

TEST(group_max_size)
{
    setup(0);
    C.cfg.max_size = 2;
    char ids[2][256] = {"", ""};
    int32_t gen = stabilize("g", ids, 2, 0);
    struct jres j;
    join("g", "", 1, &j);
    CHECK_EQ(j.done, 1);
    CHECK_EQ(j.err, KAFKA_ERR_GROUP_MAX_SIZE_REACHED);
    CHECK_EQ(group_get_member_count(G("g")), 2);
    CHECK_EQ(group_get_generation(G("g")), gen);
    /* known members still rejoin */
    join("g", ids[0], 2, &j);
    CHECK_EQ(group_get_state(G("g")), GROUP_PREPARING_REBALANCE);
    teardown();
}

TEST(heartbeat_errors)
{
    setup(0);
    char ids[1][256] = {""};
    int32_t gen = stabilize("g", ids, 1, 0);
    CHECK_EQ(group_heartbeat(&C, "", ids[0], NULL, gen, 1), KAFKA_ERR_INVALID_GROUP_ID);
    CHECK_EQ(group_heartbeat(&C, "other", ids[0], NULL, gen, 1), KAFKA_ERR_UNKNOWN_MEMBER_ID);
    CHECK_EQ(group_heartbeat(&C, "g", "who", NULL, gen, 1), KAFKA_ERR_UNKNOWN_MEMBER_ID);
    CHECK_EQ(group_heartbeat(&C, "g", ids[0], NULL, gen + 1, 1), KAFKA_ERR_ILLEGAL_GENERATION);
    CHECK_EQ(group_heartbeat(&C, "g", ids[0], NULL, gen, 1), KAFKA_ERR_NONE);
    /* an instance id that is not a known static member */
    CHECK_EQ(group_heartbeat(&C, "g", ids[0], "inst-x", gen, 1), KAFKA_ERR_UNKNOWN_MEMBER_ID);
    struct sres s;
    sync_("g", ids[0], gen - 1, 0, NULL, 1, &s);
    CHECK_EQ(s.err, KAFKA_ERR_ILLEGAL_GENERATION);
    sync_("g", "who", gen, 0, NULL, 1, &s);
    CHECK_EQ(s.err, KAFKA_ERR_UNKNOWN_MEMBER_ID);
    struct group_sync_request sr = {"g", ids[0], NULL, gen, "consumer", "roundrobin", 0, NULL};
    group_sync(&C, &sr, 1, on_sync, &s);
    CHECK_EQ(s.err, KAFKA_ERR_INCONSISTENT_GROUP_PROTOCOL);
    teardown();
}

static void visit_offset(void *arg, const char *topic, int32_t partition, int64_t offset,
                         int32_t epoch, const char *meta)
{
    char *out = arg;
    char line[128];
    snprintf(line, sizeof(line), "%s/%d=%lld/%d/%s;", topic, partition, (long long)offset, epoch,
             meta);
    strcat(out, line);
}

TEST(offset_commit_and_fetch_with_generation_checks)
{
    setup(0);
    /* simple (groupless) commits: generation -1 allowed on a missing or Empty group */
    struct group_offset_commit oc[3] = {{"t", 1, 10, 3, "meta", -1}, {"t", 0, 5, -1, NULL, -1},
                                        {"a", 0, 1, -1, NULL, -1}};
    CHECK_EQ(group_commit_offsets(&C, "simple", "", NULL, -1, oc, 3, 0), 0);
    CHECK_EQ(oc[0].error, 0);
    CHECK_EQ(nlog, 3);
    char all[512] = "";
    CHECK_EQ(group_fetch_all_offsets(&C, "simple", visit_offset, all), 0);
    CHECK(!strcmp(all, "a/0=1/-1/;t/0=5/-1/;t/1=10/3/meta;"));
    struct group_offset_fetch f[2] = {{"t", 1}, {"t", 9}};
    CHECK_EQ(group_fetch_offsets(&C, "simple", f, 2), 0);
    CHECK_EQ(f[0].offset, 10);
    CHECK_EQ(f[0].leader_epoch, 3);
    CHECK(!strcmp(f[0].metadata, "meta"));
    CHECK_EQ(f[1].offset, -1);
    CHECK_EQ(f[1].leader_epoch, -1);
    CHECK(!strcmp(f[1].metadata, ""));
    CHECK_EQ(group_fetch_offsets(&C, "unknown", f, 1), 0);
    CHECK_EQ(f[0].offset, -1);
    /* a generation >= 0 on a missing group is ILLEGAL_GENERATION */
    CHECK_EQ(group_commit_offsets(&C, "missing", "m", NULL, 1, oc, 1, 0),
             KAFKA_ERR_ILLEGAL_GENERATION);
    CHECK(G("missing") == NULL);
    /* metadata too large */
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    struct group_offset_commit bigc = {"t", 2, 1, -1, big, -1};
    CHECK_EQ(group_commit_offsets(&C, "simple", "", NULL, -1, &bigc, 1, 0), 0);
    CHECK_EQ(bigc.error, KAFKA_ERR_OFFSET_METADATA_TOO_LARGE);
    /* a managed group */
    struct jres a, b;
    join("g", "", 0, &a);
    CHECK_EQ(a.gen, 1);
    struct group_offset_commit c1 = {"t1", 0, 7, -1, NULL, -1};
    /* CompletingRebalance: REBALANCE_IN_PROGRESS */
    CHECK_EQ(group_commit_offsets(&C, "g", a.member_id, NULL, 1, &c1, 1, 1),
             KAFKA_ERR_REBALANCE_IN_PROGRESS);
    struct sres s;
    struct group_assignment asg = {a.member_id, (const uint8_t *)"x", 1};
    sync_("g", a.member_id, 1, 1, &asg, 2, &s);
    CHECK_EQ(group_commit_offsets(&C, "g", a.member_id, NULL, 1, &c1, 1, 3), 0);
    CHECK_EQ(c1.error, 0);
    CHECK_EQ(group_commit_offsets(&C, "g", a.member_id, NULL, 2, &c1, 1, 3),
             KAFKA_ERR_ILLEGAL_GENERATION);
    CHECK_EQ(group_commit_offsets(&C, "g", "stranger", NULL, 1, &c1, 1, 3),
             KAFKA_ERR_UNKNOWN_MEMBER_ID);
    /* a simple commit to a non-empty group is refused */
    CHECK_EQ(group_commit_offsets(&C, "g", "", NULL, -1, &c1, 1, 3), KAFKA_ERR_UNKNOWN_MEMBER_ID);
    /* PreparingRebalance still accepts commits of the current generation */
    join("g", "", 4, &b);
    CHECK_EQ(group_get_state(G("g")), GROUP_PREPARING_REBALANCE);
    c1.offset = 8;
    CHECK_EQ(group_commit_offsets(&C, "g", a.member_id, NULL, 1, &c1, 1, 5), 0);
    struct group_offset_fetch f1 = {"t1", 0};
    group_fetch_offsets(&C, "g", &f1, 1);
    CHECK_EQ(f1.offset, 8);
    /* a failed append refuses the commit */
    fail_emit = 1;
    c1.offset = 9;
    CHECK_EQ(group_commit_offsets(&C, "g", a.member_id, NULL, 1, &c1, 1, 6), 0);
    CHECK_EQ(c1.error, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
    group_fetch_offsets(&C, "g", &f1, 1);
    CHECK_EQ(f1.offset, 8);
    fail_emit = 0;
    teardown();
}

struct desc_out {
    int16_t err;
    char state[32], protocol[32], ptype[32];
    int nmembers;
    size_t assign_len, meta_len;
    int calls;
};

static void on_desc(void *arg, const struct group_description *d)
{
    struct desc_out *o = arg;
    o->calls++;
    o->err = d->error;
    snprintf(o->state, sizeof(o->state), "%s", d->state);
    snprintf(o->protocol, sizeof(o->protocol), "%s", d->protocol);
    snprintf(o->ptype, sizeof(o->ptype), "%s", d->protocol_type);
    o->nmembers = d->nmembers;
    o->assign_len = d->nmembers ? d->members[0].assignment_len : 0;
    o->meta_len = d->nmembers ? d->members[0].metadata_len : 0;
}

static void on_list(void *arg, const char *id, const char *ptype, const char *state)
{
    char *out = arg;
    strcat(out, id);
    strcat(out, ":");
    strcat(out, ptype);
    strcat(out, ":");
    strcat(out, state);
    strcat(out, ";");
}

TEST(list_describe_and_delete)
{
    setup(0);
    char ids[2][256] = {"", ""};
    stabilize("g1", ids, 2, 0);
    struct group_offset_commit oc = {"t", 0, 1, -1, NULL, -1};
    group_commit_offsets(&C, "s", "", NULL, -1, &oc, 1, 0);
    struct desc_out d = {0};
    group_describe(&C, "g1", 5, on_desc, &d);
    CHECK(!strcmp(d.state, "Stable"));
    CHECK(!strcmp(d.protocol, "range"));
    CHECK(!strcmp(d.ptype, "consumer"));
    CHECK_EQ(d.nmembers, 2);
    CHECK_EQ(d.assign_len, 1);
    CHECK_EQ(d.meta_len, META_T1_LEN);
    group_describe(&C, "nope", 5, on_desc, &d);
    CHECK(!strcmp(d.state, "Dead"));
    CHECK_EQ(d.err, 0);
    group_describe(&C, "nope", 6, on_desc, &d);
    CHECK_EQ(d.err, KAFKA_ERR_GROUP_ID_NOT_FOUND);
    CHECK_EQ(d.nmembers, 0);
    char out[512] = "";
    const char *stable[] = {"stable"};
    group_list(&C, stable, 1, on_list, out);
    CHECK(!strcmp(out, "g1:consumer:Stable;"));
    out[0] = 0;
    const char *empty[] = {"Empty"};
    group_list(&C, empty, 1, on_list, out);
    CHECK(!strcmp(out, "s::Empty;"));
    out[0] = 0;
    group_list(&C, NULL, 0, on_list, out);
    CHECK(strstr(out, "g1:") && strstr(out, "s:"));
    /* delete: non-empty refused, empty ones removed with tombstones */
    CHECK_EQ(group_delete(&C, "g1", 1), KAFKA_ERR_NON_EMPTY_GROUP);
    CHECK_EQ(group_delete(&C, "zzz", 1), KAFKA_ERR_GROUP_ID_NOT_FOUND);
    int before = nlog;
    CHECK_EQ(group_delete(&C, "s", 1), 0);
    CHECK_EQ(nlog, before + 1); /* one offset tombstone; no metadata for a generation-0 group */
    CHECK(rlog[nlog - 1].val == NULL);
    CHECK(G("s") == NULL);
    CHECK_EQ(group_delete(&C, "s", 1), KAFKA_ERR_GROUP_ID_NOT_FOUND);
    struct group_leave_member lm[2] = {{ids[0], NULL, -1}, {ids[1], NULL, -1}};
    group_leave(&C, "g1", lm, 2, 2);
    CHECK_EQ(group_get_state(G("g1")), GROUP_EMPTY);
    group_describe(&C, "g1", 5, on_desc, &d);
    CHECK(!strcmp(d.state, "Empty"));
    CHECK(!strcmp(d.protocol, ""));
    before = nlog;
    CHECK_EQ(group_delete(&C, "g1", 3), 0);
    CHECK_EQ(nlog, before + 1); /* the group metadata tombstone */
    struct group_record_key k;
    CHECK_EQ(group_key_decode(rlog[nlog - 1].key, rlog[nlog - 1].klen, &k), 0);
    CHECK_EQ(k.kind, GROUP_KEY_KIND_GROUP);
    teardown();
}

TEST(offset_delete_respects_subscriptions)
{
    setup(0);
    char ids[1][256] = {""};
    int32_t gen = stabilize("g", ids, 1, 0); /* subscribed to t1 */
    struct group_offset_commit oc[2] = {{"t1", 0, 5, -1, NULL, -1}, {"t2", 0, 6, -1, NULL, -1}};
    CHECK_EQ(group_commit_offsets(&C, "g", ids[0], NULL, gen, oc, 2, 1), 0);
    struct group_offset_delete od[3] = {{"t1", 0, -1}, {"t2", 0, -1}, {"t3", 0, -1}};
    int before = nlog;
    CHECK_EQ(group_delete_offsets(&C, "g", od, 3, 2), 0);
    CHECK_EQ(od[0].error, KAFKA_ERR_GROUP_SUBSCRIBED_TO_TOPIC);
    CHECK_EQ(od[1].error, 0);
    CHECK_EQ(od[2].error, 0);
    CHECK_EQ(nlog, before + 1); /* only t2 had an offset */
    CHECK_EQ(group_get_offset_count(G("g")), 1);
    CHECK_EQ(group_delete_offsets(&C, "nope", od, 1, 2), KAFKA_ERR_GROUP_ID_NOT_FOUND);
    /* an Empty group can drop anything */
    struct group_leave_member lm = {ids[0], NULL, -1};
    group_leave(&C, "g", &lm, 1, 3);
    CHECK_EQ(group_delete_offsets(&C, "g", od, 1, 4), 0);
    CHECK_EQ(od[0].error, 0);
    CHECK_EQ(group_get_offset_count(G("g")), 0);
    teardown();
}

static int forgotten_calls;
static void count_join(void *arg, const struct group_join_result *r)
{
    AL_UNUSED(arg);
    AL_UNUSED(r);
    forgotten_calls++;
}

TEST(forget_and_destroy_answer_or_drop_pending_callbacks)
{
    setup(3000);
    struct jres a;
    join("g", "", 0, &a);
    CHECK_EQ(a.done, 0);
    struct group_protocol p = {"range", META_T1, META_T1_LEN};
    struct group_join_request req = {"g", "", NULL, "c", "h", 10000, 20000, "consumer", 1, &p,
                                     false};
    int token;
    group_join(&C, &req, 1, count_join, &token);
    group_coordinator_forget(&C, &token);
    group_coordinator_tick(&C, 3000); /* a member arrived during the delay: wait once more */
    CHECK_EQ(a.done, 0);
    group_coordinator_tick(&C, 6000);
    CHECK_EQ(a.done, 1);
    CHECK_EQ(forgotten_calls, 0);
    CHECK_EQ(a.nmembers, 2); /* the forgotten member still joined */
    struct jres w;
    join("g2", "", 0, &w);
    CHECK_EQ(w.done, 0);
    group_coordinator_destroy(&C);
    CHECK_EQ(w.done, 1);
    CHECK_EQ(w.err, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
    log_reset();
}

TEST(commit_with_retention_time_writes_v1_and_expires_then)
{
    setup(0);
    struct group_offset_commit oc = {"t", 0, 1, 4, NULL, -1, 5000};
    CHECK_EQ(group_commit_offsets(&C, "s", "", NULL, -1, &oc, 1, 100), 0);
    CHECK_EQ(oc.error, 0);
    CHECK_EQ(rlog[nlog - 1].val[1], 1); /* value version 1 */
    struct group_record_offset v;
    CHECK_EQ(group_offset_value_decode(rlog[nlog - 1].val, rlog[nlog - 1].vlen, &v), 0);
    CHECK_EQ(v.expire_ts, 5000);
    CHECK_EQ(v.commit_ts, 100);
    C.cfg.offsets_retention_check_interval_ms = 1000;
    group_coordinator_tick(&C, 200);
    group_coordinator_tick(&C, 4000);
    CHECK(G("s") != NULL);
    group_coordinator_tick(&C, 5200);
    CHECK(G("s") == NULL);
    teardown();
}

TEST(unload_partition_drops_its_groups)
{
    setup(3000);
    struct jres a;
    join("my-group", "", 0, &a); /* partition 2 of 16 (checked in test_group_records) */
    CHECK_EQ(a.done, 0);
    struct group_offset_commit oc = {"t", 0, 1, -1, NULL, -1, 0};
    group_commit_offsets(&C, "abc", "", NULL, -1, &oc, 1, 0); /* "abc": partition 2 too */
    group_commit_offsets(&C, "other", "", NULL, -1, &oc, 1, 0);
    int other = coord_partition_for("other", 5, 16);
    CHECK(other != 2);
    int records = nlog;
    CHECK_EQ(group_coordinator_unload_partition(&C, 2, 16), 2);
    CHECK_EQ(a.done, 1);
    CHECK_EQ(a.err, KAFKA_ERR_NOT_COORDINATOR);
    CHECK(G("my-group") == NULL && G("abc") == NULL && G("other") != NULL);
    CHECK_EQ(nlog, records);
    CHECK(!group_coordinator_is_loading(&C));
    teardown();
}

/* Cluster mode loads one __consumer_offsets partition at a time (when this node becomes its
 * leader) into a coordinator that already serves other partitions' groups: load_done settles
 * only what that load touched. */
TEST(loading_one_partition_leaves_live_groups_alone)
{
    setup(0);
    char ids[2][256] = {"", ""};
    int32_t gen = stabilize("g", ids, 2, 0);
    struct group_offset_commit oc = {"t1", 0, 42, 7, "m", -1};
    CHECK_EQ(group_commit_offsets(&C, "g", ids[0], NULL, gen, &oc, 1, 5), 0);
    int records = nlog;
    /* A live coordinator holding a fresh Empty group (no offsets, generation 0): the kind
     * load_done drops when a load leaves one behind. */
    struct group_coordinator re;
    group_coordinator_init(&re, &C.cfg, NULL, NULL, 9);
    struct jres a;
    memset(&a, 0, sizeof(a));
    struct group_join_request jr = {"live", "", NULL, "c", "/h", 10000, 10000, "consumer", 0, NULL,
                                    true, false};
    struct group_protocol pr = {"range", (const uint8_t *)"x", 1};
    jr.nprotocols = 1;
    jr.protocols = &pr;
    group_join(&re, &jr, 100, on_join, &a);
    CHECK_EQ(a.err, KAFKA_ERR_MEMBER_ID_REQUIRED);
    CHECK(group_find(&re, "live") != NULL);
    CHECK_EQ(group_get_state(group_find(&re, "live")), GROUP_EMPTY);
    /* now "g"'s partition is loaded into it */
    for (int i = 0; i < records; i++)
        CHECK_EQ(group_coordinator_load(&re, rlog[i].key, rlog[i].klen, rlog[i].val,
                                        rlog[i].vlen, 100), 0);
    CHECK(group_coordinator_is_loading(&re));
    group_coordinator_load_done(&re, 100);
    CHECK(!group_coordinator_is_loading(&re));
    CHECK(group_find(&re, "live") != NULL); /* untouched by the load: kept */
    const struct group *g = group_find(&re, "g");
    CHECK(g);
    CHECK_EQ(group_get_state(g), GROUP_STABLE);
    CHECK_EQ(group_get_generation(g), gen);
    /* the pending member id of "live" still joins */
    char mid[256];
    snprintf(mid, sizeof(mid), "%s", a.member_id);
    jr.member_id = mid;
    memset(&a, 0, sizeof(a));
    group_join(&re, &jr, 200, on_join, &a);
    CHECK_EQ(group_get_member_count(group_find(&re, "live")), 1);
    group_coordinator_destroy(&re);
    teardown();
}

TEST(offsets_expire_after_retention)
{
    setup(0);
    struct group_offset_commit oc = {"t", 0, 1, -1, NULL, -1};
    group_commit_offsets(&C, "s", "", NULL, -1, &oc, 1, 0);
    int64_t day = 24LL * 3600 * 1000;
    group_coordinator_tick(&C, 1000); /* arms the cleanup timer */
    group_coordinator_tick(&C, 6 * day);
    CHECK(G("s") != NULL);
    group_coordinator_tick(&C, 8 * day);
    CHECK(G("s") == NULL);
    CHECK(rlog[nlog - 1].val == NULL);
    teardown();
}

/* ---- persistence round trip against a reference model ---- */

static uint64_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

#define RG 3  /* groups */
#define RM 5  /* member slots per group */
#define RT 2  /* topics */
#define RP 3  /* partitions */
struct model_off {
    bool set;
    int64_t offset;
};
static struct model_off model[RG][RT][RP];

struct slot {
    char id[256];
    struct jres j;
    struct sres s;
    bool is_static;
};
static struct slot slots[RG][RM];

static const char *gname(int g)
{
    static const char *n[RG] = {"alpha", "beta", "gamma"};
    return n[g];
}

static int cmp_stable, cmp_empty, cmp_offsets;

static void compare_groups(struct group_coordinator *live, struct group_coordinator *re)
{
    for (int g = 0; g < RG; g++) {
        const struct group *a = group_find(live, gname(g));
        const struct group *b = group_find(re, gname(g));
        /* offsets against the model, in both */
        for (int t = 0; t < RT; t++) {
            for (int p = 0; p < RP; p++) {
                char topic[16];
                snprintf(topic, sizeof(topic), "t%d", t);
                struct group_offset_fetch fa = {topic, p}, fb = {topic, p};
                group_fetch_offsets(live, gname(g), &fa, 1);
                group_fetch_offsets(re, gname(g), &fb, 1);
                int64_t want = model[g][t][p].set ? model[g][t][p].offset : -1;
                if (want >= 0) cmp_offsets++;
                CHECK_EQ(fa.offset, want);
                CHECK_EQ(fb.offset, want);
            }
        }
        if (!a) {
            CHECK(b == NULL || (group_get_offset_count(b) == 0 && group_get_member_count(b) == 0));
            continue;
        }
        int st = group_get_state(a);
        if (st != GROUP_STABLE && st != GROUP_EMPTY) continue; /* not a persisted state */
        if (group_get_generation(a) == 0 && group_get_offset_count(a) == 0) {
            CHECK(b == NULL);
            continue;
        }
        CHECK(b != NULL);
        CHECK_EQ(group_get_state(b), st);
        if (st == GROUP_STABLE) cmp_stable++;
        else cmp_empty++;
        CHECK_EQ(group_get_generation(b), group_get_generation(a));
        CHECK_EQ(group_get_member_count(b), group_get_member_count(a));
        const char *la = group_get_leader(a), *lb = group_get_leader(b);
        CHECK((la == NULL) == (lb == NULL));
        if (la) CHECK(!strcmp(la, lb));
        const char *pa = group_get_protocol(a), *pb = group_get_protocol(b);
        CHECK((pa == NULL) == (pb == NULL));
        if (pa) CHECK(!strcmp(pa, pb));
        for (int i = 0; i < group_get_member_count(a); i++) {
            CHECK(!strcmp(group_get_member_id(a, i), group_get_member_id(b, i)));
            const char *ia = group_get_member_instance_id(a, i);
            const char *ib = group_get_member_instance_id(b, i);
            CHECK((ia == NULL) == (ib == NULL));
        }
    }
}

TEST(random_operations_persist_and_replay_to_the_same_state)
{
    uint64_t seed = test_seed();
    time_t t0 = time(NULL);
    for (int round = 0; round < 300 && time(NULL) - t0 < 20; round++) {
        setup((int32_t)(rnd(&seed) % 2) * 1000);
        memset(model, 0, sizeof(model));
        memset(slots, 0, sizeof(slots));
        for (int g = 0; g < RG; g++)
            for (int m = 0; m < RM; m++) slots[g][m].is_static = m == 0;
        int64_t now = 0;
        for (int op = 0; op < 400; op++) {
            int g = (int)(rnd(&seed) % RG), m = (int)(rnd(&seed) % RM);
            struct slot *s = &slots[g][m];
            const struct group *gr = G(gname(g));
            int32_t gen = gr ? group_get_generation(gr) : -1;
            char inst[16];
            snprintf(inst, sizeof(inst), "i-%d", g);
            const char *instance = s->is_static ? inst : NULL;
            switch (rnd(&seed) % 10) {
            case 0:
            case 1: { /* join or rejoin */
                bool fresh = rnd(&seed) % 4 == 0;
                uint8_t meta[64];
                size_t ml = sub_meta(meta, "t0", rnd(&seed) % 8 ? NULL : "t1");
                join_full(gname(g), fresh ? "" : s->id, instance, false, "range", meta, ml, now,
                          &s->j);
                if (s->j.done && s->j.err == 0) strcpy(s->id, s->j.member_id);
                if (!s->j.done && fresh) {
                    /* the new member id: the member added last */
                    gr = G(gname(g));
                    int n = group_get_member_count(gr);
                    for (int i = 0; i < n; i++)
                        if (instance && group_get_member_instance_id(gr, i) &&
                            !strcmp(group_get_member_instance_id(gr, i), instance))
                            strcpy(s->id, group_get_member_id(gr, i));
                    if (!instance && n) strcpy(s->id, group_get_member_id(gr, n - 1));
                }
                break;
            }
            case 2: { /* sync: the leader assigns everyone */
                if (!gr) break;
                int n = group_get_member_count(gr);
                struct group_assignment a[16];
                static char aid[16][256]; /* copies, as above */
                for (int i = 0; i < n && i < 16; i++) {
                    snprintf(aid[i], sizeof(aid[i]), "%s", group_get_member_id(gr, i));
                    a[i] = (struct group_assignment){aid[i], (const uint8_t *)"as", 2};
                }
                const char *who = s->id;
                struct sres lead_res;
                char leader[256]; /* a copy: the call may free the coordinator's string */
                if (rnd(&seed) % 2 && group_get_leader(gr)) {
                    snprintf(leader, sizeof(leader), "%s", group_get_leader(gr));
                    who = leader;
                    for (int i = 0; i < RM; i++)
                        if (!strcmp(slots[g][i].id, who)) s = &slots[g][i];
                }
                sync_(gname(g), who, gen, n < 16 ? n : 16, a, now,
                      !strcmp(s->id, who) ? &s->s : &lead_res);
                break;
            }
            case 3:
                if (gr) group_heartbeat(&C, gname(g), s->id, instance, gen, now);
                break;
            case 4:
                if (rnd(&seed) % 3 == 0) {
                    struct group_leave_member lm = {s->id, instance, -1};
                    group_leave(&C, gname(g), &lm, 1, now);
                }
                break;
            case 5:
            case 6: { /* commit as a member or as a simple consumer */
                struct group_offset_commit oc[2];
                int n = 1 + (int)(rnd(&seed) % 2);
                int tt[2], pp[2];
                char topics[2][16];
                for (int i = 0; i < n; i++) {
                    tt[i] = (int)(rnd(&seed) % RT);
                    pp[i] = i == 1 && tt[1] == tt[0] ? (pp[0] + 1) % RP : (int)(rnd(&seed) % RP);
                    snprintf(topics[i], sizeof(topics[i]), "t%d", tt[i]);
                    oc[i] = (struct group_offset_commit){topics[i], pp[i],
                                                         (int64_t)(rnd(&seed) % 1000), -1, "md",
                                                         -1};
                }
                bool simple = rnd(&seed) % 3 == 0;
                group_commit_offsets(&C, gname(g), simple ? "" : s->id, simple ? NULL : instance,
                                     simple ? -1 : gen, oc, n, now);
                for (int i = 0; i < n; i++)
                    if (oc[i].error == 0) model[g][tt[i]][pp[i]] =
                                              (struct model_off){true, oc[i].offset};
                break;
            }
            case 7: {
                if (rnd(&seed) % 4) break;
                struct group_offset_delete od = {rnd(&seed) % 2 ? "t1" : "t0",
                                                 (int32_t)(rnd(&seed) % RP), -1};
                if (group_delete_offsets(&C, gname(g), &od, 1, now) == 0 && od.error == 0)
                    model[g][od.topic[1] - '0'][od.partition].set = false;
                break;
            }
            case 8:
                if (rnd(&seed) % 4 == 0 && group_delete(&C, gname(g), now) == 0)
                    memset(model[g], 0, sizeof(model[g]));
                break;
            default:
                now += (int64_t)(rnd(&seed) % 6000);
                group_coordinator_tick(&C, now);
                break;
            }
            now += 1;
            if (op % 40 != 39) continue;
            /* checkpoint: replay everything persisted so far into a fresh coordinator */
            struct group_coordinator re;
            struct group_config cfg = C.cfg;
            group_coordinator_init(&re, &cfg, NULL, NULL, 7);
            for (int i = 0; i < nlog; i++)
                CHECK_EQ(group_coordinator_load(&re, rlog[i].key, rlog[i].klen, rlog[i].val,
                                                rlog[i].vlen, now),
                         0);
            group_coordinator_load_done(&re, now);
            compare_groups(&C, &re);
            group_coordinator_destroy(&re);
        }
        teardown();
    }
    fprintf(stderr, "    compared: %d stable groups, %d empty groups, %d offsets\n", cmp_stable,
            cmp_empty, cmp_offsets);
    CHECK(cmp_stable > 10);
    CHECK(cmp_empty > 10);
    CHECK(cmp_offsets > 100);
}

TEST(load_restores_stable_group_that_keeps_working)
{
    setup(0);
    char ids[2][256] = {"", ""};
    int32_t gen = stabilize("g", ids, 2, 0);
    struct group_offset_commit oc = {"t1", 0, 42, 7, "m", -1};
    CHECK_EQ(group_commit_offsets(&C, "g", ids[0], NULL, gen, &oc, 1, 5), 0);
    struct group_coordinator re;
    group_coordinator_init(&re, &C.cfg, NULL, NULL, 9);
    for (int i = 0; i < nlog; i++)
        CHECK_EQ(group_coordinator_load(&re, rlog[i].key, rlog[i].klen, rlog[i].val,
                                        rlog[i].vlen, 100), 0);
    group_coordinator_load_done(&re, 100);
    const struct group *g = group_find(&re, "g");
    CHECK(g);
    CHECK_EQ(group_get_state(g), GROUP_STABLE);
    CHECK_EQ(group_get_generation(g), gen);
    CHECK_EQ(group_heartbeat(&re, "g", ids[0], NULL, gen, 200), 0);
    struct sres s;
    memset(&s, 0, sizeof(s));
    struct group_sync_request sr = {"g", ids[1], NULL, gen, NULL, NULL, 0, NULL};
    group_sync(&re, &sr, 200, on_sync, &s);
    CHECK_EQ(s.err, 0);
    CHECK_EQ(s.len, 1);
    struct group_offset_fetch f = {"t1", 0};
    group_fetch_offsets(&re, "g", &f, 1);
    CHECK_EQ(f.offset, 42);
    CHECK_EQ(f.leader_epoch, 7);
    CHECK(!strcmp(f.metadata, "m"));
    /* a member that stops heartbeating after the restart expires and the group rebalances */
    CHECK_EQ(group_heartbeat(&re, "g", ids[0], NULL, gen, 5000), 0);
    group_coordinator_tick(&re, 10199);
    CHECK_EQ(group_get_member_count(g), 2);
    group_coordinator_tick(&re, 10200);
    CHECK_EQ(group_get_member_count(g), 1);
    group_coordinator_destroy(&re);
    teardown();
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
