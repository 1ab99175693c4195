/*
 * config.c — the configuration table and its loaders (defaults, --dev, YAML, environment,
 * flags). See config.h for the precedence and the error contract.
 */
#include "config/config.h"

#include "base/log.h"
#include "reactor/io.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>
#include <jansson.h>
#include <yaml.h>

#define KIB (1024LL)
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)

static const char *const log_levels[] = {"trace", "debug", "info", "warn", "error", "off", NULL};
/* Kafka's spellings (config_format prints them back as Kafka shows them). */
static const char *const cleanup_policies[] = {"delete", "compact", "compact,delete", NULL};
static const char *const timestamp_types[] = {"CreateTime", "LogAppendTime", NULL};

#define OFF(f) offsetof(al_config, f)
#define SZ(f) sizeof(((al_config *)0)->f)

const struct config_key config_keys[] = {
    {"node_id", CONFIG_INT, OFF(node_id), 0, "0", 0, INT32_MAX, NULL,
     "This broker's id in the cluster (Metadata broker list, controller id).", false, "node.id"},
    {"data_directory", CONFIG_STRING, OFF(data_directory), SZ(data_directory), "./data", 0, 0,
     NULL, "Directory for logs and metadata; created at start if missing.", false, "log.dirs"},
    {"kafka_addr", CONFIG_ADDR, OFF(kafka_addr), 0, "0.0.0.0:9092", 0, 0, NULL,
     "Kafka API listen address HOST:PORT (every shard listens on it with SO_REUSEPORT). "
     "Port 0 picks a free port (the ready log line shows it). --dev uses 127.0.0.1:9092."},
    {"advertised_kafka_addr", CONFIG_ADDR, OFF(advertised_kafka_addr), 0, "", 0, 0, NULL,
     "Address given to clients in Metadata. Empty: kafka_addr, with 0.0.0.0 replaced by "
     "127.0.0.1 (set it when clients connect from other hosts). Port 0: the bound port."},
    {"admin_addr", CONFIG_ADDR, OFF(admin_addr), 0, "0.0.0.0:9644", 0, 0, NULL,
     "Admin HTTP API (and /metrics) listen address, served by shard 0. Port 0: any free "
     "port (logged). --dev uses 127.0.0.1:9644."},
    {"rpc_addr", CONFIG_ADDR, OFF(rpc_addr), 0, "0.0.0.0:33145", 0, 0, NULL,
     "Internal RPC listen address HOST:PORT (Raft and controller traffic between nodes), "
     "served by shard 0. Port 0: any free port (logged). --dev uses 127.0.0.1:33145."},
    {"advertised_rpc_addr", CONFIG_ADDR, OFF(advertised_rpc_addr), 0, "", 0, 0, NULL,
     "Address other nodes use to reach this node's RPC port. Empty: rpc_addr, with 0.0.0.0 "
     "replaced by 127.0.0.1. Port 0: the bound port."},
    {"seed_servers", CONFIG_STRING, OFF(seed_servers), SZ(seed_servers), "", 0, 0, NULL,
     "Comma-separated HOST:PORT RPC addresses of nodes of the cluster to join. Empty: this "
     "node forms a new cluster on its own (or rejoins the one recorded in its data directory)."},
    {"smp", CONFIG_INT, OFF(smp), 0, "0", 0, 256, NULL,
     "Number of shards (threads, one per core). 0: one per online CPU. --dev uses 1."},
    {"overprovisioned", CONFIG_BOOL, OFF(overprovisioned), 0, "false", 0, 0, NULL,
     "Do not pin each shard's thread to its own CPU (as Redpanda's --overprovisioned): for "
     "machines shared with other busy processes, where a pinned shard cannot move off a CPU "
     "that another process is using and waits for it."},
    {"memory", CONFIG_BYTES, OFF(memory), 0, "0", 0, 1024 * GIB, NULL,
     "Memory budget for the broker. 0: half of physical memory. --dev uses 1G."},
    {"heap_trim_threshold", CONFIG_BYTES, OFF(heap_trim_threshold), 0, "64M", 0, 1024 * GIB, NULL,
     "Freed heap memory the broker keeps before giving it back to the system. Every 5 s a "
     "look (off the shards' threads) measures the freed memory the allocator holds and the "
     "resident size; when the freed memory is at least this much at two looks in a row and "
     "the resident size held still between them (left over, not in use by a running load), "
     "all of it is released (malloc_trim), so the resident memory falls back after a burst. "
     "0: never."},
    {"batch_cache_idle_ms", CONFIG_INT, OFF(batch_cache_idle_ms), 0, "10000", 0, INT32_MAX, NULL,
     "A partition nobody appended to or read from for this long drops its batches from its "
     "shard's batch cache (checked at each storage housekeeping: every 5 s, 2 s in cluster "
     "mode), so the memory the cache holds follows the partitions in use instead of keeping "
     "a finished burst's batches (up to the cache's size) until newer ones evict them; the "
     "freed memory then goes back to the system (heap_trim_threshold). A later read of them "
     "comes from disk. 0: never (batches leave only by eviction)."},
    {"log_level", CONFIG_ENUM, OFF(log_level), 0, "info", 0, 0, log_levels,
     "Log threshold.", true},
    {"kafka_max_frame_bytes", CONFIG_BYTES, OFF(kafka_max_frame_bytes), 0, "100M", 64, 2 * GIB - 1,
     NULL,
     "Largest Kafka request frame accepted (Kafka's socket.request.max.bytes); a larger size "
     "prefix closes the connection.", false, "socket.request.max.bytes"},
    {"max_connections", CONFIG_INT, OFF(max_connections), 0, "10000", 1, 1000000, NULL,
     "Most client connections open at once on this broker (all shards); more are closed at "
     "accept."},
    {"connections_max_idle_ms", CONFIG_INT, OFF(connections_max_idle_ms), 0, "600000", 0,
     INT32_MAX, NULL,
     "Close a connection with no request or response for this long (Kafka's "
     "connections.max.idle.ms). 0: never.", false, "connections.max.idle.ms"},
    {"controlled_shutdown_timeout_ms", CONFIG_INT, OFF(controlled_shutdown_timeout_ms), 0,
     "5000", 0, 600000, NULL,
     "Cluster mode: on SIGTERM/SIGINT, wait up to this long for this node's Raft leaderships "
     "(partitions and controller) to move to other replicas before stopping (a second signal "
     "stops at once). 0: stop at once."},
    {"kafka_conn_max_inflight_requests", CONFIG_INT, OFF(kafka_conn_max_inflight_requests), 0,
     "100", 1, 100000, NULL,
     "Requests read from one connection and not yet answered before the broker stops reading "
     "from it (back-pressure)."},
    {"kafka_conn_max_inflight_bytes", CONFIG_BYTES, OFF(kafka_conn_max_inflight_bytes), 0, "64M",
     4 * KIB, 16 * GIB, NULL,
     "Bytes of requests and queued responses held for one connection before the broker stops "
     "reading from it. One request larger than this is still accepted when it is alone."},
    {"kafka_shard_max_inflight_bytes", CONFIG_BYTES, OFF(kafka_shard_max_inflight_bytes), 0,
     "512M", 64 * KIB, 256 * GIB, NULL,
     "Bytes of requests and queued responses held by all connections of one shard before the "
     "shard stops reading from its connections."},
    {"auto_create_topics_enabled", CONFIG_BOOL, OFF(auto_create_topics_enabled), 0, "false", 0, 0,
     NULL, "Create a topic when a client asks for one that does not exist. --dev turns it on.",
     true, "auto.create.topics.enable"},
    {"default_topic_partitions", CONFIG_INT, OFF(default_topic_partitions), 0, "1", 1, 100000,
     NULL, "Partitions of an auto-created topic or a CreateTopics request that gives -1.", true,
     "num.partitions"},
    {"default_topic_replications", CONFIG_INT, OFF(default_topic_replications), 0, "1", 1, 15,
     NULL, "Replication factor of an auto-created topic or a CreateTopics request that gives -1.",
     true, "default.replication.factor"},
    /* Cluster-wide defaults of topic configs (a topic's own override wins). */
    {"log_retention_ms", CONFIG_INT, OFF(log_retention_ms), 0, "604800000", -1, INT64_MAX, NULL,
     "Default retention.ms of topics: how long a segment is kept before it is deleted (-1: "
     "forever).", true, "log.retention.ms"},
    {"retention_bytes", CONFIG_INT, OFF(retention_bytes), 0, "-1", -1, INT64_MAX, NULL,
     "Default retention.bytes of topics: largest partition size before old segments are "
     "deleted (-1: no limit).", true, "log.retention.bytes"},
    {"log_segment_size", CONFIG_BYTES, OFF(log_segment_size), 0, "134217728", 4 * KIB,
     2 * GIB - 1, NULL, "Default segment.bytes of topics: segment size at which a new one is "
     "rolled. 128 MiB as in Redpanda, not Kafka's 1 GiB: opening a log (start, config change) "
     "checks every batch of its last segment, about 26 s for a full 1 GiB one here.", true,
     "log.segment.bytes"},
    {"log_segment_ms", CONFIG_INT, OFF(log_segment_ms), 0, "604800000", 1, INT64_MAX, NULL,
     "Default segment.ms of topics: age at which a segment is rolled even if not full.", true,
     "log.roll.ms"},
    {"log_cleanup_policy", CONFIG_ENUM, OFF(log_cleanup_policy), 0, "delete", 0, 0,
     cleanup_policies, "Default cleanup.policy of topics: delete old segments by retention, "
     "compact them by key, or both.", true, "log.cleanup.policy"},
    {"kafka_batch_max_bytes", CONFIG_INT, OFF(kafka_batch_max_bytes), 0, "1048588", 0, INT32_MAX,
     NULL, "Default max.message.bytes of topics: largest record batch a Produce may append.",
     true, "message.max.bytes"},
    {"log_message_timestamp_type", CONFIG_ENUM, OFF(log_message_timestamp_type), 0, "CreateTime",
     0, 0, timestamp_types, "Default message.timestamp.type of topics: CreateTime keeps the "
     "producer's timestamps, LogAppendTime stamps batches with the broker's clock.", true,
     "log.message.timestamp.type"},
    {"tombstone_retention_ms", CONFIG_INT, OFF(tombstone_retention_ms), 0, "86400000", 0,
     INT64_MAX, NULL, "Default delete.retention.ms of topics: how long tombstones are kept in a "
     "compacted topic.", true, "log.cleaner.delete.retention.ms"},
    {"min_compaction_lag_ms", CONFIG_INT, OFF(min_compaction_lag_ms), 0, "0", 0, INT64_MAX, NULL,
     "Default min.compaction.lag.ms of topics (stored, validated and reported; the compactor "
     "does not apply it yet).", true, "log.cleaner.min.compaction.lag.ms"},
    {"max_compaction_lag_ms", CONFIG_INT, OFF(max_compaction_lag_ms), 0, "9223372036854775807",
     1, INT64_MAX, NULL, "Default max.compaction.lag.ms of topics (stored, validated and "
     "reported; the compactor does not apply it yet).", true,
     "log.cleaner.max.compaction.lag.ms"},
    {"cluster_id", CONFIG_STRING, OFF(cluster_id), SZ(cluster_id), "", 0, 0, NULL,
     "Cluster id reported in Metadata. Empty: generated at first start and kept in "
     "<data_directory>/cluster_id."},
    {"developer_mode", CONFIG_BOOL, OFF(developer_mode), 0, "false", 0, 0, NULL,
     "Set by --dev. Durability is unchanged (fsync stays on); only sizes and defaults differ."},
};
const size_t config_key_count = AL_ARRAY_SIZE(config_keys);

