/*
 * partition_manager.c — the partitions of one shard (see partition_manager.h): reconcile with
 * the topic table, open/recover/delete logs, producer-state replay, high watermark and fetch
 * watches.
 */
#include "cluster/partition_manager.h"

#include "cluster/topic_config.h"

#include "base/log.h"
#include "cluster/partition_raft.h"
#include "cluster/cluster_reconfig.h"
#include "storage/batch.h"
#include "storage/log_raft.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Producer state is rebuilt from at most the last this many offsets of a log: retries only
 * ever concern a producer's last few batches, and a producer not seen in that window is
 * "unknown" and accepted at any sequence, as Kafka does after its state expires. */
#define PM_REPLAY_MAX_OFFSETS 100000

/* The producer-state snapshot of a single-node partition (see pm_save_snapshot): written at a
 * clean close when the header scan it replaces would read at least PM_SNAPSHOT_MIN_BYTES (a
 * smaller scan costs less than the snapshot's two syncs at close and one at open). */
#define PM_SNAPSHOT_NAME      "producer_state.snapshot"
#define PM_SNAPSHOT_MIN_BYTES (8u << 20)
#define PM_SNAPSHOT_MAX       (256u << 20) /* refuse to read a larger file */

static uint64_t pm_hash(const uint8_t id[16], int32_t partition)
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    uint64_t x = a ^ (b * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)(uint32_t)partition << 17);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

int pm_init(partition_manager *pm, io *ioh, uint32_t shard, uint32_t smp, const char *data_dir,
            storage_cache *cache)
{
    memset(pm, 0, sizeof(*pm));
    pm->io = ioh;
    pm->shard = shard;
    pm->smp = smp ? smp : 1;
    pm->cache = cache;
    pm->next_log_id = ((uint64_t)shard << 48) + 1;
    pm->producer_expiration_ms = 86400000; /* transactional.id / producer.id expiration: 1 d */
    pm->snapshot_min_bytes = PM_SNAPSHOT_MIN_BYTES;
    int n = snprintf(pm->data_dir, sizeof(pm->data_dir), "%s", data_dir);
    if (n < 0 || (size_t)n >= sizeof(pm->data_dir)) return -ENAMETOOLONG;
    pm->nbuckets = 256;
    pm->buckets = calloc(pm->nbuckets, sizeof(*pm->buckets));
    return pm->buckets ? 0 : -ENOMEM;
}

