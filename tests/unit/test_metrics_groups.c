/*
 * test_metrics_groups.c — consumer-group lag from a real group coordinator's committed offsets
 * and high-watermark gauges published by another shard: per-partition lag, sum and max per
 * group, partitions without a known high watermark skipped, rate limiting, and removal of the
 * series of a deleted group.
 */
#include "coord/group.h"
#include "metrics/metrics.h"
#include "test.h"

static char *render(void)
{
    char *out = NULL;
    size_t len = 0;
    CHECK_EQ(metrics_render(false, &out, &len), 0);
    return out;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == 0)) return true;
    return false;
}

static void commit(struct group_coordinator *c, const char *group, const char *topic,
                   int32_t part, int64_t offset, int64_t now)
{
    struct group_offset_commit oc = {.topic = topic, .partition = part, .offset = offset,
                                     .leader_epoch = -1};
    CHECK_EQ(group_commit_offsets(c, group, "", NULL, -1, &oc, 1, now), 0);
    CHECK_EQ(oc.error, 0);
}

TEST(lag_from_committed_offsets_and_hw_gauges)
{
    CHECK_EQ(metrics_init(2), 0);
    /* Shard 1 leads the partitions and publishes their high watermarks. */
    metrics *m1 = metrics_shard(1);
    metrics_gauge_set(m1, M_PARTITION_HIGH_WATERMARK, 100, "orders", "0");
    metrics_gauge_set(m1, M_PARTITION_HIGH_WATERMARK, 50, "orders", "1");
    metrics_gauge_set(m1, M_PARTITION_HIGH_WATERMARK, 9, "audit", "0");
    /* Shard 0 runs the coordinator. */
    metrics_bind(0);
    struct group_config gc;
    group_config_defaults(&gc);
    struct group_coordinator c;
    group_coordinator_init(&c, &gc, NULL, NULL, 42);
    int64_t now = 1000000;
    commit(&c, "billing", "orders", 0, 40, now);
    commit(&c, "billing", "orders", 1, 50, now);
    commit(&c, "billing", "orders", 7, 3, now); /* no high watermark known: skipped */
    commit(&c, "audit-reader", "audit", 0, 2, now);
    metrics_group_lag_update(&c, now);
    char *t = render();
    CHECK(has_line(t, "ailurus_kafka_consumer_group_partition_lag{group=\"billing\","
                      "topic=\"orders\",partition=\"0\"} 60"));
    CHECK(has_line(t, "ailurus_kafka_consumer_group_partition_lag{group=\"billing\","
                      "topic=\"orders\",partition=\"1\"} 0"));
    CHECK(strstr(t, "partition=\"7\"") == NULL);
    CHECK(has_line(t, "ailurus_kafka_consumer_group_lag_sum{group=\"billing\"} 60"));
    CHECK(has_line(t, "ailurus_kafka_consumer_group_lag_max{group=\"billing\"} 60"));
    CHECK(has_line(t, "ailurus_kafka_consumer_group_lag_sum{group=\"audit-reader\"} 7"));
    free(t);

    /* Within a second nothing is recomputed; after it, new commits show. */
    commit(&c, "billing", "orders", 0, 90, now + 10);
    metrics_group_lag_update(&c, now + 500);
    t = render();
    CHECK(has_line(t, "ailurus_kafka_consumer_group_lag_sum{group=\"billing\"} 60"));
    free(t);
    metrics_gauge_set(m1, M_PARTITION_HIGH_WATERMARK, 120, "orders", "1");
    metrics_group_lag_update(&c, now + 1500);
    t = render();
    CHECK(has_line(t, "ailurus_kafka_consumer_group_lag_sum{group=\"billing\"} 80"));
    CHECK(has_line(t, "ailurus_kafka_consumer_group_lag_max{group=\"billing\"} 70"));
    free(t);

    /* A deleted group's series go away at the next update. */
    CHECK_EQ(group_delete(&c, "audit-reader", now + 2000), 0);
    metrics_group_lag_update(&c, now + 3000);
    t = render();
    CHECK(strstr(t, "audit-reader") == NULL);
    CHECK(has_line(t, "ailurus_kafka_consumer_group_lag_sum{group=\"billing\"} 80"));
    free(t);
    group_coordinator_destroy(&c);
    metrics_group_lag_forget();
    metrics_shutdown();
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