_Static_assert(AL_ARRAY_SIZE(config_keys) <= CONFIG_KEYS_MAX, "raise CONFIG_KEYS_MAX");

AL_PRINTF(3, 4) static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Compares key names with '-' == '_' and ignoring case. */
static bool key_eq(const char *a, const char *b)
{
    for (size_t i = 0; i < 256; i++) {
        char x = a[i] == '-' ? '_' : (char)tolower((unsigned char)a[i]);
        char y = b[i] == '-' ? '_' : (char)tolower((unsigned char)b[i]);
        if (x != y) return false;
        if (!x) return true;
    }
    return false;
}

const struct config_key *config_find(const char *name)
{
    for (size_t i = 0; i < config_key_count; i++)
        if (key_eq(config_keys[i].name, name)) return &config_keys[i];
    return NULL;
}

const struct config_key *config_find_kafka(const char *kafka_name)
{
    if (!kafka_name) return NULL;
    if (!strcmp(kafka_name, "broker.id")) kafka_name = "node.id"; /* the same id in KRaft */
    for (size_t i = 0; i < config_key_count; i++)
        if (config_keys[i].kafka && !strcmp(config_keys[i].kafka, kafka_name))
            return &config_keys[i];
    return NULL;
}

/* Parses a decimal integer (optional sign) that must fill the whole string. */
static int parse_i64(const char *s, int64_t *out)
{
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return AL_EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s) return AL_EINVAL;
    while (isspace((unsigned char)*end)) end++;
    if (*end) return AL_EINVAL;
    *out = v;
    return 0;
}