int pm_partition_dir(const partition_manager *pm, const char *topic_name, const uint8_t id[16],
                     int32_t partition, char *out, size_t cap)
{
    char hex[33];
    topic_id_hex(id, hex);
    int n = snprintf(out, cap, "%s/kafka/%s-%s/%" PRId32, pm->data_dir, topic_name, hex, partition);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

pm_partition *pm_find(partition_manager *pm, const uint8_t topic_id[16], int32_t partition)
{
    pm_partition *p = pm->buckets[pm_hash(topic_id, partition) & (pm->nbuckets - 1)];
    for (; p; p = p->hnext)
        if (p->partition == partition && !memcmp(p->topic_id, topic_id, 16)) return p;
    return NULL;
}

static int pm_grow(partition_manager *pm)
{
    uint32_t nb = pm->nbuckets * 2;
    pm_partition **b = calloc(nb, sizeof(*b));
    if (!b) return -ENOMEM;
    for (uint32_t i = 0; i < pm->nbuckets; i++) {
        pm_partition *p = pm->buckets[i];
        while (p) {
            pm_partition *next = p->hnext;
            uint64_t h = pm_hash(p->topic_id, p->partition) & (nb - 1);
            p->hnext = b[h];
            b[h] = p;
            p = next;
        }
    }
    free(pm->buckets);
    pm->buckets = b;
    pm->nbuckets = nb;
    return 0;
}

static void pm_unlink(partition_manager *pm, pm_partition *p)
{
    pm_partition **pp = &pm->buckets[pm_hash(p->topic_id, p->partition) & (pm->nbuckets - 1)];
    while (*pp && *pp != p) pp = &(*pp)->hnext;
    AL_ASSERT(*pp == p);
    *pp = p->hnext;
    pm->count--;
}

/* ---- settings from topic configs ---- */

void pm_topic_resolve(const topic *t, const struct broker_config_defaults *d,
                      pm_topic_settings *out, storage_log_config *c)
{
    /* A topic override refused here (e.g. written by a newer version) is skipped, as is a
     * set that breaks a cross-key rule: the broker defaults then stand for the topic. */
    struct topic_config_pair pairs[TOPIC_CONFIGS_MAX];
    int n = 0;
    for (int32_t i = 0; i < t->n_configs && n < TOPIC_CONFIGS_MAX; i++) {
        if (topic_config_check(t->configs[i].key, t->configs[i].value, NULL, 0)) continue;
        pairs[n++] = (struct topic_config_pair){t->configs[i].key, t->configs[i].value};
    }
    const struct topic_config_pair *bp = d ? d->pairs : NULL;
    int nb = d ? d->n : 0;
    struct topic_configs tc;
    if (topic_config_resolve(pairs, n, bp, nb, &tc, NULL, 0) &&
        topic_config_resolve(NULL, 0, bp, nb, &tc, NULL, 0))
        topic_config_defaults(&tc);
    uint32_t cleanup = tc.cleanup_policy;
    if (t->internal && !topic_config_value(t, "cleanup.policy")) cleanup = TOPIC_CLEANUP_COMPACT;
    if (out) {
        out->max_message_bytes = tc.max_message_bytes;
        out->log_append_time = tc.message_timestamp_type == TOPIC_TIMESTAMP_LOG_APPEND_TIME;
        out->compact = (cleanup & TOPIC_CLEANUP_COMPACT) != 0;
    }
    if (c) {
        storage_log_config_default(c);
        c->segment_bytes = (uint64_t)AL_MAX(tc.segment_bytes, 4096); /* storage's minimum */
        c->segment_ms = tc.segment_ms;
        c->retention_bytes = tc.retention_bytes;
        c->retention_ms = tc.retention_ms;
        c->delete_retention_ms = tc.delete_retention_ms;
        /* Produce checks max.message.bytes itself (settings, live); storage keeps only a
         * sanity bound, so changing the limit never reopens a log (a reopen scans the last
         * segment: seconds per partition). */
        c->max_message_bytes = PM_STORAGE_BATCH_MAX;
        c->cleanup_policy = 0;
        if (cleanup & TOPIC_CLEANUP_DELETE) c->cleanup_policy |= STORAGE_CLEANUP_DELETE;
        if (cleanup & TOPIC_CLEANUP_COMPACT) c->cleanup_policy |= STORAGE_CLEANUP_COMPACT;
    }
}

void pm_settings_from_topic(const topic *t, pm_topic_settings *out)
{
    pm_topic_resolve(t, NULL, out, NULL);
}

void pm_log_config_from_topic(const topic *t, storage_log_config *c)
{
    pm_topic_resolve(t, NULL, NULL, c);
}

void pm_set_defaults(partition_manager *pm, const struct broker_config_defaults *d)
{
    pm->defaults = d;
    pm->defaults_version++;
}

/* ---- opening, replay, closing ---- */

static bool log_config_equal(const storage_log_config *a, const storage_log_config *b)
{
    return a->segment_bytes == b->segment_bytes && a->segment_ms == b->segment_ms &&
           a->fallocate_step == b->fallocate_step && a->retention_bytes == b->retention_bytes &&
           a->retention_ms == b->retention_ms && a->cleanup_policy == b->cleanup_policy &&
           a->delete_retention_ms == b->delete_retention_ms &&
           a->max_message_bytes == b->max_message_bytes && a->flush_bytes == b->flush_bytes &&
           a->index_interval_bytes == b->index_interval_bytes;
}

struct reopen_wait {
    bool done;
    int res;
};

static void reopen_flushed(storage_waiter *w)
{
    struct reopen_wait *rw = w->ctx;
    rw->done = true;
    rw->res = w->res;
}

/*
 * Applies p->log_cfg. A Raft replica's log stays open: its roll settings change at once
 * (storage_log_set_roll), the rest is read at each housekeeping pass. Any other log is
 * reopened (storage takes its config at open): waits (blocking,
 * admin path) for everything appended to be flushed so nothing is dropped, then closes and
 * reopens. Skipped while a read holds the partition (retried from pm_housekeep). A failed
 * reopen is tried once more; failing again is fatal (the directory was open a moment ago, and
 * serving a partition without its log is not an option).
 */
static void pm_reconfigure(partition_manager *pm, pm_partition *p)
{
    if (!p->reconfigure) return;
    if (p->rr) {
        /* The replica owns the log and keeps it open: the roll settings apply now, on every
         * replica (later appends roll at the new segment.bytes); retention, compaction and
         * delete.retention.ms are read from p->log_cfg at each pr_housekeep pass. */
        if (storage_log_set_roll(p->log, p->log_cfg.segment_bytes, p->log_cfg.segment_ms))
            log_info("cluster", "%s/%" PRId32 ": segment.bytes %" PRIu64 ", segment.ms %" PRId64
                     " apply to later rolls", p->topic, p->partition, p->log_cfg.segment_bytes,
                     p->log_cfg.segment_ms);
        p->reconfigure = false;
        return;
    }
    if (p->busy) return;
    int64_t last = storage_log_high_offset(p->log) - 1;
    if (last > storage_log_durable_offset(p->log)) {
        struct reopen_wait rw = {false, 0};
        storage_waiter w = {.cb = reopen_flushed, .ctx = &rw, .offset = last};
        int rc = storage_log_flush_wait(p->log, last, &w);
        for (int i = 0; rc == 0 && !rw.done && i < 1000000; i++)
            if (io_poll(pm->io, UINT64_MAX) < 0) break;
        if ((rc == 0 && (!rw.done || rw.res < 0)) || rc < 0) {
            log_warn("cluster", "%s/%" PRId32 ": not reconfigured: flush failed", p->topic,
                     p->partition);
            return; /* retried later */
        }
    }
    pm_refresh_hw(p);
    char dir[1200];
    if (pm_partition_dir(pm, p->topic, p->topic_id, p->partition, dir, sizeof(dir))) return;
    /* The producer table stays; the new log object counts truncations from 0. */
    if (storage_log_truncations(p->log) != p->pstate_truncs) p->pstate_unsafe = true;
    p->pstate_truncs = 0;
    storage_log *old = p->log;
    storage_log_close(old);
    int err = storage_log_open(pm->io, dir, &p->log_cfg, &p->log);
    if (err) {
        log_error("cluster", "%s/%" PRId32 ": reopening with the new configuration failed: %s",
                  p->topic, p->partition, al_strerror(err));
        err = storage_log_open(pm->io, dir, &p->log_cfg, &p->log);
    }
    AL_ASSERT(err == 0); /* the directory was open a moment ago: fail loudly rather than serve
                            a partition without a log */
    p->reconfigure = false;
    log_info("cluster", "%s/%" PRId32 ": storage configuration applied", p->topic, p->partition);
}

struct replay_ctx {
    pm_partition *p;
    int64_t batches;
};

/* storage_log_scan_headers callback: one batch header into the producer state. */
static int replay_header(void *ctx, const storage_batch_hdr *h)
{
    struct replay_ctx *rc = ctx;
    rc->batches++;
    if (h->producer_id < 0 || (h->attributes & STORAGE_ATTR_CONTROL)) return 0;
    struct producer_batch b = {h->producer_id, h->producer_epoch, h->base_sequence,
                               h->last_offset_delta + 1, h->max_timestamp};
    return producer_state_replay(&rc->p->producers, &b, h->base_offset);
}

/* The first offset whose batch headers rebuild the producer state (the replay window). */
static int64_t pm_replay_start(storage_log *log)
{
    int64_t end = storage_log_high_offset(log);
    return AL_MAX(storage_log_start_offset(log), end - PM_REPLAY_MAX_OFFSETS);
}

/*
 * Rebuilds the producer state of p from the batch headers of the tail of its log
 * (PM_REPLAY_MAX_OFFSETS) in offset order: one sequential scan in large chunks
 * (storage_log_scan_headers, blocking), not a Fetch-style read per 64 KiB (that took 4.5 s for
 * 100,000 offsets of 1 KiB records at start-up). Returns 0 or the scan's error.
 */
static int pm_replay_producers(partition_manager *pm, pm_partition *p)
{
    int64_t end = storage_log_high_offset(p->log);
    int64_t off = pm_replay_start(p->log);
    uint64_t truncs = storage_log_truncations(p->log);
    if (off < end) {
        struct replay_ctx rc = {p, 0};
        int err = storage_log_scan_headers(p->log, off, replay_header, &rc);
        if (err) return err;
        if (producer_state_count(&p->producers))
            log_info("cluster", "%s/%" PRId32 ": %zu producers rebuilt from %" PRId64 " batches",
                     p->topic, p->partition, producer_state_count(&p->producers), rc.batches);
    }
    p->pstate_truncs = truncs;
    p->pstate_unsafe = false;
    return 0;
}

/* Bytes of log a header scan from offset `from` reads: whole segments, and the share of the
 * first one by offsets (an estimate, for the snapshot threshold). */
static uint64_t pm_scan_bytes(storage_log *log, int64_t from)
{
    uint64_t n = 0;
    for (int i = storage_log_segment_count(log) - 1; i >= 0; i--) {
        storage_segment_info si;
        if (storage_log_segment_info(log, i, &si) || si.last < from) break;
        if (si.base >= from || si.last <= si.base)
            n += si.size;
        else
            n += (uint64_t)((double)si.size * (double)(si.last - from + 1) /
                            (double)(si.last - si.base + 1));
    }
    return n;
}

static int pm_snapshot_path(const pm_partition *p, char *dir, size_t dcap, char *out, size_t cap)
{
    int err = pm_partition_dir(p->pm, p->topic, p->topic_id, p->partition, dir, dcap);
    if (err) return err;
    int n = snprintf(out, cap, "%s/" PM_SNAPSHOT_NAME, dir);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

/*
 * Clean close of a single-node partition (pm_destroy): saves its producer table with the log's
 * next offset (producer_state_encode), durably (io_fs_write_atomic), when the scan it replaces
 * at the next open is large enough (pm->snapshot_min_bytes). Called before the log's final
 * flush: if that flush fails, the log ends before the snapshot's offset and the next open
 * ignores it. Not saved when the log failed or lost appends the table remembers (truncation).
 * Errors are logged; the next open then scans.
 */
static void pm_save_snapshot(partition_manager *pm, pm_partition *p)
{
    if (p->rr || !p->log || storage_log_failed(p->log)) return;
    if (p->pstate_unsafe || storage_log_truncations(p->log) != p->pstate_truncs) return;
    int64_t end = storage_log_high_offset(p->log);
    if (end <= storage_log_start_offset(p->log) ||
        pm_scan_bytes(p->log, pm_replay_start(p->log)) < pm->snapshot_min_bytes)
        return;
    char dir[1200], path[1300];
    if (pm_snapshot_path(p, dir, sizeof(dir), path, sizeof(path))) return;
    uint8_t *b = NULL;
    size_t len = 0;
    int err = producer_state_encode(&p->producers, end, &b, &len);
    if (err == 0) err = io_fs_write_atomic(pm->io, path, b, len);
    free(b);
    if (err) {
        log_warn("cluster", "%s/%" PRId32 ": producer-state snapshot not saved (%s); the next "
                 "start rebuilds it from the log", p->topic, p->partition, al_strerror(err));
        return;
    }
    log_debug("cluster", "%s/%" PRId32 ": producer-state snapshot of %zu producers at offset %"
              PRId64 " saved", p->topic, p->partition, producer_state_count(&p->producers), end);
}

/*
 * At open of a single-node partition: loads the snapshot a clean close left if it is intact
 * and the log ends exactly at its offset. Any snapshot found is then removed durably (unlink,
 * directory fsync) before the partition serves, so it is never trusted for a log that changed
 * after this open. Returns 1 (loaded: no scan needed), 0 (none or not usable: the caller
 * scans; p->producers is empty) or -errno when it cannot be removed.
 */
static int pm_load_snapshot(partition_manager *pm, pm_partition *p)
{
    char dir[1200], path[1300];
    if (pm_snapshot_path(p, dir, sizeof(dir), path, sizeof(path))) return 0;
    uint8_t *b = NULL;
    size_t len = 0;
    int err = io_fs_read_all(pm->io, path, PM_SNAPSHOT_MAX, &b, &len);
    if (err == -ENOENT) return 0;
    int loaded = 0;
    int64_t end = -1, next = storage_log_high_offset(p->log);
    if (err == 0) err = producer_state_decode(&p->producers, b, len, &end);
    free(b);
    if (err)
        log_warn("cluster", "%s/%" PRId32 ": producer-state snapshot %s unusable (%s); "
                 "rebuilding it from the log", p->topic, p->partition, path, al_strerror(err));
    else if (end != next) {
        log_info("cluster", "%s/%" PRId32 ": producer-state snapshot at offset %" PRId64
                 " does not match the log (next offset %" PRId64 "); rebuilding it from the log",
                 p->topic, p->partition, end, next);
        producer_state_clear(&p->producers);
    } else
        loaded = 1;
    err = io_fs_unlink(pm->io, path);
    if (err == 0 || err == -ENOENT) err = io_fs_fsync_dir(pm->io, dir);
    if (err) {
        log_error("cluster", "%s/%" PRId32 ": cannot remove %s: %s; check the data directory's "
                  "permissions and disk", p->topic, p->partition, path, al_strerror(err));
        producer_state_clear(&p->producers);
        return err;
    }
    if (loaded) {
        p->pstate_truncs = storage_log_truncations(p->log);
        p->pstate_unsafe = false;
        log_info("cluster", "%s/%" PRId32 ": %zu producers loaded from the snapshot at offset %"
                 PRId64, p->topic, p->partition, producer_state_count(&p->producers), end);
    }
    return loaded;
}

/* Creates every directory level of path (mkdir -p); io_fs_mkdir accepts existing ones. */
static int mkdir_p(io *ioh, const char *path)
{
    char buf[1200];
    size_t n = strlen(path);
    if (n >= sizeof(buf)) return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            int err = io_fs_mkdir(ioh, buf, 0755);
            if (err) return err;
            buf[i] = c;
        }
    }
    return 0;
}

