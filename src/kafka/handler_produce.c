/*
 * handler_produce.c — Produce (API key 0, v3-7). The connection's shard looks every partition
 * up in its replica of the topic table and sends one job per partition to the shard that owns
 * it (data_send, also to itself, so nothing runs re-entrantly). The owner validates each batch
 * (storage_batch_validate: magic 2, lengths, CRC; size against max.message.bytes; zstd only
 * from v7), checks idempotent producers (coord/producer_state: duplicates answered with their
 * original offset, sequence gaps and old epochs refused), stamps LogAppendTime when the topic
 * asks for it, appends, and answers: acks=0/1 at once, acks=all after the flush covering the
 * batch (group commit) returned. The connection's shard gathers the jobs and responds; acks=0
 * completes without response bytes, after the jobs (the records live in the request frame).
 */
#include "kafka/handlers_data.h"

#include "base/log.h"
#include "cluster/data_plane.h"
#include "cluster/partition_raft.h"
#include "kafka/produce_raft.h"
#include "config/config.h"
#include "metrics/metrics.h"
#include "storage/batch.h"

#include <inttypes.h>

struct produce_ctx;

struct produce_job {
    struct produce_ctx *ctx;
    kafka_ProduceResponse_PartitionProduceResponse *out; /* in the req's arena; owner fills */
    uint8_t topic_id[16];
    int32_t partition;
    uint8_t *records;
    size_t len;
    int16_t acks;
    int16_t version;
    unsigned owner;
    storage_waiter waiter;
};

struct produce_ctx {
    kafka_req *req;
    unsigned conn_shard;
    int32_t pending;
    kafka_ProduceResponse resp;
    struct data_inflight inflight;
};

static void produce_finish(struct produce_ctx *ctx)
{
    kafka_req *req = ctx->req;
    data_inflight_remove(data_shard_self(), &ctx->inflight);
    const kafka_ProduceRequest *in = req->msg;
    /* operations (src/metrics): per-partition error codes. */
    for (int32_t t = 0; t < ctx->resp.Responses_count; t++)
        for (int32_t p = 0; p < ctx->resp.Responses[t].PartitionResponses_count; p++)
            metrics_kafka_error("Produce", ctx->resp.Responses[t].PartitionResponses[p].ErrorCode);
    if (in->Acks == 0) {
        kafka_req_respond_none(req);
        return;
    }
    kafka_req_respond(req, &ctx->resp);
}

/* On the connection's shard: one job is done. */
static void produce_job_done_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct produce_job *job = msg->arg;
    struct produce_ctx *ctx = job->ctx;
    AL_ASSERT(ctx->pending > 0);
    if (--ctx->pending == 0) produce_finish(ctx);
}

static void produce_reply(data_shard *ds, struct produce_job *job)
{
    data_send(ds, job->ctx->conn_shard, produce_job_done_msg, job, 0, 0);
}

static int16_t produce_err_from_storage(int err)
{
    switch (err) {
    case AL_ECORRUPT:
    case AL_EMALFORMED:
    case AL_ETRUNCATED:
        return KAFKA_ERR_CORRUPT_MESSAGE;
    case AL_ETOOLARGE:
        return KAFKA_ERR_MESSAGE_TOO_LARGE;
    case -ENOSPC:
    case AL_EFAILED:
    case AL_ECLOSED:
        return KAFKA_ERR_KAFKA_STORAGE_ERROR;
    default:
        return kafka_err_from_internal(err);
    }
}

/* On the owner: the flush covering an acks=all job returned. */
static void produce_durable(storage_waiter *w)
{
    struct produce_job *job = w->ctx;
    data_shard *ds = data_shard_self();
    if (w->res < 0) {
        job->out->ErrorCode = produce_err_from_storage(w->res == AL_ERANGE ? AL_EFAILED : w->res);
        job->out->BaseOffset = -1;
    }
    if (ds) {
        pm_partition *p = pm_find(&ds->pm, job->topic_id, job->partition);
        if (p) pm_refresh_hw(p);
        produce_reply(ds, job);
    }
}

/*
 * Validates and appends the batches of one partition. Fills job->out. Returns the last offset
 * that must be durable before an acks=all answer (-1: nothing to wait for).
 */
