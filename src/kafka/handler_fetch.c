/*
 * handler_fetch.c — Fetch (API key 1, v4-11), consumers' reads.
 *
 * The connection's shard (C) resolves every partition in its topic table replica and runs the
 * fetch in rounds of cross-shard messages, one message per partition per round, each answered
 * exactly once by the partition's owner shard (S):
 *   READ   S reads whole batches from fetch_offset up to the partition's byte limit (at least
 *          one batch) and trims them to the high watermark (durable offset + 1: only fsynced
 *          data is visible). OFFSET_OUT_OF_RANGE below the log start or above the HW.
 *   ARM    S arms a watch of its own (allocated on S, never pointing into the request) that
 *          fires when the partition's HW passes what the READ saw; firing sends FIRED with the
 *          request's cookie to C, which looks the request up by cookie and ignores it if gone.
 *   CANCEL (fire and forget) S drops the watches of a cookie.
 * Long poll: if the first READ gathered fewer than min_bytes (and no partition has an error)
 * and max_wait_ms > 0, C arms every partition plus a timer and registers the request as
 * parked (data_inflight); the first FIRED or the timer makes C cancel the watches, READ again
 * and answer. A request parked at shutdown is answered at once (no remote shard holds a
 * pointer into it while parked).
 *
 * Zero copy: a READ whose first batch is in S's batch cache takes references to the run of
 * cached batches (fetch_from_cache: the same batches the copying read returns) instead of
 * copying them; any other READ returns one malloc'd buffer. Either goes into the response by
 * reference (kafka_req_hold / kafka_req_add_pieces: sent with a gathered sendmsg, released when
 * the request is freed). AILURUS_FETCH_COPY=1 (kafka_req_copy_records) keeps the copying path.
 *
 * Byte limits: each partition reads at most PartitionMaxBytes; when gathering, partitions
 * whose data would pass MaxBytes are answered empty, except that the first partition with
 * data is always included (KIP-74: at least one batch so a consumer never gets stuck).
 * No transactions yet: LastStableOffset = HW for both isolation levels; no aborted list.
 *
 * Cluster mode (a partition with a Raft replica, src/cluster/partition_raft.h): only the
 * leader serves (NOT_LEADER_OR_FOLLOWER elsewhere, also on a node that does not host the
 * partition), a CurrentLeaderEpoch (v9+) other than the Raft term is FENCED_LEADER_EPOCH /
 * UNKNOWN_LEADER_EPOCH, the HW is the commit index + 1, and an offset above a new leader's HW
 * but within its log is waited for rather than OFFSET_OUT_OF_RANGE. Requests go to the shard
 * the assignment names (pr_owner_shard).
 */
#include "kafka/handlers_data.h"

#include "base/log.h"
#include "cluster/data_plane.h"
#include "cluster/partition_raft.h"
#include "config/config.h"
#include "metrics/metrics.h"
#include "storage/batch.h"

#include <inttypes.h>
#include <stdlib.h>

enum { FETCH_READ = 1, FETCH_ARM, FETCH_CANCEL };
enum { PHASE_READ1 = 1, PHASE_ARMING, PHASE_WAITING, PHASE_READ2, PHASE_DONE };

struct fetch_ctx;

struct fetch_part {
    struct fetch_ctx *ctx;
    kafka_FetchResponse_PartitionData *out;
    uint8_t topic_id[16];
    int32_t partition;
    unsigned owner;
    bool routed; /* exists in C's table: has an owner to ask */
    int64_t fetch_offset;
    int32_t max_bytes;
    int32_t cur_epoch; /* CurrentLeaderEpoch (v9+), -1: not checked */
    /* results of the last READ (written by S, read by C after the reply) */
    int16_t error;
    int64_t hw, log_start; /* Kafka offsets (offset translation, partition_manager.h) */
    int64_t rhw;           /* the high watermark in log (Raft) offsets: for reads, watches */
    uint8_t *data; /* malloc'd, trimmed to whole batches below hw */
    struct fetch_pieces *pieces; /* or: cached batches held by reference (data NULL) */
    size_t len;    /* bytes of data or of the pieces */
    /* S side */
    storage_read rd;
    pm_partition *held; /* held across an asynchronous read */
};

