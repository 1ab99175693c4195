/* topic_config.c — Kafka 3.8's topic-level config table and its logic (see topic_config.h). */
#include "cluster/topic_config.h"

#include "config/config.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#define L_MAX "9223372036854775807"
#define TC_LIST_MAX 64   /* items in one list value */
#define TC_VALUE_MAX 4096 /* bytes in one value */

static const char *const cleanup_choices[] = {"delete", "compact", NULL};
static const char *const compression_choices[] = {"uncompressed", "zstd", "lz4", "snappy",
                                                  "gzip", "producer", NULL};
static const char *const ts_type_choices[] = {"CreateTime", "LogAppendTime", NULL};

static int check_throttled(const char *v);
static int check_format_version(const char *v);
static int check_gzip_level(const char *v);

#define OFF(f) offsetof(struct topic_configs, f)
#define F_I32 TOPIC_CONFIG_FIELD_I32
#define F_I64 TOPIC_CONFIG_FIELD_I64
#define F_BOOL TOPIC_CONFIG_FIELD_BOOL
#define F_F64 TOPIC_CONFIG_FIELD_F64
#define T_BOOL TOPIC_CONFIG_TYPE_BOOLEAN
#define T_STR TOPIC_CONFIG_TYPE_STRING
#define T_INT TOPIC_CONFIG_TYPE_INT
#define T_LONG TOPIC_CONFIG_TYPE_LONG
#define T_DBL TOPIC_CONFIG_TYPE_DOUBLE
#define T_LIST TOPIC_CONFIG_TYPE_LIST

