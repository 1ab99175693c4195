/*
 * bench.c — `ailurus bench`: a Kafka load generator in the spirit of the OpenMessaging
 * Benchmark, on the client library (src/client/kclient.h) and the io back end. Producers and
 * consumers over N connections, P partitions, record size, key distribution, compression, acks,
 * a target rate (open loop: every record has an intended send time on a fixed schedule and its
 * latency is measured from that time, so a slow broker cannot hide latency by slowing the
 * generator: no coordinated omission) or flat out. Reports records/s, MB/s and latency
 * percentiles of produce acknowledgement and end to end (intended send time, carried in the
 * record value, to the moment a consumer in this process decodes it), a progress line each
 * second, a summary table and optionally a JSON summary. Each record's produce ack latency is
 * also split into the send delay (intended time -> its request handed to the client library:
 * linger and client-side queueing) and the round trip (handed -> response), so a tail can be
 * placed on the client or on the broker/network side.
 *
 * Threads: --smp S threads, each with its own io_uring io and a share of the producer and
 * consumer connections; nothing is shared between them but relaxed atomic counters (progress)
 * and the histograms merged after they have been joined.
 *
 * Record value layout: "ALB1" | run id u32 | intended send time (monotonic ns, u64) | filler
 * (random bytes). Consumers count only records of this run.
 */
#include "cli/commands.h"
#include "client/khist.h"
#include "client/kclient.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    BENCH_MAX_REQ_PARTS = 64, /* batches per Produce request */
    BENCH_HDR = 16,           /* value prefix */
    BENCH_POOL = 1 << 20,     /* random filler */
    BENCH_LIST_OFFSETS_CHUNK = 10000, /* partitions per ListOffsets request */
};

/* ---- configuration ---- */

struct bench_cfg {
    char brokers[128];
    char host[64];
    uint16_t port;
    char topic[200];
    int partitions;
    int producers;
    int consumers;
    int record_size;
    int keys; /* 0 none, -1 random, N distinct */
    int compression;
    int acks;
    double rate;      /* records/s total, 0 = flat out */
    double duration;  /* s, measured */
    double warmup;    /* s */
    int batch_bytes;
    double linger_ms;
    int max_inflight; /* produce requests per connection */
    int smp;
    const char *json;
    bool quiet;
};

/* ---- per-thread state ---- */

struct bench_thread;

struct acc { /* records accumulated for one partition */
    int n;
    bool in_ready, in_open;
    uint64_t first;
    uint64_t *times; /* intended send time of each record, cap max_recs */
    uint32_t *keys;  /* key number of each record (with --keys) */
};

struct req_slot {
    bool used;
    int nparts;
    int32_t part[BENCH_MAX_REQ_PARTS];
    int nrec[BENCH_MAX_REQ_PARTS];
    uint64_t *times; /* BENCH_MAX_REQ_PARTS * max_recs */
    uint64_t sent_ns;   /* when the request was handed to the client library */
    struct producer *p;
};

struct producer {
    struct bench_thread *t;
    kclient *c;
    bool up, failed;
    double ns_per_rec; /* 0 flat out */
    uint64_t seq;
    uint64_t t0;
    int sticky;
    struct acc *acc;
    int32_t *readyq, *openq; /* rings of partition ids, cap P */
    int rq_head, rq_n, oq_head, oq_n;
    struct req_slot *slots;
    int inflight;
    uint32_t rng;
    /* The last prod_generate stopped at a record whose batch is full: nothing can be generated
     * before a request slot frees (a response calls prod_pump), so no timer is needed for it. */
    bool blocked;
};

struct consumer {
    struct bench_thread *t;
    kclient *c;
    bool up, failed, fetching;
    int nparts;
    int32_t *parts;
    int64_t *offsets;
    kafka_FetchRequest_FetchPartition *fp; /* the Fetch request's partitions, nparts */
};

struct bench_thread {
    const struct bench_cfg *cfg;
    pthread_t tid;
    io *io;
    int id;
    uint32_t run_id;
    int16_t fetch_ver;
    int max_recs;
    uint64_t start, warm_end, end, hard_end;
    volatile int stop_produce;
    bool closing; /* our own close: AL_ECLOSED callbacks are expected, not failures */
    struct producer *prods;
    int nprods;
    struct consumer *cons;
    int ncons;
    const int64_t *start_offsets;
    const uint8_t *pool;
    uint8_t *scratch;     /* values of one batch */
    char (*keybuf)[12];   /* keys of one batch (heap, not __thread: static TLS is zeroed in
                           * every thread of every ailurus process, the broker's too) */
    uint8_t *batchbuf;    /* one encoded batch per request partition */
    size_t batchcap;
    kclient_record *recs;
    khist ack, e2e;
    /* Where the ack latency goes, per acked record of the measured window (weighted like
     * `ack`, so the two parts add up to each record's ack latency): its intended time ->
     * its request handed to the client (linger + client-side queueing), and handed ->
     * response (the round trip: network, broker, and the time to schedule both processes).
     * Per request (as before H8) a stall that piles many records into one batch counted
     * once, so the split's p99s did not explain the records' p99. */
    khist send_delay, rtt;
    /* The round trip once per request (not per record), comparable with the broker's own
     * per-request Produce latency: per record, a request that waited long carries more
     * records (batches grow while the round trip is long), so the per-record p99 weighs
     * slow requests more than the broker's histogram does. */
    khist rtt_req;
    /* The generator's own share of a tail, measured window only: how late its loop woke for
     * its own timer (a batch's linger; waiting for a CPU, or a long turn of callbacks), and
     * how long the thread waited for a CPU in all (schedstat run delay). */
    khist lag;
    uint64_t run_delay_ns, run_delay_wall_ns, rd0, rd_t0;
    int rd_state; /* 0 before the window, 1 in it, 2 done */
    /* relaxed atomics, read by the progress loop */
    uint64_t acked, acked_bytes, acked_window, consumed, consumed_window, errors, sent;
    uint64_t produced_total; /* all records acked (any window), for the consumers' goal */
    uint64_t polls;          /* io_poll calls of the main loop (wake-ups), this thread only */
    int rc;
};

/* Time this thread has waited on a run queue (ns; /proc/thread-self/schedstat's second
 * field), or 0 when the kernel does not keep it. */
static uint64_t thread_run_delay_ns(void)
{
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    if (!f) return 0;
    unsigned long long run = 0, wait = 0;
    int n = fscanf(f, "%llu %llu", &run, &wait);
    fclose(f);
    return n == 2 ? (uint64_t)wait : 0;
}

/* Opens and closes the thread's run-delay window with the measured window. */
static void thread_note_window(struct bench_thread *t, uint64_t now)
{
    if (t->rd_state == 0 && now >= t->warm_end) {
        t->rd0 = thread_run_delay_ns();
        t->rd_t0 = now;
        t->rd_state = 1;
    } else if (t->rd_state == 1 && now >= t->end) {
        uint64_t rd = thread_run_delay_ns();
        t->run_delay_ns = rd > t->rd0 ? rd - t->rd0 : 0;
        t->run_delay_wall_ns = now - t->rd_t0;
        t->rd_state = 2;
    }
}

