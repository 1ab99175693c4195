/*
 * io_sim.c — the deterministic simulator back end (model and driver loop documented in
 * io_sim.h). Layout of this file:
 *   world, nodes, incarnations ("sim_io": one per boot of a node) and the event heap;
 *   the in-memory disk (inodes with current and durable contents, current and durable
 *   namespaces) and the io_fs_* calls on it;
 *   async ops (files, timeouts) as timed events; the network (listeners, sockets, pipes);
 *   crashes, restarts, faults; io_poll and the world step.
 *
 * Private op fields: op->priv[0] = (generation << 2) | state, op->priv[1] = next op in the
 * ready queue. A stale event (the op was cancelled or resubmitted) carries an old generation
 * and is ignored. Nothing here depends on pointer values, so a seed replays exactly.
 */
#include "reactor/io_sim.h"

#include "base/log.h"
#include "reactor/io_impl.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#define SIM_WINDOW      (256u * 1024u) /* unread bytes a sender may have towards its peer */
#define SIM_SEND_MAX    (64u * 1024u)  /* bytes one send takes at most */
#define SIM_RECHECK_NS  10000000ull    /* hung connects/deliveries look again after 10 ms */
#define SIM_MAX_FDS     65536
#define SIM_NONE        UINT64_MAX
#define SIM_RUN_LIMIT   1000000
#define SIM_EPOCH_MS    1767225600000ll /* 2026-01-01T00:00:00Z: io_wall_ms at virtual 0 */
#define SIM_START_NS    1000000000ull   /* the virtual clock starts at 1 s */

enum { ST_EVENT = 0, ST_WAIT = 1, ST_READY = 2 };
enum { EV_OP = 1, EV_DELIVER, EV_CONNECT };
enum { FD_FREE = 0, FD_FILE, FD_LISTEN, FD_SOCK };


struct sim_node;
struct sim_io;

/* ---- data types ---- */

struct sim_buf {
    uint8_t *p;
    uint64_t len, cap;
};

struct sim_inode {
    uint32_t refs;
    bool is_dir;
    struct sim_buf cur, dur;
    uint64_t dlo, dhi; /* dirty interval of cur vs dur (dlo >= dhi: clean) */
};

struct sim_dirent {
    char *path;
    struct sim_inode *ino;
};

struct sim_ns {
    struct sim_dirent *v;
    uint32_t n, cap;
};

struct sim_fault {
    uint32_t ppm;
    uint64_t nth;
};

struct sim_disk {
    struct sim_ns cur, dur;
    /* The node's most recent non-durable write (for torn writes). */
    struct sim_inode *lw_ino;
    uint64_t lw_off, lw_len;
    struct sim_fault faults[IO_SIM_FAULT_COUNT];
    uint64_t fault_count;
    uint64_t fs_syncs; /* io_fs_fsync / fdatasync / fsync_dir calls (io_sim_fs_sync_count) */
};

struct sim_chunk {
    struct sim_chunk *next;
    uint64_t at; /* earliest delivery time */
    uint32_t len;
    bool fin;
    uint8_t data[];
};

struct sim_sock {
    struct sim_sock *next_all; /* world list (freed at world destroy) */
    struct sim_io *owner;
    struct sim_sock *peer;
    int fd;                    /* -1 until accepted / after close */
    uint16_t local_port;
    bool closed, reset, eof, out_scheduled;
    struct sim_buf rx;         /* received, not yet read: bytes [rx_head, rx.len) */
    uint64_t rx_head;
    uint64_t unread;           /* bytes sent towards the peer and not yet read by it */
    struct sim_chunk *out_head, *out_tail;
    uint64_t out_last_at;
    io_op *recv_op, *send_op;
    struct sim_sock *next_backlog;
};

struct sim_listener {
    struct sim_listener *next_all;
    struct sim_io *owner;
    int fd;
    uint16_t port;
    bool closed;
    io_op *accept_op;
    struct sim_sock *backlog_head, *backlog_tail;
};

struct sim_fd {
    uint8_t kind;
    int flags;
    struct sim_inode *ino;
    struct sim_listener *l;
    struct sim_sock *sk;
};

struct sim_io {
    struct io base;
    struct sim_io *next_all; /* world list of every incarnation ever */
    io_sim_world *w;
    struct sim_node *node;
    bool dead, woken;
    uint64_t wake_at;
    io_op *ready_head, *ready_tail;
    uint32_t ready_n;
    struct sim_fd *fds;
    uint32_t nfds;
    uint16_t next_port;
    void (*driver)(io *node, void *arg);
    void *driver_arg;
};

struct sim_node {
    int id;
    char name[64];
    char addr[32];
    struct sim_disk disk;
    struct sim_io *io; /* current incarnation */
};

struct sim_event {
    uint64_t time, seq;
    uint8_t type;
    struct sim_io *io;
    io_op *op;
    uint64_t gen;
    struct sim_sock *sk;
    int target;   /* EV_CONNECT: node id */
    char *path;   /* EV_OP open: owned copy */
};

struct io_sim_world {
    struct io_sim_opts opts;
    uint64_t now, seq, gen, hash;
    uint64_t rng[4];
    struct sim_event *heap;
    uint32_t heap_n, heap_cap;
    struct sim_node **nodes;
    int n_nodes, cap_nodes;
    struct sim_io *ios;       /* all incarnations, newest first */
    struct sim_sock *socks;
    struct sim_listener *listeners;
    uint8_t *part;            /* n_nodes x n_nodes: 0 none, 1 + enum io_sim_part */
    int part_dim;
};

static const struct io_backend_ops sim_ops;

static inline struct sim_io *sio_of(io *x)
{
    AL_ASSERT(x && x->ops == &sim_ops);
    return (struct sim_io *)x;
}

