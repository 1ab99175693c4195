/*
 * topic_config.h — every topic-level config key of Apache Kafka 3.8, declared in one table
 * (type, default, validation, doc, broker synonym), and the logic around it: validating a value,
 * resolving a topic's overrides into a typed struct the storage layer consumes, the
 * IncrementalAlterConfigs (SET / DELETE / APPEND / SUBTRACT) and AlterConfigs (replace all)
 * semantics on a topic's override set, the entries DescribeConfigs returns (value, source,
 * is_default, read_only, sensitive, type code, synonyms, doc), the broker-level keys a
 * DescribeConfigs on a broker resource lists, and a JSON form of a topic's overrides.
 *
 * Pure logic: no I/O, no threads, no global mutable state; any thread may call it.
 * Errors: AL_ENOTFOUND for an unknown key and AL_EINVAL for a bad value or a forbidden operation;
 * a handler maps both to Kafka's INVALID_CONFIG (40) and returns the message written to `msg`,
 * which names the key and, for enumerations, the accepted values.
 * (topic_table.h owns the names topic_config_kv and topic_config_value; this module uses the
 * prefix topic_config_ for everything else.)
 */
#ifndef AL_CLUSTER_TOPIC_CONFIG_H
#define AL_CLUSTER_TOPIC_CONFIG_H

#include "base/base.h"

/* DescribeConfigs v3+ ConfigType codes. */
enum topic_config_type {
    TOPIC_CONFIG_TYPE_UNKNOWN = 0,
    TOPIC_CONFIG_TYPE_BOOLEAN = 1,
    TOPIC_CONFIG_TYPE_STRING = 2,
    TOPIC_CONFIG_TYPE_INT = 3,
    TOPIC_CONFIG_TYPE_SHORT = 4,
    TOPIC_CONFIG_TYPE_LONG = 5,
    TOPIC_CONFIG_TYPE_DOUBLE = 6,
    TOPIC_CONFIG_TYPE_LIST = 7,
    TOPIC_CONFIG_TYPE_CLASS = 8,
    TOPIC_CONFIG_TYPE_PASSWORD = 9,
};

/* DescribeConfigs ConfigSource codes. */
enum topic_config_source {
    TOPIC_CONFIG_SOURCE_UNKNOWN = 0,
    TOPIC_CONFIG_SOURCE_TOPIC = 1,           /* DYNAMIC_TOPIC_CONFIG */
    TOPIC_CONFIG_SOURCE_DYNAMIC_BROKER = 2,
    TOPIC_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER = 3,
    TOPIC_CONFIG_SOURCE_STATIC_BROKER = 4,
    TOPIC_CONFIG_SOURCE_DEFAULT = 5,
};

/* IncrementalAlterConfigs operation codes. */
enum topic_config_op {
    TOPIC_CONFIG_OP_SET = 0,
    TOPIC_CONFIG_OP_DELETE = 1,
    TOPIC_CONFIG_OP_APPEND = 2,
    TOPIC_CONFIG_OP_SUBTRACT = 3,
};

enum { TOPIC_CLEANUP_DELETE = 1, TOPIC_CLEANUP_COMPACT = 2 };
enum { TOPIC_TIMESTAMP_CREATE_TIME = 0, TOPIC_TIMESTAMP_LOG_APPEND_TIME = 1 };
enum {
    TOPIC_COMPRESSION_UNCOMPRESSED = 0,
    TOPIC_COMPRESSION_ZSTD = 1,
    TOPIC_COMPRESSION_LZ4 = 2,
    TOPIC_COMPRESSION_SNAPPY = 3,
    TOPIC_COMPRESSION_GZIP = 4,
    TOPIC_COMPRESSION_PRODUCER = 5,
};

/* A topic's effective configuration, typed, for the storage and produce paths. */
struct topic_configs {
    uint32_t cleanup_policy; /* TOPIC_CLEANUP_* bits; 0 = neither */
    int32_t compression_type; /* TOPIC_COMPRESSION_* */
    int32_t compression_gzip_level;
    int32_t compression_lz4_level;
    int32_t compression_zstd_level;
    int64_t delete_retention_ms;
    int64_t file_delete_delay_ms;
    int64_t flush_messages;
    int64_t flush_ms;
    int32_t index_interval_bytes;
    int64_t local_retention_bytes;
    int64_t local_retention_ms;
    int64_t max_compaction_lag_ms;
    int32_t max_message_bytes;
    bool message_downconversion_enable;
    int64_t message_timestamp_after_max_ms;
    int64_t message_timestamp_before_max_ms;
    int64_t message_timestamp_difference_max_ms;
    int32_t message_timestamp_type; /* TOPIC_TIMESTAMP_* */
    double min_cleanable_dirty_ratio;
    int64_t min_compaction_lag_ms;
    int32_t min_insync_replicas;
    bool preallocate;
    bool remote_storage_enable;
    int64_t retention_bytes; /* -1: unlimited */
    int64_t retention_ms;    /* -1: unlimited */
    int32_t segment_bytes;
    int32_t segment_index_bytes;
    int64_t segment_jitter_ms;
    int64_t segment_ms;
    bool unclean_leader_election_enable;
};

