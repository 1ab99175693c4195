/*
 * group.h — the classic consumer-group coordinator (Kafka's "classic" protocol: JoinGroup,
 * SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups,
 * DeleteGroups, OffsetDelete) as pure logic: no I/O, no threads, time passed in. It behaves as
 * Apache Kafka 3.8's GroupCoordinator: states Empty, PreparingRebalance, CompletingRebalance,
 * Stable, Dead; generations; member ids "<client.id>-<uuid>"; MEMBER_ID_REQUIRED for new
 * dynamic members on JoinGroup v4+; static membership (group.instance.id) with fencing;
 * protocol selection by votes; session, rebalance, new-member and pending-sync timeouts; the
 * initial rebalance delay.
 *
 * Asynchronous outcomes: group_join and group_sync take a callback and an argument. The callback
 * runs exactly once per request: either before the call returns, or later from another call
 * (e.g. another member's join completing the rebalance) or from group_coordinator_tick, or with
 * COORDINATOR_NOT_AVAILABLE from group_coordinator_destroy. The result's pointers are valid only
 * during the callback (copy or encode at once). Callbacks must not call back into the
 * coordinator. A handler whose connection closed calls group_coordinator_forget(c, arg) so the
 * callback is never invoked with that arg.
 *
 * Persistence: every state change Kafka persists (offset commits and deletes, the group after a
 * completed sync, a group emptying, a static member replaced, group deletion and expiry) is
 * handed to the `emit` callback as __consumer_offsets records (group_records.h formats). The
 * caller appends them to the group's partition (coord_partition_for) and must not send any
 * response produced by the same call before those records are durable. If emit fails, the
 * change is refused (offsets: COORDINATOR_NOT_AVAILABLE per partition; sync: the members get the
 * error and the group rebalances). On start the caller replays every record of the partitions
 * in offset order through group_coordinator_load, then calls group_coordinator_load_done.
 *
 * Request strings and buffers are only read during the call and must not point into the
 * coordinator's own memory (e.g. a group_get_leader() result): a call may free those first.
 *
 * Threading: one coordinator is used by one thread (the shard owning __consumer_offsets).
 * Kafka error codes (src/kafka/errors.h) are returned as int16_t; internal errors as negative
 * ints where noted.
 */
#ifndef AL_COORD_GROUP_H
#define AL_COORD_GROUP_H

#include "base/base.h"
#include "coord/hmap.h"

enum group_state {
    GROUP_EMPTY,
    GROUP_PREPARING_REBALANCE,
    GROUP_COMPLETING_REBALANCE,
    GROUP_STABLE,
    GROUP_DEAD,
};

/* Kafka's name of a state ("Empty", "PreparingRebalance", ...). */
const char *group_state_name(int state);

struct group_config {
    int32_t min_session_timeout_ms;     /* group.min.session.timeout.ms, 6000 */
    int32_t max_session_timeout_ms;     /* group.max.session.timeout.ms, 1800000 */
    int32_t initial_rebalance_delay_ms; /* group.initial.rebalance.delay.ms, 3000 */
    int32_t max_size;                   /* group.max.size, INT32_MAX */
    int32_t new_member_join_timeout_ms; /* 300000 as in Kafka */
    int32_t offset_metadata_max_bytes;  /* offset.metadata.max.bytes, 4096 */
    int64_t offsets_retention_ms;       /* offsets.retention.minutes * 60000, 7 days */
    int64_t offsets_retention_check_interval_ms; /* 600000 */
    int32_t max_groups;                 /* bound on groups held (new ones refused beyond) */
};

/* Fills Kafka's defaults. */
void group_config_defaults(struct group_config *cfg);

/* A record for __consumer_offsets; value NULL is a tombstone. */
struct group_record {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
};

/* Hands n records of group_id to the caller for appending, in order. Returns 0 or a negative
 * error (then the change is refused). The buffers are valid only during the call. */
typedef int (*group_emit_fn)(void *ctx, const char *group_id, const struct group_record *recs,
                             int n);

struct group_coordinator {
    struct group_config cfg;
    struct coord_hmap groups; /* group id -> struct group */
    group_emit_fn emit;
    void *emit_ctx;
    uint64_t rng;            /* member id uuids: seeded by the caller (io_random in production) */
    int64_t next_cleanup_ms; /* next offset-expiry pass */
    bool loading;
};

/* Initialises an empty coordinator. seed feeds member-id generation. emit may be NULL only in
 * tests that do not persist. */
void group_coordinator_init(struct group_coordinator *c, const struct group_config *cfg,
                            group_emit_fn emit, void *emit_ctx, uint64_t seed);

/* Frees everything; pending join/sync callbacks get COORDINATOR_NOT_AVAILABLE first. */
void group_coordinator_destroy(struct group_coordinator *c);

/* Fires due timers (session expiry, join and sync timeouts, initial delay, offset expiry).
 * Call at least every ~100 ms or at group_coordinator_next_deadline. */
void group_coordinator_tick(struct group_coordinator *c, int64_t now_ms);