/* ---- PRNG, hash ---- */

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t w_rand(io_sim_world *w)
{
    uint64_t *s = w->rng;
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

uint64_t io_sim_world_random(io_sim_world *w)
{
    return w_rand(w);
}

/* Uniform in [lo, hi] (hi < lo is treated as lo). */
static uint64_t w_range(io_sim_world *w, uint64_t lo, uint64_t hi)
{
    if (hi <= lo) return lo;
    return lo + w_rand(w) % (hi - lo + 1);
}

static bool w_chance(io_sim_world *w, uint32_t ppm)
{
    return ppm && (w_rand(w) % 1000000u) < ppm;
}

static void w_mix(io_sim_world *w, uint64_t v)
{
    uint64_t h = w->hash ^ (v + 0x9e3779b97f4a7c15ull + (w->hash << 6) + (w->hash >> 2));
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    w->hash = h;
}

uint64_t io_sim_world_hash(io_sim_world *w)
{
    return w->hash;
}

uint64_t io_sim_world_now(io_sim_world *w)
{
    return w->now;
}

/* ---- op bookkeeping ---- */

static inline uint64_t op_gen(const io_op *op)
{
    return op->priv[0] >> 2;
}

static inline int op_state(const io_op *op)
{
    return (int)(op->priv[0] & 3);
}

static inline void op_set_state(io_op *op, int st)
{
    op->priv[0] = (op->priv[0] & ~3ull) | (uint64_t)st;
}

static void op_new_gen(io_sim_world *w, io_op *op, int st)
{
    op->priv[0] = (++w->gen << 2) | (uint64_t)st;
}

/* Queues op's completion with res; its callback runs from the node's next io_poll. */
static void op_ready(struct sim_io *s, io_op *op, int res)
{
    op->res = res;
    op_set_state(op, ST_READY);
    op->priv[1] = 0;
    if (s->ready_tail) s->ready_tail->priv[1] = (uint64_t)(uintptr_t)op;
    else s->ready_head = op;
    s->ready_tail = op;
    s->ready_n++;
}

/* ---- event heap on (time, seq) ---- */

static bool ev_before(const struct sim_event *a, const struct sim_event *b)
{
    return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

static int ev_push(io_sim_world *w, struct sim_event ev)
{
    if (w->heap_n == w->heap_cap) {
        uint32_t cap = w->heap_cap ? w->heap_cap * 2 : 1024;
        struct sim_event *h = realloc(w->heap, cap * sizeof(*h));
        if (!h) return -ENOMEM;
        w->heap = h;
        w->heap_cap = cap;
    }
    if (ev.time < w->now) ev.time = w->now;
    ev.seq = w->seq++;
    uint32_t i = w->heap_n++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!ev_before(&ev, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = ev;
    return 0;
}

static struct sim_event ev_pop(io_sim_world *w)
{
    struct sim_event top = w->heap[0];
    struct sim_event last = w->heap[--w->heap_n];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= w->heap_n) break;
        if (c + 1 < w->heap_n && ev_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!ev_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->heap_n) w->heap[i] = last;
    return top;
}

/* Schedules the completion of op at time t (state ST_EVENT). Out of memory: the op completes
 * at once with -ENOMEM. */
static void op_schedule(struct sim_io *s, io_op *op, uint64_t t, char *path)
{
    op_new_gen(s->w, op, ST_EVENT);
    struct sim_event ev = {.time = t, .type = EV_OP, .io = s, .op = op, .gen = op_gen(op),
                           .path = path};
    if (ev_push(s->w, ev) != 0) {
        free(path);
        op_ready(s, op, -ENOMEM);
    }
}

/* ---- buffers ---- */

static int buf_reserve(struct sim_buf *b, uint64_t n)
{
    if (n <= b->cap) return 0;
    uint64_t cap = b->cap ? b->cap : 256;
    while (cap < n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Sets the length, zero-filling any growth. */
static int buf_resize(struct sim_buf *b, uint64_t n)
{
    if (buf_reserve(b, n)) return -ENOMEM;
    if (n > b->len) memset(b->p + b->len, 0, n - b->len);
    b->len = n;
    return 0;
}

/* ---- inodes and namespaces ---- */

static struct sim_inode *ino_new(bool is_dir)
{
    struct sim_inode *i = calloc(1, sizeof(*i));
    if (i) i->is_dir = is_dir;
    return i;
}

static void ino_ref(struct sim_inode *i)
{
    i->refs++;
}

static void ino_unref(struct sim_inode *i)
{
    AL_ASSERT(i->refs > 0);
    if (--i->refs) return;
    free(i->cur.p);
    free(i->dur.p);
    free(i);
}

static void ino_dirty(struct sim_inode *i, uint64_t lo, uint64_t hi)
{
    if (lo >= hi) return;
    if (i->dlo >= i->dhi) {
        i->dlo = lo;
        i->dhi = hi;
        return;
    }
    i->dlo = AL_MIN(i->dlo, lo);
    i->dhi = AL_MAX(i->dhi, hi);
}

/* Makes the inode's current contents durable. */
static int ino_sync(struct sim_inode *i)
{
    uint64_t old = i->dur.len;
    if (buf_resize(&i->dur, i->cur.len)) return -ENOMEM;
    if (i->cur.len > old) ino_dirty(i, old, i->cur.len);
    if (i->dlo < i->dhi) {
        uint64_t hi = AL_MIN(i->dhi, i->cur.len);
        if (i->dlo < hi) memcpy(i->dur.p + i->dlo, i->cur.p + i->dlo, hi - i->dlo);
    }
    i->dlo = i->dhi = 0;
    return 0;
}

static int ino_set_len(struct sim_inode *i, uint64_t n)
{
    uint64_t old = i->cur.len;
    if (buf_resize(&i->cur, n)) return -ENOMEM;
    ino_dirty(i, AL_MIN(old, n), AL_MAX(old, n));
    return 0;
}

/* Binary search: index of path, or -(insertion point) - 1. */
static int64_t ns_find(const struct sim_ns *ns, const char *path)
{
    int64_t lo = 0, hi = (int64_t)ns->n - 1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        int c = strcmp(ns->v[mid].path, path);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -lo - 1;
}

static struct sim_inode *ns_get(const struct sim_ns *ns, const char *path)
{
    int64_t i = ns_find(ns, path);
    return i >= 0 ? ns->v[i].ino : NULL;
}

/* Sets path -> ino (ino NULL removes). Returns 0 or -ENOMEM. */
static int ns_set(struct sim_ns *ns, const char *path, struct sim_inode *ino)
{
    int64_t i = ns_find(ns, path);
    if (i >= 0) {
        if (ino) {
            ino_ref(ino);
            ino_unref(ns->v[i].ino);
            ns->v[i].ino = ino;
        } else {
            ino_unref(ns->v[i].ino);
            free(ns->v[i].path);
            memmove(&ns->v[i], &ns->v[i + 1], (ns->n - (uint32_t)i - 1) * sizeof(ns->v[0]));
            ns->n--;
        }
        return 0;
    }
    if (!ino) return 0;
    uint32_t at = (uint32_t)(-i - 1);
    if (ns->n == ns->cap) {
        uint32_t cap = ns->cap ? ns->cap * 2 : 32;
        struct sim_dirent *v = realloc(ns->v, cap * sizeof(*v));
        if (!v) return -ENOMEM;
        ns->v = v;
        ns->cap = cap;
    }
    char *p = strdup(path);
    if (!p) return -ENOMEM;
    memmove(&ns->v[at + 1], &ns->v[at], (ns->n - at) * sizeof(ns->v[0]));
    ns->v[at] = (struct sim_dirent){p, ino};
    ns->n++;
    ino_ref(ino);
    return 0;
}

static void ns_clear(struct sim_ns *ns)
{
    for (uint32_t i = 0; i < ns->n; i++) {
        ino_unref(ns->v[i].ino);
        free(ns->v[i].path);
    }
    free(ns->v);
    memset(ns, 0, sizeof(*ns));
}

/* Normalises path into out: collapses "//", drops a trailing "/", strips leading "./".
 * Returns 0 or -ENAMETOOLONG / -ENOENT (empty). */
static int path_norm(const char *path, char *out, size_t cap)
{
    if (!path || !*path) return -ENOENT;
    while (path[0] == '.' && path[1] == '/') path += 2;
    size_t n = 0;
    for (const char *p = path; *p; p++) {
        if (*p == '/' && n > 0 && out[n - 1] == '/') continue;
        if (n + 1 >= cap) return -ENAMETOOLONG;
        out[n++] = *p;
    }
    if (n > 1 && out[n - 1] == '/') n--;
    if (n == 0) out[n++] = '.';
    out[n] = 0;
    return 0;
}

/* The parent of a normalised path ("." for "x", "/" for "/x"). */
static void path_parent(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, cap, ".");
        return;
    }
    size_t n = (size_t)(slash - path);
    if (n == 0) n = 1;
    if (n >= cap) n = cap - 1;
    memcpy(out, path, n);
    out[n] = 0;
}

static bool path_is_root(const char *p)
{
    return !strcmp(p, ".") || !strcmp(p, "/");
}

/* Whether the normalised path p exists (now) as a directory: 0, -ENOENT or -ENOTDIR. */
static int disk_dir_ok(struct sim_disk *d, const char *p)
{
    if (path_is_root(p)) return 0;
    struct sim_inode *i = ns_get(&d->cur, p);
    if (!i) return -ENOENT;
    return i->is_dir ? 0 : -ENOTDIR;
}

/* Whether path's parent exists as a directory: 0, -ENOENT or -ENOTDIR. */
static int disk_parent_ok(struct sim_disk *d, const char *p)
{
    char parent[4096];
    path_parent(p, parent, sizeof(parent));
    return disk_dir_ok(d, parent);
}

/* Applies a namespace change to cur, and to dur too when names are durable at once. */
static int disk_ns_set(io_sim_world *w, struct sim_disk *d, const char *path,
                       struct sim_inode *ino)
{
    int err = ns_set(&d->cur, path, ino);
    if (!err && w->opts.durable_dirents) err = ns_set(&d->dur, path, ino);
    return err;
}

/* Whether path has children in ns. */
static bool ns_has_children(const struct sim_ns *ns, const char *path)
{
    size_t n = strlen(path);
    for (uint32_t i = 0; i < ns->n; i++)
        if (!strncmp(ns->v[i].path, path, n) && ns->v[i].path[n] == '/') return true;
    return false;
}

static bool is_child_of(const char *p, const char *dir)
{
    char parent[4096];
    path_parent(p, parent, sizeof(parent));
    return !strcmp(parent, dir);
}

/* Fault check: whether the next op of kind f on this disk fails. */
static bool disk_fault(io_sim_world *w, struct sim_disk *d, enum io_sim_fault f)
{
    struct sim_fault *x = &d->faults[f];
    bool hit = false;
    if (x->nth > 0 && --x->nth == 0) hit = true;
    else if (w_chance(w, x->ppm)) hit = true;
    if (hit) {
        d->fault_count++;
        w_mix(w, 0xfa17ull + (uint64_t)f);
    }
    return hit;
}

/* ---- fds ---- */

static int fd_alloc(struct sim_io *s)
{
    for (uint32_t i = 3; i < s->nfds; i++)
        if (s->fds[i].kind == FD_FREE) return (int)i;
    if (s->nfds >= SIM_MAX_FDS) return -EMFILE;
    uint32_t n = s->nfds ? s->nfds * 2 : 64;
    struct sim_fd *v = realloc(s->fds, n * sizeof(*v));
    if (!v) return -ENOMEM;
    memset(v + s->nfds, 0, (n - s->nfds) * sizeof(*v));
    uint32_t first = s->nfds < 3 ? 3 : s->nfds;
    s->fds = v;
    s->nfds = n;
    return (int)first;
}

static struct sim_fd *fd_get(struct sim_io *s, int fd, int kind)
{
    if (fd < 0 || (uint32_t)fd >= s->nfds) return NULL;
    struct sim_fd *f = &s->fds[fd];
    if (f->kind == FD_FREE || (kind && f->kind != kind)) return NULL;
    return f;
}

/* ---- synchronous file system ---- */

static bool aligned_ok(const struct sim_fd *f, const void *buf, uint64_t len, uint64_t off)
{
    if (!(f->flags & O_DIRECT)) return true;
    return ((uintptr_t)buf % 4096) == 0 && len % 4096 == 0 && off % 4096 == 0;
}

static int sim_fs_open(io *x, const char *path, int flags, mode_t mode)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_disk *d = &s->node->disk;
    char p[4096];
    int err = path_norm(path, p, sizeof(p));
    if (err) return err;
    int acc = flags & O_ACCMODE;
    struct sim_inode *ino = ns_get(&d->cur, p);
    bool root = path_is_root(p);
    if (root || (ino && ino->is_dir)) {
        if (acc != O_RDONLY || (flags & O_TRUNC)) return -EISDIR;
        if ((flags & O_CREAT) && (flags & O_EXCL)) return -EEXIST;
    } else if (ino) {
        if ((flags & O_CREAT) && (flags & O_EXCL)) return -EEXIST;
        if (flags & O_DIRECTORY) return -ENOTDIR;
    } else {
        if (!(flags & O_CREAT)) return -ENOENT;
        err = disk_parent_ok(d, p);
        if (err) return err;
        ino = ino_new(false);
        if (!ino) return -ENOMEM;
        ino_ref(ino); /* held across disk_ns_set */
        err = disk_ns_set(s->w, d, p, ino);
        ino_unref(ino);
        if (err) return err;
        w_mix(s->w, 0x0c7eull);
    }
    int fd = fd_alloc(s);
    if (fd < 0) return fd;
    if (root) {
        /* A directory fd on an implicit root: a throwaway directory inode. */
        ino = ino_new(true);
        if (!ino) return -ENOMEM;
    }
    if ((flags & O_TRUNC) && acc != O_RDONLY && ino->cur.len) {
        err = ino_set_len(ino, 0);
        if (err) {
            if (root) free(ino);
            return err;
        }
    }
    ino_ref(ino);
    s->fds[fd] = (struct sim_fd){.kind = FD_FILE, .flags = flags, .ino = ino};
    (void)mode;
    return fd;
}

static void sock_close(struct sim_sock *sk);
static void listener_close(struct sim_listener *l);

static int sim_fs_close(io *x, int fd)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_fd *f = fd_get(s, fd, 0);
    if (!f) return -EBADF;
    struct sim_fd copy = *f;
    memset(f, 0, sizeof(*f));
    if (copy.kind == FD_FILE) ino_unref(copy.ino);
    else if (copy.kind == FD_LISTEN) listener_close(copy.l);
    else if (copy.kind == FD_SOCK) sock_close(copy.sk);
    return 0;
}