/* How a definition's parsed value is stored in struct topic_configs. */
enum topic_config_field {
    TOPIC_CONFIG_FIELD_NONE, /* validated and described, not typed (e.g. throttled replicas) */
    TOPIC_CONFIG_FIELD_I32,
    TOPIC_CONFIG_FIELD_I64,
    TOPIC_CONFIG_FIELD_BOOL,
    TOPIC_CONFIG_FIELD_F64,
    TOPIC_CONFIG_FIELD_ENUM, /* int32 index into choices */
    TOPIC_CONFIG_FIELD_MASK, /* uint32 bit i set when choices[i] is in the list */
};

struct topic_config_def {
    const char *name;
    uint8_t type;              /* enum topic_config_type */
    const char *default_value; /* Kafka's default, as DescribeConfigs shows it */
    const char *synonym;       /* broker-level key that supplies the default, or NULL */
    int64_t min, max;          /* INT/LONG range (inclusive) */
    double dmin, dmax;         /* DOUBLE range */
    const char *const *choices; /* NULL-terminated accepted values (STRING) or items (LIST) */
    int (*check)(const char *value); /* extra validator: 0 or AL_EINVAL; may be NULL */
    const char *accepted;      /* human text of what is accepted, for messages */
    uint8_t field;             /* enum topic_config_field */
    size_t offset;             /* offsetof(struct topic_configs, ...) */
    const char *doc;
};

/* A (key, value) pair; value NULL only where an operation allows it. */
struct topic_config_pair {
    const char *key;
    const char *value;
};

/* One IncrementalAlterConfigs operation. */
struct topic_config_alter_op {
    const char *key;
    const char *value; /* NULL allowed for DELETE */
    int op;            /* enum topic_config_op */
};

/* A topic's overrides (what the user set), owned strings, sorted by key. */
struct topic_config_set {
    int n;
    struct topic_config_owned {
        char *key;
        char *value;
    } *items;
};

/* The table: all topic-level definitions, sorted by name. */
const struct topic_config_def *topic_config_defs(size_t *n);

/* The definition of key, or NULL when Kafka 3.8 has no such topic config. */
const struct topic_config_def *topic_config_find(const char *key);

/*
 * Validates value for key. Returns 0, AL_ENOTFOUND (unknown key) or AL_EINVAL (bad value). On
 * error writes a message like "Invalid value x for configuration message.timestamp.type: String
 * must be one of: CreateTime, LogAppendTime" into msg (msglen bytes, may be 0).
 */
int topic_config_check(const char *key, const char *value, char *msg, size_t msglen);

/* Fills *out with Kafka's defaults for every key. */
void topic_config_defaults(struct topic_configs *out);

/*
 * Resolves a topic's effective config: each key takes the topic override if present, else the
 * broker value for its synonym (broker pairs are keyed by the broker synonym name, e.g.
 * "log.retention.ms"; unknown broker keys are ignored), else Kafka's default. Checks every value
 * and the cross-key rules (min.compaction.lag.ms <= max.compaction.lag.ms; with
 * remote.storage.enable, local.retention.* within retention.*). Returns 0, AL_ENOTFOUND or
 * AL_EINVAL (message in msg); *out is filled only on success.
 */
int topic_config_resolve(const struct topic_config_pair *topic, int ntopic,
                         const struct topic_config_pair *broker, int nbroker,
                         struct topic_configs *out, char *msg, size_t msglen);

/* ---- override sets ---- */

void topic_config_set_init(struct topic_config_set *s);
void topic_config_set_free(struct topic_config_set *s);
/* The override for key, or NULL. */
const char *topic_config_set_get(const struct topic_config_set *s, const char *key);
/* Copies s into *out (initialised by this call). Returns 0 or -ENOMEM. */
int topic_config_set_copy(const struct topic_config_set *s, struct topic_config_set *out);

/*
 * IncrementalAlterConfigs on a topic's overrides: applies ops in order to a copy, validates
 * every key touched and the cross-key rules, and only then replaces *s (all or nothing).
 * SET needs a value; DELETE removes the override (any name, unknown ones included, as Kafka
 * does not validate deleted names); APPEND / SUBTRACT are allowed only for LIST
 * keys and start from the override or else the default; APPEND skips items already present.
 * The same key twice in one call is AL_EINVAL (Kafka: INVALID_REQUEST; the handler may map
 * it so). With validate_only the set is not changed. Returns 0, AL_ENOTFOUND, AL_EINVAL or
 * -ENOMEM; msg as for topic_config_check.
 */
