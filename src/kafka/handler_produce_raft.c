/*
 * handler_produce_raft.c — Produce's replicated append in cluster mode (see produce_raft.h):
 * validate, deduplicate, check min.insync.replicas, raft_replicate, and answer acks=all after
 * the Raft commit. Runs on the partition's shard.
 */
#include "kafka/produce_raft.h"

#include "base/log.h"
#include "cluster/partition_raft.h"
#include "cluster/topic_config.h"
#include "metrics/metrics.h"
#include "storage/batch.h"

#include <inttypes.h>
#include <stdlib.h>

#define PRAFT_MAX_BATCHES 100000 /* bound on batches in one partition's records */

/* An acks=all answer waiting for the commit (malloc'd; freed when answered). */
struct praft_wait {
    raft_replicate_req q;        /* fresh batches: RAFT_WAIT_COMMIT on the last one */
    pm_watch w;                  /* a duplicate still uncommitted: the high watermark */
    uint8_t topic_id[16];
    int32_t partition;
    int64_t target;              /* the offset that must commit */
    int64_t term;                /* the leader term it was appended in */
    bool in_call;                /* inside raft_replicate, which may commit at once */
    bool early;                  /* ... and did: answer after the call returns */
    kafka_ProduceResponse_PartitionProduceResponse *out;
    kafka_produce_raft_done_fn done;
    void *arg;
};

static int16_t praft_err(int err)
{
    switch (err) {
    case RAFT_ENOTLEADER:
    case RAFT_ELOST:
    case RAFT_EBUSY:
    case AL_ECLOSED:
        return KAFKA_ERR_NOT_LEADER_OR_FOLLOWER;
    case AL_EFULL:
        /* Too much uncommitted (the replicas are behind) or Raft's action queue full: nothing
         * was written. REQUEST_TIMED_OUT would tell librdkafka "possibly persisted" (it then
         * cannot tell a retry's OUT_OF_ORDER from a real gap); NOT_ENOUGH_REPLICAS is
         * retriable and "not persisted" in librdkafka, the Java client, kafkajs and
         * kafka-python alike. */
        return KAFKA_ERR_NOT_ENOUGH_REPLICAS;
    case AL_ECORRUPT:
    case AL_EMALFORMED:
    case AL_ETRUNCATED:
        return KAFKA_ERR_CORRUPT_MESSAGE;
    case AL_ETOOLARGE:
        return KAFKA_ERR_MESSAGE_TOO_LARGE;
    case AL_EINVAL:
        return KAFKA_ERR_INVALID_RECORD;
    case -ENOSPC:
    case AL_EFAILED:
        return KAFKA_ERR_KAFKA_STORAGE_ERROR;
    default:
        return kafka_err_from_internal(err);
    }
}

/* This shard's refusal fences (coord/producer_state.h): a batch refused unwritten makes the
 * same producer's next in-flight batches retry instead of failing with a sequence gap. */
static _Thread_local struct producer_fences praft_fences;

static struct producer_batch praft_producer_batch(const storage_batch_hdr *h)
{
    return (struct producer_batch){h->producer_id, h->producer_epoch, h->base_sequence,
                                   h->last_offset_delta + 1, h->max_timestamp};
}

void kafka_produce_raft_fence(data_shard *ds, const uint8_t topic_id[16], int32_t partition,
                              const uint8_t *records, size_t len, int16_t err)
{
    uint64_t key = producer_fence_key(topic_id, partition);
    int64_t now = (int64_t)(io_now_ns(ds->io) / 1000000);
    size_t pos = 0;
    for (int guard = 0; records && pos < len && guard < PRAFT_MAX_BATCHES; guard++) {
        storage_batch_hdr h;
        if (storage_batch_parse_header(records + pos, len - pos, &h) < 0) break;
        size_t size = storage_batch_size(&h);
        if (size < STORAGE_BATCH_HEADER || size > len - pos) break;
        struct producer_batch pb = praft_producer_batch(&h);
        if (pb.producer_id >= 0 && pb.base_seq >= 0 && pb.record_count >= 1)
            producer_fences_refused(&praft_fences, key, &pb, err, now);
        pos += size;
    }
}

/* Refuses a partition's whole request with err (retriable, nothing written): answers it and
 * fences every idempotent producer it carries (records may be unvalidated: only headers that
 * fit are read). Calls done. */
