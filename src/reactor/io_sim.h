/*
 * io_sim.h — the deterministic simulator back end of io.h: many `io`s ("nodes") in one thread,
 * in one `io_sim_world`, with a virtual clock, an in-memory disk per node that models power
 * loss (and torn writes), an in-memory network between nodes with delays, dropped connections
 * and partitions, and fault injection. Everything random comes from the world's seed, so a
 * seed replays exactly; io_sim_world_hash() fingerprints a run.
 *
 * THE DRIVER LOOP. Nothing happens until the world is stepped. io_sim_world_step() does:
 *   1. runs every node that is runnable at the current virtual time (a completion is ready,
 *      io_wakeup() was called on it, or the deadline it last passed to io_poll has come), in
 *      node-creation order, by calling the node's driver (default: io_poll(node, 0)); a driver
 *      (the reactor's shard loop, say) must call io_poll(node, deadline) once; the deadline
 *      it passes is when the node wants to run again (0: not on its own account);
 *   2. if nothing was runnable, advances the clock to the earliest scheduled event (or node
 *      deadline) and processes every event due at that time (disk completions, network
 *      deliveries, timeouts), then runs the nodes that became runnable.
 * It returns the number of events and callbacks processed, 0 when the world is idle (nothing
 * scheduled, nothing runnable). io_poll() on a simulated io never advances time and never
 * blocks: it runs the callbacks that are ready now. A test typically loops
 *   while (!done && io_sim_world_step(w) > 0) {}
 * or calls io_sim_world_run_until(w, t).
 *
 * THE DISK MODEL (per node; survives crashes). A tree of directories and regular files keyed
 * by path ("." and "/" always exist; parents must exist as on Linux). Each file keeps its
 * current contents and its durable contents (as of the last completed fsync/fdatasync of any
 * fd on it; fsync and fdatasync are the same here and both persist the size). Each directory
 * entry (create, unlink, rename, mkdir, rmdir) is durable only once the parent directory is
 * fsynced (io_fs_fsync_dir); fsync of a file does NOT make its name durable. A crash
 * (io_sim_crash) replaces the namespace with the durable one and each file's contents with its
 * durable contents; with torn writes on, the most recent non-durable write of the node is kept
 * partially (a prefix of a length drawn from the seed), if its file survives the crash.
 * O_DIRECT fds check that buffer address, length and offset are 4096-aligned (-EINVAL).
 * Asynchronous disk ops take effect when they complete, after a latency drawn from the range in
 * the options; io_fs_* calls take effect at once and take no virtual time.
 *
 * THE NETWORK MODEL. Node k (0-based creation order) has address "10.0.0.<k+1>"; io_connect
 * accepts that address, the node's name, or "127.0.0.1"/"localhost" for itself. Ports are
 * per node. A connection is two ordered byte pipes; each send takes up to 64 KiB (and no more
 * than the 256 KiB window the receiver has not yet read), completes at once, and its bytes
 * arrive after a delay drawn from the options (never before earlier bytes). io_close sends EOF
 * after the data in flight. Partitions between two nodes either fail (connections reset,
 * connects get -EHOSTUNREACH) or hang (connects and bytes wait until healed). With
 * net_drop_ppm, each delivered chunk resets its connection with that probability.
 *
 * CRASH AND RESTART. io_sim_crash(node) is power loss: the node's pending ops vanish (no
 * callbacks), its connections are reset (peers see -ECONNRESET), its listeners disappear, the
 * disk loses what was not durable. io_sim_restart() returns a fresh io for the same node (same
 * name, address, disk and faults; default driver). A crashed (or destroyed) io stays allocated
 * until the world is destroyed, so stale pointers are harmless: ops on it never complete,
 * io_fs_* calls on it return -EIO, io_poll returns 0.
 *
 * Threading: a world and all its nodes belong to one thread; io_wakeup too is only for that
 * thread here.
 */
#ifndef AL_IO_SIM_H
#define AL_IO_SIM_H

#include "reactor/io.h"

typedef struct io_sim_world io_sim_world;

struct io_sim_opts {
    uint64_t seed;                 /* everything random derives from it (0 is a valid seed) */
    uint64_t disk_latency_min_ns;  /* async disk op latency range; default 20 us .. 200 us */
    uint64_t disk_latency_max_ns;
    uint64_t net_delay_min_ns;     /* one-way delivery delay range; default 50 us .. 500 us */
    uint64_t net_delay_max_ns;
    uint32_t net_drop_ppm;         /* per delivered chunk: reset the connection (per million) */
    bool torn_writes;              /* io_sim_crash keeps a seeded prefix of the last write */
    bool durable_dirents;          /* true: names are durable at once (no dir fsync needed) */
};

/* Creates a world (opts NULL: defaults, seed 0). Returns 0 or -ENOMEM. */
int io_sim_world_create(io_sim_world **out, const struct io_sim_opts *opts);

