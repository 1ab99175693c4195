/*
 * test_metrics.c — the metrics registry: bucket placement, counters/gauges/histograms, label
 * escaping, merging across shards (with concurrent writers), series limits, removal, and the
 * exposition checked by `promtool check metrics` when promtool is installed.
 */
#include "metrics/metrics.h"
#include "test.h"

#include <pthread.h>
#include <unistd.h>

static char *render(bool pub)
{
    char *out = NULL;
    size_t len = 0;
    CHECK_EQ(metrics_render(pub, &out, &len), 0);
    CHECK(out != NULL);
    CHECK_EQ(strlen(out), len);
    return out;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == 0)) return true;
    return false;
}

TEST(bucket_index)
{
    CHECK_EQ(metrics_bucket_index(8, 22, 0), 0);
    CHECK_EQ(metrics_bucket_index(8, 22, 8), 0);
    CHECK_EQ(metrics_bucket_index(8, 22, 9), 1);
    CHECK_EQ(metrics_bucket_index(8, 22, 16), 1);
    CHECK_EQ(metrics_bucket_index(8, 22, 17), 2);
    CHECK_EQ(metrics_bucket_index(8, 22, 32), 2);
    CHECK_EQ(metrics_bucket_index(8, 22, 8ull << 21), 21);
    CHECK_EQ(metrics_bucket_index(8, 22, (8ull << 21) + 1), 22); /* +Inf */
    CHECK_EQ(metrics_bucket_index(1, 16, UINT64_MAX), 16);
    /* Every value lands in the first bucket whose bound holds it. */
    for (uint64_t v = 1; v < 5000; v++) {
        uint32_t b = metrics_bucket_index(3, 10, v);
        if (b < 10) CHECK(v <= (3ull << b));
        if (b > 0) CHECK(v > (3ull << (b - 1)));
    }
}

TEST(counter_gauge_histogram_text)
{
    CHECK_EQ(metrics_init(2), 0);
    CHECK_EQ(metrics_init(2), -EEXIST);
    metrics *m0 = metrics_shard(0), *m1 = metrics_shard(1);
    CHECK(m0 && m1 && !metrics_shard(2));
    metrics_counter_add(m0, M_KAFKA_REQUESTS, 3, "produce");
    metrics_counter_add(m1, M_KAFKA_REQUESTS, 4, "produce");
    metrics_counter_add(m1, M_KAFKA_REQUESTS, 1, "fetch");
    metrics_gauge_set(m0, M_PARTITION_HIGH_WATERMARK, 42, "orders", "0");
    metrics_gauge_set(m0, M_PARTITION_HIGH_WATERMARK, 43, "orders", "0");
    metrics_histogram_observe(m0, M_STORAGE_FSYNC_LATENCY, 5);       /* bucket 0: 8us */
    metrics_histogram_observe(m1, M_STORAGE_FSYNC_LATENCY, 100);     /* bucket 4: 128us */
    metrics_histogram_observe(m1, M_STORAGE_FSYNC_LATENCY, 1u << 30); /* +Inf */
    char *t = render(false);
    CHECK(has_line(t, "# TYPE ailurus_kafka_requests_total counter"));
    CHECK(has_line(t, "ailurus_kafka_requests_total{api=\"fetch\"} 1"));
    CHECK(has_line(t, "ailurus_kafka_requests_total{api=\"produce\"} 7"));
    CHECK(has_line(t, "ailurus_kafka_partition_high_watermark{topic=\"orders\","
                      "partition=\"0\"} 43"));
    CHECK(has_line(t, "# TYPE ailurus_storage_fsync_latency_seconds histogram"));
    CHECK(has_line(t, "ailurus_storage_fsync_latency_seconds_bucket{le=\"8e-06\"} 1"));
    CHECK(has_line(t, "ailurus_storage_fsync_latency_seconds_bucket{le=\"6.4e-05\"} 1"));
    CHECK(has_line(t, "ailurus_storage_fsync_latency_seconds_bucket{le=\"0.000128\"} 2"));
    CHECK(has_line(t, "ailurus_storage_fsync_latency_seconds_bucket{le=\"16.777216\"} 2"));
    CHECK(has_line(t, "ailurus_storage_fsync_latency_seconds_bucket{le=\"+Inf\"} 3"));
    CHECK(has_line(t, "ailurus_storage_fsync_latency_seconds_count 3"));
    CHECK(has_line(t, "ailurus_storage_fsync_latency_seconds_sum 1073.741929"));
    /* "fetch" sorts before "produce"; the group-commit family is detailed only. */
    CHECK(strstr(t, "api=\"fetch\"") < strstr(t, "api=\"produce\""));
    CHECK(strstr(t, "ailurus_storage_group_commit_batch_records") != NULL);
    free(t);
    t = render(true);
    CHECK(strstr(t, "ailurus_storage_group_commit_batch_records") == NULL);
    CHECK(has_line(t, "ailurus_kafka_requests_total{api=\"produce\"} 7"));
    free(t);
    metrics_shutdown();
    CHECK(metrics_shard(0) == NULL);
}