/* The earliest time a timer is due (INT64_MAX if none). */
int64_t group_coordinator_next_deadline(const struct group_coordinator *c);

/* Drops every pending callback whose arg is `arg` (its connection went away). */
void group_coordinator_forget(struct group_coordinator *c, void *arg);

/* ---- JoinGroup ---- */

struct group_protocol {
    const char *name;
    const uint8_t *metadata;
    size_t metadata_len;
};

struct group_join_request {
    const char *group_id;
    const char *member_id;         /* "" for a new member */
    const char *group_instance_id; /* NULL: dynamic member */
    const char *client_id;
    const char *client_host;
    int32_t session_timeout_ms;
    int32_t rebalance_timeout_ms; /* v0: pass the session timeout */
    const char *protocol_type;
    int nprotocols;
    const struct group_protocol *protocols;
    bool require_known_member_id; /* JoinGroup v4+ */
    bool support_skip_assignment; /* JoinGroup v9+ (KIP-814) */
};

struct group_join_member {
    const char *member_id;
    const char *group_instance_id; /* NULL if dynamic */
    const uint8_t *metadata;
    size_t metadata_len;
};

struct group_join_result {
    int16_t error;
    int32_t generation_id; /* -1 on error */
    const char *protocol_type; /* NULL when unknown */
    const char *protocol_name; /* NULL when unknown */
    const char *leader;        /* "" on error */
    const char *member_id;
    bool skip_assignment;
    int nmembers; /* the leader gets all members with their metadata; others 0 */
    const struct group_join_member *members;
};

typedef void (*group_join_cb)(void *arg, const struct group_join_result *r);

/* JoinGroup: the result arrives through cb (see the file comment). */
void group_join(struct group_coordinator *c, const struct group_join_request *req, int64_t now_ms,
                group_join_cb cb, void *arg);

/* ---- SyncGroup ---- */

struct group_assignment {
    const char *member_id;
    const uint8_t *data;
    size_t len;
};

struct group_sync_request {
    const char *group_id;
    const char *member_id;
    const char *group_instance_id; /* NULL: none */
    int32_t generation_id;
    const char *protocol_type; /* NULL: not given (v0-4) */
    const char *protocol_name; /* NULL: not given */
    int nassignments;          /* only the leader's count */
    const struct group_assignment *assignments;
};

struct group_sync_result {
    int16_t error;
    const char *protocol_type;
    const char *protocol_name;
    const uint8_t *assignment;
    size_t assignment_len;
};

typedef void (*group_sync_cb)(void *arg, const struct group_sync_result *r);

void group_sync(struct group_coordinator *c, const struct group_sync_request *req, int64_t now_ms,
                group_sync_cb cb, void *arg);

/* ---- Heartbeat, LeaveGroup ---- */

/* Returns NONE, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
 * FENCED_INSTANCE_ID, COORDINATOR_NOT_AVAILABLE or INVALID_GROUP_ID. */
int16_t group_heartbeat(struct group_coordinator *c, const char *group_id, const char *member_id,
                        const char *group_instance_id, int32_t generation_id, int64_t now_ms);

struct group_leave_member {
    const char *member_id;         /* "" with an instance id: the static member's current id */
    const char *group_instance_id; /* NULL: none */
    int16_t error;                 /* out */
};

/* LeaveGroup (v3+ batch; v0-2 pass one member and use its error as the top-level one).
 * Returns the top-level error; per-member errors in members[i].error. */
int16_t group_leave(struct group_coordinator *c, const char *group_id,
                    struct group_leave_member *members, int n, int64_t now_ms);

/* ---- offsets ---- */

struct group_offset_commit {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int32_t leader_epoch; /* -1 if none */
    const char *metadata; /* NULL: "" */
    int16_t error;        /* out */
    int64_t expire_ts;    /* <= 0: none; OffsetCommit v2-4 retention: now + retention time */
};

/* OffsetCommit. generation_id -1 with an empty member id is a "simple" commit, allowed when the
 * group is Empty or does not exist. Returns the error that applies to the whole request (also
 * copied into every partition), or NONE with per-partition errors
 * (OFFSET_METADATA_TOO_LARGE, COORDINATOR_NOT_AVAILABLE when emit failed). */
int16_t group_commit_offsets(struct group_coordinator *c, const char *group_id,
                             const char *member_id, const char *group_instance_id,
                             int32_t generation_id, struct group_offset_commit *parts, int n,
                             int64_t now_ms);

struct group_offset_fetch {
    const char *topic;
    int32_t partition;
    int64_t offset;       /* out: -1 when none */
    int32_t leader_epoch; /* out: -1 when none */
    const char *metadata; /* out: "" when none; valid until the next mutating call */
    int16_t error;        /* out */
};

/* OffsetFetch of listed partitions. Returns the group-level error (NONE, INVALID_GROUP_ID). */
int16_t group_fetch_offsets(struct group_coordinator *c, const char *group_id,
                            struct group_offset_fetch *parts, int n);