/* Destroys the world and every node and io in it (ios must not be used afterwards). */
void io_sim_world_destroy(io_sim_world *w);

/* Creates a node and returns its io, or NULL (out of memory, name too long or in use). The
 * io belongs to the world; io_destroy() on it is allowed (it then just stops existing). */
io *io_sim_node_create(io_sim_world *w, const char *name);
/* io_destroy() on a simulated io is a clean process exit: connections are reset, fds closed
 * (nothing durable is lost), pending ops never complete. */

/* Node facts. */
int io_sim_node_id(io *node);                 /* 0-based creation index */
const char *io_sim_node_name(io *node);
const char *io_sim_node_addr(io *node);       /* "10.0.0.<id+1>" */
io *io_sim_node_io(io_sim_world *w, int id);  /* the current io of node id, or NULL */
io *io_sim_node_find(io_sim_world *w, const char *name); /* current io by name, or NULL */
io_sim_world *io_sim_world_of(io *node);

/* Replaces the node's driver (see THE DRIVER LOOP); fn NULL restores the default. */
void io_sim_node_set_driver(io *node, void (*fn)(io *node, void *arg), void *arg);

/* ---- running ---- */

uint64_t io_sim_world_now(io_sim_world *w);
/* One step (see above). Returns events + callbacks processed, 0 when idle, or AL_EFULL
 * if a runaway node kept being runnable at one instant more than a million times. */
int io_sim_world_step(io_sim_world *w);
/* Steps until the next step would pass time t, then sets the clock to t (if later). Returns
 * the number of steps taken (bounded by max_steps; 0 means no bound). */
int64_t io_sim_world_run_until(io_sim_world *w, uint64_t t_ns, uint64_t max_steps);
/* Fingerprint of everything that happened so far (events, times, results, node ids). */
uint64_t io_sim_world_hash(io_sim_world *w);
/* Draws from the world's own PRNG (for test scenarios: also deterministic). */
uint64_t io_sim_world_random(io_sim_world *w);

/* ---- crashes ---- */

/* Power loss for the node; torn write per the world option. */
void io_sim_crash(io *node);
/* Power loss keeping exactly keep_bytes (clamped) of the node's last non-durable write. */
void io_sim_crash_torn(io *node, uint64_t keep_bytes);
/* Length of the node's last non-durable write (0: none): bounds io_sim_crash_torn loops. */
uint64_t io_sim_last_write_len(io *node);
/* A fresh io on the node's disk (crashes `old` first if it is still alive). NULL on ENOMEM. */
io *io_sim_restart(io *old);
/* True once the io was crashed or destroyed. */
bool io_sim_is_dead(io *node);

/* ---- disk faults (per node, survive restarts) ---- */

enum io_sim_fault {
    IO_SIM_FAULT_WRITE_EIO,       /* write (async and io_fs_pwrite) fails with -EIO */
    IO_SIM_FAULT_WRITE_ENOSPC,    /* write fails with -ENOSPC */
    IO_SIM_FAULT_FALLOCATE_ENOSPC,/* fallocate fails with -ENOSPC */
    IO_SIM_FAULT_FSYNC_EIO,       /* fsync/fdatasync (async and sync) fail with -EIO; the data
                                     stays non-durable */
    IO_SIM_FAULT_READ_EIO,        /* read fails with -EIO */
    IO_SIM_FAULT_COUNT
};

/* Each op of that kind fails with probability ppm / 1e6 (0 turns it off). */
void io_sim_fault_set(io *node, enum io_sim_fault f, uint32_t ppm);
/* The nth next op of that kind (1 = the very next) fails, once. 0 cancels. */
void io_sim_fault_at(io *node, enum io_sim_fault f, uint64_t nth);
/* Number of faults injected so far on the node (all kinds). */
uint64_t io_sim_fault_count(io *node);
/* Synchronous sync calls made on the node so far (io_fs_fsync, io_fs_fdatasync,
 * io_fs_fsync_dir; not the log's durable write ops), for tests of what a path syncs. */
uint64_t io_sim_fs_sync_count(io *node);

/* Makes a directory and its missing parents, durably (test set-up). Returns 0 or -errno. */
int io_sim_fs_mkdir_p(io *node, const char *path);

/* ---- network faults ---- */

enum io_sim_part { IO_SIM_PART_FAIL, IO_SIM_PART_HANG };

/* Partitions node ids a and b (both directions). */
void io_sim_partition(io_sim_world *w, int a, int b, enum io_sim_part mode);
/* Partitions node id a from every other node. */
void io_sim_isolate(io_sim_world *w, int a, enum io_sim_part mode);
void io_sim_heal(io_sim_world *w, int a, int b);
void io_sim_heal_all(io_sim_world *w);
/* Resets every connection of the node at once (peers and the node see -ECONNRESET). */
void io_sim_drop_connections(io *node);

#endif