int topic_config_alter_incremental(struct topic_config_set *s,
                                   const struct topic_config_alter_op *ops,
                                   int nops, bool validate_only, char *msg, size_t msglen);

/*
 * APPEND or SUBTRACT (op) the comma-separated items of arg to / from the list cur, writing the
 * resulting list into out (cap bytes); APPEND skips items already present. Returns 0 or
 * AL_EINVAL (another op, too many items, or the result does not fit).
 */
int topic_config_list_apply(const char *cur, const char *arg, int op, char *out, size_t cap);

/*
 * AlterConfigs (legacy): replaces all overrides with pairs (each value non-NULL; a NULL value
 * means "not set", as Kafka treats it), after validating them all. Returns as above.
 */
int topic_config_replace(struct topic_config_set *s, const struct topic_config_pair *pairs, int n,
                         bool validate_only, char *msg, size_t msglen);

/* Resolve using a set's overrides (see topic_config_resolve). */
int topic_config_set_resolve(const struct topic_config_set *s,
                             const struct topic_config_pair *broker, int nbroker,
                             struct topic_configs *out, char *msg, size_t msglen);

/*
 * Serialises overrides as a JSON object {"key":"value",...} into a malloc'd NUL-terminated
 * string the caller frees. Returns 0 or -ENOMEM.
 */
int topic_config_set_to_json(const struct topic_config_set *s, char **out);

/*
 * Parses the JSON form into *s (initialised by this call). Keys are not re-validated here (a
 * newer version may know more keys): the caller resolves afterwards. Returns 0, AL_ECORRUPT
 * (not an object of strings) or -ENOMEM.
 */
int topic_config_set_from_json(struct topic_config_set *s, const char *json, size_t len);

/* ---- DescribeConfigs ---- */

struct topic_config_synonym {
    const char *name;
    const char *value;
    int8_t source; /* enum topic_config_source */
};

struct topic_config_entry {
    const char *name;
    const char *value; /* points into the set, the broker pairs or the table */
    bool read_only;
    bool is_default;
    bool sensitive;
    int8_t source; /* enum topic_config_source */
    int8_t type;   /* enum topic_config_type */
    const char *doc;
    int nsynonyms; /* 1..3, most specific first */
    struct topic_config_synonym synonyms[3];
};

/*
 * The broker-level values that supply topic defaults: for every topic config whose broker
 * synonym (e.g. log.retention.ms) is a key of the broker's config table (config_find_kafka),
 * the synonym, its value as Kafka writes it, and where it came from (DEFAULT,
 * STATIC_BROKER for --dev/YAML/env/flags, DYNAMIC_DEFAULT_BROKER for the admin API and
 * AlterConfigs). pairs[i].value points into values[i]: do not copy the struct by value,
 * build it again.
 */
#define BROKER_DEFAULTS_MAX 24
struct broker_config_defaults {
    int n;
    struct topic_config_pair pairs[BROKER_DEFAULTS_MAX];
    int8_t source[BROKER_DEFAULTS_MAX]; /* enum topic_config_source */
    char values[BROKER_DEFAULTS_MAX][32];
};

struct al_config;
struct config_key;

/* Fills *out from configuration c (see above). */
void broker_config_defaults_build(const struct al_config *c, struct broker_config_defaults *out);

/* The DescribeConfigs source of key k's value in c (enum topic_config_source). */
int8_t broker_config_source(const struct al_config *c, const struct config_key *k);

/*
 * Checks value for broker key kafka_key the way the topic config it defaults checks it (a key
 * that is no topic synonym is accepted here; the config table checks it). Returns 0 or
 * AL_EINVAL with "Invalid value v for configuration kafka_key: <accepted>" in msg.
 */
int broker_config_check(const char *kafka_key, const char *value, char *msg, size_t msglen);

/*
 * The DescribeConfigs entry of def for a topic with overrides s and the broker-level defaults
 * broker (may be NULL; an entry whose source is DEFAULT is not listed as a synonym of its own:
 * its value is the DEFAULT synonym's, else the table's Kafka default is). Pointers in *out stay
 * valid while s, broker and the table do.
 */
void topic_config_describe(const struct topic_config_set *s,
                           const struct broker_config_defaults *broker,
                           const struct topic_config_def *def, struct topic_config_entry *out);

/* ---- broker-level keys (DescribeConfigs on a BROKER resource) ---- */

struct broker_config_def {
    const char *name;
    uint8_t type;
    const char *default_value; /* NULL: Kafka shows null */
    bool read_only;            /* not changeable through AlterConfigs (no live config key) */
    bool sensitive;
    const char *doc;
};

/* The broker keys and their defaults, sorted by name. */
const struct broker_config_def *broker_config_defs(size_t *n);
const struct broker_config_def *broker_config_find(const char *key);

#endif
