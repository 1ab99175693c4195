/*
 * handler_misc.c — the smaller data-path and admin APIs:
 *   DescribeCluster v0-1       this node, the cluster id, the controller (this node).
 *   DeleteRecords v0-2         advances a partition's log start offset (-1: to the HW),
 *                              persisted by storage before the answer; on a Raft partition
 *                              (cluster mode) the leader replicates a TRIM batch and answers
 *                              once it committed (every replica cuts its prefix there).
 *   DescribeLogDirs v0-4       the data directory with each partition's size on disk.
 *   OffsetForLeaderEpoch v0-4  the end offset of a leader epoch (one epoch on a single node).
 *   InitProducerId v0-4        idempotent producer ids (coord/producer_state) on shard 0, with
 *                              id blocks reserved durably in <data_dir>/producer_id_block
 *                              before use, so ids are never reused across restarts; in
 *                              cluster mode the blocks come from the controller
 *                              (cluster_groups.h), so ids are unique across the nodes.
 * Per-partition work runs on the owner shard through a small fan-out helper (pfan).
 */
#include "kafka/handlers_data.h"
#include "kafka/handlers.h"

#include "base/log.h"
#include "cluster/cluster.h"
#include "cluster/cluster_groups.h"
#include "cluster/data_plane.h"
#include "cluster/partition_raft.h"
#include "config/config.h"
#include "coord/producer_state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#define PID_BLOCK_FILE    "producer_id_block"
#define PID_BLOCK_SIZE    1000
#define PID_EXPIRATION_MS 86400000

/* ---- fan-out of per-partition work to owner shards ---- */

struct pfan;
struct pjob;
typedef void (*pjob_fn)(data_shard *ds, pm_partition *p, struct pjob *job);

struct pjob {
    struct pfan *fan;
    uint8_t topic_id[16];
    int32_t partition;
    pjob_fn run;    /* on the owner, with the partition (NULL: not open there) */
    int64_t arg;    /* in */
    int64_t arg2;   /* in (second argument; -1 unless a job says) */
    int16_t err;    /* out */
    int64_t r1, r2; /* out */
    void *out;      /* the response slot, filled by the finisher on C */
    unsigned owner;
    bool deferred;  /* run() finishes later: it calls pjob_finish itself */
};

struct pfan {
    kafka_req *req;
    unsigned conn_shard;
    int32_t pending;
    void (*finish)(struct pfan *fan);
    void *resp;
    struct pjob *jobs;
    int32_t njobs;
    struct data_inflight inflight;
};

/* Answers a fan-out's request (unregistering it first: the answer may free it). */
static void pfan_respond(struct pfan *fan)
{
    data_inflight_remove(data_shard_self(), &fan->inflight);
    kafka_req_respond(fan->req, fan->resp);
}

static void pfan_done_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct pjob *job = msg->arg;
    struct pfan *fan = job->fan;
    AL_ASSERT(fan->pending > 0);
    if (--fan->pending == 0) fan->finish(fan);
}

static void pfan_run_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct pjob *job = msg->arg;
    data_shard *ds = data_shard_self();
    if (!ds) return;
    pm_partition *p = pm_find(&ds->pm, job->topic_id, job->partition);
    if (!p) /* cluster mode: the topic exists, this node does not host the partition */
        job->err = pr_enabled() ? KAFKA_ERR_NOT_LEADER_OR_FOLLOWER
                                : KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    else
        job->run(ds, p, job);
    if (!job->deferred) data_send(ds, job->fan->conn_shard, pfan_done_msg, job, 0, 0);
}

/* On the owner: a deferred job is done (err/r1/r2 set). */
static void pjob_finish(struct pjob *job)
{
    data_send(data_shard_self(), job->fan->conn_shard, pfan_done_msg, job, 0, 0);
}