/* Sorted by name (topic_config_find relies on it; a test checks). */
static const struct topic_config_def defs[] = {
    {"cleanup.policy", T_LIST, "delete", "log.cleanup.policy", 0, 0, 0, 0, cleanup_choices, NULL,
     "a list of: delete, compact", TOPIC_CONFIG_FIELD_MASK, OFF(cleanup_policy),
     "How old segments are cleaned: delete them by retention, compact them by key, or both."},
    {"compression.gzip.level", T_INT, "-1", "compression.gzip.level", -1, 9, 0, 0, NULL,
     check_gzip_level,
     "-1 or 1..9", F_I32, OFF(compression_gzip_level),
     "Compression level when compression.type is gzip (-1: the codec's default)."},
    {"compression.lz4.level", T_INT, "9", "compression.lz4.level", 1, 17, 0, 0, NULL, NULL,
     "1..17", F_I32, OFF(compression_lz4_level),
     "Compression level when compression.type is lz4."},
    {"compression.type", T_STR, "producer", "compression.type", 0, 0, 0, 0, compression_choices,
     NULL, "one of: uncompressed, zstd, lz4, snappy, gzip, producer", TOPIC_CONFIG_FIELD_ENUM,
     OFF(compression_type),
     "Final compression of the topic's data; producer keeps what the producer sent."},
    {"compression.zstd.level", T_INT, "3", "compression.zstd.level", -131072, 22, 0, 0, NULL,
     NULL, "-131072..22", F_I32, OFF(compression_zstd_level),
     "Compression level when compression.type is zstd."},
    {"delete.retention.ms", T_LONG, "86400000", "log.cleaner.delete.retention.ms", 0, INT64_MAX,
     0, 0, NULL, NULL, ">= 0", F_I64, OFF(delete_retention_ms),
     "How long tombstones are kept in a compacted topic."},
    {"file.delete.delay.ms", T_LONG, "60000", "log.segment.delete.delay.ms", 0, INT64_MAX, 0, 0,
     NULL, NULL, ">= 0", F_I64, OFF(file_delete_delay_ms),
     "Delay before a deleted segment's files are removed from disk."},
    {"flush.messages", T_LONG, L_MAX, "log.flush.interval.messages", 1, INT64_MAX, 0, 0, NULL,
     NULL, ">= 1", F_I64, OFF(flush_messages),
     "Force an fsync after this many messages (Ailurus always flushes before acks=all)."},
    {"flush.ms", T_LONG, L_MAX, "log.flush.interval.ms", 0, INT64_MAX, 0, 0, NULL, NULL, ">= 0",
     F_I64, OFF(flush_ms), "Force an fsync after this much time."},
    {"follower.replication.throttled.replicas", T_LIST, "", NULL, 0, 0, 0, 0, NULL,
     check_throttled, "* or a list of partition:broker", TOPIC_CONFIG_FIELD_NONE, 0,
     "Replicas whose log replication is throttled on the follower side."},
    {"index.interval.bytes", T_INT, "4096", "log.index.interval.bytes", 0, INT32_MAX, 0, 0, NULL,
     NULL, ">= 0", F_I32, OFF(index_interval_bytes),
     "Bytes between two entries of the sparse offset index."},
    {"leader.replication.throttled.replicas", T_LIST, "", NULL, 0, 0, 0, 0, NULL,
     check_throttled, "* or a list of partition:broker", TOPIC_CONFIG_FIELD_NONE, 0,
     "Replicas whose log replication is throttled on the leader side."},
    {"local.retention.bytes", T_LONG, "-2", "log.local.retention.bytes", -2, INT64_MAX, 0, 0,
     NULL, NULL, ">= -2", F_I64, OFF(local_retention_bytes),
     "Local bytes kept when tiered storage is on (-2: use retention.bytes)."},
    {"local.retention.ms", T_LONG, "-2", "log.local.retention.ms", -2, INT64_MAX, 0, 0, NULL,
     NULL, ">= -2", F_I64, OFF(local_retention_ms),
     "Local time kept when tiered storage is on (-2: use retention.ms)."},
    {"max.compaction.lag.ms", T_LONG, L_MAX, "log.cleaner.max.compaction.lag.ms", 1, INT64_MAX,
     0, 0, NULL, NULL, ">= 1", F_I64, OFF(max_compaction_lag_ms),
     "Longest time a message stays uncompacted."},
    {"max.message.bytes", T_INT, "1048588", "message.max.bytes", 0, INT32_MAX, 0, 0, NULL, NULL,
     ">= 0", F_I32, OFF(max_message_bytes), "Largest record batch size the topic accepts."},
    {"message.downconversion.enable", T_BOOL, "true", "log.message.downconversion.enable", 0, 0,
     0, 0, NULL, NULL, "true or false", F_BOOL, OFF(message_downconversion_enable),
     "Whether batches are down-converted for old consumers."},
    {"message.format.version", T_STR, "3.0-IV1", "log.message.format.version", 0, 0, 0, 0, NULL,
     check_format_version, "a Kafka version such as 2.8 or 3.0-IV1", TOPIC_CONFIG_FIELD_NONE, 0,
     "Deprecated: the message format version (ignored from 3.0 on)."},
    {"message.timestamp.after.max.ms", T_LONG, L_MAX, "log.message.timestamp.after.max.ms", 0,
     INT64_MAX, 0, 0, NULL, NULL, ">= 0", F_I64, OFF(message_timestamp_after_max_ms),
     "How far in the future a CreateTime timestamp may be."},
    {"message.timestamp.before.max.ms", T_LONG, L_MAX, "log.message.timestamp.before.max.ms", 0,
     INT64_MAX, 0, 0, NULL, NULL, ">= 0", F_I64, OFF(message_timestamp_before_max_ms),
     "How far in the past a CreateTime timestamp may be."},
    {"message.timestamp.difference.max.ms", T_LONG, L_MAX,
     "log.message.timestamp.difference.max.ms", 0, INT64_MAX, 0, 0, NULL, NULL, ">= 0", F_I64,
     OFF(message_timestamp_difference_max_ms),
     "Deprecated: largest difference between a CreateTime timestamp and the broker clock."},
    {"message.timestamp.type", T_STR, "CreateTime", "log.message.timestamp.type", 0, 0, 0, 0,
     ts_type_choices, NULL, "one of: CreateTime, LogAppendTime", TOPIC_CONFIG_FIELD_ENUM,
     OFF(message_timestamp_type),
     "Whether record timestamps are the producer's (CreateTime) or the broker's."},
    {"min.cleanable.dirty.ratio", T_DBL, "0.5", "log.cleaner.min.cleanable.ratio", 0, 0, 0.0, 1.0,
     NULL, NULL, "0.0..1.0", F_F64, OFF(min_cleanable_dirty_ratio),
     "Dirty share of the log above which compaction runs."},
    {"min.compaction.lag.ms", T_LONG, "0", "log.cleaner.min.compaction.lag.ms", 0, INT64_MAX, 0,
     0, NULL, NULL, ">= 0", F_I64, OFF(min_compaction_lag_ms),
     "Shortest time a message stays uncompacted."},
    {"min.insync.replicas", T_INT, "1", "min.insync.replicas", 1, INT32_MAX, 0, 0, NULL, NULL,
     ">= 1", F_I32, OFF(min_insync_replicas),
     "Replicas that must have a write for acks=all to succeed."},
    {"preallocate", T_BOOL, "false", "log.preallocate", 0, 0, 0, 0, NULL, NULL, "true or false",
     F_BOOL, OFF(preallocate), "Preallocate segment files when they are created."},
    {"remote.storage.enable", T_BOOL, "false", NULL, 0, 0, 0, 0, NULL, NULL, "true or false",
     F_BOOL, OFF(remote_storage_enable), "Tiered storage for this topic."},
    {"retention.bytes", T_LONG, "-1", "log.retention.bytes", INT64_MIN, INT64_MAX, 0, 0, NULL,
     NULL, "a long (-1: unlimited)", F_I64, OFF(retention_bytes),
     "Largest partition size before old segments are deleted (-1: no limit)."},
    {"retention.ms", T_LONG, "604800000", "log.retention.ms", -1, INT64_MAX, 0, 0, NULL, NULL,
     ">= -1", F_I64, OFF(retention_ms),
     "How long a segment is kept before it is deleted (-1: forever)."},
    {"segment.bytes", T_INT, "1073741824", "log.segment.bytes", 14, INT32_MAX, 0, 0, NULL, NULL,
     ">= 14", F_I32, OFF(segment_bytes), "Segment file size at which a new segment is rolled."},
    {"segment.index.bytes", T_INT, "10485760", "log.index.size.max.bytes", 4, INT32_MAX, 0, 0,
     NULL, NULL, ">= 4", F_I32, OFF(segment_index_bytes),
     "Size of a segment's offset index file."},
    {"segment.jitter.ms", T_LONG, "0", "log.roll.jitter.ms", 0, INT64_MAX, 0, 0, NULL, NULL,
     ">= 0", F_I64, OFF(segment_jitter_ms),
     "Random jitter subtracted from segment.ms to spread rolls."},
    {"segment.ms", T_LONG, "604800000", "log.roll.ms", 1, INT64_MAX, 0, 0, NULL, NULL, ">= 1",
     F_I64, OFF(segment_ms), "Age at which a segment is rolled even if not full."},
    {"unclean.leader.election.enable", T_BOOL, "false", "unclean.leader.election.enable", 0, 0, 0,
     0, NULL, NULL, "true or false", F_BOOL, OFF(unclean_leader_election_enable),
     "Whether an out-of-sync replica may become leader (may lose data)."},
};