/* Closes p's log, or its Raft replica (which owns the log). */
static void pm_close_log(pm_partition *p)
{
    if (p->rr)
        pr_close(p);
    else if (p->log)
        storage_log_close(p->log);
    p->log = NULL;
}

int pm_rebuild_producers(pm_partition *p)
{
    producer_state_destroy(&p->producers);
    producer_state_init(&p->producers, p->pm->producer_expiration_ms);
    return pm_replay_producers(p->pm, p);
}

int pm_producers_fresh(pm_partition *p)
{
    if (p->rr || !p->log) return 0; /* Raft: producers_stale, rebuilt by a new leader */
    if (!p->pstate_unsafe && storage_log_truncations(p->log) == p->pstate_truncs) return 0;
    log_warn("cluster", "%s/%" PRId32 ": the log dropped appends (e.g. out of space); rebuilding "
             "its producer state from the log", p->topic, p->partition);
    int err = pm_rebuild_producers(p);
    if (err) {
        producer_state_clear(&p->producers);
        p->pstate_unsafe = true; /* tried again at the next Produce */
    }
    return err;
}

static int pm_open_partition(partition_manager *pm, const topic *t, int32_t partition,
                             uint64_t version)
{
    char dir[1200];
    int err = pm_partition_dir(pm, t->name, t->id, partition, dir, sizeof(dir));
    if (err) return err;
    err = mkdir_p(pm->io, dir);
    if (err) return err;
    pm_partition *p = calloc(1, sizeof(*p));
    if (!p) return -ENOMEM;
    memcpy(p->topic_id, t->id, 16);
    strcpy(p->topic, t->name);
    p->partition = partition;
    p->pm = pm;
    p->config_version = version;
    p->defaults_version = pm->defaults_version;
    storage_log_config cfg;
    pm_topic_resolve(t, pm->defaults, &p->settings, &cfg);
    producer_state_init(&p->producers, pm->producer_expiration_ms);
    cfg.cache = pm->cache;
    cfg.log_id = pm->next_log_id++;
    p->log_cfg = cfg;
    if (pr_enabled())
        err = pr_open(pm, p, t, dir, &cfg); /* cluster mode: the log of a Raft replica */
    else
        err = storage_log_open(pm->io, dir, &cfg, &p->log);
    if (err) goto fail;
    /* Single node: the clean close's snapshot, else the scan. A Raft replica builds its table
     * when it becomes leader (pm_rebuild_producers on producers_stale, from the log it then
     * leads): a scan here would be read again then, and a follower never uses it. */
    if (!p->rr) {
        err = pm_load_snapshot(pm, p);
        if (err == 0) err = pm_replay_producers(pm, p);
        if (err < 0) goto fail;
        err = 0;
    }
    p->high_watermark = p->rr ? raft_replica_commit(p->rr) + 1
                              : storage_log_durable_offset(p->log) + 1;
    if (pm->count + 1 > pm->nbuckets && pm_grow(pm)) {
        err = -ENOMEM;
        goto fail;
    }
    uint64_t h = pm_hash(p->topic_id, partition) & (pm->nbuckets - 1);
    p->hnext = pm->buckets[h];
    pm->buckets[h] = p;
    pm->count++;
    log_debug("cluster", "opened %s/%" PRId32 " (start %" PRId64 ", next %" PRId64 ")", t->name,
              partition, storage_log_start_offset(p->log), storage_log_high_offset(p->log));
    return 0;
fail:
    log_error("cluster", "cannot open the log of %s/%" PRId32 " in %s: %s", t->name, partition, dir,
              al_strerror(err));
    pm_close_log(p);
    producer_state_destroy(&p->producers);
    free(p);
    return err;
}

