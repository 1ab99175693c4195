/*
 * handler_list_offsets.c — ListOffsets (API key 2, v0-7): per partition, on its owner shard,
 * the earliest offset (-2: log start), the latest (-1: high watermark, which is also the last
 * stable offset since there are no transactions), the record with the largest timestamp (-3,
 * v7), or the first record whose timestamp is >= the one asked for. Lookups by time start at
 * storage's sparse time index and then read batches forward to find the exact record (its
 * offset and timestamp), never past the high watermark. v0 answers with the old offsets array.
 */
#include "kafka/handlers_data.h"

#include "base/log.h"
#include "cluster/data_plane.h"
#include "cluster/partition_raft.h"
#include "config/config.h"
#include "storage/batch.h"

#include <inttypes.h>
#include <stdlib.h>

#define LO_READ_BYTES (256u << 10)
#define LO_MAX_READS  256 /* bound on forward reads (and recursion) for one lookup */

struct lo_ctx;

struct lo_job {
    struct lo_ctx *ctx;
    kafka_ListOffsetsResponse_ListOffsetsPartitionResponse *out;
    uint8_t topic_id[16];
    int32_t partition;
    int64_t want_ts;
    int32_t cur_epoch; /* CurrentLeaderEpoch (v4+), -1: not checked */
    int16_t version;
    unsigned owner;
    struct lo_job *next_send; /* jobs to send once everything is allocated */
    /* owner side */
    int64_t hw;
    int64_t epoch; /* leader epoch answered: the Raft term in cluster mode */
    int64_t best_offset, best_ts; /* -3: the max so far */
    int reads;
    pm_partition *held;
    storage_read rd;
};

struct lo_ctx {
    kafka_req *req;
    unsigned conn_shard;
    int32_t pending;
    kafka_ListOffsetsResponse resp;
    struct data_inflight inflight;
};

static void lo_done_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct lo_job *job = msg->arg;
    struct lo_ctx *ctx = job->ctx;
    AL_ASSERT(ctx->pending > 0);
    if (--ctx->pending == 0) {
        data_inflight_remove(data_shard_self(), &ctx->inflight);
        kafka_req_respond(ctx->req, &ctx->resp);
    }
}

static void lo_reply(data_shard *ds, struct lo_job *job)
{
    data_send(ds, job->ctx->conn_shard, lo_done_msg, job, 0, 0);
}

static void lo_set(struct lo_job *job, int64_t offset, int64_t ts)
{
    kafka_ListOffsetsResponse_ListOffsetsPartitionResponse *out = job->out;
    /* Fields a version lacks must keep their defaults (the encoder refuses others). */
    if (job->version == 0) {
        if (out->OldStyleOffsets_count == 1) out->OldStyleOffsets[0] = offset;
        if (offset < 0) out->OldStyleOffsets_count = 0;
        return;
    }
    out->Offset = offset;
    out->Timestamp = ts;
    if (job->version >= 4) out->LeaderEpoch = offset >= 0 ? (int32_t)job->epoch : -1;
}

/*
 * Scans the batches in buf for the first record with timestamp >= want (want >= 0) or the
 * record with the largest timestamp (want == -3, keeps the max in job). Returns 1 when found
 * (want >= 0), 0 to continue, or a negative error.
 */
static int lo_scan(struct lo_job *job, const uint8_t *buf, size_t len)
{
    size_t pos = 0;
    while (pos + STORAGE_BATCH_HEADER <= len) {
        storage_batch_hdr h;
        if (storage_batch_parse_header(buf + pos, len - pos, &h)) break;
        size_t size = storage_batch_size(&h);
        if (size > len - pos || storage_batch_last_offset(&h) >= job->hw) break;
        const uint8_t *b = buf + pos;
        pos += size;
        if (h.attributes & STORAGE_ATTR_CONTROL) continue;
        if (job->want_ts >= 0 && h.max_timestamp < job->want_ts) continue;
        if (job->want_ts == -3 && h.max_timestamp <= job->best_ts) continue;
        if (h.attributes & STORAGE_ATTR_TIMESTAMP_LOG_APPEND) {
            /* Every record has the batch's append time. */
            job->best_offset = h.base_offset;
            job->best_ts = h.max_timestamp;
            if (job->want_ts >= 0) return 1;
            continue;
        }
        const uint8_t *recs;
        size_t rlen;
        uint8_t *owned = NULL;
        int err = storage_batch_records(b, size, 64u << 20, &recs, &rlen, &owned);
        if (err) return err;
        storage_record_iter it;
        storage_record rec;
        storage_record_iter_init(&it, recs, rlen, h.records_count);
        int found = 0;
        while (storage_record_iter_next(&it, &rec) == 1) {
            int64_t ts = h.base_timestamp + rec.timestamp_delta;
            int64_t off = h.base_offset + rec.offset_delta;
            if (job->want_ts >= 0 && ts >= job->want_ts) {
                job->best_offset = off;
                job->best_ts = ts;
                found = 1;
                break;
            }
            if (job->want_ts == -3 && ts > job->best_ts) {
                job->best_offset = off;
                job->best_ts = ts;
            }
        }
        free(owned);
        if (found) return 1;
    }
    return 0;
}

