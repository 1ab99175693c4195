/* test_group_sim.c — consumers modelled like real clients (JoinGroup v4+ with MEMBER_ID_REQUIRED,
 * SyncGroup, heartbeats every 3 s, rejoin on REBALANCE_IN_PROGRESS, reset on UNKNOWN_MEMBER_ID /
 * ILLEGAL_GENERATION, offset commits) drive one coordinator on a simulated clock through seeded
 * chaos: crashes (a client just stops), restarts (dynamic ones with a fresh id, static ones with
 * their group.instance.id), graceful leaves and new clients. Checked all along: every JoinGroup
 * and SyncGroup is answered exactly once, only with errors a real client expects; after a quiet
 * period the group is Stable with exactly the live clients, all on the group's generation, and
 * their assignments partition the topic exactly. */
#include "test.h"

#include "base/log.h"
#include "coord/group.h"
#include "kafka/errors.h"

#define NCLIENT 8
#define NPART 12
#define MAXREQ 200000

/* C_JOINED: the JoinGroup answer arrived; the client sends SyncGroup on its next step (callbacks
 * never call back into the coordinator, as group.h requires) */
enum cstate { C_IDLE, C_JOINING, C_JOINED, C_SYNCING, C_STABLE };

struct client {
    bool alive;
    bool is_static;
    char instance[32];
    int incarnation;
    enum cstate st;
    char member_id[256];
    int32_t gen;
    int64_t next_hb;
    uint32_t assignment; /* bit per partition */
    bool has_assignment;
    bool leads;                          /* the last JoinGroup answer made it the leader */
    int nmembers;                        /* members it must assign (leader) */
    char members[NCLIENT * 2][256];
};

struct reqctx {
    struct client *c;
    int incarnation;
    int answered;
    bool is_join;
};

static struct client clients[NCLIENT];
static struct reqctx reqs[MAXREQ];
static int nreq;
static struct group_coordinator C;
static int bad_errors;
static int64_t now;

static uint64_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static struct reqctx *newreq(struct client *c, bool join)
{
    AL_ASSERT(nreq < MAXREQ);
    struct reqctx *r = &reqs[nreq++];
    *r = (struct reqctx){c, c->incarnation, 0, join};
    return r;
}

static void reset_member(struct client *c)
{
    c->member_id[0] = 0;
    c->gen = -1;
    c->st = C_IDLE;
}

static void on_sync(void *arg, const struct group_sync_result *r);

static void send_sync(struct client *c)
{
    struct group_assignment a[NCLIENT * 2];
    uint32_t masks[NCLIENT * 2] = {0};
    int n = c->leads ? c->nmembers : 0;
    for (int p = 0; p < NPART && n > 0; p++) masks[p % n] |= 1u << p;
    for (int i = 0; i < n; i++)
        a[i] = (struct group_assignment){c->members[i], (const uint8_t *)&masks[i],
                                         sizeof(uint32_t)};
    c->st = C_SYNCING;
    struct group_sync_request sr = {"g", c->member_id, c->is_static ? c->instance : NULL,
                                    c->gen, "consumer", "range", n, a};
    group_sync(&C, &sr, now, on_sync, newreq(c, false));
}

static void on_join(void *arg, const struct group_join_result *r)
{
    struct reqctx *q = arg;
    q->answered++;
    struct client *c = q->c;
    if (!c->alive || q->incarnation != c->incarnation) return; /* a dead process's request */
    AL_ASSERT(c->st == C_JOINING);
    switch (r->error) {
    case KAFKA_ERR_NONE:
        snprintf(c->member_id, sizeof(c->member_id), "%s", r->member_id);
        c->gen = r->generation_id;
        c->next_hb = now + 3000;
        c->leads = !strcmp(r->leader, r->member_id) && !r->skip_assignment;
        c->nmembers = c->leads ? r->nmembers : 0;
        AL_ASSERT(c->nmembers <= NCLIENT * 2);
        for (int i = 0; i < c->nmembers; i++)
            snprintf(c->members[i], sizeof(c->members[i]), "%s", r->members[i].member_id);
        c->st = C_JOINED;
        break;
    case KAFKA_ERR_MEMBER_ID_REQUIRED:
        snprintf(c->member_id, sizeof(c->member_id), "%s", r->member_id);
        c->st = C_IDLE;
        break;
    case KAFKA_ERR_UNKNOWN_MEMBER_ID:
    case KAFKA_ERR_ILLEGAL_GENERATION:
        reset_member(c);
        break;
    case KAFKA_ERR_REBALANCE_IN_PROGRESS:
        c->st = C_IDLE;
        break;
    default:
        fprintf(stderr, "    unexpected JoinGroup error %d\n", r->error);
        bad_errors++;
        reset_member(c);
    }
}