/* Wakes and removes every watch of p. */
static void pm_wake_all(pm_partition *p)
{
    for (int guard = 0; p->watches && guard < 1000000; guard++) {
        pm_watch *w = p->watches;
        pm_watch_disarm(w);
        w->cb(w);
    }
}

void pm_wake_watches(pm_partition *p)
{
    pm_wake_all(p);
}

/* Removes p from service: wakes its watches (their fetches look it up again and find it
 * gone) and closes it now, or at the last pm_release when an operation still holds it. */
static void pm_retire(pm_partition *p)
{
    p->removed = true;
    pm_wake_all(p);
    if (p->busy > 0) return;
    pm_close_log(p);
    producer_state_destroy(&p->producers);
    free(p);
}

void pm_hold(pm_partition *p)
{
    AL_ASSERT(!p->removed);
    p->busy++;
}

bool pm_release(pm_partition *p)
{
    AL_ASSERT(p->busy > 0);
    p->busy--;
    if (!p->removed) return true;
    if (p->busy == 0) {
        pm_close_log(p);
        producer_state_destroy(&p->producers);
        free(p);
    }
    return false;
}

void pm_housekeep(partition_manager *pm, int64_t now_ms, size_t budget_bytes)
{
    for (uint32_t b = 0; b < pm->nbuckets; b++) {
        for (pm_partition *p = pm->buckets[b]; p; p = p->hnext) {
            if (p->busy) continue; /* storage skips segments under reads; be conservative */
            if (p->reconfigure) pm_reconfigure(pm, p);
            /* Producers whose last batch is producer.id.expiration.ms old are forgotten (then
             * "unknown", accepted at any sequence), as Kafka does: the table no longer grows
             * with every producer id a partition ever saw (the snapshot carries it across
             * clean restarts, which used to trim it to the replay window). */
            producer_state_tick(&p->producers, now_ms);
            /* Raft partitions: the replica moves the start (never past its commit index):
             * retention runs from partition_raft.c (pr_housekeep); compaction is not done
             * for them (each replica would have to compact identically below the commit). */
            if (p->rr) continue;
            int rc = storage_log_housekeep(p->log, now_ms, budget_bytes);
            if (rc < 0)
                log_warn("cluster", "housekeeping %s/%" PRId32 ": %s", p->topic, p->partition,
                         al_strerror(rc));
        }
    }
}