typedef void (*group_offset_visit)(void *arg, const char *topic, int32_t partition,
                                   int64_t offset, int32_t leader_epoch, const char *metadata);

/* OffsetFetch of all committed partitions of a group, in (topic, partition) order. Returns the
 * group-level error; an unknown group visits nothing. -ENOMEM is returned as
 * UNKNOWN_SERVER_ERROR. */
int16_t group_fetch_all_offsets(struct group_coordinator *c, const char *group_id,
                                group_offset_visit visit, void *arg);

struct group_offset_delete {
    const char *topic;
    int32_t partition;
    int16_t error; /* out: NONE or GROUP_SUBSCRIBED_TO_TOPIC */
};

/* OffsetDelete. Returns the group-level error: NONE, GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP
 * (a non-consumer group that is not Empty), INVALID_GROUP_ID, COORDINATOR_NOT_AVAILABLE. */
int16_t group_delete_offsets(struct group_coordinator *c, const char *group_id,
                             struct group_offset_delete *parts, int n, int64_t now_ms);

/* ---- admin ---- */

struct group_member_desc {
    const char *member_id;
    const char *group_instance_id; /* NULL if dynamic */
    const char *client_id;
    const char *client_host;
    const uint8_t *metadata; /* of the selected protocol; only for a Stable group */
    size_t metadata_len;
    const uint8_t *assignment; /* only for a Stable group */
    size_t assignment_len;
};

struct group_description {
    int16_t error;
    const char *group_id;
    const char *state;         /* "Dead" for an unknown group */
    const char *protocol_type; /* "" when none */
    const char *protocol;      /* "" unless Stable */
    int nmembers;
    const struct group_member_desc *members;
};

/* DescribeGroups for one group: calls cb once with the description (valid during the call). An
 * unknown group is described as "Dead", with GROUP_ID_NOT_FOUND from api_version 6 on. */
void group_describe(struct group_coordinator *c, const char *group_id, int16_t api_version,
                    void (*cb)(void *arg, const struct group_description *d), void *arg);

/* ListGroups: visits every group (not Dead) whose state is in states[0..nstates) (Kafka's names,
 * case-insensitive; nstates 0 = all). */
void group_list(struct group_coordinator *c, const char *const *states, int nstates,
                void (*visit)(void *arg, const char *group_id, const char *protocol_type,
                              const char *state),
                void *arg);

/* DeleteGroups for one group: NONE, GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, INVALID_GROUP_ID, or
 * COORDINATOR_NOT_AVAILABLE when the tombstones could not be emitted. */
int16_t group_delete(struct group_coordinator *c, const char *group_id, int64_t now_ms);

/* ---- loading from __consumer_offsets ---- */

/* Replays one record (value NULL = tombstone), in offset order. Returns 0, or AL_EMALFORMED /
 * AL_ETRUNCATED / AL_EUNSUPPORTED / AL_ETOOLARGE for a record it cannot read (the caller logs
 * and skips it), or -ENOMEM. Records of unknown newer types are skipped (0). */
int group_coordinator_load(struct group_coordinator *c, const uint8_t *key, size_t key_len,
                           const uint8_t *value, size_t value_len, int64_t now_ms);

/* Ends loading: the groups the records since the previous load_done touched settle: those with
 * members become Stable with fresh session deadlines, those with only offsets Empty, those left
 * with nothing are dropped. Groups live before the load (another __consumer_offsets partition's,
 * when partitions load one at a time as this node becomes their leader) are left alone. */
void group_coordinator_load_done(struct group_coordinator *c, int64_t now_ms);

/* True between the first group_coordinator_load and load_done: handlers answer group requests
 * with COORDINATOR_LOAD_IN_PROGRESS meanwhile (Heartbeat: NONE, SyncGroup:
 * REBALANCE_IN_PROGRESS, as Kafka does). */
static inline bool group_coordinator_is_loading(const struct group_coordinator *c)
{
    return c->loading;
}

/* Drops every group living on __consumer_offsets partition `partition` (of `partitions`), e.g.
 * when this node stops leading it: pending JoinGroup/SyncGroup callbacks get NOT_COORDINATOR.
 * Nothing is emitted. Returns the number of groups dropped. */
int group_coordinator_unload_partition(struct group_coordinator *c, int32_t partition,
                                       int32_t partitions);

/* ---- inspection (tests, metrics) ---- */

struct group; /* opaque */
const struct group *group_find(const struct group_coordinator *c, const char *group_id);
int group_get_state(const struct group *g);
int32_t group_get_generation(const struct group *g);
const char *group_get_leader(const struct group *g);         /* NULL when none */
const char *group_get_protocol(const struct group *g);       /* NULL when none */
const char *group_get_protocol_type(const struct group *g);  /* NULL when none */
int group_get_member_count(const struct group *g);
const char *group_get_member_id(const struct group *g, int i);
const char *group_get_member_instance_id(const struct group *g, int i);
size_t group_get_offset_count(const struct group *g);
size_t group_coordinator_group_count(const struct group_coordinator *c);

#endif