const struct topic_config_def *topic_config_defs(size_t *n)
{
    *n = AL_ARRAY_SIZE(defs);
    return defs;
}

/* bsearch comparator of a name (key) with a table entry whose first member is its name (both
 * definition tables here are sorted by it). */
static int name_cmp(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

_Static_assert(offsetof(struct topic_config_def, name) == 0, "name_cmp needs name first");
_Static_assert(offsetof(struct broker_config_def, name) == 0, "name_cmp needs name first");

const struct topic_config_def *topic_config_find(const char *key)
{
    if (!key) return NULL;
    return bsearch(key, defs, AL_ARRAY_SIZE(defs), sizeof(defs[0]), name_cmp);
}

/* ---- parsing ---- */

/* Copies value without leading/trailing whitespace into buf (cap bytes). -1 if too long. */
static int trim_copy(const char *v, char *buf, size_t cap)
{
    while (isspace((unsigned char)*v)) v++;
    size_t n = strlen(v);
    while (n && isspace((unsigned char)v[n - 1])) n--;
    if (n >= cap) return -1;
    memcpy(buf, v, n);
    buf[n] = 0;
    return 0;
}

static int parse_i64(const char *v, int64_t *out)
{
    char buf[64];
    if (trim_copy(v, buf, sizeof(buf)) < 0 || !buf[0]) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    if (errno || *end) return -1;
    *out = x;
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    char buf[16];
    if (trim_copy(v, buf, sizeof(buf)) < 0) return -1;
    if (!strcasecmp(buf, "true")) *out = true;
    else if (!strcasecmp(buf, "false")) *out = false;
    else return -1;
    return 0;
}

static int parse_f64(const char *v, double *out)
{
    char buf[64];
    if (trim_copy(v, buf, sizeof(buf)) < 0 || !buf[0]) return -1;
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (errno || *end || d != d) return -1;
    *out = d;
    return 0;
}

static int choice_index(const char *const *choices, const char *s)
{
    for (int i = 0; choices[i]; i++)
        if (!strcmp(choices[i], s)) return i;
    return -1;
}

/* Splits a list value into trimmed items in buf; returns the count or -1 (too many/long). */
static int split_list(const char *v, char *buf, size_t cap, char **items, int max)
{
    if (trim_copy(v, buf, cap) < 0) return -1;
    if (!buf[0]) return 0;
    int n = 0;
    char *p = buf;
    /* strtok_r would merge empty items; keep them so "a,,b" is refused like Kafka */
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        if (n == max) return -1;
        char *s = p;
        while (isspace((unsigned char)*s)) s++;
        char *e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
        items[n++] = s;
        if (!comma) break;
        p = comma + 1;
    }
    return n;
}

static int check_throttled(const char *v)
{
    char buf[TC_VALUE_MAX];
    char *items[TC_LIST_MAX];
    int n = split_list(v, buf, sizeof(buf), items, TC_LIST_MAX);
    if (n < 0) return AL_EINVAL;
    if (n == 1 && !strcmp(items[0], "*")) return 0;
    for (int i = 0; i < n; i++) {
        const char *s = items[i];
        const char *colon = strchr(s, ':');
        if (!colon || colon == s || !colon[1]) return AL_EINVAL;
        for (const char *c = s; *c; c++)
            if (c != colon && !isdigit((unsigned char)*c)) return AL_EINVAL;
    }
    return 0;
}

/* gzip: -1 (the codec's default) or 1..9; the range check already bounds it to -1..9 */
static int check_gzip_level(const char *v)
{
    int64_t x;
    if (parse_i64(v, &x) < 0 || x == 0) return AL_EINVAL;
    return 0;
}

/* Versions look like 0.8.0, 0.10.2-IV0, 2.8, 3.0-IV1 */
static int check_format_version(const char *v)
{
    char buf[32];
    if (trim_copy(v, buf, sizeof(buf)) < 0) return AL_EINVAL;
    const char *p = buf;
    int parts = 0;
    for (;;) {
        if (!isdigit((unsigned char)*p)) return AL_EINVAL;
        while (isdigit((unsigned char)*p)) p++;
        parts++;
        if (*p != '.') break;
        p++;
    }
    if (parts < 2 || parts > 3) return AL_EINVAL;
    if (*p == '-') {
        if (strncmp(p, "-IV", 3) != 0 || !isdigit((unsigned char)p[3])) return AL_EINVAL;
        p += 3;
        while (isdigit((unsigned char)*p)) p++;
    }
    return *p ? AL_EINVAL : 0;
}

static void set_msg(char *msg, size_t msglen, const char *fmt, const char *a, const char *b,
                    const char *c)
{
    if (msglen) snprintf(msg, msglen, fmt, a, b, c);
}

