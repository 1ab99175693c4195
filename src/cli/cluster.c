/*
 * cluster.c — `ailurus cluster info|health|config get|set|edit`: cluster metadata over the Kafka
 * protocol (brokers, controller, cluster id, topic count), health from the admin API
 * (/v1/status/ready) plus Kafka reachability, and the cluster configuration through the admin
 * API (/v1/cluster_config; edit opens $EDITOR on a JSON file and PUTs what changed), and the
 * cluster operations of issue 7 through the admin API (src/cluster/cluster_opsapi.h): partition
 * moves, replica balancing, maintenance mode, decommission / recommission and their status.
 */
#include "cli/cli_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLUSTER_USAGE                                                                         \
    "usage: ailurus cluster <info|health|config> [args] [options]\n"                          \
    "  info                 brokers, controller, cluster id, topic count\n"                  \
    "  health               readiness, Kafka reachability, controller, nodes down\n"        \
    "  config get [KEY]     config set KEY=VALUE...     config edit (opens $EDITOR)\n"     \
    "  partitions move TOPIC PARTITION NODE[:CORE],...   new replica list (first = preferred)\n" \
    "  partitions balance   even out replicas and preferred leaders (moves)\n"               \
    "  partitions status    moves in progress (GET /v1/partitions/reconfigurations)\n"       \
    "  maintenance enable|disable|status ID   drain a node's leaderships / end it / progress\n" \
    "  decommission ID      move a node's replicas away, then remove it\n"                   \
    "  decommission-status ID    recommission ID"

static const char *const CLUSTER_USAGE_S = CLUSTER_USAGE;

static int cluster_info(cli_kafka *k)
{
    int rc = cli_kafka_metadata(k, NULL, 0);
    if (rc) return rc;
    const kafka_MetadataResponse *md = k->md;
    json_t *brokers = json_array();
    for (int i = 0; i < md->Brokers_count; i++) {
        const kafka_MetadataResponse_MetadataResponseBroker *b = &md->Brokers[i];
        json_array_append_new(brokers, json_pack("{s:i, s:s, s:i, s:s?, s:b}", "node_id",
                                                 b->NodeId, "host", cli_strdup_k(k, b->Host),
                                                 "port", b->Port, "rack",
                                                 b->Rack.len >= 0 ? cli_strdup_k(k, b->Rack)
                                                                  : NULL,
                                                 "controller",
                                                 b->NodeId == md->ControllerId));
    }
    int parts = 0;
    for (int i = 0; i < md->Topics_count; i++) parts += md->Topics[i].Partitions_count;
    json_t *o = json_pack("{s:s?, s:i, s:i, s:i, s:o}", "cluster_id",
                          md->ClusterId.len >= 0 ? cli_strdup_k(k, md->ClusterId) : NULL,
                          "controller", md->ControllerId, "topics", md->Topics_count,
                          "partitions", parts, "brokers", brokers);
    if (k->o->format == CLI_FMT_JSON) {
        cli_print_object(k->o, o);
    } else {
        printf("Cluster id: %s\nController: %d\nTopics: %d  Partitions: %d\n\n",
               json_string_value(json_object_get(o, "cluster_id")) ?: "-", md->ControllerId,
               md->Topics_count, parts);
        static const char *const cols[] = {"node_id", "host", "port", "rack", "controller",
                                           NULL};
        cli_print_rows(k->o, brokers, cols);
    }
    json_decref(o);
    return CLI_OK;
}

