/*
 * raft.h — the Raft consensus core: one pure state machine per replication group (the
 * controller is group 0, every partition is a group). It does no I/O and reads no clock: the
 * caller feeds it inputs (messages, ticks, "the log wrote / flushed" events, proposals) and
 * drains the actions it emits (send a message, append to the log, truncate the log, flush,
 * persist the hard state, commit advanced, role changed). The same code runs on io_uring and in
 * the deterministic simulation (tests/unit/test_raft_sim.c).
 *
 * Offsets are Kafka offsets: the partition log IS the Raft log. An entry is one opaque batch
 * with a base offset and a record count; it covers [offset, offset + count - 1] and carries the
 * term of the leader that created it (stored in the batch's partitionLeaderEpoch). Log matching
 * is on (prev offset, prev term) where prev offset is the last offset before the first entry of
 * an append request; the empty log has prev (-1, 0). The commit index is the last committed
 * offset, i.e. Kafka's high watermark minus one.
 *
 * Calling rules (all functions of one group from one thread, the shard that owns it):
 *   1. After every input call (raft_step, raft_tick, raft_append_done, raft_flush_done,
 *      raft_propose, raft_transfer_leadership, raft_change_membership) the caller drains every
 *      action with raft_action_next() before making the next input call; an input call with
 *      actions still queued (by this group or another sharing its raft_scratch) is a caller
 *      bug (AL_ASSERT).
 *   2. Actions are applied in the order they are drained:
 *      - PERSIST (term, vote) must be durable before any later action of the same drain is
 *        carried out (in particular before a SEND: a vote grant or an append response depends
 *        on it). A caller with asynchronous metadata writes holds the later actions until the
 *        write is durable.
 *      - APPEND and TRUNCATE are applied to the log (the entries become visible through
 *        raft_log_ops, not yet durable) before the next action is drained. Later SENDs of the
 *        same drain may read entries the APPEND added.
 *      - SEND: the message (and entry data it points at) is valid only until the next action is
 *        drained: encode or copy it at once.
 *      - FLUSH(offset): make the log durable at least up to offset, then call
 *        raft_flush_done() with the log's durable offset.
 *   3. When an APPEND has been written (not necessarily durable) the caller calls
 *      raft_append_done(last offset, term); the group then emits FLUSH. Group commit: the caller
 *      may merge several FLUSHes into one fsync and report once.
 *   4. Buffers passed in (a message's entries, proposal data) must stay valid until the actions
 *      of that call are drained and applied: APPEND actions point at them.
 *
 * Durability: a follower acknowledges entries only when they are durable (after flush_done);
 * the leader counts itself toward the majority only for its own durable offset; hard state is
 * persisted before anything that depends on it leaves the node.
 */
#ifndef AL_RAFT_H
#define AL_RAFT_H

#include "base/base.h"

/* Raft-specific errors, in the reserved internal range below the AL_E* codes. */
enum {
    RAFT_ENOTLEADER = -100100, /* proposal or admin call on a node that is not the leader */
    RAFT_EBUSY = -100101,      /* a leadership transfer or a membership change is in progress */
    RAFT_ELOST = -100102,      /* replica.h: leadership was lost before the entries committed
                                  (they may or may not commit later) */
};

enum {
    RAFT_MAX_NODES = 16,       /* voters + learners of one group */
    RAFT_NODE_NONE = -1,
    RAFT_MSG_VERSION = 1,
};

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRECANDIDATE = 1,
    RAFT_CANDIDATE = 2,
    RAFT_LEADER = 3,
};

enum raft_entry_type {
    RAFT_ENTRY_DATA = 0,   /* an opaque client batch */
    RAFT_ENTRY_NOOP = 1,   /* appended by a new leader to commit its term */
    RAFT_ENTRY_CONFIG = 2, /* a membership configuration (raft_config_encode payload) */
};

/* One log entry (one batch). data is not owned: see the calling rules. */
struct raft_group;

typedef struct raft_entry {
    int64_t offset; /* base offset */
    int32_t count;  /* records (offsets) it covers, >= 1 */
    uint8_t type;   /* enum raft_entry_type */
    int64_t term;
    uint32_t len;
    const uint8_t *data;
} raft_entry;

static inline int64_t raft_entry_last(const raft_entry *e)
{
    return e->offset + e->count - 1;
}

