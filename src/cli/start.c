/*
 * start.c — `ailurus start`: loads the configuration, prepares the data directory and the
 * cluster id, starts the reactor with a Kafka listener on every shard, logs one "ready" line
 * when every shard is serving, and stops cleanly on SIGINT/SIGTERM (the reactor's supervisor
 * catches them and runs every shard's shutdown hooks). In cluster mode the first signal
 * first hands this node's Raft leaderships to other replicas (controlled shutdown,
 * src/cluster/cluster_shutdown.h, up to controlled_shutdown_timeout_ms).
 */
#include "base/log.h"
#include "cli/commands.h"
#include "cli/version.h"
#include "cluster/cluster.h"
#include "cluster/cluster_shutdown.h"
#include "cluster/data_plane.h"
#include "config/config.h"
#include "http/admin.h" /* operations: admin API + metrics collector */
#include "kafka/request.h"
#include "net/server.h"
#include "reactor/reactor.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define CLUSTER_ID_FILE "cluster_id"
#define PORT_WAIT_MS    5000

struct start_ctx {
    al_config cfg;
    struct kafka_broker broker;
    net_server srv;
    net_shard *shards;
    struct data_plane *dp; /* topics and partitions (src/cluster/data_plane.h) */
    unsigned n_shards;
    bool port_from_shard0; /* kafka_addr port 0: shard 0 binds first, the others wait */
    int port_ready;        /* atomic: shard 0 has bound and set the advertised port */
    int ready;             /* atomic: shards serving (+1: the cluster joined) */
    bool cluster;          /* seed_servers set: the node service runs on shard 0 */
    uint64_t shutdown_ms;  /* cluster mode: controlled shutdown timeout (0: none) */
    uint64_t t0_ns;
    char cluster_id[128];
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* mkdir -p through the io interface. Returns 0 or -errno. */
static int mkdir_p(io *iop, const char *path)
{
    char buf[CONFIG_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf)) return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char saved = buf[i];
        buf[i] = 0;
        int rc = io_fs_mkdir(iop, buf, 0755);
        buf[i] = saved;
        if (rc < 0 && rc != -EEXIST) return rc;
    }
    return 0;
}

/* Loads <data_dir>/cluster_id or creates it (random, UUID-shaped) with the durable-write
 * ritual. A configured cluster_id wins and is not written. Returns 0 or -errno. */
