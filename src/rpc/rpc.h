/*
 * rpc.h — the node-to-node RPC transport: framed, versioned, checksummed messages between the
 * nodes of a cluster, on the reactor (all I/O through io.h, so it also runs on the simulator).
 * Wire format: rpc_frame.h.
 *
 * ONE ENDPOINT PER NODE. An `rpc` lives on one shard (shard 0 in the broker): every function
 * here except rpc_send_from() and rpc_call_from() must be called on that shard, and every
 * callback (handlers, call results, stop) runs there (rpc_call_from's results: on the caller's
 * shard). It listens on the node's rpc address and keeps a peer table
 * node id -> host:port (rpc_peer_set, fed by the seeds and later the controller).
 *
 * CONNECTIONS. One outbound TCP connection per peer, opened lazily on the first send or call,
 * carries this node's requests and one-way messages; answers to them come back on it. Inbound
 * connections (accepted on the listener) carry the other nodes' traffic and our answers. Every
 * connection starts with a HELLO exchange (node id, cluster id, protocol versions, advertised
 * address); the callee refuses a different cluster id or no common protocol version, the caller
 * refuses a peer whose node id is not the one its table expects; both log why. A lost or failed
 * connection is retried with capped, jittered exponential backoff (reset once a HELLO
 * succeeds), as long as something waits to be sent. An idle outbound connection sends a
 * keepalive PING; a peer that stops answering or reading is disconnected (keepalive_ms).
 *
 * DELIVERY. Per peer, messages leave in the order they were queued, over one connection, each
 * at most once. What was queued but not written when a connection fails is dropped for one-way
 * messages (their users, like Raft, retry) and kept for calls (written again on the next
 * connection until their timeout). Writes are batched: everything queued while a send is in
 * flight goes out in the next send. Each peer's queue is bounded in bytes (peer_queue_bytes):
 * over it a send returns AL_EFULL (back off and retry later); a message alone always fits.
 *
 * CALLS. rpc_call() sends a request and later calls cb exactly once with the response, or with
 * AL_ETIMEDOUT (no answer within timeout_ms: the peer may still act on the request),
 * AL_ECLOSED (the connection broke after the request was written, or the endpoint stopped), or
 * the error the peer's handler answered with (rpc_reply_error; AL_ENOTFOUND when the peer has no
 * handler for the type). Handlers answer a call with rpc_reply()/rpc_reply_error(), at once or
 * later (keep the rpc_msg's token: it stays safe to use after the connection closed).
 */
#ifndef AL_RPC_H
#define AL_RPC_H

#include "reactor/reactor.h"
#include "rpc/rpc_frame.h"

typedef struct rpc rpc;

struct rpc_opts {
    reactor_shard *shard;        /* required: the shard the endpoint lives on */
    int32_t node_id;             /* this node's id; -1 while it has none (joining) */
    const char *cluster_id;      /* NULL or "": not known yet (then any is accepted) */
    const char *listen_host;     /* numeric address to listen on; NULL or "": all */
    uint16_t listen_port;        /* 0: a free port (rpc_port() tells which) */
    const char *advertised_addr; /* "host:port" told to peers; NULL: listen host and port */
    uint32_t max_frame_bytes;    /* payload limit; 0: RPC_MAX_FRAME_DEFAULT (128 MiB) */
    uint64_t peer_queue_bytes;   /* per-peer send queue limit; 0: 64 MiB */
    uint32_t backoff_min_ms;     /* reconnect backoff range; 0: 50 ms .. 5000 ms */
    uint32_t backoff_max_ms;
    uint32_t connect_timeout_ms; /* connect + HELLO, both directions; 0: 3000 ms */
    uint32_t keepalive_ms;       /* K, 0: 2000 ms. An outbound connection that received nothing
                                    for K writes a PING (ahead of its queue); it is closed when
                                    that PING is unanswered 2K after it was written, or a send
                                    made no progress for 2K; an inbound one silent for 3K is
                                    closed */
};

/* Creates the endpoint and starts listening. Returns 0, or -errno from the listen (e.g.
 * -EADDRINUSE: the message to print says which address), AL_EINVAL (no shard, bad ids or
 * too long cluster id / address), -ENOMEM. */
int rpc_create(const struct rpc_opts *opts, rpc **out);

/* The port the endpoint listens on. */
uint16_t rpc_port(const rpc *r);
int32_t rpc_node_id(const rpc *r);
unsigned rpc_shard_index(const rpc *r);