/* A membership configuration: voters count toward quorums, learners only receive the log. */
typedef struct raft_config {
    uint8_t n_voters, n_learners;
    int32_t voters[RAFT_MAX_NODES];
    int32_t learners[RAFT_MAX_NODES];
} raft_config;

bool raft_config_is_voter(const raft_config *c, int32_t id);
bool raft_config_is_learner(const raft_config *c, int32_t id);
/* Encodes c into buf (at least raft_config_size(c) bytes); returns the size. */
size_t raft_config_size(const raft_config *c);
size_t raft_config_encode(const raft_config *c, uint8_t *buf);
/* Decodes a config payload; 0 or AL_EMALFORMED / AL_ETRUNCATED. */
int raft_config_decode(const uint8_t *buf, size_t len, raft_config *out);

enum raft_msg_type {
    RAFT_MSG_VOTE_REQ = 1,    /* term, last_offset, last_term; flags PREVOTE, TRANSFER */
    RAFT_MSG_VOTE_RESP = 2,   /* term; flags GRANTED, PREVOTE */
    RAFT_MSG_APPEND_REQ = 3,  /* term, prev_offset, prev_term, commit, entries */
    RAFT_MSG_APPEND_RESP = 4, /* term; SUCCESS: match = last durable matching offset;
                                 otherwise match = hint: the follower's last offset at or
                                 below the rejected prev whose term <= prev_term, and
                                 hint_term = its term (the leader backs up to its own last
                                 offset <= hint with term <= hint_term) */
    RAFT_MSG_TIMEOUT_NOW = 5, /* leadership transfer: start an election now */
    RAFT_MSG_HB_BATCH = 6,    /* heartbeats/acks of many groups between one pair of nodes */
    RAFT_MSG_SNAPSHOT = 7,    /* install snapshot: term, prev_offset/prev_term = the snapshot
                                 point (its last offset and that entry's term), commit, the
                                 config in effect there, and one chunk [snap_pos, +snap_len)
                                 of snap_total data bytes. The follower answers progress with
                                 APPEND_RESP flag SNAP (match = snapshot offset, hint_term =
                                 bytes it holds) and, once installed, APPEND_RESP SUCCESS */
};

enum {
    RAFT_F_PREVOTE = 1,
    RAFT_F_TRANSFER = 2,
    RAFT_F_GRANTED = 4,
    RAFT_F_SUCCESS = 8,
    RAFT_F_SNAP = 16, /* APPEND_RESP: snapshot transfer progress */
};

/* The largest snapshot a follower accepts (data bytes; its chunks are max_msg_bytes each). */
#define RAFT_SNAPSHOT_MAX (256u << 20)

/* One group's heartbeat (empty APPEND_REQ) or its response (APPEND_RESP) inside a batch. */
typedef struct raft_hb_item {
    uint64_t group;
    uint8_t type; /* RAFT_MSG_APPEND_REQ or RAFT_MSG_APPEND_RESP */
    uint8_t flags;
    int64_t term;
    int64_t prev_offset, prev_term, commit; /* request */
    int64_t match, hint_term;               /* response */
} raft_hb_item;

typedef struct raft_msg {
    uint8_t type;  /* enum raft_msg_type */
    uint8_t flags; /* RAFT_F_* */
    uint64_t group;
    int32_t from, to;
    int64_t term;
    int64_t last_offset, last_term;         /* VOTE_REQ */
    int64_t prev_offset, prev_term, commit; /* APPEND_REQ */
    int64_t match, hint_term;               /* APPEND_RESP */
    uint32_t n_entries;
    const raft_entry *entries; /* APPEND_REQ; not owned */
    uint32_t n_hb;
    const raft_hb_item *hb; /* HB_BATCH; not owned */
    raft_config snap_conf;       /* SNAPSHOT: membership at the snapshot point */
    uint64_t snap_total, snap_pos; /* SNAPSHOT: data size, this chunk's position */
    uint32_t snap_len;
    const uint8_t *snap_data;    /* SNAPSHOT: the chunk; not owned */
} raft_msg;

/* --- wire encoding (raft_msg.c) ---------------------------------------------------------
 * Layout: version u8 | type u8 | flags u8 | group u64 | from i32 | to i32 | term i64 |
 * type-specific fields | crc32c u32 of everything before it. Big-endian. */
#define RAFT_MSG_MAX_ENTRIES 1024
#define RAFT_MSG_MAX_HB 4096

