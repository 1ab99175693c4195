/*
 * metrics_defs.h — the table of every metric family Ailurus exports, in one place (an X-macro
 * expanded into the `metrics_id` enum in metrics.h and the definition table in metrics.c).
 *
 * Columns: id, name, type, public (also on /public_metrics), histogram bucket scheme (or NONE;
 * for a counter, METRICS_SCALE_MICRO exposes integer microseconds as seconds),
 * max series per shard, help, label names (up to METRICS_MAX_LABELS, as a brace list).
 *
 * Units: counters and gauges hold what their name says (bytes, offsets, ratios). Histograms
 * record integers in a raw unit and are exposed in the Prometheus base unit: latency buckets
 * take microseconds and are exposed in seconds; size buckets take counts or bytes as they are.
 *
 * Names are a contract with dashboards (dashboards/ailurus.json) and operators: the public
 * ones are stable; add families freely, rename none.
 */
#ifndef AL_METRICS_DEFS_H
#define AL_METRICS_DEFS_H

/* Histogram bucket schemes: raw first upper bound, number of finite buckets (bounds double),
 * divisor from the raw unit to the exposed unit. */
#define METRICS_BUCKETS_NONE 0, 0, 1.0
#define METRICS_BUCKETS_LATENCY_US 8, 22, 1e6 /* 8us .. ~16.8s, exposed in seconds */
#define METRICS_BUCKETS_COUNT 1, 16, 1.0      /* 1 .. 32768 */
#define METRICS_BUCKETS_BYTES 512, 20, 1.0    /* 512 B .. 256 MiB */
#define METRICS_SCALE_MICRO 0, 0, 1e6        /* a counter of microseconds, exposed in seconds */

#define METRICS_L(...) {__VA_ARGS__}

