/*
 * kclient.h — THE Kafka client of the tree, on the reactor's io (src/reactor/io.h) using the
 * generated codec: connect to a numeric host, ApiVersions handshake (per API the version used
 * is min(our max, broker max)), pipelined requests matched by correlation id, one callback per
 * response with the decoded struct, acks=0 Produce (no response expected), request timeouts
 * and errors. Plus a blocking convenience layer for tools (kclient_sync_*: its own io_uring,
 * poll until the response or a timeout; resolves host names with getaddrinfo; responses can be
 * kept in a caller-owned arena) with bootstrap helpers (Metadata -> leader, and
 * FindCoordinator), a record-batch builder for producing (magic 2, CRC32C, optional
 * compression, record headers; built on src/storage/batch.h) and an iterator over the records
 * (and headers) of a Fetch response partition (decompressing through src/storage/batch.h).
 *
 * Threading: a kclient belongs to the thread of its io; every call and every callback happens
 * on that thread. A kclient_sync owns its io and belongs to the thread that opened it.
 *
 * Errors are negative: -errno from the network, AL_ETIMEDOUT (request timeout, after which the
 * connection is closed because responses come in order), AL_ECLOSED (closed by us or the peer),
 * AL_EUNSUPPORTED (the broker does not support the API), AL_EMALFORMED (a bad response; the
 * connection is closed). Kafka error codes inside responses are the caller's to read.
 * al_strerror (base.h) gives the text of any of them.
 */
#ifndef AL_CLIENT_KCLIENT_H
#define AL_CLIENT_KCLIENT_H

#include "base/base.h"
#include "kafka/gen/kafka_codec.h"
#include "reactor/io.h"
#include "storage/batch.h"

typedef struct kclient kclient;

/*
 * A response callback. err 0: resp points at the decoded kafka_<Api>Response (version `ver`),
 * valid only during the callback (it points into the connection's buffers and arena).
 * err < 0: the request failed (resp NULL). Runs on the io's thread from io_poll(); it may send
 * more requests or close the client, but must not free it.
 */
typedef void (*kclient_resp_cb)(kclient *c, void *ctx, int err, int16_t api_key, int16_t ver,
                                const void *resp);

/* Connect/handshake result: err 0 once ApiVersions has been exchanged, else < 0. */
typedef void (*kclient_conn_cb)(kclient *c, void *ctx, int err);

struct kclient_opts {
    const char *client_id;   /* default "ailurus-client"; copied */
    uint32_t timeout_ms;     /* per request; default 30000 */
    uint32_t max_inflight;   /* requests awaiting a response; default 1024 */
    uint32_t max_frame;      /* largest response accepted; default 64 MiB */
};

/* Allocates an unconnected client on iop. Returns 0 or -ENOMEM / AL_EINVAL. */
int kclient_create(kclient **out, io *iop, const struct kclient_opts *opts);

/*
 * Connects to host (numeric IPv4/IPv6) : port and does the ApiVersions handshake, then calls
 * cb. Requests may be queued with kclient_send before the handshake finishes only if their
 * version is given explicitly (kclient_send_v); otherwise wait for cb.
 */
void kclient_connect(kclient *c, const char *host, uint16_t port, kclient_conn_cb cb,
                     void *ctx);

/* True once the handshake has completed and the connection is open. */
bool kclient_ready(const kclient *c);

/* The version negotiated for api_key (min of ours and the broker's max), or -1 if either side
 * lacks it or the handshake has not completed. */
int16_t kclient_api_version(const kclient *c, int16_t api_key);

/*
 * Sends a request (req points at kafka_<Api>Request) with the negotiated version. A Produce
 * request with Acks == 0 gets no response: cb (may be NULL) runs with err 0 and resp NULL
 * from inside this call, once the request is queued.
 * Returns 0 (cb will run exactly once) or, without calling cb: AL_EUNSUPPORTED, AL_EFULL
 * (max_inflight reached), AL_ECLOSED, AL_EINVAL (the struct does not encode at that version),
 * -ENOMEM.
 */
int kclient_send(kclient *c, int16_t api_key, const void *req, kclient_resp_cb cb, void *ctx);

/* As kclient_send with an explicit version. */
int kclient_send_v(kclient *c, int16_t api_key, int16_t version, const void *req,
                   kclient_resp_cb cb, void *ctx);

/* Requests sent and not yet answered. */
uint32_t kclient_inflight(const kclient *c);

/* Bytes queued and not yet handed to the socket (back-pressure for producers). */
size_t kclient_queued_bytes(const kclient *c);

/*
 * Closes the connection: every outstanding request's cb runs with AL_ECLOSED (from inside this
 * call), pending io ops are cancelled. The memory stays until kclient_free; poll the io until
 * kclient_busy() is false before freeing.
 */
void kclient_close(kclient *c);

/* True while io ops of this client are still pending (after close: until their callbacks). */
bool kclient_busy(const kclient *c);

/* Frees a client that is closed (or never connected) and not busy. */
void kclient_free(kclient *c);

/* ---- blocking convenience API (tools) ---- */

typedef struct kclient_sync kclient_sync;

/*
 * Opens an io_uring io on the calling thread, connects to "host:port" and does the handshake,
 * waiting at most timeout_ms (which is also every later call's timeout). A host that is not a
 * numeric address is resolved with getaddrinfo (blocking: tools only, never on a shard) and
 * each resolved address is tried in turn. Returns 0, -errno (e.g. -ECONNREFUSED),
 * AL_ETIMEDOUT, AL_EINVAL (bad address), AL_ENOTFOUND (the name does not resolve).
 */
int kclient_sync_open(kclient_sync **out, const char *host_port, uint32_t timeout_ms);