static ssize_t file_pread(struct sim_io *s, struct sim_fd *f, void *buf, size_t len,
                          uint64_t off)
{
    if (!aligned_ok(f, buf, len, off)) return -EINVAL;
    if ((f->flags & O_ACCMODE) == O_WRONLY) return -EBADF;
    if (f->ino->is_dir) return -EISDIR;
    if (disk_fault(s->w, &s->node->disk, IO_SIM_FAULT_READ_EIO)) return -EIO;
    struct sim_buf *b = &f->ino->cur;
    if (off >= b->len) return 0;
    uint64_t n = AL_MIN((uint64_t)len, b->len - off);
    memcpy(buf, b->p + off, n);
    return (ssize_t)n;
}

static ssize_t file_pwrite(struct sim_io *s, struct sim_fd *f, const void *buf, size_t len,
                           uint64_t off)
{
    struct sim_disk *d = &s->node->disk;
    if (!aligned_ok(f, buf, len, off)) return -EINVAL;
    if ((f->flags & O_ACCMODE) == O_RDONLY) return -EBADF;
    if (disk_fault(s->w, d, IO_SIM_FAULT_WRITE_EIO)) return -EIO;
    if (disk_fault(s->w, d, IO_SIM_FAULT_WRITE_ENOSPC)) return -ENOSPC;
    if (len == 0) return 0;
    struct sim_inode *i = f->ino;
    if (off + len > i->cur.len && ino_set_len(i, off + len)) return -ENOMEM;
    memcpy(i->cur.p + off, buf, len);
    ino_dirty(i, off, off + len);
    ino_ref(i);
    if (d->lw_ino) ino_unref(d->lw_ino);
    d->lw_ino = i;
    d->lw_off = off;
    d->lw_len = len;
    return (ssize_t)len;
}

static int file_sync(struct sim_io *s, struct sim_fd *f)
{
    struct sim_disk *d = &s->node->disk;
    if (disk_fault(s->w, d, IO_SIM_FAULT_FSYNC_EIO)) return -EIO;
    int err = ino_sync(f->ino);
    if (err) return err;
    if (d->lw_ino == f->ino) {
        ino_unref(d->lw_ino);
        d->lw_ino = NULL;
        d->lw_len = 0;
    }
    return 0;
}

/* The second half of a write_dsync: makes len bytes of buf at off durable, as the kernel's
 * O_DSYNC does for that range (and the file size it needs), nothing else. */
static int file_sync_range(struct sim_io *s, struct sim_fd *f, const void *buf, uint64_t len,
                           uint64_t off)
{
    struct sim_disk *d = &s->node->disk;
    if (disk_fault(s->w, d, IO_SIM_FAULT_FSYNC_EIO)) return -EIO;
    struct sim_inode *i = f->ino;
    if (off + len > i->dur.len && buf_resize(&i->dur, off + len)) return -ENOMEM;
    memcpy(i->dur.p + off, buf, len);
    if (d->lw_ino == i && d->lw_off >= off && d->lw_off + d->lw_len <= off + len) {
        ino_unref(d->lw_ino);
        d->lw_ino = NULL;
        d->lw_len = 0;
    }
    return 0;
}

static int file_fallocate(struct sim_io *s, struct sim_fd *f, int mode, uint64_t off,
                          uint64_t len)
{
    if ((f->flags & O_ACCMODE) == O_RDONLY) return -EBADF;
    if (mode != 0 && mode != FALLOC_FL_KEEP_SIZE) return -EOPNOTSUPP;
    if (disk_fault(s->w, &s->node->disk, IO_SIM_FAULT_FALLOCATE_ENOSPC)) return -ENOSPC;
    if (mode == 0 && off + len > f->ino->cur.len) return ino_set_len(f->ino, off + len);
    return 0;
}

static ssize_t sim_fs_pread(io *x, int fd, void *buf, size_t len, uint64_t off)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_fd *f = fd_get(s, fd, FD_FILE);
    return f ? file_pread(s, f, buf, len, off) : -EBADF;
}

static ssize_t sim_fs_pwrite(io *x, int fd, const void *buf, size_t len, uint64_t off)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_fd *f = fd_get(s, fd, FD_FILE);
    return f ? file_pwrite(s, f, buf, len, off) : -EBADF;
}

static int sim_fs_fsync(io *x, int fd, bool datasync)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    s->node->disk.fs_syncs++;
    struct sim_fd *f = fd_get(s, fd, FD_FILE);
    return f ? file_sync(s, f) : -EBADF;
}

static int sim_fs_ftruncate(io *x, int fd, uint64_t len)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_fd *f = fd_get(s, fd, FD_FILE);
    if (!f) return -EBADF;
    if ((f->flags & O_ACCMODE) == O_RDONLY || f->ino->is_dir) return -EINVAL;
    return ino_set_len(f->ino, len);
}

static int sim_fs_fallocate(io *x, int fd, int mode, uint64_t off, uint64_t len)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_fd *f = fd_get(s, fd, FD_FILE);
    return f ? file_fallocate(s, f, mode, off, len) : -EBADF;
}

static int64_t sim_fs_size(io *x, int fd)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_fd *f = fd_get(s, fd, FD_FILE);
    return f ? (int64_t)f->ino->cur.len : -EBADF;
}

static int sim_fs_rename(io *x, const char *from, const char *to)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_disk *d = &s->node->disk;
    char a[4096], b[4096];
    int err = path_norm(from, a, sizeof(a));
    if (!err) err = path_norm(to, b, sizeof(b));
    if (err) return err;
    if (path_is_root(a) || path_is_root(b)) return -EBUSY;
    struct sim_inode *src = ns_get(&d->cur, a);
    if (!src) return -ENOENT;
    err = disk_parent_ok(d, b);
    if (err) return err;
    if (!strcmp(a, b)) return 0;
    struct sim_inode *dst = ns_get(&d->cur, b);
    if (dst) {
        if (dst->is_dir && !src->is_dir) return -EISDIR;
        if (!dst->is_dir && src->is_dir) return -ENOTDIR;
        if (dst->is_dir && ns_has_children(&d->cur, b)) return -ENOTEMPTY;
    }
    if (src->is_dir) {
        size_t an = strlen(a);
        if (!strncmp(b, a, an) && b[an] == '/') return -EINVAL;
        /* Move the children: collect first, the namespace changes under us. */
        for (uint32_t k = 0; k < 100000; k++) {
            int64_t hit = -1;
            for (uint32_t i = 0; i < d->cur.n; i++)
                if (!strncmp(d->cur.v[i].path, a, an) && d->cur.v[i].path[an] == '/') {
                    hit = i;
                    break;
                }
            if (hit < 0) break;
            char np[8192];
            snprintf(np, sizeof(np), "%s%s", b, d->cur.v[hit].path + an);
            char old[4096];
            snprintf(old, sizeof(old), "%s", d->cur.v[hit].path);
            struct sim_inode *ci = d->cur.v[hit].ino;
            ino_ref(ci);
            err = disk_ns_set(s->w, d, np, ci);
            if (!err) err = disk_ns_set(s->w, d, old, NULL);
            ino_unref(ci);
            if (err) return err;
        }
    }
    ino_ref(src);
    err = disk_ns_set(s->w, d, b, src);
    if (!err) err = disk_ns_set(s->w, d, a, NULL);
    ino_unref(src);
    w_mix(s->w, 0x4e4aull);
    return err;
}

