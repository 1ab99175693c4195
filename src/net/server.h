/*
 * server.h — the Kafka network front end: one listener per shard (SO_REUSEPORT on the same
 * address), and the connection state machine that frames requests, hands them to the Kafka
 * dispatcher and writes the responses back in request order.
 *
 * Per connection: io_recv into a growable buffer (starts small, grows to hold the frame being
 * read: at once for frames up to ~1 MiB, else at most 2x ahead of the bytes received; never
 * beyond kafka_max_frame_bytes + 4; shrinks back after a large frame); every complete frame
 * becomes a kafka_req (owning a copy of the frame, or for a large frame the buffer itself)
 * appended to the connection's pipeline and dispatched at once; the pipeline sends the head's response as soon as it is answered, so
 * responses leave in request order even when later requests finish first. One send is in
 * flight at a time; short sends are continued.
 *
 * Closing: a size prefix that is negative or above kafka_max_frame_bytes, a request the
 * dispatcher rejects (unknown API, unsupported version, malformed header or body), a socket
 * error, the peer's EOF or the idle timeout (connections_max_idle_ms with nothing in flight)
 * close the connection with one log line. Deferred requests outlive their connection (see
 * kafka/request.h); their completion is then dropped.
 *
 * Back-pressure: the connection stops cutting frames and stops reading when it has
 * kafka_conn_max_inflight_requests requests in flight, or when its requests and queued
 * responses hold kafka_conn_max_inflight_bytes (one request alone is always allowed), or when
 * its shard holds kafka_shard_max_inflight_bytes (receive buffers included); it resumes as
 * responses are sent. max_connections is enforced across shards at accept.
 *
 * Threading: a net_server is set up on the main thread and is then read-only except for its
 * atomic counters. Each net_shard lives on one shard thread; every net_shard_* call and every
 * callback runs on that thread. Connections never move between shards.
 */
#ifndef AL_NET_SERVER_H
#define AL_NET_SERVER_H

#include "base/base.h"
#include "kafka/request.h"
#include "reactor/io.h"

struct al_config;
typedef struct net_conn net_conn;

/* Dispatch function: kafka_dispatch in the broker; tests may pass their own. */
typedef void (*net_dispatch_fn)(kafka_req *req);

typedef struct net_server {
    const struct al_config *cfg;
    const struct kafka_broker *broker;
    net_dispatch_fn dispatch;
    const char *host;       /* listen address (from cfg unless overridden) */
    uint16_t port;          /* 0: pick one (first shard binds, the others reuse its port) */
    int64_t max_frame;
    int64_t max_connections;
    int64_t idle_ms;
    int64_t conn_max_reqs;
    int64_t conn_max_bytes;
    int64_t shard_max_bytes;
    int connections;        /* atomic: open connections on all shards */
    int hold;               /* atomic: non-zero = close every accepted connection at once (a
                               cluster node until it has joined and applied the controller
                               state: clients must not see an empty or stale catalogue) */
    uint64_t next_conn_id;  /* atomic */
} net_server;

typedef struct net_shard {
    net_server *srv;
    io *io;
    int shard_id;
    int lfd;
    uint16_t port;
    io_op accept_op;
    bool accept_armed;
    bool accept_rearm;      /* re-arm the accept at the next sweep (after an accept error) */
    io_op sweep_op;         /* the idle/maintenance timer */
    bool sweep_armed;
    bool stopping;
    net_conn *conns;        /* doubly linked list of open and closing connections */
    int nconns;
    int64_t bytes;          /* bytes held by this shard's connections (buffers, requests) */
    net_conn *paused;       /* connections waiting for the shard's byte budget */
    bool resuming;          /* inside shard_resume */
    bool hold_resume;       /* a loop over conns is running: no resume (see server.c) */
    uint64_t last_reject_log_ns;
    /* Counters (read on this shard; for tests and metrics). */
    uint64_t accepted, closed, requests, responses, sends;
    uint64_t frames_handed_over; /* large frames given to their request with the receive
                                    buffer, not copied */
    uint64_t gathered_sends;     /* sendmsg calls for responses with records by reference */
    uint64_t orphaned_sends;     /* connections closed with such a send (or any send from a
                                    request's buffer) in flight: the req freed after it */
} net_shard;

/*
 * Fills srv from the configuration (listen address kafka_addr, limits). dispatch NULL means
 * kafka_dispatch. srv, cfg and broker must outlive every shard. Main thread, before the shards.
 */
void net_server_init(net_server *srv, const struct al_config *cfg,
                     const struct kafka_broker *broker, net_dispatch_fn dispatch);

/*
 * Starts serving on this shard: binds a SO_REUSEPORT listener on srv->host:srv->port (if the
 * port is 0, binds an ephemeral port and stores it in srv->port, so call it on one shard first
 * and the others after), arms the multishot accept and the maintenance timer. Returns 0 or
 * -errno (e.g. -EADDRINUSE), with a log line. Call on the shard's thread.
 */
int net_shard_start(net_shard *sh, net_server *srv, io *iop, int shard_id);

/* Stops: closes the listener and every connection (in-flight deferred requests are orphaned).
 * Call on the shard's thread, then keep polling its io until net_shard_idle() is true. */
void net_shard_stop(net_shard *sh);

/* True when a stopped shard has no operation pending and no connection left. */
bool net_shard_idle(const net_shard *sh);

#endif