struct fetch_ctx {
    kafka_req *req;
    data_shard *ds; /* C's */
    unsigned conn_shard;
    int32_t pending; /* replies outstanding in the current round */
    int phase;
    bool woken, timed_out;
    reactor_timer timer;
    struct data_inflight parked; /* registered while armed */
    int32_t nparts;
    struct fetch_part *parts;
    kafka_FetchResponse resp;
};

static void fetch_round(struct fetch_ctx *ctx, int op);

/*
 * Batches served straight from the owner shard's batch cache (zero copy): each piece is one
 * whole cached batch held by reference (storage_cache_get_ref), so eviction on S does not free
 * it while C encodes and sends it. Malloc'd on S, released (unref + free) on C, through the
 * request once it is part of a response (kafka_req_hold).
 */
#define FETCH_PIECES_MAX 256 /* more batches than this: the copying read (small batches) */
struct fetch_pieces {
    int n;      /* iovecs */
    int nref;   /* cache references held */
    size_t len;
    storage_cache_ref *ref[FETCH_PIECES_MAX];
    struct iovec v[FETCH_PIECES_MAX];
    /* Raft partitions: a batch goes out as two pieces, its baseOffset translated to a Kafka
     * offset (outside the batch CRC) from here, then the rest of the cached batch */
    uint8_t base[FETCH_PIECES_MAX / 2][8];
};

static void fetch_pieces_release(void *arg)
{
    struct fetch_pieces *pc = arg;
    if (!pc) return;
    for (int i = 0; i < pc->nref; i++) storage_cache_unref(pc->ref[i]);
    free(pc);
}

/* Drops what the last READ of fp returned (buffer or pieces). */
static void fetch_part_clear(struct fetch_part *fp)
{
    free(fp->data);
    fp->data = NULL;
    fetch_pieces_release(fp->pieces);
    fp->pieces = NULL;
    fp->len = 0;
}

/* ---- owner shard ---- */

static void fetch_reply_msg(reactor_shard *self, const struct reactor_msg *msg);
static void fetch_fired_msg(reactor_shard *self, const struct reactor_msg *msg);

static void fetch_reply(data_shard *ds, struct fetch_part *fp)
{
    data_send(ds, fp->ctx->conn_shard, fetch_reply_msg, fp, 0, 0);
}

/*
 * Keeps only the whole batches of fp->data whose last offset is below fp->rhw. A Raft
 * partition's batches are put in Kafka offsets: Raft's own batches (NOOP, CONFIG, TRIM) are
 * dropped and each data batch's baseOffset (outside its CRC) is rewritten (pm_to_kafka).
 */
static void fetch_trim(struct fetch_part *fp, const pm_partition *p)
{
    size_t pos = 0, out = 0;
    while (pos + STORAGE_BATCH_HEADER <= fp->len) {
        storage_batch_hdr h;
        if (storage_batch_parse_header(fp->data + pos, fp->len - pos, &h)) break;
        size_t size = storage_batch_size(&h);
        if (size > fp->len - pos || storage_batch_last_offset(&h) >= fp->rhw) break;
        if (!p->rr) {
            out = pos += size;
            continue;
        }
        if (!otx_is_gap(h.attributes, h.producer_id)) {
            if (out != pos) memmove(fp->data + out, fp->data + pos, size);
            al_put_be64(fp->data + out, (uint64_t)pm_to_kafka(p, h.base_offset));
            out += size;
        }
        pos += size;
    }
    fp->len = pos = out;
    if (pos == 0) {
        free(fp->data);
        fp->data = NULL;
    }
}

static int16_t fetch_err_from_storage(int err)
{
    if (err == AL_ERANGE) return KAFKA_ERR_OFFSET_OUT_OF_RANGE;
    if (err == AL_EFAILED || err == -EIO || err == AL_ECLOSED) return KAFKA_ERR_KAFKA_STORAGE_ERROR;
    return kafka_err_from_internal(err);
}

