/*
 * reactor.c — shards (see reactor.h): threads pinned to CPUs, each running a loop over its own
 * io; per-shard timer min-heap; one bounded SPSC ring per ordered pair of shards with a
 * sleep/wake handshake; SIGINT/SIGTERM handled by the supervising (calling) thread; and the
 * same loop as a driver of simulated nodes.
 *
 * Wake-up handshake (no lost wake-ups, no syscall when the target is busy):
 *   consumer, before blocking:  sleeping = 1; full fence; if any ring non-empty: don't block.
 *   producer, after publishing:  full fence; if sleeping: sleeping = 0, io_wakeup(target).
 */
#include "reactor/reactor.h"

#include "base/log.h"

#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CACHELINE      64
#define MAX_HOOKS      32
#define MAX_SHARDS     256
#define TIMER_HEAP_MAX (1u << 22)
#define POST_SLOTS     1024 /* reactor_post queue per shard */
#define RING_SLOTS_BUDGET (2u << 20) /* default ring size: total slots over all n*n rings */
#define POST_BATCH     64

/* One SPSC ring; head and tail on their own cache lines, each side's cached copy of the
 * other's index on the side's own line. */
struct reactor_ring {
    _Alignas(CACHELINE) uint64_t head; /* written by the consumer */
    _Alignas(CACHELINE) uint64_t tail; /* written by the producer */
    _Alignas(CACHELINE) uint64_t tail_cache; /* consumer-private */
    _Alignas(CACHELINE) uint64_t head_cache; /* producer-private */
    struct reactor_msg *slots;
    uint64_t mask;
};

struct shard_hook {
    reactor_hook_fn fn;
    void *arg;
};

struct reactor_shard {
    _Alignas(CACHELINE) int sleeping; /* atomic, see the handshake above */
    reactor *r;
    unsigned idx;
    io *io;
    pthread_t thread;
    int io_err;   /* io creation; written before the start barrier */
    int init_err; /* init result; read after join */
    /* timers */
    reactor_timer **heap;
    uint32_t heap_len, heap_cap;
    uint64_t timer_seq;
    /* hooks */
    struct shard_hook hooks[MAX_HOOKS];
    unsigned n_hooks;
    struct reactor_stats st;
    uint64_t wake_mask[MAX_SHARDS / 64]; /* targets sent to since the last wake check */
    /* reactor_post: a small mutex-protected queue from any thread (not the data path). */
    pthread_mutex_t post_lock;
    struct reactor_msg *post;
    uint32_t post_head, post_n;
    int post_pending; /* atomic: post_n > 0 */
    bool sim_stopped; /* sim mode: hooks ran */
    int tid;          /* atomic: the shard thread's kernel id (the watchdog reads /proc) */
    uint64_t beat;    /* atomic: loop iterations; UINT64_MAX once out of the loop */
};

struct reactor {
    unsigned n;
    struct reactor_opts opts;
    int stop;    /* atomic */
    int running; /* atomic: shard threads still in their loop */
    int stoppers; /* atomic: reactor_stop calls in progress (they touch shard ios) */
    bool sim;
    io_sim_world *world;
    reactor_init_fn init;
    void *init_arg;
    pthread_barrier_t barrier;      /* every io created before any init runs */
    pthread_barrier_t exit_barrier; /* no io destroyed while another shard may wake it */
    struct reactor_shard *shards;   /* n */
    struct reactor_ring *rings;     /* n * n, [from * n + to] */
};

static _Thread_local reactor_shard *tl_shard;

/* ---- accessors ---- */

reactor_shard *reactor_current(void)
{
    return tl_shard;
}

int reactor_shard_id(void)
{
    return tl_shard ? (int)tl_shard->idx : -1;
}

reactor *reactor_of(reactor_shard *s)
{
    return s->r;
}

unsigned reactor_shard_index(reactor_shard *s)
{
    return s->idx;
}

unsigned reactor_shard_count(reactor *r)
{
    return r->n;
}

io *reactor_io(reactor_shard *s)
{
    return s->io;
}

reactor_shard *reactor_shard_at(reactor *r, unsigned i)
{
    return i < r->n ? &r->shards[i] : NULL;
}