static int sim_fs_unlink(io *x, const char *path)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_disk *d = &s->node->disk;
    char p[4096];
    int err = path_norm(path, p, sizeof(p));
    if (err) return err;
    struct sim_inode *i = ns_get(&d->cur, p);
    if (!i) return path_is_root(p) ? -EISDIR : -ENOENT;
    if (i->is_dir) return -EISDIR;
    return disk_ns_set(s->w, d, p, NULL);
}

static int sim_fs_mkdir(io *x, const char *path, mode_t mode)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_disk *d = &s->node->disk;
    char p[4096];
    int err = path_norm(path, p, sizeof(p));
    if (err) return err;
    if (path_is_root(p)) return 0;
    struct sim_inode *i = ns_get(&d->cur, p);
    if (i) return i->is_dir ? 0 : -EEXIST;
    err = disk_parent_ok(d, p);
    if (err) return err;
    i = ino_new(true);
    if (!i) return -ENOMEM;
    ino_ref(i);
    err = disk_ns_set(s->w, d, p, i);
    ino_unref(i);
    return err;
}

static int sim_fs_rmdir(io *x, const char *path)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_disk *d = &s->node->disk;
    char p[4096];
    int err = path_norm(path, p, sizeof(p));
    if (err) return err;
    if (path_is_root(p)) return -EBUSY;
    struct sim_inode *i = ns_get(&d->cur, p);
    if (!i) return -ENOENT;
    if (!i->is_dir) return -ENOTDIR;
    if (ns_has_children(&d->cur, p)) return -ENOTEMPTY;
    return disk_ns_set(s->w, d, p, NULL);
}

/* Makes every directory entry whose parent is dir durable (added, replaced or removed). */
static int disk_sync_dir(struct sim_disk *d, const char *dir)
{
    /* Entries in cur: copy to dur. */
    for (uint32_t i = 0; i < d->cur.n; i++)
        if (is_child_of(d->cur.v[i].path, dir)) {
            int err = ns_set(&d->dur, d->cur.v[i].path, d->cur.v[i].ino);
            if (err) return err;
        }
    /* Entries only in dur: remove (bounded: each pass removes one). */
    for (uint32_t k = 0; k <= d->dur.n + 1; k++) {
        int64_t gone = -1;
        for (uint32_t i = 0; i < d->dur.n; i++)
            if (is_child_of(d->dur.v[i].path, dir) && !ns_get(&d->cur, d->dur.v[i].path)) {
                gone = i;
                break;
            }
        if (gone < 0) break;
        char p[4096];
        snprintf(p, sizeof(p), "%s", d->dur.v[gone].path);
        ns_set(&d->dur, p, NULL);
    }
    return 0;
}

static int sim_fs_fsync_dir(io *x, const char *path)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_disk *d = &s->node->disk;
    d->fs_syncs++;
    char p[4096];
    int err = path_norm(path, p, sizeof(p));
    if (!err) err = disk_dir_ok(d, p);
    if (err) return err;
    if (disk_fault(s->w, d, IO_SIM_FAULT_FSYNC_EIO)) return -EIO;
    w_mix(s->w, 0xd125ull);
    return disk_sync_dir(d, p);
}

static int sim_fs_exists(io *x, const char *path)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    char p[4096];
    int err = path_norm(path, p, sizeof(p));
    if (err) return err;
    return path_is_root(p) || ns_get(&s->node->disk.cur, p) ? 1 : 0;
}

static int sim_fs_list(io *x, const char *dir, char ***names)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    struct sim_disk *d = &s->node->disk;
    char p[4096];
    int err = path_norm(dir, p, sizeof(p));
    if (!err) err = disk_dir_ok(d, p);
    if (err) return err;
    int n = 0;
    for (uint32_t i = 0; i < d->cur.n; i++)
        if (is_child_of(d->cur.v[i].path, p)) n++;
    char **v = calloc((size_t)n + 1, sizeof(char *));
    if (!v) return -ENOMEM;
    int k = 0;
    for (uint32_t i = 0; i < d->cur.n && k < n; i++) {
        if (!is_child_of(d->cur.v[i].path, p)) continue;
        const char *slash = strrchr(d->cur.v[i].path, '/');
        v[k] = strdup(slash ? slash + 1 : d->cur.v[i].path);
        if (!v[k]) {
            io_fs_list_free(v, k);
            return -ENOMEM;
        }
        k++;
    }
    *names = v;
    return n;
}

int io_sim_fs_mkdir_p(io *x, const char *path)
{
    struct sim_io *s = sio_of(x);
    char p[4096];
    int err = path_norm(path, p, sizeof(p));
    if (err) return err;
    for (char *c = p + 1;; c++) {
        if (*c == '/' || *c == 0) {
            char save = *c;
            *c = 0;
            err = sim_fs_mkdir(x, p, 0755);
            if (!err) {
                char parent[4096];
                path_parent(p, parent, sizeof(parent));
                err = disk_sync_dir(&s->node->disk, parent);
            }
            *c = save;
            if (err) return err;
            if (save == 0) break;
        }
    }
    return 0;
}

/* ---- network ---- */

static bool part_get(io_sim_world *w, int a, int b, int *mode)
{
    if (a < 0 || b < 0 || a >= w->part_dim || b >= w->part_dim || a == b) return false;
    uint8_t v = w->part[a * w->part_dim + b];
    if (!v) return false;
    *mode = v - 1;
    return true;
}

static void chunks_free(struct sim_sock *sk)
{
    struct sim_chunk *c = sk->out_head;
    while (c) {
        struct sim_chunk *n = c->next;
        free(c);
        c = n;
    }
    sk->out_head = sk->out_tail = NULL;
}

/* Completes a waiting op on a socket (if any) with res. */
static void sock_fail_waiters(struct sim_sock *sk, int res)
{
    if (sk->recv_op) {
        io_op *op = sk->recv_op;
        sk->recv_op = NULL;
        if (!sk->owner->dead) op_ready(sk->owner, op, res);
    }
    if (sk->send_op) {
        io_op *op = sk->send_op;
        sk->send_op = NULL;
        if (!sk->owner->dead) op_ready(sk->owner, op, res);
    }
}

/* Resets both ends of a connection. */
static void conn_reset(io_sim_world *w, struct sim_sock *sk)
{
    struct sim_sock *ends[2] = {sk, sk->peer};
    for (int i = 0; i < 2; i++) {
        struct sim_sock *e = ends[i];
        if (!e || e->reset) continue;
        e->reset = true;
        chunks_free(e);
        e->rx.len = e->rx_head = 0;
        sock_fail_waiters(e, -ECONNRESET);
    }
    w_mix(w, 0x7e5e7ull);
}

static void sock_try_send(struct sim_sock *sk);

/* Moves received bytes into a waiting recv op. */
static void sock_try_recv(struct sim_sock *sk)
{
    io_op *op = sk->recv_op;
    if (!op) return;
    uint64_t avail = sk->rx.len - sk->rx_head;
    int res;
    if (sk->reset) res = -ECONNRESET;
    else if (avail > 0) {
        uint64_t n = AL_MIN(avail, op->len);
        memcpy(op->buf, sk->rx.p + sk->rx_head, n);
        sk->rx_head += n;
        if (sk->rx_head == sk->rx.len) sk->rx_head = sk->rx.len = 0;
        res = (int)n;
        if (sk->peer) {
            sk->peer->unread -= n;
            sock_try_send(sk->peer);
        }
    } else if (sk->eof) res = 0;
    else return;
    sk->recv_op = NULL;
    op_ready(sk->owner, op, res);
}

static int sock_schedule_out(struct sim_sock *sk)
{
    if (sk->out_scheduled || !sk->out_head) return 0;
    io_sim_world *w = sk->owner->w;
    struct sim_event ev = {.time = sk->out_head->at, .type = EV_DELIVER, .sk = sk};
    int err = ev_push(w, ev);
    if (!err) sk->out_scheduled = true;
    return err;
}

/* Queues a chunk (data or FIN) on the pipe from sk to its peer. */
static int sock_queue(struct sim_sock *sk, const void *data, uint32_t len, bool fin)
{
    io_sim_world *w = sk->owner->w;
    struct sim_chunk *c = malloc(sizeof(*c) + len);
    if (!c) return -ENOMEM;
    c->next = NULL;
    c->len = len;
    c->fin = fin;
    if (len) memcpy(c->data, data, len);
    uint64_t at = w->now + w_range(w, w->opts.net_delay_min_ns, w->opts.net_delay_max_ns);
    c->at = AL_MAX(at, sk->out_last_at);
    sk->out_last_at = c->at;
    if (sk->out_tail) sk->out_tail->next = c;
    else sk->out_head = c;
    sk->out_tail = c;
    return sock_schedule_out(sk);
}

/* Queues the first n bytes of a gathered send (msghdr msg) as one chunk, the way a kernel
 * socket takes a prefix of a sendmsg: the same partial-write semantics as a plain send. */
static int sock_queue_iov(struct sim_sock *sk, const struct msghdr *msg, uint32_t n)
{
    uint8_t *tmp = malloc(n);
    if (!tmp) return -ENOMEM;
    uint32_t got = 0;
    for (size_t i = 0; i < msg->msg_iovlen && got < n; i++) {
        size_t take = AL_MIN(msg->msg_iov[i].iov_len, (size_t)(n - got));
        if (take) memcpy(tmp + got, msg->msg_iov[i].iov_base, take);
        got += (uint32_t)take;
    }
    AL_ASSERT(got == n);
    int err = sock_queue(sk, tmp, n, false);
    free(tmp);
    return err;
}