/* Removes a directory tree of depth <= 2 (topic dir / partition dirs / files). */
static int rm_tree(io *ioh, const char *path, int depth)
{
    char **names = NULL;
    int n = io_fs_list(ioh, path, &names);
    if (n == -ENOTDIR) return io_fs_unlink(ioh, path);
    if (n < 0) return n == -ENOENT ? 0 : n;
    int err = 0;
    for (int i = 0; i < n; i++) {
        char child[1400];
        if (snprintf(child, sizeof(child), "%s/%s", path, names[i]) >= (int)sizeof(child)) {
            err = -ENAMETOOLONG;
            continue;
        }
        int e = depth > 0 ? rm_tree(ioh, child, depth - 1) : io_fs_unlink(ioh, child);
        if (e == -EISDIR && depth == 0) e = -ENOTEMPTY;
        if (e && !err) err = e;
    }
    io_fs_list_free(names, n);
    int e = io_fs_rmdir(ioh, path);
    return err ? err : e;
}

void pm_sweep_deleted(partition_manager *pm, const topic_table *tt)
{
    char kdir[1200];
    snprintf(kdir, sizeof(kdir), "%s/kafka", pm->data_dir);
    char **names = NULL;
    int n = io_fs_list(pm->io, kdir, &names);
    if (n < 0) return;
    for (int i = 0; i < n; i++) {
        /* <topic>-<32 hex>: look the id up. */
        size_t len = strlen(names[i]);
        if (len < 34 || names[i][len - 33] != '-') continue;
        const topic *t = topic_table_find(tt, names[i], len - 33);
        char hex[33] = "";
        if (t) topic_id_hex(t->id, hex);
        if (t && !strcmp(hex, names[i] + len - 32)) continue;
        char path[1400];
        snprintf(path, sizeof(path), "%s/%s", kdir, names[i]);
        int err = rm_tree(pm->io, path, 1);
        if (err)
            log_warn("cluster", "removing %s: %s", path, al_strerror(err));
        else
            log_info("cluster", "removed the data of deleted topic %s", names[i]);
    }
    io_fs_list_free(names, n);
    io_fs_fsync_dir(pm->io, kdir);
}