static void lo_read_next(data_shard *ds, pm_partition *p, struct lo_job *job, int64_t from);

static void lo_read_done(storage_read *r)
{
    struct lo_job *job = r->ctx;
    data_shard *ds = data_shard_self();
    pm_partition *p = job->held;
    job->held = NULL;
    if (!pm_release(p)) {
        storage_read_release(r);
        job->out->ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
        lo_reply(ds, job);
        return;
    }
    if (r->res < 0) {
        storage_read_release(r);
        job->out->ErrorCode = KAFKA_ERR_KAFKA_STORAGE_ERROR;
        lo_reply(ds, job);
        return;
    }
    int rc = lo_scan(job, r->data, r->len);
    int64_t next = r->next_offset;
    bool empty = r->len == 0;
    storage_read_release(r);
    if (rc < 0) {
        job->out->ErrorCode = KAFKA_ERR_CORRUPT_MESSAGE;
        lo_reply(ds, job);
        return;
    }
    if (rc == 1 || empty || next >= job->hw || ++job->reads >= LO_MAX_READS) {
        if (rc == 1 || job->want_ts == -3)
            lo_set(job, job->best_offset >= 0 ? pm_to_kafka(p, job->best_offset) : -1,
                   job->best_ts); /* Kafka offsets: Raft batches take none */
        else
            lo_set(job, -1, -1);
        lo_reply(ds, job);
        return;
    }
    lo_read_next(ds, p, job, next);
}

static void lo_read_next(data_shard *ds, pm_partition *p, struct lo_job *job, int64_t from)
{
    memset(&job->rd, 0, sizeof(job->rd));
    job->rd.offset = from;
    job->rd.max_bytes = LO_READ_BYTES;
    job->rd.cb = lo_read_done;
    job->rd.ctx = job;
    int rc = storage_log_read(p->log, &job->rd);
    if (rc == 0) {
        pm_hold(p);
        job->held = p;
        return;
    }
    if (rc < 0) {
        job->out->ErrorCode =
            rc == AL_ERANGE ? KAFKA_ERR_OFFSET_OUT_OF_RANGE : KAFKA_ERR_KAFKA_STORAGE_ERROR;
        lo_reply(ds, job);
        return;
    }
    /* Done synchronously: process as a completion (holds balanced by a dummy hold). */
    pm_hold(p);
    job->held = p;
    job->rd.res = 0;
    lo_read_done(&job->rd);
}

static void lo_job_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct lo_job *job = msg->arg;
    data_shard *ds = data_shard_self();
    if (!ds) return;
    pm_partition *p = pm_find(&ds->pm, job->topic_id, job->partition);
    if (!p) { /* cluster mode: the topic exists, this node does not host the partition */
        job->out->ErrorCode = pr_enabled() ? KAFKA_ERR_NOT_LEADER_OR_FOLLOWER
                                           : KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
        lo_reply(ds, job);
        return;
    }
    job->epoch = PM_LEADER_EPOCH;
    if (p->rr) { /* a Raft partition: the leader answers, in its term (= leader epoch) */
        job->epoch = raft_replica_term(p->rr);
        int16_t err = 0;
        if (!pr_is_leader(p))
            err = KAFKA_ERR_NOT_LEADER_OR_FOLLOWER;
        else if (job->cur_epoch >= 0 && job->cur_epoch != job->epoch)
            err = job->cur_epoch < job->epoch ? KAFKA_ERR_FENCED_LEADER_EPOCH
                                              : KAFKA_ERR_UNKNOWN_LEADER_EPOCH;
        if (err) {
            job->out->ErrorCode = err;
            lo_reply(ds, job);
            return;
        }
    }
    job->hw = p->high_watermark;
    int64_t start = storage_log_start_offset(p->log);
    if (job->want_ts == -2) {
        lo_set(job, pm_to_kafka(p, start), -1);
    } else if (job->want_ts == -1) {
        lo_set(job, pm_to_kafka(p, job->hw), -1);
    } else if (job->want_ts == -3 || job->want_ts >= 0) {
        job->best_offset = -1;
        job->best_ts = -1;
        int64_t from =
            job->want_ts >= 0 ? storage_log_offset_for_time(p->log, job->want_ts) : start;
        if (from >= job->hw) {
            lo_set(job, -1, -1);
        } else {
            lo_read_next(ds, p, job, from);
            return;
        }
    } else {
        job->out->ErrorCode = KAFKA_ERR_INVALID_REQUEST;
    }
    lo_reply(ds, job);
}

