/*
 * batch.c — Kafka record batch (magic 2) parsing, validation, stamping, record iteration,
 * decompression and building. See batch.h for the layout and contracts.
 */
#include "storage/batch.h"

#include "base/crc32c.h"
#include "base/cursor.h"

#include <lz4frame.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <zlib.h>
#include <zstd.h>

int storage_batch_parse_header(const void *buf, size_t len, storage_batch_hdr *h)
{
    al_rd rd = al_rd_make(buf, len < STORAGE_BATCH_HEADER ? len : STORAGE_BATCH_HEADER);
    h->base_offset = al_rd_i64(&rd);
    h->batch_length = al_rd_i32(&rd);
    h->leader_epoch = al_rd_i32(&rd);
    h->magic = al_rd_i8(&rd);
    h->crc = al_rd_u32(&rd);
    h->attributes = al_rd_i16(&rd);
    h->last_offset_delta = al_rd_i32(&rd);
    h->base_timestamp = al_rd_i64(&rd);
    h->max_timestamp = al_rd_i64(&rd);
    h->producer_id = al_rd_i64(&rd);
    h->producer_epoch = al_rd_i16(&rd);
    h->base_sequence = al_rd_i32(&rd);
    h->records_count = al_rd_i32(&rd);
    return rd.err ? AL_ETRUNCATED : 0;
}

/* Counts the records of an uncompressed records section; returns 0 if exactly `count` parse
 * and consume every byte, else AL_EMALFORMED. */
static int batch_check_records(const uint8_t *p, size_t len, int32_t count)
{
    storage_record_iter it;
    storage_record rec;
    storage_record_iter_init(&it, p, len, count);
    int n = 0, rc;
    while ((rc = storage_record_iter_next(&it, &rec)) == 1) n++;
    if (rc < 0 || n != count) return AL_EMALFORMED;
    return 0;
}

/* The framing part of storage_batch_validate (everything but the CRC and the records). */
static int64_t batch_frame_check(const void *buf, size_t len, size_t max_size,
                                 storage_batch_hdr *out)
{
    storage_batch_hdr h;
    if (storage_batch_parse_header(buf, len, &h) < 0) {
        /* Enough for the length field: say whether it is malformed or merely short. */
        if (len >= STORAGE_BATCH_LOG_OVERHEAD &&
            al_be32((const uint8_t *)buf + 8) < STORAGE_BATCH_HEADER - STORAGE_BATCH_LOG_OVERHEAD)
            return AL_EMALFORMED;
        return AL_ETRUNCATED;
    }
    if (h.magic != 2) return AL_EMALFORMED;
    if (h.batch_length < STORAGE_BATCH_HEADER - STORAGE_BATCH_LOG_OVERHEAD) return AL_EMALFORMED;
    size_t size = storage_batch_size(&h);
    if (max_size && size > max_size) return AL_ETOOLARGE;
    if (size > len) return AL_ETRUNCATED;
    if (h.last_offset_delta < 0 || h.records_count < 0 ||
        (int64_t)h.records_count > (int64_t)h.last_offset_delta + 1)
        return AL_EMALFORMED;
    *out = h;
    return (int64_t)size;
}

int64_t storage_batch_validate(const void *buf, size_t len, size_t max_size,
                               storage_batch_hdr *out)
{
    storage_batch_hdr h;
    int64_t fsz = batch_frame_check(buf, len, max_size, &h);
    if (fsz < 0) return fsz;
    size_t size = (size_t)fsz;
    const uint8_t *b = buf;
    uint32_t crc = crc32c(0, b + STORAGE_BATCH_OFF_ATTR, size - STORAGE_BATCH_OFF_ATTR);
    if (crc != h.crc) return AL_ECORRUPT;
    if (storage_batch_compression(&h) == STORAGE_COMP_NONE) {
        if (batch_check_records(b + STORAGE_BATCH_OFF_RECORDS, size - STORAGE_BATCH_HEADER,
                                h.records_count) < 0)
            return AL_EMALFORMED;
    } else if (storage_batch_compression(&h) > STORAGE_COMP_ZSTD) {
        return AL_EMALFORMED;
    }
    if (out) *out = h;
    return (int64_t)size;
}

/* storage_batches_validate (full: CRC and records too) and storage_batches_frame_check (framing
 * and codec only): walks the batches back to back in buf. Returns the batch count or the first
 * batch's error; *total_records (optional) gets the offsets they take. */
