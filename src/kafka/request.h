/*
 * request.h — one Kafka request as the dispatcher and the handlers see it, the handler table
 * contract, and how a handler answers (now or later).
 *
 * Life of a request (the connection layer, src/net/, does the framing):
 *   1. The connection cuts a frame, makes a kafka_req owning the frame bytes, fills the
 *      connection fields (owner, on_done, seq, shard, broker) and calls kafka_dispatch().
 *   2. kafka_dispatch() checks the API key and version against the handler table, parses the
 *      header, decodes the body into req->msg (a kafka_<Api>Request in req->arena) and calls the
 *      handler.
 *   3. The handler answers with kafka_req_respond(req, &resp) (encodes the response at once),
 *      kafka_req_respond_none(req) (acks=0 Produce: no bytes go out) or kafka_req_fail(req, err)
 *      (the connection is closed, as Kafka does for malformed requests). It may do so before
 *      returning, or return KAFKA_DEFERRED and do so later, ON THE SAME SHARD (forward work to
 *      another shard, wait for an fsync, ...), exactly once.
 *   4. The completion calls req->on_done(req); the connection puts the response in request order
 *      (responses leave a connection in the order the requests arrived, whatever order the
 *      handlers finish in) and frees the req after the bytes are sent (resp, or resp_iov when
 *      records go by reference; see kafka_req_hold).
 * If the connection closes while a request is deferred, the request stays valid; its completion
 * is then dropped and the req freed. So a deferred handler never needs to check the connection.
 */
#ifndef AL_KAFKA_REQUEST_H
#define AL_KAFKA_REQUEST_H

#include "base/base.h"
#include "kafka/errors.h"
#include "kafka_codec.h"

#include <sys/uio.h>

struct al_config;

/* Broker-wide, read-only state the handlers may read from any shard. */
struct kafka_broker {
    const struct al_config *cfg;
    int32_t node_id;
    const char *advertised_host; /* clients connect here (Metadata broker list) */
    int32_t advertised_port;
    const char *cluster_id;      /* Metadata v2+ ClusterId */
};

enum kafka_req_state {
    KAFKA_REQ_NEW = 0,  /* made by the connection, not dispatched yet */
    KAFKA_REQ_RUNNING,  /* inside kafka_dispatch / the handler */
    KAFKA_REQ_DEFERRED, /* the handler returned KAFKA_DEFERRED and will complete it later */
    KAFKA_REQ_DONE,     /* answered: resp/resp_len set, or no_response, or failed */
};

typedef struct kafka_req kafka_req;
struct kafka_req {
    /* ---- the request: read-only for handlers ---- */
    int16_t api_key;
    int16_t api_version;
    int32_t correlation_id;
    kafka_str client_id;        /* points into frame (null: len -1) */
    const uint8_t *body;        /* request body after the header, inside frame */
    size_t body_len;
    void *msg;                  /* decoded kafka_<Api>Request (in arena); NULL before dispatch */
    kafka_arena arena;          /* per-request decode arena; handlers may allocate from it */
    const struct kafka_broker *broker;
    int shard;                  /* the connection's shard: completions must happen there */
    void *handler_state;        /* free for the handler (e.g. its own deferred context) */

    /* ---- the answer: written by kafka_req_respond, _none and _fail ---- */
    enum kafka_req_state state;
    uint8_t *resp;              /* whole response frame, with its 4-byte size (malloc'd) */
    size_t resp_len;
    size_t resp_cap;            /* private (request pool): capacity of resp */
    uint8_t *resp_keep;         /* private: a spare response buffer from the pool */
    size_t keep_cap;            /* private: its capacity */
    struct iovec *resp_iov;     /* NULL, or the response as gathered pieces (in arena): the
                                   contiguous parts of resp and the records sent by reference
                                   (see kafka_req_hold); resp_len is then the wire total */
    int resp_iovcnt;
    struct kafka_req_hold *holds; /* private: memory held until the req is freed */
    struct kafka_req_pieces *pieces, *pieces_tail; /* private: records in several pieces */
    struct kafka_req_pieces *pieces_cur;           /* private: lookup cursor */
    bool no_response;           /* answered, but nothing goes on the wire (acks=0) */
    int fail;                   /* < 0: close the connection (set by kafka_req_fail) */
    const char *fail_reason;    /* static text for the connection's log line, or NULL */

    /* ---- owned by the connection layer ---- */
    uint8_t *frame;             /* the request frame without its size prefix */
    size_t frame_len;
    uint8_t *frame_mem;         /* the malloc'd block holding frame (frame itself if NULL) */
    size_t frame_cap;           /* private (request pool): capacity of frame's buffer when
                                   it came from kafka_req_new_copy, else 0 */
    uint8_t *frame_keep;        /* private: a spare frame buffer from the pool */
    void *owner;                /* the connection (NULL once it closed) */
    void (*on_done)(kafka_req *req); /* called once when the req reaches KAFKA_REQ_DONE; if
                                        in_dispatch is set it must not free the req (the
                                        caller of kafka_dispatch picks it up on return) */
    bool in_dispatch;           /* inside kafka_dispatch() */
    uint64_t seq;               /* arrival number on the connection */
    kafka_req *next;            /* the connection's pipeline list */
    size_t sent;                /* bytes of resp already sent */
    uint64_t metrics_t0_ns;     /* operations: arrival time for the latency metric */
};

/* Handler return values (besides a negative error, which closes the connection). */
enum { KAFKA_DONE = 0, KAFKA_DEFERRED = 1 };