/* Bytes raft_msg_encode will write for m. */
size_t raft_msg_size(const raft_msg *m);
/* Encodes m into buf[0..cap); returns the size written, or AL_ETOOLARGE if cap is short. */
int raft_msg_encode(const raft_msg *m, uint8_t *buf, size_t cap);
/* Decodes buf into out. Entry and heartbeat arrays go into the caller's ents[max_ents] and
 * hbs[max_hbs]; entry data points into buf (zero copy), so buf must outlive out. Returns 0, or
 * AL_ECORRUPT (checksum), AL_ETRUNCATED, AL_EMALFORMED (bad version/type/field), AL_ETOOLARGE
 * (more entries or items than the arrays hold). Safe on any input. */
int raft_msg_decode(const uint8_t *buf, size_t len, raft_msg *out, raft_entry *ents,
                    size_t max_ents, raft_hb_item *hbs, size_t max_hbs);

/* --- the log as the group sees it (provided by the caller) ------------------------------
 * Prefix truncation: a log may start after a snapshot point S (the last offset of an entry
 * that was committed and durable; -1 = no snapshot, the log starts at 0). Offsets <= S are
 * gone; term_at(S) is the term of the entry that ended there (0 for S = -1); last_offset of
 * an empty log is S. */
typedef struct raft_log_ops {
    /* Term of the entry containing offset; the snapshot term for the snapshot offset (0 for
     * offset -1 without a snapshot); -1 if the log has no such offset. */
    int64_t (*term_at)(void *ctx, int64_t offset);
    /* Last offset in the log (written or not yet durable), -1 if empty. */
    int64_t (*last_offset)(void *ctx);
    /* Fills out[0..max) with consecutive entries, the first being the one that contains
     * from, stopping before max_bytes of data is exceeded (at least one entry if from exists).
     * Returns the number of entries (0 if from is past the end), or a negative error. The
     * entries' data stays valid until the log is next changed. A log whose reads can be
     * asynchronous may return 0 for data not in memory yet (and start loading it): the group
     * asks again on later ticks. */
    int (*read)(void *ctx, int64_t from, raft_entry *out, int max, size_t max_bytes);
    /* Optional (NULL: snapshots carry no data, as for partitions whose state IS the log): the
     * state-machine snapshot at snapshot offset snap (the controller's state). Sets *data
     * (valid until the log next changes) and returns its size (<= RAFT_SNAPSHOT_MAX), or a
     * negative error when it is not available now (the group asks again later). */
    int64_t (*snapshot)(void *ctx, int64_t snap, const uint8_t **data);
} raft_log_ops;

typedef struct raft_hardstate {
    int64_t term;
    int32_t vote; /* RAFT_NODE_NONE if none in term */
} raft_hardstate;

/* The action queue and entry pool that input calls fill and raft_action_next drains. Since
 * every call's actions are drained before the next call, the groups of one shard can share
 * one (raft_scratch_init; options.scratch), which keeps per-group memory small. */
typedef struct raft_scratch {
    struct raft_action *actions;
    uint32_t cap_actions, act_head, act_n;
    struct raft_entry *pool;
    uint32_t cap_pool, pool_used;
    const struct raft_group *owner; /* the group whose actions are queued, if any */
} raft_scratch;

/* Allocates a queue of n_actions and a pool of n_entries (>= 32 and >= 16). 0, -ENOMEM or
 * AL_EINVAL. Free with raft_scratch_free after every group using it is freed. */
int raft_scratch_init(raft_scratch *sc, uint32_t n_actions, uint32_t n_entries);
void raft_scratch_free(raft_scratch *sc);

typedef struct raft_options {
    uint64_t group;
    int32_t self;
    uint64_t seed;                 /* PRNG seed for randomised election timeouts */
    uint32_t election_timeout_ms;  /* base; actual timeout is uniform in [base, 2*base) */
    uint32_t heartbeat_ms;
    uint32_t max_inflight_msgs;    /* pipelined append window per follower (count) */
    uint32_t max_inflight_bytes;   /* ... and bytes */
    uint32_t max_msg_bytes;        /* data bytes per append request */
    uint32_t max_msg_entries;      /* entries per append request (<= RAFT_MSG_MAX_ENTRIES) */
    uint32_t catchup_bytes_per_tick; /* throttle on entries read back from the log, per
                                        follower per tick; 0 = unlimited */
    uint32_t max_uncommitted;      /* offsets the leader may have uncommitted before
                                      raft_propose says AL_EFULL */
    uint32_t action_capacity;      /* action queue length (private scratch) */
    uint32_t entry_pool;           /* raft_entry slots for actions of one call (ditto) */
    raft_scratch *scratch;         /* shared per-shard scratch, or NULL for a private one */
} raft_options;

