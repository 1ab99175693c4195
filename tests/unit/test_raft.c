/*
 * test_raft.c — unit tests of the Raft core: the wire codec, elections, pre-vote and leader
 * stickiness, log matching and suffix truncation, durable-only acknowledgements, the commit
 * rule of Raft §5.4.2 (the Figure 8 scenario), leadership transfer, membership changes with a
 * learner, the catch-up throttle, and heartbeat batching across groups. Scripted cluster
 * scenarios use the simulation driver (tests/sim/raft_sim.c) with faults off; single-node
 * tests drive one raft_group by hand and inspect its actions.
 */
#include "../sim/raft_sim.c"
#include "test.h"

static double mono_s_raft(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ a hand-driven single group */

#define OUT_MAX 256

typedef struct mnode {
    raft_group g;
    sim_log log;
    raft_hardstate hs;
    /* what the last drain produced */
    uint8_t *out[OUT_MAX];
    uint32_t out_len[OUT_MAX];
    uint32_t n_out;
    uint32_t n_act[8];
    int order[OUT_MAX]; /* action types in drain order */
    uint32_t n_order;
    int64_t last_commit;
} mnode;

static raft_options mopts(int32_t self)
{
    raft_options o;
    raft_options_default(&o);
    o.self = self;
    o.seed = 42;
    o.election_timeout_ms = 100;
    o.heartbeat_ms = 20;
    return o;
}

static void mnode_clear_out(mnode *n)
{
    for (uint32_t i = 0; i < n->n_out; i++) free(n->out[i]);
    n->n_out = 0;
    n->n_order = 0;
    memset(n->n_act, 0, sizeof(n->n_act));
}

/* Drains n's actions: applies log writes, persists hard state, encodes sends into n->out. */
static void mdrain(mnode *n)
{
    mnode_clear_out(n);
    raft_action a;
    while (raft_action_next(&n->g, &a) == 1) {
        if (a.type < 8) n->n_act[a.type]++;
        if (n->n_order < OUT_MAX) n->order[n->n_order++] = a.type;
        switch (a.type) {
        case RAFT_ACT_PERSIST: n->hs = a.hs; break;
        case RAFT_ACT_SEND:
            if (n->n_out < OUT_MAX) {
                size_t sz = raft_msg_size(&a.msg);
                n->out[n->n_out] = malloc(sz);
                AL_ASSERT(raft_msg_encode(&a.msg, n->out[n->n_out], sz) == (int)sz);
                n->out_len[n->n_out++] = (uint32_t)sz;
            }
            break;
        case RAFT_ACT_APPEND:
            for (uint32_t k = 0; k < a.n; k++) log_append(&n->log, &a.entries[k]);
            break;
        case RAFT_ACT_TRUNCATE: log_truncate(&n->log, a.offset); break;
        case RAFT_ACT_COMMIT: n->last_commit = a.offset; break;
        default: break;
        }
    }
}

static raft_entry m_ents[RAFT_MSG_MAX_ENTRIES];
static raft_hb_item m_hbs[64];

/* Decodes n's i-th outgoing message (entry arrays are shared: use before the next decode). */
static raft_msg mout(mnode *n, uint32_t i)
{
    raft_msg m;
    AL_ASSERT(i < n->n_out);
    AL_ASSERT(raft_msg_decode(n->out[i], n->out_len[i], &m, m_ents, RAFT_MSG_MAX_ENTRIES, m_hbs,
                              64) == 0);
    return m;
}

/* Starts the group of n (whose log the caller may have filled) with voters 0..n_voters-1. */
static void mnode_start(mnode *n, int32_t self, uint32_t n_voters, int64_t term)
{
    raft_options o = mopts(self);
    raft_config c = {.n_voters = (uint8_t)n_voters};
    for (uint32_t i = 0; i < n_voters; i++) c.voters[i] = (int32_t)i;
    n->hs = (raft_hardstate){term, RAFT_NODE_NONE};
    n->last_commit = -1;
    AL_ASSERT(raft_group_init(&n->g, &o, &sim_log_ops, &n->log, &n->hs, &c, 0) == 0);
}

static void mnode_init(mnode *n, int32_t self, uint32_t n_voters, int64_t term)
{
    memset(n, 0, sizeof(*n));
    mnode_start(n, self, n_voters, term);
}

static void mnode_free(mnode *n)
{
    mnode_clear_out(n);
    raft_group_free(&n->g);
    log_free(&n->log);
}

/* Puts an entry straight into the log (before the group is created). */
static void mlog_put(sim_log *l, int64_t offset, int32_t count, int64_t term)
{
    uint8_t d[8] = {(uint8_t)offset, (uint8_t)term};
    raft_entry e = {.offset = offset, .count = count, .term = term, .len = 8, .data = d};
    log_append(l, &e);
    log_flush(l);
}

static int mstep(mnode *n, raft_msg m)
{
    int rc = raft_step(&n->g, &m);
    mdrain(n);
    return rc;
}

static raft_msg vote_resp(int32_t from, int32_t to, int64_t term, bool pre, bool granted)
{
    raft_msg m = {.type = RAFT_MSG_VOTE_RESP, .from = from, .to = to, .term = term};
    m.flags = (uint8_t)((pre ? RAFT_F_PREVOTE : 0) | (granted ? RAFT_F_GRANTED : 0));
    return m;
}

static raft_msg append_resp(int32_t from, int32_t to, int64_t term, int64_t match)
{
    raft_msg m = {.type = RAFT_MSG_APPEND_RESP, .from = from, .to = to, .term = term,
                  .flags = RAFT_F_SUCCESS, .match = match};
    return m;
}

/* Makes node 0 of a hand-driven cluster leader with grants from voters 1..k. */
static void melect(mnode *n, uint32_t k)
{
    raft_tick(&n->g, 1000); /* past any election timeout */
    mdrain(n);
    CHECK_EQ(n->g.role, RAFT_PRECANDIDATE);
    int64_t t = n->g.term;
    for (uint32_t i = 1; i <= k && n->g.role == RAFT_PRECANDIDATE; i++)
        mstep(n, vote_resp((int32_t)i, 0, t + 1, true, true));
    CHECK_EQ(n->g.role, RAFT_CANDIDATE);
    CHECK_EQ(n->g.term, t + 1);
    CHECK_EQ(n->hs.term, t + 1);
    CHECK_EQ(n->hs.vote, 0);
    for (uint32_t i = 1; i <= k && n->g.role == RAFT_CANDIDATE; i++)
        mstep(n, vote_resp((int32_t)i, 0, t + 1, false, true));
    CHECK_EQ(n->g.role, RAFT_LEADER);
}

/* ------------------------------------------------------------ codec */

TEST(codec_round_trips_every_type)
{
    uint8_t d1[5] = "hello", d2[3] = "abc";
    raft_entry ents[2] = {{.offset = 10, .count = 3, .type = RAFT_ENTRY_DATA, .term = 7,
                           .len = 5, .data = d1},
                          {.offset = 13, .count = 1, .type = RAFT_ENTRY_CONFIG, .term = 7,
                           .len = 3, .data = d2}};
    raft_hb_item hb[2] = {{.group = 5, .type = RAFT_MSG_APPEND_REQ, .term = 3, .prev_offset = 9,
                           .prev_term = 2, .commit = 8},
                          {.group = 6, .type = RAFT_MSG_APPEND_RESP, .flags = RAFT_F_SUCCESS,
                           .term = 4, .match = 77}};
    raft_msg ms[7] = {
        {.type = RAFT_MSG_VOTE_REQ, .flags = RAFT_F_PREVOTE, .group = 1, .from = 1, .to = 2,
         .term = 5, .last_offset = 99, .last_term = 4},
        {.type = RAFT_MSG_VOTE_RESP, .flags = RAFT_F_GRANTED, .group = 1, .from = 2, .to = 1,
         .term = 5},
        {.type = RAFT_MSG_APPEND_REQ, .group = 9, .from = 0, .to = 3, .term = 7,
         .prev_offset = 9, .prev_term = 6, .commit = 5, .n_entries = 2, .entries = ents},
        {.type = RAFT_MSG_APPEND_RESP, .flags = RAFT_F_SUCCESS, .group = 9, .from = 3, .to = 0,
         .term = 7, .match = 13},
        {.type = RAFT_MSG_TIMEOUT_NOW, .group = 2, .from = 0, .to = 1, .term = 8},
        {.type = RAFT_MSG_HB_BATCH, .from = 0, .to = 1, .n_hb = 2, .hb = hb},
        {.type = RAFT_MSG_SNAPSHOT, .group = 4, .from = 0, .to = 2, .term = 9,
         .prev_offset = 41, .prev_term = 8, .commit = 50, .snap_total = 12, .snap_pos = 7,
         .snap_len = 5, .snap_data = d1, .snap_conf = {.n_voters = 2, .voters = {0, 2},
                                                        .n_learners = 1, .learners = {5}}},
    };
    for (int i = 0; i < 7; i++) {
        uint8_t buf[512];
        size_t sz = raft_msg_size(&ms[i]);
        CHECK(sz <= sizeof(buf));
        CHECK_EQ(raft_msg_encode(&ms[i], buf, sz), (int)sz);
        CHECK_EQ(raft_msg_encode(&ms[i], buf, sz - 1), AL_ETOOLARGE);
        raft_msg m;
        raft_entry de[4];
        raft_hb_item dh[4];
        CHECK_EQ(raft_msg_decode(buf, sz, &m, de, 4, dh, 4), 0);
        CHECK_EQ(m.type, ms[i].type);
        CHECK_EQ(m.flags, ms[i].flags);
        CHECK_EQ(m.group, ms[i].group);
        CHECK_EQ(m.from, ms[i].from);
        CHECK_EQ(m.to, ms[i].to);
        CHECK_EQ(m.term, ms[i].term);
        CHECK_EQ(m.last_offset, ms[i].last_offset);
        CHECK_EQ(m.last_term, ms[i].last_term);
        CHECK_EQ(m.prev_offset, ms[i].prev_offset);
        CHECK_EQ(m.prev_term, ms[i].prev_term);
        CHECK_EQ(m.commit, ms[i].commit);
        CHECK_EQ(m.match, ms[i].match);
        CHECK_EQ(m.n_entries, ms[i].n_entries);
        for (uint32_t k = 0; k < m.n_entries; k++) {
            CHECK_EQ(m.entries[k].offset, ents[k].offset);
            CHECK_EQ(m.entries[k].count, ents[k].count);
            CHECK_EQ(m.entries[k].type, ents[k].type);
            CHECK_EQ(m.entries[k].term, ents[k].term);
            CHECK_EQ(m.entries[k].len, ents[k].len);
            CHECK_MEM(m.entries[k].data, ents[k].data, ents[k].len);
        }
        CHECK_EQ(m.snap_total, ms[i].snap_total);
        CHECK_EQ(m.snap_pos, ms[i].snap_pos);
        CHECK_EQ(m.snap_len, ms[i].snap_len);
        if (m.snap_len) CHECK_MEM(m.snap_data, ms[i].snap_data, m.snap_len);
        if (m.type == RAFT_MSG_SNAPSHOT)
            CHECK_MEM(&m.snap_conf, &ms[i].snap_conf, sizeof(m.snap_conf));
        CHECK_EQ(m.n_hb, ms[i].n_hb);
        for (uint32_t k = 0; k < m.n_hb; k++) {
            CHECK_EQ(m.hb[k].group, hb[k].group);
            CHECK_EQ(m.hb[k].type, hb[k].type);
            CHECK_EQ(m.hb[k].flags, hb[k].flags);
            CHECK_EQ(m.hb[k].term, hb[k].term);
            CHECK_EQ(m.hb[k].prev_offset, hb[k].prev_offset);
            CHECK_EQ(m.hb[k].prev_term, hb[k].prev_term);
            CHECK_EQ(m.hb[k].commit, hb[k].commit);
            CHECK_EQ(m.hb[k].match, hb[k].match);
        }
        /* every truncation and every single-bit flip is rejected */
        for (size_t cut = 0; cut < sz; cut++)
            CHECK(raft_msg_decode(buf, cut, &m, de, 4, dh, 4) < 0);
        for (size_t bit = 0; bit < sz * 8; bit += 3) {
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            CHECK(raft_msg_decode(buf, sz, &m, de, 4, dh, 4) < 0);
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        /* arrays too small for the message */
        if (ms[i].n_entries) CHECK_EQ(raft_msg_decode(buf, sz, &m, de, 1, dh, 4), AL_ETOOLARGE);
        if (ms[i].n_hb) CHECK_EQ(raft_msg_decode(buf, sz, &m, de, 4, dh, 1), AL_ETOOLARGE);
    }
}

TEST(config_encoding)
{
    raft_config c = {.n_voters = 3, .voters = {4, 9, 2}, .n_learners = 1, .learners = {7}};
    uint8_t buf[128];
    size_t n = raft_config_encode(&c, buf);
    CHECK_EQ(n, raft_config_size(&c));
    raft_config d;
    CHECK_EQ(raft_config_decode(buf, n, &d), 0);
    CHECK_EQ(d.n_voters, 3);
    CHECK_EQ(d.voters[1], 9);
    CHECK_EQ(d.n_learners, 1);
    CHECK_EQ(d.learners[0], 7);
    CHECK(raft_config_is_voter(&d, 2) && !raft_config_is_voter(&d, 7));
    CHECK(raft_config_is_learner(&d, 7));
    CHECK(raft_config_decode(buf, n - 1, &d) < 0);
    buf[2 + 4 * 1 + 3] = 4; /* duplicate voter 4 */
    CHECK_EQ(raft_config_decode(buf, n, &d), AL_EMALFORMED);
}

/* ------------------------------------------------------------ elections */

static bool one_leader(sim *s)
{
    return sim_leader(s) >= 0 && s->nodes[0][sim_leader(s)].g.commit >= 0;
}

TEST(election_elects_one_leader_and_commits_noop)
{
    for (uint32_t n = 1; n <= 5; n += 2) {
        sim s;
        CHECK_EQ(sim_init(&s, n, 100 + n), 0);
        CHECK(sim_run_until(&s, 5000, one_leader));
        CHECK(sim_run_until(&s, 2000, sim_converged));
        int l = sim_leader(&s);
        uint32_t leaders = 0;
        for (uint32_t i = 0; i < n; i++) {
            leaders += s.nodes[0][i].g.role == RAFT_LEADER;
            CHECK_EQ(s.nodes[0][i].g.term, s.nodes[0][l].g.term);
            CHECK_EQ(s.nodes[0][i].g.leader, l);
            CHECK_EQ(s.nodes[0][i].hs.term, s.nodes[0][l].g.term); /* persisted */
        }
        CHECK_EQ(leaders, 1);
        CHECK_EQ(s.failure[0], 0);
        sim_free(&s);
    }
}

TEST(vote_is_persisted_before_the_grant_is_sent)
{
    mnode f;
    mnode_init(&f, 1, 3, 2);
    raft_msg req = {.type = RAFT_MSG_VOTE_REQ, .from = 0, .to = 1, .term = 3,
                    .last_offset = -1, .last_term = 0};
    mstep(&f, req);
    CHECK_EQ(f.n_out, 1);
    raft_msg r = mout(&f, 0);
    CHECK(r.flags & RAFT_F_GRANTED);
    CHECK_EQ(f.hs.term, 3);
    CHECK_EQ(f.hs.vote, 0);
    /* PERSIST comes before SEND in the drain order */
    int persist_at = -1, send_at = -1;
    for (uint32_t i = 0; i < f.n_order; i++) {
        if (f.order[i] == RAFT_ACT_PERSIST && persist_at < 0) persist_at = (int)i;
        if (f.order[i] == RAFT_ACT_SEND && send_at < 0) send_at = (int)i;
    }
    CHECK(persist_at >= 0 && send_at > persist_at);
    /* a second candidate in the same term is refused */
    req.from = 2;
    mstep(&f, req);
    CHECK_EQ(f.n_out, 1);
    CHECK(!(mout(&f, 0).flags & RAFT_F_GRANTED));
    mnode_free(&f);
}

TEST(vote_refused_to_a_less_up_to_date_log)
{
    mnode f;
    memset(&f, 0, sizeof(f));
    mlog_put(&f.log, 0, 1, 1);
    mnode_start(&f, 1, 3, 2);
    CHECK_EQ(f.g.last, 0);
    CHECK_EQ(f.g.last_term, 1);
    raft_msg req = {.type = RAFT_MSG_VOTE_REQ, .from = 0, .to = 1, .term = 5,
                    .last_offset = -1, .last_term = 0};
    mstep(&f, req);
    CHECK(!(mout(&f, 0).flags & RAFT_F_GRANTED));
    CHECK_EQ(f.g.term, 5); /* the term is still adopted */
    req.from = 2;
    req.last_offset = 0;
    req.last_term = 1;
    mstep(&f, req);
    CHECK(mout(&f, 0).flags & RAFT_F_GRANTED);
    mnode_free(&f);
}

TEST(prevote_keeps_an_isolated_node_from_disrupting)
{
    sim s;
    CHECK_EQ(sim_init(&s, 3, 7), 0);
    CHECK(sim_run_until(&s, 5000, one_leader));
    int l = sim_leader(&s);
    int iso = (l + 1) % 3;
    int64_t term = s.nodes[0][l].g.term;
    sim_partition(&s, 1u << iso);
    sim_run(&s, 5000); /* many election timeouts */
    /* pre-vote never wins without a quorum, so the isolated node never bumps its term */
    CHECK_EQ(s.nodes[0][iso].g.term, term);
    CHECK(s.nodes[0][iso].g.role != RAFT_LEADER);
    sim_partition(&s, 0);
    sim_run(&s, 2000);
    CHECK_EQ(sim_leader(&s), l);
    CHECK_EQ(s.nodes[0][l].g.term, term);
    CHECK(sim_run_until(&s, 2000, sim_converged));
    CHECK_EQ(s.failure[0], 0);
    sim_free(&s);
}

TEST(leader_stickiness_ignores_vote_requests_while_leader_is_alive)
{
    mnode f;
    mnode_init(&f, 1, 3, 1);
    /* hear from leader 0 */
    raft_msg hb = {.type = RAFT_MSG_APPEND_REQ, .from = 0, .to = 1, .term = 1,
                   .prev_offset = -1, .prev_term = 0, .commit = -1};
    mstep(&f, hb);
    CHECK_EQ(f.g.leader, 0);
    raft_msg req = {.type = RAFT_MSG_VOTE_REQ, .from = 2, .to = 1, .term = 9,
                    .last_offset = 100, .last_term = 8};
    mstep(&f, req);
    CHECK_EQ(f.n_out, 0);
    CHECK_EQ(f.g.term, 1);
    /* ...unless it is a leadership transfer */
    req.flags = RAFT_F_TRANSFER;
    mstep(&f, req);
    CHECK_EQ(f.g.term, 9);
    CHECK(mout(&f, 0).flags & RAFT_F_GRANTED);
    mnode_free(&f);
}

TEST(check_quorum_makes_a_cut_off_leader_step_down)
{
    sim s;
    CHECK_EQ(sim_init(&s, 5, 11), 0);
    CHECK(sim_run_until(&s, 5000, one_leader));
    int l = sim_leader(&s);
    sim_partition(&s, 1u << l);
    sim_run(&s, 2000);
    CHECK(s.nodes[0][l].g.role != RAFT_LEADER);
    int l2 = sim_leader(&s);
    CHECK(l2 >= 0 && l2 != l);
    CHECK_EQ(s.failure[0], 0);
    sim_free(&s);
}

/* ------------------------------------------------------------ replication */

TEST(follower_acknowledges_only_after_flush)
{
    mnode f;
    mnode_init(&f, 1, 3, 1);
    uint8_t d[4] = "abcd";
    raft_entry e[2] = {{.offset = 0, .count = 2, .term = 1, .len = 4, .data = d},
                       {.offset = 2, .count = 1, .term = 1, .len = 4, .data = d}};
    raft_msg m = {.type = RAFT_MSG_APPEND_REQ, .from = 0, .to = 1, .term = 1, .prev_offset = -1,
                  .prev_term = 0, .commit = -1, .n_entries = 2, .entries = e};
    mstep(&f, m);
    CHECK_EQ(f.n_act[RAFT_ACT_APPEND], 1);
    CHECK_EQ(f.n_out, 0); /* nothing acknowledged yet */
    CHECK_EQ(f.g.last, 2);
    raft_append_done(&f.g, 2, 1);
    mdrain(&f);
    CHECK_EQ(f.n_act[RAFT_ACT_FLUSH], 1);
    CHECK_EQ(f.n_out, 0);
    raft_flush_done(&f.g, 1); /* partly durable */
    mdrain(&f);
    CHECK_EQ(f.n_out, 1);
    raft_msg r = mout(&f, 0);
    CHECK(r.flags & RAFT_F_SUCCESS);
    CHECK_EQ(r.match, 1);
    raft_flush_done(&f.g, 2);
    mdrain(&f);
    CHECK_EQ(mout(&f, 0).match, 2);
    /* a stale append_done (for a term the log no longer has there) is ignored */
    raft_append_done(&f.g, 2, 5);
    mdrain(&f);
    CHECK_EQ(f.n_act[RAFT_ACT_FLUSH], 0);
    mnode_free(&f);
}

TEST(follower_appends_a_prefix_when_its_entry_pool_is_short)
{
    mnode f;
    memset(&f, 0, sizeof(f));
    raft_options o = mopts(1);
    o.entry_pool = 16;
    raft_config c = {.n_voters = 3, .voters = {0, 1, 2}};
    f.hs = (raft_hardstate){1, RAFT_NODE_NONE};
    CHECK_EQ(raft_group_init(&f.g, &o, &sim_log_ops, &f.log, &f.hs, &c, 0), 0);
    uint8_t d[2] = "x";
    raft_entry e[20];
    for (int i = 0; i < 20; i++)
        e[i] = (raft_entry){.offset = i, .count = 1, .term = 1, .len = 1, .data = d};
    raft_msg m = {.type = RAFT_MSG_APPEND_REQ, .from = 0, .to = 1, .term = 1, .prev_offset = -1,
                  .prev_term = 0, .commit = 19, .n_entries = 20, .entries = e};
    CHECK_EQ(mstep(&f, m), 0);
    CHECK_EQ(f.g.last, 15);
    CHECK_EQ(op_last(&f.log), 15);
    CHECK_EQ(f.g.commit, 15); /* never past what it verified */
    raft_flush_done(&f.g, 15);
    mdrain(&f);
    CHECK_EQ(mout(&f, 0).match, 15);
    mnode_free(&f);
}

TEST(log_matching_rejects_then_truncates_the_conflicting_suffix)
{
    mnode f;
    memset(&f, 0, sizeof(f));
    /* follower log: [0..1] t1, [2] t2, [3..5] t2 -- the leader (term 3) has [2] t3 instead */
    mlog_put(&f.log, 0, 2, 1);
    mlog_put(&f.log, 2, 1, 2);
    mlog_put(&f.log, 3, 3, 2);
    raft_options o = mopts(1);
    raft_config c = {.n_voters = 3, .voters = {0, 1, 2}};
    f.hs = (raft_hardstate){2, RAFT_NODE_NONE};
    f.last_commit = -1;
    CHECK_EQ(raft_group_init(&f.g, &o, &sim_log_ops, &f.log, &f.hs, &c, 0), 0);
    CHECK_EQ(f.g.last, 5);
    uint8_t d[4] = "xxxx";
    raft_entry e[2] = {{.offset = 2, .count = 1, .term = 3, .len = 4, .data = d},
                       {.offset = 3, .count = 1, .term = 3, .len = 4, .data = d}};
    /* prev (6, 3) is past the follower's end: rejected with its last offset as the hint */
    raft_msg m = {.type = RAFT_MSG_APPEND_REQ, .from = 0, .to = 1, .term = 3, .prev_offset = 6,
                  .prev_term = 3, .commit = 1};
    mstep(&f, m);
    raft_msg r = mout(&f, 0);
    CHECK(!(r.flags & RAFT_F_SUCCESS));
    CHECK_EQ(r.match, 5);
    /* prev (5, 3) exists with another term: rejected, hint 4 */
    m.prev_offset = 5;
    mstep(&f, m);
    r = mout(&f, 0);
    CHECK(!(r.flags & RAFT_F_SUCCESS));
    CHECK_EQ(r.match, 4);
    CHECK_EQ(f.n_act[RAFT_ACT_TRUNCATE], 0);
    /* prev (1, 1) matches; entry 2 conflicts: truncate from 2 and append */
    m.prev_offset = 1;
    m.prev_term = 1;
    m.n_entries = 2;
    m.entries = e;
    mstep(&f, m);
    CHECK_EQ(f.n_act[RAFT_ACT_TRUNCATE], 1);
    CHECK_EQ(f.n_act[RAFT_ACT_APPEND], 1);
    CHECK_EQ(f.g.last, 3);
    CHECK_EQ(f.g.last_term, 3);
    CHECK_EQ(op_last(&f.log), 3);
    CHECK_EQ(op_term_at(&f.log, 2), 3);
    CHECK_EQ(f.g.commit, 1);
    /* the same request again (a duplicate), or an older shorter one, truncates nothing */
    mstep(&f, m);
    CHECK_EQ(f.n_act[RAFT_ACT_TRUNCATE], 0);
    CHECK_EQ(f.n_act[RAFT_ACT_APPEND], 0);
    m.n_entries = 1;
    mstep(&f, m);
    CHECK_EQ(f.n_act[RAFT_ACT_TRUNCATE], 0);
    CHECK_EQ(f.g.last, 3);
    /* malformed: entries not contiguous with prev */
    m.prev_offset = 0;
    CHECK_EQ(mstep(&f, m), AL_EINVAL);
    mnode_free(&f);
}

TEST(divergent_follower_is_found_in_two_round_trips)
{
    /* leader: [0..99] t1, then 51 one-offset entries of t3; elected in term 4 (no-op at 151) */
    mnode l;
    memset(&l, 0, sizeof(l));
    mlog_put(&l.log, 0, 100, 1);
    for (int i = 100; i <= 150; i++) mlog_put(&l.log, i, 1, 3);
    l.hs = (raft_hardstate){3, RAFT_NODE_NONE};
    mnode_start(&l, 0, 3, 3);
    melect(&l, 1);
    /* follower: [0..99] t1, then 1000 offsets of term 2 from a deposed leader */
    mnode f;
    memset(&f, 0, sizeof(f));
    mlog_put(&f.log, 0, 100, 1);
    for (int i = 0; i < 10; i++) mlog_put(&f.log, 100 + 100 * i, 100, 2);
    f.hs = (raft_hardstate){4, RAFT_NODE_NONE};
    mnode_start(&f, 1, 3, 4);
    int trips = 0;
    raft_msg req = {0};
    for (; trips < 10; trips++) {
        /* the leader's latest request to node 1 */
        bool found = false;
        for (uint32_t i = 0; i < l.n_out; i++) {
            raft_msg m = mout(&l, i);
            if (m.type == RAFT_MSG_APPEND_REQ && m.to == 1 && m.n_entries) {
                req = m;
                found = true;
            }
        }
        CHECK(found);
        /* step it into the follower (copying the entries: mout's arrays are shared) */
        raft_entry ents[64];
        CHECK(req.n_entries <= 64);
        memcpy(ents, req.entries, sizeof(ents[0]) * req.n_entries);
        req.entries = ents;
        mstep(&f, req);
        if (f.n_act[RAFT_ACT_APPEND]) break;
        CHECK_EQ(f.n_out, 1);
        raft_msg rej = mout(&f, 0);
        CHECK(!(rej.flags & RAFT_F_SUCCESS));
        mstep(&l, rej);
    }
    CHECK(trips <= 2);
    CHECK_EQ(req.prev_offset, 99);
    CHECK_EQ(f.n_act[RAFT_ACT_TRUNCATE], 1);
    CHECK_EQ(f.g.last, 151);
    CHECK_EQ(op_term_at(&f.log, 120), 3);
    mnode_free(&l);
    mnode_free(&f);
}

TEST(pipelined_appends_respect_the_window)
{
    mnode l;
    mnode_init(&l, 0, 2, 0);
    l.g.opt.max_inflight_msgs = 3;
    l.g.opt.max_msg_entries = 1;
    melect(&l, 1);
    /* follower 1 acknowledges the no-op so it leaves probe mode */
    mstep(&l, append_resp(1, 0, l.g.term, 0));
    uint8_t d[10] = {0};
    for (int i = 0; i < 10; i++) {
        raft_entry e = {.count = 1, .len = 10, .data = d};
        int64_t base;
        CHECK_EQ(raft_propose(&l.g, &e, 1, &base), 0);
        CHECK_EQ(base, 1 + i);
        mdrain(&l);
    }
    /* 3 requests in flight at most, one entry each */
    CHECK_EQ(l.g.pr[0].n_inflight, 3);
    CHECK_EQ(l.g.pr[0].next, 4);
    /* acknowledging 2 opens the window by 2 */
    mstep(&l, append_resp(1, 0, l.g.term, 2));
    CHECK_EQ(l.n_out, 2);
    CHECK_EQ(l.g.pr[0].next, 6);
    /* nothing commits until the leader itself has flushed */
    CHECK_EQ(l.g.commit, -1);
    raft_append_done(&l.g, 10, l.g.term);
    mdrain(&l);
    raft_flush_done(&l.g, 10);
    mdrain(&l);
    CHECK_EQ(l.g.commit, 2);
    CHECK_EQ(l.last_commit, 2);
    mnode_free(&l);
}

static int defer_reads; /* reads that still answer "not in memory yet" */

static int op_read_deferred(void *ctx, int64_t from, raft_entry *out, int max, size_t max_bytes)
{
    if (defer_reads > 0) {
        defer_reads--;
        return 0;
    }
    return op_read(ctx, from, out, max, max_bytes);
}

static const raft_log_ops deferred_ops = {op_term_at, op_last, op_read_deferred};

TEST(a_log_read_that_is_not_ready_is_retried_on_later_ticks)
{
    mnode l;
    memset(&l, 0, sizeof(l));
    for (int i = 0; i < 5; i++) mlog_put(&l.log, i, 1, 1);
    raft_options o = mopts(0);
    raft_config c = {.n_voters = 2, .voters = {0, 1}};
    l.hs = (raft_hardstate){1, RAFT_NODE_NONE};
    CHECK_EQ(raft_group_init(&l.g, &o, &deferred_ops, &l.log, &l.hs, &c, 0), 0);
    melect(&l, 1);
    /* the follower is empty: after its rejection the leader must read from offset 0 */
    defer_reads = 3;
    raft_msg rej = {.type = RAFT_MSG_APPEND_RESP, .from = 1, .to = 0, .term = l.g.term,
                    .match = -1};
    mstep(&l, rej);
    CHECK_EQ(l.n_out, 0); /* nothing to send yet */
    uint64_t now = 1000;
    int ticks = 0;
    bool sent = false;
    for (; ticks < 10 && !sent; ticks++) {
        raft_tick(&l.g, ++now);
        mdrain(&l);
        for (uint32_t i = 0; i < l.n_out; i++) {
            raft_msg m = mout(&l, i);
            if (m.type == RAFT_MSG_APPEND_REQ && m.n_entries && m.entries[0].offset == 0)
                sent = true;
        }
    }
    CHECK(sent);
    CHECK_EQ(ticks, 3); /* the two remaining deferred reads, then the data */
    mnode_free(&l);
}

TEST(catchup_throttle_bounds_bytes_per_tick)
{
    mnode l;
    memset(&l, 0, sizeof(l));
    for (int i = 0; i < 50; i++) mlog_put(&l.log, i, 1, 1); /* 8 bytes each */
    raft_options o = mopts(0);
    o.catchup_bytes_per_tick = 40;
    o.max_inflight_msgs = 64;
    o.max_msg_entries = 2;
    raft_config c = {.n_voters = 2, .voters = {0, 1}};
    l.hs = (raft_hardstate){1, RAFT_NODE_NONE};
    CHECK_EQ(raft_group_init(&l.g, &o, &sim_log_ops, &l.log, &l.hs, &c, 0), 0);
    melect(&l, 1);
    /* the follower is empty: it rejects the probe, the leader goes back to 0 */
    raft_msg rej = {.type = RAFT_MSG_APPEND_RESP, .from = 1, .to = 0, .term = l.g.term,
                    .match = -1};
    mstep(&l, rej);
    CHECK_EQ(l.n_out, 1);
    mstep(&l, append_resp(1, 0, l.g.term, 1)); /* now replicating */
    uint64_t now = 1000;
    for (int t = 0; t < 5; t++) {
        uint64_t bytes = 0;
        for (uint32_t i = 0; i < l.n_out; i++) {
            raft_msg m = mout(&l, i);
            for (uint32_t k = 0; k < m.n_entries; k++) bytes += m.entries[k].len;
        }
        /* at most the budget plus one request's worth of overshoot */
        CHECK(bytes <= 40 + 16);
        now += 1;
        raft_tick(&l.g, now);
        mdrain(&l);
    }
    CHECK(l.g.pr[0].next < 50); /* still catching up: throttled */
    mnode_free(&l);
}

/* ------------------------------------------------------------ commit rule (Figure 8) */

TEST(figure8_old_term_entry_is_not_committed_by_counting)
{
    /* Leader-to-be holds [0] t1, [1] t2 (t2 entry never committed); 5 voters. */
    mnode l;
    memset(&l, 0, sizeof(l));
    mlog_put(&l.log, 0, 1, 1);
    mlog_put(&l.log, 1, 1, 2);
    raft_options o = mopts(0);
    raft_config c = {.n_voters = 5, .voters = {0, 1, 2, 3, 4}};
    l.hs = (raft_hardstate){3, RAFT_NODE_NONE};
    CHECK_EQ(raft_group_init(&l.g, &o, &sim_log_ops, &l.log, &l.hs, &c, 0), 0);
    melect(&l, 2);
    CHECK_EQ(l.g.term, 4);
    CHECK_EQ(l.g.last, 2); /* the no-op of term 4 */
    CHECK_EQ(op_term_at(&l.log, 2), 4);
    raft_append_done(&l.g, 2, 4);
    mdrain(&l);
    raft_flush_done(&l.g, 2);
    mdrain(&l);
    /* offset 1 (term 2) reaches a majority (0, 1, 2): it must NOT be committed by counting,
     * since a term-3 leader could still overwrite it (Raft §5.4.2, Figure 8) */
    mstep(&l, append_resp(1, 0, 4, 1));
    mstep(&l, append_resp(2, 0, 4, 1));
    CHECK_EQ(l.g.commit, -1);
    /* once the term-4 no-op is on a majority, everything up to it commits */
    mstep(&l, append_resp(1, 0, 4, 2));
    CHECK_EQ(l.g.commit, -1);
    mstep(&l, append_resp(3, 0, 4, 2));
    CHECK_EQ(l.g.commit, 2);
    CHECK_EQ(l.last_commit, 2);
    mnode_free(&l);
}

/* ------------------------------------------------------------ scripted cluster scenarios */

TEST(old_leader_uncommitted_suffix_is_truncated_after_partition)
{
    sim s;
    CHECK_EQ(sim_init(&s, 5, 21), 0);
    CHECK(sim_run_until(&s, 5000, one_leader));
    int old = sim_leader(&s);
    for (int i = 0; i < 5; i++) sim_propose(&s, old, 2);
    CHECK(sim_run_until(&s, 2000, sim_converged));
    /* the old leader (with one follower) is cut off and keeps taking writes */
    int buddy = (old + 1) % 5;
    sim_partition(&s, (1u << old) | (1u << buddy));
    for (int i = 0; i < 5; i++) CHECK(sim_propose(&s, old, 1) > 0);
    sim_run(&s, 3000);
    int nl = sim_leader(&s);
    CHECK(nl >= 0 && nl != old && nl != buddy);
    for (int i = 0; i < 5; i++) CHECK(sim_propose(&s, nl, 3) > 0);
    sim_run(&s, 500);
    sim_partition(&s, 0);
    CHECK(sim_run_until(&s, 5000, sim_converged));
    CHECK(s.n_truncates >= 2); /* the old leader and its buddy dropped their suffix */
    /* the writes made in the minority were never acknowledged; the majority's were */
    uint32_t acked_old = 0, acked_new = 0;
    for (uint32_t p = 0; p < s.grp[0].n_props; p++) {
        const sim_proposal *pr = &s.grp[0].props[p];
        if (pr->node == old && pr->term == s.nodes[0][nl].g.term) continue;
        if (pr->acked) *(pr->node == nl ? &acked_new : &acked_old) += 1;
    }
    CHECK_EQ(acked_new, 5);
    CHECK_EQ(acked_old, 5); /* only the 5 before the partition */
    sim_check_final(&s);
    CHECK_EQ(s.failure[0], 0);
    sim_free(&s);
}

TEST(one_way_link_loss_keeps_the_leader_and_commits_through_the_majority)
{
    sim s;
    CHECK_EQ(sim_init(&s, 3, 55), 0);
    CHECK(sim_run_until(&s, 5000, one_leader));
    int l = sim_leader(&s);
    int f = (l + 1) % 3;
    int64_t term = s.nodes[0][l].g.term;
    s.cut[f][l] = true; /* f hears the leader but its answers are lost */
    for (int i = 0; i < 50; i++) {
        CHECK(sim_propose(&s, l, 1) > 0);
        sim_run(&s, 20);
    }
    sim_run(&s, 2000);
    CHECK_EQ(sim_leader(&s), l);
    CHECK_EQ(s.nodes[0][l].g.term, term); /* f never campaigns: it keeps hearing the leader */
    CHECK_EQ(s.nodes[0][f].g.term, term);
    uint32_t acked = 0;
    for (uint32_t p = 0; p < s.grp[0].n_props; p++) acked += s.grp[0].props[p].acked;
    CHECK_EQ(acked, 50);
    /* without acknowledgements the leader keeps re-probing f from the last match it knows:
     * f is behind but consistent (the sim checks its log against the committed record) */
    CHECK(s.nodes[0][f].g.commit <= s.nodes[0][l].g.commit);
    CHECK_EQ(s.nodes[0][f].g.leader, l);
    s.cut[f][l] = false;
    CHECK(sim_run_until(&s, 2000, sim_converged));
    sim_check_final(&s);
    CHECK_EQ(s.failure[0], 0);
    sim_free(&s);
}

TEST(leadership_transfer_hands_over_to_the_target)
{
    sim s;
    CHECK_EQ(sim_init(&s, 3, 33), 0);
    CHECK(sim_run_until(&s, 5000, one_leader));
    int l = sim_leader(&s);
    int t = (l + 2) % 3;
    for (int i = 0; i < 20; i++) sim_propose(&s, l, 1);
    int64_t term = s.nodes[0][l].g.term;
    CHECK_EQ(raft_transfer_leadership(&s.nodes[0][l].g, t), 0);
    sim_drain(&s, l);
    /* while the transfer is pending the leader refuses writes */
    CHECK_EQ(sim_propose(&s, l, 1), RAFT_EBUSY);
    sim_run(&s, 200); /* well under an election timeout */
    CHECK_EQ(sim_leader(&s), t);
    CHECK_EQ(s.nodes[0][t].g.term, term + 1);
    CHECK(s.nodes[0][l].g.role == RAFT_FOLLOWER);
    CHECK(sim_run_until(&s, 2000, sim_converged));
    sim_check_final(&s);
    CHECK_EQ(s.failure[0], 0);
    /* errors: not leader, unknown target */
    CHECK_EQ(raft_transfer_leadership(&s.nodes[0][l].g, t), RAFT_ENOTLEADER);
    sim_drain(&s, l);
    CHECK_EQ(raft_transfer_leadership(&s.nodes[0][t].g, 9), AL_EINVAL);
    sim_drain(&s, t);
    sim_free(&s);
}

/* Maintenance mode: a node that may not campaign never leads, over many elections (the
 * leader crashed each round), while the others keep electing; handed the leadership by a
 * transfer it takes it. */
TEST(a_node_that_may_not_campaign_wins_no_election)
{
    for (uint64_t seed = 0; seed < 4; seed++) {
        sim s;
        CHECK_EQ(sim_init(&s, 3, 900 + seed), 0);
        raft_set_campaign(&s.nodes[0][2].g, false);
        for (int round = 0; round < 6; round++) {
            CHECK(sim_run_until(&s, 10000, one_leader));
            int l = sim_leader(&s);
            CHECK(l != 2);
            sim_crash(&s, l);
            sim_run(&s, 100);
            sim_restart(&s, l);
        }
        CHECK(sim_run_until(&s, 10000, one_leader));
        CHECK(sim_leader(&s) != 2);
        int l = sim_leader(&s);
        CHECK(sim_run_until(&s, 5000, sim_converged));
        CHECK_EQ(raft_transfer_leadership(&s.nodes[0][l].g, 2), 0);
        sim_drain(&s, l);
        sim_run(&s, 500);
        CHECK_EQ(sim_leader(&s), 2);
        CHECK_EQ(s.failure[0], 0);
        sim_free(&s);
    }
}

static bool learner_caught_up(sim *s)
{
    int l = sim_leader(s);
    return l >= 0 && raft_replica_caught_up(&s->nodes[0][l].g, 3);
}

static bool conf_committed(sim *s)
{
    int l = sim_leader(s);
    return l >= 0 && s->nodes[0][l].g.conf_offset <= s->nodes[0][l].g.commit && sim_converged(s);
}

TEST(membership_add_learner_promote_and_remove_the_leader)
{
    sim s;
    CHECK_EQ(sim_init_conf(&s, 4, 3, 44), 0); /* node 3 starts outside the config */
    CHECK(sim_run_until(&s, 5000, one_leader));
    int l = sim_leader(&s);
    CHECK(l < 3);
    for (int i = 0; i < 30; i++) sim_propose(&s, l, 2);
    sim_run(&s, 300);
    CHECK(s.nodes[0][3].g.last == -1); /* nobody replicates to it yet */
    CHECK_EQ(raft_change_membership(&s.nodes[0][l].g, RAFT_CONF_ADD_LEARNER, 3), 0);
    sim_drain(&s, l);
    /* one change at a time */
    CHECK_EQ(raft_change_membership(&s.nodes[0][l].g, RAFT_CONF_REMOVE, 0), RAFT_EBUSY);
    sim_drain(&s, l);
    CHECK(sim_run_until(&s, 5000, learner_caught_up));
    CHECK(sim_run_until(&s, 2000, conf_committed));
    CHECK(raft_config_is_learner(&s.nodes[0][3].g.conf, 3));
    CHECK_EQ(s.nodes[0][3].g.last, s.nodes[0][l].g.last);
    CHECK_EQ(raft_change_membership(&s.nodes[0][l].g, RAFT_CONF_PROMOTE, 3), 0);
    sim_drain(&s, l);
    CHECK(sim_run_until(&s, 2000, conf_committed));
    for (int i = 0; i < 4; i++) {
        CHECK(raft_config_is_voter(&s.nodes[0][i].g.conf, 3));
        CHECK_EQ(s.nodes[0][i].g.conf.n_voters, 4);
    }
    /* remove the leader itself: it steps down once the change commits */
    CHECK_EQ(raft_change_membership(&s.nodes[0][l].g, RAFT_CONF_REMOVE, l), 0);
    sim_drain(&s, l);
    CHECK(sim_run_until(&s, 5000, conf_committed));
    int nl = sim_leader(&s);
    CHECK(nl >= 0 && nl != l);
    CHECK(!raft_config_is_voter(&s.nodes[0][nl].g.conf, l));
    CHECK_EQ(s.nodes[0][nl].g.conf.n_voters, 3);
    for (int i = 0; i < 5; i++) CHECK(sim_propose(&s, nl, 1) > 0);
    CHECK(sim_run_until(&s, 2000, sim_converged));
    /* the removed node never campaigns again */
    int64_t t = s.nodes[0][nl].g.term;
    sim_run(&s, 3000);
    CHECK_EQ(s.nodes[0][nl].g.term, t);
    CHECK_EQ(sim_leader(&s), nl);
    sim_check_final(&s);
    if (s.failure[0]) fprintf(stderr, "    %s\n", s.failure);
    CHECK_EQ(s.failure[0], 0);
    sim_free(&s);
}

TEST(config_entry_is_reverted_when_truncated)
{
    mnode f;
    mnode_init(&f, 1, 3, 1);
    raft_config c = {.n_voters = 2, .voters = {0, 1}};
    uint8_t buf[64];
    raft_entry e = {.offset = 0, .count = 1, .term = 1, .type = RAFT_ENTRY_CONFIG,
                    .len = (uint32_t)raft_config_encode(&c, buf), .data = buf};
    raft_msg m = {.type = RAFT_MSG_APPEND_REQ, .from = 0, .to = 1, .term = 1, .prev_offset = -1,
                  .prev_term = 0, .commit = -1, .n_entries = 1, .entries = &e};
    mstep(&f, m);
    CHECK_EQ(f.g.conf.n_voters, 2); /* effective when appended */
    raft_entry e2 = {.offset = 0, .count = 1, .term = 2, .len = 4, .data = buf};
    m.term = 2;
    m.from = 2;
    m.entries = &e2;
    mstep(&f, m);
    CHECK_EQ(f.n_act[RAFT_ACT_TRUNCATE], 1);
    CHECK_EQ(f.g.conf.n_voters, 3); /* back to the bootstrap config */
    mnode_free(&f);
}

/* ------------------------------------------------------------ heartbeat batching */

#define HB_GROUPS 3

typedef struct hb_host {
    mnode n[HB_GROUPS];
    raft_scratch sc; /* the host's groups share one action queue */
    raft_hb_batcher b;
    uint32_t batches_out, items_out, singles_out;
    uint8_t *wire[64];
    uint32_t wire_len[64];
    uint32_t n_wire;
} hb_host;

static hb_host hb_hosts[2];

/* Moves every action of group gi on host h out: batchable sends into the batcher, others
 * encoded onto the host's wire. */
static void hb_collect(hb_host *h, int gi)
{
    mdrain(&h->n[gi]);
    for (uint32_t i = 0; i < h->n[gi].n_out; i++) {
        raft_msg m = mout(&h->n[gi], i);
        int rc = raft_hb_batcher_add(&h->b, &m);
        AL_ASSERT(rc >= 0);
        if (rc == 0 && h->n_wire < 64) {
            h->wire[h->n_wire] = h->n[gi].out[i];
            h->wire_len[h->n_wire++] = h->n[gi].out_len[i];
            h->n[gi].out[i] = NULL;
            h->singles_out++;
        }
    }
}

static void hb_flush(hb_host *h)
{
    raft_msg b;
    while (raft_hb_batcher_take(&h->b, &b) == 1 && h->n_wire < 64) {
        size_t sz = raft_msg_size(&b);
        h->wire[h->n_wire] = malloc(sz);
        AL_ASSERT(raft_msg_encode(&b, h->wire[h->n_wire], sz) == (int)sz);
        h->wire_len[h->n_wire++] = (uint32_t)sz;
        h->batches_out++;
        h->items_out += b.n_hb;
    }
}

static raft_group *hb_find(void *ctx, uint64_t group)
{
    hb_host *h = ctx;
    for (int i = 0; i < HB_GROUPS; i++)
        if (h->n[i].g.opt.group == group) return &h->n[i].g;
    return NULL;
}

static void hb_after_step(void *ctx, raft_group *g)
{
    hb_host *h = ctx;
    for (int i = 0; i < HB_GROUPS; i++)
        if (&h->n[i].g == g) hb_collect(h, i);
}

/* Delivers everything on host src's wire to the other host. Returns messages delivered. */
static int hb_deliver(int src)
{
    hb_host *from = &hb_hosts[src], *to = &hb_hosts[1 - src];
    int n = 0;
    for (uint32_t w = 0; w < from->n_wire; w++) {
        raft_msg m;
        static raft_entry ents[64];
        static raft_hb_item hbs[64];
        AL_ASSERT(raft_msg_decode(from->wire[w], from->wire_len[w], &m, ents, 64, hbs, 64) == 0);
        if (m.type == RAFT_MSG_HB_BATCH) {
            AL_ASSERT(raft_hb_dispatch(&m, hb_find, hb_after_step, to) == (int)m.n_hb);
        } else {
            raft_group *g = hb_find(to, m.group);
            raft_step(g, &m);
            hb_after_step(to, g);
        }
        free(from->wire[w]);
        n++;
    }
    from->n_wire = 0;
    hb_flush(to);
    return n;
}

TEST(heartbeats_of_many_groups_travel_in_one_batch)
{
    memset(hb_hosts, 0, sizeof(hb_hosts));
    for (int h = 0; h < 2; h++) {
        CHECK_EQ(raft_hb_batcher_init(&hb_hosts[h].b, h, 4, 16), 0);
        CHECK_EQ(raft_scratch_init(&hb_hosts[h].sc, 64, 64), 0);
        for (int i = 0; i < HB_GROUPS; i++) {
            mnode *n = &hb_hosts[h].n[i];
            memset(n, 0, sizeof(*n));
            raft_options o = mopts(h);
            o.group = 10 + (uint64_t)i;
            o.scratch = &hb_hosts[h].sc;
            raft_config c = {.n_voters = 2, .voters = {0, 1}};
            n->hs = (raft_hardstate){0, RAFT_NODE_NONE};
            CHECK_EQ(raft_group_init(&n->g, &o, &sim_log_ops, &n->log, &n->hs, &c, 0), 0);
        }
    }
    /* host 0 campaigns in every group; host 1 is never ticked, so it only follows */
    for (int i = 0; i < HB_GROUPS; i++) {
        raft_tick(&hb_hosts[0].n[i].g, 1000);
        hb_collect(&hb_hosts[0], i);
    }
    hb_flush(&hb_hosts[0]);
    for (int round = 0; round < 20; round++) {
        int moved = hb_deliver(0) + hb_deliver(1);
        /* complete the disk writes on both hosts */
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < HB_GROUPS; i++) {
                mnode *n = &hb_hosts[h].n[i];
                raft_append_done(&n->g, n->g.last, n->g.last_term);
                hb_collect(&hb_hosts[h], i);
                log_flush(&n->log);
                raft_flush_done(&n->g, n->g.last);
                hb_collect(&hb_hosts[h], i);
            }
        hb_flush(&hb_hosts[0]);
        hb_flush(&hb_hosts[1]);
        if (!moved && !hb_hosts[0].n_wire && !hb_hosts[1].n_wire) break;
    }
    for (int i = 0; i < HB_GROUPS; i++) {
        CHECK_EQ(hb_hosts[0].n[i].g.role, RAFT_LEADER);
        CHECK_EQ(hb_hosts[1].n[i].g.leader, 0);
        CHECK_EQ(hb_hosts[0].n[i].g.commit, 0); /* the no-op */
    }
    /* one heartbeat interval later: one batch 0 -> 1 carrying all three groups */
    for (int h = 0; h < 2; h++) {
        hb_hosts[h].batches_out = hb_hosts[h].items_out = hb_hosts[h].singles_out = 0;
    }
    for (int i = 0; i < HB_GROUPS; i++) {
        raft_tick(&hb_hosts[0].n[i].g, 1000 + 25);
        hb_collect(&hb_hosts[0], i);
    }
    hb_flush(&hb_hosts[0]);
    CHECK_EQ(hb_hosts[0].batches_out, 1);
    CHECK_EQ(hb_hosts[0].items_out, HB_GROUPS);
    CHECK_EQ(hb_hosts[0].singles_out, 0);
    CHECK_EQ(hb_hosts[0].n_wire, 1);
    hb_deliver(0);
    /* ...and the three responses come back in one batch too */
    CHECK_EQ(hb_hosts[1].batches_out, 1);
    CHECK_EQ(hb_hosts[1].items_out, HB_GROUPS);
    CHECK_EQ(hb_hosts[1].singles_out, 0);
    hb_deliver(1);
    for (int i = 0; i < HB_GROUPS; i++) {
        CHECK_EQ(hb_hosts[0].n[i].g.pr[0].last_ack, 1025); /* group clock */
        CHECK_EQ(hb_hosts[1].n[i].g.commit, 0); /* the heartbeat carried the commit index */
    }
    /* a batch names unknown groups: they are skipped */
    raft_hb_item junk = {.group = 99, .type = RAFT_MSG_APPEND_REQ, .term = 1};
    raft_msg jb = {.type = RAFT_MSG_HB_BATCH, .from = 0, .to = 1, .n_hb = 1, .hb = &junk};
    CHECK_EQ(raft_hb_dispatch(&jb, hb_find, hb_after_step, &hb_hosts[1]), 0);
    /* the batcher refuses non-heartbeat messages and reports a full batch */
    raft_hb_batcher small;
    CHECK_EQ(raft_hb_batcher_init(&small, 0, 1, 1), 0);
    raft_msg hbm = {.type = RAFT_MSG_APPEND_RESP, .from = 0, .to = 1, .term = 1};
    raft_msg vote = {.type = RAFT_MSG_VOTE_REQ, .from = 0, .to = 1, .term = 1};
    CHECK_EQ(raft_hb_batcher_add(&small, &vote), 0);
    CHECK_EQ(raft_hb_batcher_add(&small, &hbm), 1);
    CHECK_EQ(raft_hb_batcher_add(&small, &hbm), AL_EFULL);
    hbm.to = 2;
    CHECK_EQ(raft_hb_batcher_add(&small, &hbm), AL_EFULL);
    raft_hb_batcher_free(&small);
    for (int h = 0; h < 2; h++) {
        for (uint32_t w = 0; w < hb_hosts[h].n_wire; w++) free(hb_hosts[h].wire[w]);
        for (int i = 0; i < HB_GROUPS; i++) mnode_free(&hb_hosts[h].n[i]);
        raft_hb_batcher_free(&hb_hosts[h].b);
        raft_scratch_free(&hb_hosts[h].sc);
    }
}

TEST(clock_jumps_back_do_not_stall_and_forward_jumps_time_out)
{
    mnode f;
    mnode_init(&f, 1, 3, 1);
    raft_msg hb = {.type = RAFT_MSG_APPEND_REQ, .from = 0, .to = 1, .term = 1,
                   .prev_offset = -1, .prev_term = 0, .commit = -1};
    raft_tick(&f.g, 50);
    mdrain(&f);
    mstep(&f, hb);
    /* the clock goes back by a lot: nothing fires, nothing breaks */
    raft_tick(&f.g, 10);
    mdrain(&f);
    CHECK_EQ(f.g.role, RAFT_FOLLOWER);
    CHECK_EQ(f.g.leader, 0);
    /* then time moves on from there: the timeout (100..199 ms) still elapses */
    uint64_t now = 10;
    for (int i = 0; i < 30 && f.g.role == RAFT_FOLLOWER; i++) {
        now += 10;
        raft_tick(&f.g, now);
        mdrain(&f);
    }
    CHECK_EQ(f.g.role, RAFT_PRECANDIDATE);
    CHECK(now - 10 >= 100 && now - 10 < 220);
    /* a forward jump (a long pause) fires the timer at once */
    mnode g2;
    mnode_init(&g2, 1, 3, 1);
    mstep(&g2, hb);
    raft_tick(&g2.g, 100000);
    mdrain(&g2);
    CHECK_EQ(g2.g.role, RAFT_PRECANDIDATE);
    CHECK_EQ(g2.g.term, 1); /* pre-vote: no term bump */
    mnode_free(&f);
    mnode_free(&g2);
}

TEST(bad_inputs_are_refused)
{
    mnode f;
    mnode_init(&f, 1, 3, 1);
    raft_msg m = {.type = RAFT_MSG_APPEND_REQ, .from = 0, .to = 2, .term = 1, .prev_offset = -1};
    CHECK_EQ(mstep(&f, m), AL_EINVAL); /* not for us */
    m.to = 1;
    m.group = 5;
    CHECK_EQ(mstep(&f, m), AL_EINVAL); /* another group */
    m.group = 0;
    m.from = 1;
    CHECK_EQ(mstep(&f, m), AL_EINVAL); /* from ourselves */
    m.from = 0;
    m.type = RAFT_MSG_HB_BATCH;
    CHECK_EQ(mstep(&f, m), AL_EINVAL); /* batches go through raft_hb_dispatch */
    m.type = 42;
    CHECK_EQ(mstep(&f, m), AL_EINVAL);
    uint8_t d[1] = {0};
    raft_entry e = {.offset = 0, .count = 1, .term = 5, .len = 1, .data = d};
    m = (raft_msg){.type = RAFT_MSG_APPEND_REQ, .from = 0, .to = 1, .term = 1, .prev_offset = -1,
                   .n_entries = 1, .entries = &e};
    CHECK_EQ(mstep(&f, m), AL_EINVAL); /* entry term above the message term */
    CHECK_EQ(f.g.last, -1);
    mnode_free(&f);
    raft_group g;
    raft_options o = mopts(0);
    raft_config c = {.n_voters = 2, .voters = {0, 0}};
    raft_hardstate hs = {0, RAFT_NODE_NONE};
    sim_log l;
    memset(&l, 0, sizeof(l));
    CHECK_EQ(raft_group_init(&g, &o, &sim_log_ops, &l, &hs, &c, 0), AL_EINVAL); /* dup voter */
    c.voters[1] = 1;
    o.heartbeat_ms = 0;
    CHECK_EQ(raft_group_init(&g, &o, &sim_log_ops, &l, &hs, &c, 0), AL_EINVAL);
    o = mopts(0);
    CHECK_EQ(raft_group_init(&g, &o, &sim_log_ops, &l, &hs, &c, 0), 0);
    raft_group_free(&g);
}

static bool all_acked(sim *s)
{
    for (uint32_t p = 0; p < s->grp[0].n_props; p++)
        if (!s->grp[0].props[p].acked) return false;
    return true;
}

TEST(throughput_under_steady_load)
{
    /* 3 nodes, no faults, 1..3 ms links and disks: push proposals as fast as the leader takes
     * them (AL_EFULL is back-pressure) for 20 simulated seconds, bounded by 15 s of wall time;
     * print the figures */
    sim s;
    CHECK_EQ(sim_init(&s, 3, 77), 0);
    CHECK(sim_run_until(&s, 5000, one_leader));
    double t0 = mono_s_raft();
    uint32_t refused = 0;
    uint64_t sim_ms = 0;
    for (; sim_ms < 20000 && mono_s_raft() - t0 < 15.0; sim_ms += 10) {
        int l = sim_leader(&s);
        for (int k = 0; k < 40 && l >= 0; k++)
            if (sim_propose(&s, l, 10) == AL_EFULL) refused++;
        sim_run(&s, 10);
    }
    CHECK(sim_run_until(&s, 5000, all_acked));
    double dt = mono_s_raft() - t0;
    uint32_t n = s.grp[0].n_props;
    fprintf(stderr, "    %u batches (%u records) committed in %" PRIu64 " simulated ms, %.2f s "
                    "wall: %.0f batches/s of CPU; %u proposals refused (back-pressure), %" PRIu64
                    " messages\n",
            n, n * 10, sim_ms, dt, n / dt, refused, s.n_msgs);
    CHECK(n > 1000);
    sim_check_final(&s);
    CHECK_EQ(s.failure[0], 0);
    sim_free(&s);
}

/* A follower that was down while the others cut their logs catches up by snapshot (its data
 * in several chunks), then by appends; its log starts after the snapshot point, also after a
 * restart, and a new proposal commits everywhere. */
TEST(lagging_follower_catches_up_by_snapshot)
{
    sim s;
    CHECK_EQ(sim_init(&s, 3, 4242), 0);
    s.f.snap_filler = 5000; /* with max_msg_bytes 1024: several chunks */
    CHECK(sim_run_until(&s, 5000, one_leader));
    int l = sim_leader(&s);
    int down = (l + 1) % 3, other = (l + 2) % 3;
    sim_crash(&s, down);
    for (int k = 0; k < 40; k++) {
        CHECK(sim_propose(&s, l, 2) >= 0);
        sim_run(&s, 20);
    }
    sim_run(&s, 200);
    int64_t commit = s.nodes[0][l].g.commit;
    CHECK(commit >= 70);
    int64_t a = sim_compact(&s, 0, l, commit - 10), b = sim_compact(&s, 0, other, commit - 10);
    CHECK(a >= 60 && b >= 60);
    CHECK_EQ(s.nodes[0][l].g.snap_offset, a);
    CHECK_EQ(sim_term_at(&s, l, a - 1), -1); /* cut */
    /* cutting past the commit index is refused */
    raft_config c;
    CHECK_EQ(raft_compact(&s.nodes[0][l].g, s.nodes[0][l].g.last + 5, &c), AL_ERANGE);
    sim_restart(&s, down);
    CHECK(sim_run_until(&s, 5000, sim_converged));
    CHECK(s.n_installs >= 1);
    CHECK_EQ(s.nodes[0][down].g.snap_offset, a);
    CHECK_EQ(s.nodes[0][down].log.n_mem > 0, true);
    CHECK_EQ(s.nodes[0][down].log.mem[0].e.offset, a + 1);
    /* restart from snapshot + suffix, then a new write commits on all three */
    sim_crash(&s, down);
    sim_restart(&s, down);
    CHECK_EQ(s.nodes[0][down].g.snap_offset, a);
    l = sim_leader(&s);
    CHECK(sim_propose(&s, l, 1) >= 0);
    CHECK(sim_run_until(&s, 5000, sim_converged));
    sim_check_final(&s);
    CHECK_EQ(s.failure[0], 0);
    if (s.failure[0]) fprintf(stderr, "  %s\n", s.failure);
    sim_free(&s);
}

TEST(propose_errors)
{
    mnode f;
    mnode_init(&f, 1, 3, 1);
    raft_entry e = {.count = 1};
    int64_t base;
    CHECK_EQ(raft_propose(&f.g, &e, 1, &base), RAFT_ENOTLEADER);
    CHECK_EQ(raft_change_membership(&f.g, RAFT_CONF_ADD_LEARNER, 5), RAFT_ENOTLEADER);
    mnode_free(&f);
    mnode l;
    mnode_init(&l, 0, 1, 0);
    raft_tick(&l.g, 1000);
    mdrain(&l);
    CHECK_EQ(l.g.role, RAFT_LEADER); /* a single voter elects itself */
    e.count = 0;
    CHECK_EQ(raft_propose(&l.g, &e, 1, &base), AL_EINVAL);
    e.count = 1;
    CHECK_EQ(raft_propose(&l.g, &e, 1, &base), 0);
    mdrain(&l);
    /* membership changes wait until the leader has committed in its term */
    CHECK_EQ(raft_change_membership(&l.g, RAFT_CONF_ADD_LEARNER, 5), RAFT_EBUSY);
    raft_append_done(&l.g, 1, l.g.term);
    mdrain(&l);
    raft_flush_done(&l.g, 1);
    mdrain(&l);
    CHECK_EQ(l.g.commit, 1);
    CHECK_EQ(raft_change_membership(&l.g, RAFT_CONF_PROMOTE, 5), AL_EINVAL);
    CHECK_EQ(raft_change_membership(&l.g, RAFT_CONF_REMOVE, 0), AL_EINVAL); /* last voter */
    CHECK_EQ(raft_change_membership(&l.g, RAFT_CONF_ADD_LEARNER, 0), AL_EEXISTS);
    CHECK_EQ(raft_change_membership(&l.g, RAFT_CONF_ADD_LEARNER, 5), 0);
    mdrain(&l);
    CHECK(raft_config_is_learner(&l.g.conf, 5));
    mnode_free(&l);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
