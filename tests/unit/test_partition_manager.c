/*
 * test_partition_manager.c — the per-shard partition manager on the io_uring back end in
 * test_tmpdir(): two managers (shards 0 and 1 of 2) split a topic table's partitions between
 * them exactly; appends advance the high watermark only after the flush and wake watches;
 * producer state is rebuilt from the log after a reopen (duplicates detected, sequence gaps
 * refused); deleting a topic closes its partitions (a held one only at its last release) and
 * removes its directory; a re-created topic of the same name starts empty; the producer-state
 * snapshot of a clean close is loaded instead of the scan only when it matches the log's end and
 * is intact, is removed at open, and is not saved for a truncated log; a log that dropped appends
 * gets its producer state rebuilt before the next check (pm_producers_fresh).
 */
#include "cluster/partition_manager.h"
#include "cluster/topic_config.h"
#include "config/config.h"
#include "kafka/errors.h"
#include "reactor/io.h"
#include "storage/batch.h"
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>

static io *g_io;

static io *test_io(void)
{
    if (!g_io) {
        struct io_uring_opts o = {.seed = test_seed()};
        int rc = io_uring_create(&g_io, &o);
        if (rc < 0) {
            fprintf(stderr, "io_uring_create: %s\n", al_strerror(rc));
            exit(77);
        }
    }
    return g_io;
}

static const char *dir_for(const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), name);
    mkdir(path, 0755);
    return path;
}

/* Builds a one-record batch (caller frees). pid -1: not idempotent. */
static uint8_t *make_batch(int64_t pid, int16_t epoch, int32_t seq, size_t *len)
{
    storage_build_record r = {0, 0, "k", 1, "value", 5, NULL, 0};
    storage_build_params p = {0, 0, 0, -1, 1700000000000, 1700000000000, pid, epoch, seq};
    size_t cap = storage_batch_build_size(&r, 1);
    uint8_t *b = malloc(cap);
    int64_t n = storage_batch_build(b, cap, &p, &r, 1);
    AL_ASSERT(n > 0);
    *len = (size_t)n;
    return b;
}

/* Polls the io until cond() or a bound. */
static bool poll_until(bool (*cond)(void *), void *arg)
{
    for (int i = 0; i < 10000; i++) {
        if (cond(arg)) return true;
        io_poll(test_io(), io_now_ns(test_io()) + 1000000);
    }
    return cond(arg);
}

static int fired;
static void on_watch(pm_watch *w)
{
    fired++;
}

static bool hw_is(void *arg)
{
    pm_partition *p = arg;
    return p->high_watermark >= 3;
}

TEST(split_between_shards_and_hw)
{
    const char *dir = dir_for("split");
    topic_table tt;
    CHECK_EQ(topic_table_init(&tt, test_io(), dir), 0);
    CHECK_EQ(topic_table_create(&tt, "a", 8, 1, NULL, 0, false, NULL), 0);
    CHECK_EQ(topic_table_create(&tt, "b", 5, 1, NULL, 0, false, NULL), 0);
    partition_manager pm0, pm1;
    CHECK_EQ(pm_init(&pm0, test_io(), 0, 2, dir, NULL), 0);
    CHECK_EQ(pm_init(&pm1, test_io(), 1, 2, dir, NULL), 0);
    CHECK_EQ(pm_reconcile(&pm0, &tt), 0);
    CHECK_EQ(pm_reconcile(&pm1, &tt), 0);
    CHECK_EQ(pm0.count + pm1.count, 13);
    CHECK(pm0.count > 0 && pm1.count > 0);
    for (int32_t i = 0; i < tt.n; i++) {
        const topic *t = topic_table_at(&tt, i);
        for (int32_t p = 0; p < t->partitions; p++) {
            bool on0 = pm_find(&pm0, t->id, p) != NULL, on1 = pm_find(&pm1, t->id, p) != NULL;
            CHECK(on0 != on1);
            CHECK_EQ(on1, topic_partition_shard(t->id, p, 2) == 1);
        }
    }
    /* Appends: the HW moves only when the flush completes; the watch fires then. */
    const topic *a = topic_table_find(&tt, "a", 1);
    partition_manager *own = pm_find(&pm0, a->id, 0) ? &pm0 : &pm1;
    pm_partition *p = pm_find(own, a->id, 0);
    CHECK_EQ(p->high_watermark, 0);
    pm_watch w = {.cb = on_watch};
    fired = 0;
    pm_watch_arm(p, &w, 0);
    CHECK_EQ(fired, 0);
    for (int i = 0; i < 3; i++) {
        size_t len;
        uint8_t *b = make_batch(-1, 0, 0, &len);
        storage_append_result res;
        CHECK_EQ(storage_log_append(p->log, PM_LEADER_EPOCH, b, len, &res), 0);
        CHECK_EQ(res.base_offset, i);
        CHECK_EQ(pm_note_append(p, res.last_offset), 0);
        free(b);
    }
    CHECK(p->high_watermark <= 3);
    CHECK(poll_until(hw_is, p));
    CHECK_EQ(p->high_watermark, 3);
    CHECK_EQ(fired, 1);
    CHECK(w.part == NULL);
    /* Armed with a stale HW: fires at once. */
    pm_watch_arm(p, &w, 1);
    CHECK_EQ(fired, 2);
    /* Disarm prevents a callback. */
    pm_watch_arm(p, &w, 3);
    pm_watch_disarm(&w);
    pm_destroy(&pm0);
    pm_destroy(&pm1);
    topic_table_free(&tt);
}

