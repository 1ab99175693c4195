/*
 * test_raft_sim.c — the deterministic Raft simulation run over many seeds (driver in
 * tests/sim/raft_sim.c). Each seed picks 3 or 5 nodes and random fault rates (drops,
 * duplicates, delays/reordering, corruption, partitions, crashes with torn writes, clock jumps,
 * leadership transfers) and a client load, runs the chaos phase, then heals everything and
 * requires the cluster to converge and every acknowledged write to be in every log.
 *
 *   build/release/tests/test_raft_sim                     default: a few hundred seeds
 *   AL_SIM_SEEDS=5000 build/release/tests/test_raft_sim   a longer run
 *   AL_SIM_SEED=1234 build/release/tests/test_raft_sim    replay one seed exactly
 *   AL_SIM_MS=20000                                       chaos phase length per seed (ms)
 *   AL_SIM_VERBOSE=1                                      one line per seed
 * A failing seed is printed with its replay command.
 */
#include <signal.h>
#include <unistd.h>

#include "../sim/raft_sim.c"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#define SIM_DEFAULT_MS 6000
#else
#define SIM_DEFAULT_MS 20000
#endif
#define SIM_DEFAULT_SEEDS 500
#define SIM_TIME_BUDGET_S 50.0

static char replay_msg[512];
static const char *prog = "build/<BUILD>/tests/test_raft_sim";

static void on_abort(int sig)
{
    ssize_t r = write(2, replay_msg, strlen(replay_msg));
    (void)r;
    signal(sig, SIG_DFL);
    raise(sig);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct sim_totals {
    uint64_t seeds, acked, msgs, dropped, crashes, elections, truncates, transfers, batches;
    uint64_t conf_changes, batch_items, compactions, installs;
} sim_totals;

/* One seed: returns true if every invariant held and the cluster converged. */
static bool sim_one(uint64_t seed, uint64_t chaos_ms, sim_totals *t, bool verbose)
{
    snprintf(replay_msg, sizeof(replay_msg),
             "\nraft sim: aborted in seed %" PRIu64 "; replay: AL_SIM_SEED=%" PRIu64
             " AL_SIM_MS=%" PRIu64 " %s\n",
             seed, seed, chaos_ms, prog);
    sim s;
    uint32_t n = (seed & 1) ? 5 : 3;
    uint32_t groups = 1 + (uint32_t)((seed >> 1) % 3);
    AL_ASSERT(sim_init_groups(&s, n, n, groups, seed) == 0);
    sim_random_faults(&s);
    sim_run(&s, chaos_ms);
    if (!s.failure[0]) {
        sim_heal(&s);
        if (!sim_run_until(&s, 30000, sim_converged) && !s.failure[0])
            sim_fail(&s, "did not converge within 30 s after healing (leader %d)", sim_leader(&s));
        /* a few more proposals after healing must all be acknowledged */
        for (int k = 0; k < 5 && !s.failure[0]; k++) {
            for (uint32_t gi = 0; gi < groups; gi++) {
                int l = sim_leader_g(&s, gi);
                if (l >= 0) sim_propose_g(&s, gi, l, 1);
            }
            sim_run(&s, 30);
        }
        if (!sim_run_until(&s, 30000, sim_converged) && !s.failure[0])
            sim_fail(&s, "did not converge after the final proposals");
        sim_check_final(&s);
    }
    uint64_t acked = 0;
    uint32_t props = 0;
    for (uint32_t gi = 0; gi < groups; gi++) {
        props += s.grp[gi].n_props;
        for (uint32_t p = 0; p < s.grp[gi].n_props; p++) acked += s.grp[gi].props[p].acked;
    }
    if (!s.failure[0] && acked == 0) sim_fail(&s, "no write was acknowledged at all");
    bool ok = !s.failure[0];
    if (verbose || !ok)
        fprintf(stderr,
                "  seed %" PRIu64 " n=%u groups=%u: %s%s props=%u acked=%" PRIu64 " msgs=%" PRIu64
                " crashes=%" PRIu64 " elections=%" PRIu64 " truncates=%" PRIu64 "\n",
                seed, n, groups, ok ? "ok" : "FAILED: ", s.failure, props, acked, s.n_msgs,
                s.n_crashes, s.n_elections, s.n_truncates);
    if (!ok)
        fprintf(stderr, "  replay: AL_SIM_SEED=%" PRIu64 " AL_SIM_MS=%" PRIu64 " %s\n", seed,
                chaos_ms, prog);
    t->seeds++;
    t->acked += acked;
    t->msgs += s.n_msgs;
    t->dropped += s.n_dropped;
    t->crashes += s.n_crashes;
    t->elections += s.n_elections;
    t->truncates += s.n_truncates;
    t->transfers += s.n_transfers;
    t->batches += s.n_batches;
    t->batch_items += s.n_batch_items;
    t->conf_changes += s.n_conf_changes;
    t->compactions += s.n_compactions;
    t->installs += s.n_installs;
    sim_free(&s);
    return ok;
}

TEST(sim_seeds)
{
    signal(SIGABRT, on_abort);
    uint64_t chaos_ms = env_u64("AL_SIM_MS", SIM_DEFAULT_MS);
    bool verbose = env_u64("AL_SIM_VERBOSE", 0) != 0;
    sim_totals t = {0};
    uint32_t failed = 0;
    double t0 = mono_s();
    if (getenv("AL_SIM_SEED") && *getenv("AL_SIM_SEED")) {
        failed += !sim_one(env_u64("AL_SIM_SEED", 1), chaos_ms, &t, true);
    } else {
        uint64_t count = env_u64("AL_SIM_SEEDS", SIM_DEFAULT_SEEDS);
        bool bounded = !getenv("AL_SIM_SEEDS"); /* an explicit count runs to the end */
        uint64_t base = test_seed() % 1000000007ull;
        for (uint64_t i = 0; i < count && failed < 5; i++) {
            if (bounded && mono_s() - t0 > SIM_TIME_BUDGET_S) break;
            failed += !sim_one(base + i, chaos_ms, &t, verbose);
        }
    }
    fprintf(stderr,
            "  sim: %" PRIu64 " seeds x %" PRIu64 " ms chaos in %.1f s: %u failed; acked writes %"
            PRIu64 ", messages %" PRIu64 " (dropped %" PRIu64 ", hb batches %" PRIu64
            ", %.2f items each), crashes %" PRIu64 ", elections %" PRIu64
            ", truncations %" PRIu64
            ", transfers %" PRIu64 ", membership changes %" PRIu64 ", prefix truncations %"
            PRIu64 ", snapshots installed %" PRIu64 "\n",
            t.seeds, chaos_ms, mono_s() - t0, failed, t.acked, t.msgs, t.dropped, t.batches,
            t.batches ? (double)t.batch_items / (double)t.batches : 0.0, t.crashes, t.elections,
            t.truncates, t.transfers, t.conf_changes, t.compactions, t.installs);
    CHECK_EQ(failed, 0);
    CHECK(t.seeds > 0);
    /* half the seeds cut logs: lagging followers must have caught up by snapshot */
    if (t.seeds >= 20) CHECK(t.installs > 0);
}

int main(int argc, char **argv)
{
    if (argc > 0) prog = argv[0];
    return test_main(argc, argv);
}
