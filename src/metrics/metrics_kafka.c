/*
 * metrics_kafka.c — the metrics the Kafka request path records, in one call made by the
 * dispatcher when a request completes (src/kafka/dispatch.c: complete()): requests, failures
 * and latency per API, labelled with Kafka's API names ("Produce", "Fetch", ...).
 */
#include "metrics/metrics.h"
#include "kafka/errors.h"
#include "kafka/gen/kafka_codec.h"

#include <time.h>

uint64_t metrics_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void metrics_kafka_request(int16_t api_key, uint64_t t0_ns, bool failed)
{
    metrics *m = metrics_local;
    if (!m) return;
    const struct kafka_api_info *info = kafka_api_info(api_key);
    char unknown[16];
    const char *name = info ? info->name : unknown;
    if (!info) snprintf(unknown, sizeof(unknown), "api_%d", api_key);
    metrics_counter_add(m, M_KAFKA_REQUESTS, 1, name);
    if (failed) metrics_counter_add(m, M_KAFKA_REQUEST_ERRORS, 1, name, "request_failed");
    if (t0_ns) {
        uint64_t now = metrics_clock_ns();
        uint64_t us = now > t0_ns ? (now - t0_ns) / 1000 : 0;
        metrics_histogram_observe(m, M_KAFKA_REQUEST_LATENCY, us, name);
    }
}

void metrics_kafka_error(const char *api, int16_t code)
{
    if (!metrics_local || code == 0) return;
    const char *name = kafka_err_name(code);
    char unknown[24];
    if (!name) {
        snprintf(unknown, sizeof(unknown), "error_%d", code);
        name = unknown;
    }
    metrics_counter_add(metrics_local, M_KAFKA_REQUEST_ERRORS, 1, api, name);
}