/* Whether this shard hosts (t, part): the hashed shard of a single-node topic, or for a topic
 * with stored assignments (cluster mode) the shard named by this node's replica. */
static bool pm_hosts(const partition_manager *pm, const topic *t, int32_t part)
{
    return topic_partition_local_shard(t, part, pm->node_id, pm->smp) == (int32_t)pm->shard;
}

int pm_reconcile(partition_manager *pm, const topic_table *tt)
{
    int first_err = 0;
    if (pr_enabled()) cluster_reconfig_attach(); /* moves, drains, leader balancing */
    /* Close partitions whose topic (by id) is gone or which this shard no longer owns. */
    for (uint32_t b = 0; b < pm->nbuckets; b++) {
        pm_partition *p = pm->buckets[b];
        while (p) {
            pm_partition *next = p->hnext;
            const topic *t = topic_table_find_id(tt, p->topic_id);
            bool keep = t && p->partition < t->partitions &&
                        pm_hosts(pm, t, p->partition);
            /* A replica moved off this node stays open while its Raft group still counts it
             * (cluster_reconfig.h drops it once the membership change removed it). */
            if (!keep && t && p->partition < t->partitions && p->rr &&
                topic_partition_local_shard(t, p->partition, pm->node_id, pm->smp) < 0 &&
                cluster_reconfig_keep(p))
                keep = true;
            if (!keep) {
                pm_unlink(pm, p);
                log_info("cluster", "closing %s/%" PRId32, p->topic, p->partition);
                pm_retire(p);
            } else if (p->config_version != tt->version ||
                       p->defaults_version != pm->defaults_version) {
                storage_log_config nc;
                pm_topic_resolve(t, pm->defaults, &p->settings, &nc);
                p->config_version = tt->version;
                p->defaults_version = pm->defaults_version;
                nc.cache = p->log_cfg.cache;
                nc.log_id = p->log_cfg.log_id;
                if (!log_config_equal(&nc, &p->log_cfg)) {
                    p->log_cfg = nc;
                    p->reconfigure = true;
                    pm_reconfigure(pm, p);
                }
            }
            p = next;
        }
    }
    /* Open partitions this shard owns and does not have yet. */
    for (int32_t i = 0; i < tt->n; i++) {
        const topic *t = topic_table_at(tt, i);
        for (int32_t part = 0; part < t->partitions; part++) {
            if (!pm_hosts(pm, t, part)) continue;
            if (pm_find(pm, t->id, part)) continue;
            int err = pm_open_partition(pm, t, part, tt->version);
            if (err && !first_err) first_err = err;
        }
    }
    return first_err;
}