/* Parses an integer with an optional binary suffix (K, KB, KiB, M, ..., G, ..., T, ...). */
static int parse_bytes(const char *s, int64_t *out)
{
    while (isspace((unsigned char)*s)) s++;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0) return AL_EINVAL;
    while (isspace((unsigned char)*end)) end++;
    int64_t mult = 1;
    if (*end) {
        char u = (char)toupper((unsigned char)*end);
        if (u == 'K') mult = KIB;
        else if (u == 'M') mult = MIB;
        else if (u == 'G') mult = GIB;
        else if (u == 'T') mult = 1024 * GIB;
        else if (u == 'B' && !end[1]) mult = 1;
        else return AL_EINVAL;
        if (u != 'B') {
            const char *rest = end + 1;
            if (strcasecmp(rest, "") && strcasecmp(rest, "b") && strcasecmp(rest, "ib"))
                return AL_EINVAL;
        }
    }
    if (v > INT64_MAX / mult) return AL_EINVAL;
    *out = v * mult;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < AL_ARRAY_SIZE(yes); i++) {
        if (!strcasecmp(s, yes[i])) return *out = true, 0;
        if (!strcasecmp(s, no[i])) return *out = false, 0;
    }
    return AL_EINVAL;
}

/* HOST:PORT, [V6]:PORT. An empty string is the unset address (host "", port 0). */
static int parse_addr(const char *s, struct config_addr *out)
{
    struct config_addr a = {{0}, 0};
    if (!*s) {
        *out = a;
        return 0;
    }
    const char *colon;
    const char *host = s;
    size_t hlen;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return AL_EINVAL;
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return AL_EINVAL;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof(a.host)) return AL_EINVAL;
    for (size_t i = 0; i < hlen; i++)
        if (isspace((unsigned char)host[i]) || host[i] == '/') return AL_EINVAL;
    int64_t port;
    if (parse_i64(colon + 1, &port) || port < 0 || port > 65535) return AL_EINVAL;
    memcpy(a.host, host, hlen);
    a.host[hlen] = 0;
    a.port = (uint16_t)port;
    *out = a;
    return 0;
}

