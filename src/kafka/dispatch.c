/*
 * dispatch.c — the Kafka handler table, request dispatch (API/version checks, header and body
 * decoding) and the request completion functions. See request.h.
 */
#include "kafka/handlers.h"
#include "kafka/handlers_data.h"
#include "kafka/request.h"

#include "base/log.h"
#include "metrics/metrics.h"

#include <pthread.h>
#include <stdlib.h>

/*
 * The table. ApiVersions advertises exactly these ranges, so add an API here only with its
 * handler implemented and tested for every version in its range (see CLIENTS.md §2 for what
 * clients need; ApiVersions must keep min 0).
 */
const struct kafka_handler kafka_handlers[] = {
    /* data path (handlers_data.h): Produce, Fetch, ListOffsets, Metadata with topics */
    {KAFKA_API_PRODUCE, 3, 7, kafka_handle_produce},
    {KAFKA_API_FETCH, 4, 11, kafka_handle_fetch},
    {KAFKA_API_LIST_OFFSETS, 0, 7, kafka_handle_list_offsets},
    {KAFKA_API_METADATA, 0, 12, kafka_handle_metadata_topics},
    {KAFKA_API_API_VERSIONS, 0, 3, kafka_handle_api_versions},
    /* topic admin (handlers_data.h) */
    {KAFKA_API_CREATE_TOPICS, 0, 7, kafka_handle_create_topics},
    {KAFKA_API_DELETE_TOPICS, 0, 6, kafka_handle_delete_topics},
    {KAFKA_API_CREATE_PARTITIONS, 0, 3, kafka_handle_create_partitions},
    {KAFKA_API_DELETE_RECORDS, 0, 2, kafka_handle_delete_records},
    {KAFKA_API_INIT_PRODUCER_ID, 0, 4, kafka_handle_init_producer_id},
    {KAFKA_API_OFFSET_FOR_LEADER_EPOCH, 0, 4, kafka_handle_offset_for_leader_epoch},
    {KAFKA_API_DESCRIBE_CONFIGS, 0, 4, kafka_handle_describe_configs},
    {KAFKA_API_ALTER_CONFIGS, 0, 2, kafka_handle_alter_configs},
    {KAFKA_API_DESCRIBE_LOG_DIRS, 0, 4, kafka_handle_describe_log_dirs},
    {KAFKA_API_INCREMENTAL_ALTER_CONFIGS, 0, 1, kafka_handle_incremental_alter_configs},
    {KAFKA_API_DESCRIBE_CLUSTER, 0, 1, kafka_handle_describe_cluster},
    /* consumer groups (handler_groups.c) */
    {KAFKA_API_OFFSET_COMMIT, 0, 7, kafka_handle_offset_commit},
    {KAFKA_API_OFFSET_FETCH, 0, 9, kafka_handle_offset_fetch},
    {KAFKA_API_FIND_COORDINATOR, 0, 4, kafka_handle_find_coordinator},
    {KAFKA_API_JOIN_GROUP, 0, 5, kafka_handle_join_group},
    {KAFKA_API_HEARTBEAT, 0, 3, kafka_handle_heartbeat},
    {KAFKA_API_LEAVE_GROUP, 0, 3, kafka_handle_leave_group},
    {KAFKA_API_SYNC_GROUP, 0, 3, kafka_handle_sync_group},
    {KAFKA_API_DESCRIBE_GROUPS, 0, 4, kafka_handle_describe_groups},
    {KAFKA_API_LIST_GROUPS, 0, 4, kafka_handle_list_groups},
    {KAFKA_API_DELETE_GROUPS, 0, 2, kafka_handle_delete_groups},
    {KAFKA_API_OFFSET_DELETE, 0, 0, kafka_handle_offset_delete},
};
const size_t kafka_handler_count = AL_ARRAY_SIZE(kafka_handlers);

bool kafka_req_copy_records;

/* AILURUS_FETCH_COPY=1 selects the copying Fetch path (request.h), read once at load. */
__attribute__((constructor)) static void copy_records_from_env(void)
{
    const char *e = getenv("AILURUS_FETCH_COPY");
    if (e && e[0] == '1') kafka_req_copy_records = true;
}