static struct pfan *pfan_new(kafka_req *req, data_shard *ds, int32_t max_jobs,
                             void (*finish)(struct pfan *), void *resp)
{
    struct pfan *fan = kafka_arena_alloc(&req->arena, sizeof(*fan));
    struct pjob *jobs = kafka_arena_alloc(&req->arena, sizeof(*jobs) * (size_t)AL_MAX(max_jobs, 1));
    if (!fan || !jobs) return NULL;
    memset(fan, 0, sizeof(*fan));
    fan->req = req;
    fan->conn_shard = ds->shard;
    fan->finish = finish;
    fan->resp = resp;
    fan->jobs = jobs;
    fan->pending = 1;
    return fan;
}

static void pfan_add(struct pfan *fan, data_shard *ds, const topic *t, int32_t partition,
                     pjob_fn run, int64_t arg, void *out)
{
    struct pjob *job = &fan->jobs[fan->njobs++];
    memset(job, 0, sizeof(*job));
    job->fan = fan;
    memcpy(job->topic_id, t->id, 16);
    job->partition = partition;
    job->run = run;
    job->arg = arg;
    job->arg2 = -1;
    job->out = out;
    job->owner = pr_owner_shard(t, partition, ds->smp);
}

/* Sends the jobs (everything is allocated by now, nothing fails after this) and drops the
 * creation hold; returns KAFKA_DONE if everything finished already. */
static int pfan_go(struct pfan *fan)
{
    data_shard *ds = data_shard_self();
    data_inflight_add(ds, &fan->inflight);
    for (int32_t i = 0; i < fan->njobs; i++) {
        fan->pending++;
        data_send(ds, fan->jobs[i].owner, pfan_run_msg, &fan->jobs[i], 0, 0);
    }
    if (--fan->pending == 0) {
        fan->finish(fan);
        return KAFKA_DONE;
    }
    return KAFKA_DEFERRED;
}

static const topic *find_topic(data_shard *ds, kafka_str name)
{
    return name.len > 0 ? topic_table_find(&ds->topics, name.ptr, (size_t)name.len) : NULL;
}

/* ---- DescribeCluster ---- */

static void dc_fill_broker(void *out, int32_t i, int32_t id, kafka_str host, uint16_t port,
                           kafka_str rack)
{
    kafka_DescribeClusterResponse_DescribeClusterBroker *b =
        &((kafka_DescribeClusterResponse_DescribeClusterBroker *)out)[i];
    kafka_DescribeClusterResponse_DescribeClusterBroker_init(b);
    b->BrokerId = id;
    b->Host = host;
    b->Port = port;
    b->Rack = rack;
}

int kafka_handle_describe_cluster(kafka_req *req)
{
    const kafka_DescribeClusterRequest *in = req->msg;
    const struct kafka_broker *b = req->broker;
    kafka_DescribeClusterResponse out;
    kafka_DescribeClusterResponse_init(&out);
    out.ErrorMessage = (kafka_str){NULL, -1};
    out.ClusterId = kafka_str_from(b->cluster_id);
    out.ControllerId = b->node_id;
    out.ClusterAuthorizedOperations = INT32_MIN;
    if (req->api_version >= 1 && in->EndpointType != 1) {
        out.ErrorCode = KAFKA_ERR_UNSUPPORTED_ENDPOINT_TYPE;
        out.ErrorMessage = kafka_str_from("Only the brokers endpoint type is supported.");
        out.Brokers_count = 0;
    } else {
        kafka_DescribeClusterResponse_DescribeClusterBroker *brk =
            kafka_arena_alloc(&req->arena, sizeof(*brk));
        if (!brk) return -ENOMEM;
        kafka_DescribeClusterResponse_DescribeClusterBroker_init(brk);
        brk->BrokerId = b->node_id;
        brk->Host = kafka_str_from(b->advertised_host);
        brk->Port = b->advertised_port;
        brk->Rack = (kafka_str){NULL, -1};
        out.Brokers = brk;
        out.Brokers_count = 1;
        int32_t n = 0, controller = -1; /* cluster mode: every broker, the controller */
        kafka_DescribeClusterResponse_DescribeClusterBroker *all =
            kafka_arena_alloc(&req->arena, sizeof(*all) * CLUSTER_VIEW_MAX);
        if (!all) return -ENOMEM;
        int crc = kafka_cluster_brokers(req, dc_fill_broker, all, &n, &controller);
        if (crc < 0) return crc;
        if (crc > 0) {
            out.Brokers = all;
            out.Brokers_count = n;
            out.ControllerId = controller;
        }
    }
    int rc = kafka_req_respond(req, &out);
    return rc < 0 ? rc : KAFKA_DONE;
}

