/*
 * raft_sim.h — a deterministic, seeded simulation of a Raft cluster in one process, used by
 * tests/unit/test_raft_sim.c (randomised fault runs) and tests/unit/test_raft.c (scripted
 * scenarios). Everything is simulated here, not on the reactor's simulator: a discrete-event
 * queue with a virtual clock; each node has a raft_group, an in-memory log that models
 * written-but-not-durable entries (a crash keeps a random prefix of the unflushed writes and may
 * tear the last one), durable hard state, a per-node clock skew (clock jumps), and a network
 * that drops, duplicates, delays, reorders and corrupts messages and can be partitioned. Every
 * message is encoded with raft_msg_encode and decoded on delivery; heartbeats and append
 * responses go through the heartbeat batcher. Invariants are checked as the run goes (see
 * raft_sim.c); the first violation is kept in sim->failure.
 */
#ifndef AL_RAFT_SIM_H
#define AL_RAFT_SIM_H

#include "raft/raft.h"

#define SIM_MAX_NODES 7
#define SIM_MAX_GROUPS 4

typedef struct sim_entry {
    raft_entry e; /* e.data points at buf */
    uint8_t *buf;
    uint64_t st; /* state-machine hash after applying it (0: not applied yet) */
} sim_entry;

typedef struct sim_op {
    uint8_t kind; /* 1 append, 2 truncate */
    int64_t offset;
    sim_entry ent;
} sim_op;

typedef struct sim_log {
    sim_entry *mem; /* what the node sees */
    uint32_t n_mem, cap_mem;
    sim_entry *disk; /* durable image */
    uint32_t n_disk, cap_disk;
    sim_op *pend; /* writes since the last flush, in order */
    uint32_t n_pend, cap_pend;
    /* snapshot point (durable at once): the log starts at `start` (0: no snapshot); the
     * snapshot offset is start - 1 and its entry's term snap_term (0 without one) */
    int64_t start, snap_term;
    raft_config snap_conf;
    uint64_t snap_state;  /* state-machine hash at snap_off */
    uint8_t *snap_data;   /* the snapshot's data: snap_state then filler */
    uint32_t snap_len;
} sim_log;

/* One replica: a group's raft_group, log and hard state on one node. */
typedef struct sim_node {
    int32_t id;
    bool has_group;
    raft_group g;
    sim_log log;
    raft_hardstate hs; /* durable */
    int64_t verified;  /* entries up to here checked against the committed record */
    bool flush_pending;
    int64_t applied;   /* state machine: entries applied up to here ... */
    uint64_t state;    /* ... giving this hash */
} sim_node;

/* One node (process): what its groups share. */
typedef struct sim_host {
    bool up;
    uint32_t epoch; /* incarnation; events of an older one are ignored */
    int64_t skew;   /* local clock = sim time + skew */
    uint64_t restart_at;
    raft_hb_batcher hb; /* heartbeats of all its groups, per destination */
    raft_scratch sc;    /* the action queue its groups share */
} sim_host;

typedef struct sim_event {
    uint64_t at, seq;
    uint8_t type; /* 1 deliver, 2 append done, 3 flush done */
    int32_t node;
    uint32_t grp;
    uint32_t epoch;
    int64_t a, b;
    uint8_t *bytes;
    uint32_t len;
} sim_event;

typedef struct sim_committed {
    int64_t term, base; /* 0 term = unknown */
    uint64_t hash;
    uint64_t state; /* state-machine hash after the entry ending here (0 = unknown) */
} sim_committed;

typedef struct sim_proposal {
    int32_t node;
    int64_t term, offset;
    int32_t count;
    uint64_t hash;
    bool acked;
} sim_proposal;

typedef struct sim_faults {
    uint32_t drop_pct, dup_pct, corrupt_pct; /* per message, percent */
    uint32_t delay_min, delay_max;           /* ms */
    uint32_t crash_per_mille;                /* per 10 ms step, per node */
    uint32_t partition_per_mille;            /* per 10 ms step */
    uint32_t clock_jump_per_mille;           /* per 10 ms step */
    uint32_t transfer_per_mille;             /* per 10 ms step */
    uint32_t propose_pct;                    /* per 10 ms step */
    uint32_t disk_delay_max;                 /* ms for append done / flush done */
    uint32_t member_per_mille;               /* membership changes, per 10 ms step */
    uint32_t compact_per_mille;              /* prefix truncations, per 10 ms step */
    uint32_t snap_filler;                    /* snapshot data bytes beyond the state hash */
} sim_faults;