/* Parses value per def; stores the typed value in *out when out is not NULL. */
static int def_parse(const struct topic_config_def *d, const char *value, struct topic_configs *out,
                     char *msg, size_t msglen)
{
    const char *bad = "Invalid value %s for configuration %s: %s";
    if (!value || strlen(value) >= TC_VALUE_MAX) {
        set_msg(msg, msglen, bad, value ? "(too long)" : "null", d->name, d->accepted);
        return AL_EINVAL;
    }
    char *base = out ? (char *)out + d->offset : NULL;
    switch (d->type) {
    case TOPIC_CONFIG_TYPE_BOOLEAN: {
        bool b;
        if (parse_bool(value, &b) < 0) goto bad;
        if (out && d->field == F_BOOL) *(bool *)base = b;
        break;
    }
    case TOPIC_CONFIG_TYPE_INT:
    case TOPIC_CONFIG_TYPE_LONG: {
        int64_t x;
        if (parse_i64(value, &x) < 0) goto bad;
        if (d->type == TOPIC_CONFIG_TYPE_INT && (x < INT32_MIN || x > INT32_MAX)) goto bad;
        if (x < d->min || x > d->max) goto bad;
        if (out && d->field == F_I32) *(int32_t *)base = (int32_t)x;
        if (out && d->field == F_I64) *(int64_t *)base = x;
        break;
    }
    case TOPIC_CONFIG_TYPE_DOUBLE: {
        double x;
        if (parse_f64(value, &x) < 0 || x < d->dmin || x > d->dmax) goto bad;
        if (out && d->field == F_F64) *(double *)base = x;
        break;
    }
    case TOPIC_CONFIG_TYPE_STRING: {
        char buf[256];
        if (trim_copy(value, buf, sizeof(buf)) < 0) goto bad;
        if (d->choices) {
            int i = choice_index(d->choices, buf);
            if (i < 0) goto bad;
            if (out && d->field == TOPIC_CONFIG_FIELD_ENUM) *(int32_t *)base = i;
        }
        break;
    }
    case TOPIC_CONFIG_TYPE_LIST: {
        char buf[TC_VALUE_MAX];
        char *items[TC_LIST_MAX];
        int n = split_list(value, buf, sizeof(buf), items, TC_LIST_MAX);
        if (n < 0) goto bad;
        uint32_t mask = 0;
        for (int i = 0; i < n && d->choices; i++) {
            int k = choice_index(d->choices, items[i]);
            if (k < 0) goto bad;
            mask |= 1u << k;
        }
        if (out && d->field == TOPIC_CONFIG_FIELD_MASK) *(uint32_t *)base = mask;
        break;
    }
    default:
        AL_PANIC("config %s has type %d", d->name, d->type);
    }
    if (d->check && d->check(value) < 0) goto bad;
    return 0;
bad:
    set_msg(msg, msglen, bad, value, d->name, d->accepted);
    return AL_EINVAL;
}

int topic_config_check(const char *key, const char *value, char *msg, size_t msglen)
{
    const struct topic_config_def *d = topic_config_find(key);
    if (!d) {
        set_msg(msg, msglen, "Unknown topic config name: %s%s%s", key ? key : "(null)", "", "");
        return AL_ENOTFOUND;
    }
    return def_parse(d, value, NULL, msg, msglen);
}

void topic_config_defaults(struct topic_configs *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < AL_ARRAY_SIZE(defs); i++) {
        int rc = def_parse(&defs[i], defs[i].default_value, out, NULL, 0);
        AL_ASSERT(rc == 0);
    }
}

static const char *pairs_get(const struct topic_config_pair *p, int n, const char *key)
{
    if (!key) return NULL;
    for (int i = 0; i < n; i++)
        if (p[i].key && !strcmp(p[i].key, key)) return p[i].value;
    return NULL;
}

/* Cross-key rules, as Kafka's LogConfig.validateValues (the ones that apply here). */
static int cross_check(const struct topic_configs *c, char *msg, size_t msglen)
{
    if (c->min_compaction_lag_ms > c->max_compaction_lag_ms) {
        set_msg(msg, msglen, "conflict topic config setting %s > %s%s", "min.compaction.lag.ms",
                "max.compaction.lag.ms", "");
        return AL_EINVAL;
    }
    if (c->remote_storage_enable) {
        if (c->retention_ms != -1 && c->local_retention_ms != -2 &&
            (c->local_retention_ms == -1 || c->local_retention_ms > c->retention_ms)) {
            set_msg(msg, msglen, "Invalid value for configuration %s: must be <= %s%s",
                    "local.retention.ms", "retention.ms", "");
            return AL_EINVAL;
        }
        if (c->retention_bytes != -1 && c->local_retention_bytes != -2 &&
            (c->local_retention_bytes == -1 || c->local_retention_bytes > c->retention_bytes)) {
            set_msg(msg, msglen, "Invalid value for configuration %s: must be <= %s%s",
                    "local.retention.bytes", "retention.bytes", "");
            return AL_EINVAL;
        }
    }
    return 0;
}

int topic_config_resolve(const struct topic_config_pair *topic, int ntopic,
                         const struct topic_config_pair *broker, int nbroker,
                         struct topic_configs *out, char *msg, size_t msglen)
{
    struct topic_configs c;
    topic_config_defaults(&c);
    for (int i = 0; i < ntopic; i++) {
        if (!topic_config_find(topic[i].key)) {
            set_msg(msg, msglen, "Unknown topic config name: %s%s%s", topic[i].key, "", "");
            return AL_ENOTFOUND;
        }
    }
    for (size_t i = 0; i < AL_ARRAY_SIZE(defs); i++) {
        const struct topic_config_def *d = &defs[i];
        const char *v = pairs_get(topic, ntopic, d->name);
        if (!v) v = pairs_get(broker, nbroker, d->synonym);
        if (!v) continue;
        int rc = def_parse(d, v, &c, msg, msglen);
        if (rc < 0) return rc;
    }
    int rc = cross_check(&c, msg, msglen);
    if (rc < 0) return rc;
    *out = c;
    return 0;
}

