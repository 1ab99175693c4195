/*
 * partition_manager.h — the partitions one shard owns: for every (topic, partition) of the topic
 * table whose owner (topic_partition_shard) is this shard, an open storage log, the partition's
 * idempotent-producer state and the list of fetches waiting for new durable data.
 *
 * pm_reconcile() makes the shard's set of open partitions match a topic table: it opens (and so
 * recovers) logs of new partitions, closes and deletes the directories of partitions whose topic
 * is gone, and applies changed topic configs. At start it is called once per shard with the
 * loaded table; afterwards after every topic change, with that shard's replica of the table.
 *
 * On disk: <data_dir>/kafka/<topic>-<topic id hex>/<partition>/ is the storage log directory.
 * The topic id in the name means a deleted and re-created topic never sees old data.
 *
 * High watermark: on a single node the high watermark is the durable offset + 1 (only fsynced
 * data is visible to consumers), so an acknowledged acks=all record can never be read and then
 * lost by a crash. Every append asks storage for a flush (group commit) and the flush completion
 * advances the high watermark and wakes fetch waiters.
 *
 * Threading: a partition_manager belongs to one shard; every function runs on that shard.
 */
#ifndef AL_CLUSTER_PARTITION_MANAGER_H
#define AL_CLUSTER_PARTITION_MANAGER_H

#include "base/base.h"
#include "cluster/topic_table.h"
#include "coord/producer_state.h"
#include "reactor/io.h"
#include "storage/log.h"

/* The leader epoch (= Raft term) of every partition on a single node. */
#define PM_LEADER_EPOCH 0

typedef struct pm_partition pm_partition;
typedef struct pm_watch pm_watch;

/* A fetch waiting for a partition's high watermark to move (caller-owned). */
struct pm_watch {
    void (*cb)(pm_watch *w); /* runs on the partition's shard; the watch is already removed */
    void *ctx;
    pm_watch *prev, *next; /* private */
    pm_partition *part;    /* private: NULL when not armed */
};

/* The largest batch storage accepts whatever max.message.bytes says (the Produce path checks
 * the topic's limit before appending; see pm_topic_resolve). */
#define PM_STORAGE_BATCH_MAX ((uint32_t)INT32_MAX)

/* The effective per-topic settings the Kafka layer checks itself. */
typedef struct pm_topic_settings {
    int32_t max_message_bytes; /* max.message.bytes (1048588) */
    bool log_append_time;      /* message.timestamp.type=LogAppendTime */
    bool compact;              /* cleanup.policy contains compact */
} pm_topic_settings;

struct pm_partition {
    uint8_t topic_id[16];
    char topic[TOPIC_NAME_MAX + 1];
    int32_t partition;
    storage_log *log;
    struct producer_state producers;
    pm_topic_settings settings;
    uint64_t config_version;    /* the topic_table version whose configs are applied */
    uint64_t defaults_version;  /* the pm's broker-defaults version applied */
    int64_t high_watermark;     /* durable offset + 1 */
    pm_watch *watches;          /* fetches waiting for the high watermark to move */
    int32_t busy;               /* reads/appends in flight (pm_hold / pm_release) */
    bool removed;               /* no longer in the table: freed when busy drops to 0 */
    storage_log_config log_cfg; /* what the log was opened with */
    bool reconfigure;           /* the topic's storage configs changed: reopen when idle */
    pm_partition *hnext;        /* hash chain */
    struct partition_manager *pm;
    /* Cluster mode (src/cluster/partition_raft.h): the partition's Raft replica, which owns
     * log; high_watermark = its commit index + 1. NULL on a single node. */
    struct raft_replica *rr;
    struct pr_part *pr;
    /* Single node: storage_log_truncations(log) when producers was last built from the log;
     * a different count (or pstate_unsafe, set across a reopen) means the log lost appends the
     * table still remembers: no snapshot of it is saved at close. */
    uint64_t pstate_truncs;
    bool pstate_unsafe;
    bool cs_handed; /* cluster mode: led by this node during its controlled shutdown */
};

