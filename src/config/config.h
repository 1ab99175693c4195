/*
 * config.h — the broker's configuration: one declarative table of keys (name, type, default,
 * bounds or allowed values, documentation, offset into `al_config`) and the loaders that fill
 * an `al_config` from it.
 *
 * Precedence, lowest to highest: built-in defaults < the --dev profile < the YAML file
 * (--config FILE) < environment (AILURUS_<UPPER_KEY>) < command-line flags. Every loader goes
 * through config_set(), so a value is parsed and checked the same way wherever it comes from,
 * and an unknown key or an invalid value is an error that names the key and what it accepts.
 *
 * Threading: a config is filled on the main thread before the shards start; afterwards it is
 * read-only and may be read from any shard. Accepted changes (admin API, Kafka AlterConfigs on
 * BROKER resources) go into copies: every shard keeps the configuration in effect in its
 * data_shard (cluster/data_plane.h), and keys marked `live` are read from there.
 */
#ifndef AL_CONFIG_H
#define AL_CONFIG_H

#include "base/base.h"
#include "reactor/io.h"

#include <stdio.h>

enum config_type {
    CONFIG_INT,    /* int64_t, checked against [min, max] */
    CONFIG_BYTES,  /* int64_t, accepts suffixes K, M, G (also KiB, MiB, GiB; powers of 1024) */
    CONFIG_BOOL,   /* bool: true/false, yes/no, on/off, 1/0 */
    CONFIG_STRING, /* char[size], NUL-terminated */
    CONFIG_ENUM,   /* int64_t index into `allowed` */
    CONFIG_ADDR,   /* struct config_addr: HOST:PORT (IPv4 or a name; [v6]:PORT) */
};

/* Where the effective value of a key came from (for `ailurus config print`). */
enum config_source {
    CONFIG_SRC_DEFAULT,
    CONFIG_SRC_DEV,
    CONFIG_SRC_FILE,
    CONFIG_SRC_ADMIN, /* persisted by the admin API (PUT /v1/cluster_config) */
    CONFIG_SRC_ENV,
    CONFIG_SRC_FLAG,
    CONFIG_SRC_DERIVED, /* filled in by config_finalize() */
};

#define CONFIG_HOST_MAX 256
#define CONFIG_PATH_MAX 1024
#define CONFIG_KEYS_MAX 64

struct config_addr {
    char host[CONFIG_HOST_MAX]; /* "" only for an unset advertised address */
    uint16_t port;
};

typedef struct al_config {
    int64_t node_id;
    char data_directory[CONFIG_PATH_MAX];
    struct config_addr kafka_addr;
    struct config_addr advertised_kafka_addr;
    struct config_addr admin_addr;
    struct config_addr rpc_addr;
    struct config_addr advertised_rpc_addr;
    char seed_servers[1024];
    int64_t smp;
    int64_t memory;
    int64_t heap_trim_threshold;
    int64_t batch_cache_idle_ms; /* a partition untouched this long leaves the batch cache */
    int64_t log_level; /* an al_log_level (the enum's allowed values are in that order) */
    int64_t kafka_max_frame_bytes;
    int64_t max_connections;
    int64_t connections_max_idle_ms;
    int64_t controlled_shutdown_timeout_ms; /* cluster mode: SIGTERM hands leaderships away */
    int64_t kafka_conn_max_inflight_requests;
    int64_t kafka_conn_max_inflight_bytes;
    int64_t kafka_shard_max_inflight_bytes;
    bool auto_create_topics_enabled;
    int64_t default_topic_partitions;
    int64_t default_topic_replications;
    /* cluster-wide defaults of topic configs (Kafka's broker-level synonyms) */
    int64_t log_retention_ms;
    int64_t retention_bytes;
    int64_t log_segment_size;
    int64_t log_segment_ms;
    int64_t log_cleanup_policy; /* index: delete, compact, compact,delete */
    int64_t kafka_batch_max_bytes;
    int64_t log_message_timestamp_type; /* index: CreateTime, LogAppendTime */
    int64_t tombstone_retention_ms;
    int64_t min_compaction_lag_ms;
    int64_t max_compaction_lag_ms;
    char cluster_id[128];
    bool developer_mode;
    bool overprovisioned;
    uint8_t source[CONFIG_KEYS_MAX]; /* enum config_source per key, by table index */
} al_config;

struct config_key {
    const char *name;           /* snake_case; flags accept - for _ */
    enum config_type type;
    size_t offset;              /* offsetof(al_config, field) */
    size_t size;                /* CONFIG_STRING: capacity including the NUL */
    const char *def;            /* default, as text (parsed by the same code as user input) */
    int64_t min, max;           /* CONFIG_INT / CONFIG_BYTES */
    const char *const *allowed; /* CONFIG_ENUM: NULL-terminated */
    const char *doc;
    bool live;         /* a change through the admin API or Kafka applies without a restart */
    const char *kafka; /* Kafka's broker config name for this key, or NULL */
};

/* The table, in documentation order, and its length. */
extern const struct config_key config_keys[];
extern const size_t config_key_count;

/* Returns the key named `name` ('-' and '_' are equal, case-insensitive) or NULL. */
const struct config_key *config_find(const char *name);

/* Fills every key with its default. Cannot fail (the defaults are checked by the unit test). */
void config_init(al_config *c);