static void fetch_read_done(storage_read *r)
{
    struct fetch_part *fp = r->ctx;
    data_shard *ds = data_shard_self();
    pm_partition *p = pm_find(&ds->pm, fp->topic_id, fp->partition);
    /* The hold taken before the read keeps the partition struct alive even if deleted. */
    pm_partition *held = fp->held;
    fp->held = NULL;
    bool alive = pm_release(held);
    if (!alive || !p) {
        storage_read_release(r);
        fp->error = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    } else if (r->res < 0) {
        storage_read_release(r);
        fp->error = fetch_err_from_storage(r->res);
    } else {
        fp->data = r->data;
        fp->len = r->len;
        r->data = NULL;
        fetch_trim(fp, p);
    }
    fetch_reply(ds, fp);
}

/* Cluster mode: only the leader serves, and only for the leader epoch (= Raft term) the
 * client knows, if it says one (KIP-320). Returns 0 or the Kafka error. */
static int16_t fetch_check_leader(pm_partition *p, int32_t cur_epoch)
{
    if (!p->rr) return 0;
    if (!pr_is_leader(p)) return KAFKA_ERR_NOT_LEADER_OR_FOLLOWER;
    int64_t term = raft_replica_term(p->rr);
    if (cur_epoch < 0 || cur_epoch == term) return 0;
    return cur_epoch < term ? KAFKA_ERR_FENCED_LEADER_EPOCH : KAFKA_ERR_UNKNOWN_LEADER_EPOCH;
}

/*
 * On S: serves the read from the batch cache by reference when the batch at fetch_offset is
 * cached: the same batches the copying read returns after fetch_trim (consecutive cached
 * batches from the log offset roff while fewer than max_bytes are gathered, at least one,
 * stopping at the first miss, and only those wholly below the HW; a Raft partition's in Kafka
 * offsets, as fetch_trim leaves them). Returns true when it answered (pieces set, or nothing
 * below the HW); false to use storage_log_read (not cached, more than FETCH_PIECES_MAX
 * batches, out of memory, or a miss after Raft or empty batches only: that read goes on to a
 * batch with records, which kafkajs needs to advance; a lone NOOP was fetched again forever).
 */
static bool fetch_from_cache(pm_partition *p, struct fetch_part *fp, int64_t roff)
{
    storage_cache *c = p->log_cfg.cache;
    if (!c || kafka_req_copy_records) return false;
    struct fetch_pieces *pc = NULL;
    int64_t next = roff;
    size_t total = 0;
    bool data = false; /* a batch with records, not a control one, was gathered */
    for (int n = 0; total < (size_t)fp->max_bytes; n++) {
        if (n == (p->rr ? FETCH_PIECES_MAX / 2 : FETCH_PIECES_MAX))
            goto copy; /* many small batches: copying is cheaper */
        size_t len;
        int64_t last;
        storage_cache_ref *ref;
        const uint8_t *b = storage_cache_get_ref(c, p->log_cfg.log_id, next, &len, &last, &ref);
        if (!b) { /* a miss after Raft or empty batches only: storage_log_read goes past them */
            if (!data) {
                fetch_pieces_release(pc);
                return false;
            }
            break;
        }
        if (last >= fp->rhw) { /* not visible yet (fetch_trim's rule) */
            storage_cache_unref(ref);
            break;
        }
        if (!pc && !(pc = malloc(sizeof(*pc)))) {
            storage_cache_unref(ref);
            return false;
        }
        if (n == 0) pc->n = 0, pc->nref = 0, pc->len = 0;
        pc->ref[pc->nref++] = ref;
        next = last + 1;
        if (len >= STORAGE_BATCH_HEADER && !(al_be16(b + 21) & STORAGE_ATTR_CONTROL) &&
            (int32_t)al_be32(b + 57) > 0)
            data = true;
        if (!p->rr) {
            pc->v[pc->n++] = (struct iovec){.iov_base = (void *)b, .iov_len = len};
        } else if (len >= STORAGE_BATCH_HEADER &&
                   !otx_is_gap((int16_t)al_be16(b + 21), (int64_t)al_be64(b + 43))) {
            uint8_t *base = pc->base[pc->nref - 1];
            al_put_be64(base, (uint64_t)pm_to_kafka(p, (int64_t)al_be64(b)));
            pc->v[pc->n++] = (struct iovec){.iov_base = base, .iov_len = 8};
            pc->v[pc->n++] = (struct iovec){.iov_base = (void *)(b + 8), .iov_len = len - 8};
        } else {
            continue; /* a Raft batch: not for clients */
        }
        pc->len += len;
        total += len;
    }
    if (pc && pc->n == 0) { /* only Raft batches */
        fetch_pieces_release(pc);
        pc = NULL;
    }
    fp->pieces = pc; /* NULL: the first batch is not below the HW, nothing to send */
    fp->len = pc ? pc->len : 0;
    return true;
copy:
    fetch_pieces_release(pc);
    return false;
}