static int load_cluster_id(io *iop, struct start_ctx *s)
{
    if (s->cfg.cluster_id[0]) {
        snprintf(s->cluster_id, sizeof(s->cluster_id), "%s", s->cfg.cluster_id);
        return 0;
    }
    char path[CONFIG_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s", s->cfg.data_directory, CLUSTER_ID_FILE);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = io_fs_read_all(iop, path, sizeof(s->cluster_id) - 1, &data, &len);
    if (rc == 0) {
        while (len && (data[len - 1] == '\n' || data[len - 1] == ' ')) len--;
        if (len == 0) {
            free(data);
            log_error("start", "%s is empty", path);
            return AL_ECORRUPT;
        }
        memcpy(s->cluster_id, data, len);
        s->cluster_id[len] = 0;
        free(data);
        return 0;
    }
    if (rc != -ENOENT) return rc;
    uint64_t a = io_random(iop), b = io_random(iop);
    snprintf(s->cluster_id, sizeof(s->cluster_id), "%08x-%04x-4%03x-%04x-%012" PRIx64,
             (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)(0x8000 | ((b >> 48) & 0x3fff)), (uint64_t)(b & 0xffffffffffffull));
    char line[160];
    int n = snprintf(line, sizeof(line), "%s\n", s->cluster_id);
    rc = io_fs_write_atomic(iop, path, line, (size_t)n);
    if (rc == 0) log_info("start", "new cluster id %s written to %s", s->cluster_id, path);
    return rc;
}

static void shard_stop_hook(reactor_shard *self, void *arg)
{
    (void)self;
    net_shard_stop(arg);
}

/* One more part is serving (each shard, and in cluster mode the join): the last one logs the
 * "ready" line tests and operators wait for. Any thread. */
static void start_ready_one(void *arg)
{
    struct start_ctx *s = arg;
    int want = (int)s->n_shards + (s->cluster ? 1 : 0);
    if (__atomic_add_fetch(&s->ready, 1, __ATOMIC_ACQ_REL) != want) return;
    __atomic_store_n(&s->srv.hold, 0, __ATOMIC_RELEASE); /* cluster mode: serve from now on */
    /* operations: /v1/status/ready answers 200, /v1/brokers shows the bound port */
    admin_node_ready(s->broker.advertised_host, s->broker.advertised_port);
    double ms = (double)(mono_ns() - s->t0_ns) / 1e6;
    log_info("start",
             "ready: kafka=%s:%u advertised=%s:%d node_id=%d shards=%u cluster_id=%s "
             "data_directory=%s (%.1f ms from start)",
             s->srv.host, s->shards[0].port, s->broker.advertised_host,
             s->broker.advertised_port, s->broker.node_id, s->n_shards, s->broker.cluster_id,
             s->cfg.data_directory, ms);
}

static int shard_init(reactor_shard *self, void *arg)
{
    struct start_ctx *s = arg;
    unsigned idx = reactor_shard_index(self);
    io *iop = reactor_io(self);
    if (s->port_from_shard0 && idx != 0) {
        /* Wait (bounded) for shard 0 to bind the ephemeral port everyone then shares. */
        for (int i = 0; i < PORT_WAIT_MS && !__atomic_load_n(&s->port_ready, __ATOMIC_ACQUIRE);
             i++)
            usleep(1000);
        if (!__atomic_load_n(&s->port_ready, __ATOMIC_ACQUIRE)) {
            log_error("start", "shard %u: shard 0 did not bind a port", idx);
            return AL_ETIMEDOUT;
        }
    }
    /* Partitions first (their shutdown hook then runs after the listener's), then serve. */
    int rc = data_shard_start(self, s->dp);
    if (rc) return rc;
    /* operations (src/http/admin.h): metrics on every shard, admin API on shard 0. */
    rc = admin_shard_start(self, &s->cfg, s->cluster_id, s->n_shards);
    if (rc) return rc;
    net_shard *sh = &s->shards[idx];
    rc = net_shard_start(sh, &s->srv, iop, (int)idx);
    if (rc) return rc;
    if (idx == 0) {
        if (s->broker.advertised_port == 0) s->broker.advertised_port = sh->port;
        __atomic_store_n(&s->port_ready, 1, __ATOMIC_RELEASE);
    }
    rc = reactor_on_shutdown(self, shard_stop_hook, sh);
    if (rc) return rc;
    if (idx == 0 && s->cluster) {
        /* The node service (src/cluster/cluster.h): "ready" waits until it has joined. */
        struct cluster_start_opts co = {.cfg = &s->cfg,
                                        .smp = s->n_shards,
                                        .kafka_host = s->broker.advertised_host,
                                        .kafka_port = (uint16_t)s->broker.advertised_port,
                                        .cluster_id = s->cluster_id,
                                        .cluster_id_cap = sizeof(s->cluster_id),
                                        .on_ready = start_ready_one,
                                        .arg = s};
        rc = cluster_start(self, &co);
        if (rc) return rc;
    }
    start_ready_one(s);
    return 0;
}

int cmd_start(int argc, char **argv)
{
    /* malloc policy (issue 6, BENCHMARKS.md): Fetch and segment buffers of 128 KiB..32 MiB are
     * kept in the heap when freed instead of being mmap'd and unmapped each time (glibc's
     * default), which halved page faults per MB and cut broker CPU per MB by ~30%. Cost: the
     * heap keeps up to 256 MiB of freed memory after a burst before trimming (idle RSS at
     * start is unchanged). Set before the first allocation so every arena follows it. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    struct start_ctx *s = calloc(1, sizeof(*s));
    if (!s) return CLI_FAILED;
    int ret = CLI_FAILED;
    s->t0_ns = mono_ns();
    int rc = config_from_args(&s->cfg, argc, argv, 1, "start");
    if (rc) {
        ret = rc == 1 ? CLI_OK : CLI_USAGE;
        goto out;
    }
    al_log_set_level((int)s->cfg.log_level);
    log_info("start", "ailurus %s starting (node_id=%" PRId64 ", smp=%" PRId64 "%s)",
             AILURUS_VERSION, s->cfg.node_id, s->cfg.smp,
             s->cfg.developer_mode ? ", developer mode" : "");

    /* Start-up file work on a short-lived io of the main thread. */
    io *iop = NULL;
    struct io_uring_opts o = {0};
    rc = io_uring_create(&iop, &o);
    if (rc) {
        log_error("start", "cannot create an io_uring: %s (io_uring may be disabled: check "
                  "sysctl kernel.io_uring_disabled and the container's seccomp profile)",
                  al_strerror(rc));
        goto out;
    }
    rc = mkdir_p(iop, s->cfg.data_directory);
    if (rc == 0) rc = load_cluster_id(iop, s);
    if (rc) {
        io_destroy(iop);
        log_error("start", "data directory %s: %s", s->cfg.data_directory, al_strerror(rc));
        goto out;
    }
    if (s->cfg.kafka_addr.port) {
        /* The shards bind with SO_REUSEPORT, which would let us silently share the port with
         * another process's listener; a plain bind first detects that. */
        int fd = io_listen(iop, s->cfg.kafka_addr.host, s->cfg.kafka_addr.port, false, 1);
        /* A previous instance killed a moment ago may still hold the port: its io_uring is
         * torn down asynchronously after the process exits. Wait for that, bounded (5 s). */
        for (int i = 0; i < 50 && fd == -EADDRINUSE; i++) {
            if (i == 0)
                log_info("start", "%s:%u is busy; waiting up to 5 s for a previous instance to "
                         "release it", s->cfg.kafka_addr.host, s->cfg.kafka_addr.port);
            usleep(100000);
            fd = io_listen(iop, s->cfg.kafka_addr.host, s->cfg.kafka_addr.port, false, 1);
        }
        if (fd < 0) {
            io_destroy(iop);
            log_error("start", "cannot listen on %s:%u: %s", s->cfg.kafka_addr.host,
                      s->cfg.kafka_addr.port, al_strerror(fd));
            goto out;
        }
        io_close_now(iop, fd);
    }
    io_destroy(iop);

    s->cluster = cluster_mode(&s->cfg);
    if (s->cluster) data_topic_hook = cluster_topic_submit; /* topics from the controller */
    rc = data_plane_prepare(&s->cfg, &s->dp);
    if (rc) {
        log_error("start", "cannot load the topic table: %s", al_strerror(rc));
        goto out;
    }
    s->broker.cfg = &s->cfg;
    s->broker.node_id = (int32_t)s->cfg.node_id;
    s->broker.advertised_host = s->cfg.advertised_kafka_addr.host;
    s->broker.advertised_port = s->cfg.advertised_kafka_addr.port;
    s->broker.cluster_id = s->cluster_id;
    net_server_init(&s->srv, &s->cfg, &s->broker, NULL);
    /* A cluster node serves Kafka clients only once it has joined and applied the controller
     * state ("ready"): before, its catalogue is empty or stale and its cluster id not the
     * cluster's, which makes clients drop topics they are producing to. */
    s->srv.hold = s->cluster ? 1 : 0;
    s->port_from_shard0 = s->srv.port == 0;
    s->n_shards = (unsigned)s->cfg.smp;
    s->shards = calloc(s->n_shards, sizeof(*s->shards));
    if (!s->shards) goto out;
    for (unsigned i = 0; i < s->n_shards; i++) s->shards[i].lfd = -1;

    struct reactor_opts ro = {0};
    ro.n_shards = s->n_shards;
    ro.no_pin = s->cfg.overprovisioned;
    if (s->cluster && s->cfg.controlled_shutdown_timeout_ms > 0) {
        s->shutdown_ms = (uint64_t)s->cfg.controlled_shutdown_timeout_ms;
        ro.pre_stop = cluster_shutdown_pre_stop;
        ro.pre_stop_arg = &s->shutdown_ms;
    }
    rc = reactor_start_opts(&ro, shard_init, s);
    if (rc) {
        log_error("start", "broker stopped with an error: %s", al_strerror(rc));
        goto out;
    }
    if (cluster_failed()) {
        log_error("start", "stopped after a cluster error (see above)");
        goto out;
    }
    log_info("start", "stopped");
    ret = CLI_OK;
out:
    if (s->dp) data_plane_free(s->dp);
    free(s->shards);
    free(s);
    return ret;
}