const struct kafka_handler *kafka_handler_find(int16_t api_key)
{
    for (size_t i = 0; i < kafka_handler_count; i++)
        if (kafka_handlers[i].api_key == api_key) return &kafka_handlers[i];
    return NULL;
}

int kafka_req_peek(const uint8_t *frame, size_t len, int16_t *api_key, int16_t *api_version,
                   int32_t *correlation_id)
{
    al_rd rd = al_rd_make(frame, len);
    int16_t k = al_rd_i16(&rd);
    int16_t v = al_rd_i16(&rd);
    int32_t c = al_rd_i32(&rd);
    if (rd.err) return rd.err;
    *api_key = k;
    *api_version = v;
    *correlation_id = c;
    return 0;
}

/*
 * Request pool: a thread's freed requests are kept (at most REQ_POOL_MAX) with their decode
 * arena's blocks and a small response buffer, so the steady state of a connection costs no
 * malloc for the req, its arena or a small response. Thread-local: a request is freed on its
 * connection's shard, and whichever thread frees it keeps it. A request that used a lot of
 * arena or response memory gives that back instead. At thread exit the pool is freed.
 */
#define REQ_POOL_MAX 64
#define REQ_POOL_KEEP_ARENA (16u * 1024) /* keep the arena of requests that used this much */
#define REQ_POOL_KEEP_RESP (16u * 1024)  /* keep response buffers up to this capacity */
#define REQ_POOL_KEEP_FRAME (16u * 1024) /* keep frame buffers up to this capacity */

struct req_pool {
    kafka_req *head; /* linked through next */
    int n;
    bool registered;
};
static __thread struct req_pool req_pool;
static pthread_key_t req_pool_key;
static pthread_once_t req_pool_once = PTHREAD_ONCE_INIT;

static void req_pool_destroy(void *arg)
{
    struct req_pool *pool = arg;
    for (int guard = 0; pool->head && guard <= REQ_POOL_MAX; guard++) {
        kafka_req *r = pool->head;
        pool->head = r->next;
        kafka_arena_free(&r->arena);
        free(r->resp_keep);
        free(r->frame_keep);
        free(r);
    }
    pool->n = 0;
}

static void req_pool_key_make(void)
{
    AL_ASSERT(pthread_key_create(&req_pool_key, req_pool_destroy) == 0);
}

/* Keeps r for reuse (its frame already freed), or frees it. */
static void req_pool_put(kafka_req *r)
{
    struct req_pool *pool = &req_pool;
    if (pool->n >= REQ_POOL_MAX) goto drop;
    if (!pool->registered) {
        pthread_once(&req_pool_once, req_pool_key_make);
        if (pthread_setspecific(req_pool_key, pool) != 0) goto drop;
        pool->registered = true;
    }
    if (r->arena.used > REQ_POOL_KEEP_ARENA) kafka_arena_free(&r->arena);
    if (r->resp_keep && r->keep_cap > REQ_POOL_KEEP_RESP) {
        free(r->resp_keep);
        r->resp_keep = NULL;
        r->keep_cap = 0;
    }
    r->next = pool->head;
    pool->head = r;
    pool->n++;
    return;
drop:
    kafka_arena_free(&r->arena);
    free(r->resp_keep);
    free(r->frame_keep);
    free(r);
}

/* A zeroed request, from the pool (keeping its arena blocks and response buffer) or new. */
static kafka_req *req_pool_take(void)
{
    struct req_pool *pool = &req_pool;
    kafka_req *r = pool->head;
    if (!r) return calloc(1, sizeof(*r));
    pool->head = r->next;
    pool->n--;
    kafka_arena arena = r->arena;
    uint8_t *keep = r->resp_keep, *fkeep = r->frame_keep;
    size_t keep_cap = r->keep_cap, fcap = r->frame_cap;
    memset(r, 0, sizeof(*r));
    kafka_arena_reset(&arena);
    r->arena = arena;
    r->resp_keep = keep;
    r->keep_cap = keep_cap;
    r->frame_keep = fkeep;
    r->frame_cap = fcap;
    return r;
}

static kafka_req *kafka_req_init(kafka_req *req, uint8_t *mem, uint8_t *frame,
                                 size_t frame_len);

