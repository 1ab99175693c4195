/*
 * reactor.h — thread-per-core shards on top of io.h: one pinned thread per shard, each with its
 * own io (io_uring), its own timer heap and bounded single-producer single-consumer message
 * rings from every other shard. The same shard loop also runs on simulated ios inside an
 * io_sim_world, in one thread and deterministically (reactor_create_sim), so code built on
 * timers and messages can be tested in the simulator.
 *
 * The shard loop, one iteration: drain the inbound rings (at most one ring's capacity each),
 * fire due timers (deadline order, ties in insertion order; a timer re-armed from its own
 * callback for "now" fires in the next iteration, not this one), then io_poll(io, nearest timer
 * deadline) -- 0 if messages are still waiting, UINT64_MAX with no timers.
 *
 * Messages: reactor_send(from, to, msg) copies a small fixed-size message into the ring from
 * -> to and returns AL_EFULL when that ring is full: the caller keeps the message and retries
 * later (typically from a timer or its next callback; never spin while holding up your own
 * shard, or two shards sending to each other can deadlock). There is no hidden overflow queue.
 * The target is woken through io_wakeup() only if it may be sleeping. Messages still in the
 * rings when the reactor stops are dropped.
 *
 * Threading (io_uring mode): reactor_start() creates N shard threads and the calling thread
 * becomes the supervisor: it waits for SIGINT/SIGTERM (blocked in every reactor thread and
 * consumed with sigtimedwait) and asks every shard to stop, then joins them. Shard 0 is a
 * thread of its own, not the caller. Every reactor_* function except reactor_stop() must be
 * called on the shard it names (the one reactor_current() returns).
 */
#ifndef AL_REACTOR_H
#define AL_REACTOR_H

#include "reactor/io.h"
#include "reactor/io_sim.h"

typedef struct reactor reactor;
typedef struct reactor_shard reactor_shard;
typedef struct reactor_timer reactor_timer;
struct reactor_msg;

typedef void (*reactor_timer_cb)(reactor_timer *t);
typedef void (*reactor_msg_fn)(reactor_shard *self, const struct reactor_msg *msg);
/* Runs on each shard (its own thread) before its loop starts. Non-zero stops the reactor and
 * becomes reactor_start's result. */
typedef int (*reactor_init_fn)(reactor_shard *self, void *arg);
typedef void (*reactor_hook_fn)(reactor_shard *self, void *arg);

/* A timer: embed it in your struct, reactor_timer_init() it once. Fields are private. */
struct reactor_timer {
    uint64_t deadline_ns;
    uint64_t seq;
    reactor_timer_cb cb;
    void *ctx;     /* the caller's */
    int32_t slot;  /* index in the heap, -1 when not armed */
};

/* A cross-shard message: 32 bytes copied into the ring. fn runs on the target shard. */
struct reactor_msg {
    reactor_msg_fn fn;
    void *arg;
    uint64_t a, b;
};

struct reactor_opts {
    unsigned n_shards;      /* 0: one per online CPU */
    unsigned ring_slots;    /* messages per ordered pair of shards (power of two; default
                               4096, less from 32 shards up so n*n rings stay ~64 MiB) */
    unsigned io_entries;    /* io_uring SQ entries (default 1024) */
    bool no_pin;            /* do not pin shard i to the i-th allowed CPU */
    bool no_signals;        /* do not handle SIGINT/SIGTERM */
    uint64_t seed;          /* io_random seeds derive from it (0: clock) */
    /* Controlled shutdown (optional; not with no_signals): on the first SIGINT/SIGTERM the
     * supervising thread calls pre_stop(r, true, arg), then pre_stop(r, false, arg) every
     * ~100 ms, and stops the shards once it returns true (or at a second signal). It runs on
     * the supervisor thread: talk to the shards with reactor_post only. */
    bool (*pre_stop)(reactor *r, bool first, void *arg);
    void *pre_stop_arg;
    /* Stall watchdog (threads only): the supervising thread logs a warning when a shard has
     * not finished a loop iteration for this long while not asleep in io_poll, with the
     * thread's state (R running or waiting for a CPU, D uninterruptible: disk, S sleeping: a
     * lock or a synchronous wait) and wchan, and those of the offload threads; then how long
     * it lasted once the shard runs again. 0: 2000 ms. */
    unsigned stall_warn_ms;
};

/* Stall warnings the watchdog above logged in this process (for tests). */
unsigned long reactor_stall_warnings(void);

/* Starts n_shards shards (0: one per CPU) with default options; returns after they all
 * stopped: 0, or the first init error / -errno of a failed set-up. */