static void on_sync(void *arg, const struct group_sync_result *r)
{
    struct reqctx *q = arg;
    q->answered++;
    struct client *c = q->c;
    if (!c->alive || q->incarnation != c->incarnation) return;
    AL_ASSERT(c->st == C_SYNCING);
    switch (r->error) {
    case KAFKA_ERR_NONE:
        c->st = C_STABLE;
        c->assignment = 0;
        if (r->assignment_len == sizeof(uint32_t)) memcpy(&c->assignment, r->assignment, 4);
        c->has_assignment = true;
        break;
    case KAFKA_ERR_REBALANCE_IN_PROGRESS:
        c->st = C_IDLE;
        break;
    case KAFKA_ERR_UNKNOWN_MEMBER_ID:
    case KAFKA_ERR_ILLEGAL_GENERATION:
        reset_member(c);
        break;
    default:
        fprintf(stderr, "    unexpected SyncGroup error %d\n", r->error);
        bad_errors++;
        reset_member(c);
    }
}

static void send_join(struct client *c)
{
    static const uint8_t meta[] = {0, 0, 0, 0, 0, 1, 0, 1, 't', 0xff, 0xff, 0xff, 0xff};
    struct group_protocol p[2] = {{"range", meta, sizeof(meta)},
                                  {"roundrobin", meta, sizeof(meta)}};
    struct group_join_request jr = {"g", c->member_id, c->is_static ? c->instance : NULL,
                                    "client", "/127.0.0.1", 10000, 15000, "consumer", 2, p,
                                    true, true};
    c->st = C_JOINING;
    group_join(&C, &jr, now, on_join, newreq(c, true));
}

static void client_step(struct client *c, uint64_t *seed)
{
    if (!c->alive) return;
    if (c->st == C_IDLE) {
        send_join(c);
        return;
    }
    if (c->st == C_JOINED && rnd(seed) % 3 == 0) { /* sync after a little while */
        send_sync(c);
        return;
    }
    if ((c->st == C_STABLE || c->st == C_SYNCING || c->st == C_JOINED) && now >= c->next_hb) {
        c->next_hb = now + 3000;
        int16_t e = group_heartbeat(&C, "g", c->member_id, c->is_static ? c->instance : NULL,
                                    c->gen, now);
        if (e == KAFKA_ERR_REBALANCE_IN_PROGRESS) {
            if (c->st != C_SYNCING) c->st = C_IDLE;
        } else if (e == KAFKA_ERR_UNKNOWN_MEMBER_ID || e == KAFKA_ERR_ILLEGAL_GENERATION) {
            if (c->st != C_SYNCING) reset_member(c);
        } else if (e != KAFKA_ERR_NONE) {
            fprintf(stderr, "    unexpected Heartbeat error %d\n", e);
            bad_errors++;
        }
    }
    if (c->st == C_STABLE && rnd(seed) % 20 == 0) {
        struct group_offset_commit oc = {"t", (int32_t)(rnd(seed) % NPART), (int64_t)now, -1,
                                         NULL, -1, 0};
        int16_t e = group_commit_offsets(&C, "g", c->member_id,
                                         c->is_static ? c->instance : NULL, c->gen, &oc, 1, now);
        if (e != KAFKA_ERR_NONE && e != KAFKA_ERR_REBALANCE_IN_PROGRESS &&
            e != KAFKA_ERR_ILLEGAL_GENERATION && e != KAFKA_ERR_UNKNOWN_MEMBER_ID) {
            fprintf(stderr, "    unexpected OffsetCommit error %d\n", e);
            bad_errors++;
        }
    }
}