/* Sets this node's id (once assigned by a join) / the cluster id (once known). Existing
 * connections keep what their HELLO said; new ones use the new values. AL_EINVAL if bad. */
int rpc_set_node_id(rpc *r, int32_t node_id);
int rpc_set_cluster_id(rpc *r, const char *cluster_id);

/*
 * Stops the endpoint: no handler or send runs afterwards, pending calls complete with
 * AL_ECLOSED, queued messages are dropped, connections and the listener are closed. The
 * memory is freed once the I/O ops have completed and the messages other shards forwarded
 * (rpc_send_from) have arrived; then done(arg) runs (maybe before rpc_stop returns). Other
 * shards must have stopped calling rpc_send_from(r) before rpc_stop is called. r must not be
 * used after rpc_stop (except by callbacks running during it).
 */
void rpc_stop(rpc *r, void (*done)(void *arg), void *arg);

/*
 * For simulations: frees everything at once, without I/O or callbacks, after the endpoint's
 * node crashed (io_sim_crash: its ops will never complete and a crashed process runs nothing).
 * Call it before destroying the node's reactor. Removed peers still waiting for their
 * connection's ops and messages other shards forwarded are not freed (none in a one-shard sim
 * node that removed no peer).
 */
void rpc_free_crashed(rpc *r);

/* ---- peers ---- */

/* Sets the address of node `node` (host numeric). A changed address closes the current
 * connection to it (the next send reconnects). A peer first known only by address (a seed,
 * through rpc_call_addr) with this address takes the id. Returns 0, AL_EINVAL (bad id or
 * host), AL_EFULL (peer table full: 4096), AL_ECLOSED (stopped). */
int rpc_peer_set(rpc *r, int32_t node, const char *host, uint16_t port);

/* Removes node `node` from the table: its pending calls complete with AL_ECLOSED, its queue
 * is dropped, its connection closed; sends to it then return AL_ENOTFOUND (rpc_peer_set adds
 * it again). Returns 0, AL_ENOTFOUND, AL_ECLOSED (stopped). */
int rpc_peer_remove(rpc *r, int32_t node);

/* ---- handlers ---- */

/* A reply token: identifies a received call. Plain data, copy it freely. */
typedef struct rpc_token {
    uint64_t conn;
    uint64_t corr;
    uint16_t type;
} rpc_token;

/* A received message, valid only during the handler (copy the payload to keep it). */
typedef struct rpc_msg {
    int32_t from;           /* the sender's node id (its HELLO; -1 if it has none yet) */
    uint16_t type;
    bool is_call;           /* answer with rpc_reply / rpc_reply_error (once) */
    rpc_token token;        /* for calls */
    const uint8_t *payload;
    size_t len;
    const char *from_addr;  /* the sender's advertised address (its HELLO) */
} rpc_msg;

typedef void (*rpc_handler_fn)(rpc *r, void *ctx, const rpc_msg *m);

/* Registers fn for messages of `type` (RPC_T_RAFT .. RPC_T_MAX-1; fn NULL removes it). A
 * one-way message without a handler is counted and dropped; a call without one is answered
 * with AL_ENOTFOUND. Returns 0 or AL_EINVAL. */
int rpc_handler_set(rpc *r, uint16_t type, rpc_handler_fn fn, void *ctx);

/* Answers the call `t` with a payload (copied), or with an error (err < 0, text may be NULL).
 * Returns 0, AL_ECLOSED (its connection is gone: the caller sees ECLOSED or a timeout),
 * AL_ETOOLARGE (over max_frame_bytes). */
int rpc_reply(rpc *r, rpc_token t, const void *payload, size_t len);
int rpc_reply_error(rpc *r, rpc_token t, int err, const char *text);

/* ---- sending ---- */

/*
 * Queues a one-way message to node `node` (payload copied). Returns 0 (queued; delivery is not
 * guaranteed), AL_ENOTFOUND (no address for the node: rpc_peer_set), AL_EFULL (its queue is
 * over peer_queue_bytes: retry later), AL_ETOOLARGE (over max_frame_bytes), AL_EINVAL (bad
 * type), AL_ECLOSED (stopped, or the node is unreachable: its last connect failed and the
 * reconnect backoff runs; the message is dropped, not kept to arrive stale), -ENOMEM.
 */
int rpc_send(rpc *r, int32_t node, uint16_t type, const void *payload, size_t len);

/* The outcome of a call, valid only during the callback. */
typedef struct rpc_result {
    int err;                /* 0, AL_ETIMEDOUT, AL_ECLOSED, or the peer's error */
    int32_t from;           /* the answering node (its HELLO), -1 if unknown */
    const uint8_t *payload; /* the answer (err == 0) */
    size_t len;
    const char *err_text;   /* the peer's error text or a description ("" if none) */
} rpc_result;