/* Takes as much of a waiting send as the window allows. */
static void sock_try_send(struct sim_sock *sk)
{
    io_op *op = sk->send_op;
    if (!op) return;
    int res;
    if (sk->reset) res = -ECONNRESET;
    else if (!sk->peer || sk->peer->closed) res = -EPIPE;
    else {
        uint64_t room = sk->unread >= SIM_WINDOW ? 0 : SIM_WINDOW - sk->unread;
        if (room == 0) return;
        uint32_t n = (uint32_t)AL_MIN(AL_MIN(room, (uint64_t)SIM_SEND_MAX), op->len);
        if (n == 0) res = 0;
        else {
            int err = op->kind == IO_OP_SENDMSG ? sock_queue_iov(sk, op->buf, n)
                                                : sock_queue(sk, op->buf, n, false);
            if (err) res = err;
            else {
                sk->unread += n;
                res = (int)n;
            }
        }
    }
    sk->send_op = NULL;
    op_ready(sk->owner, op, res);
}

/* EV_DELIVER: the head chunk of sk's outbound pipe reaches the peer (or waits, or resets). */
static void ev_deliver(io_sim_world *w, struct sim_sock *sk)
{
    sk->out_scheduled = false;
    struct sim_chunk *c = sk->out_head;
    if (!c || sk->reset) return;
    struct sim_sock *peer = sk->peer;
    int mode;
    if (peer && part_get(w, sk->owner->node->id, peer->owner->node->id, &mode)) {
        if (mode == IO_SIM_PART_FAIL) {
            conn_reset(w, sk);
            return;
        }
        c->at = w->now + SIM_RECHECK_NS; /* hang: look again later, keeping order */
        sock_schedule_out(sk);
        return;
    }
    if (!peer || peer->reset || w_chance(w, w->opts.net_drop_ppm) ||
        (peer->closed && c->len > 0)) {
        conn_reset(w, sk);
        return;
    }
    sk->out_head = c->next;
    if (!sk->out_head) sk->out_tail = NULL;
    w_mix(w, ((uint64_t)c->len << 1) | c->fin);
    if (c->fin) peer->eof = true;
    else if (!peer->closed) {
        if (buf_reserve(&peer->rx, peer->rx.len + c->len) == 0) {
            memcpy(peer->rx.p + peer->rx.len, c->data, c->len);
            peer->rx.len += c->len;
        } else {
            free(c);
            conn_reset(w, sk);
            return;
        }
    }
    free(c);
    if (sk->out_head && sk->out_head->at < w->now) sk->out_head->at = w->now;
    sock_schedule_out(sk);
    sock_try_recv(peer);
}

static struct sim_sock *sock_new(struct sim_io *owner)
{
    struct sim_sock *sk = calloc(1, sizeof(*sk));
    if (!sk) return NULL;
    sk->owner = owner;
    sk->fd = -1;
    sk->local_port = owner->next_port++;
    if (owner->next_port < 32768) owner->next_port = 32768;
    sk->next_all = owner->w->socks;
    owner->w->socks = sk;
    return sk;
}

/* Closes a socket end: waiters get -ECANCELED, the peer gets EOF after data in flight. */
static void sock_close(struct sim_sock *sk)
{
    if (sk->closed) return;
    sk->closed = true;
    sk->fd = -1;
    sock_fail_waiters(sk, -ECANCELED);
    free(sk->rx.p);
    sk->rx = (struct sim_buf){0};
    sk->rx_head = 0;
    if (!sk->reset && sk->peer && !sk->peer->closed) sock_queue(sk, NULL, 0, true);
}

static void listener_close(struct sim_listener *l)
{
    if (l->closed) return;
    l->closed = true;
    if (l->accept_op) {
        io_op *op = l->accept_op;
        l->accept_op = NULL;
        if (op_state(op) != ST_READY && !l->owner->dead) op_ready(l->owner, op, -ECANCELED);
    }
    for (struct sim_sock *sk = l->backlog_head; sk; sk = sk->next_backlog) {
        sk->closed = true;
        conn_reset(l->owner->w, sk);
    }
    l->backlog_head = l->backlog_tail = NULL;
}

static struct sim_listener *listener_find(struct sim_io *s, uint16_t port)
{
    if (!s || s->dead) return NULL;
    for (uint32_t i = 0; i < s->nfds; i++)
        if (s->fds[i].kind == FD_LISTEN && s->fds[i].l->port == port) return s->fds[i].l;
    return NULL;
}

static int sim_listen(io *x, const char *host, uint16_t port, bool reuseport, int backlog)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return -EIO;
    if (host && *host && strcmp(host, "0.0.0.0") && strcmp(host, "127.0.0.1") &&
        strcmp(host, "localhost") && strcmp(host, s->node->addr) && strcmp(host, s->node->name))
        return -EADDRNOTAVAIL;
    if (port == 0) {
        for (int k = 0; k < 30000; k++) {
            uint16_t p = s->next_port++;
            if (s->next_port < 32768) s->next_port = 32768;
            if (!listener_find(s, p)) {
                port = p;
                break;
            }
        }
        if (port == 0) return -EADDRINUSE;
    } else if (listener_find(s, port) && !reuseport) {
        return -EADDRINUSE;
    }
    struct sim_listener *l = calloc(1, sizeof(*l));
    if (!l) return -ENOMEM;
    int fd = fd_alloc(s);
    if (fd < 0) {
        free(l);
        return fd;
    }
    l->owner = s;
    l->fd = fd;
    l->port = port;
    l->next_all = s->w->listeners;
    s->w->listeners = l;
    s->fds[fd] = (struct sim_fd){.kind = FD_LISTEN, .l = l};
    return fd;
}

static int sim_local_port(io *x, int fd)
{
    struct sim_io *s = sio_of(x);
    struct sim_fd *f = fd_get(s, fd, 0);
    if (!f) return -EBADF;
    if (f->kind == FD_LISTEN) return f->l->port;
    if (f->kind == FD_SOCK) return f->sk->local_port;
    return -ENOTSOCK;
}

/* Resolves a host to a node id: its address, its name, or loopback for `self`. */
static int resolve_host(io_sim_world *w, struct sim_io *self, const char *host)
{
    if (!strcmp(host, "127.0.0.1") || !strcmp(host, "localhost") || !strcmp(host, "::1"))
        return self->node->id;
    for (int i = 0; i < w->n_nodes; i++)
        if (!strcmp(host, w->nodes[i]->addr) || !strcmp(host, w->nodes[i]->name)) return i;
    return -1;
}

static void sim_connect(io *x, io_op *op, const char *host, uint16_t port)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return;
    op->pending = 1;
    io_sim_world *w = s->w;
    int target = resolve_host(w, s, host);
    op->len = port;
    op_new_gen(w, op, ST_EVENT);
    struct sim_event ev = {.time = w->now + w_range(w, w->opts.net_delay_min_ns,
                                                    w->opts.net_delay_max_ns),
                           .type = EV_CONNECT, .io = s, .op = op, .gen = op_gen(op),
                           .target = target};
    if (ev_push(w, ev)) op_ready(s, op, -ENOMEM);
}

/* Queues an established server-side socket on a listener and wakes the accept op. */
static void listener_push(struct sim_listener *l, struct sim_sock *sk)
{
    if (l->backlog_tail) l->backlog_tail->next_backlog = sk;
    else l->backlog_head = sk;
    l->backlog_tail = sk;
    io_op *op = l->accept_op;
    if (op && op_state(op) == ST_WAIT) op_ready(l->owner, op, 0);
}

/* EV_CONNECT: the SYN reaches the target node (or not). */
static void ev_connect(io_sim_world *w, struct sim_event *ev)
{
    struct sim_io *s = ev->io;
    io_op *op = ev->op;
    int mode;
    if (ev->target < 0) {
        op_ready(s, op, -ENETUNREACH);
        return;
    }
    if (part_get(w, s->node->id, ev->target, &mode)) {
        if (mode == IO_SIM_PART_FAIL) op_ready(s, op, -EHOSTUNREACH);
        else {
            struct sim_event again = *ev;
            again.time = w->now + SIM_RECHECK_NS;
            if (ev_push(w, again)) op_ready(s, op, -ENOMEM);
        }
        return;
    }
    struct sim_io *t = w->nodes[ev->target]->io;
    struct sim_listener *l = listener_find(t, (uint16_t)op->len);
    if (!l) {
        op_ready(s, op, -ECONNREFUSED);
        return;
    }
    struct sim_sock *c = sock_new(s), *d = sock_new(t);
    int fd = c && d ? fd_alloc(s) : -ENOMEM;
    if (fd < 0) {
        op_ready(s, op, fd);
        return;
    }
    c->peer = d;
    d->peer = c;
    c->fd = fd;
    s->fds[fd] = (struct sim_fd){.kind = FD_SOCK, .sk = c};
    listener_push(l, d);
    op_ready(s, op, fd);
}

/* ---- async ops ---- */