static int batches_walk(const void *buf, size_t len, size_t max_size, int64_t *total_records,
                        bool full)
{
    const uint8_t *p = buf;
    size_t pos = 0;
    int n = 0;
    int64_t recs = 0;
    if (len == 0) return AL_EMALFORMED;
    while (pos < len) {
        storage_batch_hdr h;
        int64_t sz = full ? storage_batch_validate(p + pos, len - pos, max_size, &h)
                          : batch_frame_check(p + pos, len - pos, max_size, &h);
        if (sz < 0) return (int)sz;
        if (!full && storage_batch_compression(&h) > STORAGE_COMP_ZSTD) return AL_EMALFORMED;
        pos += (size_t)sz;
        recs += (int64_t)h.last_offset_delta + 1;
        if (++n == INT32_MAX) return AL_ETOOLARGE;
    }
    if (total_records) *total_records = recs;
    return n;
}

int storage_batches_validate(const void *buf, size_t len, size_t max_size,
                             int64_t *total_records)
{
    return batches_walk(buf, len, max_size, total_records, true);
}

int storage_batches_frame_check(const void *buf, size_t len, size_t max_size,
                                int64_t *total_records)
{
    return batches_walk(buf, len, max_size, total_records, false);
}

void storage_batch_stamp(void *buf, int64_t base_offset, int32_t leader_epoch)
{
    uint8_t *b = buf;
    al_put_be64(b + STORAGE_BATCH_OFF_BASE, (uint64_t)base_offset);
    al_put_be32(b + STORAGE_BATCH_OFF_EPOCH, (uint32_t)leader_epoch);
}

void storage_batch_set_crc(void *buf, size_t size)
{
    uint8_t *b = buf;
    AL_ASSERT(size >= STORAGE_BATCH_HEADER);
    al_put_be32(b + STORAGE_BATCH_OFF_CRC,
                crc32c(0, b + STORAGE_BATCH_OFF_ATTR, size - STORAGE_BATCH_OFF_ATTR));
}

void storage_record_iter_init(storage_record_iter *it, const void *records, size_t len,
                              int32_t count)
{
    it->p = records;
    it->end = (const uint8_t *)records + len;
    it->left = count;
    it->err = 0;
}

int storage_record_iter_next(storage_record_iter *it, storage_record *rec)
{
    if (it->err) return it->err;
    if (it->left <= 0) {
        if (it->p != it->end) it->err = AL_EMALFORMED;
        return it->err ? it->err : 0;
    }
    al_rd outer = al_rd_make(it->p, (size_t)(it->end - it->p));
    int32_t rlen = al_rd_varint(&outer);
    if (outer.err || rlen < 0 || (size_t)rlen > al_rd_left(&outer)) {
        it->err = outer.err == AL_EMALFORMED || rlen < 0 ? AL_EMALFORMED : AL_ETRUNCATED;
        return it->err;
    }
    al_rd rd = al_rd_make(outer.p, (size_t)rlen);
    rec->attributes = al_rd_i8(&rd);
    rec->timestamp_delta = al_rd_varlong(&rd);
    rec->offset_delta = al_rd_varint(&rd);
    rec->key_len = al_rd_varint(&rd);
    rec->key = NULL;
    if (rec->key_len >= 0) rec->key = al_rd_bytes(&rd, (size_t)rec->key_len);
    else if (rec->key_len != -1) al_rd_fail(&rd, AL_EMALFORMED);
    rec->value_len = al_rd_varint(&rd);
    rec->value = NULL;
    if (rec->value_len >= 0) rec->value = al_rd_bytes(&rd, (size_t)rec->value_len);
    else if (rec->value_len != -1) al_rd_fail(&rd, AL_EMALFORMED);
    rec->headers = rd.p;
    rec->header_count = al_rd_varint(&rd);
    if (rec->header_count < 0) al_rd_fail(&rd, AL_EMALFORMED);
    for (int32_t i = 0; i < rec->header_count && !rd.err; i++) {
        int32_t kl = al_rd_varint(&rd);
        if (kl < 0) al_rd_fail(&rd, AL_EMALFORMED);
        else al_rd_bytes(&rd, (size_t)kl);
        int32_t vl = al_rd_varint(&rd);
        if (vl >= 0) al_rd_bytes(&rd, (size_t)vl);
        else if (vl != -1) al_rd_fail(&rd, AL_EMALFORMED);
    }
    if (rd.err || rd.p != rd.end || rec->offset_delta < 0) {
        it->err = AL_EMALFORMED;
        return it->err;
    }
    rec->headers_size = (size_t)(rd.p - rec->headers);
    it->p = outer.p + rlen;
    it->left--;
    return 1;
}

/* ---- decompression ---- */

/* A growable output buffer bounded by max. */
typedef struct outbuf {
    uint8_t *p;
    size_t len, cap, max;
} outbuf;