kafka_req *kafka_req_new(uint8_t *frame, size_t frame_len)
{
    return kafka_req_new_in(NULL, frame, frame_len);
}

kafka_req *kafka_req_new_copy(const uint8_t *frame, size_t frame_len)
{
    kafka_req *req = req_pool_take();
    if (!req) return NULL;
    uint8_t *buf = req->frame_keep;
    size_t cap = req->frame_cap;
    if (!buf || cap < frame_len) {
        cap = AL_MAX(frame_len, (size_t)1);
        buf = malloc(cap);
        if (!buf) {
            req_pool_put(req);
            return NULL;
        }
        free(req->frame_keep);
    }
    req->frame_keep = NULL;
    req->frame_cap = 0;
    memcpy(buf, frame, frame_len);
    kafka_req *r = kafka_req_init(req, NULL, buf, frame_len);
    r->frame_cap = cap;
    return r;
}

kafka_req *kafka_req_new_in(uint8_t *mem, uint8_t *frame, size_t frame_len)
{
    kafka_req *req = req_pool_take();
    if (!req) return NULL;
    free(req->frame_keep); /* a frame of its own comes with this one */
    req->frame_keep = NULL;
    req->frame_cap = 0;
    return kafka_req_init(req, mem, frame, frame_len);
}

/* Fills a fresh (pooled or new) req for its frame: owners, limits. */
static kafka_req *kafka_req_init(kafka_req *req, uint8_t *mem, uint8_t *frame, size_t frame_len)
{
    req->frame = frame;
    req->frame_mem = mem;
    req->frame_len = frame_len;
    req->client_id.len = -1;
    /* Decoded structs can take up to 32x their wire bytes (e.g. a FetchRequest v12 topic: 3
     * bytes on the wire, 48 in memory). Allow that in full for ordinary frames; then the
     * extra allowance stops growing at 64 MiB (frames over ~2.3 MiB), so a huge hostile
     * frame cannot claim 32x its size. */
    size_t extra = frame_len * 28;
    if (extra > ((size_t)64 << 20)) extra = (size_t)64 << 20;
    /* A pooled arena keeps its blocks (reset); only the limit is this request's. */
    req->arena.limit = frame_len * 4 + extra + KAFKA_REQ_ARENA_EXTRA;
    return req;
}

/* A piece of memory a response refers to, released when the request is freed (in arena). */
struct kafka_req_hold {
    struct kafka_req_hold *next;
    void *p;
    void (*release)(void *p);
};

int kafka_req_hold(kafka_req *req, void *p, void (*release)(void *p))
{
    struct kafka_req_hold *h = kafka_arena_alloc(&req->arena, sizeof(*h));
    if (!h) {
        release(p);
        return -ENOMEM;
    }
    h->p = p;
    h->release = release;
    h->next = req->holds;
    req->holds = h;
    return 0;
}

/* Records registered as pieces (kafka_req_add_pieces), in the arena. */
struct kafka_req_pieces {
    struct kafka_req_pieces *next;
    const uint8_t *key; /* pieces[0].iov_base: what the records field points to */
    const struct iovec *v;
    int n;
    size_t len;
};

int kafka_req_add_pieces(kafka_req *req, const struct iovec *pieces, int n)
{
    AL_ASSERT(n >= 1 && !kafka_req_copy_records);
    struct kafka_req_pieces *p = kafka_arena_alloc(&req->arena, sizeof(*p));
    if (!p) return -ENOMEM;
    p->next = NULL;
    p->key = pieces[0].iov_base;
    p->v = pieces;
    p->n = n;
    p->len = 0;
    for (int i = 0; i < n; i++) p->len += pieces[i].iov_len;
    if (req->pieces_tail) req->pieces_tail->next = p;
    else req->pieces = p;
    req->pieces_tail = p;
    req->pieces_cur = req->pieces;
    return 0;
}

/* The registered pieces of a referenced records value (ptr, len), or NULL for a plain one.
 * Looks at the cursor first (registration order = wire order), then everywhere. */
static const struct kafka_req_pieces *pieces_find(kafka_req *req, const uint8_t *ptr, size_t len)
{
    struct kafka_req_pieces *p = req->pieces_cur;
    if (p && p->key == ptr && p->len == len) {
        req->pieces_cur = p->next;
        return p;
    }
    for (p = req->pieces; p; p = p->next) { /* bounded: the list is finite and acyclic */
        if (p->key == ptr && p->len == len) {
            req->pieces_cur = p->next;
            return p;
        }
    }
    return NULL;
}