/* Runs a file op at its completion time. Returns the result. */
static int file_op_run(struct sim_io *s, io_op *op, const char *path)
{
    if (op->kind == IO_OP_OFFLOAD) return ((io_offload_fn)(uintptr_t)op->off)(&s->base, op->buf);
    if (op->kind == IO_OP_OPEN)
        return sim_fs_open(&s->base, path, (int)op->len, (mode_t)op->off);
    struct sim_fd *f = fd_get(s, op->fd, FD_FILE);
    if (!f) return -EBADF;
    switch (op->kind) {
    case IO_OP_READ: return (int)file_pread(s, f, op->buf, op->len, op->off);
    case IO_OP_WRITE: return (int)file_pwrite(s, f, op->buf, op->len, op->off);
    case IO_OP_WRITE_DSYNC:
        if (!op->priv[1]) return (int)file_pwrite(s, f, op->buf, op->len, op->off);
        { /* second phase: priv[1] = bytes the first one wrote + 1 */
            int n = (int)(op->priv[1] - 1);
            int err = file_sync_range(s, f, op->buf, (uint64_t)n, op->off);
            return err ? err : n;
        }
    case IO_OP_FDATASYNC:
    case IO_OP_FSYNC: return file_sync(s, f);
    case IO_OP_FALLOCATE:
        return file_fallocate(s, f, (int)op->priv[1], op->off, op->len);
    default: return -EINVAL;
    }
}

static uint64_t disk_latency(io_sim_world *w)
{
    return w_range(w, w->opts.disk_latency_min_ns, w->opts.disk_latency_max_ns);
}

static void sim_submit(io *x, io_op *op)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return;
    io_sim_world *w = s->w;
    op->pending = 1;
    switch (op->kind) {
    case IO_OP_TIMEOUT: op_schedule(s, op, op->off, NULL); return;
    case IO_OP_READ:
    case IO_OP_WRITE:
    case IO_OP_WRITE_DSYNC: /* priv[1] = 0: the write phase first (file_op_run) */
    case IO_OP_FDATASYNC:
    case IO_OP_FSYNC:
    case IO_OP_FALLOCATE:
        if (op->kind == IO_OP_FALLOCATE) op->priv[1] = op->priv[0]; /* the mode */
        op_schedule(s, op, w->now + disk_latency(w), NULL);
        return;
    case IO_OP_CLOSE:
        op_new_gen(w, op, ST_EVENT);
        op_ready(s, op, sim_fs_close(x, op->fd));
        return;
    default: break;
    }
    struct sim_fd *f = fd_get(s, op->fd, op->kind == IO_OP_ACCEPT ? FD_LISTEN : FD_SOCK);
    op_new_gen(w, op, ST_WAIT);
    if (!f) {
        op_ready(s, op, -EBADF);
        return;
    }
    if (op->kind == IO_OP_ACCEPT) {
        struct sim_listener *l = f->l;
        if (l->accept_op) {
            op_ready(s, op, -EBUSY);
            return;
        }
        l->accept_op = op;
        if (l->backlog_head) op_ready(s, op, 0);
        return;
    }
    struct sim_sock *sk = f->sk;
    if (op->kind == IO_OP_RECV) {
        if (sk->recv_op) {
            op_ready(s, op, -EBUSY);
            return;
        }
        sk->recv_op = op;
        sock_try_recv(sk);
    } else if (op->kind == IO_OP_SEND || op->kind == IO_OP_SENDMSG) {
        if (sk->send_op) {
            op_ready(s, op, -EBUSY);
            return;
        }
        sk->send_op = op;
        sock_try_send(sk);
    } else {
        op_ready(s, op, -EINVAL);
    }
}

static void sim_open(io *x, io_op *op, const char *path, int flags, mode_t mode)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return;
    op->pending = 1;
    char *p = strdup(path);
    if (!p) {
        op_new_gen(s->w, op, ST_EVENT);
        op_ready(s, op, -ENOMEM);
        return;
    }
    op_schedule(s, op, s->w->now + disk_latency(s->w), p);
}

static void sim_cancel(io *x, io_op *op)
{
    struct sim_io *s = sio_of(x);
    if (s->dead || !op->pending) return;
    int st = op_state(op);
    if (st == ST_READY) {
        if (op->kind != IO_OP_ACCEPT) return; /* already completed */
        /* An accept with a connection queued: drop the armed state below. */
    }
    if (op->kind == IO_OP_ACCEPT) {
        for (uint32_t i = 0; i < s->nfds; i++)
            if (s->fds[i].kind == FD_LISTEN && s->fds[i].l->accept_op == op)
                s->fds[i].l->accept_op = NULL;
        if (st == ST_READY) {
            op->res = -ECANCELED; /* dispatch sees accept_op cleared */
            return;
        }
    } else if (st == ST_WAIT) {
        struct sim_fd *f = fd_get(s, op->fd, FD_SOCK);
        if (f && f->sk->recv_op == op) f->sk->recv_op = NULL;
        if (f && f->sk->send_op == op) f->sk->send_op = NULL;
    }
    /* ST_EVENT: a new generation makes the scheduled event stale, and the event forgets the
     * op: once its callback has run the caller may free or reuse it (io.h), so the event must
     * never read it again. Cancels are rare: a scan of the heap is fine. */
    if (st == ST_EVENT)
        for (uint32_t i = 0; i < s->w->heap_n; i++)
            if (s->w->heap[i].op == op && s->w->heap[i].type != EV_DELIVER)
                s->w->heap[i].op = NULL;
    op_new_gen(s->w, op, ST_EVENT);
    op_ready(s, op, -ECANCELED);
}

/* io_offload: the job runs at its completion time, like a disk op (a crash before it never
 * ran it). */
static void sim_offload(io *x, io_op *op)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return;
    op->pending = 1;
    op_schedule(s, op, s->w->now + disk_latency(s->w), NULL);
}

static int sim_offload_finish(io *x, io_op *op)
{
    struct sim_io *s = sio_of(x);
    int res;
    if (s->dead) {
        res = -ECANCELED;
    } else if (op_state(op) == ST_READY) { /* ran; its callback is queued: take it back */
        io_op *prev = NULL;
        for (io_op *o = s->ready_head; o; prev = o, o = (io_op *)(uintptr_t)o->priv[1]) {
            if (o != op) continue;
            io_op *next = (io_op *)(uintptr_t)o->priv[1];
            if (prev) prev->priv[1] = (uint64_t)(uintptr_t)next;
            else s->ready_head = next;
            if (s->ready_tail == op) s->ready_tail = prev;
            s->ready_n--;
            break;
        }
        res = op->res;
    } else { /* scheduled: the event goes stale (as in sim_cancel) and the job runs now */
        for (uint32_t i = 0; i < s->w->heap_n; i++)
            if (s->w->heap[i].op == op && s->w->heap[i].type != EV_DELIVER)
                s->w->heap[i].op = NULL;
        op_new_gen(s->w, op, ST_EVENT);
        res = ((io_offload_fn)(uintptr_t)op->off)(x, op->buf);
    }
    op->priv[1] = 0;
    op->pending = 0;
    op->res = res;
    return res;
}

static void sim_close_now(io *x, int fd)
{
    sim_fs_close(x, fd);
}

/* ---- poll, wakeup, time ---- */

/* Dispatches a ready accept: hands out one backlog connection (IO_F_MORE) or the final
 * result. Returns 1 if the callback ran. */
static int accept_dispatch(struct sim_io *s, io_op *op)
{
    struct sim_fd *f = fd_get(s, op->fd, FD_LISTEN);
    struct sim_listener *l = f ? f->l : NULL;
    if (!l || l->accept_op != op || op->res < 0) {
        if (l && l->accept_op == op) l->accept_op = NULL;
        op->pending = 0;
        op->flags = 0;
        if (op->res >= 0) op->res = -ECANCELED;
        op->cb(op);
        return 1;
    }
    struct sim_sock *sk = l->backlog_head;
    op_set_state(op, ST_WAIT);
    if (!sk) return 0;
    l->backlog_head = sk->next_backlog;
    if (!l->backlog_head) l->backlog_tail = NULL;
    int fd = fd_alloc(s);
    if (fd < 0) {
        conn_reset(s->w, sk);
        op->res = fd;
    } else {
        sk->fd = fd;
        s->fds[fd] = (struct sim_fd){.kind = FD_SOCK, .sk = sk};
        op->res = fd;
    }
    op->flags = IO_F_MORE;
    op->cb(op);
    if (l->accept_op == op && l->backlog_head && op_state(op) == ST_WAIT) op_ready(s, op, 0);
    return 1;
}

static int sim_poll(io *x, uint64_t deadline_ns)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return 0;
    io_sim_world *w = s->w;
    int ran = 0;
    uint32_t budget = s->ready_n; /* what is ready now; newer completions wait a round */
    while (budget-- > 0 && s->ready_head && !s->dead) {
        io_op *op = s->ready_head;
        s->ready_head = (io_op *)(uintptr_t)op->priv[1];
        if (!s->ready_head) s->ready_tail = NULL;
        s->ready_n--;
        op->priv[1] = 0;
        w_mix(w, w->now);
        w_mix(w, ((uint64_t)(uint32_t)s->node->id << 40) | ((uint64_t)op->kind << 32) |
                     (uint32_t)op->res);
        if (op->kind == IO_OP_ACCEPT) {
            ran += accept_dispatch(s, op);
            continue;
        }
        op->pending = 0;
        op->flags = 0;
        op->cb(op);
        ran++;
    }
    s->wake_at = (deadline_ns == 0 || deadline_ns == UINT64_MAX) ? SIM_NONE : deadline_ns;
    return ran;
}