TEST(escaping_and_scaled_counter)
{
    CHECK_EQ(metrics_init(1), 0);
    metrics *m = metrics_shard(0);
    metrics_counter_add(m, M_KAFKA_BYTES_IN, 10, "a\"b\\c\nd");
    metrics_counter_add(m, M_REACTOR_BUSY_SECONDS, 1500000, "0");
    metrics_gauge_set(m, M_REACTOR_UTILIZATION, 0.25, "0");
    char *t = render(false);
    CHECK(has_line(t, "ailurus_kafka_topic_bytes_in_total{topic=\"a\\\"b\\\\c\\nd\"} 10"));
    CHECK(has_line(t, "ailurus_reactor_busy_seconds_total{shard=\"0\"} 1.5"));
    CHECK(has_line(t, "ailurus_reactor_utilization_ratio{shard=\"0\"} 0.25"));
    free(t);
    /* Doubles print in their shortest exact form: 0.000897 s, not 0.00089700000000000001. */
    metrics_counter_add(m, M_REACTOR_BUSY_SECONDS, 897, "1");
    metrics_gauge_set(m, M_REACTOR_UTILIZATION, 1.0 / 3.0, "1");
    t = render(false);
    CHECK(has_line(t, "ailurus_reactor_busy_seconds_total{shard=\"1\"} 0.000897"));
    CHECK(has_line(t, "ailurus_reactor_utilization_ratio{shard=\"1\"} 0.33333333333333331"));
    free(t);
    metrics_shutdown();
}

TEST(series_limit_and_remove)
{
    CHECK_EQ(metrics_init(1), 0);
    metrics *m = metrics_shard(0);
    uint32_t cap = metrics_families[M_MEMORY_BYTES].max_series;
    char name[32];
    for (uint32_t i = 0; i < cap; i++) {
        snprintf(name, sizeof(name), "s%u", i);
        CHECK(metrics_series_get(m, M_MEMORY_BYTES, (const char *const[]){name}) != NULL);
    }
    CHECK(metrics_series_get(m, M_MEMORY_BYTES, (const char *const[]){"one-too-many"}) == NULL);
    metrics_gauge_set(m, M_MEMORY_BYTES, 1, "another");
    char *t = render(false);
    CHECK(has_line(t, "ailurus_metrics_dropped_series_total 2"));
    free(t);
    /* Existing series are still found. */
    metrics_series *s = metrics_series_get(m, M_MEMORY_BYTES, (const char *const[]){"s0"});
    CHECK(s != NULL);
    metrics_series_set(s, 77);
    t = render(false);
    CHECK(has_line(t, "ailurus_memory_allocated_bytes{subsystem=\"s0\"} 77"));
    free(t);
    metrics_series_remove(m, M_MEMORY_BYTES, (const char *const[]){"s0"});
    t = render(false);
    CHECK(strstr(t, "subsystem=\"s0\"") == NULL);
    free(t);
    CHECK(metrics_series_get(m, M_MEMORY_BYTES, (const char *const[]){"s0"}) == s);
    t = render(false);
    CHECK(has_line(t, "ailurus_memory_allocated_bytes{subsystem=\"s0\"} 0"));
    free(t);
    /* Label values too long for one series are refused, not truncated. */
    char big[METRICS_LABELS_BYTES + 8];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    CHECK(metrics_series_get(m, M_KAFKA_BYTES_IN, (const char *const[]){big}) == NULL);
    metrics_shutdown();
}

struct writer {
    unsigned shard;
    uint64_t n;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    metrics_bind(w->shard);
    metrics_series *s = metrics_series_get(metrics_local, M_KAFKA_REQUESTS,
                                           (const char *const[]){"produce"});
    for (uint64_t i = 0; i < w->n; i++) {
        metrics_series_add(s, 1);
        metrics_histogram_observe(metrics_local, M_KAFKA_REQUEST_LATENCY, i % 5000, "produce");
        if (i % 1000 == 0) {
            char t[16];
            snprintf(t, sizeof(t), "t%u-%u", w->shard, (unsigned)(i / 1000) % 50);
            metrics_counter_add(metrics_local, M_KAFKA_BYTES_IN, 1, t);
        }
    }
    return NULL;
}

TEST(concurrent_shards_and_scrapes)
{
    CHECK_EQ(metrics_init(2), 0);
    struct writer w[2] = {{0, 200000}, {1, 200000}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) CHECK_EQ(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    int scrapes = 0;
    for (; scrapes < 50; scrapes++) { /* scrape while the shards write */
        char *t = render(false);
        free(t);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    char *t = render(false);
    CHECK(has_line(t, "ailurus_kafka_requests_total{api=\"produce\"} 400000"));
    CHECK(has_line(t, "ailurus_kafka_request_latency_seconds_count{api=\"produce\"} 400000"));
    CHECK(has_line(t, "ailurus_kafka_topic_bytes_in_total{topic=\"t1-49\"} 4"));
    free(t);
    metrics_shutdown();
}

TEST(promtool_accepts_output)
{
    if (access("/usr/bin/promtool", X_OK) != 0) {
        printf("    (promtool not installed: skipped)\n");
        return;
    }
    CHECK_EQ(metrics_init(2), 0);
    metrics *m = metrics_shard(1);
    metrics_counter_add(m, M_KAFKA_REQUESTS, 1, "produce");
    metrics_counter_add(m, M_KAFKA_REQUEST_ERRORS, 1, "produce", "NOT_LEADER_OR_FOLLOWER");
    metrics_histogram_observe(m, M_KAFKA_REQUEST_LATENCY, 1234, "produce");
    metrics_gauge_set(m, M_GROUP_PARTITION_LAG, 7, "g\"1", "t", "0");
    metrics_gauge_set(m, M_UPTIME, 1.5);
    for (int pub = 0; pub < 2; pub++) {
        char *t = render(pub);
        char path[512];
        snprintf(path, sizeof(path), "%s/metrics-%d.txt", test_tmpdir(), pub);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        fputs(t, f);
        fclose(f);
        free(t);
        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < '%s' > '%s.out' 2>&1",
                 path, path);
        int rc = system(cmd);
        if (rc != 0) {
            snprintf(cmd, sizeof(cmd), "cat '%s.out' >&2", path);
            CHECK(system(cmd) >= 0);
        }
        CHECK_EQ(rc, 0);
    }
    metrics_shutdown();
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