/* Releases every hold (bounded: each is in the arena, at most arena.limit / sizeof). */
static void req_release_holds(kafka_req *req)
{
    struct kafka_req_hold *h = req->holds;
    req->holds = NULL;
    for (size_t guard = 0; h && guard < ((size_t)1 << 32); guard++) {
        struct kafka_req_hold *next = h->next;
        h->release(h->p);
        h = next;
    }
}

void kafka_req_free(kafka_req *req)
{
    if (!req) return;
    req_release_holds(req);
    req->pieces = req->pieces_tail = req->pieces_cur = NULL;
    req->resp_iov = NULL;
    req->resp_iovcnt = 0;
    if (!req->frame_mem && req->frame && req->frame_cap && req->frame_cap <= REQ_POOL_KEEP_FRAME) {
        req->frame_keep = req->frame; /* kafka_req_new_copy's buffer: kept for the next one */
    } else {
        free(req->frame_mem ? req->frame_mem : req->frame);
        req->frame_cap = 0;
    }
    req->frame = req->frame_mem = NULL;
    if (req->resp) { /* the response buffer becomes the spare (the larger one stays) */
        if (req->resp_keep && req->keep_cap >= req->resp_cap) {
            free(req->resp);
        } else {
            free(req->resp_keep);
            req->resp_keep = req->resp;
            req->keep_cap = req->resp_cap;
        }
        req->resp = NULL;
    }
    req_pool_put(req);
}

static void complete(kafka_req *req)
{
    AL_ASSERT(req->state != KAFKA_REQ_DONE); /* exactly once */
    req->state = KAFKA_REQ_DONE;
    metrics_kafka_request(req->api_key, req->metrics_t0_ns, req->fail != 0); /* operations */
    if (req->on_done) req->on_done(req);
}

void kafka_req_fail(kafka_req *req, int err, const char *why)
{
    req->fail = err < 0 ? err : AL_EFAILED;
    req->fail_reason = why;
    free(req->resp);
    req->resp = NULL;
    req->resp_len = 0;
    req->resp_cap = 0;
    req->resp_iov = NULL;
    req->resp_iovcnt = 0;
    complete(req);
}

void kafka_req_respond_none(kafka_req *req)
{
    req->no_response = true;
    complete(req);
}

/* Builds req->resp_iov from the contiguous buffer (len bytes) and its splice entries: the
 * buffer's pieces between the entries, interleaved with the referenced records. Empty pieces
 * are left out. Returns 0 or -ENOMEM (arena). */
static int build_resp_iov(kafka_req *req, uint8_t *buf, size_t len, const kafka_refs *refs)
{
    size_t cnt = 2 * (size_t)refs->n + 1;
    req->pieces_cur = req->pieces;
    for (int32_t i = 0; req->pieces && i < refs->n; i++) {
        const struct kafka_req_pieces *pc = pieces_find(req, refs->v[i].ptr, refs->v[i].len);
        if (pc) cnt += (size_t)pc->n - 1;
    }
    struct iovec *iov = kafka_arena_alloc(&req->arena, sizeof(*iov) * cnt);
    if (!iov) return -ENOMEM;
    size_t n = 0, pos = 0;
    req->pieces_cur = req->pieces;
    for (int32_t i = 0; i < refs->n; i++) {
        const kafka_ref *r = &refs->v[i];
        AL_ASSERT(r->at >= pos && r->at <= len);
        if (r->at > pos) iov[n++] = (struct iovec){.iov_base = buf + pos, .iov_len = r->at - pos};
        const struct kafka_req_pieces *pc =
            req->pieces ? pieces_find(req, r->ptr, r->len) : NULL;
        if (pc) {
            for (int k = 0; k < pc->n; k++)
                if (pc->v[k].iov_len) iov[n++] = pc->v[k];
        } else {
            iov[n++] = (struct iovec){.iov_base = (void *)r->ptr, .iov_len = r->len};
        }
        pos = r->at;
    }
    if (pos < len) iov[n++] = (struct iovec){.iov_base = buf + pos, .iov_len = len - pos};
    AL_ASSERT(n <= cnt && n <= INT32_MAX);
    req->resp_iov = iov;
    req->resp_iovcnt = (int)n;
    return 0;
}

