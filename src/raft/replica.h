/*
 * replica.h — one Raft replica of a replication group (a partition, or the controller: group
 * 0) whose log IS a storage_log (src/storage/log.h): it binds the pure raft_group (raft.h) to
 * the partition log, persists the hard state, carries out the group's actions and gives its
 * owner (the partition manager, the controller) propose/commit/leadership calls. The transport
 * is a callback, so a replica runs alone in tests (the simulator) and over src/rpc in a node.
 *
 * Entries are whole Kafka record batches, one batch per Raft entry (count = lastOffsetDelta + 1
 * offsets, term = partitionLeaderEpoch):
 *   DATA    a client batch, stored as produced (stamped with base offset and term);
 *   NOOP    a control batch (attributes isControl, not transactional, producerId -1) with no
 *           records, taking one offset: every Kafka consumer steps over it silently;
 *   CONFIG  a control batch with one control record: key = version 0 (i16) + type
 *           RAFT_CTRL_TYPE_CONFIG (i16), value = raft_config_encode payload.
 * NOOP/CONFIG batches are built deterministically from (offset, term, payload) (timestamps -1),
 * so every replica stores the same bytes. On the wire (raft_msg) a NOOP entry has no data and
 * a CONFIG entry carries the config payload; a DATA entry carries the whole batch. See
 * docs/ARCHITECTURE.md ("Raft replica") for why clients skip these batches.
 *
 * Files in the replica's directory, next to the log's segments:
 *   raft_state   hard state, two 4 KiB slots (8 KiB): slot i holds u32 "ALRS", u32 version 2,
 *                u64 group, u64 seq, i64 term, i32 vote, u32 CRC32C of the bytes before it;
 *                write number seq goes to slot seq % 2 with one durable write (io_write_dsync,
 *                asynchronous: no rename, no directory sync); the valid slot with the higher
 *                seq is the hard state, so a torn write leaves the previous one. Created with
 *                the atomic write ritual (the first PERSIST of a new replica, blocking once).
 *                Version 1 (32 bytes: "ALRS", 1, group, term, vote, CRC32C) is read and
 *                rewritten as version 2 at open.
 *   raft_conf    config entries in the log (the last RAFT_CONF_HISTORY): u32 "ALRC", u32 1,
 *                u32 n, n x (i64 offset, u32 len, payload), u32 CRC32C. Written before the
 *                entry is appended, rewritten after a truncation; at open every listed entry is
 *                checked against the log (a full scan if the file is unreadable).
 *   raft_snap    the snapshot point when the log's prefix was cut (prefix truncation) or a
 *                snapshot was installed from the leader: u32 "ALSN", u32 1, u64 group,
 *                i64 offset, i64 term, u32 conf_len, config payload, u32 data_len, data (the
 *                state machine's snapshot: the controller's; none for partitions), u32 CRC32C.
 *                Written (atomic ritual) before the log is cut; the log then starts at
 *                offset + 1 (log_meta). At open a log that starts earlier is cut there.
 *
 * Threading: a replica belongs to the shard whose io it was opened with; every function runs
 * there; callbacks run there (from io_poll or from inside the calls below, never while the
 * replica is in the middle of applying actions).
 *
 * Errors: 0 or negative (AL_E*, -errno, RAFT_E*). A replica whose hard state could not be
 * written, or whose log failed (AL_EFAILED), refuses everything (AL_EFAILED) until reopened.
 */
#ifndef AL_RAFT_REPLICA_H
#define AL_RAFT_REPLICA_H

#include "raft/offset_translator.h"
#include "raft/raft.h"
#include "reactor/io.h"
#include "storage/log.h"

/* Control record type of CONFIG batches: far from Kafka's own (0 abort, 1 commit, 2-6 KRaft). */
#define RAFT_CTRL_TYPE_CONFIG 0x7A01
/* ... and of TRIM batches (DeleteRecords through the log): one control record, value = the
 * new log start (i64). A TRIM batch is a DATA entry for Raft; every replica cuts its prefix
 * there once the batch commits (never past its commit index; rounded down to a batch base). */
#define RAFT_CTRL_TYPE_TRIM 0x7A02
/* Bytes of the largest NOOP/CONFIG batch. */
#define RAFT_CTRL_BATCH_MAX 256