bool reactor_stopping(reactor *r)
{
    return __atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) != 0;
}

uint64_t reactor_msgs_received(reactor_shard *s)
{
    return s->st.msgs_received;
}

void reactor_shard_stats(reactor_shard *s, struct reactor_stats *out)
{
    *out = s->st;
}

static inline struct reactor_ring *ring_at(reactor *r, unsigned from, unsigned to)
{
    return &r->rings[(size_t)from * r->n + to];
}

/* ---- messages ---- */

int reactor_send(reactor_shard *from, unsigned to, const struct reactor_msg *msg)
{
    reactor *r = from->r;
    if (to >= r->n || !msg || !msg->fn) return AL_EINVAL;
    if (AL_UNLIKELY(reactor_stopping(r))) return AL_ECLOSED;
    AL_DASSERT(r->sim || tl_shard == from);
    struct reactor_ring *q = ring_at(r, from->idx, to);
    uint64_t tail = q->tail;
    if (tail - q->head_cache > q->mask) {
        q->head_cache = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
        if (tail - q->head_cache > q->mask) {
            from->st.send_full++;
            return AL_EFULL;
        }
    }
    from->st.msgs_sent++;
    q->slots[tail & q->mask] = *msg;
    __atomic_store_n(&q->tail, tail + 1, __ATOMIC_RELEASE);

    if (r->sim) {
        io_wakeup(r->shards[to].io);
        return 0;
    }
    /* The wake-up check (a full fence) is done once per loop iteration for all targets, in
     * shard_flush_wakes, before this shard itself may sleep. */
    if (to != from->idx) from->wake_mask[to / 64] |= 1ull << (to % 64);
    return 0;
}

/* Wakes the targets of this iteration's messages that may be sleeping. Must run before the
 * shard blocks (it does, in shard_iterate) so no message waits for a wake-up forever. */
static void shard_flush_wakes(struct reactor_shard *s)
{
    reactor *r = s->r;
    bool fenced = false;
    for (unsigned wd = 0; wd < (r->n + 63) / 64; wd++) {
        uint64_t m = s->wake_mask[wd];
        if (!m) continue;
        s->wake_mask[wd] = 0;
        if (!fenced) {
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            fenced = true;
        }
        for (int k = 0; k < 64 && m; k++, m >>= 1) {
            if (!(m & 1)) continue;
            struct reactor_shard *t = &r->shards[wd * 64 + (unsigned)k];
            if (__atomic_load_n(&t->sleeping, __ATOMIC_RELAXED) &&
                __atomic_exchange_n(&t->sleeping, 0, __ATOMIC_ACQ_REL)) {
                io_wakeup(t->io);
                s->st.wakeups_sent++;
            }
        }
    }
}

/* Runs up to one ring's capacity of messages from each inbound ring. Returns true if any
 * ring still has messages afterwards. */
static bool shard_drain(struct reactor_shard *s)
{
    reactor *r = s->r;
    bool more = false;
    for (unsigned from = 0; from < r->n; from++) {
        struct reactor_ring *q = ring_at(r, from, s->idx);
        uint64_t head = q->head;
        if (head == q->tail_cache) {
            q->tail_cache = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE);
            if (head == q->tail_cache) continue;
        }
        uint64_t end = q->tail_cache;
        uint64_t n = end - head;
        for (uint64_t i = 0; i < n; i++) {
            struct reactor_msg m = q->slots[(head + i) & q->mask];
            /* Free slots as we go (every 64) so a producer sees room early. */
            if (((head + i) & 63) == 63)
                __atomic_store_n(&q->head, head + i + 1, __ATOMIC_RELEASE);
            s->st.msgs_received++;
            m.fn(s, &m);
        }
        __atomic_store_n(&q->head, end, __ATOMIC_RELEASE);
        if (__atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) != q->head) more = true;
    }
    return more;
}

/* Runs the messages posted from other threads (bounded: one queue's worth). Returns true if
 * more are waiting. */
