/*
 * metrics.h — the metrics registry: counters, gauges and log-scale histograms with labels,
 * declared in one table (metrics_defs.h), kept per shard, exposed in the Prometheus text
 * format 0.0.4 on the admin API's /metrics (every family) and /public_metrics (the stable
 * public subset).
 *
 * Concurrency (the choice, and why): each shard owns one `metrics` instance and is its only
 * writer. Values are _Atomic uint64_t updated with relaxed load + relaxed store (no RMW, no
 * lock, no fence on the data path: one writer per word), and the scrape, which runs on the
 * admin shard, reads every shard's instance with relaxed loads. A series is created by its
 * shard and published by a release store of the series count; the scrape reads the count with
 * acquire, so a series' label values (immutable after creation) are visible before it is
 * read. Reading relaxed atomics rather than asking each shard by message keeps a scrape
 * independent of the shards' queues and never delays the data path; the cost is that one
 * scrape is not an atomic snapshot across series (a histogram's _count is computed from the
 * bucket values read, so each histogram is self-consistent).
 *
 * Series with the same label values on several shards are summed by the scrape (a partition
 * lives on one shard, so its gauges appear once; per-shard families carry a `shard` label).
 *
 * Hot path use: look a series up once and keep the handle (metrics_series_get), or use the
 * convenience calls below that look up by label values each time (a hash probe, no allocation
 * after the series exists). A NULL `metrics` or series handle is accepted and ignored, so code
 * running without a registry (unit tests of other modules) needs no special case.
 */
#ifndef AL_METRICS_H
#define AL_METRICS_H

#include "base/base.h"
#include "metrics/metrics_defs.h"

#include <stdio.h>

#define METRICS_MAX_LABELS 4
#define METRICS_MAX_SHARDS 256
#define METRICS_LABELS_BYTES 320 /* all label values of one series, NUL-separated */

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

enum metrics_id {
#define METRICS_X_ENUM(id, name, type, pub, b, maxs, help, labels) id,
    METRICS_FAMILIES(METRICS_X_ENUM)
#undef METRICS_X_ENUM
        M__COUNT
};

struct metrics_family_def {
    const char *name;
    enum metrics_type type;
    bool is_public;
    uint64_t first_bound; /* histogram: raw upper bound of bucket 0 */
    uint32_t nbuckets;    /* histogram: finite buckets; bound i = first_bound << i */
    double divisor;       /* raw unit -> exposed unit */
    uint32_t max_series;  /* per shard */
    const char *help;
    const char *labels[METRICS_MAX_LABELS + 1]; /* NULL-terminated */
    uint32_t nlabels;                           /* filled by metrics_init */
};

/* The table, indexed by metrics_id. nlabels is valid after metrics_init. */
extern struct metrics_family_def metrics_families[M__COUNT];

typedef struct metrics metrics;               /* one shard's instance */
typedef struct metrics_series metrics_series; /* one label set of one family on one shard */

/*
 * Creates the registry with `nshards` instances (1..METRICS_MAX_SHARDS). Main thread, before
 * the shards start. Returns 0, -EEXIST (already initialised), AL_EINVAL or -ENOMEM.
 */
int metrics_init(unsigned nshards);

/* Frees the registry. Main thread, after every shard has stopped using it. */
void metrics_shutdown(void);

/* The instance of shard `shard`, or NULL (not initialised, or out of range). Any thread. */
metrics *metrics_shard(unsigned shard);

/* Number of shard instances (0 when not initialised). */
unsigned metrics_nshards(void);

/* The calling thread's instance: set it once on each shard thread with metrics_bind. */
extern _Thread_local metrics *metrics_local;

/* Binds the calling thread to shard `shard`'s instance (metrics_local). */
void metrics_bind(unsigned shard);

/*
 * Returns the series of family `id` with the given label values (exactly the family's number
 * of labels, each a NUL-terminated string; the array need not be NULL-terminated), creating
 * it on first use. The handle stays valid until metrics_shutdown. Returns NULL if m is NULL,
 * or the family is full (the update is counted in ailurus_metrics_dropped_series_total), or
 * the label values do not fit METRICS_LABELS_BYTES. Only the shard owning m may call this.
 */
metrics_series *metrics_series_get(metrics *m, enum metrics_id id, const char *const *labels);

/* Marks a series as gone (a deleted partition): the scrape skips it and a later
 * metrics_series_get with the same labels revives it from zero. Owning shard only. */
void metrics_series_remove(metrics *m, enum metrics_id id, const char *const *labels);

/* Handle updates; owning shard only; NULL handles are ignored. */
void metrics_series_add(metrics_series *s, uint64_t v);       /* counter */
void metrics_series_set(metrics_series *s, double v);         /* gauge */
void metrics_series_observe(metrics_series *s, uint64_t raw); /* histogram, raw unit */