static int cluster_health(const cli_opts *o)
{
    cli_kafka k;
    int krc = cli_kafka_open(&k, o);
    if (!krc) krc = cli_kafka_metadata(&k, NULL, 0);
    int brokers = krc ? 0 : k.md->Brokers_count;
    cli_kafka_close(&k);
    int status = 0;
    char *body = NULL;
    int hrc = cli_http(o, "GET", "/v1/status/ready", NULL, &status, &body);
    bool ready = !hrc && status == 200;
    /* The cluster's view (controller, nodes down); a single node answers for itself. */
    int ostatus = 0;
    char *obody = NULL;
    json_t *ov = NULL;
    if (!hrc && !cli_http(o, "GET", "/v1/cluster/health_overview", NULL, &ostatus, &obody) &&
        ostatus == 200)
        ov = json_loads(obody, 0, NULL);
    bool cluster_ok = !ov || json_is_true(json_object_get(ov, "is_healthy"));
    json_t *j = json_pack("{s:b, s:i, s:b, s:s?, s:b}", "kafka_reachable", krc == 0, "brokers",
                          brokers, "admin_ready", ready, "admin_status",
                          hrc ? "unreachable" : body, "healthy",
                          krc == 0 && ready && cluster_ok);
    if (ov) {
        json_object_set(j, "controller_id", json_object_get(ov, "controller_id"));
        json_object_set(j, "nodes_down", json_object_get(ov, "nodes_down"));
        json_decref(ov);
    }
    free(obody);
    cli_print_object(o, j);
    json_decref(j);
    free(body);
    if (krc == 0 && ready && !cluster_ok) {
        fprintf(stderr, "ailurus: the cluster is not healthy (no controller, or nodes down)\n");
        return CLI_FAILED;
    }
    if (krc == 0 && ready) return CLI_OK;
    if (krc == CLI_USAGE || hrc == CLI_USAGE) return CLI_USAGE;
    if (krc == CLI_UNREACHABLE || hrc == CLI_UNREACHABLE) return CLI_UNREACHABLE;
    if (!hrc && status != 200)
        fprintf(stderr, "ailurus: the broker is not ready (admin API answered %d): check its "
                        "log\n", status);
    return CLI_FAILED;
}

/* GETs /v1/cluster_config into *out. */
static int config_fetch(const cli_opts *o, json_t **out)
{
    int status;
    char *body;
    int rc = cli_http(o, "GET", "/v1/cluster_config", NULL, &status, &body);
    if (rc) return rc;
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);
    if (status != 200 || !j || !json_is_object(j)) {
        rc = cli_err(CLI_FAILED, "admin API answered %d to GET /v1/cluster_config: %.200s",
                     status, body);
        json_decref(j);
        free(body);
        return rc;
    }
    free(body);
    *out = j;
    return CLI_OK;
}

/* PUTs {"upsert": ups, "remove": rem} and prints the result. Steals ups and rem. */
static int config_put(const cli_opts *o, json_t *ups, json_t *rem)
{
    json_t *req = json_pack("{s:o, s:o}", "upsert", ups, "remove", rem);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    int status;
    char *body;
    int rc = cli_http(o, "PUT", "/v1/cluster_config", text, &status, &body);
    free(text);
    if (rc) return rc;
    json_t *j = json_loads(body, 0, NULL);
    if (status != 200) {
        const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
        rc = cli_err(CLI_FAILED, "the broker refused the change (HTTP %d): %s", status,
                     msg ? msg : body);
        rc = status == 400 ? CLI_FAILED : rc;
    } else {
        if (j) cli_print_object(o, j);
    }
    json_decref(j);
    free(body);
    return rc;
}

/* A command-line value as JSON: integer, true/false, else a string. */
static json_t *value_json(const char *v)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*v && !*end && !errno) return json_integer(n);
    if (!strcmp(v, "true")) return json_true();
    if (!strcmp(v, "false")) return json_false();
    return json_string(v);
}

static int config_edit(const cli_opts *o)
{
    json_t *cur;
    int rc = config_fetch(o, &cur);
    if (rc) return rc;
    char path[] = "/tmp/ailurus-cluster-config-XXXXXX.json";
    int fd = mkstemps(path, 5);
    if (fd < 0) {
        json_decref(cur);
        return cli_err(CLI_FAILED, "cannot create a temporary file: %s", strerror(errno));
    }
    FILE *f = fdopen(fd, "w");
    json_dumpf(cur, f, JSON_INDENT(2) | JSON_SORT_KEYS);
    fputc('\n', f);
    fclose(f);
    const char *ed = getenv("VISUAL");
    if (!ed || !*ed) ed = getenv("EDITOR");
    if (!ed || !*ed) ed = "vi";
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s '%s'", ed, path);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) {
        unlink(path);
        json_decref(cur);
        return cli_err(CLI_FAILED, "editor '%s' failed (exit %d); nothing changed", ed,
                       st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st));
    }
    json_error_t je;
    json_t *next = json_load_file(path, 0, &je);
    if (!next || !json_is_object(next)) {
        json_decref(next);
        json_decref(cur);
        rc = cli_err(CLI_FAILED, "the edited file is not a JSON object (line %d: %s); it is "
                     "kept at %s", je.line, je.text, path);
        return rc;
    }
    unlink(path);
    json_t *ups = json_object(), *rem = json_array();
    const char *key;
    json_t *v;
    json_object_foreach(next, key, v) {
        if (!json_equal(v, json_object_get(cur, key)))
            json_object_set(ups, key, v);
    }
    json_object_foreach(cur, key, v) {
        if (!json_object_get(next, key)) json_array_append_new(rem, json_string(key));
    }
    json_decref(cur);
    json_decref(next);
    if (!json_object_size(ups) && !json_array_size(rem)) {
        json_decref(ups);
        json_decref(rem);
        fprintf(stderr, "ailurus: no changes\n");
        return CLI_OK;
    }
    return config_put(o, ups, rem);
}