static bool shard_drain_posts(struct reactor_shard *s)
{
    if (!__atomic_load_n(&s->post_pending, __ATOMIC_ACQUIRE)) return false;
    struct reactor_msg batch[POST_BATCH];
    for (unsigned round = 0; round < POST_SLOTS / POST_BATCH; round++) {
        pthread_mutex_lock(&s->post_lock);
        uint32_t n = AL_MIN(s->post_n, (uint32_t)POST_BATCH);
        for (uint32_t i = 0; i < n; i++) batch[i] = s->post[(s->post_head + i) % POST_SLOTS];
        s->post_head = (s->post_head + n) % POST_SLOTS;
        s->post_n -= n;
        __atomic_store_n(&s->post_pending, s->post_n > 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&s->post_lock);
        for (uint32_t i = 0; i < n; i++) {
            s->st.msgs_received++;
            batch[i].fn(s, &batch[i]);
        }
        if (n < POST_BATCH) return false;
    }
    return __atomic_load_n(&s->post_pending, __ATOMIC_ACQUIRE) != 0;
}

int reactor_post(reactor *r, unsigned to, const struct reactor_msg *msg)
{
    if (to >= r->n || !msg || !msg->fn) return AL_EINVAL;
    if (reactor_stopping(r)) return AL_ECLOSED;
    struct reactor_shard *t = &r->shards[to];
    pthread_mutex_lock(&t->post_lock);
    if (t->post_n == POST_SLOTS) {
        pthread_mutex_unlock(&t->post_lock);
        return AL_EFULL;
    }
    t->post[(t->post_head + t->post_n) % POST_SLOTS] = *msg;
    t->post_n++;
    __atomic_store_n(&t->post_pending, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&t->post_lock);
    /* Always wake (io_wakeup coalesces): the poster cannot take part in the sleep handshake. */
    __atomic_add_fetch(&r->stoppers, 1, __ATOMIC_SEQ_CST); /* keeps t->io alive, see stop */
    io *tio = __atomic_load_n(&t->io, __ATOMIC_ACQUIRE);
    if (tio) io_wakeup(tio);
    __atomic_sub_fetch(&r->stoppers, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static bool shard_inbound_pending(struct reactor_shard *s)
{
    reactor *r = s->r;
    if (__atomic_load_n(&s->post_pending, __ATOMIC_ACQUIRE)) return true;
    for (unsigned from = 0; from < r->n; from++) {
        struct reactor_ring *q = ring_at(r, from, s->idx);
        if (__atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) != q->head) return true;
    }
    return false;
}

/* ---- timers: a binary min-heap on (deadline, seq) ---- */

static inline bool timer_before(const reactor_timer *a, const reactor_timer *b)
{
    return a->deadline_ns < b->deadline_ns ||
           (a->deadline_ns == b->deadline_ns && a->seq < b->seq);
}

static void heap_place(struct reactor_shard *s, uint32_t i, reactor_timer *t)
{
    s->heap[i] = t;
    t->slot = (int32_t)i;
}

static void heap_up(struct reactor_shard *s, uint32_t i)
{
    reactor_timer *t = s->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!timer_before(t, s->heap[p])) break;
        heap_place(s, i, s->heap[p]);
        i = p;
    }
    heap_place(s, i, t);
}

static void heap_down(struct reactor_shard *s, uint32_t i)
{
    reactor_timer *t = s->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= s->heap_len) break;
        if (c + 1 < s->heap_len && timer_before(s->heap[c + 1], s->heap[c])) c++;
        if (!timer_before(s->heap[c], t)) break;
        heap_place(s, i, s->heap[c]);
        i = c;
    }
    heap_place(s, i, t);
}

static void heap_remove(struct reactor_shard *s, reactor_timer *t)
{
    uint32_t i = (uint32_t)t->slot;
    AL_ASSERT(i < s->heap_len && s->heap[i] == t);
    t->slot = -1;
    s->heap_len--;
    if (i == s->heap_len) return;
    reactor_timer *last = s->heap[s->heap_len];
    heap_place(s, i, last);
    if (i > 0 && timer_before(last, s->heap[(i - 1) / 2])) heap_up(s, i);
    else heap_down(s, i);
}

void reactor_timer_init(reactor_timer *t, reactor_timer_cb cb, void *ctx)
{
    memset(t, 0, sizeof(*t));
    t->cb = cb;
    t->ctx = ctx;
    t->slot = -1;
}