int kafka_handle_list_offsets(kafka_req *req)
{
    const kafka_ListOffsetsRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    struct lo_ctx *ctx = kafka_arena_alloc(&req->arena, sizeof(*ctx));
    if (!ctx) return -ENOMEM;
    memset(ctx, 0, sizeof(*ctx));
    ctx->req = req;
    ctx->conn_shard = ds->shard;
    kafka_ListOffsetsResponse_init(&ctx->resp);
    int32_t nt = AL_MAX(in->Topics_count, 0);
    kafka_ListOffsetsResponse_ListOffsetsTopicResponse *tr =
        kafka_arena_alloc(&req->arena, sizeof(*tr) * (size_t)nt);
    if (!tr) return -ENOMEM;
    ctx->resp.Topics = tr;
    ctx->resp.Topics_count = nt;
    ctx->pending = 1;
    struct lo_job *to_send = NULL;
    for (int32_t i = 0; i < nt; i++) {
        const kafka_ListOffsetsRequest_ListOffsetsTopic *q = &in->Topics[i];
        int32_t np = AL_MAX(q->Partitions_count, 0);
        kafka_ListOffsetsResponse_ListOffsetsTopicResponse_init(&tr[i]);
        tr[i].Name = q->Name;
        tr[i].Partitions_count = np;
        tr[i].Partitions = kafka_arena_alloc(&req->arena, sizeof(*tr[i].Partitions) * (size_t)np);
        struct lo_job *jobs = kafka_arena_alloc(&req->arena, sizeof(*jobs) * (size_t)np);
        if (!tr[i].Partitions || !jobs) return -ENOMEM;
        const topic *t = q->Name.len > 0
                             ? topic_table_find(&ds->topics, q->Name.ptr, (size_t)q->Name.len)
                             : NULL;
        for (int32_t k = 0; k < np; k++) {
            const kafka_ListOffsetsRequest_ListOffsetsPartition *qp = &q->Partitions[k];
            kafka_ListOffsetsResponse_ListOffsetsPartitionResponse *out = &tr[i].Partitions[k];
            kafka_ListOffsetsResponse_ListOffsetsPartitionResponse_init(out);
            out->PartitionIndex = qp->PartitionIndex;
            out->Offset = -1;
            out->Timestamp = -1;
            out->LeaderEpoch = -1;
            out->OldStyleOffsets_count = 0;
            if (req->api_version == 0) {
                out->OldStyleOffsets = kafka_arena_alloc(&req->arena, sizeof(int64_t));
                if (!out->OldStyleOffsets) return -ENOMEM;
                out->OldStyleOffsets_count = qp->MaxNumOffsets > 0 ? 1 : 0;
            }
            if (!t || qp->PartitionIndex < 0 || qp->PartitionIndex >= t->partitions) {
                out->ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            if (qp->Timestamp == -3 && req->api_version < 7) {
                out->ErrorCode = KAFKA_ERR_UNSUPPORTED_VERSION;
                continue;
            }
            struct lo_job *job = &jobs[k];
            memset(job, 0, sizeof(*job));
            job->ctx = ctx;
            job->out = out;
            memcpy(job->topic_id, t->id, 16);
            job->partition = qp->PartitionIndex;
            job->want_ts = qp->Timestamp;
            job->version = req->api_version;
            job->cur_epoch = req->api_version >= 4 ? qp->CurrentLeaderEpoch : -1;
            job->owner = pr_owner_shard(t, qp->PartitionIndex, ds->smp);
            job->next_send = to_send;
            to_send = job;
        }
    }
    data_inflight_add(ds, &ctx->inflight);
    for (struct lo_job *job = to_send; job; job = job->next_send) {
        ctx->pending++;
        data_send(ds, job->owner, lo_job_msg, job, 0, 0);
    }
    if (--ctx->pending == 0) {
        data_inflight_remove(ds, &ctx->inflight);
        int rc = kafka_req_respond(req, &ctx->resp);
        return rc < 0 ? rc : KAFKA_DONE;
    }
    return KAFKA_DEFERRED;
}