/* X(id, name, type, public, buckets, max_series, help, labels) */
#define METRICS_FAMILIES(X)                                                                      \
    X(M_KAFKA_REQUESTS, "ailurus_kafka_requests_total", METRICS_COUNTER, true,                   \
      METRICS_BUCKETS_NONE, 128, "Kafka requests handled, by API.", METRICS_L("api"))           \
    X(M_KAFKA_REQUEST_ERRORS, "ailurus_kafka_request_errors_total", METRICS_COUNTER, true,       \
      METRICS_BUCKETS_NONE, 512, "Kafka requests or partitions answered with an error, by API " \
      "and Kafka error name.", METRICS_L("api", "error"))                                        \
    X(M_KAFKA_REQUEST_LATENCY, "ailurus_kafka_request_latency_seconds", METRICS_HISTOGRAM, true, \
      METRICS_BUCKETS_LATENCY_US, 128, "Time from a Kafka request's arrival to its response "    \
      "being queued, by API.", METRICS_L("api"))                                                 \
    X(M_KAFKA_BYTES_IN, "ailurus_kafka_topic_bytes_in_total", METRICS_COUNTER, true,             \
      METRICS_BUCKETS_NONE, 4096, "Record-batch bytes produced to a topic.", METRICS_L("topic")) \
    X(M_KAFKA_BYTES_OUT, "ailurus_kafka_topic_bytes_out_total", METRICS_COUNTER, true,           \
      METRICS_BUCKETS_NONE, 4096, "Record-batch bytes fetched from a topic.",                    \
      METRICS_L("topic"))                                                                        \
    X(M_PARTITION_HIGH_WATERMARK, "ailurus_kafka_partition_high_watermark", METRICS_GAUGE, true, \
      METRICS_BUCKETS_NONE, 8192, "High watermark (next offset visible to consumers) of a "     \
      "partition led on this node.", METRICS_L("topic", "partition"))                            \
    X(M_PARTITION_LOG_START, "ailurus_kafka_partition_log_start_offset", METRICS_GAUGE, true,    \
      METRICS_BUCKETS_NONE, 8192, "First offset still in a partition's log.",                    \
      METRICS_L("topic", "partition"))                                                           \
    X(M_STORAGE_LOG_BYTES, "ailurus_storage_log_bytes", METRICS_GAUGE, true,                     \
      METRICS_BUCKETS_NONE, 8192, "Bytes of segment data a partition's log holds on disk.",      \
      METRICS_L("topic", "partition"))                                                           \
    X(M_STORAGE_FSYNC_LATENCY, "ailurus_storage_fsync_latency_seconds", METRICS_HISTOGRAM, true, \
      METRICS_BUCKETS_LATENCY_US, 1, "Duration of the log's fdatasync calls.", METRICS_L(NULL))  \
    X(M_STORAGE_GROUP_COMMIT_RECORDS, "ailurus_storage_group_commit_batch_records",              \
      METRICS_HISTOGRAM, false, METRICS_BUCKETS_COUNT, 1,                                        \
      "Records (offsets) made durable by one group-commit write and flush.", METRICS_L(NULL))    \
    X(M_STORAGE_GROUP_COMMIT_BYTES, "ailurus_storage_group_commit_batch_bytes",                  \
      METRICS_HISTOGRAM, false, METRICS_BUCKETS_BYTES, 1,                                        \
      "Bytes written by one group-commit write and flush.", METRICS_L(NULL))                     \
    X(M_REACTOR_UTILIZATION, "ailurus_reactor_utilization_ratio", METRICS_GAUGE, false,          \
      METRICS_BUCKETS_NONE, 4, "Fraction of the last interval a shard spent running tasks and " \
      "callbacks rather than waiting for I/O.", METRICS_L("shard"))                              \
    X(M_REACTOR_BUSY_SECONDS, "ailurus_reactor_busy_seconds_total", METRICS_COUNTER, false,      \
      METRICS_SCALE_MICRO, 4, "Time a shard spent running callbacks rather than waiting.",     \
      METRICS_L("shard"))                                                  \
    X(M_REACTOR_STALLS, "ailurus_reactor_stalls_total", METRICS_COUNTER, false,                  \
      METRICS_BUCKETS_NONE, 4, "Times a shard's lag probe ran more than 50 ms late (a long "    \
      "turn of its loop, or its thread waiting for a CPU).", METRICS_L("shard"))                 \
    X(M_REACTOR_LAG, "ailurus_reactor_lag_seconds", METRICS_HISTOGRAM, false,                    \
      METRICS_BUCKETS_LATENCY_US, 4, "How late a shard's lag probe timer ran (every 5 ms while "  \
      "it works): its own long turns plus the time its thread waited for a CPU.",                \
      METRICS_L("shard"))                                                                        \
    X(M_MEMORY_BYTES, "ailurus_memory_allocated_bytes", METRICS_GAUGE, false,                    \
      METRICS_BUCKETS_NONE, 64, "Bytes held by a subsystem's budgeted memory.",                  \
      METRICS_L("subsystem"))                                                                    \
    X(M_HEAP_FREE_BYTES, "ailurus_memory_heap_free_bytes", METRICS_GAUGE, false,                \
      METRICS_BUCKETS_NONE, 1, "Freed memory the allocator's heap holds (mallinfo2 fordblks), " \
      "at the last heap-trim look (every 5 s; see heap_trim_threshold).", METRICS_L(NULL))      \
    X(M_HEAP_RELEASED_BYTES, "ailurus_memory_heap_released_bytes_total", METRICS_COUNTER,       \
      false, METRICS_BUCKETS_NONE, 1, "Resident memory given back to the system by heap trims " \
      "(heap_trim_threshold).", METRICS_L(NULL))                                                 \
    X(M_GROUP_LAG_SUM, "ailurus_kafka_consumer_group_lag_sum", METRICS_GAUGE, true,              \
      METRICS_BUCKETS_NONE, 4096, "Sum over a consumer group's partitions of high watermark "   \
      "minus committed offset.", METRICS_L("group"))                                             \
    X(M_GROUP_LAG_MAX, "ailurus_kafka_consumer_group_lag_max", METRICS_GAUGE, true,              \
      METRICS_BUCKETS_NONE, 4096, "Largest lag of any partition of a consumer group.",           \
      METRICS_L("group"))                                                                        \
    X(M_GROUP_PARTITION_LAG, "ailurus_kafka_consumer_group_partition_lag", METRICS_GAUGE, false, \
      METRICS_BUCKETS_NONE, 16384, "High watermark minus a consumer group's committed offset "  \
      "for one partition.", METRICS_L("group", "topic", "partition"))                            \
    X(M_ADMIN_REQUESTS, "ailurus_admin_requests_total", METRICS_COUNTER, false,                  \
      METRICS_BUCKETS_NONE, 64, "Admin API (HTTP) requests answered, by status code.",           \
      METRICS_L("code"))                                                                         \
    X(M_METRICS_DROPPED_SERIES, "ailurus_metrics_dropped_series_total", METRICS_COUNTER, false,  \
      METRICS_BUCKETS_NONE, 1, "Updates dropped because a family reached its series limit.",    \
      METRICS_L(NULL))                                                                           \
    X(M_BUILD_INFO, "ailurus_build_info", METRICS_GAUGE, true, METRICS_BUCKETS_NONE, 1,          \
      "Always 1; the labels say which build is running.", METRICS_L("version"))                  \
    X(M_UPTIME, "ailurus_uptime_seconds", METRICS_GAUGE, true, METRICS_BUCKETS_NONE, 1,          \
      "Seconds since the process started.", METRICS_L(NULL))

#endif