static void chaos(uint64_t *seed)
{
    struct client *c = &clients[rnd(seed) % NCLIENT];
    switch (rnd(seed) % 4) {
    case 0: /* crash: the process stops */
        if (c->alive) c->alive = false;
        break;
    case 1: /* (re)start */
        if (!c->alive) {
            c->alive = true;
            c->incarnation++;
            reset_member(c);
        }
        break;
    case 2: /* graceful leave then stay down */
        if (c->alive && c->member_id[0] && c->st == C_STABLE) {
            struct group_leave_member lm = {c->member_id, c->is_static ? c->instance : NULL, -1};
            group_leave(&C, "g", &lm, 1, now);
            c->alive = false;
        }
        break;
    default:
        break;
    }
}

TEST(clients_converge_after_chaos)
{
    al_log_set_level(AL_LOG_WARN);
    uint64_t seed = test_seed();
    time_t t0 = time(NULL);
    int rounds = 0, stable_checks = 0;
    long total_reqs = 0;
    for (int round = 0; round < 300 && time(NULL) - t0 < 20; round++, rounds++) {
        struct group_config cfg;
        group_config_defaults(&cfg);
        cfg.initial_rebalance_delay_ms = (int32_t)(rnd(&seed) % 2) * 3000;
        group_coordinator_init(&C, &cfg, NULL, NULL, seed);
        memset(clients, 0, sizeof(clients));
        nreq = 0;
        bad_errors = 0;
        now = 1000;
        for (int i = 0; i < NCLIENT; i++) {
            clients[i].alive = rnd(&seed) % 3 != 0;
            clients[i].is_static = rnd(&seed) % 3 == 0;
            snprintf(clients[i].instance, sizeof(clients[i].instance), "inst-%d", i);
            reset_member(&clients[i]);
        }
        /* 60 s of chaos, then 90 s of quiet, in 100 ms steps */
        for (int step = 0; step < 1500; step++) {
            now += 100;
            if (step < 600 && rnd(&seed) % 15 == 0) chaos(&seed);
            for (int i = 0; i < NCLIENT; i++) client_step(&clients[(i + step) % NCLIENT], &seed);
            group_coordinator_tick(&C, now);
            for (int k = nreq - 1; k >= 0 && k >= nreq - 64; k--) CHECK(reqs[k].answered <= 1);
        }
        CHECK_EQ(bad_errors, 0);
        /* converged: Stable with exactly the live clients */
        int live = 0;
        for (int i = 0; i < NCLIENT; i++) live += clients[i].alive;
        const struct group *g = group_find(&C, "g");
        if (live == 0) {
            CHECK(!g || group_get_member_count(g) == 0);
        } else {
            CHECK(g != NULL);
            if (group_get_state(g) != GROUP_STABLE)
                fprintf(stderr, "    state %s, %d members, %d live\n",
                        group_state_name(group_get_state(g)), group_get_member_count(g), live);
            CHECK_EQ(group_get_state(g), GROUP_STABLE);
            CHECK_EQ(group_get_member_count(g), live);
            uint32_t all = 0;
            for (int i = 0; i < NCLIENT; i++) {
                struct client *c = &clients[i];
                if (!c->alive) continue;
                CHECK_EQ(c->st, C_STABLE);
                CHECK_EQ(c->gen, group_get_generation(g));
                CHECK((all & c->assignment) == 0); /* no partition twice */
                all |= c->assignment;
            }
            CHECK_EQ(all, (1u << NPART) - 1); /* every partition once */
            stable_checks++;
        }
        /* every request was answered exactly once by now */
        for (int k = 0; k < nreq; k++) CHECK_EQ(reqs[k].answered, 1);
        total_reqs += nreq;
        group_coordinator_destroy(&C);
    }
    fprintf(stderr, "    %d rounds, %d converged groups checked, %ld join/sync requests\n",
            rounds, stable_checks, total_reqs);
    CHECK(stable_checks > rounds / 2);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