/*
 * Classifies one validated batch (buf holds at least the whole batch, size bytes). Returns
 * RAFT_ENTRY_DATA, RAFT_ENTRY_NOOP or RAFT_ENTRY_CONFIG (then *payload and *plen point at the
 * config payload inside buf; both may be NULL), or AL_EMALFORMED for a batch that claims to be
 * a Raft control batch (isControl, not transactional, producerId -1) but is not well formed.
 * Kafka transaction markers (transactional control batches) are DATA.
 */
int raft_batch_classify(const uint8_t *buf, size_t size, const uint8_t **payload, size_t *plen);

/* Builds the NOOP (payload NULL, plen 0) or CONFIG batch with base offset and term into
 * out[cap]. Returns its size, or AL_ETOOLARGE / AL_EINVAL. */
int raft_batch_build_control(uint8_t *out, size_t cap, int type, int64_t offset, int64_t term,
                             const uint8_t *payload, size_t plen);

/* Builds the TRIM batch asking every replica to start its log at start (for raft_replicate).
 * Returns its size or a negative error. */
int raft_batch_build_trim(uint8_t *out, size_t cap, int64_t start);
/* The start a TRIM batch asks for, or -1 if buf is not a TRIM batch. */
int64_t raft_batch_trim_point(const uint8_t *buf, size_t size);

typedef struct raft_replica raft_replica;

/* The owner's side. send is required; the others may be NULL. */
typedef struct raft_replica_callbacks {
    /* Hands one encoded message (raft_msg_encode; valid only during the call) to the
     * transport for node `to`. group is the message's group (0 for an HB_BATCH). Delivery is
     * best effort: Raft retries what is lost. Runs while the replica applies actions: it must
     * queue the bytes, never deliver them into a replica of this shard before returning
     * (groups of a shard may share one action queue). */
    void (*send)(void *ctx, int32_t to, uint64_t group, const uint8_t *buf, size_t len);
    /* The commit index advanced to commit (high watermark = commit + 1). */
    void (*on_commit)(void *ctx, raft_replica *r, int64_t commit);
    /* Role, term or known leader changed (coalesced: the current values). */
    void (*on_role)(void *ctx, raft_replica *r, int role, int64_t term, int32_t leader);
    void *ctx;
    /* A snapshot from the leader was installed: the log now starts after offset; data (len
     * bytes, valid during the call) is the state machine's snapshot there. May be NULL. */
    void (*on_snapshot)(void *ctx, raft_replica *r, int64_t offset, const uint8_t *data,
                        size_t len);
} raft_replica_callbacks;

typedef struct raft_replica_config {
    const char *dir;        /* the log's directory (created if missing); copied */
    uint64_t group;
    int32_t self;
    raft_config bootstrap;  /* membership while the log holds no config entry */
    raft_options raft;      /* timeouts, windows... (raft_options_default); group, self and
                               scratch are taken from here too */
    storage_log_config log; /* the partition log's settings */
    raft_hb_batcher *hb;    /* the shard's heartbeat batcher, or NULL: every message alone */
    raft_replica_callbacks cb;
} raft_replica_config;

/*
 * Opens the replica: opens and recovers the log in cfg->dir, syncs it, reads the hard state
 * (none: term 0, no vote), creates the group and restores the config entries the log holds.
 * Starts as a follower with commit -1 (or the snapshot point). The log must start at 0, or
 * right after the snapshot point of raft_snap (a log that starts later: AL_EINVAL).
 * Returns 0 and *out, or -errno / AL_ECORRUPT (raft_state or raft_conf checksum or group
 * mismatch: refuse to guess) / AL_EINVAL / -ENOMEM. Blocks the shard (start-up work).
 */
int raft_replica_open(io *iop, const raft_replica_config *cfg, raft_replica **out);

/* Fails waiters (AL_ECLOSED), closes the log (flushing it) and frees the replica. Call it
 * from the shard, not from a replica callback. Returns 0 or the log's close error. On io_sim
 * the log's close polls without advancing virtual time: close only an idle log there (no
 * write or sync in flight), or abandon it. */
int raft_replica_close(raft_replica *r);

/* Frees the replica and its log without any I/O and without callbacks: a simulated crash.
 * Only when the io is dead too (io_sim_crash): a live io would still complete its ops. */
void raft_replica_abandon(raft_replica *r);

/* Timer input: call every few milliseconds (well under heartbeat_ms). 0 or AL_EFAILED. */
int raft_replica_tick(raft_replica *r);