static int64_t produce_append(data_shard *ds, pm_partition *p, struct produce_job *job)
{
    kafka_ProduceResponse_PartitionProduceResponse *out = job->out;
    int64_t wait_offset = -1;
    size_t pos = 0;
    int32_t max_size = p->settings.max_message_bytes;
    if (!job->records || job->len == 0) {
        out->ErrorCode = KAFKA_ERR_CORRUPT_MESSAGE;
        return -1;
    }
    /* First pass: validate everything, so a bad batch stores nothing. */
    for (int guard = 0; pos < job->len && guard < 100000; guard++) {
        storage_batch_hdr h;
        int64_t size = storage_batch_validate(job->records + pos, job->len - pos, 0, &h);
        if (size < 0) {
            out->ErrorCode = produce_err_from_storage((int)size);
            return -1;
        }
        if (size > max_size) {
            out->ErrorCode = KAFKA_ERR_MESSAGE_TOO_LARGE;
            return -1;
        }
        if (storage_batch_compression(&h) == STORAGE_COMP_ZSTD && job->version < 7) {
            out->ErrorCode = KAFKA_ERR_UNSUPPORTED_COMPRESSION_TYPE;
            return -1;
        }
        if (storage_batch_compression(&h) > STORAGE_COMP_ZSTD ||
            (h.attributes & (STORAGE_ATTR_CONTROL | STORAGE_ATTR_TRANSACTIONAL))) {
            out->ErrorCode = KAFKA_ERR_INVALID_RECORD;
            return -1;
        }
        pos += (size_t)size;
    }
    if (pos != job->len) {
        out->ErrorCode = KAFKA_ERR_CORRUPT_MESSAGE;
        return -1;
    }
    /* A table that remembers appends the log dropped would answer their retries as
     * duplicates: rebuild it first (rare: the log ran out of space). */
    int ferr = pm_producers_fresh(p);
    if (ferr) {
        log_warn("kafka", "%s/%" PRId32 ": rebuilding producer state: %s", p->topic,
                 p->partition, al_strerror(ferr));
        out->ErrorCode = KAFKA_ERR_KAFKA_STORAGE_ERROR;
        return -1;
    }
    int64_t now = io_wall_ms(ds->io);
    out->BaseOffset = -1;
    pos = 0;
    while (pos < job->len) {
        uint8_t *b = job->records + pos;
        storage_batch_hdr h;
        storage_batch_parse_header(b, job->len - pos, &h);
        size_t size = storage_batch_size(&h);
        pos += size;
        struct producer_batch pb = {h.producer_id, h.producer_epoch, h.base_sequence,
                                    h.last_offset_delta + 1, h.max_timestamp};
        if (h.producer_id >= 0) {
            int64_t dup_base = -1;
            int32_t dup_delta = 0;
            int v = producer_state_check(&p->producers, &pb, &dup_base, &dup_delta);
            if (v == PRODUCER_DUPLICATE) {
                if (out->BaseOffset < 0) out->BaseOffset = dup_base;
                wait_offset = AL_MAX(wait_offset, dup_base + dup_delta);
                log_debug("kafka",
                          "%s/%" PRId32 ": duplicate batch of producer %" PRId64 " seq %" PRId32
                          " at offset %" PRId64,
                          p->topic, p->partition, h.producer_id, h.base_sequence, dup_base);
                continue;
            }
            if (v < 0) {
                out->ErrorCode = (int16_t)-v;
                return wait_offset;
            }
        }
        if (p->settings.log_append_time) {
            /* LogAppendTime: the broker's clock in maxTimestamp, flag set, CRC recomputed. */
            int16_t attr = (int16_t)(h.attributes | STORAGE_ATTR_TIMESTAMP_LOG_APPEND);
            b[STORAGE_BATCH_OFF_ATTR] = (uint8_t)((uint16_t)attr >> 8);
            b[STORAGE_BATCH_OFF_ATTR + 1] = (uint8_t)attr;
            for (int i = 0; i < 8; i++) b[35 + i] = (uint8_t)((uint64_t)now >> (56 - 8 * i));
            storage_batch_set_crc(b, size);
            out->LogAppendTimeMs = now;
        }
        storage_append_result res;
        /* Validated in the first pass (CRC before the producer dedup above): not again. */
        int err = storage_log_append_validated(p->log, PM_LEADER_EPOCH, b, size, &res);
        if (err) {
            log_warn("kafka", "append to %s/%" PRId32 " failed: %s", p->topic, p->partition,
                     al_strerror(err));
            out->ErrorCode = produce_err_from_storage(err);
            return wait_offset;
        }
        if (h.producer_id >= 0) producer_state_record(&p->producers, &pb, res.base_offset);
        metrics_counter_add(metrics_local, M_KAFKA_BYTES_IN, (uint64_t)size, p->topic); /* ops */
        if (out->BaseOffset < 0) out->BaseOffset = res.base_offset;
        wait_offset = AL_MAX(wait_offset, res.last_offset);
        if (job->acks != -1) pm_note_append(p, res.last_offset);
    }
    return wait_offset;
}

static void produce_raft_done(data_shard *ds, void *arg)
{
    produce_reply(ds, arg);
}