int reactor_timer_add(reactor_shard *s, reactor_timer *t, uint64_t deadline_ns,
                      reactor_timer_cb cb)
{
    if (cb) t->cb = cb;
    AL_ASSERT(t->cb);
    if (t->slot >= 0) heap_remove(s, t);
    if (s->heap_len == s->heap_cap) {
        if (s->heap_cap >= TIMER_HEAP_MAX) return -ENOMEM;
        uint32_t cap = s->heap_cap ? s->heap_cap * 2 : 256;
        reactor_timer **h = realloc(s->heap, cap * sizeof(*h));
        if (!h) return -ENOMEM;
        s->heap = h;
        s->heap_cap = cap;
    }
    t->deadline_ns = deadline_ns;
    t->seq = s->timer_seq++;
    heap_place(s, s->heap_len++, t);
    heap_up(s, s->heap_len - 1);
    return 0;
}

bool reactor_timer_cancel(reactor_shard *s, reactor_timer *t)
{
    if (t->slot < 0) return false;
    heap_remove(s, t);
    return true;
}

unsigned reactor_timer_count(reactor_shard *s)
{
    return s->heap_len;
}

/* Fires the timers due at `now` that were armed before this call (a timer re-armed by its
 * own callback waits for the next iteration). */
static void shard_fire_timers(struct reactor_shard *s, uint64_t now)
{
    uint64_t seq_limit = s->timer_seq;
    uint32_t budget = s->heap_len;
    while (s->heap_len > 0 && budget-- > 0) {
        reactor_timer *t = s->heap[0];
        if (t->deadline_ns > now || t->seq >= seq_limit) break;
        heap_remove(s, t);
        s->st.timers_fired++;
        t->cb(t);
    }
}

/* ---- hooks ---- */

int reactor_on_shutdown(reactor_shard *s, reactor_hook_fn fn, void *arg)
{
    if (s->n_hooks >= MAX_HOOKS) return AL_EFULL;
    s->hooks[s->n_hooks++] = (struct shard_hook){fn, arg};
    return 0;
}

static void shard_run_hooks(struct reactor_shard *s)
{
    while (s->n_hooks > 0) {
        struct shard_hook h = s->hooks[--s->n_hooks];
        h.fn(s, h.arg);
    }
}

/* ---- the loop ---- */

/* One iteration (see reactor.h). may_block: io_uring mode, where the sleeping handshake
 * applies; in sim mode io_poll never blocks and a node with work left wakes itself. */
static void shard_iterate(struct reactor_shard *s, bool may_block)
{
    bool more = shard_drain(s);
    if (shard_drain_posts(s)) more = true;
    shard_fire_timers(s, io_now_ns(s->io));
    uint64_t deadline = s->heap_len ? s->heap[0]->deadline_ns : UINT64_MAX;
    if (more) deadline = 0;
    if (may_block) shard_flush_wakes(s);
    if (may_block && deadline != 0) {
        __atomic_store_n(&s->sleeping, 1, __ATOMIC_SEQ_CST);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (shard_inbound_pending(s) || reactor_stopping(s->r)) deadline = 0;
    }
    if (!may_block && (more || (s->heap_len && deadline <= io_now_ns(s->io)))) {
        io_wakeup(s->io); /* sim: run again at this instant */
        deadline = 0;
    }
    s->st.loops++;
    __atomic_store_n(&s->beat, s->st.loops, __ATOMIC_RELAXED); /* the stall watchdog's */
    if (deadline != 0) s->st.polls_waiting++;
    int rc = io_poll(s->io, deadline);
    if (may_block) {
        __atomic_store_n(&s->sleeping, 0, __ATOMIC_RELAXED);
        shard_flush_wakes(s); /* messages sent from completion callbacks */
    }
    if (rc < 0) {
        log_error("reactor", "io_poll: %s; stopping", al_strerror(rc));
        reactor_stop(s->r);
    }
}

/* After the hooks: let cancelled/closed ops complete (bounded: ~100 ms of quiet polling). */
static void shard_quiesce(struct reactor_shard *s)
{
    int quiet = 0;
    for (int i = 0; i < 100 && quiet < 3; i++) {
        int n = io_poll(s->io, io_now_ns(s->io) + 10000000ull);
        quiet = n > 0 ? 0 : quiet + 1;
    }
}