static void describe_accepted(const struct config_key *k, char *buf, size_t len)
{
    switch (k->type) {
    case CONFIG_INT:
        snprintf(buf, len, "an integer in [%" PRId64 ", %" PRId64 "]", k->min, k->max);
        break;
    case CONFIG_BYTES:
        snprintf(buf, len,
                 "a byte size in [%" PRId64 ", %" PRId64 "] (suffixes K, M, G, T = powers of "
                 "1024)",
                 k->min, k->max);
        break;
    case CONFIG_BOOL: snprintf(buf, len, "true or false"); break;
    case CONFIG_STRING: snprintf(buf, len, "a string of at most %zu bytes", k->size - 1); break;
    case CONFIG_ENUM: {
        size_t n = (size_t)snprintf(buf, len, "one of");
        for (size_t i = 0; k->allowed[i] && n < len; i++)
            n += (size_t)snprintf(buf + n, len - n, "%s %s", i ? "," : "", k->allowed[i]);
        break;
    }
    case CONFIG_ADDR:
        snprintf(buf, len, "HOST:PORT with PORT in [0, 65535] (0: any free port)");
        break;
    }
}

/* log_cleanup_policy: a Kafka list of delete/compact in any order, e.g. "delete,compact".
 * Returns the index into cleanup_policies or -1. */
static int64_t parse_cleanup(const char *value)
{
    unsigned mask = 0;
    const char *p = value;
    for (int guard = 0; guard < 16; guard++) {
        while (*p == ' ' || *p == '\t') p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && (p[m - 1] == ' ' || p[m - 1] == '\t')) m--;
        if (m == 6 && !strncasecmp(p, "delete", 6)) mask |= 1;
        else if (m == 7 && !strncasecmp(p, "compact", 7)) mask |= 2;
        else return -1;
        if (!p[n]) break;
        p += n + 1;
    }
    return mask == 0 ? -1 : (int64_t)mask - 1; /* 1 delete, 2 compact, 3 both */
}

