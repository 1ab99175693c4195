/*
 * test_http_admin.c — the admin API's handlers through the real router and connection layer
 * (no sockets): readiness, brokers, cluster config GET/PUT validation, node config, features,
 * log levels, metrics, and the 503 the partition endpoints give without a data plane.
 */
#include "base/log.h"
#include "http/admin.h"
#include "metrics/metrics.h"
#include "test.h"

static struct admin_state *st;
static http_router router;
static struct http_limits lim;
static al_config cfg;

static void setup(void)
{
    config_init(&cfg);
    cfg.node_id = 7;
    if (!st) {
        st = admin_state_new(&cfg, "test-cluster", 2);
        router = admin_router(st);
        http_limits_defaults(&lim);
    }
}

/* Sends one request, returns the status and the parsed JSON body (or NULL), body text in
 * *text (static). */
static int call(const char *method, const char *path, const char *body, json_t **out,
                const char **text)
{
    static char buf[1 << 17];
    setup();
    http_conn *c = http_conn_new(&router, &lim, NULL, NULL);
    char req[4096];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, body ? strlen(body) : 0, body ? body : "");
    http_conn_feed(c, req, (size_t)n);
    size_t len;
    char *o = http_conn_take_output(c, &len);
    AL_ASSERT(o && len < sizeof(buf));
    memcpy(buf, o, len);
    buf[len] = 0;
    free(o);
    http_conn_free(c);
    int status = atoi(buf + 9);
    char *b = strstr(buf, "\r\n\r\n");
    AL_ASSERT(b);
    b += 4;
    if (text) *text = b;
    if (out) {
        json_error_t je;
        *out = json_loads(b, 0, &je);
    }
    return status;
}

TEST(ready_and_brokers)
{
    json_t *j;
    admin_set_ready(false);
    CHECK_EQ(call("GET", "/v1/status/ready", NULL, &j, NULL), 503);
    CHECK(!strcmp(json_string_value(json_object_get(j, "status")), "booting"));
    json_decref(j);
    admin_set_ready(true);
    CHECK_EQ(call("GET", "/v1/status/ready", NULL, &j, NULL), 200);
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/brokers", NULL, &j, NULL), 200);
    CHECK(json_is_array(j) && json_array_size(j) == 1);
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(j, 0), "node_id")), 7);
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(j, 0), "num_cores")), 2);
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/brokers/7", NULL, &j, NULL), 200);
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/brokers/8", NULL, &j, NULL), 404);
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/brokers/x", NULL, &j, NULL), 400);
    CHECK_EQ(json_integer_value(json_object_get(j, "code")), 400);
    json_decref(j);
    CHECK_EQ(call("POST", "/v1/brokers", NULL, &j, NULL), 405);
    json_decref(j);
}