static void praft_refuse(data_shard *ds, pm_partition *p,
                         kafka_ProduceResponse_PartitionProduceResponse *out,
                         const uint8_t *records, size_t len, int16_t err,
                         kafka_produce_raft_done_fn done, void *arg)
{
    kafka_produce_raft_fence(ds, p->topic_id, p->partition, records, len, err);
    out->ErrorCode = err;
    out->BaseOffset = -1;
    done(ds, arg);
}

static void praft_finish(data_shard *ds, struct praft_wait *st, int16_t err)
{
    if (err) {
        st->out->ErrorCode = err;
        st->out->BaseOffset = -1;
    }
    kafka_produce_raft_done_fn done = st->done;
    void *arg = st->arg;
    free(st);
    done(ds, arg);
}

/* The last fresh batch committed, or cannot be known to (RAFT_ELOST, closed...). */
static void praft_committed(raft_replicate_req *q)
{
    struct praft_wait *st = AL_CONTAINER_OF(q, struct praft_wait, q);
    if (st->in_call) {
        st->early = true;
        return;
    }
    praft_finish(data_shard_self(), st, q->res ? praft_err(q->res) : 0);
}

static void praft_watch_fired(pm_watch *w);

static void praft_rearm_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    (void)self;
    struct praft_wait *st = msg->arg;
    data_shard *ds = data_shard_self();
    pm_partition *p = ds ? pm_find(&ds->pm, st->topic_id, st->partition) : NULL;
    if (!p || !p->rr) {
        praft_finish(ds, st, KAFKA_ERR_NOT_LEADER_OR_FOLLOWER);
        return;
    }
    pm_watch_arm(p, &st->w, st->target); /* fires at once if it committed meanwhile */
}

/* A duplicate's wait: the high watermark moved, leadership changed or the partition went. */
static void praft_watch_fired(pm_watch *w)
{
    struct praft_wait *st = AL_CONTAINER_OF(w, struct praft_wait, w);
    data_shard *ds = data_shard_self();
    pm_partition *p = ds ? pm_find(&ds->pm, st->topic_id, st->partition) : NULL;
    if (!p || !p->rr || p->removed) {
        praft_finish(ds, st, KAFKA_ERR_NOT_LEADER_OR_FOLLOWER);
    } else if (p->high_watermark > st->target) {
        praft_finish(ds, st, 0);
    } else if (!pr_is_leader(p) || raft_replica_term(p->rr) != st->term) {
        praft_finish(ds, st, KAFKA_ERR_NOT_LEADER_OR_FOLLOWER);
    } else {
        /* Every watch wakes on any move: arm again from the shard loop, not from inside the
         * wake-up loop (which would pop this watch again at once). */
        data_send(ds, ds->shard, praft_rearm_msg, st, 0, 0);
    }
}

/* The topic's min.insync.replicas: its override, else the broker default, else 1 (Kafka's
 * resolution, topic_config_resolve), cached per topic-table and cluster-config version. */
static int32_t praft_min_insync(data_shard *ds, pm_partition *p)
{
    struct pr_part *pp = p->pr;
    if (pp->min_insync_ver == ds->topics.version && pp->min_insync_cfg == ds->cluster_cfg_version)
        return pp->min_insync;
    pp->min_insync_ver = ds->topics.version;
    pp->min_insync_cfg = ds->cluster_cfg_version;
    pp->min_insync = 1;
    const topic *t = topic_table_find_id(&ds->topics, p->topic_id);
    struct topic_config_pair pairs[TOPIC_CONFIGS_MAX];
    int n = 0;
    for (int32_t i = 0; t && i < t->n_configs && n < TOPIC_CONFIGS_MAX; i++) {
        if (topic_config_check(t->configs[i].key, t->configs[i].value, NULL, 0)) continue;
        pairs[n++] = (struct topic_config_pair){t->configs[i].key, t->configs[i].value};
    }
    struct topic_configs tc;
    if (topic_config_resolve(pairs, n, ds->defaults.pairs, ds->defaults.n, &tc, NULL, 0) == 0 ||
        topic_config_resolve(NULL, 0, ds->defaults.pairs, ds->defaults.n, &tc, NULL, 0) == 0)
        pp->min_insync = AL_MAX(tc.min_insync_replicas, 1);
    return pp->min_insync;
}