static int outbuf_reserve(outbuf *o, size_t more)
{
    if (o->len + more <= o->cap) return 0;
    if (o->len + more > o->max) return AL_ETOOLARGE;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + more) cap *= 2;
    if (cap > o->max) cap = o->max;
    uint8_t *np = realloc(o->p, cap);
    if (!np) return -ENOMEM;
    o->p = np;
    o->cap = cap;
    return 0;
}

/* Grows o so at least one more byte fits (up to max). */
static int outbuf_grow(outbuf *o)
{
    size_t want = o->cap ? o->cap : 4096;
    if (o->len + want > o->max) want = o->max - o->len;
    if (want == 0) return AL_ETOOLARGE;
    return outbuf_reserve(o, want);
}

static int decompress_gzip(const uint8_t *in, size_t len, outbuf *o)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 32) != Z_OK) return -ENOMEM;
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    int rc = 0;
    for (;;) {
        if (o->len == o->cap && (rc = outbuf_grow(o)) < 0) break;
        zs.next_out = o->p + o->len;
        zs.avail_out = (uInt)(o->cap - o->len);
        int z = inflate(&zs, Z_NO_FLUSH);
        o->len = o->cap - zs.avail_out;
        if (z == Z_STREAM_END) break;
        if (z == Z_BUF_ERROR && zs.avail_in == 0) { rc = AL_EMALFORMED; break; }
        if (z != Z_OK && z != Z_BUF_ERROR) { rc = AL_EMALFORMED; break; }
    }
    inflateEnd(&zs);
    return rc;
}

static int snappy_raw(const uint8_t *in, size_t len, outbuf *o)
{
    size_t ulen;
    if (snappy_uncompressed_length((const char *)in, len, &ulen) != SNAPPY_OK)
        return AL_EMALFORMED;
    int rc = outbuf_reserve(o, ulen);
    if (rc < 0) return rc;
    size_t got = ulen;
    if (snappy_uncompress((const char *)in, len, (char *)o->p + o->len, &got) != SNAPPY_OK ||
        got != ulen)
        return AL_EMALFORMED;
    o->len += ulen;
    return 0;
}

static const uint8_t xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};

static int decompress_snappy(const uint8_t *in, size_t len, outbuf *o)
{
    if (len < 16 || memcmp(in, xerial_magic, 8) != 0) return snappy_raw(in, len, o);
    size_t pos = 16; /* magic, version, compatible version */
    for (int blocks = 0; pos < len; blocks++) {
        if (len - pos < 4 || blocks > 1000000) return AL_EMALFORMED;
        uint32_t bl = al_be32(in + pos);
        pos += 4;
        if (bl > len - pos) return AL_EMALFORMED;
        int rc = snappy_raw(in + pos, bl, o);
        if (rc < 0) return rc;
        pos += bl;
    }
    return 0;
}

static int decompress_lz4(const uint8_t *in, size_t len, outbuf *o)
{
    LZ4F_dctx *dctx;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) return -ENOMEM;
    size_t pos = 0;
    int rc = 0;
    for (int guard = 0;; guard++) {
        if (o->len == o->cap && (rc = outbuf_grow(o)) < 0) break;
        size_t dst = o->cap - o->len, src = len - pos;
        size_t r = LZ4F_decompress(dctx, o->p + o->len, &dst, in + pos, &src, NULL);
        if (LZ4F_isError(r)) { rc = AL_EMALFORMED; break; }
        o->len += dst;
        pos += src;
        if (r == 0) break;                         /* frame complete */
        if (pos == len && dst == 0) { rc = AL_EMALFORMED; break; } /* input ended early */
        if (guard > 100000000) { rc = AL_EMALFORMED; break; }
    }
    LZ4F_freeDecompressionContext(dctx);
    return rc;
}

static int decompress_zstd(const uint8_t *in, size_t len, outbuf *o)
{
    ZSTD_DStream *ds = ZSTD_createDStream();
    if (!ds) return -ENOMEM;
    ZSTD_initDStream(ds);
    ZSTD_inBuffer ib = {in, len, 0};
    int rc = 0;
    for (;;) {
        if (o->len == o->cap && (rc = outbuf_grow(o)) < 0) break;
        ZSTD_outBuffer ob = {o->p + o->len, o->cap - o->len, 0};
        size_t r = ZSTD_decompressStream(ds, &ob, &ib);
        if (ZSTD_isError(r)) { rc = AL_EMALFORMED; break; }
        o->len += ob.pos;
        if (r == 0 && ib.pos == ib.size) break;
        if (ib.pos == ib.size && ob.pos < ob.size) { rc = AL_EMALFORMED; break; }
    }
    ZSTD_freeDStream(ds);
    return rc;
}