/* Closes the connection, waits for its ops and frees everything (NULL is fine). */
void kclient_sync_close(kclient_sync *s);

/*
 * Sends req (kafka_<Api>Request) at the negotiated version and waits for its response (timeout
 * as opened). On success *resp points at the decoded response struct, valid until the next call
 * on s or its close, and *ver (may be NULL) is the version used. Errors as kclient_send and the
 * response callback.
 */
int kclient_sync_call(kclient_sync *s, int16_t api_key, const void *req, const void **resp,
                      int16_t *ver);

/*
 * As kclient_sync_call, but the version is min(max_version, the negotiated one) and the
 * response is decoded into the caller's struct resp (a kafka_<Api>Response) with its strings,
 * arrays and the raw response bytes allocated from the caller's arena: it stays valid until the
 * caller resets or frees that arena, whatever calls follow on s. An acks=0 Produce leaves resp
 * initialised (empty). Returns 0 or the errors of kclient_sync_call (-ENOMEM when the arena is
 * exhausted).
 */
int kclient_sync_call_into(kclient_sync *s, int16_t api_key, int16_t max_version,
                           const void *req, void *resp, kafka_arena *arena, int16_t *ver);

/* True while the connection is open (false after a timeout or a network error closed it). */
bool kclient_sync_ready(kclient_sync *s);

/* The underlying client (for kclient_api_version and the like). */
kclient *kclient_sync_client(kclient_sync *s);

/*
 * Bootstrap: Metadata for one topic, then the leader of `partition`: writes "host:port" into
 * out (cap bytes). Returns 0, AL_ENOTFOUND (no such topic/partition or no leader), a positive
 * Kafka error code of the topic/partition, or a call error.
 */
int kclient_sync_leader(kclient_sync *s, const char *topic, int32_t partition, char *out,
                        size_t cap);

/* FindCoordinator for a group (key_type 0) or transactional id (1): writes "host:port".
 * Returns 0, a positive Kafka error code, or a call error. */
int kclient_sync_coordinator(kclient_sync *s, const char *key, int8_t key_type, char *out,
                             size_t cap);

/* Splits "host:port" (IPv6 as "[addr]:port"). Returns 0 or AL_EINVAL. */
int kclient_parse_addr(const char *host_port, char *host, size_t host_cap, uint16_t *port);

/* ---- record batches ---- */

/* One record header (value NULL with len -1 for null; keys are never null). */
typedef struct kclient_header {
    const void *key;
    int32_t key_len;
    const void *value;
    int32_t value_len;
} kclient_header;

/* One record to produce (key/value NULL with len -1 for null). */
typedef struct kclient_record {
    const void *key;
    int32_t key_len;
    const void *value;
    int32_t value_len;
    int64_t timestamp;             /* ms since the epoch */
    const kclient_header *headers; /* header_count entries (NULL when 0); not kept */
    int32_t header_count;
} kclient_record;

/* Upper bound of the bytes kclient_batch_build needs for these records (any compression). */
size_t kclient_batch_bound(const kclient_record *recs, int n);

/*
 * Builds one magic-2 batch (base offset 0, producer id -1, no sequence) of n >= 1 records into
 * out (cap >= kclient_batch_bound), compressed with `compression` (STORAGE_COMP_*), CRC set.
 * Falls back to no compression when the compressed form is not smaller. Returns the size or
 * AL_ETOOLARGE / AL_EINVAL / -ENOMEM.
 */
int64_t kclient_batch_build(void *out, size_t cap, const kclient_record *recs, int n,
                            int compression);

/* Parses a compression name ("none", "gzip", "snappy", "lz4", "zstd"): the STORAGE_COMP_*
 * value or AL_EINVAL. */
int kclient_compression_parse(const char *name);

/* Iterates the records of a Fetch response partition's Records bytes: whole batches back to
 * back, a trailing partial batch ignored (the broker may cut one). */
typedef struct kclient_fetch_iter {
    const uint8_t *p, *end;
    int64_t base_offset;
    int64_t base_timestamp;
    const uint8_t *recs;
    size_t recs_len;
    uint8_t *owned;      /* decompressed records of the current batch */
    bool in_batch;
    int err;
    int32_t count;
    bool log_append;     /* the current batch uses log-append time (max_timestamp) */
    int64_t max_timestamp;
    int64_t next_offset; /* one past the last offset of the batches entered so far (-1: none) */
    storage_record_iter rit;
} kclient_fetch_iter;

typedef struct kclient_fetched {
    int64_t offset;
    int64_t timestamp;
    const uint8_t *key;
    int32_t key_len;
    const uint8_t *value;
    int32_t value_len;
    const uint8_t *headers; /* raw headers (count varint first); read with kclient_header_iter */
    size_t headers_size;
    int32_t header_count;
} kclient_fetched;

void kclient_fetch_iter_init(kclient_fetch_iter *it, const void *records, size_t len);
/* 1 and *out filled (valid until the next call), 0 at the end, or a negative error
 * (AL_ECORRUPT, AL_EMALFORMED, -ENOMEM). */
int kclient_fetch_iter_next(kclient_fetch_iter *it, kclient_fetched *out);
/* Frees what the iterator holds (always call it; safe after an error). */
void kclient_fetch_iter_free(kclient_fetch_iter *it);

/* Iterates the headers of a fetched record (pointers into its batch, valid as the record). */
typedef struct kclient_header_iter {
    al_rd rd;
    int32_t left;
} kclient_header_iter;

void kclient_header_iter_init(kclient_header_iter *it, const kclient_fetched *f);
/* 1 and *out filled, 0 at the end, AL_EMALFORMED on bad header encoding. */
int kclient_header_iter_next(kclient_header_iter *it, kclient_header *out);

#endif