typedef struct partition_manager {
    io *io;
    uint32_t shard, smp;
    int32_t node_id; /* this node: with stored assignments only its replicas are opened */
    char data_dir[1024];
    storage_cache *cache;
    pm_partition **buckets; /* hash of (topic id, partition) */
    uint32_t nbuckets;      /* power of two */
    uint32_t count;
    uint64_t next_log_id;
    int64_t producer_expiration_ms;
    /* A clean close (pm_destroy) saves a partition's producer table next to its log when the
     * next open would otherwise read at least this many bytes of it (PM_SNAPSHOT_MIN_BYTES;
     * tests set 0). */
    uint64_t snapshot_min_bytes;
    const struct broker_config_defaults *defaults; /* broker-level topic defaults, or NULL */
    uint64_t defaults_version;                      /* bumped by pm_set_defaults */
} partition_manager;

/*
 * Sets up an empty manager for `shard` of `smp` shards, with logs under data_dir and the shard's
 * batch cache (may be NULL). Returns 0, -ENOMEM or -ENAMETOOLONG.
 */
int pm_init(partition_manager *pm, io *io, uint32_t shard, uint32_t smp, const char *data_dir,
            storage_cache *cache);

/* Closes every log (storage_log_close flushes what was appended) and frees everything. A
 * single-node partition's producer table is saved first (producer_state.snapshot next to its
 * log, see snapshot_min_bytes), so that the next open loads it instead of reading the log. */
void pm_destroy(partition_manager *pm);

/*
 * Makes the open partitions match tt (see the file comment). Opening a log recovers it and
 * replays its batch headers into the producer state (blocking, start-up and admin paths only).
 * Returns 0 or the first error opening a log (the others are still tried); the error is logged.
 */
int pm_reconcile(partition_manager *pm, const topic_table *tt);

/*
 * Removes the directories under <data_dir>/kafka of topics that are not in tt (deleted, or a
 * previous incarnation of a re-created name). Call on shard 0 only, after every shard has
 * reconciled with tt (so no log of those topics is still open anywhere). Errors are logged.
 */
void pm_sweep_deleted(partition_manager *pm, const topic_table *tt);

/* The open partition (topic id, partition) owned by this shard, or NULL. */
pm_partition *pm_find(partition_manager *pm, const uint8_t topic_id[16], int32_t partition);

/*
 * The partition's shard: unlinks p and closes its log now, then with delete_data removes its
 * directory (a replica moved away, cluster_reconfig.h). Returns 0, -EBUSY (reads/appends in
 * flight: nothing done, retry later) or the removal's error (logged; p is closed anyway).
 */
int pm_drop(pm_partition *p, bool delete_data);

/*
 * Cluster mode, once after start-up: deletes the directories of partitions of tt's topics
 * (with assignments) that this node is not a replica of and that are not open on this shard
 * (copies left by a move that removed this node while it was down). The caller makes sure no
 * other shard still keeps such a replica open. Blocking file I/O.
 */
void pm_sweep_unassigned(partition_manager *pm, const topic_table *tt);

/*
 * Holds p across an asynchronous storage operation (a read that may complete later): a
 * partition removed meanwhile (topic deleted) is closed only after the last release.
 * pm_release returns false if p was removed (and is now freed or still held by others): the
 * caller must not use p after a false return.
 */
void pm_hold(pm_partition *p);
bool pm_release(pm_partition *p);

/* Storage housekeeping (retention, segment roll, compaction) of every open partition, with
 * budget_bytes of compaction input per partition; expires idempotent producers whose last
 * batch's timestamp is producer_expiration_ms before now_ms; also applies pending storage
 * config changes
 * (a log whose topic's segment/retention/cleanup configs changed is flushed and reopened with
 * the new configuration when no read holds it). */
void pm_housekeep(partition_manager *pm, int64_t now_ms, size_t budget_bytes);