/* Pins the calling thread to the i-th CPU it is allowed on (logs and goes on on failure). */
static void shard_pin(unsigned idx)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
    int ncpu = CPU_COUNT(&allowed);
    if (ncpu <= 0) return;
    int want = (int)(idx % (unsigned)ncpu), seen = 0, cpu = -1;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &allowed)) continue;
        if (seen++ == want) {
            cpu = c;
            break;
        }
    }
    if (cpu < 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    int err = pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    if (err) log_info("reactor", "could not pin shard %u to cpu %d: %s", idx, cpu, strerror(err));
}

static void *shard_main(void *arg)
{
    struct reactor_shard *s = arg;
    reactor *r = s->r;
    tl_shard = s;
    al_log_shard = (int)s->idx;
    __atomic_store_n(&s->tid, (int)syscall(SYS_gettid), __ATOMIC_RELAXED);
    char name[16]; /* top -H, perf and /proc/PID/task/TID/comm show which thread is which */
    snprintf(name, sizeof(name), "shard-%u", s->idx);
    pthread_setname_np(pthread_self(), name);
    if (!r->opts.no_pin) shard_pin(s->idx);
    struct io_uring_opts o = {.entries = r->opts.io_entries,
                              .seed = r->opts.seed ? r->opts.seed + s->idx : 0};
    io *mine = NULL;
    s->io_err = io_uring_create(&mine, &o);
    __atomic_store_n(&s->io, mine, __ATOMIC_RELEASE); /* reactor_stop may read it */
    pthread_barrier_wait(&r->barrier);
    /* Every shard's io exists (or the start failed) past the barrier; io_err is not written
     * again, init_err is read only after the threads are joined. */
    bool ok = true;
    for (unsigned i = 0; i < r->n; i++)
        if (r->shards[i].io_err) ok = false;
    if (s->io_err) s->init_err = s->io_err;
    if (ok && r->init) {
        s->init_err = r->init(s, r->init_arg);
        if (s->init_err) {
            log_error("reactor", "shard %u init failed: %s", s->idx, al_strerror(s->init_err));
            reactor_stop(r);
        }
    }
    if (ok) {
        while (!reactor_stopping(r)) shard_iterate(s, true);
        shard_run_hooks(s);
        shard_quiesce(s);
    }
    __atomic_store_n(&s->beat, UINT64_MAX, __ATOMIC_RELAXED); /* no more stall warnings */
    /* Other shards (flushing wake-ups) and reactor_stop callers may still hold our io: wait
     * for every shard to leave its loop and for stoppers in progress (bounded: ~10 s). */
    pthread_barrier_wait(&r->exit_barrier);
    for (int i = 0; i < 100000 && __atomic_load_n(&r->stoppers, __ATOMIC_SEQ_CST) > 0; i++)
        sched_yield();
    io *dead = s->io;
    __atomic_store_n(&s->io, NULL, __ATOMIC_RELEASE);
    io_destroy(dead);
    __atomic_fetch_sub(&r->running, 1, __ATOMIC_ACQ_REL);
    tl_shard = NULL;
    al_log_shard = -1;
    return NULL;
}

/* Any thread. The stoppers count is raised before the stop flag is set, so a shard that sees
 * the flag also sees the count and keeps its io alive until this call is done with it. */
void reactor_stop(reactor *r)
{
    __atomic_add_fetch(&r->stoppers, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_exchange_n(&r->stop, 1, __ATOMIC_SEQ_CST)) {
        for (unsigned i = 0; i < r->n; i++) {
            io *sio = __atomic_load_n(&r->shards[i].io, __ATOMIC_ACQUIRE);
            if (sio) io_wakeup(sio);
        }
    }
    __atomic_sub_fetch(&r->stoppers, 1, __ATOMIC_SEQ_CST);
}

/* ---- construction ---- */

static void reactor_free(reactor *r)
{
    if (!r) return;
    if (r->rings)
        for (size_t i = 0; i < (size_t)r->n * r->n; i++) free(r->rings[i].slots);
    free(r->rings);
    if (r->shards)
        for (unsigned i = 0; i < r->n; i++) {
            free(r->shards[i].heap);
            free(r->shards[i].post);
            pthread_mutex_destroy(&r->shards[i].post_lock);
        }
    free(r->shards);
    free(r);
}