/*
 * Parses `value` for `key` and stores it, recording `src`. Returns 0, AL_ENOTFOUND (unknown
 * key) or AL_EINVAL (bad value); on error writes a one-line message naming the key and the
 * accepted values into err (errlen bytes, may be 0) and leaves the config unchanged.
 */
int config_set(al_config *c, const char *key, const char *value, enum config_source src,
               char *err, size_t errlen);

/* Applies the --dev profile (one shard, 127.0.0.1:9092, small memory, auto-create on).
 * Call after config_init and before the other loaders. */
void config_apply_dev(al_config *c);

/*
 * Loads a YAML file: a mapping of key: scalar (a top-level `ailurus:` mapping is also
 * accepted and read the same way). Returns 0, -errno (cannot open), AL_EMALFORMED (not YAML,
 * or not a flat mapping of scalars), or config_set's errors; err says what and where.
 */
int config_load_yaml(al_config *c, const char *path, char *err, size_t errlen);

/*
 * Applies AILURUS_<UPPER_KEY>=value variables from envp (NULL-terminated, e.g. environ).
 * Variables that start with AILURUS_ but name no key (AILURUS_BIN, ...) are ignored: the prefix
 * is shared with tooling. Returns 0 or config_set's errors.
 */
int config_load_env(al_config *c, char *const *envp, char *err, size_t errlen);

/*
 * Cross-key checks and derived values, after all loaders: smp 0 -> the number of online CPUs
 * (capped), an empty advertised address -> the listen address (0.0.0.0 -> 127.0.0.1, with a
 * warning), memory 0 -> half of physical memory. Returns 0 or AL_EINVAL with err set.
 */
int config_finalize(al_config *c, char *err, size_t errlen);

/* Cluster-config changes accepted by the admin API are kept in this file of the data directory
 * (a JSON object of key -> value text, written with io_fs_write_atomic). */
#define CONFIG_ADMIN_FILE "cluster_config.json"

/*
 * Applies the admin API's persisted cluster-config changes from path (a missing file is not an
 * error) to every key whose value did not come from the environment or a flag: precedence is
 * defaults < --dev < YAML file < admin API < environment < flags. Returns 0, or a negative
 * error with err naming the file and the bad key or value.
 */
int config_load_admin(al_config *c, const char *path, char *err, size_t errlen);

/*
 * Applies one accepted cluster-config change to c: value non-NULL sets key (source
 * CONFIG_SRC_ADMIN); value NULL resets it to its value in start (the configuration the broker
 * started with), or to the default when start's value came from the admin API itself (start
 * NULL: the default). Returns config_set's results (AL_ENOTFOUND, AL_EINVAL with err set).
 */
int config_change(al_config *c, const al_config *start, const char *key, const char *value,
                  char *err, size_t errlen);

/*
 * The one writer of CONFIG_ADMIN_FILE (admin API and Kafka AlterConfigs share it): saves every
 * key whose source is CONFIG_SRC_ADMIN to <c->data_directory>/CONFIG_ADMIN_FILE with
 * io_fs_write_atomic (blocking: one small fsynced write, admin paths only). iop NULL: nothing
 * is written (returns 0). Returns 0 or a negative error (the file is then unchanged).
 */
int config_save_admin(io *iop, const al_config *c);

/*
 * Cluster mode: the configuration in effect on this node when the controller's cluster-wide
 * overrides (keys[i] = values[i], config-table names and value text, n of them) replace the
 * admin layer of start (this node's start-up configuration, which may hold the previous
 * overrides loaded from CONFIG_ADMIN_FILE). out = start with every admin-sourced key not in the
 * set reset (config_change with value NULL: to the default, see there), then every override
 * applied with source CONFIG_SRC_ADMIN, except keys this node got from its environment or
 * flags (those win, as at start-up). An unknown key or a value this node refuses is skipped
 * (the first one's message goes to err). Pure; any thread. Returns the number skipped.
 */
int config_with_overrides(al_config *out, const al_config *start, const char *const *keys,
                          const char *const *values, int n, char *err, size_t errlen);

/* The key whose Kafka broker config name is kafka_name ("broker.id" = "node.id"), or NULL. */
const struct config_key *config_find_kafka(const char *kafka_name);

/* Writes the value of key k in c as text (the form config_set accepts) into buf. */
void config_format(const al_config *c, const struct config_key *k, char *buf, size_t len);

/* Writes the effective configuration as YAML, one `key: value  # source` line per key. */
void config_print_yaml(const al_config *c, FILE *f);

/* Writes the Markdown reference table of every key (docs/CONFIG.md is generated from it). */
void config_print_docs(FILE *f);

/*
 * Command-line front end shared by `ailurus start` and `ailurus config`: builds a config from
 * defaults, --dev, --config FILE, the environment and the flags in argv[first..argc), in that
 * precedence, then finalizes it. Flags: --dev, --config F, --smp N, --node-id N,
 * --kafka-addr H:P, --advertise-kafka-addr H:P, --data-dir D, --log-level L, --set KEY=VALUE,
 * and --<any-key> VALUE. Returns 0, 1 (help printed) or a negative error (message printed to
 * stderr, naming the key or flag).
 */
int config_from_args(al_config *c, int argc, char **argv, int first, const char *usage_cmd);

#endif