/* Parses value for k into a scratch copy of the field, then stores. */
static int set_one(al_config *c, const struct config_key *k, const char *value)
{
    void *field = (char *)c + k->offset;
    int64_t v;
    switch (k->type) {
    case CONFIG_INT:
        if (parse_i64(value, &v) || v < k->min || v > k->max) return AL_EINVAL;
        *(int64_t *)field = v;
        return 0;
    case CONFIG_BYTES:
        if (parse_bytes(value, &v) || v < k->min || v > k->max) return AL_EINVAL;
        *(int64_t *)field = v;
        return 0;
    case CONFIG_BOOL: return parse_bool(value, (bool *)field);
    case CONFIG_STRING:
        if (strlen(value) >= k->size) return AL_EINVAL;
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case CONFIG_ENUM:
        if (k->allowed == cleanup_policies) {
            v = parse_cleanup(value);
            if (v < 0) return AL_EINVAL;
            *(int64_t *)field = v;
            return 0;
        }
        for (int64_t i = 0; k->allowed[i]; i++) {
            if (!strcasecmp(value, k->allowed[i])) {
                *(int64_t *)field = i;
                return 0;
            }
        }
        if (k->offset == OFF(log_level) && !strcasecmp(value, "warning")) {
            *(int64_t *)field = AL_LOG_WARN;
            return 0;
        }
        return AL_EINVAL;
    case CONFIG_ADDR: return parse_addr(value, (struct config_addr *)field);
    }
    return AL_EINVAL;
}

int config_set(al_config *c, const char *key, const char *value, enum config_source src,
               char *err, size_t errlen)
{
    const struct config_key *k = config_find(key);
    if (!k) {
        set_err(err, errlen, "unknown configuration key '%s' (see 'ailurus config docs')", key);
        return AL_ENOTFOUND;
    }
    if (k->type == CONFIG_ADDR && !*value && k->offset != OFF(advertised_kafka_addr) &&
        k->offset != OFF(advertised_rpc_addr)) {
        set_err(err, errlen, "invalid value '' for '%s': expected HOST:PORT", k->name);
        return AL_EINVAL;
    }
    if (set_one(c, k, value)) {
        char acc[256];
        describe_accepted(k, acc, sizeof(acc));
        set_err(err, errlen, "invalid value '%s' for '%s': expected %s", value, k->name, acc);
        return AL_EINVAL;
    }
    c->source[k - config_keys] = (uint8_t)src;
    return 0;
}

void config_init(al_config *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < config_key_count; i++) {
        int rc = set_one(c, &config_keys[i], config_keys[i].def);
        AL_ASSERT(rc == 0); /* a bad default is a programming error */
        c->source[i] = CONFIG_SRC_DEFAULT;
    }
}

void config_apply_dev(al_config *c)
{
    static const char *const dev[][2] = {
        {"developer_mode", "true"},  {"smp", "1"}, {"kafka_addr", "127.0.0.1:9092"},
        {"memory", "1G"},            {"auto_create_topics_enabled", "true"},
        {"kafka_shard_max_inflight_bytes", "256M"}, {"admin_addr", "127.0.0.1:9644"},
        {"rpc_addr", "127.0.0.1:33145"},
    };
    for (size_t i = 0; i < AL_ARRAY_SIZE(dev); i++) {
        int rc = config_set(c, dev[i][0], dev[i][1], CONFIG_SRC_DEV, NULL, 0);
        AL_ASSERT(rc == 0);
    }
}

/* ---- YAML ---- */