/*
 * Resolves a topic's effective settings: each key takes the topic's override, else the
 * broker-level default in d (may be NULL), else Kafka's default (topic_config_resolve). Fills
 * the Kafka-level settings (out, may be NULL) and the storage log config (c, may be NULL; cache
 * and log_id left at their defaults). Invalid overrides are skipped.
 */
struct broker_config_defaults;
void pm_topic_resolve(const topic *t, const struct broker_config_defaults *d,
                      pm_topic_settings *out, storage_log_config *c);

/* pm_topic_resolve without broker-level defaults (Kafka's defaults). */
void pm_settings_from_topic(const topic *t, pm_topic_settings *out);
void pm_log_config_from_topic(const topic *t, storage_log_config *out);

/*
 * Sets the broker-level defaults every partition resolves its topic's settings with (d stays
 * owned by the caller and must outlive the manager or the next call) and marks every open
 * partition for re-resolution at the next pm_reconcile (which applies what changed).
 */
void pm_set_defaults(partition_manager *pm, const struct broker_config_defaults *d);

/*
 * Called after a successful append of offsets up to last_offset: asks storage for a flush and,
 * when it completes, advances the high watermark and wakes watches. Returns 0 or -ENOMEM.
 */
int pm_note_append(pm_partition *p, int64_t last_offset);

/* Arms w on p: w->cb runs once the high watermark moves past `known_hw`, at once (from this
 * call) if it already has. */
void pm_watch_arm(pm_partition *p, pm_watch *w, int64_t known_hw);

/* Disarms w if armed (no callback). */
void pm_watch_disarm(pm_watch *w);

/* Refreshes p->high_watermark from storage's durable offset (cluster mode: from the Raft
 * commit index); wakes watches if it moved. */
void pm_refresh_hw(pm_partition *p);

/* Wakes (and disarms) every watch of p, e.g. when it lost its Raft leadership: the fetches
 * and produce waits look again and answer. */
void pm_wake_watches(pm_partition *p);

/*
 * Offset translation (cluster mode, src/raft/offset_translator.h): the log holds Raft offsets,
 * clients see Kafka offsets, which skip Raft's own batches (NOOP, CONFIG, TRIM). Identity on a
 * single node (no replica). The partition's shard.
 *   pm_to_kafka: the Kafka offset of log offset off (a Raft gap offset maps to the next data
 *                record's); pm_to_raft: the log offset of Kafka offset k.
 *   pm_kafka_hw, pm_kafka_start: the high watermark and log start offset in Kafka offsets.
 */
int64_t pm_to_kafka(const pm_partition *p, int64_t off);
int64_t pm_to_raft(const pm_partition *p, int64_t k);
int64_t pm_kafka_hw(const pm_partition *p);
int64_t pm_kafka_start(const pm_partition *p);

/* Rebuilds p's idempotent-producer state from its log (a new Raft leader does this before
 * its first append). Blocks like the replay at open. Returns 0 or the read error. */
int pm_rebuild_producers(pm_partition *p);

/* Single node: rebuilds p's producer state (pm_rebuild_producers) when its log dropped appends
 * since the state was built (storage_log_truncations: unflushed appends cut after ENOSPC, or a
 * truncation before a reopen): the table may remember batches the log no longer holds, and a
 * client's retry of one would be answered as a duplicate at an offset holding something else or
 * nothing (an acknowledged loss). Call before checking a batch against the table. Returns 0
 * (fresh, nothing to do on a Raft replica) or the scan's error (the table is then left empty
 * and the rebuild is tried again at the next call). */
int pm_producers_fresh(pm_partition *p);

/* Directory of a partition's log: <data_dir>/kafka/<topic>-<id hex>/<partition>. Returns 0 or
 * -ENAMETOOLONG. */
int pm_partition_dir(const partition_manager *pm, const char *topic_name, const uint8_t id[16],
                     int32_t partition, char *out, size_t cap);

#endif