/* The invariant record of one group. */
typedef struct sim_grp {
    sim_committed *cm; /* per offset */
    int64_t cap_cm;
    int64_t commit_max; /* highest offset known committed anywhere */
    int32_t *leader_of; /* term -> node, -1 */
    int64_t cap_terms;
    sim_proposal *props;
    uint32_t n_props, cap_props;
} sim_grp;

typedef struct sim {
    uint64_t seed, rng;
    uint32_t n, n_groups;
    sim_host host[SIM_MAX_NODES];
    sim_node nodes[SIM_MAX_GROUPS][SIM_MAX_NODES]; /* [group][node]; group ids are 0.. */
    sim_grp grp[SIM_MAX_GROUPS];
    raft_options opt;
    raft_config boot;
    uint64_t now;
    sim_faults f;
    bool faults_on;
    bool restore_members; /* after healing: add back every node as a voter */
    uint8_t part[SIM_MAX_NODES]; /* partition side; nodes talk only within a side */
    bool cut[SIM_MAX_NODES][SIM_MAX_NODES]; /* one-way link cuts [from][to], for scripted tests */
    sim_event *ev;
    uint32_t n_ev, cap_ev;
    uint64_t ev_seq;
    uint64_t n_acked, n_msgs, n_dropped, n_crashes, n_elections, n_truncates, n_transfers;
    uint64_t n_batches, n_batch_items, n_conf_changes;
    uint64_t n_compactions, n_installs;
    int32_t cur; /* node whose batch is being dispatched */
    char failure[512];
} sim;

/* Creates an n-node cluster (ids 0..n-1, all voters) with one group and default options for
 * the sim. Returns 0 or -ENOMEM. */
int sim_init(sim *s, uint32_t n, uint64_t seed);
/* Same, but only nodes 0..n_voters-1 are in the bootstrap config (the rest wait to be added). */
int sim_init_conf(sim *s, uint32_t n, uint32_t n_voters, uint64_t seed);
/* n_groups groups (ids 0..n_groups-1) over the same nodes: each node's groups share one
 * action scratch and one heartbeat batcher. */
int sim_init_groups(sim *s, uint32_t n, uint32_t n_voters, uint32_t n_groups, uint64_t seed);
void sim_free(sim *s);
/* Picks random fault rates and options from the seed. */
void sim_random_faults(sim *s);
/* Runs for ms of simulated time (10 ms steps); stops early on a failure. */
void sim_run(sim *s, uint64_t ms);
/* Runs until pred(s) or ms elapse; returns true if pred became true. */
bool sim_run_until(sim *s, uint64_t ms, bool (*pred)(sim *s));
/* Turns faults off, heals partitions, restarts crashed nodes, restores full membership. */
void sim_heal(sim *s);
/* True when, in every group, one leader has committed its whole log and every member has it. */
bool sim_converged(sim *s);
/* End-of-run checks: every acknowledged proposal in every member's log at its offset. */
void sim_check_final(sim *s);
/* The node that leads group gi with the highest term, or -1 (sim_leader: group 0). */
int sim_leader_g(sim *s, uint32_t gi);
int sim_leader(sim *s);
/* Proposes one entry of count records to group gi on node i; returns its offset or a negative
 * error (sim_propose: group 0). */
int64_t sim_propose_g(sim *s, uint32_t gi, int i, int32_t count);
int64_t sim_propose(sim *s, int i, int32_t count);
/* One membership move on group gi's leader if allowed: add a missing node as learner, promote
 * a caught-up learner, or (unless restore) remove a random voter. */
void sim_membership_step(sim *s, uint32_t gi, bool restore);
void sim_crash(sim *s, int i);
void sim_restart(sim *s, int i);
/* Isolates the nodes in mask from the others (0 heals). */
void sim_partition(sim *s, uint32_t mask);
/* Applies the queued actions of node i's groups (after any input to one of them). */
void sim_drain(sim *s, int i);
/* Term of offset in group 0's log on node i, -1 if none. */
int64_t sim_term_at(sim *s, int i, int64_t off);
/* Prefix truncation of group gi on node i up to the newest entry end <= upto that is applied
 * (committed) and durable, with a snapshot of the state there. Returns the snapshot offset,
 * or -1 if nothing could be cut. */
int64_t sim_compact(sim *s, uint32_t gi, int i, int64_t upto);

#endif