/* ---- DeleteRecords ---- */

static int16_t dr_raft_err(int err)
{
    if (err == 0) return 0;
    if (err == RAFT_ENOTLEADER || err == RAFT_ELOST) return KAFKA_ERR_NOT_LEADER_OR_FOLLOWER;
    if (err == RAFT_EBUSY || err == AL_EFULL) return KAFKA_ERR_REQUEST_TIMED_OUT;
    return KAFKA_ERR_KAFKA_STORAGE_ERROR;
}

/* A Raft partition's DeleteRecords committed (or failed): answer. */
static void dr_raft_done(void *ctx, int err, int64_t low)
{
    struct pjob *job = ctx;
    job->err = dr_raft_err(err);
    job->r1 = low;
    pjob_finish(job);
}

static void dr_run(data_shard *ds, pm_partition *p, struct pjob *job)
{
    /* the request's offsets are Kafka offsets; the log's are Raft offsets in cluster mode
     * (pm_to_raft: identity on a single node), at most the high watermark */
    int64_t hw = pm_kafka_hw(p);
    int64_t kafka_off = job->arg == -1 ? hw : job->arg;
    if (kafka_off < 0 || kafka_off > hw) {
        job->err = KAFKA_ERR_OFFSET_OUT_OF_RANGE;
        return;
    }
    int64_t off = AL_MIN(pm_to_raft(p, kafka_off), p->high_watermark);
    if (p->rr && off > storage_log_start_offset(p->log)) {
        /* cluster mode: through the Raft log, so every replica moves its start */
        job->deferred = true;
        int err = pr_delete_records(p, off, dr_raft_done, job);
        if (err) { /* refused at once: answered by the caller */
            job->deferred = false;
            job->err = dr_raft_err(err);
        }
        return;
    }
    if (off > storage_log_start_offset(p->log)) {
        int err = storage_log_set_start_offset(p->log, off);
        if (err) {
            job->err =
                err == AL_ERANGE ? KAFKA_ERR_OFFSET_OUT_OF_RANGE : KAFKA_ERR_KAFKA_STORAGE_ERROR;
            return;
        }
        log_info("kafka", "%s/%" PRId32 ": records before %" PRId64 " deleted", p->topic,
                 p->partition, off);
    }
    job->r1 = pm_kafka_start(p);
}

static void dr_finish(struct pfan *fan)
{
    for (int32_t i = 0; i < fan->njobs; i++) {
        kafka_DeleteRecordsResponse_DeleteRecordsPartitionResult *r = fan->jobs[i].out;
        r->ErrorCode = fan->jobs[i].err;
        r->LowWatermark = fan->jobs[i].err ? -1 : fan->jobs[i].r1;
    }
    pfan_respond(fan);
}