/* Encodes resp at `version` (which may differ from the request's only for the ApiVersions
 * fallback) with its response header. A FetchResponse's large records go by reference
 * (request.h): resp then holds only the rest and resp_iov the whole. */
static int encode_response(kafka_req *req, const void *resp, int16_t version)
{
    int16_t hv = kafka_response_header_version(req->api_key, version);
    kafka_ResponseHeader h;
    kafka_ResponseHeader_init(&h);
    h.CorrelationId = req->correlation_id;
    size_t hsize = kafka_ResponseHeader_size(hv, &h);
    kafka_refs refs = {.min_len = KAFKA_REQ_REF_MIN};
    bool by_ref = req->api_key == KAFKA_API_FETCH && !kafka_req_copy_records;
    size_t bsize = by_ref ? kafka_FetchResponse_size_refs(version, resp, &refs)
                          : kafka_response_size(req->api_key, version, resp);
    if (hsize + bsize > INT32_MAX) return AL_ETOOLARGE;
    if (by_ref && refs.planned > 0) {
        refs.v = kafka_arena_alloc(&req->arena, sizeof(*refs.v) * (size_t)refs.planned);
        if (!refs.v && req->pieces) return -ENOMEM; /* pieces cannot be copied as one */
        if (!refs.v) by_ref = false;                 /* copy instead */
    }
    if (!by_ref || refs.planned == 0) {
        by_ref = false;
        refs.planned_bytes = 0;
    }
    size_t total = 4 + hsize + bsize - refs.planned_bytes; /* the contiguous part */
    /* The pooled spare buffer when it is large enough (no malloc for a small response). */
    bool spare = req->resp_keep && req->keep_cap >= total;
    uint8_t *buf = spare ? req->resp_keep : malloc(total);
    if (!buf) return -ENOMEM;
    al_wr wr = al_wr_make(buf, total);
    al_wr_u32(&wr, (uint32_t)(hsize + bsize));
    int rc = kafka_ResponseHeader_encode(&wr, hv, &h);
    if (!rc && by_ref) {
        refs.base = buf;
        refs.cap = refs.planned;
        rc = kafka_FetchResponse_encode_refs(&wr, version, resp, &refs);
        if (!rc && refs.n != refs.planned) rc = AL_EMALFORMED; /* size and encode disagree */
    } else if (!rc) {
        rc = kafka_response_encode(req->api_key, version, &wr, resp);
    }
    if (!rc && wr.err) rc = wr.err;
    if (!rc && wr.p != buf + total) rc = AL_EMALFORMED; /* size() and encode() disagree */
    if (!rc && by_ref) rc = build_resp_iov(req, buf, total, &refs);
    if (rc) {
        if (!spare) free(buf);
        return rc;
    }
    free(req->resp);
    req->resp = buf;
    req->resp_cap = spare ? req->keep_cap : total;
    if (spare) {
        req->resp_keep = NULL;
        req->keep_cap = 0;
    }
    req->resp_len = total + refs.planned_bytes; /* the wire size */
    return 0;
}

int64_t kafka_req_resp_copy(const kafka_req *req, uint8_t *out, size_t cap)
{
    if (req->resp_len > cap) return AL_ETOOLARGE;
    if (!req->resp_iov) {
        if (req->resp_len) memcpy(out, req->resp, req->resp_len);
        return (int64_t)req->resp_len;
    }
    size_t pos = 0;
    for (int i = 0; i < req->resp_iovcnt; i++) {
        AL_ASSERT(pos + req->resp_iov[i].iov_len <= req->resp_len);
        memcpy(out + pos, req->resp_iov[i].iov_base, req->resp_iov[i].iov_len);
        pos += req->resp_iov[i].iov_len;
    }
    AL_ASSERT(pos == req->resp_len);
    return (int64_t)pos;
}