int pm_drop(pm_partition *p, bool delete_data)
{
    if (p->busy > 0) return -EBUSY;
    partition_manager *pm = p->pm;
    char dir[1200];
    int err = pm_partition_dir(pm, p->topic, p->topic_id, p->partition, dir, sizeof(dir));
    pm_unlink(pm, p);
    log_info("cluster", "closing %s/%" PRId32 "%s", p->topic, p->partition,
             delete_data ? " and deleting its data (no longer a replica here)" : "");
    pm_retire(p); /* busy == 0: closed and freed now */
    if (!delete_data || err) return err;
    err = rm_tree(pm->io, dir, 1);
    if (err) log_warn("cluster", "removing %s: %s", dir, al_strerror(err));
    return err;
}

void pm_sweep_unassigned(partition_manager *pm, const topic_table *tt)
{
    for (int32_t i = 0; i < tt->n; i++) {
        const topic *t = topic_table_at(tt, i);
        if (!t->assign) continue;
        char hex[33], tdir[1200];
        topic_id_hex(t->id, hex);
        if (snprintf(tdir, sizeof(tdir), "%s/kafka/%s-%s", pm->data_dir, t->name, hex) >=
            (int)sizeof(tdir))
            continue;
        char **names = NULL;
        int n = io_fs_list(pm->io, tdir, &names);
        if (n < 0) continue;
        for (int k = 0; k < n; k++) {
            char *end = NULL;
            long part = strtol(names[k], &end, 10);
            if (!*names[k] || *end || part < 0 || part >= t->partitions) continue;
            if (topic_partition_local_shard(t, (int32_t)part, pm->node_id, pm->smp) >= 0)
                continue;
            if (pm_find(pm, t->id, (int32_t)part)) continue;
            char path[1400];
            snprintf(path, sizeof(path), "%s/%s", tdir, names[k]);
            int err = rm_tree(pm->io, path, 1);
            if (err)
                log_warn("cluster", "removing %s: %s", path, al_strerror(err));
            else
                log_info("cluster", "removed %s: this node is no longer a replica of %s/%ld",
                         path, t->name, part);
        }
        io_fs_list_free(names, n);
    }
}