/*
 * Receives one encoded message for this node (buf, len; buf may be modified: entry batches
 * are stamped in place when appended). rx is the shard's decode scratch; lookup maps a group
 * to its replica here (NULL: not hosted; the message or item is dropped). HB_BATCH messages
 * are split into their groups. Entries of an append request are checked (a DATA entry must be
 * one valid batch covering exactly its offsets; NOOP/CONFIG well formed) before any is
 * stepped. Returns 0 (also when a busy replica dropped it), AL_ENOTFOUND (no such group here),
 * or a decode/validation error (the message was dropped).
 */
typedef struct raft_rx {
    raft_entry ents[RAFT_MSG_MAX_ENTRIES];
    raft_hb_item hbs[RAFT_MSG_MAX_HB];
} raft_rx;
int raft_replica_deliver(raft_rx *rx, uint8_t *buf, size_t len,
                         raft_replica *(*lookup)(void *ctx, uint64_t group), void *ctx);

/* Sends the heartbeat batches the shard's batcher holds (one message per destination) through
 * send(ctx, ...). The batcher also absorbs append responses (the acks that move commit), so
 * call it after each round of deliveries as well as after each tick of the shard's replicas:
 * whatever waits in the batcher waits for the next call. */
void raft_replica_hb_flush(raft_hb_batcher *b,
                           void (*send)(void *ctx, int32_t to, uint64_t group,
                                        const uint8_t *buf, size_t len),
                           void *ctx);

/* A replication request (caller-owned; with RAFT_WAIT_COMMIT alive until its callback). */
enum raft_wait { RAFT_WAIT_APPEND = 0, RAFT_WAIT_COMMIT = 1 };
typedef struct raft_replicate_req raft_replicate_req;
struct raft_replicate_req {
    int wait;                            /* in: enum raft_wait (acks=1 / acks=all) */
    bool validated;                      /* in: every batch was just checked in full with
                                            storage_batch_validate (the Produce path does):
                                            only the framing is checked again */
    void (*cb)(raft_replicate_req *q);   /* in: RAFT_WAIT_COMMIT: called once with res */
    void *ctx;                           /* in: the caller's */
    int64_t base_offset, last_offset;    /* out: offsets the batches got */
    int64_t term;                        /* out: term they were appended in */
    int res;                             /* out: 0 committed; RAFT_ELOST (leadership lost:
                                            may or may not commit later; Kafka: retriable
                                            NOT_LEADER_OR_FOLLOWER), AL_ECLOSED, AL_EFAILED */
    raft_replicate_req *next;            /* private */
};

/*
 * Leader only: appends the record batches in buf (len bytes, one or more magic-2 batches, as
 * in a Produce request; stamped in place, needed only during the call) as one entry each.
 * Raft assigns the offsets; the log stamps base offset and term. On success fills
 * q->base_offset/last_offset/term and returns 1 when q->wait is RAFT_WAIT_APPEND (appended to
 * the local log, not yet durable: nothing more will be reported), or 0 for RAFT_WAIT_COMMIT
 * (q->cb runs once the last offset commits, or with an error; possibly before this returns,
 * when a storage error fails it at once). RAFT_ELOST: a storage error while appending (the
 * group was rebuilt from the log; nothing was appended). Errors (nothing appended):
 * RAFT_ENOTLEADER (Kafka NOT_LEADER_OR_FOLLOWER), RAFT_EBUSY (transfer in progress, or the
 * replica is finishing a truncation: retry), AL_EFULL (too much uncommitted: retry later),
 * AL_EMALFORMED / AL_ECORRUPT / AL_ETRUNCATED / AL_ETOOLARGE (bad batch), AL_EINVAL (a batch is
 * a Raft control batch other than TRIM, or more batches than one proposal takes), AL_EFAILED.
 */
int raft_replicate(raft_replica *r, uint8_t *buf, size_t len, raft_replicate_req *q);

/*
 * Would raft_replicate accept a proposal now? Returns 0, or the error it would return before
 * appending anything: AL_EFAILED, RAFT_ENOTLEADER, RAFT_EBUSY (transfer in progress, replica
 * busy) or AL_EFULL (too much uncommitted). Lets a caller refuse a whole request before it
 * checks anything per batch (Produce: a refused batch must not turn the same producer's next
 * in-flight batches into sequence gaps). May start the replica's reset, as raft_replicate
 * does. Owner's shard.
 */
int raft_replica_writable(raft_replica *r);

