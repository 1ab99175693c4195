/*
 * cursor.h — bounds-checked reading and writing of wire bytes. Untrusted bytes are read only
 * through these helpers.
 *
 * A reader (al_rd) has a sticky error: the first read that would pass the end, or that finds a
 * malformed varint, sets rd->err (AL_ETRUNCATED or AL_EMALFORMED), and from then on every read
 * returns 0 and consumes nothing. So a decoder can read a run of fields and check rd->err once,
 * and it can never read past the buffer.
 *
 * A writer (al_wr) writes into a fixed buffer; running out of room sets wr->err = AL_ETOOLARGE
 * and further writes are dropped. (Size first with the codec's size functions, then write into
 * a buffer of that size.) Big-endian for fixed-width integers, as Kafka uses.
 */
#ifndef AL_CURSOR_H
#define AL_CURSOR_H

#include "base/base.h"

typedef struct al_rd {
    const uint8_t *p;   /* next byte */
    const uint8_t *end; /* one past the last byte */
    int err;            /* 0, or the first error */
} al_rd;

typedef struct al_wr {
    uint8_t *p;
    uint8_t *end;
    int err;
} al_wr;

static inline al_rd al_rd_make(const void *buf, size_t len)
{
    al_rd rd = {(const uint8_t *)buf, (const uint8_t *)buf + len, 0};
    return rd;
}

static inline al_wr al_wr_make(void *buf, size_t len)
{
    al_wr wr = {(uint8_t *)buf, (uint8_t *)buf + len, 0};
    return wr;
}

static inline size_t al_rd_left(const al_rd *rd)
{
    return (size_t)(rd->end - rd->p);
}

static inline void al_rd_fail(al_rd *rd, int err)
{
    if (!rd->err) rd->err = err;
    rd->p = rd->end;
}

/* Returns a pointer to the next n bytes and consumes them, or NULL (and sets err). */
static inline const uint8_t *al_rd_bytes(al_rd *rd, size_t n)
{
    if (rd->err || al_rd_left(rd) < n) {
        al_rd_fail(rd, AL_ETRUNCATED);
        return NULL;
    }
    const uint8_t *p = rd->p;
    rd->p += n;
    return p;
}

static inline uint8_t al_rd_u8(al_rd *rd)
{
    const uint8_t *p = al_rd_bytes(rd, 1);
    return p ? p[0] : 0;
}

static inline uint16_t al_rd_u16(al_rd *rd)
{
    const uint8_t *p = al_rd_bytes(rd, 2);
    return p ? (uint16_t)((p[0] << 8) | p[1]) : 0;
}

static inline uint32_t al_rd_u32(al_rd *rd)
{
    const uint8_t *p = al_rd_bytes(rd, 4);
    return p ? ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3] : 0;
}

static inline uint64_t al_rd_u64(al_rd *rd)
{
    uint64_t hi = al_rd_u32(rd);
    uint64_t lo = al_rd_u32(rd);
    return (hi << 32) | lo;
}

static inline int8_t al_rd_i8(al_rd *rd) { return (int8_t)al_rd_u8(rd); }
static inline int16_t al_rd_i16(al_rd *rd) { return (int16_t)al_rd_u16(rd); }
static inline int32_t al_rd_i32(al_rd *rd) { return (int32_t)al_rd_u32(rd); }
static inline int64_t al_rd_i64(al_rd *rd) { return (int64_t)al_rd_u64(rd); }

static inline double al_rd_f64(al_rd *rd)
{
    uint64_t v = al_rd_u64(rd);
    double d;
    memcpy(&d, &v, sizeof(d));
    return d;
}

/* Unsigned varint (protobuf style, at most 10 bytes for 64 bits; 5 for 32). */
static inline uint64_t al_rd_uvarint64(al_rd *rd)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (rd->err || rd->p >= rd->end) {
            al_rd_fail(rd, AL_ETRUNCATED);
            return 0;
        }
        uint8_t b = *rd->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    al_rd_fail(rd, AL_EMALFORMED);
    return 0;
}