/* ---- override sets ---- */

void topic_config_set_init(struct topic_config_set *s)
{
    s->n = 0;
    s->items = NULL;
}

void topic_config_set_free(struct topic_config_set *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->items[i].key);
        free(s->items[i].value);
    }
    free(s->items);
    topic_config_set_init(s);
}

static int set_index(const struct topic_config_set *s, const char *key)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->items[i].key, key)) return i;
    return -1;
}

const char *topic_config_set_get(const struct topic_config_set *s, const char *key)
{
    int i = set_index(s, key);
    return i < 0 ? NULL : s->items[i].value;
}

static int item_cmp(const void *a, const void *b)
{
    return strcmp(((const struct topic_config_owned *)a)->key,
                  ((const struct topic_config_owned *)b)->key);
}

/* Sets (value non-NULL, copied) or removes key. Returns 0 or -ENOMEM. Keeps items sorted. */
static int set_put(struct topic_config_set *s, const char *key, const char *value)
{
    int i = set_index(s, key);
    if (!value) {
        if (i < 0) return 0;
        free(s->items[i].key);
        free(s->items[i].value);
        memmove(&s->items[i], &s->items[i + 1], sizeof(s->items[0]) * (size_t)(s->n - i - 1));
        s->n--;
        return 0;
    }
    char *v = strdup(value);
    if (!v) return -ENOMEM;
    if (i >= 0) {
        free(s->items[i].value);
        s->items[i].value = v;
        return 0;
    }
    char *k = strdup(key);
    struct topic_config_owned *it = realloc(s->items, sizeof(*it) * (size_t)(s->n + 1));
    if (!k || !it) {
        free(k);
        free(v);
        if (it) s->items = it;
        return -ENOMEM;
    }
    s->items = it;
    s->items[s->n].key = k;
    s->items[s->n].value = v;
    s->n++;
    al_sort(s->items, (size_t)s->n, sizeof(s->items[0]), item_cmp);
    return 0;
}

int topic_config_set_copy(const struct topic_config_set *s, struct topic_config_set *out)
{
    topic_config_set_init(out);
    for (int i = 0; i < s->n; i++) {
        int rc = set_put(out, s->items[i].key, s->items[i].value);
        if (rc < 0) {
            topic_config_set_free(out);
            return rc;
        }
    }
    return 0;
}

int topic_config_set_resolve(const struct topic_config_set *s,
                             const struct topic_config_pair *broker, int nbroker,
                             struct topic_configs *out, char *msg, size_t msglen)
{
    struct topic_config_pair pairs[64] = {{0}};
    struct topic_config_pair *p = s->n <= 64 ? pairs : malloc(sizeof(*p) * (size_t)s->n);
    if (!p) return -ENOMEM;
    for (int i = 0; i < s->n; i++) p[i] = (struct topic_config_pair){s->items[i].key,
                                                                     s->items[i].value};
    int rc = topic_config_resolve(p, s->n, broker, nbroker, out, msg, msglen);
    if (p != pairs) free(p);
    return rc;
}

/* APPEND / SUBTRACT on a list value: computes the new value text into out (cap bytes). */
static int list_op(const struct topic_config_def *d, const char *cur, const char *arg, int op,
                   char *out, size_t cap)
{
    char cbuf[TC_VALUE_MAX], abuf[TC_VALUE_MAX];
    char *citems[TC_LIST_MAX], *aitems[TC_LIST_MAX];
    int nc = split_list(cur, cbuf, sizeof(cbuf), citems, TC_LIST_MAX);
    int na = split_list(arg, abuf, sizeof(abuf), aitems, TC_LIST_MAX);
    if (nc < 0 || na < 0) return AL_EINVAL;
    char *res[2 * TC_LIST_MAX];
    int nr = 0;
    for (int i = 0; i < nc; i++) {
        bool drop = false;
        for (int j = 0; op == TOPIC_CONFIG_OP_SUBTRACT && j < na; j++)
            if (!strcmp(citems[i], aitems[j])) drop = true;
        if (!drop) res[nr++] = citems[i];
    }
    for (int j = 0; op == TOPIC_CONFIG_OP_APPEND && j < na; j++) {
        bool have = false;
        for (int i = 0; i < nr; i++)
            if (!strcmp(res[i], aitems[j])) have = true;
        if (!have) res[nr++] = aitems[j];
    }
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < nr; i++) {
        size_t l = strlen(res[i]);
        if (len + l + 2 > cap) return AL_EINVAL;
        if (i) out[len++] = ',';
        memcpy(out + len, res[i], l + 1);
        len += l;
    }
    AL_UNUSED(d);
    return 0;
}

int topic_config_list_apply(const char *cur, const char *arg, int op, char *out, size_t cap)
{
    if (op != TOPIC_CONFIG_OP_APPEND && op != TOPIC_CONFIG_OP_SUBTRACT) return AL_EINVAL;
    return list_op(NULL, cur ? cur : "", arg ? arg : "", op, out, cap);
}