static int cluster_config(const cli_opts *o, const char **pos, int npos)
{
    if (npos < 1) return cli_err(CLI_USAGE, "cluster config needs get, set or edit");
    const char *op = pos[0];
    if (!strcmp(op, "get")) {
        if (npos > 2) return cli_err(CLI_USAGE, "config get takes at most one key");
        json_t *cur;
        int rc = config_fetch(o, &cur);
        if (rc) return rc;
        if (npos == 2) {
            json_t *v = json_object_get(cur, pos[1]);
            if (!v) {
                json_decref(cur);
                return cli_err(CLI_FAILED, "unknown cluster config key '%s' (see `ailurus "
                               "cluster config get`)", pos[1]);
            }
            json_t *one = json_pack("{s:O}", pos[1], v);
            cli_print_object(o, one);
            json_decref(one);
        } else {
            cli_print_object(o, cur);
        }
        json_decref(cur);
        return CLI_OK;
    }
    if (!strcmp(op, "set")) {
        if (npos < 2) return cli_err(CLI_USAGE, "config set needs KEY=VALUE");
        json_t *ups = json_object();
        for (int i = 1; i < npos; i++) {
            const char *eq = strchr(pos[i], '=');
            if (!eq || eq == pos[i]) {
                json_decref(ups);
                return cli_err(CLI_USAGE, "config set expects KEY=VALUE, got '%s'", pos[i]);
            }
            char key[256];
            snprintf(key, sizeof(key), "%.*s", (int)(eq - pos[i]), pos[i]);
            json_object_set_new(ups, key, value_json(eq + 1));
        }
        return config_put(o, ups, json_array());
    }
    if (!strcmp(op, "edit")) {
        if (npos != 1) return cli_err(CLI_USAGE, "config edit takes no arguments");
        return config_edit(o);
    }
    return cli_err(CLI_USAGE, "unknown config operation '%s' (get, set or edit)", op);
}

/* Sends one admin API request and prints its JSON answer; an error status prints the
 * broker's message. */
static int ops_http(const cli_opts *o, const char *method, const char *path, const char *body)
{
    int status;
    char *resp = NULL;
    int rc = cli_http(o, method, path, body, &status, &resp);
    if (rc) return rc;
    json_t *j = json_loads(resp ? resp : "", JSON_DECODE_ANY, NULL);
    if (status != 200) {
        const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
        rc = cli_err(CLI_FAILED, "%s %s: HTTP %d: %s", method, path, status,
                     msg ? msg : (resp ? resp : ""));
    } else if (j && json_is_array(j)) {
        json_t *wrap = json_pack("{s:O}", "items", j);
        cli_print_object(o, wrap);
        json_decref(wrap);
    } else if (j) {
        cli_print_object(o, j);
    }
    json_decref(j);
    free(resp);
    return rc;
}

/* Parses a node id argument. */
static int node_arg(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < 0 || v > INT32_MAX)
        return cli_err(CLI_USAGE, "'%s' is not a node id", s);
    *out = v;
    return CLI_OK;
}