/*
 * A handler: reads req->msg (already decoded for req->api_version), then answers (see above).
 * Returns KAFKA_DONE if it answered before returning, KAFKA_DEFERRED if it will answer later
 * on req->shard, or a negative error (the dispatcher then fails the request: connection closed).
 */
typedef int (*kafka_handler_fn)(kafka_req *req);

struct kafka_handler {
    int16_t api_key;
    int16_t min_version, max_version; /* what we implement AND advertise in ApiVersions */
    kafka_handler_fn fn;
};

/* The handler table (src/kafka/dispatch.c): ApiVersions advertises exactly these entries. */
extern const struct kafka_handler kafka_handlers[];
extern const size_t kafka_handler_count;

/* Returns the table entry for api_key or NULL. */
const struct kafka_handler *kafka_handler_find(int16_t api_key);

/*
 * Dispatches a request whose frame/frame_len/broker/shard/on_done/owner are set. On return the
 * req is DONE (answered or failed; on_done has been called) or DEFERRED (the handler holds it).
 * Errors (unknown API key, unsupported version of an API other than ApiVersions, malformed
 * header or body) make the req DONE with fail < 0 and a log line: the connection closes it.
 * Call on the connection's shard.
 */
void kafka_dispatch(kafka_req *req);

/*
 * Encodes `resp` (a kafka_<Api>Response for req->api_key / req->api_version) with the right
 * response header into req->resp, marks the req DONE and calls on_done. Returns 0, or a
 * negative error (encoding failed or out of memory), in which case the req is failed instead
 * (connection closed) and on_done is still called. Exactly once per req, on req->shard.
 */
int kafka_req_respond(kafka_req *req, const void *resp);

/*
 * Zero-copy responses (Fetch): kafka_req_respond encodes a FetchResponse's records of at least
 * KAFKA_REQ_REF_MIN bytes by reference (kafka_refs, codec.h): they are not copied into resp but
 * sent from where they are, through resp_iov. The handler must keep that memory alive until
 * the request is freed, which it does by handing it over with kafka_req_hold() BEFORE
 * responding: release(p) is called once from kafka_req_free (on the connection's shard, after
 * the last byte was sent or the connection closed and no send is in flight), or at once when
 * the hold cannot be recorded (then the call returns -ENOMEM and p must not be referenced: the
 * handler answers without those records). Returns 0 or -ENOMEM.
 */
#define KAFKA_REQ_REF_MIN 1024
int kafka_req_hold(kafka_req *req, void *p, void (*release)(void *p));

/* Copies the whole response frame (with its size prefix: resp, or the pieces of resp_iov in
 * order) into out. Returns resp_len, or AL_ETOOLARGE when cap is smaller (nothing copied).
 * For tests and tools: the send path never flattens a response. */
int64_t kafka_req_resp_copy(const kafka_req *req, uint8_t *out, size_t cap);

/*
 * Records in several pieces (batches sent straight from the batch cache): the handler sets the
 * records field to {key, len} where key is pieces[0].iov_base and len the sum of the pieces'
 * lengths (>= KAFKA_REQ_REF_MIN, so the encoder never reads it as one buffer), and registers
 * the pieces here before responding; the response then sends them in order in place of the
 * field's bytes. `pieces` (and what it points to) must stay valid until the req is freed: hold
 * them with kafka_req_hold. Register in the order the fields come in the response (a lookup
 * cursor follows that order; any order works, slower). Returns 0 or -ENOMEM (arena: answer
 * without these records). Not with kafka_req_copy_records set (flatten instead).
 */
int kafka_req_add_pieces(kafka_req *req, const struct iovec *pieces, int n);

/* The copying path, for comparisons (set before any request, process-wide; the broker sets
 * it when started with AILURUS_FETCH_COPY=1 in its environment): Fetch reads copy cached
 * batches out of the cache and responses copy their records into resp (no resp_iov), as
 * before records went by reference. */
extern bool kafka_req_copy_records;

/* Completes the req with no response bytes (acks=0 Produce). Calls on_done. */
void kafka_req_respond_none(kafka_req *req);

/* Completes the req by closing the connection; `why` (static text, may be NULL) goes into the
 * connection's log line with err. Calls on_done. */
void kafka_req_fail(kafka_req *req, int err, const char *why);

/* kafka_req_new makes a request owning frame (malloc'd); kafka_req_free frees the frame and
 * gives the req back: the calling thread keeps up to 64 freed requests with their arena
 * blocks and a small response buffer for its next kafka_req_new (freed at thread exit). */
kafka_req *kafka_req_new(uint8_t *frame, size_t frame_len);
/* kafka_req_new for a frame inside a larger malloc'd block `mem` (the connection hands over its
 * receive buffer instead of copying a large frame out of it): the req frees mem. */
kafka_req *kafka_req_new_in(uint8_t *mem, uint8_t *frame, size_t frame_len);
/* kafka_req_new with a copy of frame in a buffer from the pool (no malloc in the steady state
 * for frames <= 16 KiB). */
kafka_req *kafka_req_new_copy(const uint8_t *frame, size_t frame_len);
void kafka_req_free(kafka_req *req);

/*
 * Reads the fixed start of a request frame (api key, version, correlation id): returns 0, or
 * AL_ETRUNCATED when the frame is shorter than 8 bytes. Used before anything else is trusted.
 */
int kafka_req_peek(const uint8_t *frame, size_t len, int16_t *api_key, int16_t *api_version,
                   int32_t *correlation_id);

/* The per-request decode arena limit: a request's decoded arrays may take this many bytes
 * beyond the frame's own size. */
#define KAFKA_REQ_ARENA_EXTRA (1u << 20)

#endif