static void fetch_do_read(data_shard *ds, struct fetch_part *fp)
{
    pm_partition *p = pm_find(&ds->pm, fp->topic_id, fp->partition);
    fp->data = NULL;
    fp->pieces = NULL;
    fp->len = 0;
    fp->error = 0;
    if (!p) {
        /* Cluster mode: the topic exists; this node does not host the partition. */
        fp->error = pr_enabled() ? KAFKA_ERR_NOT_LEADER_OR_FOLLOWER
                                 : KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
        fetch_reply(ds, fp);
        return;
    }
    fp->error = fetch_check_leader(p, fp->cur_epoch);
    if (fp->error) {
        fetch_reply(ds, fp);
        return;
    }
    /* the client's offsets are Kafka offsets; the log's Raft offsets (cluster mode) */
    fp->rhw = p->high_watermark;
    fp->hw = pm_kafka_hw(p);
    fp->log_start = pm_kafka_start(p);
    int64_t roff = pm_to_raft(p, fp->fetch_offset);
    if (storage_log_failed(p->log)) {
        fp->error = KAFKA_ERR_KAFKA_STORAGE_ERROR;
    } else if (fp->fetch_offset < fp->log_start || fp->fetch_offset > fp->hw) {
        /* A new Raft leader may know a lower commit than its predecessor for a moment; an
         * offset it holds (<= its log end) is waited for, not out of range. */
        if (!p->rr || fp->fetch_offset < fp->log_start ||
            fp->fetch_offset > pm_to_kafka(p, raft_replica_last_offset(p->rr) + 1))
            fp->error = KAFKA_ERR_OFFSET_OUT_OF_RANGE;
    } else if (fp->fetch_offset < fp->hw && fp->max_bytes > 0 && fetch_from_cache(p, fp, roff)) {
        /* served from the cache by reference */
    } else if (fp->fetch_offset < fp->hw && fp->max_bytes > 0) {
        memset(&fp->rd, 0, sizeof(fp->rd));
        fp->rd.offset = roff;
        fp->rd.max_bytes = (size_t)fp->max_bytes;
        fp->rd.cb = fetch_read_done;
        fp->rd.ctx = fp;
        int rc = storage_log_read(p->log, &fp->rd);
        if (rc == 0) {
            pm_hold(p);
            fp->held = p;
            return;
        }
        if (rc < 0) {
            fp->error = fetch_err_from_storage(rc);
        } else {
            fp->data = fp->rd.data;
            fp->len = fp->rd.len;
            fp->rd.data = NULL;
            fetch_trim(fp, p);
        }
    }
    fetch_reply(ds, fp);
}

/* A watch owned by the partition's shard. */
struct fetch_watch {
    pm_watch w;
    unsigned conn_shard;
    uint64_t cookie;
    struct fetch_watch *prev, *next; /* the shard's list, for CANCEL */
};

static _Thread_local struct fetch_watch *tls_watches;