static int cluster_partitions(const cli_opts *o, const char **pos, int npos)
{
    if (npos < 1) return cli_err(CLI_USAGE, "cluster partitions needs move, balance or status");
    if (!strcmp(pos[0], "balance") && npos == 1)
        return ops_http(o, "POST", "/v1/partitions/rebalance", "{}");
    if (!strcmp(pos[0], "status") && npos == 1)
        return ops_http(o, "GET", "/v1/partitions/reconfigurations", NULL);
    if (strcmp(pos[0], "move") || npos != 4)
        return cli_err(CLI_USAGE, "usage: cluster partitions move TOPIC PARTITION "
                                  "NODE[:CORE],...  |  balance  |  status");
    json_t *list = json_array();
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", pos[3]);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (colon) *colon = 0;
        long node, core = -1;
        int rc = node_arg(tok, &node);
        if (!rc && colon) rc = node_arg(colon + 1, &core);
        if (rc) {
            json_decref(list);
            return rc;
        }
        json_t *e = json_pack("{s:I}", "node_id", (json_int_t)node);
        if (core >= 0) json_object_set_new(e, "core", json_integer(core));
        json_array_append_new(list, e);
    }
    char *body = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    char path[512];
    int rc;
    if (snprintf(path, sizeof(path), "/v1/partitions/kafka/%s/%s/replicas", pos[1], pos[2]) >=
        (int)sizeof(path))
        rc = cli_err(CLI_USAGE, "topic name too long");
    else
        rc = ops_http(o, "POST", path, body);
    free(body);
    return rc;
}

static int cluster_node_op(const cli_opts *o, const char *sub, const char **pos, int npos)
{
    bool maint = !strcmp(sub, "maintenance");
    if (npos != (maint ? 2 : 1))
        return cli_err(CLI_USAGE, maint ? "usage: cluster maintenance enable|disable|status ID"
                                        : "usage: cluster %s ID", sub);
    long id;
    int rc = node_arg(pos[maint ? 1 : 0], &id);
    if (rc) return rc;
    char path[128];
    if (maint) {
        snprintf(path, sizeof(path), "/v1/brokers/%ld/maintenance", id);
        if (!strcmp(pos[0], "enable")) return ops_http(o, "PUT", path, NULL);
        if (!strcmp(pos[0], "disable")) return ops_http(o, "DELETE", path, NULL);
        if (!strcmp(pos[0], "status")) return ops_http(o, "GET", path, NULL);
        return cli_err(CLI_USAGE, "maintenance takes enable, disable or status, not '%s'",
                       pos[0]);
    }
    if (!strcmp(sub, "recommission")) {
        snprintf(path, sizeof(path), "/v1/brokers/%ld/recommission", id);
        return ops_http(o, "PUT", path, NULL);
    }
    snprintf(path, sizeof(path), "/v1/brokers/%ld/decommission", id);
    return ops_http(o, strcmp(sub, "decommission") ? "GET" : "PUT", path, NULL);
}

int cmd_cluster(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout, "%s\n", CLUSTER_USAGE_S);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *sub = argv[1];
    static const char *const subs[] = {"info", "health", "config", "partitions", "maintenance",
                                       "decommission", "decommission-status", "recommission",
                                       NULL};
    bool known = false;
    for (int i = 0; subs[i]; i++) known |= !strcmp(sub, subs[i]);
    if (!known) {
        cli_err(CLI_USAGE, "unknown cluster subcommand '%s'", sub);
        fprintf(stderr, "%s\n", CLUSTER_USAGE_S);
        return CLI_USAGE;
    }
    cli_opts o;
    cli_opts_init(&o);
    cli_flag flags[] = {CLI_GLOBAL_FLAGS(&o), {0}};
    const char *pos[64];
    int npos;
    int rc = cli_flags_parse(flags, argc - 2, argv + 2, pos, &npos, 64, &o, CLUSTER_USAGE_S);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!strcmp(sub, "partitions")) return cluster_partitions(&o, pos, npos);
    if (!strcmp(sub, "maintenance") || !strcmp(sub, "decommission") ||
        !strcmp(sub, "decommission-status") || !strcmp(sub, "recommission"))
        return cluster_node_op(&o, sub, pos, npos);
    if (strcmp(sub, "config") && npos)
        return cli_err(CLI_USAGE, "cluster %s takes no arguments", sub);
    if (!strcmp(sub, "health")) return cluster_health(&o);
    if (!strcmp(sub, "config")) return cluster_config(&o, pos, npos);
    cli_kafka k;
    rc = cli_kafka_open(&k, &o);
    if (!rc) rc = cluster_info(&k);
    cli_kafka_close(&k);
    return rc;
}
