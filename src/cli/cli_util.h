/*
 * cli_util.h — shared plumbing of the operator commands (`ailurus topic|group|cluster`):
 * flag parsing with the global flags (--brokers, --admin-url, --format, --timeout), output as
 * aligned tables or JSON, a progress bar, error messages that say what to do next, the CLI's
 * Kafka session (bootstrap, one kclient_sync connection per broker, metadata, coordinator
 * lookup, kclient errors mapped to exit codes) and a tiny blocking HTTP/1.1 client for the
 * admin API (loopback only).
 *
 * Everything here is single-threaded, blocking and meant for short-lived CLI processes. The
 * Kafka wire is src/client/kclient (its blocking kclient_sync API). Exit codes are the CLI_*
 * values of src/cli/commands.h.
 */
#ifndef AL_CLI_UTIL_H
#define AL_CLI_UTIL_H

#include "cli/commands.h"
#include "kafka/gen/kafka_codec.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum { CLI_FMT_TABLE = 0, CLI_FMT_JSON = 1, CLI_FMT_TEXT = 2 };

/* Global options every operator command accepts. */
typedef struct cli_opts {
    const char *brokers;   /* "HOST:PORT[,HOST:PORT..]" */
    const char *admin_url; /* "http://HOST:PORT" */
    const char *format_s;  /* as given; parsed into format */
    int format;            /* CLI_FMT_* */
    int64_t timeout_ms;
} cli_opts;

/* --- flags --- */

enum { CLI_F_STR, CLI_F_INT, CLI_F_BOOL, CLI_F_LIST };

#define CLI_LIST_MAX 64
typedef struct cli_list { /* repeated string flag (-c k=v -c k2=v2) */
    const char *v[CLI_LIST_MAX];
    int n;
} cli_list;

typedef struct cli_flag {
    const char *lng; /* "--name" without dashes */
    char shrt;       /* 0: none */
    int kind;        /* CLI_F_* */
    void *dst;       /* const char **, int64_t *, bool *, cli_list * */
    const char *help;
} cli_flag;

/* The global flags as table rows; end a command's table with CLI_GLOBAL_FLAGS(&opts), {0}. */
#define CLI_GLOBAL_FLAGS(o)                                                                  \
    {"brokers", 0, CLI_F_STR, &(o)->brokers, "HOST:PORT[,..] (env AILURUS_BROKERS)"},         \
    {"admin-url", 0, CLI_F_STR, &(o)->admin_url, "admin API base URL"},                     \
    {"format", 0, CLI_F_STR, &(o)->format_s, "table|json (consume: text|json)"},            \
    {"timeout", 0, CLI_F_INT, &(o)->timeout_ms, "per-request timeout in ms"}

/* Fills the defaults of o (env AILURUS_BROKERS, 127.0.0.1:9092, http://127.0.0.1:9644, 10 s). */
void cli_opts_init(cli_opts *o);

/*
 * Parses argv[0..argc) against flags (terminated by a row with lng NULL). Positional arguments
 * go to pos[] (at most maxpos; more is a usage error). "--" ends flags. Accepts "--name v",
 * "--name=v", "-x v". Parses o->format_s into o->format when o is not NULL. Returns 0, or
 * CLI_USAGE after printing what is wrong and `usage` to stderr. "--help"/"-h" prints usage and
 * the flags to stdout and returns -1 (the caller exits 0).
 */
int cli_flags_parse(const cli_flag *flags, int argc, char **argv, const char **pos, int *npos,
                    int maxpos, cli_opts *o, const char *usage);

/* --- output --- */

/* Prints an error line "ailurus: <msg>" to stderr. Returns code (for `return cli_err(...)`). */
int cli_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Prints rows (a JSON array of objects) as a table with the given columns (NULL-terminated
 * key names; headers are the keys upper-cased) or, in JSON mode, the whole array. Values that
 * are arrays are joined with ",". Steals nothing: the caller still owns rows.
 */
void cli_print_rows(const cli_opts *o, json_t *rows, const char *const *cols);
/* Prints obj as "key: value" lines (table mode) or as JSON. Caller owns obj. */
void cli_print_object(const cli_opts *o, json_t *obj);