/* Reads the events of one flat mapping of scalars and applies them. *depth is 0 at the top. */
static int yaml_apply_mapping(al_config *c, yaml_parser_t *p, const char *path, int depth,
                              char *err, size_t errlen)
{
    char key[256];
    for (int guard = 0; guard < 100000; guard++) {
        yaml_event_t ev;
        if (!yaml_parser_parse(p, &ev)) {
            set_err(err, errlen, "%s:%zu: YAML error: %s", path, p->problem_mark.line + 1,
                    p->problem ? p->problem : "?");
            return AL_EMALFORMED;
        }
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            set_err(err, errlen, "%s:%zu: expected a key", path, ev.start_mark.line + 1);
            yaml_event_delete(&ev);
            return AL_EMALFORMED;
        }
        snprintf(key, sizeof(key), "%s", (const char *)ev.data.scalar.value);
        size_t line = ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (!yaml_parser_parse(p, &ev)) {
            set_err(err, errlen, "%s:%zu: YAML error: %s", path, p->problem_mark.line + 1,
                    p->problem ? p->problem : "?");
            return AL_EMALFORMED;
        }
        int rc = 0;
        if (ev.type == YAML_MAPPING_START_EVENT && depth == 0 && !strcmp(key, "ailurus")) {
            yaml_event_delete(&ev);
            rc = yaml_apply_mapping(c, p, path, depth + 1, err, errlen);
            if (rc) return rc;
            continue;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            set_err(err, errlen, "%s:%zu: value of '%s' must be a scalar", path, line, key);
            yaml_event_delete(&ev);
            return AL_EMALFORMED;
        }
        char msg[512];
        rc = config_set(c, key, (const char *)ev.data.scalar.value, CONFIG_SRC_FILE, msg,
                        sizeof(msg));
        yaml_event_delete(&ev);
        if (rc) {
            set_err(err, errlen, "%s:%zu: %s", path, line, msg);
            return rc;
        }
    }
    set_err(err, errlen, "%s: too many keys", path);
    return AL_ETOOLARGE;
}

int config_load_yaml(al_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        set_err(err, errlen, "cannot open config file %s: %s", path, strerror(e));
        return -e;
    }
    yaml_parser_t p;
    int rc = 0;
    if (!yaml_parser_initialize(&p)) {
        fclose(f);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    yaml_parser_set_input_file(&p, f);
    bool in_doc = false;
    /* Stream start, document start, then a mapping (or an empty document). */
    for (int guard = 0; guard < 16; guard++) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            set_err(err, errlen, "%s:%zu: YAML error: %s", path, p.problem_mark.line + 1,
                    p.problem ? p.problem : "?");
            rc = AL_EMALFORMED;
            goto out;
        }
        yaml_event_type_t t = ev.type;
        size_t line = ev.start_mark.line + 1;
        bool empty_scalar = t == YAML_SCALAR_EVENT && ev.data.scalar.length == 0;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_START_EVENT) continue;
        if (t == YAML_DOCUMENT_START_EVENT) {
            in_doc = true;
            continue;
        }
        if (t == YAML_STREAM_END_EVENT || t == YAML_DOCUMENT_END_EVENT) goto out;
        if (in_doc && t == YAML_MAPPING_START_EVENT) {
            rc = yaml_apply_mapping(c, &p, path, 0, err, errlen);
            goto out;
        }
        if (in_doc && empty_scalar) continue; /* an empty file */
        set_err(err, errlen, "%s:%zu: the file must be a mapping of key: value", path, line);
        rc = AL_EMALFORMED;
        goto out;
    }
    set_err(err, errlen, "%s: unexpected YAML structure", path);
    rc = AL_EMALFORMED;
out:
    yaml_parser_delete(&p);
    fclose(f);
    return rc;
}

/* ---- environment ---- */

int config_load_env(al_config *c, char *const *envp, char *err, size_t errlen)
{
    static const char prefix[] = "AILURUS_";
    for (size_t i = 0; envp && envp[i] && i < 100000; i++) {
        const char *e = envp[i];
        if (strncmp(e, prefix, sizeof(prefix) - 1)) continue;
        const char *eq = strchr(e, '=');
        if (!eq) continue;
        char key[128];
        size_t n = (size_t)(eq - e) - (sizeof(prefix) - 1);
        if (n == 0 || n >= sizeof(key)) continue;
        memcpy(key, e + sizeof(prefix) - 1, n);
        key[n] = 0;
        if (!config_find(key)) continue; /* AILURUS_BIN and friends */
        char msg[512];
        int rc = config_set(c, key, eq + 1, CONFIG_SRC_ENV, msg, sizeof(msg));
        if (rc) {
            set_err(err, errlen, "environment %.*s: %s", (int)(eq - e), e, msg);
            return rc;
        }
    }
    return 0;
}

/* ---- finalize, print ---- */