/* Defaults for everything but group/self/seed. */
void raft_options_default(raft_options *o);

enum raft_action_type {
    RAFT_ACT_PERSIST = 1,  /* hs: write durably before the next action */
    RAFT_ACT_SEND = 2,     /* msg */
    RAFT_ACT_APPEND = 3,   /* entries[n]: append at entries[0].offset */
    RAFT_ACT_TRUNCATE = 4, /* offset: remove entries at offsets >= offset */
    RAFT_ACT_FLUSH = 5,    /* offset: make durable up to at least offset */
    RAFT_ACT_COMMIT = 6,   /* offset: the new commit index (high watermark - 1) */
    RAFT_ACT_ROLE = 7,     /* role, term, leader: became leader / follower / ... */
    RAFT_ACT_SNAPSHOT = 8, /* install a snapshot received from the leader: offset, term, conf,
                              data[len]: store it durably with its data, replace the whole log
                              by an empty one that starts at offset + 1 (term_at(offset) =
                              term), restore the state machine from data; done before the
                              next action is applied (a SEND acknowledges it) */
};

typedef struct raft_action {
    uint8_t type;
    raft_hardstate hs;
    raft_msg msg;
    int64_t offset;
    const raft_entry *entries;
    uint32_t n;
    uint8_t role;
    int64_t term;
    int32_t leader;
    raft_config conf;     /* SNAPSHOT */
    const uint8_t *data;  /* SNAPSHOT: valid until the next input call */
    uint64_t len;
} raft_action;

enum raft_progress_state { RAFT_PR_PROBE = 0, RAFT_PR_REPLICATE = 1, RAFT_PR_SNAPSHOT = 2 };

#define RAFT_INFLIGHT_MAX 32

/* The leader's view of one other replica. */
typedef struct raft_progress {
    int32_t id;
    uint8_t state;       /* enum raft_progress_state */
    bool active;         /* heard from within the current check-quorum period */
    int64_t next;        /* next offset to send */
    int64_t match;       /* highest offset known durable and matching on that replica */
    uint64_t last_ack;   /* group clock of the last response */
    uint64_t progress_mark; /* group clock when match last advanced or the window opened */
    int64_t budget;      /* catch-up throttle: bytes left this tick */
    uint32_t n_inflight; /* requests outstanding: end offsets and bytes in a ring */
    uint32_t inflight_head;
    uint64_t inflight_bytes;
    int64_t inflight_end[RAFT_INFLIGHT_MAX];
    uint32_t inflight_sz[RAFT_INFLIGHT_MAX];
    int64_t snap_for;    /* SNAPSHOT: the snapshot offset being sent */
    uint64_t snap_pos;   /* ... and the data bytes the replica holds */
} raft_progress;

#define RAFT_CONF_HISTORY 8