TEST(cluster_config_get_put)
{
    json_t *j;
    CHECK_EQ(call("GET", "/v1/cluster_config", NULL, &j, NULL), 200);
    CHECK(json_object_get(j, "default_topic_partitions") != NULL);
    CHECK(json_object_get(j, "auto_create_topics_enabled") != NULL);
    CHECK(json_object_get(j, "node_id") == NULL); /* node keys are not cluster config */
    int64_t v0 = 0;
    json_decref(j);
    CHECK_EQ(call("PUT", "/v1/cluster_config",
                  "{\"upsert\": {\"default_topic_partitions\": 3, "
                  "\"auto_create_topics_enabled\": true, \"max_connections\": 500}}", &j,
                  NULL), 200);
    v0 = json_integer_value(json_object_get(j, "config_version"));
    CHECK(v0 >= 2);
    /* The two topic defaults apply live; max_connections needs a restart. */
    CHECK_EQ(json_array_size(json_object_get(j, "restart_required")), 1);
    CHECK(!strcmp(json_string_value(json_array_get(json_object_get(j, "restart_required"), 0)),
                  "max_connections"));
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/cluster_config", NULL, &j, NULL), 200);
    CHECK_EQ(json_integer_value(json_object_get(j, "default_topic_partitions")), 3);
    CHECK(json_is_true(json_object_get(j, "auto_create_topics_enabled")));
    json_decref(j);
    /* The status says a restart would apply them, and which keys. */
    CHECK_EQ(call("GET", "/v1/cluster_config/status", NULL, &j, NULL), 200);
    json_t *node = json_array_get(j, 0);
    CHECK(json_is_true(json_object_get(node, "restart")));
    CHECK_EQ(json_array_size(json_object_get(node, "restart_keys")), 1);
    CHECK_EQ(json_integer_value(json_object_get(node, "config_version")), v0);
    json_decref(j);

    static const struct {
        const char *body, *needle;
    } bad[] = {
        {"{\"upsert\": {\"no_such_key\": 1}}", "no_such_key"},
        {"{\"upsert\": {\"node_id\": 3}}", "node property"},
        {"{\"upsert\": {\"default_topic_partitions\": 0}}", "default_topic_partitions"},
        {"{\"upsert\": {\"default_topic_partitions\": \"many\"}}", "default_topic_partitions"},
        {"{\"upsert\": {\"default_topic_partitions\": [1]}}", "must be a string"},
        {"{\"remove\": [\"bogus\"]}", "bogus"},
        {"{\"remove\": [1]}", "remove[0]"},
        {"{\"upsert\": 5}", "upsert must be an object"},
        {"{\"other\": {}}", "unexpected field 'other'"},
        {"not json", "body must be a JSON object"},
        {"", "body must be a JSON object"},
    };
    for (size_t i = 0; i < AL_ARRAY_SIZE(bad); i++) {
        int status = call("PUT", "/v1/cluster_config", bad[i].body, &j, NULL);
        if (status != 400) fprintf(stderr, "case %zu: %d\n", i, status);
        CHECK_EQ(status, 400);
        const char *m = json_string_value(json_object_get(j, "message"));
        if (!m || !strstr(m, bad[i].needle)) fprintf(stderr, "case %zu: %s\n", i, m ? m : "(none)");
        CHECK(m && strstr(m, bad[i].needle));
        CHECK_EQ(json_integer_value(json_object_get(j, "code")), 400);
        json_decref(j);
    }
    /* A failed PUT changes nothing, not even the keys before the bad one. */
    CHECK_EQ(call("PUT", "/v1/cluster_config",
                  "{\"upsert\": {\"default_topic_partitions\": 5, \"nope\": 1}}", &j, NULL), 400);
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/cluster_config", NULL, &j, NULL), 200);
    CHECK_EQ(json_integer_value(json_object_get(j, "default_topic_partitions")), 3);
    json_decref(j);
    /* dry_run validates only; remove restores the default. */
    CHECK_EQ(call("PUT", "/v1/cluster_config?dry_run=true",
                  "{\"upsert\": {\"default_topic_partitions\": 9}}", &j, NULL), 200);
    CHECK(json_is_true(json_object_get(j, "dry_run")));
    json_decref(j);
    CHECK_EQ(call("PUT", "/v1/cluster_config", "{\"remove\": [\"default_topic_partitions\"]}",
                  &j, NULL), 200);
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/cluster_config", NULL, &j, NULL), 200);
    CHECK_EQ(json_integer_value(json_object_get(j, "default_topic_partitions")), 1);
    json_decref(j);
    CHECK_EQ(call("PUT", "/v1/cluster_config",
                  "{\"remove\": [\"auto_create_topics_enabled\", \"max_connections\"]}", &j,
                  NULL), 200);
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/cluster_config/status", NULL, &j, NULL), 200);
    CHECK(json_is_false(json_object_get(json_array_get(j, 0), "restart")));
    json_decref(j);
    /* The schema describes every cluster key and no node key. */
    CHECK_EQ(call("GET", "/v1/cluster_config/schema", NULL, &j, NULL), 200);
    json_t *props = json_object_get(j, "properties");
    json_t *dtp = json_object_get(props, "default_topic_partitions");
    CHECK(!strcmp(json_string_value(json_object_get(dtp, "type")), "integer"));
    CHECK_EQ(json_integer_value(json_object_get(dtp, "minimum")), 1);
    CHECK(json_is_false(json_object_get(dtp, "needs_restart")));
    CHECK(!strcmp(json_string_value(json_object_get(dtp, "kafka_name")), "num.partitions"));
    CHECK(json_is_true(json_object_get(json_object_get(props, "max_connections"),
                                       "needs_restart")));
    json_t *ll = json_object_get(props, "log_level");
    CHECK(json_array_size(json_object_get(ll, "enum")) >= 5);
    CHECK(json_is_false(json_object_get(ll, "needs_restart")));
    CHECK(json_object_get(props, "node_id") == NULL);
    json_decref(j);
}