void pm_destroy(partition_manager *pm)
{
    if (!pm->buckets) return;
    /* Detach everything first: closing a log runs its waiters' callbacks, which look
     * partitions up and must not find one half closed. */
    pm_partition *all = NULL;
    for (uint32_t b = 0; b < pm->nbuckets; b++) {
        pm_partition *p = pm->buckets[b];
        while (p) {
            pm_partition *next = p->hnext;
            p->hnext = all;
            all = p;
            p = next;
        }
        pm->buckets[b] = NULL;
    }
    pm->count = 0;
    while (all) {
        pm_partition *next = all->hnext;
        all->busy = 0; /* shutdown: nothing in flight completes any more */
        if (!all->removed) pm_save_snapshot(pm, all);
        pm_retire(all);
        all = next;
    }
    free(pm->buckets);
    pm->buckets = NULL;
}

/* ---- high watermark and watches ---- */

void pm_watch_arm(pm_partition *p, pm_watch *w, int64_t known_hw)
{
    AL_ASSERT(!w->part);
    if (p->high_watermark > known_hw) {
        w->cb(w);
        return;
    }
    w->part = p;
    w->prev = NULL;
    w->next = p->watches;
    if (p->watches) p->watches->prev = w;
    p->watches = w;
}

void pm_watch_disarm(pm_watch *w)
{
    pm_partition *p = w->part;
    if (!p) return;
    if (w->prev)
        w->prev->next = w->next;
    else
        p->watches = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->part = NULL;
}

void pm_refresh_hw(pm_partition *p)
{
    int64_t hw = p->rr ? raft_replica_commit(p->rr) + 1 : storage_log_durable_offset(p->log) + 1;
    if (hw > p->high_watermark) {
        p->high_watermark = hw;
        pm_wake_all(p);
    }
}

/* A flush waiter owned by the partition manager (not by a request). */
struct pm_flush {
    storage_waiter w;
    partition_manager *pm;
    uint8_t topic_id[16];
    int32_t partition;
};

static void pm_flush_done(storage_waiter *w)
{
    struct pm_flush *f = AL_CONTAINER_OF(w, struct pm_flush, w);
    /* Look the partition up again: it may have been closed meanwhile (the log's close fails
     * its waiters, and the partition struct is gone by then). */
    pm_partition *p = pm_find(f->pm, f->topic_id, f->partition);
    if (p) pm_refresh_hw(p);
    if (w->res < 0 && w->res != AL_ECLOSED)
        log_warn("cluster", "flush failed: %s", al_strerror(w->res));
    free(f);
}

int pm_note_append(pm_partition *p, int64_t last_offset)
{
    struct pm_flush *f = malloc(sizeof(*f));
    if (!f) return -ENOMEM;
    memset(f, 0, sizeof(*f));
    f->pm = p->pm;
    memcpy(f->topic_id, p->topic_id, 16);
    f->partition = p->partition;
    f->w.cb = pm_flush_done;
    f->w.offset = last_offset;
    int rc = storage_log_flush_wait(p->log, last_offset, &f->w);
    if (rc == 0) return 0;
    free(f);
    if (rc == 1) {
        pm_refresh_hw(p);
        return 0;
    }
    return rc;
}

int64_t pm_to_kafka(const pm_partition *p, int64_t off)
{
    return p->rr ? otx_to_kafka(raft_replica_otx(p->rr), off) : off;
}

int64_t pm_to_raft(const pm_partition *p, int64_t k)
{
    return p->rr ? otx_to_raft(raft_replica_otx(p->rr), k) : k;
}

int64_t pm_kafka_hw(const pm_partition *p) { return pm_to_kafka(p, p->high_watermark); }

int64_t pm_kafka_start(const pm_partition *p)
{
    return pm_to_kafka(p, storage_log_start_offset(p->log));
}