TEST(producer_state_survives_reopen)
{
    const char *dir = dir_for("pstate");
    topic_table tt;
    CHECK_EQ(topic_table_init(&tt, test_io(), dir), 0);
    CHECK_EQ(topic_table_create(&tt, "idem", 1, 1, NULL, 0, false, NULL), 0);
    const topic *t = topic_table_find(&tt, "idem", 4);
    partition_manager pm;
    CHECK_EQ(pm_init(&pm, test_io(), 0, 1, dir, NULL), 0);
    CHECK_EQ(pm_reconcile(&pm, &tt), 0);
    pm_partition *p = pm_find(&pm, t->id, 0);
    CHECK(p);
    for (int32_t seq = 0; seq < 4; seq++) {
        size_t len;
        uint8_t *b = make_batch(42, 3, seq, &len);
        struct producer_batch pb = {42, 3, seq, 1, 1700000000000};
        int64_t dup;
        CHECK_EQ(producer_state_check(&p->producers, &pb, &dup, NULL), PRODUCER_OK);
        storage_append_result res;
        CHECK_EQ(storage_log_append(p->log, PM_LEADER_EPOCH, b, len, &res), 0);
        CHECK_EQ(producer_state_record(&p->producers, &pb, res.base_offset), 0);
        CHECK_EQ(pm_note_append(p, res.last_offset), 0);
        free(b);
    }
    CHECK(poll_until(hw_is, p));
    pm_destroy(&pm); /* closes the log: everything above was flushed */

    CHECK_EQ(pm_init(&pm, test_io(), 0, 1, dir, NULL), 0);
    CHECK_EQ(pm_reconcile(&pm, &tt), 0);
    p = pm_find(&pm, t->id, 0);
    CHECK(p);
    CHECK_EQ(p->high_watermark, 4);
    const struct producer_entry *e = producer_state_find(&p->producers, 42);
    CHECK(e != NULL);
    CHECK_EQ(e->epoch, 3);
    /* A retry of seq 2 is a duplicate answered with its original offset. */
    struct producer_batch retry = {42, 3, 2, 1, 1700000000000};
    int64_t dup = -1;
    CHECK_EQ(producer_state_check(&p->producers, &retry, &dup, NULL), PRODUCER_DUPLICATE);
    CHECK_EQ(dup, 2);
    /* A gap is refused; the next sequence is accepted. */
    struct producer_batch gap = {42, 3, 6, 1, 1700000000000};
    CHECK_EQ(producer_state_check(&p->producers, &gap, &dup, NULL),
             -KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    struct producer_batch next = {42, 3, 4, 1, 1700000000000};
    CHECK_EQ(producer_state_check(&p->producers, &next, &dup, NULL), PRODUCER_OK);
    pm_destroy(&pm);
    topic_table_free(&tt);
}

/* Appends n one-record batches of producer pid (epoch 3) from sequence seq0, as Produce does. */
static void append_idem(pm_partition *p, int64_t pid, int32_t seq0, int n)
{
    for (int32_t seq = seq0; seq < seq0 + n; seq++) {
        size_t len;
        uint8_t *b = make_batch(pid, 3, seq, &len);
        struct producer_batch pb = {pid, 3, seq, 1, 1700000000000};
        int64_t dup;
        CHECK_EQ(producer_state_check(&p->producers, &pb, &dup, NULL), PRODUCER_OK);
        storage_append_result res;
        CHECK_EQ(storage_log_append(p->log, PM_LEADER_EPOCH, b, len, &res), 0);
        CHECK_EQ(producer_state_record(&p->producers, &pb, res.base_offset), 0);
        CHECK_EQ(pm_note_append(p, res.last_offset), 0);
        free(b);
    }
}

/* Opens the one partition of "snap" with a manager that snapshots every log at close. */
static pm_partition *snap_open(partition_manager *pm, topic_table *tt, const char *dir)
{
    CHECK_EQ(pm_init(pm, test_io(), 0, 1, dir, NULL), 0);
    pm->snapshot_min_bytes = 0;
    CHECK_EQ(pm_reconcile(pm, tt), 0);
    pm_partition *p = pm_find(pm, topic_table_find(tt, "snap", 4)->id, 0);
    CHECK(p);
    return p;
}

static int snap_exists(partition_manager *pm, const topic_table *tt, char *path, size_t cap)
{
    char pdir[1200];
    CHECK_EQ(pm_partition_dir(pm, "snap", topic_table_find(tt, "snap", 4)->id, 0, pdir,
                              sizeof(pdir)), 0);
    snprintf(path, cap, "%s/producer_state.snapshot", pdir);
    return io_fs_exists(test_io(), path);
}

/* Writes a snapshot by hand: producer 77 (epoch 1, one batch of seq 0 at offset 0), for a log
 * ending at end; bad_crc spoils its checksum. */
static void snap_forge(const char *path, int64_t end, bool bad_crc)
{
    struct producer_state s;
    producer_state_init(&s, 86400000);
    struct producer_batch pb = {77, 1, 0, 1, 1700000000000};
    CHECK_EQ(producer_state_record(&s, &pb, 0), 0);
    uint8_t *b = NULL;
    size_t len = 0;
    CHECK_EQ(producer_state_encode(&s, end, &b, &len), 0);
    if (bad_crc) b[len - 1] ^= 1;
    CHECK_EQ(io_fs_write_atomic(test_io(), path, b, len), 0);
    free(b);
    producer_state_destroy(&s);
}

TEST(producer_state_snapshot_at_clean_close)
{
    const char *dir = dir_for("psnap");
    topic_table tt;
    CHECK_EQ(topic_table_init(&tt, test_io(), dir), 0);
    CHECK_EQ(topic_table_create(&tt, "snap", 1, 1, NULL, 0, false, NULL), 0);
    char path[1400];
    partition_manager pm;
    pm_partition *p = snap_open(&pm, &tt, dir);
    append_idem(p, 42, 0, 4);
    CHECK(poll_until(hw_is, p));
    CHECK_EQ(snap_exists(&pm, &tt, path, sizeof(path)), 0);
    pm_destroy(&pm); /* clean close: the snapshot is saved */
    CHECK_EQ(snap_exists(&pm, &tt, path, sizeof(path)), 1);

    /* 1. It carries the state (a retry is a duplicate, a gap refused) and is removed at open
     * (never trusted for a log that changes after this open). */
    p = snap_open(&pm, &tt, dir);
    CHECK_EQ(snap_exists(&pm, &tt, path, sizeof(path)), 0);
    CHECK_EQ(p->high_watermark, 4);
    struct producer_batch retry = {42, 3, 2, 1, 1700000000000};
    int64_t dup = -1;
    CHECK_EQ(producer_state_check(&p->producers, &retry, &dup, NULL), PRODUCER_DUPLICATE);
    CHECK_EQ(dup, 2);
    struct producer_batch gap = {42, 3, 6, 1, 1700000000000};
    CHECK_EQ(producer_state_check(&p->producers, &gap, &dup, NULL),
             -KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    append_idem(p, 42, 4, 2);
    CHECK(poll_until(hw_is, p));
    pm_destroy(&pm);
    CHECK_EQ(snap_exists(&pm, &tt, path, sizeof(path)), 1);

    /* 2. It is loaded instead of the scan: the forged one names producer 77, which is in no
     * batch of the log, so only the snapshot can bring it (and 42 then stays unknown). */
    snap_forge(path, 6, false);
    p = snap_open(&pm, &tt, dir);
    CHECK_EQ(snap_exists(&pm, &tt, path, sizeof(path)), 0);
    CHECK(producer_state_find(&p->producers, 77) != NULL);
    CHECK(producer_state_find(&p->producers, 42) == NULL);
    pm_destroy(&pm);

    /* 3. A snapshot for another log end (e.g. left by a crash after more appends, or of a
     * log that lost its tail) is ignored: the table comes from the log. */
    CHECK_EQ(snap_exists(&pm, &tt, path, sizeof(path)), 1);
    snap_forge(path, 5, false);
    p = snap_open(&pm, &tt, dir);
    CHECK_EQ(snap_exists(&pm, &tt, path, sizeof(path)), 0);
    CHECK(producer_state_find(&p->producers, 77) == NULL);
    const struct producer_entry *e = producer_state_find(&p->producers, 42);
    CHECK(e && e->nbatches == 5 && e->batches[4].last_seq == 5);
    pm_destroy(&pm);

    /* 4. A corrupt one is ignored the same way. */
    snap_forge(path, 6, true);
    p = snap_open(&pm, &tt, dir);
    CHECK_EQ(snap_exists(&pm, &tt, path, sizeof(path)), 0);
    CHECK(producer_state_find(&p->producers, 77) == NULL);
    CHECK(producer_state_find(&p->producers, 42) != NULL);

    /* 5. A log truncated while open is not snapshotted (the table remembers dropped batches),
     * even when later appends bring it back to a length the table's offsets fit in. */
    CHECK_EQ(storage_log_truncate_suffix(p->log, 3), 0);
    for (int i = 0; i < 3; i++) {
        size_t len;
        uint8_t *b = make_batch(-1, 0, 0, &len);
        storage_append_result res;
        CHECK_EQ(storage_log_append(p->log, PM_LEADER_EPOCH, b, len, &res), 0);
        free(b);
    }
    CHECK_EQ(storage_log_high_offset(p->log), 6);
    pm_destroy(&pm);
    CHECK_EQ(snap_exists(&pm, &tt, path, sizeof(path)), 0);
    p = snap_open(&pm, &tt, dir);
    e = producer_state_find(&p->producers, 42);
    CHECK(e && e->batches[e->nbatches - 1].last_seq == 2); /* rebuilt from the 3 left */
    pm_destroy(&pm);

    /* 6. Below the size threshold nothing is saved (the scan is cheaper). */
    CHECK_EQ(pm_init(&pm, test_io(), 0, 1, dir, NULL), 0);
    CHECK_EQ(pm_reconcile(&pm, &tt), 0);
    pm_destroy(&pm);
    CHECK_EQ(snap_exists(&pm, &tt, path, sizeof(path)), 0);
    topic_table_free(&tt);
}

static bool hw_is6(void *arg)
{
    pm_partition *p = arg;
    return p->high_watermark >= 6;
}

TEST(producer_state_rebuilt_after_the_log_dropped_appends)
{
    const char *dir = dir_for("pdrop");
    topic_table tt;
    CHECK_EQ(topic_table_init(&tt, test_io(), dir), 0);
    CHECK_EQ(topic_table_create(&tt, "snap", 1, 1, NULL, 0, false, NULL), 0);
    partition_manager pm;
    pm_partition *p = snap_open(&pm, &tt, dir);
    append_idem(p, 42, 0, 6);
    CHECK(poll_until(hw_is6, p));
    CHECK_EQ(pm_producers_fresh(p), 0); /* nothing dropped: nothing to do */
    /* The log drops offsets 3-5 (as when it runs out of space before they were flushed). */
    CHECK_EQ(storage_log_truncate_suffix(p->log, 3), 0);
    struct producer_batch retry = {42, 3, 4, 1, 1700000000000};
    int64_t dup = -1;
    /* The stale table would answer the client's retry of seq 4 with offset 4, which the log
     * no longer holds: an acknowledged loss. */
    CHECK_EQ(producer_state_check(&p->producers, &retry, &dup, NULL), PRODUCER_DUPLICATE);
    CHECK_EQ(pm_producers_fresh(p), 0);
    CHECK_EQ(producer_state_check(&p->producers, &retry, &dup, NULL),
             -KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    struct producer_batch again = {42, 3, 3, 1, 1700000000000};
    CHECK_EQ(producer_state_check(&p->producers, &again, &dup, NULL), PRODUCER_OK);
    struct producer_batch old = {42, 3, 2, 1, 1700000000000};
    CHECK_EQ(producer_state_check(&p->producers, &old, &dup, NULL), PRODUCER_DUPLICATE);
    CHECK_EQ(dup, 2);
    append_idem(p, 42, 3, 1);
    CHECK_EQ(pm_producers_fresh(p), 0);
    const struct producer_entry *e = producer_state_find(&p->producers, 42);
    CHECK(e && e->nbatches == 4 && e->batches[3].last_seq == 3);
    /* Housekeeping forgets producers idle for producer_expiration_ms (batch timestamps
     * 1700000000000 here), not sooner. */
    pm_housekeep(&pm, 1700000000000 + pm.producer_expiration_ms - 1, 0);
    CHECK(producer_state_find(&p->producers, 42) != NULL);
    pm.producer_expiration_ms = 1000; /* what the partitions opened after this use */
    p->producers.expiration_ms = 1000;
    pm_housekeep(&pm, 1700000000000 + 999, 0);
    CHECK(producer_state_find(&p->producers, 42) != NULL);
    pm_housekeep(&pm, 1700000000000 + 1000, 0);
    CHECK(producer_state_find(&p->producers, 42) == NULL);
    CHECK_EQ(producer_state_check(&p->producers, &retry, &dup, NULL), PRODUCER_OK); /* unknown */
    p->producers.expiration_ms = 86400000;
    append_idem(p, 42, 4, 1);
    pm_destroy(&pm); /* rebuilt after the truncation: a snapshot may be saved again */
    char path[1400];
    CHECK_EQ(snap_exists(&pm, &tt, path, sizeof(path)), 1);
    p = snap_open(&pm, &tt, dir);
    e = producer_state_find(&p->producers, 42);
    CHECK(e && e->nbatches == 1 && e->batches[0].last_seq == 4); /* known again since seq 4 */
    pm_destroy(&pm);
    topic_table_free(&tt);
}

TEST(delete_held_partition_and_recreate)
{
    const char *dir = dir_for("delete");
    topic_table tt;
    CHECK_EQ(topic_table_init(&tt, test_io(), dir), 0);
    CHECK_EQ(topic_table_create(&tt, "gone", 2, 1, NULL, 0, false, NULL), 0);
    uint8_t old_id[16];
    memcpy(old_id, topic_table_find(&tt, "gone", 4)->id, 16);
    partition_manager pm;
    CHECK_EQ(pm_init(&pm, test_io(), 0, 1, dir, NULL), 0);
    CHECK_EQ(pm_reconcile(&pm, &tt), 0);
    pm_partition *p = pm_find(&pm, old_id, 1);
    CHECK(p);
    size_t len;
    uint8_t *b = make_batch(-1, 0, 0, &len);
    storage_append_result res;
    CHECK_EQ(storage_log_append(p->log, PM_LEADER_EPOCH, b, len, &res), 0);
    free(b);
    char pdir[1200];
    CHECK_EQ(pm_partition_dir(&pm, "gone", old_id, 1, pdir, sizeof(pdir)), 0);
    struct stat st;
    CHECK_EQ(stat(pdir, &st), 0);

    pm_hold(p); /* e.g. a read in flight */
    CHECK_EQ(topic_table_delete(&tt, "gone"), 0);
    CHECK_EQ(pm_reconcile(&pm, &tt), 0);
    CHECK_EQ(pm.count, 0);
    CHECK(pm_find(&pm, old_id, 1) == NULL);
    CHECK(p->removed); /* still allocated while held */
    CHECK(!pm_release(p));
    CHECK_EQ(stat(pdir, &st), 0); /* reconcile closes; the sweep removes */
    pm_sweep_deleted(&pm, &tt);
    CHECK(stat(pdir, &st) != 0);

    CHECK_EQ(topic_table_create(&tt, "gone", 2, 1, NULL, 0, false, NULL), 0);
    const topic *t = topic_table_find(&tt, "gone", 4);
    CHECK(memcmp(t->id, old_id, 16) != 0);
    CHECK_EQ(pm_reconcile(&pm, &tt), 0);
    p = pm_find(&pm, t->id, 1);
    CHECK(p);
    CHECK_EQ(storage_log_high_offset(p->log), 0);
    pm_destroy(&pm);
    topic_table_free(&tt);
}

TEST(settings_from_configs)
{
    topic_table tt;
    CHECK_EQ(topic_table_init(&tt, NULL, NULL), 0);
    topic_config_kv kv[3] = {{"max.message.bytes", "5000"},
                             {"message.timestamp.type", "LogAppendTime"},
                             {"cleanup.policy", "compact,delete"}};
    CHECK_EQ(topic_table_create(&tt, "s", 1, 1, kv, 3, false, (const uint8_t *)"0123456789abcdef"),
             0);
    const topic *t = topic_table_find(&tt, "s", 1);
    pm_topic_settings s;
    pm_settings_from_topic(t, &s);
    CHECK_EQ(s.max_message_bytes, 5000);
    CHECK(s.log_append_time);
    CHECK(s.compact);
    storage_log_config c;
    pm_log_config_from_topic(t, &c);
    CHECK_EQ(c.max_message_bytes, PM_STORAGE_BATCH_MAX); /* Produce checks the 5000 */
    CHECK_EQ(c.cleanup_policy, STORAGE_CLEANUP_COMPACT | STORAGE_CLEANUP_DELETE);
    CHECK_EQ(topic_table_create(&tt, "d", 1, 1, NULL, 0, false, NULL), 0);
    pm_settings_from_topic(topic_table_find(&tt, "d", 1), &s);
    CHECK_EQ(s.max_message_bytes, 1048588);
    CHECK(!s.log_append_time);
    CHECK(!s.compact);
    topic_table_free(&tt);
}

TEST(settings_follow_broker_defaults)
{
    topic_table tt;
    CHECK_EQ(topic_table_init(&tt, NULL, NULL), 0);
    topic_config_kv kv[1] = {{"retention.ms", "5000"}};
    CHECK_EQ(topic_table_create(&tt, "o", 1, 1, kv, 1, false, (const uint8_t *)"0123456789abcdeX"),
             0);
    CHECK_EQ(
        topic_table_create(&tt, "n", 1, 1, NULL, 0, false, (const uint8_t *)"0123456789abcdeY"), 0);
    al_config cfg;
    config_init(&cfg);
    CHECK_EQ(config_change(&cfg, NULL, "kafka_batch_max_bytes", "7000", NULL, 0), 0);
    CHECK_EQ(config_change(&cfg, NULL, "log_retention_ms", "60000", NULL, 0), 0);
    CHECK_EQ(config_change(&cfg, NULL, "log_segment_size", "1M", NULL, 0), 0);
    CHECK_EQ(config_change(&cfg, NULL, "log_message_timestamp_type", "LogAppendTime", NULL, 0),
             0);
    struct broker_config_defaults d;
    broker_config_defaults_build(&cfg, &d);
    pm_topic_settings s;
    storage_log_config c;
    pm_topic_resolve(topic_table_find(&tt, "n", 1), &d, &s, &c);
    CHECK_EQ(s.max_message_bytes, 7000);
    CHECK(s.log_append_time);
    CHECK_EQ(c.max_message_bytes, PM_STORAGE_BATCH_MAX); /* no reopen when it changes */
    CHECK_EQ(c.retention_ms, 60000);
    CHECK_EQ(c.segment_bytes, 1 << 20);
    pm_topic_resolve(topic_table_find(&tt, "o", 1), &d, &s, &c); /* its override wins */
    CHECK_EQ(c.retention_ms, 5000);
    CHECK_EQ(s.max_message_bytes, 7000);
    pm_topic_resolve(topic_table_find(&tt, "n", 1), NULL, &s, &c); /* Kafka's defaults */
    CHECK_EQ(s.max_message_bytes, 1048588);
    CHECK_EQ(c.retention_ms, 604800000);
    CHECK_EQ(c.segment_bytes, 1073741824u);
    topic_table_free(&tt);
}

int main(int argc, char **argv)
{
    int rc = test_main(argc, argv);
    if (g_io) io_destroy(g_io);
    return rc;
}