static void sim_wakeup(io *x)
{
    sio_of(x)->woken = true;
}

static uint64_t sim_now_ns(io *x)
{
    return sio_of(x)->w->now;
}

static int64_t sim_wall_ms(io *x)
{
    return SIM_EPOCH_MS + (int64_t)(sio_of(x)->w->now / 1000000ull);
}

/* ---- incarnations, crash, restart ---- */

/* Ends an incarnation: fds closed (sockets reset, listeners gone), nothing completes later. */
static void sio_kill(struct sim_io *s)
{
    if (s->dead) return;
    s->dead = true;
    io_sim_world *w = s->w;
    for (uint32_t i = 0; i < s->nfds; i++) {
        struct sim_fd *f = &s->fds[i];
        if (f->kind == FD_FILE) ino_unref(f->ino);
        else if (f->kind == FD_LISTEN) listener_close(f->l);
        else if (f->kind == FD_SOCK) {
            f->sk->recv_op = f->sk->send_op = NULL;
            conn_reset(w, f->sk);
            f->sk->closed = true;
        }
        memset(f, 0, sizeof(*f));
    }
    /* Sockets created but not yet accepted by someone else's listener stay with their
     * connection; our own unaccepted ones die with our listeners above. Connections whose
     * client end belongs to us but whose connect has not completed are dropped by the stale
     * op generation / dead check. */
    for (struct sim_sock *sk = w->socks; sk; sk = sk->next_all)
        if (sk->owner == s && !sk->reset) {
            sk->recv_op = sk->send_op = NULL;
            conn_reset(w, sk);
        }
    s->ready_head = s->ready_tail = NULL;
    s->ready_n = 0;
    s->wake_at = SIM_NONE;
    s->woken = false;
    free(s->fds);
    s->fds = NULL;
    s->nfds = 0;
    w_mix(w, 0xdeadull + (uint64_t)s->node->id);
}

static void sim_destroy(io *x)
{
    sio_kill(sio_of(x));
}

static struct sim_io *sio_new(io_sim_world *w, struct sim_node *n)
{
    struct sim_io *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->w = w;
    s->node = n;
    s->wake_at = SIM_NONE;
    s->next_port = 32768;
    io_base_init(&s->base, &sim_ops, w_rand(w));
    s->next_all = w->ios;
    w->ios = s;
    n->io = s;
    return s;
}

/* Power loss on a disk: namespace and contents revert to what is durable, except a prefix of
 * keep bytes of the last non-durable write. */
static void disk_crash(io_sim_world *w, struct sim_disk *d, uint64_t keep)
{
    struct sim_inode *lw = d->lw_ino;
    uint8_t *torn = NULL;
    uint64_t toff = d->lw_off, tlen = 0;
    if (lw && keep > 0) {
        uint64_t end = AL_MIN(d->lw_off + AL_MIN(keep, d->lw_len), lw->cur.len);
        if (end > toff) {
            tlen = end - toff;
            torn = malloc(tlen);
            if (torn) memcpy(torn, lw->cur.p + toff, tlen);
            else tlen = 0;
        }
    }
    /* Namespace: cur := dur. */
    ns_clear(&d->cur);
    for (uint32_t i = 0; i < d->dur.n; i++) ns_set(&d->cur, d->dur.v[i].path, d->dur.v[i].ino);
    /* Contents: cur := dur for every surviving inode. */
    for (uint32_t i = 0; i < d->dur.n; i++) {
        struct sim_inode *ino = d->dur.v[i].ino;
        if (ino->is_dir) continue;
        if (buf_reserve(&ino->cur, ino->dur.len) == 0) {
            if (ino->dur.len) memcpy(ino->cur.p, ino->dur.p, ino->dur.len);
            ino->cur.len = ino->dur.len;
        }
        ino->dlo = ino->dhi = 0;
    }
    if (torn && lw->refs > 1) { /* still reachable (not just our lw reference) */
        bool reachable = false;
        for (uint32_t i = 0; i < d->dur.n; i++)
            if (d->dur.v[i].ino == lw) reachable = true;
        if (reachable && buf_reserve(&lw->cur, toff + tlen) == 0 &&
            buf_reserve(&lw->dur, toff + tlen) == 0) {
            /* What reached the platter before the power went is on disk now: durable. */
            if (toff + tlen > lw->cur.len) buf_resize(&lw->cur, toff + tlen);
            memcpy(lw->cur.p + toff, torn, tlen);
            if (toff + tlen > lw->dur.len) buf_resize(&lw->dur, toff + tlen);
            memcpy(lw->dur.p + toff, torn, tlen);
        }
    }
    free(torn);
    if (lw) ino_unref(lw);
    d->lw_ino = NULL;
    d->lw_len = 0;
    w_mix(w, 0xc2a5ull ^ keep);
}

static void crash_with(struct sim_io *s, uint64_t keep)
{
    if (s->dead) return;
    sio_kill(s);
    disk_crash(s->w, &s->node->disk, keep);
}

void io_sim_crash(io *x)
{
    struct sim_io *s = sio_of(x);
    if (s->dead) return;
    struct sim_disk *d = &s->node->disk;
    uint64_t keep = 0;
    if (s->w->opts.torn_writes && d->lw_ino) keep = w_range(s->w, 0, d->lw_len);
    crash_with(s, keep);
}

void io_sim_crash_torn(io *x, uint64_t keep_bytes)
{
    crash_with(sio_of(x), keep_bytes);
}

uint64_t io_sim_last_write_len(io *x)
{
    struct sim_disk *d = &sio_of(x)->node->disk;
    return d->lw_ino ? d->lw_len : 0;
}

io *io_sim_restart(io *old)
{
    struct sim_io *s = sio_of(old);
    if (!s->dead) io_sim_crash(old);
    struct sim_io *n = sio_new(s->w, s->node);
    return n ? &n->base : NULL;
}

bool io_sim_is_dead(io *x)
{
    return sio_of(x)->dead;
}

/* ---- faults ---- */

void io_sim_fault_set(io *x, enum io_sim_fault f, uint32_t ppm)
{
    AL_ASSERT((unsigned)f < IO_SIM_FAULT_COUNT);
    sio_of(x)->node->disk.faults[f].ppm = ppm;
}

void io_sim_fault_at(io *x, enum io_sim_fault f, uint64_t nth)
{
    AL_ASSERT((unsigned)f < IO_SIM_FAULT_COUNT);
    sio_of(x)->node->disk.faults[f].nth = nth;
}

uint64_t io_sim_fault_count(io *x)
{
    return sio_of(x)->node->disk.fault_count;
}

uint64_t io_sim_fs_sync_count(io *x)
{
    return sio_of(x)->node->disk.fs_syncs;
}

static int part_ensure(io_sim_world *w)
{
    if (w->part_dim >= w->n_nodes) return 0;
    int dim = w->n_nodes + 8;
    uint8_t *p = calloc((size_t)dim * (size_t)dim, 1);
    if (!p) return -ENOMEM;
    for (int a = 0; a < w->part_dim; a++)
        for (int b = 0; b < w->part_dim; b++) p[a * dim + b] = w->part[a * w->part_dim + b];
    free(w->part);
    w->part = p;
    w->part_dim = dim;
    return 0;
}

static void part_set(io_sim_world *w, int a, int b, uint8_t v)
{
    if (a < 0 || b < 0 || a >= w->n_nodes || b >= w->n_nodes || a == b) return;
    if (part_ensure(w)) return;
    w->part[a * w->part_dim + b] = v;
    w->part[b * w->part_dim + a] = v;
}

/* Resets every connection between nodes a and b (FAIL partitions act at once). */
static void part_reset_conns(io_sim_world *w, int a, int b)
{
    for (struct sim_sock *sk = w->socks; sk; sk = sk->next_all) {
        if (sk->reset || !sk->peer) continue;
        int x = sk->owner->node->id, y = sk->peer->owner->node->id;
        if ((x == a && y == b) || (x == b && y == a)) conn_reset(w, sk);
    }
}

void io_sim_partition(io_sim_world *w, int a, int b, enum io_sim_part mode)
{
    part_set(w, a, b, (uint8_t)(1 + mode));
    if (mode == IO_SIM_PART_FAIL) part_reset_conns(w, a, b);
    w_mix(w, 0x9a27ull ^ ((uint64_t)a << 8) ^ (uint64_t)b);
}

void io_sim_isolate(io_sim_world *w, int a, enum io_sim_part mode)
{
    for (int b = 0; b < w->n_nodes; b++)
        if (b != a) io_sim_partition(w, a, b, mode);
}

void io_sim_heal(io_sim_world *w, int a, int b)
{
    part_set(w, a, b, 0);
    w_mix(w, 0x4ea1ull ^ ((uint64_t)a << 8) ^ (uint64_t)b);
}

void io_sim_heal_all(io_sim_world *w)
{
    if (w->part) memset(w->part, 0, (size_t)w->part_dim * (size_t)w->part_dim);
    w_mix(w, 0x4ea1a11ull);
}

void io_sim_drop_connections(io *x)
{
    struct sim_io *s = sio_of(x);
    for (struct sim_sock *sk = s->w->socks; sk; sk = sk->next_all)
        if (sk->owner == s && !sk->reset && sk->peer) conn_reset(s->w, sk);
}

/* ---- world and nodes ---- */