/* First pass: every batch valid, so a bad one stores nothing. Returns 0 or a Kafka error. */
static int16_t praft_validate(const pm_partition *p, const uint8_t *records, size_t len,
                              int16_t version)
{
    if (!records || len == 0) return KAFKA_ERR_CORRUPT_MESSAGE;
    size_t pos = 0;
    for (int guard = 0; pos < len && guard < PRAFT_MAX_BATCHES; guard++) {
        storage_batch_hdr h;
        int64_t size = storage_batch_validate(records + pos, len - pos, 0, &h);
        if (size < 0) return praft_err((int)size);
        if (size > p->settings.max_message_bytes) return KAFKA_ERR_MESSAGE_TOO_LARGE;
        int comp = storage_batch_compression(&h);
        if (comp == STORAGE_COMP_ZSTD && version < 7) return KAFKA_ERR_UNSUPPORTED_COMPRESSION_TYPE;
        if (comp > STORAGE_COMP_ZSTD ||
            (h.attributes & (STORAGE_ATTR_CONTROL | STORAGE_ATTR_TRANSACTIONAL)))
            return KAFKA_ERR_INVALID_RECORD;
        pos += (size_t)size;
    }
    return pos == len ? 0 : KAFKA_ERR_CORRUPT_MESSAGE;
}

/* LogAppendTime: the broker's clock in maxTimestamp, flag set, CRC recomputed. */
static void praft_stamp_time(uint8_t *b, size_t size, const storage_batch_hdr *h, int64_t now)
{
    int16_t attr = (int16_t)(h->attributes | STORAGE_ATTR_TIMESTAMP_LOG_APPEND);
    b[STORAGE_BATCH_OFF_ATTR] = (uint8_t)((uint16_t)attr >> 8);
    b[STORAGE_BATCH_OFF_ATTR + 1] = (uint8_t)attr;
    for (int i = 0; i < 8; i++) b[35 + i] = (uint8_t)((uint64_t)now >> (56 - 8 * i));
    storage_batch_set_crc(b, size);
}