static void fetch_watch_unlink(struct fetch_watch *fw)
{
    if (fw->prev)
        fw->prev->next = fw->next;
    else if (tls_watches == fw)
        tls_watches = fw->next;
    if (fw->next) fw->next->prev = fw->prev;
    fw->prev = fw->next = NULL;
}

static void fetch_watch_fired(pm_watch *w)
{
    struct fetch_watch *fw = AL_CONTAINER_OF(w, struct fetch_watch, w);
    data_shard *ds = data_shard_self();
    if (ds) data_send(ds, fw->conn_shard, fetch_fired_msg, NULL, fw->cookie, 0);
    fetch_watch_unlink(fw);
    free(fw);
}

static void fetch_part_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct fetch_part *fp = msg->arg;
    data_shard *ds = data_shard_self();
    if (!ds) return;
    switch ((int)msg->a) {
    case FETCH_READ:
        fetch_do_read(ds, fp);
        return;
    case FETCH_ARM: {
        pm_partition *p = pm_find(&ds->pm, fp->topic_id, fp->partition);
        struct fetch_watch *fw = calloc(1, sizeof(*fw));
        AL_ASSERT(fw != NULL);
        fw->w.cb = fetch_watch_fired;
        fw->conn_shard = fp->ctx->conn_shard;
        fw->cookie = msg->b;
        fw->next = tls_watches;
        if (tls_watches) tls_watches->prev = fw;
        tls_watches = fw;
        if (p)
            pm_watch_arm(p, &fw->w, fp->rhw);
        else
            fetch_watch_fired(&fw->w); /* gone: wake the fetch so it answers */
        fetch_reply(ds, fp);
        return;
    }
    }
    AL_PANIC("fetch: unknown op %" PRIu64, msg->a);
}

/* On an owner shard: drop the watches of a finished (or finishing) fetch. */
static void fetch_cancel_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct fetch_watch *fw = tls_watches;
    for (uint64_t guard = 0; fw && guard < (1ull << 32); guard++) {
        struct fetch_watch *next = fw->next;
        if (fw->cookie == msg->a) {
            pm_watch_disarm(&fw->w);
            fetch_watch_unlink(fw);
            free(fw);
        }
        fw = next;
    }
}

/* ---- connection shard ---- */

static void fetch_free_data(struct fetch_ctx *ctx)
{
    for (int32_t i = 0; i < ctx->nparts; i++) fetch_part_clear(&ctx->parts[i]);
}

/* Fills the response from the parts; returns the bytes of records included. */
static size_t fetch_gather(struct fetch_ctx *ctx)
{
    const kafka_FetchRequest *in = ctx->req->msg;
    size_t total = 0;
    bool any = false;
    size_t max_bytes = in->MaxBytes > 0 ? (size_t)in->MaxBytes : 0;
    for (int32_t i = 0; i < ctx->nparts; i++) {
        struct fetch_part *fp = &ctx->parts[i];
        kafka_FetchResponse_PartitionData *out = fp->out;
        if (!fp->routed) continue;
        out->ErrorCode = fp->error;
        out->Records.ptr = NULL;
        out->Records.len = 0;
        if (fp->error) continue;
        out->HighWatermark = fp->hw;
        out->LastStableOffset = fp->hw;
        out->LogStartOffset = fp->log_start;
        if (!fp->len) continue;
        if (any && total + fp->len > max_bytes) continue; /* over MaxBytes: next fetch */
        out->Records.ptr = fp->pieces ? fp->pieces->v[0].iov_base : fp->data;
        out->Records.len = (int32_t)fp->len;
        total += fp->len;
        any = true;
    }
    return total;
}

/* operations (src/metrics): adds the record bytes going out to ailurus_kafka_topic_bytes_out
 * per topic (names from this shard's topic table replica, looked up once per run of parts of
 * the same topic) and counts per-partition error codes. */