int io_sim_world_create(io_sim_world **out, const struct io_sim_opts *opts)
{
    *out = NULL;
    io_sim_world *w = calloc(1, sizeof(*w));
    if (!w) return -ENOMEM;
    if (opts) w->opts = *opts;
    if (!w->opts.disk_latency_max_ns && !w->opts.disk_latency_min_ns) {
        w->opts.disk_latency_min_ns = 20000;
        w->opts.disk_latency_max_ns = 200000;
    }
    if (!w->opts.net_delay_max_ns && !w->opts.net_delay_min_ns) {
        w->opts.net_delay_min_ns = 50000;
        w->opts.net_delay_max_ns = 500000;
    }
    uint64_t s = w->opts.seed;
    for (int i = 0; i < 4; i++) w->rng[i] = io_splitmix64(&s);
    w->now = SIM_START_NS;
    w->hash = 0x51a17ull ^ w->opts.seed;
    *out = w;
    return 0;
}

void io_sim_world_destroy(io_sim_world *w)
{
    if (!w) return;
    for (struct sim_io *s = w->ios; s; s = s->next_all) sio_kill(s);
    for (uint32_t i = 0; i < w->heap_n; i++) free(w->heap[i].path);
    free(w->heap);
    for (struct sim_sock *sk = w->socks, *n; sk; sk = n) {
        n = sk->next_all;
        chunks_free(sk);
        free(sk->rx.p);
        free(sk);
    }
    for (struct sim_listener *l = w->listeners, *n; l; l = n) {
        n = l->next_all;
        free(l);
    }
    for (struct sim_io *s = w->ios, *n; s; s = n) {
        n = s->next_all;
        free(s);
    }
    for (int i = 0; i < w->n_nodes; i++) {
        struct sim_disk *d = &w->nodes[i]->disk;
        if (d->lw_ino) ino_unref(d->lw_ino);
        ns_clear(&d->cur);
        ns_clear(&d->dur);
        free(w->nodes[i]);
    }
    free(w->nodes);
    free(w->part);
    free(w);
}

io *io_sim_node_create(io_sim_world *w, const char *name)
{
    if (!name || strlen(name) >= sizeof(((struct sim_node *)0)->name)) return NULL;
    for (int i = 0; i < w->n_nodes; i++)
        if (!strcmp(w->nodes[i]->name, name)) return NULL;
    if (w->n_nodes >= 250) return NULL; /* 10.0.0.1 .. 10.0.0.250 */
    if (w->n_nodes == w->cap_nodes) {
        int cap = w->cap_nodes ? w->cap_nodes * 2 : 8;
        struct sim_node **v = realloc(w->nodes, (size_t)cap * sizeof(*v));
        if (!v) return NULL;
        w->nodes = v;
        w->cap_nodes = cap;
    }
    struct sim_node *n = calloc(1, sizeof(*n));
    if (!n) return NULL;
    n->id = w->n_nodes;
    snprintf(n->name, sizeof(n->name), "%s", name);
    snprintf(n->addr, sizeof(n->addr), "10.0.0.%d", n->id + 1);
    w->nodes[w->n_nodes++] = n;
    if (part_ensure(w) || !sio_new(w, n)) {
        w->n_nodes--;
        free(n);
        return NULL;
    }
    return &n->io->base;
}

int io_sim_node_id(io *x)
{
    return sio_of(x)->node->id;
}

const char *io_sim_node_name(io *x)
{
    return sio_of(x)->node->name;
}

const char *io_sim_node_addr(io *x)
{
    return sio_of(x)->node->addr;
}

io *io_sim_node_io(io_sim_world *w, int id)
{
    if (id < 0 || id >= w->n_nodes) return NULL;
    return &w->nodes[id]->io->base;
}

io *io_sim_node_find(io_sim_world *w, const char *name)
{
    for (int i = 0; i < w->n_nodes; i++)
        if (!strcmp(w->nodes[i]->name, name)) return &w->nodes[i]->io->base;
    return NULL;
}

io_sim_world *io_sim_world_of(io *x)
{
    return sio_of(x)->w;
}

void io_sim_node_set_driver(io *x, void (*fn)(io *node, void *arg), void *arg)
{
    struct sim_io *s = sio_of(x);
    s->driver = fn;
    s->driver_arg = arg;
    if (!s->dead) s->woken = true; /* let the new driver run once */
}

/* ---- stepping ---- */

static bool sio_runnable(const struct sim_io *s, uint64_t now)
{
    return !s->dead && (s->ready_head || s->woken || s->wake_at <= now);
}

/* Runs every runnable node (creation order) until none is. Returns drivers run, or
 * AL_EFULL after SIM_RUN_LIMIT rounds. */
static int run_runnable(io_sim_world *w)
{
    int ran = 0;
    for (int round = 0; round < SIM_RUN_LIMIT; round++) {
        bool any = false;
        for (int i = 0; i < w->n_nodes; i++) {
            struct sim_io *s = w->nodes[i]->io;
            if (!sio_runnable(s, w->now)) continue;
            any = true;
            s->woken = false;
            s->wake_at = SIM_NONE;
            if (s->driver) s->driver(&s->base, s->driver_arg);
            else io_poll(&s->base, 0);
            ran++;
        }
        if (!any) return ran;
    }
    return AL_EFULL;
}

/* The earliest time something is scheduled (event or node deadline), or SIM_NONE. */
static uint64_t next_time(io_sim_world *w)
{
    uint64_t t = w->heap_n ? w->heap[0].time : SIM_NONE;
    for (int i = 0; i < w->n_nodes; i++) {
        struct sim_io *s = w->nodes[i]->io;
        if (!s->dead && s->wake_at < t) t = s->wake_at;
    }
    return t;
}

/* Processes one event. Returns 1 if it did anything, 0 if it was stale. */
static int ev_run(io_sim_world *w, struct sim_event *ev)
{
    if (ev->type == EV_DELIVER) {
        w_mix(w, (w->now << 4) | EV_DELIVER);
        ev_deliver(w, ev->sk);
        return 1;
    }
    struct sim_io *s = ev->io;
    if (s->dead || !ev->op || op_gen(ev->op) != ev->gen || op_state(ev->op) != ST_EVENT) {
        free(ev->path);
        return 0;
    }
    w_mix(w, (w->now << 4) | ev->type);
    if (ev->type == EV_CONNECT) {
        ev_connect(w, ev);
        return 1;
    }
    io_op *op = ev->op;
    int res = op->kind == IO_OP_TIMEOUT ? -ETIME : file_op_run(s, op, ev->path);
    free(ev->path);
    if (op->kind == IO_OP_WRITE_DSYNC && !op->priv[1] && res > 0) {
        /* Written, not yet durable (a crash now may tear it): the sync half comes next. */
        op->priv[1] = (uint64_t)res + 1;
        op_schedule(s, op, w->now + disk_latency(w), NULL);
        return 1;
    }
    op_ready(s, op, res);
    return 1;
}

int io_sim_world_step(io_sim_world *w)
{
    int n = run_runnable(w);
    if (n != 0) return n;
    uint64_t t = next_time(w);
    if (t == SIM_NONE) return 0;
    if (t > w->now) w->now = t;
    int done = 0;
    for (int k = 0; k < SIM_RUN_LIMIT && w->heap_n && w->heap[0].time <= w->now; k++) {
        struct sim_event ev = ev_pop(w);
        done += ev_run(w, &ev);
    }
    n = run_runnable(w);
    if (n < 0) return n;
    return done + n + 1; /* +1: time advanced or a deadline came, even if all was stale */
}

int64_t io_sim_world_run_until(io_sim_world *w, uint64_t t_ns, uint64_t max_steps)
{
    int64_t steps = 0;
    for (;;) {
        if (max_steps && (uint64_t)steps >= max_steps) break;
        int r = run_runnable(w);
        if (r < 0) return r;
        uint64_t t = next_time(w);
        if (t == SIM_NONE || t > t_ns) break;
        r = io_sim_world_step(w);
        if (r < 0) return r;
        steps++;
    }
    if (w->now < t_ns) w->now = t_ns;
    return steps;
}

static const struct io_backend_ops sim_ops = {
    .name = "sim",
    .destroy = sim_destroy,
    .poll = sim_poll,
    .wakeup = sim_wakeup,
    .now_ns = sim_now_ns,
    .wall_ms = sim_wall_ms,
    .listen = sim_listen,
    .local_port = sim_local_port,
    .submit = sim_submit,
    .connect = sim_connect,
    .open = sim_open,
    .cancel = sim_cancel,
    .close_now = sim_close_now,
    .offload = sim_offload,
    .offload_finish = sim_offload_finish,
    .fs_open = sim_fs_open,
    .fs_close = sim_fs_close,
    .fs_pread = sim_fs_pread,
    .fs_pwrite = sim_fs_pwrite,
    .fs_fsync = sim_fs_fsync,
    .fs_ftruncate = sim_fs_ftruncate,
    .fs_fallocate = sim_fs_fallocate,
    .fs_size = sim_fs_size,
    .fs_rename = sim_fs_rename,
    .fs_unlink = sim_fs_unlink,
    .fs_mkdir = sim_fs_mkdir,
    .fs_rmdir = sim_fs_rmdir,
    .fs_fsync_dir = sim_fs_fsync_dir,
    .fs_exists = sim_fs_exists,
    .fs_list = sim_fs_list,
};