/*
 * Prefix truncation (retention, DeleteRecords, the controller's log trimming): makes the log
 * start at `start`, the base of a batch, with start - 1 <= the commit index and durable. Writes
 * raft_snap (offset start - 1, its term, the membership there, and data: the state machine's
 * snapshot at start - 1, len bytes, copied; NULL/0 for partitions) durably, then advances the
 * storage log's start (segments below are deleted). Followers that need entries below get the
 * snapshot (raft.h). Returns 0 (also when start is not past the current point), AL_ERANGE
 * (beyond commit, durable or the log end), AL_EINVAL (not a batch base), RAFT_EBUSY (retry
 * later), AL_EFAILED or -errno. At or below the current point, finishes a cut whose log-start
 * move had failed. Blocks on the metadata writes.
 */
int raft_replica_prefix_truncate(raft_replica *r, int64_t start, const uint8_t *data,
                                 size_t len);
/*
 * The replica's offset translator (offset_translator.h): Raft offsets <-> Kafka offsets, with
 * NOOP, CONFIG and TRIM batches taking no Kafka offset. Kept across suffix truncation, prefix
 * truncation (the delta at the snapshot point is in raft_snap, version 2) and snapshot installs
 * (the leader's snapshot carries it: OTX_MAGIC, i64 delta, then the state machine's data).
 * Valid until the replica is closed; read it on the replica's shard.
 */
const otx *raft_replica_otx(const raft_replica *r);

/* The snapshot point (-1: none) and the snapshot data kept there (NULL if none). */
int64_t raft_replica_snapshot_offset(const raft_replica *r);
const uint8_t *raft_replica_snapshot_data(const raft_replica *r, size_t *len);

/* Leadership transfer and membership change (raft.h semantics and errors; AL_EFAILED). */
int raft_replica_transfer_leadership(raft_replica *r, int32_t target);
/* raft_set_campaign on the group (maintenance mode: never start an election). */
void raft_replica_set_campaign(raft_replica *r, bool on);
int raft_replica_change_membership(raft_replica *r, int op, int32_t node);

/* Accessors. */
int raft_replica_role(const raft_replica *r);
int32_t raft_replica_leader(const raft_replica *r);
int64_t raft_replica_term(const raft_replica *r);
int32_t raft_replica_vote(const raft_replica *r);
/* The hard state as last written to raft_state (what a restart will find, unless a write is
 * in flight: then the restart finds this one or the one being written). */
raft_hardstate raft_replica_durable_hardstate(const raft_replica *r);
/* A hard-state write in flight: true and *out = the state being written. While it is, the
 * actions after its PERSIST (sends, appends, ...) wait and the replica takes no input (as
 * behind a truncation: messages are dropped, Raft resends them). Also true, with that state,
 * after such a write failed (the replica is failed then): the disk may hold either state, and
 * both are safe (nothing that depended on the new one was sent). */
bool raft_replica_hardstate_pending(const raft_replica *r, raft_hardstate *out);
/* Commit index (a Fetch may read offsets <= it; high watermark = commit + 1). */
int64_t raft_replica_commit(const raft_replica *r);
int64_t raft_replica_last_offset(const raft_replica *r);
/* Leader: node's match offset (durable and matching there; for the in-sync set), else -1. */
int64_t raft_replica_match(const raft_replica *r, int32_t node);
const raft_config *raft_replica_membership(const raft_replica *r);
storage_log *raft_replica_log(raft_replica *r);
uint64_t raft_replica_group(const raft_replica *r);
bool raft_replica_failed(const raft_replica *r);

/* Counters since open (tests, metrics). */
typedef struct raft_replica_stats {
    uint64_t appended;      /* entries appended to the log */
    uint64_t truncations;   /* suffix truncations (of which some waited: async) */
    uint64_t async_truncations;
    uint64_t held;          /* actions held back behind a truncation */
    uint64_t flushes;       /* durability waits issued */
    uint64_t async_reads;   /* log reads that went to disk (the group asked again) */
    uint64_t resets;        /* group rebuilt from the log after a storage error */
    uint64_t dropped_busy;  /* messages dropped because the replica was busy */
    uint64_t conf_entries;  /* CONFIG entries appended */
    uint64_t conf_truncated; /* CONFIG entries removed by a truncation */
    uint64_t prefix_truncations; /* raft_replica_prefix_truncate calls that cut the log */
    uint64_t installs;      /* snapshots installed from the leader */
    uint64_t hs_writes;     /* asynchronous hard-state slot writes issued */
    uint64_t hs_coalesced;  /* PERSISTs merged into a newer one while a write was in flight */
} raft_replica_stats;
void raft_replica_get_stats(const raft_replica *r, raft_replica_stats *out);

#endif