static int reactor_alloc(const struct reactor_opts *opts, reactor **out)
{
    *out = NULL;
    reactor *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->opts = *opts;
    r->n = opts->n_shards;
    if (r->n == 0 || r->n > MAX_SHARDS) goto inval;
    unsigned slots = opts->ring_slots;
    if (!slots) {
        /* n*n rings: keep the total near RING_SLOTS_BUDGET slots (32 B each), 256..4096 per
         * ring (2-16 shards: 4096; 64 shards: 512, 64 MiB in all). */
        uint64_t per = RING_SLOTS_BUDGET / ((uint64_t)r->n * r->n);
        slots = 256;
        while (slots < 4096 && (uint64_t)slots * 2 <= per) slots *= 2;
    }
    if (slots & (slots - 1)) goto inval;
    r->opts.ring_slots = slots;
    r->shards = aligned_alloc(CACHELINE, AL_ALIGN_UP(sizeof(*r->shards) * r->n, CACHELINE));
    r->rings = aligned_alloc(CACHELINE,
                             AL_ALIGN_UP(sizeof(*r->rings) * r->n * r->n, CACHELINE));
    if (!r->shards || !r->rings) goto nomem;
    memset(r->shards, 0, sizeof(*r->shards) * r->n);
    memset(r->rings, 0, sizeof(*r->rings) * r->n * r->n);
    for (unsigned i = 0; i < r->n; i++) {
        r->shards[i].r = r;
        r->shards[i].idx = i;
        pthread_mutex_init(&r->shards[i].post_lock, NULL);
        r->shards[i].post = calloc(POST_SLOTS, sizeof(struct reactor_msg));
        if (!r->shards[i].post) goto nomem;
    }
    for (size_t i = 0; i < (size_t)r->n * r->n; i++) {
        r->rings[i].slots = calloc(slots, sizeof(struct reactor_msg));
        if (!r->rings[i].slots) goto nomem;
        r->rings[i].mask = slots - 1;
    }
    *out = r;
    return 0;
inval:
    reactor_free(r);
    return AL_EINVAL;
nomem:
    reactor_free(r);
    return -ENOMEM;
}

int reactor_start(unsigned n_shards, reactor_init_fn init, void *arg)
{
    struct reactor_opts o = {.n_shards = n_shards};
    return reactor_start_opts(&o, init, arg);
}

/* ---- the stall watchdog (supervisor thread) ---- */

static unsigned long g_stall_warnings; /* atomic */

unsigned long reactor_stall_warnings(void)
{
    return __atomic_load_n(&g_stall_warnings, __ATOMIC_RELAXED);
}

/* "<state>/<wchan>" of thread tid of this process into out ("?" parts when unreadable). */
static void task_state(int tid, char *out, size_t cap)
{
    char path[64], buf[512], wchan[64] = "?";
    char state = '?';
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = 0;
        fclose(f);
        const char *rp = strrchr(buf, ')'); /* comm may hold spaces: the state follows it */
        if (rp && rp[1] == ' ' && rp[2]) state = rp[2];
    }
    snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", tid);
    f = fopen(path, "r");
    if (f) {
        size_t n = fread(wchan, 1, sizeof(wchan) - 1, f);
        wchan[n] = 0;
        fclose(f);
        if (!n || (n == 1 && wchan[0] == '0')) snprintf(wchan, sizeof(wchan), "-");
    }
    snprintf(out, cap, "%c/%s", state, wchan);
}

/* The offload threads' states ("D/jbd2_log_wait_commit S/futex_wait_queue ..."), up to cap. */
static void offload_states(char *out, size_t cap)
{
    size_t len = 0;
    out[0] = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) return;
    struct dirent *e;
    for (int guard = 0; (e = readdir(d)) && guard < 4096; guard++) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(comm, 1, sizeof(comm) - 1, f);
        comm[n] = 0;
        fclose(f);
        if (strncmp(comm, "offload", 7) != 0) continue;
        char st[96];
        task_state(atoi(e->d_name), st, sizeof(st));
        int w = snprintf(out + len, cap - len, "%s%s", len ? " " : "", st);
        if (w < 0 || (size_t)w >= cap - len) break;
        len += (size_t)w;
    }
    closedir(d);
    if (!len) snprintf(out, cap, "none");
}