int config_finalize(al_config *c, char *err, size_t errlen)
{
    size_t idx_smp = (size_t)(config_find("smp") - config_keys);
    size_t idx_mem = (size_t)(config_find("memory") - config_keys);
    size_t idx_adv = (size_t)(config_find("advertised_kafka_addr") - config_keys);
    if (c->smp == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->smp = n < 1 ? 1 : (n > 256 ? 256 : n);
        c->source[idx_smp] = CONFIG_SRC_DERIVED;
    }
    if (c->memory == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        c->memory = pages > 0 && psz > 0 ? (int64_t)pages * psz / 2 : 1 * GIB;
        c->source[idx_mem] = CONFIG_SRC_DERIVED;
    }
    if (!c->advertised_kafka_addr.host[0]) {
        c->advertised_kafka_addr = c->kafka_addr;
        if (!strcmp(c->kafka_addr.host, "0.0.0.0") || !strcmp(c->kafka_addr.host, "::"))
            snprintf(c->advertised_kafka_addr.host, CONFIG_HOST_MAX, "127.0.0.1");
        c->source[idx_adv] = CONFIG_SRC_DERIVED;
    }
    if (!c->advertised_rpc_addr.host[0]) {
        c->advertised_rpc_addr = c->rpc_addr;
        if (!strcmp(c->rpc_addr.host, "0.0.0.0") || !strcmp(c->rpc_addr.host, "::"))
            snprintf(c->advertised_rpc_addr.host, CONFIG_HOST_MAX, "127.0.0.1");
        c->source[(size_t)(config_find("advertised_rpc_addr") - config_keys)] =
            CONFIG_SRC_DERIVED;
    }
    if (c->kafka_conn_max_inflight_bytes > c->kafka_shard_max_inflight_bytes) {
        set_err(err, errlen,
                "kafka_conn_max_inflight_bytes (%" PRId64 ") must not exceed "
                "kafka_shard_max_inflight_bytes (%" PRId64 ")",
                c->kafka_conn_max_inflight_bytes, c->kafka_shard_max_inflight_bytes);
        return AL_EINVAL;
    }
    if (c->admin_addr.port && c->admin_addr.port == c->kafka_addr.port &&
        !strcmp(c->admin_addr.host, c->kafka_addr.host)) {
        set_err(err, errlen, "admin_addr and kafka_addr must differ (both %s:%u)",
                c->kafka_addr.host, c->kafka_addr.port);
        return AL_EINVAL;
    }
    return 0;
}

void config_format(const al_config *c, const struct config_key *k, char *buf, size_t len)
{
    const void *field = (const char *)c + k->offset;
    switch (k->type) {
    case CONFIG_INT:
    case CONFIG_BYTES: snprintf(buf, len, "%" PRId64, *(const int64_t *)field); break;
    case CONFIG_BOOL: snprintf(buf, len, "%s", *(const bool *)field ? "true" : "false"); break;
    case CONFIG_STRING: snprintf(buf, len, "%s", (const char *)field); break;
    case CONFIG_ENUM: snprintf(buf, len, "%s", k->allowed[*(const int64_t *)field]); break;
    case CONFIG_ADDR: {
        const struct config_addr *a = field;
        if (!a->host[0]) snprintf(buf, len, "%s", "");
        else if (strchr(a->host, ':')) snprintf(buf, len, "[%s]:%u", a->host, a->port);
        else snprintf(buf, len, "%s:%u", a->host, a->port);
        break;
    }
    }
}

/* Writes s as a YAML double-quoted scalar. */
static void yaml_quote(FILE *f, const char *s)
{
    fputc('"', f);
    for (size_t i = 0; s[i] && i < 4096; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\x%02x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

void config_print_yaml(const al_config *c, FILE *f)
{
    static const char *const src_names[] = {"default",     "--dev", "file",   "admin API",
                                            "environment", "flag",  "derived"};
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *k = &config_keys[i];
        char v[CONFIG_PATH_MAX + 16];
        config_format(c, k, v, sizeof(v));
        fprintf(f, "%s: ", k->name);
        if (k->type == CONFIG_STRING || k->type == CONFIG_ADDR || k->type == CONFIG_ENUM)
            yaml_quote(f, v);
        else fputs(v, f);
        fprintf(f, "  # %s\n", src_names[c->source[i] % AL_ARRAY_SIZE(src_names)]);
    }
}

void config_print_docs(FILE *f)
{
    static const char *const type_names[] = {"integer", "bytes", "bool", "string", "enum",
                                             "HOST:PORT"};
    fprintf(f, "| key | type | default | accepted | description |\n");
    fprintf(f, "|---|---|---|---|---|\n");
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *k = &config_keys[i];
        char acc[256];
        describe_accepted(k, acc, sizeof(acc));
        char extra[160] = "";
        if (k->kafka)
            snprintf(extra, sizeof(extra), " Kafka name: `%s`%s.", k->kafka,
                     k->live ? "; changes apply live" : "");
        else if (k->live)
            snprintf(extra, sizeof(extra), " Changes apply live.");
        fprintf(f, "| `%s` | %s | `%s` | %s | %s%s |\n", k->name, type_names[k->type],
                k->def[0] ? k->def : "\"\"", acc, k->doc, extra);
    }
}