int storage_batch_records(const void *buf, size_t size, size_t max_out, const uint8_t **out,
                          size_t *out_len, uint8_t **owned)
{
    storage_batch_hdr h;
    *owned = NULL;
    if (size < STORAGE_BATCH_HEADER || storage_batch_parse_header(buf, size, &h) < 0)
        return AL_ETRUNCATED;
    const uint8_t *in = (const uint8_t *)buf + STORAGE_BATCH_OFF_RECORDS;
    size_t in_len = size - STORAGE_BATCH_HEADER;
    int codec = storage_batch_compression(&h);
    if (codec == STORAGE_COMP_NONE) {
        *out = in;
        *out_len = in_len;
        return 0;
    }
    outbuf o = {NULL, 0, 0, max_out ? max_out : (size_t)256 << 20};
    int rc;
    switch (codec) {
    case STORAGE_COMP_GZIP: rc = decompress_gzip(in, in_len, &o); break;
    case STORAGE_COMP_SNAPPY: rc = decompress_snappy(in, in_len, &o); break;
    case STORAGE_COMP_LZ4: rc = decompress_lz4(in, in_len, &o); break;
    case STORAGE_COMP_ZSTD: rc = decompress_zstd(in, in_len, &o); break;
    default: rc = AL_EMALFORMED; break;
    }
    if (rc < 0) {
        free(o.p);
        return rc;
    }
    if (!o.p && outbuf_reserve(&o, 1) < 0) return -ENOMEM; /* empty output: still a buffer */
    *out = o.p;
    *out_len = o.len;
    *owned = o.p;
    return 0;
}

/* ---- building ---- */

static size_t record_body_size(const storage_build_record *r)
{
    size_t n = 1 + al_varlong_size(r->timestamp_delta) + al_varint_size(r->offset_delta);
    n += al_varint_size(r->key_len) + (r->key_len > 0 ? (size_t)r->key_len : 0);
    n += al_varint_size(r->value_len) + (r->value_len > 0 ? (size_t)r->value_len : 0);
    n += r->headers ? r->headers_size : 1;
    return n;
}

size_t storage_batch_build_size(const storage_build_record *recs, int n)
{
    size_t total = STORAGE_BATCH_HEADER;
    for (int i = 0; i < n; i++) {
        size_t body = record_body_size(&recs[i]);
        total += al_varint_size((int32_t)body) + body;
    }
    return total;
}

int64_t storage_batch_build(void *out, size_t cap, const storage_build_params *p,
                            const storage_build_record *recs, int n)
{
    size_t size = storage_batch_build_size(recs, n);
    if (size > cap || size > INT32_MAX) return AL_ETOOLARGE;
    al_wr wr = al_wr_make(out, cap);
    int32_t lod = p->last_offset_delta;
    if (lod < 0) lod = n > 0 ? recs[n - 1].offset_delta : 0;
    al_wr_i64(&wr, p->base_offset);
    al_wr_i32(&wr, (int32_t)(size - STORAGE_BATCH_LOG_OVERHEAD));
    al_wr_i32(&wr, p->leader_epoch);
    al_wr_i8(&wr, 2);
    al_wr_u32(&wr, 0); /* crc, set below */
    al_wr_i16(&wr, (int16_t)(p->attributes & ~STORAGE_ATTR_COMPRESSION_MASK));
    al_wr_i32(&wr, lod);
    al_wr_i64(&wr, p->base_timestamp);
    al_wr_i64(&wr, p->max_timestamp);
    al_wr_i64(&wr, p->producer_id);
    al_wr_i16(&wr, p->producer_epoch);
    al_wr_i32(&wr, p->base_sequence);
    al_wr_i32(&wr, n);
    for (int i = 0; i < n; i++) {
        const storage_build_record *r = &recs[i];
        al_wr_varint(&wr, (int32_t)record_body_size(r));
        al_wr_i8(&wr, 0);
        al_wr_varlong(&wr, r->timestamp_delta);
        al_wr_varint(&wr, r->offset_delta);
        al_wr_varint(&wr, r->key_len);
        if (r->key_len > 0) al_wr_bytes(&wr, r->key, (size_t)r->key_len);
        al_wr_varint(&wr, r->value_len);
        if (r->value_len > 0) al_wr_bytes(&wr, r->value, (size_t)r->value_len);
        if (r->headers) al_wr_bytes(&wr, r->headers, r->headers_size);
        else al_wr_varint(&wr, 0);
    }
    if (wr.err) return AL_ETOOLARGE;
    AL_ASSERT((size_t)(wr.p - (uint8_t *)out) == size);
    storage_batch_set_crc(out, size);
    return (int64_t)size;
}