struct stall_watch {
    uint64_t beat, since_ns;
    bool warned;
};

static uint64_t mono_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One look at every shard: a shard that is not asleep in io_poll and has not finished a loop
 * iteration since the last change of its beat for stall_warn_ms gets one warning; when it runs
 * again, one line with the stall's length. */
static void stall_watch(reactor *r, struct stall_watch *w)
{
    uint64_t now = mono_now_ns();
    uint64_t limit = (uint64_t)(r->opts.stall_warn_ms ? r->opts.stall_warn_ms : 2000) * 1000000ull;
    for (unsigned i = 0; i < r->n; i++) {
        struct reactor_shard *s = &r->shards[i];
        uint64_t beat = __atomic_load_n(&s->beat, __ATOMIC_RELAXED);
        bool asleep = __atomic_load_n(&s->sleeping, __ATOMIC_RELAXED) != 0;
        /* 0: not in its loop yet (init); UINT64_MAX: out of it (stopped) */
        if (beat != w[i].beat || asleep || beat == 0 || beat == UINT64_MAX) {
            if (w[i].warned)
                log_warn("reactor", "shard %u ran again after %" PRIu64 " ms", i,
                         (now - w[i].since_ns) / 1000000);
            w[i] = (struct stall_watch){.beat = beat, .since_ns = now};
            continue;
        }
        if (w[i].warned || now - w[i].since_ns < limit) continue;
        w[i].warned = true;
        __atomic_add_fetch(&g_stall_warnings, 1, __ATOMIC_RELAXED);
        char st[96], off[512];
        task_state(__atomic_load_n(&s->tid, __ATOMIC_RELAXED), st, sizeof(st));
        offload_states(off, sizeof(off));
        log_warn("reactor", "shard %u has not finished a loop iteration for %" PRIu64 " ms%s "
                 "(thread state/wchan %s; offload threads %s): R = running or waiting for a "
                 "CPU (a long callback, or the machine), D = in a disk wait (a synchronous "
                 "file call), S = sleeping (a lock, or waiting for an offload job)",
                 i, (now - w[i].since_ns) / 1000000, reactor_stopping(r) ? " while stopping" : "",
                 st, off);
    }
}

/* The supervisor: waits for SIGINT/SIGTERM (100 ms slices) until every shard has left its
 * loop, asking them all to stop on a signal (after opts.pre_stop says done, if set; a second
 * signal skips it). */
static void reactor_supervise(reactor *r, const sigset_t *sigs)
{
    int signals = 0, first_sig = 0;
    bool stopped = false;
    struct stall_watch *watch = calloc(r->n, sizeof(*watch)); /* NULL: no watchdog */
    uint64_t t0 = mono_now_ns();
    for (unsigned i = 0; watch && i < r->n; i++) watch[i].since_ns = t0;
    while (__atomic_load_n(&r->running, __ATOMIC_ACQUIRE) > 0) {
        if (watch) stall_watch(r, watch);
        if (r->opts.no_signals) {
            struct timespec ts = {0, 50000000};
            nanosleep(&ts, NULL);
            continue;
        }
        struct timespec ts = {0, 100000000};
        int sig = sigtimedwait(sigs, NULL, &ts);
        bool got = sig == SIGINT || sig == SIGTERM;
        if (got && signals++ == 0) first_sig = sig;
        if (stopped || signals == 0) continue;
        if (r->opts.pre_stop && signals == 1) {
            if (!r->opts.pre_stop(r, got, r->opts.pre_stop_arg)) continue;
        } else if (got && r->opts.pre_stop) {
            log_info("reactor", "signal %d again: stopping now", sig);
        }
        log_info("reactor", "signal %d: stopping %u shards", got ? sig : first_sig, r->n);
        reactor_stop(r);
        stopped = true;
    }
    free(watch);
}