static int validate_set(const struct topic_config_set *s, char *msg, size_t msglen)
{
    struct topic_configs c;
    return topic_config_set_resolve(s, NULL, 0, &c, msg, msglen);
}

/* The end of an alter: validates the new set t as a whole and, unless validate_only, makes it
 * *s (the old one freed). Takes t in every case (freed unless it became *s). Returns 0 or the
 * validation error (msg says why). */
static int set_commit(struct topic_config_set *s, struct topic_config_set *t, bool validate_only,
                      char *msg, size_t msglen)
{
    int rc = validate_set(t, msg, msglen);
    if (rc < 0 || validate_only) {
        topic_config_set_free(t);
        return rc;
    }
    topic_config_set_free(s);
    *s = *t;
    return 0;
}

int topic_config_alter_incremental(struct topic_config_set *s,
                                   const struct topic_config_alter_op *ops,
                                   int nops, bool validate_only, char *msg, size_t msglen)
{
    for (int i = 0; i < nops; i++)
        for (int j = 0; j < i; j++)
            if (ops[i].key && ops[j].key && !strcmp(ops[i].key, ops[j].key)) {
                set_msg(msg, msglen, "Error due to duplicate config keys: %s%s%s", ops[i].key,
                        "", "");
                return AL_EINVAL;
            }
    struct topic_config_set t;
    int rc = topic_config_set_copy(s, &t);
    if (rc < 0) return rc;
    for (int i = 0; i < nops; i++) {
        const struct topic_config_alter_op *o = &ops[i];
        const struct topic_config_def *d = topic_config_find(o->key);
        if (o->op == TOPIC_CONFIG_OP_DELETE && o->key) {
            /* as Kafka: DELETE does not validate the name (it also clears stale unknown keys) */
            rc = set_put(&t, o->key, NULL);
            if (rc < 0) goto out;
            continue;
        }
        if (!d) {
            set_msg(msg, msglen, "Unknown topic config name: %s%s%s", o->key ? o->key : "(null)",
                    "", "");
            rc = AL_ENOTFOUND;
            goto out;
        }
        switch (o->op) {
        case TOPIC_CONFIG_OP_SET:
            if (!o->value) {
                set_msg(msg, msglen, "Null value not supported for : %s%s%s", o->key, "", "");
                rc = AL_EINVAL;
                goto out;
            }
            rc = def_parse(d, o->value, NULL, msg, msglen);
            if (rc == 0) rc = set_put(&t, o->key, o->value);
            break;
        case TOPIC_CONFIG_OP_DELETE:
            rc = set_put(&t, o->key, NULL);
            break;
        case TOPIC_CONFIG_OP_APPEND:
        case TOPIC_CONFIG_OP_SUBTRACT: {
            if (d->type != TOPIC_CONFIG_TYPE_LIST) {
                set_msg(msg, msglen, "Config value %s is not allowed for config key: %s%s",
                        o->op == TOPIC_CONFIG_OP_APPEND ? "append" : "subtract", o->key, "");
                rc = AL_EINVAL;
                goto out;
            }
            const char *cur = topic_config_set_get(&t, o->key);
            if (!cur) cur = d->default_value;
            char buf[TC_VALUE_MAX];
            rc = list_op(d, cur, o->value ? o->value : "", o->op, buf, sizeof(buf));
            if (rc < 0) {
                set_msg(msg, msglen, "Invalid value %s for configuration %s: %s",
                        o->value ? o->value : "null", o->key, d->accepted);
                goto out;
            }
            rc = def_parse(d, buf, NULL, msg, msglen);
            if (rc == 0) rc = set_put(&t, o->key, buf);
            break;
        }
        default:
            set_msg(msg, msglen, "Unknown config operation for %s%s%s", o->key, "", "");
            rc = AL_EINVAL;
        }
        if (rc < 0) goto out;
    }
    return set_commit(s, &t, validate_only, msg, msglen);
out:
    topic_config_set_free(&t);
    return rc;
}

int topic_config_replace(struct topic_config_set *s, const struct topic_config_pair *pairs, int n,
                         bool validate_only, char *msg, size_t msglen)
{
    struct topic_config_set t;
    topic_config_set_init(&t);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (!pairs[i].value) continue;
        rc = topic_config_check(pairs[i].key, pairs[i].value, msg, msglen);
        if (rc == 0 && topic_config_set_get(&t, pairs[i].key)) {
            set_msg(msg, msglen, "Error due to duplicate config keys: %s%s%s", pairs[i].key, "",
                    "");
            rc = AL_EINVAL;
        }
        if (rc == 0) rc = set_put(&t, pairs[i].key, pairs[i].value);
        if (rc < 0) goto out;
    }
    return set_commit(s, &t, validate_only, msg, msglen);
out:
    topic_config_set_free(&t);
    return rc;
}

int topic_config_set_to_json(const struct topic_config_set *s, char **out)
{
    json_t *o = json_object();
    if (!o) return -ENOMEM;
    for (int i = 0; i < s->n; i++) {
        if (json_object_set_new(o, s->items[i].key, json_string(s->items[i].value)) < 0) {
            json_decref(o);
            return -ENOMEM;
        }
    }
    *out = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(o);
    return *out ? 0 : -ENOMEM;
}