static void fetch_count_bytes(struct fetch_ctx *ctx)
{
    const topic *t = NULL;
    for (int32_t i = 0; metrics_local && i < ctx->nparts; i++) {
        struct fetch_part *fp = &ctx->parts[i];
        if (fp->routed && fp->error) metrics_kafka_error("Fetch", fp->error);
        if (!fp->routed || fp->error || !fp->out->Records.len) continue;
        if (!t || memcmp(t->id, fp->topic_id, 16))
            t = topic_table_find_id(&ctx->ds->topics, fp->topic_id);
        if (t)
            metrics_counter_add(metrics_local, M_KAFKA_BYTES_OUT, (uint64_t)fp->out->Records.len,
                                t->name);
    }
}

static bool fetch_has_error(const struct fetch_ctx *ctx)
{
    for (int32_t i = 0; i < ctx->nparts; i++)
        if (ctx->parts[i].out->ErrorCode) return true;
    return false;
}

static void fetch_buf_release(void *p)
{
    free(p);
}

/* Pieces that cannot go out as pieces (fewer bytes than KAFKA_REQ_REF_MIN, so the encoder
 * copies them as one buffer, or the copying path for tests): one malloc'd buffer with their
 * bytes; the pieces are released. Returns the buffer or NULL (out of memory). */
static uint8_t *fetch_pieces_flatten(struct fetch_pieces *pc)
{
    uint8_t *buf = malloc(pc->len ? pc->len : 1);
    size_t pos = 0;
    for (int i = 0; buf && i < pc->n; i++) {
        memcpy(buf + pos, pc->v[i].iov_base, pc->v[i].iov_len);
        pos += pc->v[i].iov_len;
    }
    fetch_pieces_release(pc);
    return buf;
}

/* Hands the records of the parts that go into the response to the request (they are sent from
 * where they are: kafka_req_hold, kafka_req_add_pieces) and frees the others. A part whose
 * records cannot be handed over (out of memory) is answered without them (the client fetches
 * them again). */
static void fetch_hand_over(struct fetch_ctx *ctx)
{
    for (int32_t i = 0; i < ctx->nparts; i++) {
        struct fetch_part *fp = &ctx->parts[i];
        uint8_t *data = fp->data;
        struct fetch_pieces *pc = fp->pieces;
        fp->data = NULL;
        fp->pieces = NULL;
        fp->len = 0;
        if (!data && !pc) continue;
        kafka_bytes *rec = &fp->out->Records;
        if (rec->ptr == NULL || rec->ptr != (pc ? pc->v[0].iov_base : data)) {
            free(data); /* not in this response (over MaxBytes) */
            fetch_pieces_release(pc);
            continue;
        }
        int rc = 0;
        if (pc && pc->n > 1 && (pc->len < KAFKA_REQ_REF_MIN || kafka_req_copy_records)) {
            rec->ptr = data = fetch_pieces_flatten(pc);
            pc = NULL;
            rc = data ? 0 : -ENOMEM;
        }
        if (!rc && pc) {
            rc = kafka_req_hold(ctx->req, pc, fetch_pieces_release);
            if (!rc && pc->n > 1) rc = kafka_req_add_pieces(ctx->req, pc->v, pc->n);
        } else if (!rc) {
            rc = kafka_req_hold(ctx->req, data, fetch_buf_release);
        }
        if (rc < 0) { /* released (or never made): answer this partition empty */
            rec->ptr = NULL;
            rec->len = 0;
        }
    }
}

static void fetch_respond(struct fetch_ctx *ctx)
{
    reactor_timer_cancel(ctx->ds->rs, &ctx->timer);
    if (ctx->parked.cookie) {
        data_inflight_remove(ctx->ds, &ctx->parked);
        ctx->parked.cookie = 0;
    }
    ctx->phase = PHASE_DONE;
    fetch_gather(ctx);
    /* The records go out by reference (kafka_req_respond encodes large ones as pointers into
     * these buffers): the request owns them from here and frees them once they are sent.
     * Responding may free the request (and ctx, in its arena) at once when the connection is
     * gone, so nothing of ctx is touched after it. */
    fetch_hand_over(ctx);
    fetch_count_bytes(ctx); /* operations: bytes out per topic */
    kafka_req_respond(ctx->req, &ctx->resp);
}