typedef struct raft_group {
    raft_options opt;
    const raft_log_ops *log;
    void *log_ctx;

    /* persistent */
    int64_t term;
    int32_t vote;

    /* volatile */
    uint8_t role;
    int32_t leader;
    int64_t last;      /* last offset in the log, as this group has asked it to be */
    int64_t last_term; /* term of that entry */
    int64_t written;   /* last offset reported written (raft_append_done) */
    int64_t durable;   /* last offset reported durable (raft_flush_done) */
    int64_t commit;
    int64_t flushing;  /* highest offset a FLUSH was emitted for */

    /* follower */
    int64_t ack_end;   /* highest offset verified to match the current leader */
    int64_t acked;     /* highest match sent to it in this term */

    /* clock (ms): sum of non-negative tick deltas, so jumps back do not stall */
    uint64_t clock;
    uint64_t last_now;
    bool have_now;
    uint64_t elapsed_mark;   /* election timer start */
    uint64_t hb_slot;        /* leader: caller's now / heartbeat_ms at the last heartbeat */
    uint64_t quorum_mark;    /* leader: start of current check-quorum period */
    uint64_t leader_contact; /* last time we heard from a live leader (stickiness) */
    uint32_t timeout;        /* randomised election timeout */
    uint64_t rng;

    /* elections */
    uint32_t votes_granted, votes_rejected; /* bitmaps over config slots */
    int32_t voted_ids[RAFT_MAX_NODES];
    uint8_t n_voted;
    bool transfer_campaign;
    bool no_campaign; /* raft_set_campaign(false): never starts an election on its own */

    /* membership: the latest config in the log is effective */
    raft_config conf;
    int64_t conf_offset;          /* offset of the entry that set conf, -1 = bootstrap */
    uint8_t n_conf_hist;          /* earlier configs, to revert to on truncation */
    raft_config conf_hist[RAFT_CONF_HISTORY];
    int64_t conf_hist_offset[RAFT_CONF_HISTORY];
    uint8_t conf_buf[8 + 8 * RAFT_MAX_NODES];

    /* leader */
    raft_progress pr[RAFT_MAX_NODES];
    uint8_t n_pr;
    int64_t term_start;       /* offset of this leader's first (no-op) entry */
    int32_t transferee;       /* RAFT_NODE_NONE if none */
    uint64_t transfer_deadline;

    /* snapshot point: the log starts at snap_offset + 1 (-1: no snapshot, term 0) */
    int64_t snap_offset, snap_term;
    raft_config snap_conf; /* membership in effect at snap_offset */

    /* follower: a snapshot being received (chunks in order) */
    uint8_t *rx_buf;
    uint64_t rx_cap, rx_len, rx_total;
    int64_t rx_offset, rx_term;
    bool rx_free; /* installed: free rx_buf at the next input call */

    /* entries appended during the current call, not yet visible through log ops */
    int64_t fresh_from;

    /* action queue and entry pool for the current call: own, or shared per shard */
    raft_scratch *sc;
    raft_scratch own;
} raft_group;

/*
 * Creates a group in g (caller-owned memory). opt is copied; log/log_ctx must outlive g.
 * hs is the persisted hard state ({0, RAFT_NODE_NONE} for a new replica); conf the bootstrap
 * configuration (used when the log holds no config entry; see raft_restore_config). now_ms is
 * the current time. The group starts as a follower with commit -1. Unless opt->scratch names a
 * shared one, allocates a private action queue and entry pool (freed by raft_group_free).
 * Returns 0, -ENOMEM or AL_EINVAL.
 */
int raft_group_init(raft_group *g, const raft_options *opt, const raft_log_ops *log,
                    void *log_ctx, const raft_hardstate *hs, const raft_config *conf,
                    uint64_t now_ms);
void raft_group_free(raft_group *g);

/* At start-up, after init: tells the group about a config entry found in the log at offset
 * (call for each, in log order). Returns 0 or AL_EMALFORMED. */
int raft_restore_config(raft_group *g, int64_t offset, const uint8_t *payload, size_t len);

/* At start-up, after init and before raft_restore_config: the log starts after a snapshot
 * at offset (committed: the commit index starts there) whose entry had term and whose
 * membership was conf. Returns 0 or AL_EINVAL. */
int raft_restore_snapshot(raft_group *g, int64_t offset, int64_t term, const raft_config *conf);

/*
 * Prefix truncation: the caller will drop the log's entries up to offset (the last offset of
 * an entry, <= the commit index and <= the durable offset), having first stored the snapshot
 * point durably: (offset, raft_term_at(offset), *conf_out). Fills *conf_out with the
 * membership in effect at offset. Not an input call (queues nothing); call it between input
 * calls. Returns 0 (also when offset <= the current snapshot point: nothing to do),
 * AL_ERANGE (beyond commit or durable) or AL_EINVAL (not the end of an entry).
 */
int raft_compact(raft_group *g, int64_t offset, raft_config *conf_out);

/* The membership in effect at offset (snapshot point <= offset <= last): the newest config
 * entry at or below it, else the snapshot's. 0 or AL_ERANGE. Between input calls. */
int raft_config_at(const raft_group *g, int64_t offset, raft_config *out);

/* Term of the entry holding offset as the group sees its log (snapshot point included), or
 * -1. Between input calls. */
int64_t raft_term_at(const raft_group *g, int64_t offset);

/* Inputs. Each returns 0 or a negative error and may queue actions. */
int raft_step(raft_group *g, const raft_msg *m);
int raft_tick(raft_group *g, uint64_t now_ms);
/* Whether this node starts elections when its election timer expires (default: yes). Off
 * (maintenance mode): it still votes and follows, and a leadership transfer to it still
 * works, but it never campaigns on its own, so it wins no election it was not handed. */