TEST(node_config_features)
{
    json_t *j;
    CHECK_EQ(call("GET", "/v1/node_config", NULL, &j, NULL), 200);
    CHECK_EQ(json_integer_value(json_object_get(j, "node_id")), 7);
    CHECK(json_is_string(json_object_get(j, "data_directory")));
    CHECK(!strcmp(json_string_value(json_object_get(j, "cluster_id")), "test-cluster"));
    CHECK(json_object_get(j, "default_topic_partitions") == NULL);
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/features", NULL, &j, NULL), 200);
    json_t *f = json_object_get(j, "features");
    CHECK(json_is_array(f) && json_array_size(f) > 0);
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(f, 0), "state")), "active"));
    json_decref(j);
}

TEST(log_levels)
{
    json_t *j;
    int saved = al_log_level;
    CHECK_EQ(call("PUT", "/v1/loggers", "{\"level\": \"debug\"}", &j, NULL), 200);
    CHECK_EQ(al_log_level, AL_LOG_DEBUG);
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/loggers", NULL, &j, NULL), 200);
    CHECK(!strcmp(json_string_value(json_object_get(j, "level")), "debug"));
    json_decref(j);
    CHECK_EQ(call("PUT", "/v1/loggers", "{\"level\": \"loud\"}", &j, NULL), 400);
    CHECK(strstr(json_string_value(json_object_get(j, "message")), "loud"));
    json_decref(j);
    CHECK_EQ(al_log_level, AL_LOG_DEBUG);
    CHECK_EQ(call("PUT", "/v1/config/log_level/storage?level=warn", NULL, &j, NULL), 200);
    CHECK_EQ(al_log_level, AL_LOG_WARN);
    json_decref(j);
    CHECK_EQ(call("PUT", "/v1/config/log_level/storage", NULL, &j, NULL), 400);
    json_decref(j);
    /* log_level through the cluster config applies at once and needs no restart. */
    CHECK_EQ(call("PUT", "/v1/cluster_config", "{\"upsert\": {\"log_level\": \"error\"}}", &j,
                  NULL), 200);
    CHECK_EQ(al_log_level, AL_LOG_ERROR);
    CHECK_EQ(json_array_size(json_object_get(j, "restart_required")), 0);
    json_decref(j);
    al_log_set_level(saved);
}

TEST(metrics_and_partitions)
{
    json_t *j;
    const char *text;
    CHECK_EQ(metrics_init(1), 0);
    metrics_bind(0);
    metrics_counter_add(metrics_local, M_KAFKA_REQUESTS, 5, "fetch");
    CHECK_EQ(call("GET", "/metrics", NULL, NULL, &text), 200);
    CHECK(strstr(text, "ailurus_kafka_requests_total{api=\"fetch\"} 5\n"));
    CHECK(strstr(text, "# TYPE ailurus_admin_requests_total counter"));
    CHECK_EQ(call("GET", "/public_metrics", NULL, NULL, &text), 200);
    CHECK(strstr(text, "ailurus_kafka_requests_total{api=\"fetch\"} 5\n"));
    CHECK(!strstr(text, "ailurus_admin_requests_total"));
    /* The admin's own answers are counted by status code. */
    CHECK_EQ(call("GET", "/metrics", NULL, NULL, &text), 200);
    CHECK(strstr(text, "ailurus_admin_requests_total{code=\"200\"} "));
    metrics_shutdown();
    /* Off a shard there is no data plane: the partition endpoints say so. */
    CHECK_EQ(call("GET", "/v1/partitions", NULL, &j, NULL), 503);
    CHECK(strstr(json_string_value(json_object_get(j, "message")), "not available"));
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/partitions/kafka/t/0", NULL, &j, NULL), 503);
    json_decref(j);
    CHECK_EQ(call("GET", "/v1/nothing", NULL, &j, NULL), 404);
    json_decref(j);
    admin_state_free(st);
    st = NULL;
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