int topic_config_set_from_json(struct topic_config_set *s, const char *json, size_t len)
{
    topic_config_set_init(s);
    json_error_t jerr;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return AL_ECORRUPT;
    }
    int rc = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (!json_is_string(v)) {
            rc = AL_ECORRUPT;
            break;
        }
        rc = set_put(s, k, json_string_value(v));
        if (rc < 0) break;
    }
    json_decref(o);
    if (rc < 0) topic_config_set_free(s);
    return rc;
}

/* ---- DescribeConfigs ---- */

void topic_config_describe(const struct topic_config_set *s,
                           const struct broker_config_defaults *broker,
                           const struct topic_config_def *def, struct topic_config_entry *out)
{
    memset(out, 0, sizeof(*out));
    out->name = def->name;
    out->type = (int8_t)def->type;
    out->doc = def->doc;
    const char *ov = s ? topic_config_set_get(s, def->name) : NULL;
    if (ov) {
        out->synonyms[out->nsynonyms++] =
            (struct topic_config_synonym){def->name, ov, TOPIC_CONFIG_SOURCE_TOPIC};
    }
    const char *dflt = def->default_value;
    for (int i = 0; broker && def->synonym && i < broker->n; i++) {
        if (strcmp(broker->pairs[i].key, def->synonym)) continue;
        if (broker->source[i] == TOPIC_CONFIG_SOURCE_DEFAULT) {
            dflt = broker->pairs[i].value; /* the broker's default (may differ from Kafka's) */
            break;
        }
        out->synonyms[out->nsynonyms++] =
            (struct topic_config_synonym){def->synonym, broker->pairs[i].value, broker->source[i]};
        break;
    }
    out->synonyms[out->nsynonyms++] = (struct topic_config_synonym){
        def->synonym ? def->synonym : def->name, dflt, TOPIC_CONFIG_SOURCE_DEFAULT};
    out->value = out->synonyms[0].value;
    out->source = out->synonyms[0].source;
    out->is_default = out->source == TOPIC_CONFIG_SOURCE_DEFAULT;
}

/* ---- broker-level keys ---- */

#define B_RO true
#define B_RW false
static const struct broker_config_def broker_defs[] = {
    {"advertised.listeners", T_STR, NULL, B_RO, false, "Listeners published to clients."},
    {"auto.create.topics.enable", T_BOOL, "true", B_RW, false,
     "Create a topic when a client asks for an unknown one."},
    {"broker.id", T_INT, "-1", B_RO, false, "This broker's id."},
    {"compression.gzip.level", T_INT, "-1", B_RO, false, "Default gzip level."},
    {"compression.lz4.level", T_INT, "9", B_RO, false, "Default lz4 level."},
    {"compression.type", T_STR, "producer", B_RO, false, "Default topic compression."},
    {"compression.zstd.level", T_INT, "3", B_RO, false, "Default zstd level."},
    {"connections.max.idle.ms", T_LONG, "600000", B_RO, false,
     "Idle connections are closed after this long."},
    {"default.replication.factor", T_INT, "1", B_RW, false, "Replication of auto-created topics."},
    {"delete.topic.enable", T_BOOL, "true", B_RO, false, "Whether topics can be deleted."},
    {"group.initial.rebalance.delay.ms", T_INT, "3000", B_RO, false,
     "Wait before the first rebalance of a new group."},
    {"group.max.session.timeout.ms", T_INT, "1800000", B_RO, false, "Largest session timeout."},
    {"group.max.size", T_INT, "2147483647", B_RO, false, "Most members in one group."},
    {"group.min.session.timeout.ms", T_INT, "6000", B_RO, false, "Smallest session timeout."},
    {"listeners", T_STR, "PLAINTEXT://:9092", B_RO, false, "Addresses the broker listens on."},
    {"log.cleaner.delete.retention.ms", T_LONG, "86400000", B_RW, false,
     "Default delete.retention.ms."},
    {"log.cleaner.max.compaction.lag.ms", T_LONG, L_MAX, B_RW, false,
     "Default max.compaction.lag.ms."},
    {"log.cleaner.min.cleanable.ratio", T_DBL, "0.5", B_RO, false,
     "Default min.cleanable.dirty.ratio."},
    {"log.cleaner.min.compaction.lag.ms", T_LONG, "0", B_RW, false,
     "Default min.compaction.lag.ms."},
    {"log.cleanup.policy", T_LIST, "delete", B_RW, false, "Default cleanup.policy."},
    {"log.dirs", T_STR, NULL, B_RO, false, "Data directories."},
    {"log.flush.interval.messages", T_LONG, L_MAX, B_RO, false, "Default flush.messages."},
    {"log.flush.interval.ms", T_LONG, NULL, B_RO, false, "Default flush.ms."},
    {"log.index.interval.bytes", T_INT, "4096", B_RO, false, "Default index.interval.bytes."},
    {"log.index.size.max.bytes", T_INT, "10485760", B_RO, false, "Default segment.index.bytes."},
    {"log.local.retention.bytes", T_LONG, "-2", B_RO, false, "Default local.retention.bytes."},
    {"log.local.retention.ms", T_LONG, "-2", B_RO, false, "Default local.retention.ms."},
    {"log.message.downconversion.enable", T_BOOL, "true", B_RO, false,
     "Default message.downconversion.enable."},
    {"log.message.format.version", T_STR, "3.0-IV1", B_RO, false,
     "Default message.format.version."},
    {"log.message.timestamp.after.max.ms", T_LONG, L_MAX, B_RO, false,
     "Default message.timestamp.after.max.ms."},
    {"log.message.timestamp.before.max.ms", T_LONG, L_MAX, B_RO, false,
     "Default message.timestamp.before.max.ms."},
    {"log.message.timestamp.difference.max.ms", T_LONG, L_MAX, B_RO, false,
     "Default message.timestamp.difference.max.ms."},
    {"log.message.timestamp.type", T_STR, "CreateTime", B_RW, false,
     "Default message.timestamp.type."},
    {"log.preallocate", T_BOOL, "false", B_RO, false, "Default preallocate."},
    {"log.retention.bytes", T_LONG, "-1", B_RW, false, "Default retention.bytes."},
    {"log.retention.check.interval.ms", T_LONG, "300000", B_RO, false,
     "How often retention is enforced."},
    {"log.retention.hours", T_INT, "168", B_RO, false, "Default retention in hours."},
    {"log.retention.minutes", T_INT, NULL, B_RO, false, "Default retention in minutes."},
    {"log.retention.ms", T_LONG, NULL, B_RW, false, "Default retention.ms."},
    {"log.roll.hours", T_INT, "168", B_RO, false, "Default segment age in hours."},
    {"log.roll.jitter.ms", T_LONG, NULL, B_RO, false, "Default segment.jitter.ms."},
    {"log.roll.ms", T_LONG, NULL, B_RW, false, "Default segment.ms."},
    {"log.segment.bytes", T_INT, "1073741824", B_RW, false, "Default segment.bytes."},
    {"log.segment.delete.delay.ms", T_LONG, "60000", B_RO, false, "Default file.delete.delay.ms."},
    {"message.max.bytes", T_INT, "1048588", B_RW, false, "Default max.message.bytes."},
    {"min.insync.replicas", T_INT, "1", B_RO, false, "Default min.insync.replicas."},
    {"node.id", T_INT, "-1", B_RO, false, "This node's id."},
    {"num.partitions", T_INT, "1", B_RW, false, "Partitions of auto-created topics."},
    {"offset.metadata.max.bytes", T_INT, "4096", B_RO, false,
     "Largest metadata string of an offset commit."},
    {"offsets.retention.minutes", T_INT, "10080", B_RO, false,
     "How long offsets of an empty group are kept."},
    {"offsets.topic.num.partitions", T_INT, "16", B_RO, false,
     "Partitions of __consumer_offsets."},
    {"offsets.topic.replication.factor", TOPIC_CONFIG_TYPE_SHORT, "1", B_RO, false,
     "Replication of __consumer_offsets."},
    {"producer.id.expiration.ms", T_INT, "86400000", B_RO, false,
     "How long an idle producer's state is kept."},
    {"socket.request.max.bytes", T_INT, "104857600", B_RO, false, "Largest request size."},
    {"transactional.id.expiration.ms", T_INT, "604800000", B_RO, false,
     "How long an idle transactional id is kept."},
    {"unclean.leader.election.enable", T_BOOL, "false", B_RO, false,
     "Default unclean.leader.election.enable."},
};