static void atomic_add(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static uint64_t atomic_get(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x ? x : 0x9e3779b9u;
}

static uint32_t fnv1a(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
    return h;
}

/* ---- producer ---- */

static void prod_pump(struct producer *p, uint64_t now);

/* Intended send time of the producer's record number seq (open loop). */
static uint64_t prod_when(const struct producer *p, uint64_t seq)
{
    return p->t0 + (uint64_t)((double)seq * p->ns_per_rec);
}

/* Picks the partition of the next record (and writes its key into key/len). Returns -1 when
 * no batch has room (generation stalls until a request slot frees one). */
static int prod_pick(struct producer *p, uint32_t *keyno)
{
    const struct bench_cfg *cfg = p->t->cfg;
    int P = cfg->partitions, cap = p->t->max_recs;
    if (cfg->keys == 0) {
        for (int i = 0; i < P; i++) {
            int part = (p->sticky + i) % P;
            if (p->acc[part].n < cap) {
                p->sticky = part;
                return part;
            }
        }
        return -1;
    }
    uint32_t k = xorshift(&p->rng);
    if (cfg->keys > 0) k %= (uint32_t)cfg->keys;
    *keyno = k;
    char key[16];
    int klen = snprintf(key, sizeof(key), "key-%u", k);
    int part = (int)(fnv1a(key, (size_t)klen) % (uint32_t)P);
    return p->acc[part].n < cap ? part : -1;
}

static void prod_ready_push(struct producer *p, int part)
{
    int P = p->t->cfg->partitions;
    if (p->acc[part].in_ready) return;
    AL_ASSERT(p->rq_n < P);
    p->readyq[(p->rq_head + p->rq_n) % P] = part;
    p->rq_n++;
    p->acc[part].in_ready = true;
}

/* Adds records whose intended time has come (open loop) or enough to fill a request (flat
 * out) to their partitions' batches; stops when a batch it needs is full. */
static void prod_generate(struct producer *p, uint64_t now)
{
    struct bench_thread *t = p->t;
    int P = t->cfg->partitions, cap = t->max_recs;
    uint64_t limit = 1u << 20; /* bound per call */
    p->blocked = false;
    for (uint64_t g = 0; g < limit; g++) {
        uint64_t when;
        if (p->ns_per_rec > 0) {
            when = prod_when(p, p->seq);
            if (when > now || when >= t->end) return;
        } else {
            if (now >= t->end) return;
            /* Flat out: keep about one request's worth ready beyond what is in flight. */
            if (p->rq_n >= AL_MIN(P, BENCH_MAX_REQ_PARTS) * (t->cfg->max_inflight - p->inflight))
                return;
            when = now;
        }
        uint32_t keyno = 0;
        int part = prod_pick(p, &keyno);
        if (part < 0) {
            p->blocked = true;
            return;
        }
        struct acc *a = &p->acc[part];
        if (a->n == 0) {
            a->first = when;
            if (!a->in_open && !a->in_ready) {
                p->openq[(p->oq_head + p->oq_n) % P] = part;
                p->oq_n++;
                a->in_open = true;
            }
        }
        a->keys[a->n] = keyno;
        a->times[a->n++] = when;
        p->seq++;
        if (a->n >= cap) prod_ready_push(p, part);
    }
}

/* Moves batches whose linger has expired (or every non-empty one when draining or flat out)
 * from the open queue to the ready queue. */
static void prod_linger(struct producer *p, uint64_t now, bool all)
{
    int P = p->t->cfg->partitions;
    uint64_t linger = (uint64_t)(p->t->cfg->linger_ms * 1e6);
    for (int i = 0; p->oq_n > 0 && i < P; i++) {
        int part = p->openq[p->oq_head];
        struct acc *a = &p->acc[part];
        if (a->n > 0 && !a->in_ready && !all && a->first + linger > now) break;
        p->oq_head = (p->oq_head + 1) % P;
        p->oq_n--;
        a->in_open = false;
        if (a->n > 0) prod_ready_push(p, part);
    }
}

static void prod_resp(kclient *c, void *ctx, int err, int16_t api, int16_t ver, const void *r)
{
    struct req_slot *s = ctx;
    struct producer *p = s->p;
    struct bench_thread *t = p->t;
    uint64_t now = io_now_ns(t->io);
    const kafka_ProduceResponse *resp = r;
    int rs = t->cfg->record_size;
    uint64_t req_win = 0; /* records of this request in the measured window */
    for (int i = 0; i < s->nparts; i++) {
        int16_t ec = 0;
        if (err < 0) {
            ec = -1;
        } else if (resp) {
            ec = -1;
            for (int32_t a = 0; a < resp->Responses_count; a++)
                for (int32_t b = 0; b < resp->Responses[a].PartitionResponses_count; b++)
                    if (resp->Responses[a].PartitionResponses[b].Index == s->part[i])
                        ec = resp->Responses[a].PartitionResponses[b].ErrorCode;
        }
        if (ec) {
            atomic_add(&t->errors, (uint64_t)s->nrec[i]);
            continue;
        }
        const uint64_t *tm = s->times + (size_t)i * (size_t)t->max_recs;
        uint64_t inwin = 0;
        for (int k = 0; k < s->nrec[i]; k++) {
            if (tm[k] >= t->warm_end && tm[k] < t->end) {
                khist_add(&t->ack, now > tm[k] ? now - tm[k] : 0);
                khist_add(&t->send_delay, s->sent_ns > tm[k] ? s->sent_ns - tm[k] : 0);
                khist_add(&t->rtt, now > s->sent_ns ? now - s->sent_ns : 0);
                inwin++;
            }
        }
        req_win += inwin;
        atomic_add(&t->acked, (uint64_t)s->nrec[i]);
        atomic_add(&t->acked_window, inwin);
        atomic_add(&t->acked_bytes, (uint64_t)s->nrec[i] * (uint64_t)rs);
    }
    if (req_win > 0) khist_add(&t->rtt_req, now > s->sent_ns ? now - s->sent_ns : 0);
    s->used = false;
    p->inflight--;
    if (err < 0 && t->closing) return;
    if (err < 0 && !p->failed) {
        p->failed = true;
        fprintf(stderr, "bench: produce failed: %d\n", err);
    }
    if (!p->failed && kclient_ready(c)) prod_pump(p, now);
}

/* Builds and sends one Produce request from the ready queue. Returns 1 if sent, 0 if nothing
 * to send or no slot, < 0 on error. */
static int prod_send_one(struct producer *p, uint64_t now)
{
    struct bench_thread *t = p->t;
    const struct bench_cfg *cfg = t->cfg;
    int P = cfg->partitions;
    if (p->rq_n == 0 || p->inflight >= cfg->max_inflight) return 0;
    struct req_slot *s = NULL;
    for (int i = 0; i < cfg->max_inflight; i++)
        if (!p->slots[i].used) s = &p->slots[i];
    if (!s) return 0;
    static __thread kafka_ProduceRequest_PartitionProduceData pd[BENCH_MAX_REQ_PARTS];
    s->nparts = 0;
    size_t boff = 0;
    size_t per_batch = t->batchcap / BENCH_MAX_REQ_PARTS;
    while (p->rq_n > 0 && s->nparts < BENCH_MAX_REQ_PARTS) {
        int part = p->readyq[p->rq_head];
        p->rq_head = (p->rq_head + 1) % P;
        p->rq_n--;
        struct acc *a = &p->acc[part];
        a->in_ready = false;
        if (a->n == 0) continue;
        int rs = cfg->record_size;
        char (*keybuf)[12] = t->keybuf;
        /* CreateTime = now, as real clients stamp it: with 0 (1970) the broker's time-based
         * retention deletes every sealed segment of the bench's topics at once. */
        int64_t wall_ms = io_wall_ms(t->io);
        for (int k = 0; k < a->n; k++) {
            uint8_t *v = t->scratch + (size_t)k * (size_t)rs;
            size_t fo = (size_t)(xorshift(&p->rng) % (BENCH_POOL - (uint32_t)rs));
            memcpy(v, t->pool + fo, (size_t)rs);
            memcpy(v, "ALB1", 4);
            al_put_be32(v + 4, t->run_id);
            al_put_be64(v + 8, a->times[k]);
            t->recs[k] = (kclient_record){NULL, -1, v, rs, 0};
            if (cfg->keys != 0) {
                int kl = snprintf(keybuf[k], sizeof(keybuf[k]), "key-%u", a->keys[k]);
                t->recs[k].key = keybuf[k];
                t->recs[k].key_len = AL_MIN(kl, (int)sizeof(keybuf[k]) - 1);
            }
            t->recs[k].timestamp = wall_ms;
        }
        int64_t sz = kclient_batch_build(t->batchbuf + boff, per_batch, t->recs, a->n,
                                         cfg->compression);
        if (sz < 0) return (int)sz;
        int i = s->nparts++;
        s->part[i] = part;
        s->nrec[i] = a->n;
        memcpy(s->times + (size_t)i * (size_t)t->max_recs, a->times,
               (size_t)a->n * sizeof(uint64_t));
        kafka_ProduceRequest_PartitionProduceData_init(&pd[i]);
        pd[i].Index = part;
        pd[i].Records = (kafka_bytes){t->batchbuf + boff, (int32_t)sz};
        boff += per_batch;
        a->n = 0; /* if still in the open queue, it is skipped there while empty */
    }
    if (s->nparts == 0) return 0;
    kafka_ProduceRequest req;
    kafka_ProduceRequest_init(&req);
    kafka_ProduceRequest_TopicProduceData td;
    kafka_ProduceRequest_TopicProduceData_init(&td);
    td.Name = kafka_str_from(cfg->topic);
    td.PartitionData_count = s->nparts;
    td.PartitionData = pd;
    req.Acks = (int16_t)cfg->acks;
    req.TimeoutMs = 30000;
    req.TopicData_count = 1;
    req.TopicData = &td;
    s->used = true;
    s->p = p;
    p->inflight++;
    atomic_add(&t->sent, 1);
    AL_UNUSED(now);
    s->sent_ns = io_now_ns(t->io);
    int rc = kclient_send(p->c, KAFKA_API_PRODUCE, &req, prod_resp, s);
    if (rc < 0) {
        s->used = false;
        p->inflight--;
        return rc;
    }
    return 1;
}

static void prod_pump(struct producer *p, uint64_t now)
{
    if (!p->up || p->failed) return;
    struct bench_thread *t = p->t;
    bool draining = now >= t->end;
    for (int round = 0; round < 1000; round++) {
        prod_generate(p, now);
        prod_linger(p, now, draining || p->ns_per_rec == 0);
        int rc = prod_send_one(p, now);
        if (rc < 0) {
            p->failed = true;
            fprintf(stderr, "bench: produce send failed: %d\n", rc);
            return;
        }
        if (rc == 0) return;
    }
}

/*
 * Next time the producer needs a tick: a batch that fills or a linger that expires. Records
 * carry their intended times from the schedule (prod_when), whenever they are generated, so
 * the generator need not wake for every record: with sticky partitioning (no keys) the records
 * due before the current batch fills are added in one go when the record that fills it is due
 * (or the batch's linger expires first), which is when a record-by-record generator would have
 * sent that batch too. Before, the loop woke once per record (~100,000 io_uring waits/s at
 * 100,000 records/s) and, while a full batch waited for a request slot, spun on a deadline in
 * the past, burning a core that the broker on the same machine needed. With keys the next
 * record's partition is random, so it wakes per record. While blocked (batch full, no slot)
 * only a response can make progress, and it runs prod_pump itself; past the end of the
 * schedule (draining) there is nothing to generate either (that too spun before).
 */
static uint64_t prod_next_deadline(const struct producer *p)
{
    const struct bench_thread *t = p->t;
    uint64_t d = UINT64_MAX;
    uint64_t linger = (uint64_t)(t->cfg->linger_ms * 1e6);
    /* Nothing more to generate once the schedule has passed the end (draining). */
    if (p->ns_per_rec > 0 && !p->blocked && prod_when(p, p->seq) < t->end) {
        uint64_t ahead = 0;
        const struct acc *a = &p->acc[p->sticky];
        if (t->cfg->keys == 0 && a->n < t->max_recs) ahead = (uint64_t)(t->max_recs - a->n - 1);
        d = prod_when(p, p->seq + ahead);
        /* The next record opens a new batch: its linger starts with it. */
        if (ahead > 0 && a->n == 0) d = AL_MIN(d, prod_when(p, p->seq) + linger);
    }
    if (p->oq_n > 0) {
        const struct acc *a = &p->acc[p->openq[p->oq_head]];
        uint64_t l = a->first + linger;
        if (l < d) d = l;
    }
    return d;
}

/* ---- consumer ---- */

static void cons_fetch(struct consumer *cs);

static void cons_resp(kclient *c, void *ctx, int err, int16_t api, int16_t ver, const void *r)
{
    struct consumer *cs = ctx;
    struct bench_thread *t = cs->t;
    cs->fetching = false;
    if (err < 0 && t->closing) return;
    if (err < 0) {
        if (!cs->failed) fprintf(stderr, "bench: fetch failed: %d\n", err);
        cs->failed = true;
        return;
    }
    uint64_t now = io_now_ns(t->io);
    const kafka_FetchResponse *resp = r;
    uint64_t got = 0, inwin = 0;
    for (int32_t a = 0; a < resp->Responses_count; a++) {
        const kafka_FetchResponse_FetchableTopicResponse *tr = &resp->Responses[a];
        for (int32_t b = 0; b < tr->Partitions_count; b++) {
            const kafka_FetchResponse_PartitionData *pd = &tr->Partitions[b];
            int idx = -1;
            for (int i = 0; i < cs->nparts; i++)
                if (cs->parts[i] == pd->PartitionIndex) idx = i;
            if (idx < 0 || pd->ErrorCode || pd->Records.len <= 0) {
                if (idx >= 0 && pd->ErrorCode) atomic_add(&t->errors, 1);
                continue;
            }
            kclient_fetch_iter it;
            kclient_fetch_iter_init(&it, pd->Records.ptr, (size_t)pd->Records.len);
            kclient_fetched f;
            int rc;
            while ((rc = kclient_fetch_iter_next(&it, &f)) == 1) {
                if (f.offset < cs->offsets[idx]) continue;
                cs->offsets[idx] = f.offset + 1;
                if (f.value_len < BENCH_HDR || memcmp(f.value, "ALB1", 4) ||
                    al_be32(f.value + 4) != t->run_id)
                    continue;
                uint64_t sent = al_be64(f.value + 8);
                got++;
                if (sent >= t->warm_end && sent < t->end) {
                    khist_add(&t->e2e, now > sent ? now - sent : 0);
                    inwin++;
                }
            }
            kclient_fetch_iter_free(&it);
            if (rc < 0) atomic_add(&t->errors, 1);
        }
    }
    atomic_add(&t->consumed, got);
    atomic_add(&t->consumed_window, inwin);
    AL_UNUSED(c);
    cons_fetch(cs);
}

static void cons_fetch(struct consumer *cs)
{
    struct bench_thread *t = cs->t;
    if (!cs->up || cs->failed || cs->fetching || t->stop_produce == 2) return;
    kafka_FetchRequest_FetchPartition *fp = cs->fp;
    for (int i = 0; i < cs->nparts; i++) {
        kafka_FetchRequest_FetchPartition_init(&fp[i]);
        fp[i].Partition = cs->parts[i];
        fp[i].FetchOffset = cs->offsets[i];
        fp[i].PartitionMaxBytes = 8 << 20;
    }
    kafka_FetchRequest_FetchTopic ft;
    kafka_FetchRequest_FetchTopic_init(&ft);
    ft.Topic = kafka_str_from(t->cfg->topic);
    ft.Partitions_count = cs->nparts;
    ft.Partitions = fp;
    kafka_FetchRequest req;
    kafka_FetchRequest_init(&req);
    req.ReplicaId = -1;
    req.MaxWaitMs = 100;
    req.MinBytes = 1;
    req.MaxBytes = 32 << 20;
    req.Topics_count = 1;
    req.Topics = &ft;
    int rc = kclient_send_v(cs->c, KAFKA_API_FETCH, t->fetch_ver, &req, cons_resp, cs);
    if (rc < 0) {
        fprintf(stderr, "bench: fetch send failed: %d\n", rc);
        cs->failed = true;
        return;
    }
    cs->fetching = true;
}

/* ---- threads ---- */

static void conn_up(kclient *c, void *ctx, int err)
{
    bool *up = ctx;
    if (err < 0) fprintf(stderr, "bench: connect failed: %d\n", err);
    else *up = true;
}

static bool thread_producing(struct bench_thread *t)
{
    for (int i = 0; i < t->nprods; i++) {
        struct producer *p = &t->prods[i];
        if (!p->failed && (p->inflight > 0 || p->rq_n > 0 || p->oq_n > 0)) return true;
    }
    return false;
}

static void *thread_main(void *arg)
{
    struct bench_thread *t = arg;
    const struct bench_cfg *cfg = t->cfg;
    /* The io belongs to this thread (io_uring single issuer): created and destroyed here. */
    if (io_uring_create(&t->io, NULL) < 0) {
        fprintf(stderr, "bench: io_uring set-up failed\n");
        t->rc = -1;
        __atomic_store_n(&t->stop_produce, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    /* Connect everything. */
    for (int i = 0; i < t->nprods; i++) {
        if (kclient_create(&t->prods[i].c, t->io, &(struct kclient_opts){
                               .max_inflight = (uint32_t)cfg->max_inflight + 4}) < 0)
            goto fail;
        kclient_connect(t->prods[i].c, cfg->host, cfg->port, conn_up, &t->prods[i].up);
    }
    for (int i = 0; i < t->ncons; i++) {
        if (kclient_create(&t->cons[i].c, t->io, NULL) < 0) goto fail;
        kclient_connect(t->cons[i].c, cfg->host, cfg->port, conn_up, &t->cons[i].up);
    }
    uint64_t cdl = io_now_ns(t->io) + 10000000000ull;
    for (;;) {
        bool all = true;
        for (int i = 0; i < t->nprods; i++) all &= t->prods[i].up;
        for (int i = 0; i < t->ncons; i++) all &= t->cons[i].up;
        if (all) break;
        if (io_now_ns(t->io) > cdl) goto fail;
        io_poll(t->io, io_now_ns(t->io) + 50000000ull);
    }
    if (t->ncons > 0) {
        int16_t v = kclient_api_version(t->cons[0].c, KAFKA_API_FETCH);
        t->fetch_ver = v > 12 ? 12 : v; /* topic names in Fetch up to v12 */
    }
    /* Wait for the common start time. */
    while (io_now_ns(t->io) < t->start) io_poll(t->io, t->start);
    for (int i = 0; i < t->ncons; i++) cons_fetch(&t->cons[i]);
    for (int i = 0; i < t->nprods; i++) t->prods[i].t0 = t->start;
    /* Main loop: bounded by the hard end. */
    for (;;) {
        uint64_t now = io_now_ns(t->io);
        if (now >= t->hard_end) break;
        for (int i = 0; i < t->nprods; i++) prod_pump(&t->prods[i], now);
        bool producing = now < t->end || thread_producing(t);
        if (!producing && t->stop_produce == 0) t->stop_produce = 1;
        if (__atomic_load_n(&t->stop_produce, __ATOMIC_RELAXED) == 2) break;
        uint64_t d = now + 50000000ull;
        for (int i = 0; i < t->nprods; i++) {
            uint64_t pd = prod_next_deadline(&t->prods[i]);
            if (pd < d) d = pd;
        }
        if (now < t->end && t->end < d) d = t->end;
        if (now < t->warm_end && t->warm_end < d) d = t->warm_end;
        thread_note_window(t, now);
        t->polls++;
        io_poll(t->io, d > now ? d : now);
        uint64_t after = io_now_ns(t->io);
        if (d > now && after >= d && d >= t->warm_end && d < t->end) khist_add(&t->lag, after - d);
    }
    t->rc = 0;
    goto out;
fail:
    t->rc = -1;
out:
    t->closing = true;
    for (int i = 0; i < t->nprods; i++)
        if (t->prods[i].c) kclient_close(t->prods[i].c);
    for (int i = 0; i < t->ncons; i++)
        if (t->cons[i].c) kclient_close(t->cons[i].c);
    for (int g = 0; g < 200; g++) {
        bool busy = false;
        for (int i = 0; i < t->nprods; i++) busy |= t->prods[i].c && kclient_busy(t->prods[i].c);
        for (int i = 0; i < t->ncons; i++) busy |= t->cons[i].c && kclient_busy(t->cons[i].c);
        if (!busy) break;
        io_poll(t->io, io_now_ns(t->io) + 10000000ull);
    }
    for (int i = 0; i < t->nprods; i++)
        if (t->prods[i].c && !kclient_busy(t->prods[i].c)) {
            kclient_free(t->prods[i].c);
            t->prods[i].c = NULL;
        }
    for (int i = 0; i < t->ncons; i++)
        if (t->cons[i].c && !kclient_busy(t->cons[i].c)) {
            kclient_free(t->cons[i].c);
            t->cons[i].c = NULL;
        }
    /* A client still busy here is leaked with its io rather than freed under the kernel. */
    bool leak = false;
    for (int i = 0; i < t->nprods; i++) leak |= t->prods[i].c != NULL;
    for (int i = 0; i < t->ncons; i++) leak |= t->cons[i].c != NULL;
    if (!leak) io_destroy(t->io);
    t->io = NULL;
    if (t->rc < 0) __atomic_store_n(&t->stop_produce, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* ---- set-up: topic, offsets ---- */

static int bench_setup_topic(kclient_sync *s, const struct bench_cfg *cfg)
{
    kafka_CreateTopicsRequest req;
    kafka_CreateTopicsRequest_init(&req);
    kafka_CreateTopicsRequest_CreatableTopic tp;
    kafka_CreateTopicsRequest_CreatableTopic_init(&tp);
    tp.Name = kafka_str_from(cfg->topic);
    tp.NumPartitions = cfg->partitions;
    tp.ReplicationFactor = -1;
    req.Topics_count = 1;
    req.Topics = &tp;
    req.timeoutMs = 60000;
    const void *rp;
    int rc = kclient_sync_call(s, KAFKA_API_CREATE_TOPICS, &req, &rp, NULL);
    if (rc < 0) return rc;
    const kafka_CreateTopicsResponse *r = rp;
    int16_t ec = r->Topics_count > 0 ? r->Topics[0].ErrorCode : -1;
    if (ec != 0 && ec != 36 /* TOPIC_ALREADY_EXISTS */) {
        fprintf(stderr, "bench: CreateTopics %s: error %d\n", cfg->topic, ec);
        return AL_EFAILED;
    }
    /* Wait until the metadata shows at least `partitions` partitions with leaders. */
    for (int tries = 0; tries < 200; tries++) {
        kafka_MetadataRequest mr;
        kafka_MetadataRequest_init(&mr);
        kafka_MetadataRequest_MetadataRequestTopic mt;
        kafka_MetadataRequest_MetadataRequestTopic_init(&mt);
        mt.Name = kafka_str_from(cfg->topic);
        mr.Topics_count = 1;
        mr.Topics = &mt;
        mr.AllowAutoTopicCreation = false;
        rc = kclient_sync_call(s, KAFKA_API_METADATA, &mr, &rp, NULL);
        if (rc < 0) return rc;
        const kafka_MetadataResponse *m = rp;
        int ok = 0, n = 0;
        for (int32_t i = 0; i < m->Topics_count; i++) {
            n = m->Topics[i].Partitions_count;
            for (int32_t j = 0; j < n; j++)
                ok += m->Topics[i].Partitions[j].ErrorCode == 0 &&
                      m->Topics[i].Partitions[j].LeaderId >= 0;
        }
        if (n < cfg->partitions && ok == n && n > 0) {
            fprintf(stderr, "bench: topic %s has %d partitions, fewer than --partitions %d\n",
                    cfg->topic, n, cfg->partitions);
            return AL_EINVAL;
        }
        if (ok >= cfg->partitions) return 0;
        usleep(50000);
    }
    return AL_ETIMEDOUT;
}

/* Latest offsets of partitions [first, first + n) into out[first..]. */
static int bench_end_offsets_chunk(kclient_sync *s, const struct bench_cfg *cfg, int first,
                                   int n, int64_t *out)
{
    kafka_ListOffsetsRequest_ListOffsetsPartition *lp = calloc((size_t)n, sizeof(*lp));
    if (!lp) return -ENOMEM;
    for (int i = 0; i < n; i++) {
        kafka_ListOffsetsRequest_ListOffsetsPartition_init(&lp[i]);
        lp[i].PartitionIndex = first + i;
        lp[i].Timestamp = -1;
        out[first + i] = -1;
    }
    kafka_ListOffsetsRequest_ListOffsetsTopic lt;
    kafka_ListOffsetsRequest_ListOffsetsTopic_init(&lt);
    lt.Name = kafka_str_from(cfg->topic);
    lt.Partitions_count = n;
    lt.Partitions = lp;
    kafka_ListOffsetsRequest req;
    kafka_ListOffsetsRequest_init(&req);
    req.ReplicaId = -1;
    req.Topics_count = 1;
    req.Topics = &lt;
    const void *rp;
    int rc = kclient_sync_call(s, KAFKA_API_LIST_OFFSETS, &req, &rp, NULL);
    free(lp);
    if (rc < 0) return rc;
    const kafka_ListOffsetsResponse *r = rp;
    for (int32_t a = 0; a < r->Topics_count; a++)
        for (int32_t b = 0; b < r->Topics[a].Partitions_count; b++) {
            const kafka_ListOffsetsResponse_ListOffsetsPartitionResponse *pr =
                &r->Topics[a].Partitions[b];
            if (pr->PartitionIndex >= first && pr->PartitionIndex < first + n &&
                pr->ErrorCode == 0)
                out[pr->PartitionIndex] = pr->Offset;
        }
    for (int i = first; i < first + n; i++)
        if (out[i] < 0) return AL_EFAILED;
    return 0;
}

/* Latest offsets of every partition (consumers start there), in one ListOffsets request for up
 * to BENCH_LIST_OFFSETS_CHUNK partitions (10,000 in one request works since the broker's
 * request arena grew; measured in BENCHMARKS.md). */
static int bench_end_offsets(kclient_sync *s, const struct bench_cfg *cfg, int64_t *out)
{
    for (int first = 0; first < cfg->partitions; first += BENCH_LIST_OFFSETS_CHUNK) {
        int n = AL_MIN(BENCH_LIST_OFFSETS_CHUNK, cfg->partitions - first);
        int rc = bench_end_offsets_chunk(s, cfg, first, n, out);
        if (rc < 0) return rc;
    }
    return 0;
}

/* ---- flags ---- */

static void bench_usage(FILE *f)
{
    fprintf(f,
            "usage: ailurus bench [options]\n"
            "  --brokers HOST:PORT     bootstrap broker (numeric address) [127.0.0.1:9092]\n"
            "  --topic NAME            created if missing [ailurus-bench]\n"
            "  --partitions P          [1]\n"
            "  --producers N           producer connections (alias --connections) [1]\n"
            "  --consumers N           consumer connections (0: no end-to-end figures) [1]\n"
            "  --record-size BYTES     value size, >= 16 [1024]\n"
            "  --keys none|random|N    key distribution [none: sticky partitioning]\n"
            "  --compression C         none|gzip|snappy|lz4|zstd [none]\n"
            "  --acks all|-1|1|0       [all]\n"
            "  --rate R                records/s in total, open loop; 0 = flat out [0]\n"
            "  --duration S            measured seconds [10]\n"
            "  --warmup S              seconds before measuring [1]\n"
            "  --batch-bytes B         batch size per partition [16384]\n"
            "  --linger MS             wait for a batch to fill [1 with --rate, else 0]\n"
            "  --max-inflight N        produce requests in flight per connection [5]\n"
            "  --smp S                 client threads [1]\n"
            "  --json FILE             write the summary as JSON\n"
            "  --quiet                 no progress lines\n");
}

static int bench_parse(int argc, char **argv, struct bench_cfg *cfg)
{
    *cfg = (struct bench_cfg){
        .partitions = 1, .producers = 1, .consumers = 1, .record_size = 1024, .keys = 0,
        .compression = 0, .acks = -1, .rate = 0, .duration = 10, .warmup = 1,
        .batch_bytes = 16384, .linger_ms = -1, .max_inflight = 5, .smp = 1,
    };
    snprintf(cfg->brokers, sizeof(cfg->brokers), "127.0.0.1:9092");
    snprintf(cfg->topic, sizeof(cfg->topic), "ailurus-bench");
    static const struct option opts[] = {
        {"brokers", 1, 0, 'b'},      {"topic", 1, 0, 't'},       {"partitions", 1, 0, 'p'},
        {"producers", 1, 0, 'n'},    {"connections", 1, 0, 'n'}, {"consumers", 1, 0, 'c'},
        {"record-size", 1, 0, 's'},  {"keys", 1, 0, 'k'},        {"compression", 1, 0, 'z'},
        {"acks", 1, 0, 'a'},         {"rate", 1, 0, 'r'},        {"duration", 1, 0, 'd'},
        {"warmup", 1, 0, 'w'},       {"batch-bytes", 1, 0, 'B'}, {"linger", 1, 0, 'l'},
        {"max-inflight", 1, 0, 'i'}, {"smp", 1, 0, 'S'},         {"json", 1, 0, 'j'},
        {"quiet", 0, 0, 'q'},        {"help", 0, 0, 'h'},        {0, 0, 0, 0},
    };
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'b': snprintf(cfg->brokers, sizeof(cfg->brokers), "%s", optarg); break;
        case 't': snprintf(cfg->topic, sizeof(cfg->topic), "%s", optarg); break;
        case 'p': cfg->partitions = atoi(optarg); break;
        case 'n': cfg->producers = atoi(optarg); break;
        case 'c': cfg->consumers = atoi(optarg); break;
        case 's': cfg->record_size = atoi(optarg); break;
        case 'k':
            if (!strcmp(optarg, "none")) cfg->keys = 0;
            else if (!strcmp(optarg, "random")) cfg->keys = -1;
            else if ((cfg->keys = atoi(optarg)) <= 0) return CLI_USAGE;
            break;
        case 'z':
            if ((cfg->compression = kclient_compression_parse(optarg)) < 0) return CLI_USAGE;
            break;
        case 'a': cfg->acks = !strcmp(optarg, "all") ? -1 : atoi(optarg); break;
        case 'r': cfg->rate = atof(optarg); break;
        case 'd': cfg->duration = atof(optarg); break;
        case 'w': cfg->warmup = atof(optarg); break;
        case 'B': cfg->batch_bytes = atoi(optarg); break;
        case 'l': cfg->linger_ms = atof(optarg); break;
        case 'i': cfg->max_inflight = atoi(optarg); break;
        case 'S': cfg->smp = atoi(optarg); break;
        case 'j': cfg->json = optarg; break;
        case 'q': cfg->quiet = true; break;
        case 'h': bench_usage(stdout); return -1;
        default: bench_usage(stderr); return CLI_USAGE;
        }
    }
    if (optind < argc || cfg->partitions < 1 || cfg->partitions > 100000 ||
        cfg->producers < 0 || cfg->producers > 1024 || cfg->consumers < 0 ||
        cfg->consumers > 1024 || cfg->record_size < BENCH_HDR ||
        cfg->record_size > (1 << 20) || (cfg->acks != -1 && cfg->acks != 0 && cfg->acks != 1) ||
        cfg->rate < 0 || cfg->duration <= 0 || cfg->duration > 86400 || cfg->warmup < 0 ||
        cfg->batch_bytes < 1 || cfg->max_inflight < 1 || cfg->max_inflight > 1000 ||
        cfg->smp < 1 || cfg->smp > 64 || cfg->producers + cfg->consumers == 0) {
        bench_usage(stderr);
        return CLI_USAGE;
    }
    if (cfg->linger_ms < 0) cfg->linger_ms = cfg->rate > 0 ? 1 : 0;
    if (kclient_parse_addr(cfg->brokers, cfg->host, sizeof(cfg->host), &cfg->port) < 0) {
        fprintf(stderr, "bench: --brokers wants a numeric HOST:PORT\n");
        return CLI_USAGE;
    }
    return 0;
}

/* ---- reporting ---- */

static double ms(uint64_t ns) { return (double)ns / 1e6; }

static void write_lat_json(FILE *f, const char *name, const khist *h)
{
    fprintf(f,
            "  \"%s\": {\"count\": %llu, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, "
            "\"p999\": %.3f, \"max\": %.3f}",
            name, (unsigned long long)h->count, ms(khist_quantile(h, 0.5)),
            ms(khist_quantile(h, 0.9)), ms(khist_quantile(h, 0.99)), ms(khist_quantile(h, 0.999)),
            ms(h->max));
}

static void print_lat(const char *name, const khist *h)
{
    printf("%-22s p50 %8.3f  p90 %8.3f  p99 %8.3f  p99.9 %8.3f  max %8.3f ms  (n=%llu)\n", name,
           ms(khist_quantile(h, 0.5)), ms(khist_quantile(h, 0.9)), ms(khist_quantile(h, 0.99)),
           ms(khist_quantile(h, 0.999)), ms(h->max), (unsigned long long)h->count);
}

/* CPU time (user + system) of this process, all threads, in seconds; 0 if unavailable. */
static double cpu_seconds_self(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0.0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int cmd_bench(int argc, char **argv)
{
    struct bench_cfg cfg;
    int rc = bench_parse(argc, argv, &cfg);
    if (rc) return rc < 0 ? CLI_OK : rc;
    int P = cfg.partitions, exit_code = CLI_FAILED;
    struct bench_thread *th = calloc((size_t)cfg.smp, sizeof(*th));
    int64_t *offsets = calloc((size_t)P, sizeof(int64_t));
    uint8_t *pool = malloc(BENCH_POOL);
    khist *ack = calloc(1, sizeof(*ack)), *e2e = calloc(1, sizeof(*e2e));
    khist *sdel = calloc(1, sizeof(*sdel)), *rtt = calloc(1, sizeof(*rtt));
    khist *clag = calloc(1, sizeof(*clag)), *rreq = calloc(1, sizeof(*rreq));
    if (!th || !offsets || !pool || !ack || !e2e || !sdel || !rtt || !clag || !rreq) {
        fprintf(stderr, "bench: out of memory\n");
        goto out;
    }
    kclient_sync *s = NULL;
    rc = kclient_sync_open(&s, cfg.brokers, 120000); /* creating 10k partitions is slow */
    if (rc < 0) {
        fprintf(stderr, "bench: cannot reach %s: %d\n", cfg.brokers, rc);
        exit_code = CLI_UNREACHABLE;
        goto out;
    }
    rc = bench_setup_topic(s, &cfg);
    if (rc == 0) rc = bench_end_offsets(s, &cfg, offsets);
    kclient_sync_close(s);
    if (rc < 0) {
        fprintf(stderr, "bench: topic set-up failed: %d\n", rc);
        goto out;
    }
    uint32_t seed = (uint32_t)time(NULL) ^ (uint32_t)getpid() * 2654435761u;
    for (size_t i = 0; i < BENCH_POOL; i++) pool[i] = (uint8_t)(xorshift(&seed) >> 11);
    uint32_t run_id = xorshift(&seed);
    int max_recs = AL_MAX(1, AL_MIN(cfg.batch_bytes / cfg.record_size, 1 << 16));
    if (cfg.batch_bytes % cfg.record_size && cfg.batch_bytes > cfg.record_size) max_recs++;

    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    uint64_t start = now + 500000000ull; /* time to connect */
    uint64_t warm_end = start + (uint64_t)(cfg.warmup * 1e9);
    uint64_t end = warm_end + (uint64_t)(cfg.duration * 1e9);
    uint64_t hard_end = end + 30000000000ull;

    /* Distribute connections and partitions over threads. */
    for (int i = 0; i < cfg.smp; i++) {
        struct bench_thread *t = &th[i];
        t->cfg = &cfg;
        t->id = i;
        t->run_id = run_id;
        t->max_recs = max_recs;
        t->start = start;
        t->warm_end = warm_end;
        t->end = end;
        t->hard_end = hard_end;
        t->pool = pool;
        t->start_offsets = offsets;
        t->nprods = cfg.producers / cfg.smp + (i < cfg.producers % cfg.smp);
        t->ncons = cfg.consumers / cfg.smp + (i < cfg.consumers % cfg.smp);
        t->prods = calloc((size_t)t->nprods + 1, sizeof(*t->prods));
        t->cons = calloc((size_t)t->ncons + 1, sizeof(*t->cons));
        size_t per_batch = (size_t)max_recs * ((size_t)cfg.record_size + 64) + 4096;
        per_batch = per_batch + per_batch / 4;
        t->batchcap = per_batch * BENCH_MAX_REQ_PARTS;
        t->batchbuf = malloc(t->batchcap);
        t->scratch = malloc((size_t)max_recs * (size_t)cfg.record_size);
        t->recs = calloc((size_t)max_recs, sizeof(kclient_record));
        t->keybuf = malloc((size_t)max_recs * sizeof(*t->keybuf));
        if (!t->prods || !t->cons || !t->batchbuf || !t->scratch || !t->recs || !t->keybuf) {
            fprintf(stderr, "bench: thread set-up failed\n");
            goto out;
        }
        for (int k = 0; k < t->nprods; k++) {
            struct producer *p = &t->prods[k];
            p->t = t;
            p->rng = seed ^ (uint32_t)(i * 7919 + k * 104729 + 1);
            p->sticky = (int)(xorshift(&p->rng) % (uint32_t)P);
            p->ns_per_rec = cfg.rate > 0 ? 1e9 * cfg.producers / cfg.rate : 0;
            p->acc = calloc((size_t)P, sizeof(*p->acc));
            p->readyq = calloc((size_t)P, sizeof(int32_t));
            p->openq = calloc((size_t)P, sizeof(int32_t));
            p->slots = calloc((size_t)cfg.max_inflight, sizeof(*p->slots));
            if (!p->acc || !p->readyq || !p->openq || !p->slots) goto out;
            for (int a = 0; a < P; a++)
                if (!(p->acc[a].times = malloc((size_t)max_recs * sizeof(uint64_t))) ||
                    !(p->acc[a].keys = malloc((size_t)max_recs * sizeof(uint32_t))))
                    goto out;
            for (int a = 0; a < cfg.max_inflight; a++)
                if (!(p->slots[a].times = malloc((size_t)BENCH_MAX_REQ_PARTS *
                                                 (size_t)max_recs * sizeof(uint64_t))))
                    goto out;
        }
    }
    /* Consumers: partitions round-robin over all consumer connections. */
    {
        int ci = 0;
        struct consumer **all = calloc((size_t)cfg.consumers + 1, sizeof(*all));
        if (!all) goto out;
        for (int i = 0; i < cfg.smp; i++)
            for (int k = 0; k < th[i].ncons; k++) {
                th[i].cons[k].t = &th[i];
                all[ci++] = &th[i].cons[k];
            }
        for (int k = 0; k < ci; k++) {
            all[k]->parts = calloc((size_t)P / (size_t)ci + 1, sizeof(int32_t));
            all[k]->offsets = calloc((size_t)P / (size_t)ci + 1, sizeof(int64_t));
            all[k]->fp = calloc((size_t)P / (size_t)ci + 1,
                                sizeof(kafka_FetchRequest_FetchPartition));
            if (!all[k]->parts || !all[k]->offsets || !all[k]->fp) {
                free(all);
                goto out;
            }
        }
        for (int part = 0; ci > 0 && part < P; part++) {
            struct consumer *c = all[part % ci];
            c->parts[c->nparts] = part;
            c->offsets[c->nparts] = offsets[part];
            c->nparts++;
        }
        free(all);
    }
    double cpu0 = cpu_seconds_self();
    for (int i = 0; i < cfg.smp; i++)
        if (pthread_create(&th[i].tid, NULL, thread_main, &th[i]) != 0) {
            fprintf(stderr, "bench: pthread_create failed\n");
            for (int k = 0; k < i; k++) __atomic_store_n(&th[k].stop_produce, 2, 0);
            for (int k = 0; k < i; k++) pthread_join(th[k].tid, NULL);
            goto out;
        }
    if (!cfg.quiet)
        printf("bench: %s topic=%s partitions=%d producers=%d consumers=%d record=%dB acks=%d "
               "rate=%s%.0f compression=%d smp=%d warmup=%.1fs duration=%.1fs\n",
               cfg.brokers, cfg.topic, P, cfg.producers, cfg.consumers, cfg.record_size,
               cfg.acks, cfg.rate > 0 ? "" : "max/", cfg.rate, cfg.compression, cfg.smp,
               cfg.warmup, cfg.duration);
    /* Progress: once a second until every producer is done and consumers caught up. */
    uint64_t last_acked = 0, last_cons = 0, consumers_goal_since = 0;
    for (int sec = 0; sec < 100000; sec++) {
        usleep(sec == 0 ? 1000000 - 0 : 1000000);
        uint64_t acked = 0, cons = 0, errs = 0;
        bool producing = false, dead = false;
        for (int i = 0; i < cfg.smp; i++) {
            acked += atomic_get(&th[i].acked);
            cons += atomic_get(&th[i].consumed);
            errs += atomic_get(&th[i].errors);
            producing |= __atomic_load_n(&th[i].stop_produce, __ATOMIC_RELAXED) == 0;
            dead |= th[i].rc < 0;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        if (!cfg.quiet) {
            double ack99 = 0, e99 = 0;
            if (cfg.smp == 1) { /* racy but harmless reads of one thread's histograms */
                ack99 = ms(khist_quantile(&th[0].ack, 0.99));
                e99 = ms(khist_quantile(&th[0].e2e, 0.99));
            }
            printf("%6.1fs %s produced %8.0f rec/s %7.2f MB/s  consumed %8.0f rec/s  "
                   "ack p99 %.2f ms  e2e p99 %.2f ms  errors %llu\n",
                   now > start ? (double)(now - start) / 1e9 : 0.0,
                   now < warm_end ? "warmup" : now < end ? "run   " : "drain ",
                   (double)(acked - last_acked),
                   (double)(acked - last_acked) * cfg.record_size / 1e6,
                   (double)(cons - last_cons), ack99, e99, (unsigned long long)errs);
            fflush(stdout);
        }
        last_acked = acked;
        last_cons = cons;
        if (dead || now >= hard_end) break;
        if (!producing) {
            /* Consumers: wait until they have every acked record (acks=0: a few seconds). */
            if (cfg.consumers == 0 || cons >= acked) break;
            if (!consumers_goal_since) consumers_goal_since = now;
            if (now - consumers_goal_since > (cfg.acks == 0 ? 3 : 15) * 1000000000ull) break;
        }
    }
    for (int i = 0; i < cfg.smp; i++) __atomic_store_n(&th[i].stop_produce, 2, __ATOMIC_RELAXED);
    for (int i = 0; i < cfg.smp; i++) pthread_join(th[i].tid, NULL); /* polls <= 50 ms */
    /* The generator's own CPU (all its threads, connect to drain): on a machine it shares with
     * the broker, what it burns is not available to the broker. */
    double client_cpu = cpu_seconds_self() - cpu0;
    uint64_t acked = 0, acked_win = 0, cons = 0, cons_win = 0, errs = 0, sent = 0, polls = 0;
    double rd_ms_per_s = 0; /* summed over the threads that saw the whole window */
    int rd_threads = 0;
    bool failed = false;
    for (int i = 0; i < cfg.smp; i++) {
        khist_merge(ack, &th[i].ack);
        khist_merge(e2e, &th[i].e2e);
        khist_merge(sdel, &th[i].send_delay);
        khist_merge(rtt, &th[i].rtt);
        khist_merge(clag, &th[i].lag);
        khist_merge(rreq, &th[i].rtt_req);
        if (th[i].run_delay_wall_ns) {
            rd_ms_per_s += (double)th[i].run_delay_ns / 1e6 /
                           ((double)th[i].run_delay_wall_ns / 1e9);
            rd_threads++;
        }
        acked += th[i].acked;
        acked_win += th[i].acked_window;
        cons += th[i].consumed;
        cons_win += th[i].consumed_window;
        errs += th[i].errors;
        sent += th[i].sent;
        polls += th[i].polls;
        failed |= th[i].rc < 0;
        for (int k = 0; k < th[i].nprods; k++) failed |= th[i].prods[k].failed;
        for (int k = 0; k < th[i].ncons; k++) failed |= th[i].cons[k].failed;
    }
    double rps = (double)acked_win / cfg.duration;
    double mbps = rps * cfg.record_size / 1e6;
    double crps = (double)cons_win / cfg.duration;
    printf("\n== ailurus bench summary ==\n");
    printf("produced (acked)      %llu records (%llu in the measured window), %llu requests\n",
           (unsigned long long)acked, (unsigned long long)acked_win, (unsigned long long)sent);
    printf("consumed              %llu records (%llu in the measured window)\n",
           (unsigned long long)cons, (unsigned long long)cons_win);
    printf("throughput            %.0f records/s  %.2f MB/s  (consume %.0f records/s)\n", rps,
           mbps, crps);
    printf("errors                %llu\n", (unsigned long long)errs);
    print_lat(cfg.acks == 0 ? "produce send latency" : "produce ack latency", ack);
    print_lat("end-to-end latency", e2e);
    print_lat("  of which send delay", sdel);
    print_lat("  of which round trip", rtt);
    print_lat("round trip per request", rreq);
    double run_s = cfg.warmup + cfg.duration;
    double cpu_us_rec = acked + cons ? client_cpu * 1e6 / (double)(acked + cons) : 0.0;
    printf("client                cpu %.2f s (%.2f us per record produced or consumed), "
           "%.0f wake-ups/s\n", client_cpu, cpu_us_rec, (double)polls / run_s);
    print_lat("client loop lag", clag);
    if (rd_threads)
        printf("client waited         %.1f ms per second for a CPU (run queue, %d thread%s)\n",
               rd_ms_per_s, rd_threads, rd_threads == 1 ? "" : "s");
    if (cfg.json) {
        FILE *f = fopen(cfg.json, "w");
        if (!f) {
            fprintf(stderr, "bench: cannot write %s: %s\n", cfg.json, strerror(errno));
        } else {
            fprintf(f,
                    "{\n  \"brokers\": \"%s\", \"topic\": \"%s\", \"partitions\": %d,\n"
                    "  \"producers\": %d, \"consumers\": %d, \"record_size\": %d,\n"
                    "  \"acks\": %d, \"compression\": %d, \"rate\": %.1f, \"smp\": %d,\n"
                    "  \"warmup_s\": %.3f, \"duration_s\": %.3f, \"batch_bytes\": %d,\n"
                    "  \"linger_ms\": %.3f, \"max_inflight\": %d,\n"
                    "  \"produced_records\": %llu, \"produced_records_window\": %llu,\n"
                    "  \"consumed_records\": %llu, \"consumed_records_window\": %llu,\n"
                    "  \"produce_requests\": %llu, \"errors\": %llu, \"failed\": %s,\n"
                    "  \"records_per_s\": %.1f, \"mb_per_s\": %.3f, "
                    "\"consume_records_per_s\": %.1f,\n",
                    cfg.brokers, cfg.topic, P, cfg.producers, cfg.consumers, cfg.record_size,
                    cfg.acks, cfg.compression, cfg.rate, cfg.smp, cfg.warmup, cfg.duration,
                    cfg.batch_bytes, cfg.linger_ms, cfg.max_inflight, (unsigned long long)acked,
                    (unsigned long long)acked_win, (unsigned long long)cons,
                    (unsigned long long)cons_win, (unsigned long long)sent,
                    (unsigned long long)errs, failed ? "true" : "false", rps, mbps, crps);
            write_lat_json(f, "ack_latency_ms", ack);
            fprintf(f, ",\n");
            write_lat_json(f, "e2e_latency_ms", e2e);
            fprintf(f, ",\n");
            write_lat_json(f, "send_delay_ms", sdel);
            fprintf(f, ",\n");
            write_lat_json(f, "request_rtt_ms", rtt);
            fprintf(f, ",\n");
            write_lat_json(f, "request_rtt_per_request_ms", rreq);
            fprintf(f, ",\n  \"client_cpu_s\": %.3f, \"client_cpu_us_per_record\": %.3f, "
                       "\"client_wakeups\": %llu, \"client_wakeups_per_s\": %.1f,\n",
                    client_cpu, cpu_us_rec, (unsigned long long)polls, (double)polls / run_s);
            write_lat_json(f, "client_lag_ms", clag);
            if (rd_threads) fprintf(f, ",\n  \"client_run_delay_ms_per_s\": %.3f", rd_ms_per_s);
            fprintf(f, "\n}\n");
            fclose(f);
        }
    }
    fflush(stdout);
    exit_code = failed || errs ? CLI_FAILED : CLI_OK;
out:
    for (int i = 0; th && i < cfg.smp; i++) {
        struct bench_thread *t = &th[i];
        for (int k = 0; t->prods && k < t->nprods; k++) {
            struct producer *p = &t->prods[k];
            for (int a = 0; p->acc && a < P; a++) {
                free(p->acc[a].times);
                free(p->acc[a].keys);
            }
            for (int a = 0; p->slots && a < cfg.max_inflight; a++) free(p->slots[a].times);
            free(p->acc);
            free(p->readyq);
            free(p->openq);
            free(p->slots);
        }
        for (int k = 0; t->cons && k < t->ncons; k++) {
            free(t->cons[k].parts);
            free(t->cons[k].offsets);
            free(t->cons[k].fp);
        }
        free(t->prods);
        free(t->cons);
        free(t->batchbuf);
        free(t->scratch);
        free(t->recs);
        free(t->keybuf);
    }
    free(th);
    free(offsets);
    free(pool);
    free(ack);
    free(e2e);
    free(sdel);
    free(rtt);
    free(clag);
    free(rreq);
    return exit_code;
}