static inline uint32_t al_rd_uvarint(al_rd *rd)
{
    uint32_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        if (rd->err || rd->p >= rd->end) {
            al_rd_fail(rd, AL_ETRUNCATED);
            return 0;
        }
        uint8_t b = *rd->p++;
        if (shift == 28 && (b & 0xf0)) break; /* more than 32 bits */
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    al_rd_fail(rd, AL_EMALFORMED);
    return 0;
}

/* Zig-zag signed varints, as used inside Kafka records. */
static inline int32_t al_rd_varint(al_rd *rd)
{
    uint32_t u = al_rd_uvarint(rd);
    return (int32_t)((u >> 1) ^ (~(u & 1) + 1));
}

static inline int64_t al_rd_varlong(al_rd *rd)
{
    uint64_t u = al_rd_uvarint64(rd);
    return (int64_t)((u >> 1) ^ (~(u & 1) + 1));
}

/* --- writer --- */

static inline uint8_t *al_wr_bytes_ptr(al_wr *wr, size_t n)
{
    if (wr->err || (size_t)(wr->end - wr->p) < n) {
        if (!wr->err) wr->err = AL_ETOOLARGE;
        return NULL;
    }
    uint8_t *p = wr->p;
    wr->p += n;
    return p;
}

static inline void al_wr_bytes(al_wr *wr, const void *src, size_t n)
{
    uint8_t *p = al_wr_bytes_ptr(wr, n);
    if (p && n) memcpy(p, src, n);
}

static inline void al_wr_u8(al_wr *wr, uint8_t v)
{
    uint8_t *p = al_wr_bytes_ptr(wr, 1);
    if (p) p[0] = v;
}

static inline void al_wr_u16(al_wr *wr, uint16_t v)
{
    uint8_t *p = al_wr_bytes_ptr(wr, 2);
    if (p) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
    }
}

static inline void al_wr_u32(al_wr *wr, uint32_t v)
{
    uint8_t *p = al_wr_bytes_ptr(wr, 4);
    if (p) {
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
    }
}

static inline void al_wr_u64(al_wr *wr, uint64_t v)
{
    al_wr_u32(wr, (uint32_t)(v >> 32));
    al_wr_u32(wr, (uint32_t)v);
}

static inline void al_wr_i8(al_wr *wr, int8_t v) { al_wr_u8(wr, (uint8_t)v); }
static inline void al_wr_i16(al_wr *wr, int16_t v) { al_wr_u16(wr, (uint16_t)v); }
static inline void al_wr_i32(al_wr *wr, int32_t v) { al_wr_u32(wr, (uint32_t)v); }
static inline void al_wr_i64(al_wr *wr, int64_t v) { al_wr_u64(wr, (uint64_t)v); }

static inline void al_wr_f64(al_wr *wr, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof(v));
    al_wr_u64(wr, v);
}

static inline void al_wr_uvarint64(al_wr *wr, uint64_t v)
{
    while (v >= 0x80) {
        al_wr_u8(wr, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    al_wr_u8(wr, (uint8_t)v);
}

static inline void al_wr_uvarint(al_wr *wr, uint32_t v) { al_wr_uvarint64(wr, v); }

static inline void al_wr_varint(al_wr *wr, int32_t v)
{
    al_wr_uvarint(wr, ((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}

static inline void al_wr_varlong(al_wr *wr, int64_t v)
{
    al_wr_uvarint64(wr, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

/* Number of bytes the unsigned varint encoding of v takes. */
static inline size_t al_uvarint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline size_t al_varint_size(int32_t v)
{
    return al_uvarint_size(((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}

static inline size_t al_varlong_size(int64_t v)
{
    return al_uvarint_size(((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

/* Big-endian helpers for fixed offsets in trusted buffers (already bounds-checked). */
static inline uint32_t al_be32(const void *p)
{
    const uint8_t *b = p;
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

static inline void al_put_be32(void *p, uint32_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

static inline uint64_t al_be64(const void *p)
{
    const uint8_t *b = p;
    return ((uint64_t)al_be32(b) << 32) | al_be32(b + 4);
}

static inline void al_put_be64(void *p, uint64_t v)
{
    al_put_be32(p, (uint32_t)(v >> 32));
    al_put_be32((uint8_t *)p + 4, (uint32_t)v);
}

static inline uint16_t al_be16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)((b[0] << 8) | b[1]);
}

#endif
