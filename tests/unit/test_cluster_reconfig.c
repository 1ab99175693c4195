/*
 * test_cluster_reconfig.c — the pure step of a partition move (cluster_reconfig_next_step,
 * src/cluster/cluster_reconfig.h): the order of single-server changes (add learner, wait,
 * promote, remove, hand over the leadership when the leader leaves), and a model-driven run
 * over random moves checking that every move ends with membership == assignment, that the
 * group never has fewer voters than min(old, new) replica count, and that the leader is
 * always a voter. Also when a draining (maintenance) replica may campaign.
 */
#include "cluster/cluster_reconfig.h"
#include "test.h"

/* A model group: membership, per-node match, commit, who may lead. */
struct model {
    raft_config c;
    int64_t match[16];
    int64_t commit;
    bool down[16];
};

static int64_t m_match(void *ctx, int32_t node)
{
    struct model *m = ctx;
    return node >= 0 && node < 16 ? m->match[node] : -1;
}

static bool m_may_lead(void *ctx, int32_t node)
{
    struct model *m = ctx;
    return node >= 0 && node < 16 && !m->down[node];
}

static topic_assignment assign_of(int n, const int32_t *nodes)
{
    topic_assignment a;
    memset(&a, 0, sizeof(a));
    a.n = (int16_t)n;
    for (int i = 0; i < n; i++) a.nodes[i] = nodes[i];
    return a;
}

static void model_init(struct model *m, int n, const int32_t *voters, int64_t commit)
{
    memset(m, 0, sizeof(*m));
    m->c.n_voters = (uint8_t)n;
    for (int i = 0; i < n; i++) m->c.voters[i] = voters[i];
    for (int i = 0; i < 16; i++) m->match[i] = -1;
    for (int i = 0; i < n; i++) m->match[voters[i]] = commit;
    m->commit = commit;
}

static void del(int32_t *arr, uint8_t *n, int32_t id)
{
    for (int i = 0; i < *n; i++)
        if (arr[i] == id) {
            arr[i] = arr[--*n];
            return;
        }
}

TEST(step_order_move_one_replica)
{
    struct model m;
    int32_t v[] = {0, 1, 2}, t[] = {1, 2, 3};
    model_init(&m, 3, v, 100);
    topic_assignment a = assign_of(3, t);
    cr_peer_fns f = {m_match, m_may_lead, &m};
    /* leader 1 (stays): add 3 as a learner */
    cr_step s = cluster_reconfig_next_step(&m.c, &a, 1, m.commit, &f);
    CHECK_EQ(s.op, CR_STEP_ADD_LEARNER);
    CHECK_EQ(s.node, 3);
    m.c.learners[m.c.n_learners++] = 3;
    /* lagging learner: wait */
    m.match[3] = 50;
    s = cluster_reconfig_next_step(&m.c, &a, 1, m.commit, &f);
    CHECK_EQ(s.op, CR_STEP_WAIT);
    /* caught up: promote */
    m.match[3] = 100;
    s = cluster_reconfig_next_step(&m.c, &a, 1, m.commit, &f);
    CHECK_EQ(s.op, CR_STEP_PROMOTE);
    CHECK_EQ(s.node, 3);
    del(m.c.learners, &m.c.n_learners, 3);
    m.c.voters[m.c.n_voters++] = 3;
    /* then remove 0 */
    s = cluster_reconfig_next_step(&m.c, &a, 1, m.commit, &f);
    CHECK_EQ(s.op, CR_STEP_REMOVE);
    CHECK_EQ(s.node, 0);
    del(m.c.voters, &m.c.n_voters, 0);
    s = cluster_reconfig_next_step(&m.c, &a, 1, m.commit, &f);
    CHECK_EQ(s.op, CR_STEP_NONE);
}

TEST(step_leader_leaves_hands_over_first)
{
    struct model m;
    int32_t v[] = {0, 1, 2, 3}, t[] = {3, 1, 2};
    model_init(&m, 4, v, 7);
    topic_assignment a = assign_of(3, t);
    cr_peer_fns f = {m_match, m_may_lead, &m};
    /* leader 0 is dropped: transfer to the first target voter that may lead (3) */
    cr_step s = cluster_reconfig_next_step(&m.c, &a, 0, m.commit, &f);
    CHECK_EQ(s.op, CR_STEP_TRANSFER);
    CHECK_EQ(s.node, 3);
    /* 3 is down, 1 lags: 2 */
    m.down[3] = true;
    m.match[1] = 6;
    s = cluster_reconfig_next_step(&m.c, &a, 0, m.commit, &f);
    CHECK_EQ(s.op, CR_STEP_TRANSFER);
    CHECK_EQ(s.node, 2);
    /* nobody: remove ourselves */
    m.down[2] = true;
    s = cluster_reconfig_next_step(&m.c, &a, 0, m.commit, &f);
    CHECK_EQ(s.op, CR_STEP_REMOVE);
    CHECK_EQ(s.node, 0);
}