/* The wait is over (woken or timed out): cancel the watches everywhere, read again. */
static void fetch_end_wait(struct fetch_ctx *ctx)
{
    bool sent[256] = {false};
    for (int32_t i = 0; i < ctx->nparts; i++) {
        struct fetch_part *fp = &ctx->parts[i];
        if (!fp->routed) continue;
        if (fp->owner < 256 && sent[fp->owner]) continue;
        if (fp->owner < 256) sent[fp->owner] = true;
        data_send(ctx->ds, fp->owner, fetch_cancel_msg, NULL, ctx->parked.cookie, 0);
    }
    ctx->phase = PHASE_READ2;
    fetch_round(ctx, FETCH_READ);
}

static void fetch_timer_fire(reactor_timer *t)
{
    struct fetch_ctx *ctx = t->ctx;
    ctx->timed_out = true;
    if (ctx->phase == PHASE_WAITING) fetch_end_wait(ctx);
}

static void fetch_fired_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    data_shard *ds = data_shard_self();
    struct data_inflight *n = ds ? data_inflight_find(ds, msg->a) : NULL;
    if (!n) return; /* answered already */
    struct fetch_ctx *ctx = AL_CONTAINER_OF(n, struct fetch_ctx, parked);
    ctx->woken = true;
    if (ctx->phase == PHASE_WAITING) fetch_end_wait(ctx);
}

/* Shutdown of the connection's shard: a parked fetch is answered (nothing points into it);
 * one with a round in flight is abandoned. */
static bool fetch_on_shutdown(struct data_inflight *n)
{
    struct fetch_ctx *ctx = AL_CONTAINER_OF(n, struct fetch_ctx, parked);
    if (ctx->phase != PHASE_WAITING) return false;
    fetch_respond(ctx);
    return true;
}

/* A round is complete: decide what comes next. */
static void fetch_round_done(struct fetch_ctx *ctx)
{
    const kafka_FetchRequest *in = ctx->req->msg;
    switch (ctx->phase) {
    case PHASE_READ1: {
        size_t got = fetch_gather(ctx);
        bool enough = (int64_t)got >= (int64_t)in->MinBytes;
        if (enough || in->MaxWaitMs <= 0 || fetch_has_error(ctx) || ctx->nparts == 0) {
            fetch_respond(ctx);
            return;
        }
        fetch_free_data(ctx);
        uint64_t deadline = io_now_ns(ctx->ds->io) + (uint64_t)in->MaxWaitMs * 1000000ull;
        reactor_timer_add(ctx->ds->rs, &ctx->timer, deadline, NULL);
        ctx->phase = PHASE_ARMING;
        fetch_round(ctx, FETCH_ARM);
        return;
    }
    case PHASE_ARMING:
        if (ctx->woken || ctx->timed_out)
            fetch_end_wait(ctx);
        else
            ctx->phase = PHASE_WAITING;
        return;
    case PHASE_READ2:
        fetch_respond(ctx);
        return;
    }
    AL_PANIC("fetch: bad phase %d", ctx->phase);
}

static void fetch_reply_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct fetch_part *fp = msg->arg;
    struct fetch_ctx *ctx = fp->ctx;
    AL_ASSERT(ctx->pending > 0);
    if (--ctx->pending == 0) fetch_round_done(ctx);
}

static void fetch_round(struct fetch_ctx *ctx, int op)
{
    ctx->pending = 1;
    for (int32_t i = 0; i < ctx->nparts; i++) {
        struct fetch_part *fp = &ctx->parts[i];
        if (!fp->routed) continue;
        if (op == FETCH_READ) fetch_part_clear(fp);
        ctx->pending++;
        data_send(ctx->ds, fp->owner, fetch_part_msg, fp, (uint64_t)op, ctx->parked.cookie);
    }
    if (--ctx->pending == 0) fetch_round_done(ctx);
}