typedef void (*rpc_call_cb)(void *ctx, const rpc_result *res);

/*
 * Sends a request to node `node` and calls cb(ctx, result) exactly once, later (never from
 * inside rpc_call). timeout_ms 0 means 10 s. Returns 0 (cb will run), or the rpc_send errors
 * (then cb never runs).
 */
int rpc_call(rpc *r, int32_t node, uint16_t type, const void *payload, size_t len,
             uint32_t timeout_ms, rpc_call_cb cb, void *ctx);

/* The same, to an address (a seed whose node id is not known yet). A peer entry for the
 * address is kept; its HELLO answer tells its id (result.from). */
int rpc_call_addr(rpc *r, const char *host, uint16_t port, uint16_t type, const void *payload,
                  size_t len, uint32_t timeout_ms, rpc_call_cb cb, void *ctx);

/*
 * rpc_send from ANY shard of the same reactor: on the rpc's shard it is rpc_send; elsewhere the
 * payload is copied and forwarded by a reactor message, and the send happens when it arrives
 * (its result is only counted there: stats.forward_dropped). Returns 0, AL_EFULL (the
 * reactor ring to the rpc's shard is full: retry later), -ENOMEM, or rpc_send's errors on the
 * rpc's own shard. `self` is the calling shard.
 */
int rpc_send_from(reactor_shard *self, rpc *r, int32_t node, uint16_t type, const void *payload,
                  size_t len);


/*
 * rpc_call from ANY shard of the same reactor: on the rpc's shard it is rpc_call; elsewhere
 * the request is copied and forwarded by a reactor message, the call is made on the rpc's
 * shard, and cb(ctx, result) runs exactly once back on the calling shard, with a copy of the
 * answer. Errors rpc_call would return (AL_ENOTFOUND, AL_EFULL, ...) then arrive through cb.
 * Returns 0 (cb will run), AL_EFULL (the ring to the rpc's shard is full: retry later),
 * AL_EINVAL, -ENOMEM (then cb never runs). The same stop rule as rpc_send_from applies.
 */
int rpc_call_from(reactor_shard *self, rpc *r, int32_t node, uint16_t type, const void *payload,
                  size_t len, uint32_t timeout_ms, rpc_call_cb cb, void *ctx);

/* ---- counters (read on the rpc's shard) ---- */

struct rpc_peer_stats {
    int32_t node;           /* -1: known by address only */
    char addr[RPC_ADDR_MAX + 8];
    bool connected;         /* HELLO done on the outbound connection */
    uint64_t msgs_out, bytes_out;   /* frames written (incl. headers) */
    uint64_t writes;                /* send ops that wrote them (msgs_out / writes = batching) */
    uint64_t msgs_in, bytes_in;     /* frames received from this node (any connection) */
    uint64_t connects;              /* successful HELLOs */
    uint64_t connect_errors;        /* failed connects/HELLOs */
    uint64_t disconnects;           /* established connections lost */
    uint64_t send_full;             /* sends refused with AL_EFULL */
    uint64_t dropped;               /* one-way messages dropped: failed connection, backoff */
    uint64_t queued_bytes;          /* now */
};

struct rpc_stats {
    uint64_t msgs_out, bytes_out, msgs_in, bytes_in;
    uint64_t conns_accepted, conns_in_now;
    uint64_t frame_errors;      /* connections closed for a bad frame */
    uint64_t keepalive_closes;  /* connections closed because the other side went silent */
    uint64_t recv_pauses;       /* inbound reads paused: answers over peer_queue_bytes */
    uint64_t hello_rejects;     /* HELLOs refused, either direction */
    uint64_t no_handler;        /* messages of a type nobody handles */
    uint64_t calls, call_timeouts, call_errors;
    uint64_t forwarded;         /* messages that arrived from other shards */
    uint64_t forward_dropped;   /* ... whose rpc_send failed */
    uint32_t peers;
};

void rpc_stats_get(rpc *r, struct rpc_stats *out);
/* Counters of peer `node`. Returns 0 or AL_ENOTFOUND. */
int rpc_peer_stats_get(rpc *r, int32_t node, struct rpc_peer_stats *out);
/* Counters of the i-th peer (0-based, for listing). Returns 0 or AL_ENOTFOUND past the end. */
int rpc_peer_stats_at(rpc *r, uint32_t i, struct rpc_peer_stats *out);

#endif