int kafka_handle_delete_records(kafka_req *req)
{
    const kafka_DeleteRecordsRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    kafka_DeleteRecordsResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    int32_t nt = AL_MAX(in->Topics_count, 0), np = 0;
    for (int32_t i = 0; i < nt; i++) np += AL_MAX(in->Topics[i].Partitions_count, 0);
    kafka_DeleteRecordsResponse_DeleteRecordsTopicResult *tr =
        kafka_arena_alloc(&req->arena, sizeof(*tr) * (size_t)AL_MAX(nt, 1));
    kafka_DeleteRecordsResponse_DeleteRecordsPartitionResult *pr =
        kafka_arena_alloc(&req->arena, sizeof(*pr) * (size_t)AL_MAX(np, 1));
    struct pfan *fan = pfan_new(req, ds, np, dr_finish, resp);
    if (!resp || !tr || !pr || !fan) return -ENOMEM;
    kafka_DeleteRecordsResponse_init(resp);
    resp->Topics = tr;
    resp->Topics_count = nt;
    int32_t k = 0;
    for (int32_t i = 0; i < nt; i++) {
        const kafka_DeleteRecordsRequest_DeleteRecordsTopic *q = &in->Topics[i];
        kafka_DeleteRecordsResponse_DeleteRecordsTopicResult_init(&tr[i]);
        tr[i].Name = q->Name;
        tr[i].Partitions = &pr[k];
        tr[i].Partitions_count = AL_MAX(q->Partitions_count, 0);
        const topic *t = find_topic(ds, q->Name);
        for (int32_t j = 0; j < tr[i].Partitions_count; j++, k++) {
            kafka_DeleteRecordsResponse_DeleteRecordsPartitionResult *r = &pr[k];
            kafka_DeleteRecordsResponse_DeleteRecordsPartitionResult_init(r);
            r->PartitionIndex = q->Partitions[j].PartitionIndex;
            r->LowWatermark = -1;
            if (!t || r->PartitionIndex < 0 || r->PartitionIndex >= t->partitions) {
                r->ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            pfan_add(fan, ds, t, r->PartitionIndex, dr_run, q->Partitions[j].Offset, r);
        }
    }
    return pfan_go(fan);
}

/* ---- DescribeLogDirs ---- */

static void ld_run(data_shard *ds, pm_partition *p, struct pjob *job)
{
    job->r1 = (int64_t)storage_log_size_bytes(p->log);
}

static void ld_finish(struct pfan *fan)
{
    for (int32_t i = 0; i < fan->njobs; i++) {
        kafka_DescribeLogDirsResponse_DescribeLogDirsPartition *r = fan->jobs[i].out;
        r->PartitionSize = fan->jobs[i].err ? 0 : fan->jobs[i].r1;
    }
    pfan_respond(fan);
}

int kafka_handle_describe_log_dirs(kafka_req *req)
{
    const kafka_DescribeLogDirsRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    bool all = in->Topics_count < 0;
    /* Which topics: all, or those named that exist (unknown ones are left out, as Kafka). */
    int32_t nt = 0, np = 0;
    const topic **ts = kafka_arena_alloc(
        &req->arena, sizeof(*ts) * (size_t)AL_MAX(all ? ds->topics.n : in->Topics_count, 1));
    if (!ts) return -ENOMEM;
    if (all) {
        for (int32_t i = 0; i < ds->topics.n; i++) {
            ts[nt++] = topic_table_at(&ds->topics, i);
            np += ts[nt - 1]->partitions;
        }
    } else {
        for (int32_t i = 0; i < in->Topics_count; i++) {
            const topic *t = find_topic(ds, in->Topics[i].Topic);
            if (!t) continue;
            ts[nt++] = t;
            np += AL_MAX(in->Topics[i].Partitions_count, 0);
        }
    }
    kafka_DescribeLogDirsResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    kafka_DescribeLogDirsResponse_DescribeLogDirsResult *res =
        kafka_arena_alloc(&req->arena, sizeof(*res));
    kafka_DescribeLogDirsResponse_DescribeLogDirsTopic *tr =
        kafka_arena_alloc(&req->arena, sizeof(*tr) * (size_t)AL_MAX(nt, 1));
    kafka_DescribeLogDirsResponse_DescribeLogDirsPartition *pr =
        kafka_arena_alloc(&req->arena, sizeof(*pr) * (size_t)AL_MAX(np, 1));
    struct pfan *fan = pfan_new(req, ds, np, ld_finish, resp);
    if (!resp || !res || !tr || !pr || !fan) return -ENOMEM;
    kafka_DescribeLogDirsResponse_init(resp);
    kafka_DescribeLogDirsResponse_DescribeLogDirsResult_init(res);
    resp->Results = res;
    resp->Results_count = 1;
    res->LogDir = kafka_str_from(req->broker->cfg->data_directory);
    struct statvfs sv;
    if (req->api_version >= 4 && statvfs(req->broker->cfg->data_directory, &sv) == 0) {
        res->TotalBytes = (int64_t)sv.f_blocks * (int64_t)sv.f_frsize;
        res->UsableBytes = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
    }
    res->Topics = tr;
    res->Topics_count = nt;
    int32_t k = 0, qi = 0;
    for (int32_t i = 0; i < nt; i++) {
        const topic *t = ts[i];
        kafka_DescribeLogDirsResponse_DescribeLogDirsTopic_init(&tr[i]);
        tr[i].Name = kafka_str_from(t->name);
        tr[i].Partitions = &pr[k];
        const int32_t *want = NULL;
        int32_t nwant = t->partitions;
        if (!all) {
            while (qi < in->Topics_count && find_topic(ds, in->Topics[qi].Topic) != t) qi++;
            want = in->Topics[qi].Partitions;
            nwant = AL_MAX(in->Topics[qi].Partitions_count, 0);
            qi++;
        }
        int32_t n = 0;
        for (int32_t j = 0; j < nwant; j++) {
            int32_t part = want ? want[j] : j;
            if (part < 0 || part >= t->partitions) continue;
            kafka_DescribeLogDirsResponse_DescribeLogDirsPartition *r = &pr[k + n++];
            kafka_DescribeLogDirsResponse_DescribeLogDirsPartition_init(r);
            r->PartitionIndex = part;
            pfan_add(fan, ds, t, part, ld_run, 0, r);
        }
        tr[i].Partitions_count = n;
        k += n;
    }
    return pfan_go(fan);
}

/* ---- OffsetForLeaderEpoch ---- */

/*
 * A Raft partition (cluster mode): the leader answers, for the leader epoch (= term) the
 * client knows (arg2, if given). The end offset of epoch E is the base offset of the first
 * batch of a later term (storage rolls a segment at every new term, so the segments' terms
 * say it), or the log end offset for the current term; the epoch answered is the largest one
 * <= E in the log. A later epoch than the leader's is undefined (-1/-1).
 */
static void ofle_run_raft(pm_partition *p, struct pjob *job)
{
    if (!pr_is_leader(p)) {
        job->err = KAFKA_ERR_NOT_LEADER_OR_FOLLOWER;
        return;
    }
    int64_t term = raft_replica_term(p->rr);
    if (job->arg2 >= 0 && job->arg2 != term) {
        job->err = job->arg2 < term ? KAFKA_ERR_FENCED_LEADER_EPOCH
                                    : KAFKA_ERR_UNKNOWN_LEADER_EPOCH;
        return;
    }
    job->r1 = -1;
    job->r2 = -1;
    if (job->arg > term) return;
    int64_t best = -1, end = storage_log_high_offset(p->log);
    int n = storage_log_segment_count(p->log);
    for (int i = 0; i < n; i++) {
        storage_segment_info si;
        if (storage_log_segment_info(p->log, i, &si)) break;
        if (si.term > job->arg) {
            end = si.base;
            break;
        }
        best = AL_MAX(best, (int64_t)si.term);
    }
    job->r1 = best >= 0 ? best : job->arg;
    job->r2 = pm_to_kafka(p, best >= 0 ? end : storage_log_start_offset(p->log));
}

static void ofle_run(data_shard *ds, pm_partition *p, struct pjob *job)
{
    if (p->rr) {
        ofle_run_raft(p, job);
        return;
    }
    /* One epoch on a single node: epoch 0 ends at the high watermark (nothing above it is
     * visible); a newer epoch is unknown (-1/-1), as Kafka answers for an undefined one. */
    if (job->arg == PM_LEADER_EPOCH) {
        job->r1 = PM_LEADER_EPOCH;
        job->r2 = p->high_watermark;
    } else if (job->arg < PM_LEADER_EPOCH) {
        job->r1 = PM_LEADER_EPOCH; /* the first epoch after it starts at the log start */
        job->r2 = storage_log_start_offset(p->log);
    } else {
        job->r1 = -1;
        job->r2 = -1;
    }
}

static void ofle_finish(struct pfan *fan)
{
    for (int32_t i = 0; i < fan->njobs; i++) {
        kafka_OffsetForLeaderEpochResponse_EpochEndOffset *r = fan->jobs[i].out;
        r->ErrorCode = fan->jobs[i].err;
        if (!r->ErrorCode) {
            if (fan->req->api_version >= 1) r->LeaderEpoch = (int32_t)fan->jobs[i].r1;
            r->EndOffset = fan->jobs[i].r2;
        }
    }
    pfan_respond(fan);
}

int kafka_handle_offset_for_leader_epoch(kafka_req *req)
{
    const kafka_OffsetForLeaderEpochRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    int32_t nt = AL_MAX(in->Topics_count, 0), np = 0;
    for (int32_t i = 0; i < nt; i++) np += AL_MAX(in->Topics[i].Partitions_count, 0);
    kafka_OffsetForLeaderEpochResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    kafka_OffsetForLeaderEpochResponse_OffsetForLeaderTopicResult *tr =
        kafka_arena_alloc(&req->arena, sizeof(*tr) * (size_t)AL_MAX(nt, 1));
    kafka_OffsetForLeaderEpochResponse_EpochEndOffset *pr =
        kafka_arena_alloc(&req->arena, sizeof(*pr) * (size_t)AL_MAX(np, 1));
    struct pfan *fan = pfan_new(req, ds, np, ofle_finish, resp);
    if (!resp || !tr || !pr || !fan) return -ENOMEM;
    kafka_OffsetForLeaderEpochResponse_init(resp);
    resp->Topics = tr;
    resp->Topics_count = nt;
    int32_t k = 0;
    for (int32_t i = 0; i < nt; i++) {
        const kafka_OffsetForLeaderEpochRequest_OffsetForLeaderTopic *q = &in->Topics[i];
        kafka_OffsetForLeaderEpochResponse_OffsetForLeaderTopicResult_init(&tr[i]);
        tr[i].Topic = q->Topic;
        tr[i].Partitions = &pr[k];
        tr[i].Partitions_count = AL_MAX(q->Partitions_count, 0);
        const topic *t = find_topic(ds, q->Topic);
        for (int32_t j = 0; j < tr[i].Partitions_count; j++, k++) {
            const kafka_OffsetForLeaderEpochRequest_OffsetForLeaderPartition *qp =
                &q->Partitions[j];
            kafka_OffsetForLeaderEpochResponse_EpochEndOffset *r = &pr[k];
            kafka_OffsetForLeaderEpochResponse_EpochEndOffset_init(r);
            r->Partition = qp->Partition;
            r->LeaderEpoch = -1;
            r->EndOffset = -1;
            if (!t || qp->Partition < 0 || qp->Partition >= t->partitions) {
                r->ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            if (!pr_enabled() && req->api_version >= 2 && qp->CurrentLeaderEpoch >= 0 &&
                qp->CurrentLeaderEpoch != PM_LEADER_EPOCH) {
                r->ErrorCode = qp->CurrentLeaderEpoch > PM_LEADER_EPOCH
                                   ? KAFKA_ERR_UNKNOWN_LEADER_EPOCH
                                   : KAFKA_ERR_FENCED_LEADER_EPOCH;
                continue;
            }
            pfan_add(fan, ds, t, qp->Partition, ofle_run, qp->LeaderEpoch, r);
            if (req->api_version >= 2) fan->jobs[fan->njobs - 1].arg2 = qp->CurrentLeaderEpoch;
        }
    }
    return pfan_go(fan);
}

/* ---- InitProducerId ---- */

struct pid_ctx {
    kafka_req *req;
    unsigned conn_shard;
    int64_t cur_id;
    int16_t cur_epoch;
    int64_t now_ms;
    int rc;
    int64_t out_id;
    int16_t out_epoch;
    int16_t kafka_err;
    struct data_inflight inflight;
    struct pid_ctx *next; /* cluster mode: waiting for a block from the controller */
};

/* Shard 0's producer id allocator, created at first use from the persisted block end (cluster
 * mode: empty, every block comes from the controller). */
static struct producer_ids *g_pids; /* used only on shard 0 */
/* Cluster mode, shard 0: requests waiting for the block being allocated (FIFO). */
static struct pid_ctx *g_pid_wait_head, *g_pid_wait_tail;
static bool g_pid_alloc_busy;

static int pid_block_path(data_shard *ds, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", ds->dp->data_dir, PID_BLOCK_FILE);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

static int pid_load(data_shard *ds)
{
    if (g_pids) return 0;
    char path[1200];
    int err = pid_block_path(ds, path, sizeof(path));
    if (err) return err;
    uint8_t *buf = NULL;
    size_t len = 0;
    int64_t end = 0;
    err = cluster_active() ? -ENOENT : io_fs_read_all(ds->io, path, 64, &buf, &len);
    if (err == 0) {
        char *e;
        long long v = strtoll((const char *)buf, &e, 10);
        bool ok = e != (const char *)buf && (*e == '\n' || *e == 0) && v >= 0;
        free(buf);
        if (!ok) {
            log_error("kafka", "%s is corrupt: refusing to hand out producer ids", path);
            return AL_ECORRUPT;
        }
        end = v;
    } else if (err != -ENOENT) {
        return err;
    }
    struct producer_ids *p = calloc(1, sizeof(*p));
    if (!p) return -ENOMEM;
    producer_ids_init(p, end, PID_BLOCK_SIZE, PID_EXPIRATION_MS);
    g_pids = p;
    return 0;
}

/* Persists the next reservation durably, then records it. */
static int pid_reserve(data_shard *ds)
{
    char path[1200];
    int err = pid_block_path(ds, path, sizeof(path));
    if (err) return err;
    int64_t end = producer_ids_reservation(g_pids);
    char line[32];
    int n = snprintf(line, sizeof(line), "%" PRId64 "\n", end);
    err = io_fs_write_atomic(ds->io, path, line, (size_t)n);
    if (err) return err;
    return producer_ids_reserved(g_pids, end);
}

static void pid_done_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct pid_ctx *ctx = msg->arg;
    data_inflight_remove(data_shard_self(), &ctx->inflight);
    kafka_InitProducerIdResponse out;
    kafka_InitProducerIdResponse_init(&out);
    if (ctx->rc) {
        out.ErrorCode = KAFKA_ERR_COORDINATOR_NOT_AVAILABLE;
        out.ProducerId = -1;
        out.ProducerEpoch = -1;
    } else if (ctx->kafka_err) {
        out.ErrorCode = ctx->kafka_err;
        out.ProducerId = -1;
        out.ProducerEpoch = -1;
    } else {
        out.ProducerId = ctx->out_id;
        out.ProducerEpoch = ctx->out_epoch;
    }
    kafka_req_respond(ctx->req, &out);
}

static void pid_alloc_start(void);

/* Cluster mode, shard 0: a block from the controller arrived (or failed): serves the waiting
 * requests in order; those it does not cover wait for the next block. */
static void pid_alloc_done(void *arg, int err, int64_t first, int64_t count)
{
    (void)arg;
    data_shard *ds = data_shard_self();
    g_pid_alloc_busy = false;
    if (!err) err = producer_ids_grant(g_pids, first, count);
    if (err)
        log_warn("kafka", "InitProducerId: no producer id block from the controller: %s "
                 "(the producers retry)", al_strerror(err));
    else
        log_info("kafka", "producer ids %" PRId64 "..%" PRId64 " granted by the controller",
                 first, first + count - 1);
    for (int guard = 0; g_pid_wait_head && guard < 1000000; guard++) {
        struct pid_ctx *ctx = g_pid_wait_head;
        int rc = err;
        if (!rc) {
            rc = producer_ids_init_producer(g_pids, ctx->cur_id, ctx->cur_epoch, ctx->now_ms,
                                            &ctx->out_id, &ctx->out_epoch, &ctx->kafka_err);
            if (rc == AL_EFULL) { /* used up: the rest wait for another block */
                pid_alloc_start();
                return;
            }
        }
        g_pid_wait_head = ctx->next;
        if (!g_pid_wait_head) g_pid_wait_tail = NULL;
        ctx->rc = rc;
        if (ds) data_send(ds, ctx->conn_shard, pid_done_msg, ctx, 0, 0);
    }
}

/* Cluster mode, shard 0: asks the controller for a block unless one is on its way. */
static void pid_alloc_start(void)
{
    if (g_pid_alloc_busy) return;
    g_pid_alloc_busy = true;
    int rc = cluster_alloc_producer_ids(PID_BLOCK_SIZE, pid_alloc_done, NULL);
    if (rc) pid_alloc_done(NULL, rc, -1, 0);
}

static void pid_run_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct pid_ctx *ctx = msg->arg;
    data_shard *ds = data_shard_self();
    if (!ds) return;
    int rc = pid_load(ds);
    if (rc == 0 && cluster_active()) {
        rc = g_pid_wait_head ? AL_EFULL /* keep the order */
                             : producer_ids_init_producer(g_pids, ctx->cur_id, ctx->cur_epoch,
                                                          ctx->now_ms, &ctx->out_id,
                                                          &ctx->out_epoch, &ctx->kafka_err);
        if (rc == AL_EFULL) {
            ctx->next = NULL;
            if (g_pid_wait_tail) g_pid_wait_tail->next = ctx;
            else g_pid_wait_head = ctx;
            g_pid_wait_tail = ctx;
            pid_alloc_start();
            return;
        }
        if (rc) log_warn("kafka", "InitProducerId failed: %s", al_strerror(rc));
        ctx->rc = rc;
        data_send(ds, ctx->conn_shard, pid_done_msg, ctx, 0, 0);
        return;
    }
    for (int attempt = 0; rc == 0 && attempt < 3; attempt++) {
        rc = producer_ids_init_producer(g_pids, ctx->cur_id, ctx->cur_epoch, ctx->now_ms,
                                        &ctx->out_id, &ctx->out_epoch, &ctx->kafka_err);
        if (rc != AL_EFULL) break;
        rc = pid_reserve(ds); /* 0: reserved, try again */
        if (rc == 0 && attempt == 2) rc = AL_EFULL;
    }
    if (rc == AL_EFULL) rc = AL_ETIMEDOUT;
    if (rc) log_warn("kafka", "InitProducerId failed: %s", al_strerror(rc));
    ctx->rc = rc;
    data_send(ds, ctx->conn_shard, pid_done_msg, ctx, 0, 0);
}

int kafka_handle_init_producer_id(kafka_req *req)
{
    const kafka_InitProducerIdRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    if (in->TransactionalId.len >= 0) {
        /* Transactions are not implemented yet: say so rather than pretend. */
        kafka_InitProducerIdResponse out;
        kafka_InitProducerIdResponse_init(&out);
        out.ErrorCode = KAFKA_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        out.ProducerId = -1;
        out.ProducerEpoch = -1;
        int rc = kafka_req_respond(req, &out);
        return rc < 0 ? rc : KAFKA_DONE;
    }
    struct pid_ctx *ctx = kafka_arena_alloc(&req->arena, sizeof(*ctx));
    if (!ctx) return -ENOMEM;
    memset(ctx, 0, sizeof(*ctx));
    ctx->req = req;
    ctx->conn_shard = ds->shard;
    ctx->cur_id = req->api_version >= 3 ? in->ProducerId : -1;
    ctx->cur_epoch = req->api_version >= 3 ? in->ProducerEpoch : -1;
    ctx->now_ms = io_wall_ms(ds->io);
    data_inflight_add(ds, &ctx->inflight);
    int rc = data_send(ds, 0, pid_run_msg, ctx, 0, 0);
    return rc ? rc : KAFKA_DEFERRED;
}