int kafka_handle_fetch(kafka_req *req)
{
    const kafka_FetchRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    struct fetch_ctx *ctx = kafka_arena_alloc(&req->arena, sizeof(*ctx));
    if (!ctx) return -ENOMEM;
    memset(ctx, 0, sizeof(*ctx));
    ctx->req = req;
    ctx->ds = ds;
    ctx->conn_shard = ds->shard;
    reactor_timer_init(&ctx->timer, fetch_timer_fire, ctx);
    kafka_FetchResponse_init(&ctx->resp);
    ctx->resp.SessionId = 0; /* no fetch sessions: every fetch is a full one */
    if (in->SessionId != 0) {
        ctx->resp.ErrorCode = KAFKA_ERR_FETCH_SESSION_ID_NOT_FOUND;
        int rc = kafka_req_respond(req, &ctx->resp);
        return rc < 0 ? rc : KAFKA_DONE;
    }

    int32_t nt = AL_MAX(in->Topics_count, 0);
    int32_t np = 0;
    for (int32_t i = 0; i < nt; i++) np += AL_MAX(in->Topics[i].Partitions_count, 0);
    kafka_FetchResponse_FetchableTopicResponse *tr =
        kafka_arena_alloc(&req->arena, sizeof(*tr) * (size_t)nt);
    kafka_FetchResponse_PartitionData *pr =
        kafka_arena_alloc(&req->arena, sizeof(*pr) * (size_t)np);
    ctx->parts = kafka_arena_alloc(&req->arena, sizeof(*ctx->parts) * (size_t)np);
    if (!tr || !pr || !ctx->parts) return -ENOMEM;
    memset(ctx->parts, 0, sizeof(*ctx->parts) * (size_t)np);
    ctx->resp.Responses = tr;
    ctx->resp.Responses_count = nt;
    int32_t k = 0;
    for (int32_t i = 0; i < nt; i++) {
        const kafka_FetchRequest_FetchTopic *ft = &in->Topics[i];
        kafka_FetchResponse_FetchableTopicResponse_init(&tr[i]);
        tr[i].Topic = ft->Topic;
        tr[i].TopicId = ft->TopicId;
        const topic *t = ft->Topic.len > 0
                             ? topic_table_find(&ds->topics, ft->Topic.ptr, (size_t)ft->Topic.len)
                             : NULL;
        int32_t n = AL_MAX(ft->Partitions_count, 0);
        tr[i].Partitions = &pr[k];
        tr[i].Partitions_count = n;
        for (int32_t j = 0; j < n; j++, k++) {
            const kafka_FetchRequest_FetchPartition *q = &ft->Partitions[j];
            kafka_FetchResponse_PartitionData *out = &pr[k];
            struct fetch_part *fp = &ctx->parts[k];
            kafka_FetchResponse_PartitionData_init(out);
            out->PartitionIndex = q->Partition;
            out->HighWatermark = -1;
            out->LastStableOffset = -1;
            out->LogStartOffset = -1;
            out->AbortedTransactions_count = in->IsolationLevel ? 0 : -1;
            out->PreferredReadReplica = -1;
            out->Records.ptr = NULL;
            out->Records.len = 0;
            fp->ctx = ctx;
            fp->out = out;
            fp->partition = q->Partition;
            fp->fetch_offset = q->FetchOffset;
            fp->max_bytes = q->PartitionMaxBytes;
            fp->cur_epoch = req->api_version >= 9 ? q->CurrentLeaderEpoch : -1;
            if (!t || q->Partition < 0 || q->Partition >= t->partitions) {
                out->ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            memcpy(fp->topic_id, t->id, 16);
            fp->owner = pr_owner_shard(t, q->Partition, ds->smp);
            fp->routed = true;
        }
    }
    ctx->nparts = np;
    ctx->phase = PHASE_READ1;
    ctx->parked.on_shutdown = fetch_on_shutdown;
    data_inflight_add(ds, &ctx->parked);
    fetch_round(ctx, FETCH_READ);
    return req->state == KAFKA_REQ_DONE ? KAFKA_DONE : KAFKA_DEFERRED;
}