/* On the owner shard: run one partition's job. */
static void produce_job_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct produce_job *job = msg->arg;
    data_shard *ds = data_shard_self();
    kafka_ProduceResponse_PartitionProduceResponse *out = job->out;
    pm_partition *p = ds ? pm_find(&ds->pm, job->topic_id, job->partition) : NULL;
    if (!p) {
        /* Cluster mode: the topic exists, this node just does not lead (or host) it. */
        out->ErrorCode = pr_enabled() ? KAFKA_ERR_NOT_LEADER_OR_FOLLOWER
                                      : KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
        if (ds && pr_enabled())
            kafka_produce_raft_fence(ds, job->topic_id, job->partition, job->records, job->len,
                                     out->ErrorCode);
        if (ds) produce_reply(ds, job);
        return;
    }
    if (p->rr) { /* cluster mode: replicated through Raft (handler_produce_raft.c) */
        kafka_produce_raft(ds, p, out, job->records, job->len, job->acks, job->version,
                           produce_raft_done, job);
        return;
    }
    int64_t wait_offset = produce_append(ds, p, job);
    out->LogStartOffset = storage_log_start_offset(p->log);
    if (job->acks == -1 && wait_offset >= 0) {
        job->waiter.cb = produce_durable;
        job->waiter.ctx = job;
        job->waiter.offset = wait_offset;
        int rc = storage_log_flush_wait(p->log, wait_offset, &job->waiter);
        if (rc == 0) return; /* produce_durable replies */
        if (rc < 0) {
            out->ErrorCode = produce_err_from_storage(rc == AL_ERANGE ? AL_EFAILED : rc);
            out->BaseOffset = -1;
        }
        pm_refresh_hw(p);
    }
    produce_reply(ds, job);
}

int kafka_handle_produce(kafka_req *req)
{
    const kafka_ProduceRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    struct produce_ctx *ctx = kafka_arena_alloc(&req->arena, sizeof(*ctx));
    if (!ctx) return -ENOMEM;
    memset(ctx, 0, sizeof(*ctx));
    ctx->req = req;
    ctx->conn_shard = ds->shard;
    kafka_ProduceResponse_init(&ctx->resp);
    bool bad_acks = in->Acks != 0 && in->Acks != 1 && in->Acks != -1;
    bool txn = in->TransactionalId.len >= 0;

    int32_t nt = AL_MAX(in->TopicData_count, 0);
    kafka_ProduceResponse_TopicProduceResponse *tr =
        kafka_arena_alloc(&req->arena, sizeof(*tr) * (size_t)nt);
    if (!tr) return -ENOMEM;
    ctx->resp.Responses = tr;
    ctx->resp.Responses_count = nt;

    /* Count jobs, then allocate them together. */
    int32_t njobs = 0;
    for (int32_t i = 0; i < nt; i++) njobs += AL_MAX(in->TopicData[i].PartitionData_count, 0);
    struct produce_job *jobs = kafka_arena_alloc(&req->arena, sizeof(*jobs) * (size_t)njobs);
    if (!jobs) return -ENOMEM;
    int32_t j = 0;
    ctx->pending = 1; /* held until every job is sent */
    for (int32_t i = 0; i < nt; i++) {
        const kafka_ProduceRequest_TopicProduceData *td = &in->TopicData[i];
        int32_t np = AL_MAX(td->PartitionData_count, 0);
        kafka_ProduceResponse_TopicProduceResponse_init(&tr[i]);
        tr[i].Name = td->Name;
        tr[i].PartitionResponses_count = np;
        tr[i].PartitionResponses =
            kafka_arena_alloc(&req->arena, sizeof(*tr[i].PartitionResponses) * (size_t)np);
        if (!tr[i].PartitionResponses) return -ENOMEM;
        const topic *t = td->Name.len > 0
                             ? topic_table_find(&ds->topics, td->Name.ptr, (size_t)td->Name.len)
                             : NULL;
        for (int32_t k = 0; k < np; k++) {
            const kafka_ProduceRequest_PartitionProduceData *pd = &td->PartitionData[k];
            kafka_ProduceResponse_PartitionProduceResponse *out = &tr[i].PartitionResponses[k];
            kafka_ProduceResponse_PartitionProduceResponse_init(out);
            out->Index = pd->Index;
            out->BaseOffset = -1;
            out->LogAppendTimeMs = -1;
            out->LogStartOffset = -1;
            if (bad_acks) {
                out->ErrorCode = KAFKA_ERR_INVALID_REQUIRED_ACKS;
                continue;
            }
            if (txn) {
                out->ErrorCode = KAFKA_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
                continue;
            }
            if (!t || pd->Index < 0 || pd->Index >= t->partitions) {
                out->ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            struct produce_job *job = &jobs[j++];
            memset(job, 0, sizeof(*job));
            job->ctx = ctx;
            job->out = out;
            memcpy(job->topic_id, t->id, 16);
            job->partition = pd->Index;
            /* The records are inside the request frame, which the req owns; storage stamps
             * offsets into them in place. */
            job->records = (uint8_t *)pd->Records.ptr;
            job->len = pd->Records.len > 0 ? (size_t)pd->Records.len : 0;
            job->acks = in->Acks;
            job->version = req->api_version;
            job->owner = pr_owner_shard(t, pd->Index, ds->smp); /* cluster: assigned shard */
        }
    }
    /* Everything is allocated: from here on nothing fails, so the jobs can go out. */
    data_inflight_add(ds, &ctx->inflight); /* abandoned, not freed, if the shard stops */
    for (int32_t i = 0; i < j; i++) {
        ctx->pending++;
        data_send(ds, jobs[i].owner, produce_job_msg, &jobs[i], 0, 0);
    }
    if (--ctx->pending == 0) {
        produce_finish(ctx);
        return KAFKA_DONE;
    }
    return KAFKA_DEFERRED;
}