void raft_set_campaign(raft_group *g, bool on);
int raft_append_done(raft_group *g, int64_t last_offset, int64_t term);
int raft_flush_done(raft_group *g, int64_t durable_offset);

/* Leader only: appends n entries (offset/term are assigned: fills in ents[i].offset and
 * .term; set .count, .type = DATA, .len, .data). *base_out gets the first offset.
 * Returns 0, RAFT_ENOTLEADER, RAFT_EBUSY (transfer in progress), AL_EFULL (too much
 * uncommitted, retry later) or AL_EINVAL. */
int raft_propose(raft_group *g, raft_entry *ents, uint32_t n, int64_t *base_out);

/* Leader only: hand leadership to voter target once it has the whole log (within one
 * election timeout, else abandoned). Returns 0, RAFT_ENOTLEADER, RAFT_EBUSY, AL_EINVAL. */
int raft_transfer_leadership(raft_group *g, int32_t target);

enum raft_conf_op {
    RAFT_CONF_ADD_LEARNER = 1, /* add a non-voting replica that catches up */
    RAFT_CONF_PROMOTE = 2,     /* learner -> voter */
    RAFT_CONF_REMOVE = 3,      /* remove a voter or learner (may be the leader itself) */
};
/* Leader only: one membership change at a time, via a config entry that is effective as soon
 * as it is appended (single-server change, Raft thesis ch. 4). Allowed only when the
 * current config entry is committed and the leader has committed an entry of its term.
 * Returns 0, RAFT_ENOTLEADER, RAFT_EBUSY, AL_EINVAL (bad node/op), AL_EEXISTS. */
int raft_change_membership(raft_group *g, int op, int32_t node);

/* True when replica id (a learner, say) has every entry up to the leader's commit index. */
bool raft_replica_caught_up(const raft_group *g, int32_t id);

/* Pops g's next action into *out; returns 1, or 0 when g has none queued. */
int raft_action_next(raft_group *g, raft_action *out);

const char *raft_role_name(int role);
const char *raft_strerror(int err);

/* --- heartbeat batching (raft_hb.c) ------------------------------------------------------
 * Between two nodes, the empty APPEND_REQs (heartbeats) and the APPEND_RESPs of all groups
 * they share travel in one HB_BATCH message. A node's transport puts every SEND through
 * raft_hb_batcher_add; what it absorbs is sent later, once per destination, by
 * raft_hb_batcher_take; a received batch is split back with raft_hb_dispatch. */
typedef struct raft_hb_batcher {
    int32_t self;
    uint32_t n_dest, max_dest, max_items;
    int32_t *dest;         /* [max_dest] */
    uint32_t *n_items;     /* [max_dest] */
    raft_hb_item *items;   /* [max_dest * max_items] */
    uint32_t take_next;
} raft_hb_batcher;

/* Allocates room for max_dest destinations of max_items each. 0 or -ENOMEM/AL_EINVAL. */
int raft_hb_batcher_init(raft_hb_batcher *b, int32_t self, uint32_t max_dest,
                         uint32_t max_items);
void raft_hb_batcher_free(raft_hb_batcher *b);
/* Offers one outgoing message. Returns 1 if absorbed into a batch, 0 if it is not
 * batchable (send it alone), AL_EFULL if its destination's batch (or the destination table)
 * is full: take the batches, then offer it again. */
int raft_hb_batcher_add(raft_hb_batcher *b, const raft_msg *m);
/* Pops one destination's batch into *out (items point into the batcher, valid until the next
 * add/take). Returns 1, or 0 when nothing is pending. */
int raft_hb_batcher_take(raft_hb_batcher *b, raft_msg *out);

/* Steps each item of a received HB_BATCH into the group lookup(ctx, group) returns (NULL:
 * skipped); after each step calls after(ctx, group) (may be NULL) so the caller can drain
 * that group's actions. Returns the number of items delivered, or AL_EINVAL if batch is not
 * a HB_BATCH. Items whose step fails are skipped. */
int raft_hb_dispatch(const raft_msg *batch, raft_group *(*lookup)(void *ctx, uint64_t group),
                     void (*after)(void *ctx, raft_group *g), void *ctx);

#endif