int reactor_start_opts(const struct reactor_opts *opts, reactor_init_fn init, void *arg)
{
    struct reactor_opts o = *opts;
    if (o.n_shards == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.n_shards = n > 0 ? (unsigned)n : 1;
    }
    reactor *r;
    int err = reactor_alloc(&o, &r);
    if (err) return err;
    r->init = init;
    r->init_arg = arg;
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (!o.no_signals) pthread_sigmask(SIG_BLOCK, &sigs, &old);
    pthread_barrier_init(&r->barrier, NULL, r->n);
    pthread_barrier_init(&r->exit_barrier, NULL, r->n);
    unsigned started = 0;
    r->running = (int)r->n;
    for (; started < r->n; started++) {
        err = pthread_create(&r->shards[started].thread, NULL, shard_main, &r->shards[started]);
        if (err) break;
    }
    if (started < r->n) {
        /* The started threads wait at the barrier forever: cannot happen in practice. */
        AL_PANIC("reactor: pthread_create failed for shard %u: %s", started, strerror(err));
    }
    reactor_supervise(r, &sigs);
    err = 0;
    for (unsigned i = 0; i < r->n; i++) {
        pthread_join(r->shards[i].thread, NULL);
        if (!err && r->shards[i].init_err) err = r->shards[i].init_err;
    }
    pthread_barrier_destroy(&r->barrier);
    pthread_barrier_destroy(&r->exit_barrier);
    if (!o.no_signals) pthread_sigmask(SIG_SETMASK, &old, NULL);
    reactor_free(r);
    return err;
}

/* ---- simulation ---- */

/* The node driver: one loop iteration of the shard with tl_shard set. */
static void sim_driver(io *node, void *arg)
{
    struct reactor_shard *s = arg;
    reactor_shard *saved = tl_shard;
    int saved_log = al_log_shard;
    tl_shard = s;
    al_log_shard = (int)s->idx;
    if (reactor_stopping(s->r)) {
        if (!s->sim_stopped) {
            s->sim_stopped = true;
            shard_run_hooks(s);
        }
        io_poll(node, 0);
    } else {
        shard_iterate(s, false);
    }
    tl_shard = saved;
    al_log_shard = saved_log;
}

int reactor_create_sim(io_sim_world *w, const char *name, unsigned n, reactor_init_fn init,
                       void *arg, reactor **out)
{
    *out = NULL;
    struct reactor_opts o = {.n_shards = n, .no_pin = true, .no_signals = true};
    reactor *r;
    int err = reactor_alloc(&o, &r);
    if (err) return err;
    r->sim = true;
    r->world = w;
    for (unsigned i = 0; i < n; i++) {
        char nm[256];
        if (n == 1) snprintf(nm, sizeof(nm), "%s", name);
        else snprintf(nm, sizeof(nm), "%s/%u", name, i);
        io *node = io_sim_node_find(w, nm);
        if (!node) node = io_sim_node_create(w, nm);
        if (!node) {
            for (unsigned j = 0; j < i; j++) io_sim_node_set_driver(r->shards[j].io, NULL, NULL);
            reactor_free(r);
            return -ENOMEM;
        }
        r->shards[i].io = node;
        io_sim_node_set_driver(node, sim_driver, &r->shards[i]);
    }
    for (unsigned i = 0; i < n && init; i++) {
        reactor_shard *saved = tl_shard;
        int saved_log = al_log_shard;
        tl_shard = &r->shards[i];
        al_log_shard = (int)i;
        err = init(&r->shards[i], arg);
        tl_shard = saved;
        al_log_shard = saved_log;
        if (err) {
            reactor_destroy_sim(r);
            return err;
        }
    }
    *out = r;
    return 0;
}

void reactor_destroy_sim(reactor *r)
{
    if (!r) return;
    AL_ASSERT(r->sim);
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < r->n; i++) {
        struct reactor_shard *s = &r->shards[i];
        if (!s->sim_stopped && !io_sim_is_dead(s->io)) { /* a crashed node runs nothing */
            reactor_shard *saved = tl_shard;
            tl_shard = s;
            s->sim_stopped = true;
            shard_run_hooks(s);
            tl_shard = saved;
        }
        io_sim_node_set_driver(s->io, NULL, NULL);
    }
    reactor_free(r);
}