static int respond_at(kafka_req *req, const void *resp, int16_t version)
{
    int rc = encode_response(req, resp, version);
    if (rc) {
        log_error("kafka", "cannot encode %s v%d response: %s",
                  kafka_api_info(req->api_key) ? kafka_api_info(req->api_key)->name : "?",
                  version, al_strerror(rc));
        kafka_req_fail(req, rc, "response encoding failed");
        return rc;
    }
    complete(req);
    return 0;
}

int kafka_req_respond(kafka_req *req, const void *resp)
{
    return respond_at(req, resp, req->api_version);
}

int kafka_respond_api_versions_unsupported(kafka_req *req)
{
    const struct kafka_handler *h = kafka_handler_find(KAFKA_API_API_VERSIONS);
    kafka_ApiVersionsResponse_ApiVersion key = {0};
    key.ApiKey = KAFKA_API_API_VERSIONS;
    key.MinVersion = h->min_version;
    key.MaxVersion = h->max_version;
    kafka_ApiVersionsResponse r;
    kafka_ApiVersionsResponse_init(&r);
    r.ErrorCode = KAFKA_ERR_UNSUPPORTED_VERSION;
    r.ApiKeys_count = 1;
    r.ApiKeys = &key;
    return respond_at(req, &r, 0);
}

static void dispatch(kafka_req *req);

void kafka_dispatch(kafka_req *req)
{
    AL_ASSERT(req->state == KAFKA_REQ_NEW);
    req->state = KAFKA_REQ_RUNNING;
    req->metrics_t0_ns = metrics_clock_ns(); /* operations: request latency metric */
    req->in_dispatch = true;
    dispatch(req);
    req->in_dispatch = false;
}

static void dispatch(kafka_req *req)
{
    int rc = kafka_req_peek(req->frame, req->frame_len, &req->api_key, &req->api_version,
                            &req->correlation_id);
    if (rc) {
        kafka_req_fail(req, rc, "request shorter than its header");
        return;
    }
    const struct kafka_handler *h = kafka_handler_find(req->api_key);
    if (!h) {
        kafka_req_fail(req, AL_EUNSUPPORTED, "unsupported API key");
        return;
    }
    if (req->api_version < h->min_version || req->api_version > h->max_version) {
        if (req->api_key == KAFKA_API_API_VERSIONS) {
            /* KIP-511: any version is accepted; answer in v0 form, body not parsed. */
            kafka_respond_api_versions_unsupported(req);
            return;
        }
        kafka_req_fail(req, AL_EUNSUPPORTED, "unsupported API version");
        return;
    }
    al_rd rd = al_rd_make(req->frame, req->frame_len);
    int16_t hv = kafka_request_header_version(req->api_key, req->api_version);
    kafka_RequestHeader hdr;
    kafka_RequestHeader_init(&hdr);
    rc = kafka_RequestHeader_decode(&rd, hv, &hdr, &req->arena);
    if (rc || rd.err) {
        kafka_req_fail(req, rc ? rc : rd.err, "malformed request header");
        return;
    }
    req->client_id = hdr.ClientId;
    req->body = rd.p;
    req->body_len = al_rd_left(&rd);
    req->msg = kafka_arena_alloc(&req->arena, kafka_request_struct_size(req->api_key));
    if (!req->msg) {
        kafka_req_fail(req, -ENOMEM, "out of memory decoding the request");
        return;
    }
    rc = kafka_request_decode(req->api_key, req->api_version, &rd, req->msg, &req->arena);
    if (rc || rd.err) {
        kafka_req_fail(req, rc ? rc : rd.err, "malformed request body");
        return;
    }
    if (al_rd_left(&rd))
        log_debug("kafka", "%zu trailing bytes after %s v%d request (correlation id %d)",
                  al_rd_left(&rd), kafka_api_info(req->api_key)->name, req->api_version,
                  req->correlation_id);
    rc = h->fn(req);
    if (rc < 0) {
        if (req->state != KAFKA_REQ_DONE) kafka_req_fail(req, rc, "handler failed");
        return;
    }
    if (rc == KAFKA_DEFERRED) {
        if (req->state == KAFKA_REQ_RUNNING) req->state = KAFKA_REQ_DEFERRED;
        return;
    }
    /* KAFKA_DONE: the handler must have answered. */
    AL_ASSERT(req->state == KAFKA_REQ_DONE);
}