int reactor_start(unsigned n_shards, reactor_init_fn init, void *arg);
int reactor_start_opts(const struct reactor_opts *opts, reactor_init_fn init, void *arg);

/* Asks every shard to stop (any thread, any number of times). Each runs its shutdown hooks
 * (last registered first) and exits its loop. */
void reactor_stop(reactor *r);

/* The calling thread's shard (NULL off shards), and its index (-1 off shards). */
reactor_shard *reactor_current(void);
int reactor_shard_id(void);

reactor *reactor_of(reactor_shard *s);
unsigned reactor_shard_index(reactor_shard *s);
unsigned reactor_shard_count(reactor *r);
io *reactor_io(reactor_shard *s);
/* Shard i of r (for set-up code and simulations). */
reactor_shard *reactor_shard_at(reactor *r, unsigned i);
bool reactor_stopping(reactor *r);

/* ---- messages ---- */

/* Copies msg into the ring from -> to (to may equal from). Returns 0, AL_EFULL (ring full:
 * retry later), AL_ECLOSED (stopping) or AL_EINVAL (bad target). */
int reactor_send(reactor_shard *from, unsigned to, const struct reactor_msg *msg);

/* From ANY thread (helper threads doing blocking work, signal handlers' threads...): queues
 * msg for shard `to` on a small mutex-protected queue (1024 messages) and wakes it. For rare
 * events, not the data path. Returns 0, AL_EFULL, AL_ECLOSED or AL_EINVAL. The reactor must
 * still be running (call it only while reactor_start has not returned). */
int reactor_post(reactor *r, unsigned to, const struct reactor_msg *msg);

/* ---- timers ---- */

void reactor_timer_init(reactor_timer *t, reactor_timer_cb cb, void *ctx);
/* Arms t to fire at deadline_ns (io_now_ns scale), replacing an earlier deadline if armed;
 * cb NULL keeps the timer's callback. Returns 0 or -ENOMEM (the heap could not grow). */
int reactor_timer_add(reactor_shard *s, reactor_timer *t, uint64_t deadline_ns,
                      reactor_timer_cb cb);
/* Disarms t. Returns true if it was armed. */
bool reactor_timer_cancel(reactor_shard *s, reactor_timer *t);
static inline bool reactor_timer_armed(const reactor_timer *t)
{
    return t->slot >= 0;
}
/* Number of armed timers on the shard. */
unsigned reactor_timer_count(reactor_shard *s);

/* ---- shutdown hooks ---- */

/* Registers fn to run on this shard when it stops (at most 32 per shard). Returns 0 or
 * AL_EFULL. Hooks should close/cancel their ops; the shard polls its io for a short while
 * after the hooks so those completions can run, then destroys it. */
int reactor_on_shutdown(reactor_shard *s, reactor_hook_fn fn, void *arg);

/* ---- the simulator ---- */

/*
 * Creates a reactor of n shards on simulated nodes of world w named "<name>/<i>" (or "<name>"
 * when n == 1; an existing node of that name, e.g. one just restarted, is reused), runs init
 * on each (in index order, in this thread) and installs the shard loop as each node's driver:
 * stepping the world runs the shards. Returns 0 or an error (then nothing is left behind).
 * Messages wake the target node; timers use virtual time. After io_sim_crash() of a shard's
 * node, destroy the reactor (its hooks are skipped for crashed nodes: the process died) and
 * create a new one on the restarted node.
 */
int reactor_create_sim(io_sim_world *w, const char *name, unsigned n, reactor_init_fn init,
                       void *arg, reactor **out);
/* Runs the shutdown hooks of every shard and frees the reactor (the nodes stay in the world).
 * Call from the world's thread, not from inside a step. */
void reactor_destroy_sim(reactor *r);

/* Per-shard counters since start (for metrics, benchmarks and tests). Written only by the
 * shard itself: read them on that shard (elsewhere the values may be stale). */
struct reactor_stats {
    uint64_t loops;          /* loop iterations */
    uint64_t polls_waiting;  /* iterations whose io_poll could wait (deadline != 0) */
    uint64_t msgs_sent;      /* reactor_send successes from this shard */
    uint64_t send_full;      /* reactor_send that found the ring full (AL_EFULL) */
    uint64_t msgs_received;  /* messages run on this shard (rings and reactor_post) */
    uint64_t wakeups_sent;   /* io_wakeup calls for sleeping targets */
    uint64_t timers_fired;
};
void reactor_shard_stats(reactor_shard *s, struct reactor_stats *out);
/* Messages received by shard s so far (= stats.msgs_received). */
uint64_t reactor_msgs_received(reactor_shard *s);

#endif