const struct broker_config_def *broker_config_defs(size_t *n)
{
    *n = AL_ARRAY_SIZE(broker_defs);
    return broker_defs;
}

const struct broker_config_def *broker_config_find(const char *key)
{
    if (!key) return NULL;
    return bsearch(key, broker_defs, AL_ARRAY_SIZE(broker_defs), sizeof(broker_defs[0]),
                   name_cmp);
}

/* ---- broker-level defaults of topic configs ---- */

static int8_t source_of(const al_config *c, const struct config_key *k)
{
    switch ((enum config_source)c->source[k - config_keys]) {
    case CONFIG_SRC_ADMIN: return TOPIC_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER;
    case CONFIG_SRC_DEV:
    case CONFIG_SRC_FILE:
    case CONFIG_SRC_ENV:
    case CONFIG_SRC_FLAG: return TOPIC_CONFIG_SOURCE_STATIC_BROKER;
    default: return TOPIC_CONFIG_SOURCE_DEFAULT;
    }
}

int8_t broker_config_source(const al_config *c, const struct config_key *k)
{
    return source_of(c, k);
}

void broker_config_defaults_build(const al_config *c, struct broker_config_defaults *out)
{
    out->n = 0;
    for (size_t i = 0; i < AL_ARRAY_SIZE(defs); i++) {
        const struct config_key *k = config_find_kafka(defs[i].synonym);
        if (!k) continue;
        AL_ASSERT(out->n < BROKER_DEFAULTS_MAX);
        int j = out->n++;
        config_format(c, k, out->values[j], sizeof(out->values[j]));
        out->pairs[j] = (struct topic_config_pair){defs[i].synonym, out->values[j]};
        out->source[j] = source_of(c, k);
    }
}

int broker_config_check(const char *kafka_key, const char *value, char *msg, size_t msglen)
{
    for (size_t i = 0; i < AL_ARRAY_SIZE(defs); i++) {
        if (!defs[i].synonym || strcmp(defs[i].synonym, kafka_key)) continue;
        if (!value || def_parse(&defs[i], value, NULL, NULL, 0) < 0) {
            set_msg(msg, msglen, "Invalid value %s for configuration %s: %s",
                    value ? value : "null", kafka_key, defs[i].accepted);
            return AL_EINVAL;
        }
        return 0;
    }
    return 0;
}