TEST(step_learner_not_in_target_removed_before_voters)
{
    struct model m;
    int32_t v[] = {0, 1, 2, 4}, t[] = {0, 1, 2};
    model_init(&m, 4, v, 3);
    m.c.learners[m.c.n_learners++] = 5;
    topic_assignment a = assign_of(3, t);
    cr_peer_fns f = {m_match, m_may_lead, &m};
    cr_step s = cluster_reconfig_next_step(&m.c, &a, 0, m.commit, &f);
    CHECK_EQ(s.op, CR_STEP_REMOVE);
    CHECK_EQ(s.node, 5);
    m.c.n_learners = 0;
    s = cluster_reconfig_next_step(&m.c, &a, 0, m.commit, &f);
    CHECK_EQ(s.op, CR_STEP_REMOVE);
    CHECK_EQ(s.node, 4);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Picks k distinct nodes of 0..7 into out. */
static void pick(uint64_t *r, int k, int32_t *out)
{
    int n = 0;
    for (int guard = 0; n < k && guard < 1000; guard++) {
        int32_t x = (int32_t)(rng_next(r) % 8);
        bool dup = false;
        for (int i = 0; i < n; i++) dup |= out[i] == x;
        if (!dup) out[n++] = x;
    }
}

TEST(random_moves_converge_safely)
{
    uint64_t r = test_seed() | 1;
    for (int run = 0; run < 2000; run++) {
        int n_old = 1 + (int)(rng_next(&r) % 5), n_new = 1 + (int)(rng_next(&r) % 5);
        int32_t old[8], tgt[8];
        pick(&r, n_old, old);
        pick(&r, n_new, tgt);
        struct model m;
        model_init(&m, n_old, old, 10);
        topic_assignment a = assign_of(n_new, tgt);
        cr_peer_fns f = {m_match, m_may_lead, &m};
        int32_t leader = old[rng_next(&r) % (uint64_t)n_old];
        int min_voters = n_old < n_new ? n_old : n_new;
        bool done = false;
        for (int step = 0; step < 64 && !done; step++) {
            CHECK(raft_config_is_voter(&m.c, leader));
            CHECK(m.c.n_voters >= min_voters);
            cr_step s = cluster_reconfig_next_step(&m.c, &a, leader, m.commit, &f);
            switch (s.op) {
            case CR_STEP_NONE: done = true; break;
            case CR_STEP_WAIT: /* learners catch up */
                for (int i = 0; i < m.c.n_learners; i++) m.match[m.c.learners[i]] = m.commit;
                break;
            case CR_STEP_ADD_LEARNER:
                CHECK(!raft_config_is_voter(&m.c, s.node));
                m.c.learners[m.c.n_learners++] = s.node;
                break;
            case CR_STEP_PROMOTE:
                CHECK(raft_config_is_learner(&m.c, s.node));
                del(m.c.learners, &m.c.n_learners, s.node);
                m.c.voters[m.c.n_voters++] = s.node;
                break;
            case CR_STEP_REMOVE: {
                bool was_voter = raft_config_is_voter(&m.c, s.node);
                /* never shrink the voters below the final size while adding */
                CHECK(!was_voter || m.c.n_voters > min_voters || s.node == leader);
                del(m.c.voters, &m.c.n_voters, s.node);
                del(m.c.learners, &m.c.n_learners, s.node);
                if (s.node == leader) leader = m.c.n_voters ? m.c.voters[0] : -1;
                break;
            }
            case CR_STEP_TRANSFER:
                CHECK(raft_config_is_voter(&m.c, s.node));
                CHECK(s.node != leader);
                leader = s.node;
                break;
            default: CHECK(false);
            }
            if (leader < 0) break;
        }
        CHECK(done);
        CHECK_EQ((int)m.c.n_voters, n_new);
        CHECK_EQ((int)m.c.n_learners, 0);
        for (int i = 0; i < n_new; i++) CHECK(raft_config_is_voter(&m.c, tgt[i]));
        if (test_failed_now) {
            printf("failed run %d (seed above)\n", run);
            return;
        }
    }
}

/* Maintenance: a draining replica does not campaign while another voter may lead; when none
 * can (all draining or down), it campaigns (availability beats draining). */
TEST(draining_replica_campaigns_only_when_nobody_else_can_lead)
{
    struct model m;
    const int32_t v[] = {1, 2, 3};
    model_init(&m, 3, v, 10);
    cr_peer_fns f = {m_match, m_may_lead, &m};
    CHECK(cluster_reconfig_may_campaign(&m.c, 1, false, &f)); /* active: always */
    CHECK(!cluster_reconfig_may_campaign(&m.c, 1, true, &f));
    m.down[2] = true;
    CHECK(!cluster_reconfig_may_campaign(&m.c, 1, true, &f)); /* 3 may still lead */
    m.down[3] = true;
    CHECK(cluster_reconfig_may_campaign(&m.c, 1, true, &f)); /* nobody else: campaign */
    m.down[2] = false;
    CHECK(!cluster_reconfig_may_campaign(&m.c, 1, true, &f));
    /* a learner that may lead does not count: it cannot be elected */
    model_init(&m, 1, v, 10);
    m.c.n_learners = 2;
    m.c.learners[0] = 2;
    m.c.learners[1] = 3;
    CHECK(cluster_reconfig_may_campaign(&m.c, 1, true, &f));
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