void kafka_produce_raft(data_shard *ds, pm_partition *p,
                        kafka_ProduceResponse_PartitionProduceResponse *out, uint8_t *records,
                        size_t len, int16_t acks, int16_t version, kafka_produce_raft_done_fn done,
                        void *arg)
{
    AL_ASSERT(p->rr && p->pr);
    out->BaseOffset = -1;
    if (!pr_is_leader(p)) {
        praft_refuse(ds, p, out, records, len, KAFKA_ERR_NOT_LEADER_OR_FOLLOWER, done, arg);
        return;
    }
    int16_t verr = praft_validate(p, records, len, version);
    if (verr) {
        out->ErrorCode = verr;
        done(ds, arg);
        return;
    }
    if (acks == -1 && pr_insync_count(p) < praft_min_insync(ds, p)) {
        praft_refuse(ds, p, out, records, len, KAFKA_ERR_NOT_ENOUGH_REPLICAS, done, arg);
        return;
    }
    /* Refuse before any sequence check what raft_replicate would refuse (a transfer running,
     * too much uncommitted...): each of a producer's in-flight batches then gets the same
     * retriable answer, none a sequence gap behind a refused one. */
    int werr = raft_replica_writable(p->rr);
    if (werr) {
        praft_refuse(ds, p, out, records, len, praft_err(werr), done, arg);
        return;
    }
    if (p->pr->producers_stale) {
        /* A new leader: its producer state must come from the log it now leads. */
        int err = pm_rebuild_producers(p);
        if (err) {
            log_warn("kafka", "%s/%" PRId32 ": rebuilding producer state: %s", p->topic,
                     p->partition, al_strerror(err));
            /* retriable; tried again */
            praft_refuse(ds, p, out, records, len, KAFKA_ERR_NOT_LEADER_OR_FOLLOWER, done, arg);
            return;
        }
        p->pr->producers_stale = false;
        p->pr->lead_offset = storage_log_high_offset(p->log);
        p->pr->lead_ms = (int64_t)(io_now_ns(ds->io) / 1000000);
    }
    struct praft_wait *st = NULL;
    if (acks == -1) {
        st = calloc(1, sizeof(*st));
        if (!st) {
            out->ErrorCode = KAFKA_ERR_REQUEST_TIMED_OUT;
            done(ds, arg);
            return;
        }
        memcpy(st->topic_id, p->topic_id, 16);
        st->partition = p->partition;
        st->out = out;
        st->done = done;
        st->arg = arg;
        st->target = -1;
    }
    int64_t now = io_wall_ms(ds->io);
    int64_t mono = (int64_t)(io_now_ns(ds->io) / 1000000);
    uint64_t fkey = producer_fence_key(p->topic_id, p->partition);
    int64_t wait_offset = -1;
    bool wait_commit_cb = false; /* the last batch was replicated with RAFT_WAIT_COMMIT */
    int16_t err = 0;
    size_t pos = 0;
    for (int guard = 0; pos < len && guard < PRAFT_MAX_BATCHES; guard++) {
        uint8_t *b = records + pos;
        storage_batch_hdr h;
        storage_batch_parse_header(b, len - pos, &h);
        size_t size = storage_batch_size(&h);
        pos += size;
        bool last = pos >= len;
        wait_commit_cb = false;
        struct producer_batch pb = praft_producer_batch(&h);
        if (h.producer_id >= 0) {
            int64_t dup_base = -1;
            int32_t dup_delta = 0;
            int v = producer_state_check(&p->producers, &pb, &dup_base, &dup_delta);
            if (v == PRODUCER_DUPLICATE) {
                if (out->BaseOffset < 0) out->BaseOffset = pm_to_kafka(p, dup_base);
                wait_offset = AL_MAX(wait_offset, dup_base + dup_delta);
                continue;
            }
            if (v == -KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER) {
                /* a gap behind a batch refused unwritten: retriable, as that batch was */
                int16_t ferr = producer_fences_gap(&praft_fences, fkey, &p->producers, &pb, mono);
                if (ferr) {
                    v = -ferr;
                } else if (mono - p->pr->lead_ms < PRODUCER_FENCE_MS &&
                           producer_state_gap_at_handover(&p->producers, &pb,
                                                          p->pr->lead_offset)) {
                    /* a gap where the previous leadership ended: its batches may have been
                     * refused by the old leader (whose fence is there), still be in flight,
                     * or be lost with it: retriable, nothing written */
                    v = -KAFKA_ERR_NOT_LEADER_OR_FOLLOWER;
                }
            }
            if (v < 0) {
                err = (int16_t)-v;
                break;
            }
        }
        if (p->settings.log_append_time) {
            praft_stamp_time(b, size, &h, now);
            out->LogAppendTimeMs = now;
        }
        raft_replicate_req local;
        raft_replicate_req *q = &local;
        memset(&local, 0, sizeof(local));
        local.wait = RAFT_WAIT_APPEND;
        if (st && last) {
            q = &st->q;
            q->wait = RAFT_WAIT_COMMIT;
            q->cb = praft_committed;
        }
        /* praft_validate checked every batch in full (CRC included); a LogAppendTime stamp
         * went through storage_batch_set_crc: the replica re-checks only the framing. */
        q->validated = true;
        if (st) st->in_call = true;
        int rc = raft_replicate(p->rr, b, size, q);
        if (st) st->in_call = false;
        if (rc < 0) {
            if (rc != RAFT_ENOTLEADER && rc != AL_EFULL)
                log_warn("kafka", "replicating to %s/%" PRId32 ": %s", p->topic, p->partition,
                         al_strerror(rc));
            err = praft_err(rc);
            if (rc != RAFT_ELOST && h.producer_id >= 0) /* ELOST: an outcome not known */
                producer_fences_refused(&praft_fences, fkey, &pb, err, mono);
            break;
        }
        if (h.producer_id >= 0) {
            producer_state_record(&p->producers, &pb, q->base_offset);
            producer_fences_clear(&praft_fences, fkey, h.producer_id);
        }
        metrics_counter_add(metrics_local, M_KAFKA_BYTES_IN, (uint64_t)size, p->topic); /* ops */
        /* Kafka offsets (Raft batches take none): the Raft offset translated */
        if (out->BaseOffset < 0) out->BaseOffset = pm_to_kafka(p, q->base_offset);
        wait_offset = AL_MAX(wait_offset, q->last_offset);
        if (st) st->term = q->term;
        wait_commit_cb = rc == 0; /* 0: q->cb will run */
    }
    out->LogStartOffset = pm_kafka_start(p);
    if (err) {
        out->ErrorCode = err;
        if (acks == -1) out->BaseOffset = -1;
    }
    if (!st) {
        done(ds, arg);
        return;
    }
    if (wait_commit_cb) {
        if (st->early) praft_finish(ds, st, st->q.res ? praft_err(st->q.res) : 0);
        return; /* otherwise praft_committed answers */
    }
    if (err || wait_offset < 0 || p->high_watermark > wait_offset) {
        praft_finish(ds, st, err);
        return;
    }
    /* The offsets to wait for are duplicates (or earlier batches) not committed yet. */
    st->target = wait_offset;
    st->term = raft_replica_term(p->rr);
    st->w.cb = praft_watch_fired;
    pm_watch_arm(p, &st->w, st->target);
}