/* Progress bar on stderr: done of total (bytes). Draws at most every 100 ms; final=true ends the
 * line. */
void cli_progress(int64_t done, int64_t total, bool final);

/* Wall-clock milliseconds since the epoch; monotonic milliseconds. */
int64_t cli_now_ms(void);
int64_t cli_mono_ms(void);

/* --- Kafka --- */

typedef struct kclient_sync kclient_sync;

typedef struct cli_conn {
    kclient_sync *ks; /* NULL: not connected (connected, with ApiVersions, on first use) */
    int32_t node_id;
    char host[256];
    int port;
} cli_conn;

#define CLI_MAX_NODES 32
typedef struct cli_kafka {
    const cli_opts *o;
    cli_conn boot;                   /* the first reachable bootstrap broker */
    char boot_desc[256];             /* the --brokers value, for messages */
    cli_conn nodes[CLI_MAX_NODES];   /* by broker, from the last Metadata */
    int nnodes;
    kafka_arena arena;               /* requests, response bytes and decoded responses */
    kafka_MetadataResponse *md;      /* last metadata (in the arena) */
    int last_err;                    /* CLI code of the last NULL from node/coordinator */
} cli_kafka;

/*
 * Connects to the first reachable bootstrap broker in o->brokers (host names are resolved) and
 * does the ApiVersions handshake. Returns CLI_OK, CLI_USAGE (bad address), CLI_FAILED (the
 * handshake failed) or CLI_UNREACHABLE after printing what to do next. k must be closed with
 * cli_kafka_close either way.
 */
int cli_kafka_open(cli_kafka *k, const cli_opts *o);
void cli_kafka_close(cli_kafka *k);

/*
 * One request/response round trip on c (NULL: the bootstrap connection) through
 * kclient_sync_call_into: req (a kafka_<Api>Request) is sent at `version`, lowered to the
 * version negotiated by ApiVersions when that is smaller, waiting up to the timeout; the
 * response is decoded into resp (a kafka_<Api>Response) whose bytes and strings live in
 * k->arena, so several responses stay valid together until the arena is reset. A connection
 * closed by an earlier timeout is reopened. Returns CLI_OK, or CLI_UNREACHABLE (connection
 * failed/closed/timed out; message printed) or CLI_FAILED (malformed response, or the broker
 * lacks the api; printed).
 */
int cli_kafka_call(cli_kafka *k, cli_conn *c, int16_t api, int16_t version, const void *req,
                   void *resp);

/* Metadata for topics (NULL/0: all topics) into k->md. Returns as cli_kafka_call. */
int cli_kafka_metadata(cli_kafka *k, const char *const *topics, int ntopics);

/* The connection to broker node_id (from k->md), connecting on first use; NULL after printing
 * an error when it is unknown (k->last_err = CLI_FAILED) or unreachable (CLI_UNREACHABLE). */
cli_conn *cli_kafka_node(cli_kafka *k, int32_t node_id);

/* The topic in k->md, or NULL. */
const kafka_MetadataResponse_MetadataResponseTopic *cli_md_topic(const cli_kafka *k,
                                                                 const char *topic);

/* The coordinator connection for a consumer group (FindCoordinator); NULL after printing, with
 * the exit code in k->last_err. */
cli_conn *cli_kafka_coordinator(cli_kafka *k, const char *group);

/* Arena allocation that never returns NULL (aborts on exhaustion: CLI only). */
void *cli_alloc(cli_kafka *k, size_t n);

/* "TOPIC_NAME (message)" text for a Kafka error code and optional message. */
const char *cli_kerr(int16_t code, kafka_str msg, char *buf, size_t cap);

/* kafka_str -> NUL-terminated copy in the arena. */
char *cli_strdup_k(cli_kafka *k, kafka_str s);

/* --- admin API (HTTP/1.1) --- */

/*
 * Sends `method path` with an optional JSON body to o->admin_url and reads the whole response.
 * *status gets the HTTP status and *body a malloc'd NUL-terminated body (caller frees).
 * Returns CLI_OK, CLI_USAGE (bad URL) or CLI_UNREACHABLE (printed).
 */
int cli_http(const cli_opts *o, const char *method, const char *path, const char *body,
             int *status, char **resp_body);

#endif