int config_change(al_config *c, const al_config *start, const char *key, const char *value,
                  char *err, size_t errlen)
{
    const struct config_key *k = config_find(key);
    if (!k) {
        set_err(err, errlen, "unknown configuration key '%s' (see 'ailurus config docs')", key);
        return AL_ENOTFOUND;
    }
    if (value) return config_set(c, k->name, value, CONFIG_SRC_ADMIN, err, errlen);
    /* reset: back to what the broker started with, unless that came from the admin API */
    size_t idx = (size_t)(k - config_keys);
    char text[CONFIG_PATH_MAX + 64];
    const char *val = k->def;
    enum config_source src = CONFIG_SRC_DEFAULT;
    if (start && start->source[idx] != CONFIG_SRC_ADMIN) {
        config_format(start, k, text, sizeof(text));
        val = text;
        src = (enum config_source)start->source[idx];
    }
    return config_set(c, k->name, val, src, err, errlen);
}

int config_with_overrides(al_config *out, const al_config *start, const char *const *keys,
                          const char *const *values, int n, char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    *out = *start;
    for (size_t i = 0; i < config_key_count; i++) {
        if (start->source[i] != CONFIG_SRC_ADMIN) continue;
        bool listed = false;
        for (int j = 0; j < n && !listed; j++) listed = config_find(keys[j]) == &config_keys[i];
        if (!listed) config_change(out, start, config_keys[i].name, NULL, NULL, 0);
    }
    int skipped = 0;
    for (int j = 0; j < n; j++) {
        const struct config_key *k = config_find(keys[j]);
        if (k && start->source[k - config_keys] >= CONFIG_SRC_ENV &&
            start->source[k - config_keys] != CONFIG_SRC_DERIVED)
            continue; /* env and flags win */
        char e2[512];
        if (config_change(out, start, keys[j], values[j], e2, sizeof(e2))) {
            if (!skipped) set_err(err, errlen, "%s", e2);
            skipped++;
        }
    }
    return skipped;
}

int config_save_admin(io *iop, const al_config *c)
{
    if (!iop) return 0; /* no io (fuzzers, tools): changes stay in memory */
    json_t *o = json_object();
    if (!o) return -ENOMEM;
    for (size_t i = 0; i < config_key_count; i++) {
        if (c->source[i] != CONFIG_SRC_ADMIN) continue;
        char text[CONFIG_PATH_MAX + 64];
        config_format(c, &config_keys[i], text, sizeof(text));
        if (json_object_set_new(o, config_keys[i].name, json_string(text)) < 0) {
            json_decref(o);
            return -ENOMEM;
        }
    }
    char *dump = json_dumps(o, JSON_SORT_KEYS | JSON_INDENT(2));
    json_decref(o);
    if (!dump) return -ENOMEM;
    char path[CONFIG_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s", c->data_directory, CONFIG_ADMIN_FILE);
    int rc = io_fs_write_atomic(iop, path, dump, strlen(dump));
    free(dump);
    return rc;
}

int config_load_admin(al_config *c, const char *path, char *err, size_t errlen)
{
    if (access(path, F_OK) != 0) return 0;
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o || !json_is_object(o)) {
        set_err(err, errlen, "%s: not a JSON object (%s); fix or remove the file (it holds the "
                "cluster config set through the admin API)", path, o ? "wrong type" : je.text);
        json_decref(o);
        return AL_ECORRUPT;
    }
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(o, key, v) {
        const struct config_key *k = config_find(key);
        if (!k || !json_is_string(v)) {
            set_err(err, errlen, "%s: %s '%s'", path, k ? "value is not a string for" :
                    "unknown configuration key", key);
            rc = k ? AL_EINVAL : AL_ENOTFOUND;
            break;
        }
        if (c->source[k - config_keys] >= CONFIG_SRC_ENV) continue; /* env and flags win */
        char e2[512];
        if ((rc = config_set(c, key, json_string_value(v), CONFIG_SRC_ADMIN, e2, sizeof(e2)))) {
            set_err(err, errlen, "%s: %s", path, e2);
            break;
        }
    }
    json_decref(o);
    return rc;
}