/* Convenience: look up by label values (a NULL-terminated compound literal built by the
 * macros below) and update. The number of label values must equal the family's; a mismatch
 * is a programming error and aborts. */
void metrics_counter_add_l(metrics *m, enum metrics_id id, uint64_t v, const char *const *l);
void metrics_gauge_set_l(metrics *m, enum metrics_id id, double v, const char *const *l);
void metrics_histogram_observe_l(metrics *m, enum metrics_id id, uint64_t raw,
                                 const char *const *l);

#define METRICS_LV(...) ((const char *const[]){__VA_ARGS__ __VA_OPT__(, ) NULL})
/* metrics_counter_add(m, M_KAFKA_REQUESTS, 1, "produce"); */
#define metrics_counter_add(m, id, v, ...)                                                       \
    metrics_counter_add_l((m), (id), (v), METRICS_LV(__VA_ARGS__))
/* metrics_gauge_set(m, M_PARTITION_HIGH_WATERMARK, 42, "orders", "0"); */
#define metrics_gauge_set(m, id, v, ...)                                                         \
    metrics_gauge_set_l((m), (id), (v), METRICS_LV(__VA_ARGS__))
/* metrics_histogram_observe(m, M_KAFKA_REQUEST_LATENCY, elapsed_us, "fetch"); */
#define metrics_histogram_observe(m, id, raw, ...)                                               \
    metrics_histogram_observe_l((m), (id), (raw), METRICS_LV(__VA_ARGS__))

/*
 * Consumer-group lag, for the group coordinator to report on its shard after offsets or high
 * watermarks move: sets ailurus_kafka_consumer_group_partition_lag{group,topic,partition} for
 * each of the n partitions and the group's lag_sum and lag_max. lag[i] = high watermark -
 * committed offset (negative values count as 0). Owning shard only.
 */
void metrics_group_lag_report(metrics *m, const char *group, const char *const *topics,
                              const int32_t *partitions, const int64_t *lag, int n);

/*
 * Visits every live series of gauge family id on every shard (not merged), with its label
 * values and value. Any thread (relaxed reads, see the file comment). Scratch-free.
 */
void metrics_gauge_visit(enum metrics_id id,
                         void (*visit)(void *arg, const char *const *labels, double value),
                         void *arg);

struct group_coordinator;
/*
 * Consumer-group lag for every group of coordinator c (src/metrics/metrics_groups.c): lag =
 * the partition's high-watermark gauge (published by its owning shard's collector) minus the
 * committed offset; partitions without a known high watermark are skipped. Sets the lag
 * families on the calling shard and removes the series of groups/partitions gone since the
 * last call. Rate-limited to once a second per shard (now_ms), so it can be called from the
 * coordinator's tick. Call on the shard that owns c.
 */
void metrics_group_lag_update(struct group_coordinator *c, int64_t now_ms);

/* Forgets what this shard reported (tests; a coordinator being destroyed). */
void metrics_group_lag_forget(void);

/* Monotonic nanoseconds for metrics timestamps (clock_gettime: metrics only, never logic). */
uint64_t metrics_clock_ns(void);

/*
 * Records one completed Kafka request (src/metrics/metrics_kafka.c): ailurus_kafka_requests_total
 * {api}, ailurus_kafka_request_errors_total{api,error="request_failed"} if failed, and the
 * latency since t0_ns (metrics_clock_ns at arrival; 0 skips it). Calling shard's instance.
 * Handlers may add per-partition error codes themselves:
 *   metrics_counter_add(metrics_local, M_KAFKA_REQUEST_ERRORS, 1, "Produce", "NOT_LEADER...");
 */
void metrics_kafka_request(int16_t api_key, uint64_t t0_ns, bool failed);

/* Counts one Kafka error code (non-zero) answered for api ("Produce", ...), labelled with
 * Kafka's error name: ailurus_kafka_request_errors_total{api, error}. Calling shard. */
void metrics_kafka_error(const char *api, int16_t code);

/* The index of the bucket a raw histogram value falls in (nbuckets means +Inf). Exposed for
 * tests. */
uint32_t metrics_bucket_index(uint64_t first_bound, uint32_t nbuckets, uint64_t raw);

/*
 * Writes every family (public_only: only the public ones) in the Prometheus text exposition
 * format 0.0.4 to f, summing series across shards and sorting series by label values.
 * Families without series are written with HELP and TYPE only. Any thread (reads relaxed
 * atomics); allocates scratch memory. Returns 0, -ENOMEM, or -EIO if f reports an error.
 */
int metrics_write_prometheus(FILE *f, bool public_only);

/* Same, into a malloc'd NUL-terminated buffer (*out, *len; free with free()). */
int metrics_render(bool public_only, char **out, size_t *len);

#endif
