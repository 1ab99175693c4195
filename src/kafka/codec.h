/*
 * codec.h — the hand-written runtime under the generated Kafka codec (src/kafka/gen/): the value
 * types (kafka_str, kafka_bytes, kafka_uuid), the decode arena, and the primitive wire helpers
 * (classic and compact strings, bytes, array counts) that the generated code calls.
 *
 * Include "kafka_codec.h" (generated) to get everything; this header is what it builds on.
 *
 * Zero copy: decoded strings and bytes point into the input buffer, so the caller keeps the
 * input alive while it uses a decoded message. Decoded arrays live in a kafka_arena.
 * Thread: none of this has shared state; an arena belongs to one thread at a time.
 */
#ifndef AL_KAFKA_CODEC_H
#define AL_KAFKA_CODEC_H

#include "base/cursor.h"

#include <stdio.h>

typedef struct kafka_str {
    const char *ptr;
    int32_t len; /* -1 = null */
} kafka_str;

typedef struct kafka_bytes { /* also the type of `records` fields */
    const uint8_t *ptr;
    int32_t len; /* -1 = null */
} kafka_bytes;

typedef struct kafka_uuid {
    uint8_t b[16];
} kafka_uuid;

/* Longest string Kafka accepts (int16 length). */
#define KAFKA_STR_MAX 0x7fff

/*
 * Arena: a bump allocator over a list of malloc'd blocks with a hard limit on the bytes it
 * hands out. Blocks are kept across kafka_arena_reset, so a connection that decodes one request
 * after another stops calling malloc once its arena has grown to its working size.
 *
 * Sizing: decoded arrays can take more memory than their wire bytes. Over every Kafka 3.8
 * request the worst element is 16x (e.g. a FetchRequest v12 topic: 48 B struct for 3 wire
 * bytes; a Metadata v0 topic: 32 B for 2), plus up to 15 B of alignment per array, so a limit
 * of 32 x frame bytes (+ the top-level struct) decodes every valid request.
 */
struct kafka_arena_block;
typedef struct kafka_arena {
    struct kafka_arena_block *head; /* first block (kept on reset) */
    struct kafka_arena_block *cur;  /* block being filled */
    size_t used;                    /* bytes handed out since init/reset (with alignment) */
    size_t limit;                   /* hard limit on `used` */
} kafka_arena;

/* Sets up an empty arena that will hand out at most `limit` bytes. Allocates nothing. */
void kafka_arena_init(kafka_arena *a, size_t limit);
/* Returns n bytes aligned to 16 (n == 0 gives a valid non-NULL pointer), or NULL when the
 * limit would be passed, malloc fails or `a` is NULL. Memory is uninitialised. */
void *kafka_arena_alloc(kafka_arena *a, size_t n);
/* Forgets every allocation but keeps the blocks for reuse. */
void kafka_arena_reset(kafka_arena *a);
/* Frees every block; the arena may be init'ed again. */
void kafka_arena_free(kafka_arena *a);

/* --- comparisons (used by the generated *_equal functions) --- */

static inline bool kafka_str_equal(kafka_str a, kafka_str b)
{
    if (a.len != b.len) return false;
    return a.len <= 0 || memcmp(a.ptr, b.ptr, (size_t)a.len) == 0;
}

static inline bool kafka_bytes_equal(kafka_bytes a, kafka_bytes b)
{
    if (a.len != b.len) return false;
    return a.len <= 0 || memcmp(a.ptr, b.ptr, (size_t)a.len) == 0;
}

static inline bool kafka_uuid_equal(const kafka_uuid *a, const kafka_uuid *b)
{
    return memcmp(a->b, b->b, 16) == 0;
}

static inline bool kafka_f64_equal(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0; /* bitwise: NaN == NaN, -0 != +0 */
}

/* A kafka_str for a NUL-terminated C string (NULL gives the null string). */
static inline kafka_str kafka_str_from(const char *s)
{
    kafka_str r = {s, s ? (int32_t)strlen(s) : -1};
    return r;
}

/* --- readers: return 0 or a negative AL_E* (and leave rd failed) --- */

/* A string: int16 length (classic) or uvarint length+1 (compact); null only if `nullable`. */
static inline int kafka_rd_string(al_rd *rd, bool compact, bool nullable, kafka_str *out)
{
    int64_t len = compact ? (int64_t)al_rd_uvarint(rd) - 1 : (int64_t)al_rd_i16(rd);
    if (rd->err) return rd->err;
    if (len < 0) {
        if (len == -1 && nullable) {
            out->ptr = NULL;
            out->len = -1;
            return 0;
        }
        al_rd_fail(rd, AL_EMALFORMED);
        return AL_EMALFORMED;
    }
    if (len > KAFKA_STR_MAX) {
        al_rd_fail(rd, AL_EMALFORMED);
        return AL_EMALFORMED;
    }
    const uint8_t *p = al_rd_bytes(rd, (size_t)len);
    if (!p) return rd->err;
    out->ptr = (const char *)p;
    out->len = (int32_t)len;
    return 0;
}

/* Bytes or records: int32 length (classic) or uvarint length+1 (compact). */
static inline int kafka_rd_bytes(al_rd *rd, bool compact, bool nullable, kafka_bytes *out)
{
    int64_t len = compact ? (int64_t)al_rd_uvarint(rd) - 1 : (int64_t)al_rd_i32(rd);
    if (rd->err) return rd->err;
    if (len < 0) {
        if (len == -1 && nullable) {
            out->ptr = NULL;
            out->len = -1;
            return 0;
        }
        al_rd_fail(rd, AL_EMALFORMED);
        return AL_EMALFORMED;
    }
    if (len > INT32_MAX) {
        al_rd_fail(rd, AL_EMALFORMED);
        return AL_EMALFORMED;
    }
    const uint8_t *p = al_rd_bytes(rd, (size_t)len);
    if (!p) return rd->err;
    out->ptr = p;
    out->len = (int32_t)len;
    return 0;
}

/* An array count (int32, or uvarint count+1). A count larger than the bytes left cannot be
 * real (every element takes at least one byte), so it fails before anything is allocated. */
static inline int kafka_rd_count(al_rd *rd, bool compact, bool nullable, int32_t *out)
{
    int64_t n = compact ? (int64_t)al_rd_uvarint(rd) - 1 : (int64_t)al_rd_i32(rd);
    if (rd->err) return rd->err;
    if (n < 0) {
        if (n == -1 && nullable) {
            *out = -1;
            return 0;
        }
        al_rd_fail(rd, AL_EMALFORMED);
        return AL_EMALFORMED;
    }
    if ((uint64_t)n > al_rd_left(rd) || n > INT32_MAX) {
        al_rd_fail(rd, AL_ETRUNCATED);
        return AL_ETRUNCATED;
    }
    *out = (int32_t)n;
    return 0;
}

static inline void kafka_rd_uuid(al_rd *rd, kafka_uuid *out)
{
    const uint8_t *p = al_rd_bytes(rd, 16);
    if (p) memcpy(out->b, p, 16);
}

/* --- writers: return 0 or AL_EINVAL (null where not nullable, negative length) or
 *     AL_ETOOLARGE (string longer than KAFKA_STR_MAX); buffer overflow is left in wr->err --- */

static inline int kafka_wr_string(al_wr *wr, bool compact, bool nullable, kafka_str s)
{
    if (s.len < -1 || (s.len == -1 && !nullable) || (s.len > 0 && !s.ptr)) return AL_EINVAL;
    if (s.len > KAFKA_STR_MAX) return AL_ETOOLARGE;
    if (compact) al_wr_uvarint(wr, (uint32_t)(s.len + 1));
    else al_wr_i16(wr, (int16_t)s.len);
    if (s.len > 0) al_wr_bytes(wr, s.ptr, (size_t)s.len);
    return 0;
}

static inline int kafka_wr_bytes(al_wr *wr, bool compact, bool nullable, kafka_bytes b)
{
    if (b.len < -1 || (b.len == -1 && !nullable) || (b.len > 0 && !b.ptr)) return AL_EINVAL;
    if (compact) al_wr_uvarint(wr, (uint32_t)b.len + 1u);
    else al_wr_i32(wr, b.len);
    if (b.len > 0) al_wr_bytes(wr, b.ptr, (size_t)b.len);
    return 0;
}

/* Writes an array count; `items` is the array pointer, which must be set when n > 0. */
static inline int kafka_wr_count(al_wr *wr, bool compact, bool nullable, int32_t n,
                                  const void *items)
{
    if (n < -1 || (n == -1 && !nullable) || (n > 0 && !items)) return AL_EINVAL;
    if (compact) al_wr_uvarint(wr, (uint32_t)n + 1u);
    else al_wr_i32(wr, n);
    return 0;
}

/* --- sizes: bytes the matching writer produces --- */

static inline size_t kafka_string_size(bool compact, kafka_str s)
{
    size_t n = s.len > 0 ? (size_t)s.len : 0;
    return n + (compact ? al_uvarint_size((uint32_t)(s.len + 1)) : 2);
}

static inline size_t kafka_bytes_size(bool compact, kafka_bytes b)
{
    size_t n = b.len > 0 ? (size_t)b.len : 0;
    return n + (compact ? al_uvarint_size((uint32_t)b.len + 1u) : 4);
}

static inline size_t kafka_count_size(bool compact, int32_t n)
{
    return compact ? al_uvarint_size((uint32_t)n + 1u) : 4;
}

/*
 * Schema tables. The generated code describes every message and nested struct as a
 * kafka_struct_desc (a list of kafka_field_desc in wire order); the functions below encode,
 * decode, size, compare, initialise and fill any struct from its table. Version sets are
 * bitmasks (bit v = version v; Kafka 3.8 versions are all below 32).
 */
enum kafka_ftype {
    KAFKA_T_BOOL,
    KAFKA_T_INT8,
    KAFKA_T_INT16,
    KAFKA_T_UINT16,
    KAFKA_T_INT32,
    KAFKA_T_INT64,
    KAFKA_T_FLOAT64,
    KAFKA_T_STRING,
    KAFKA_T_BYTES,
    KAFKA_T_RECORDS,
    KAFKA_T_UUID,
    KAFKA_T_STRUCT,
};

struct kafka_struct_desc;

struct kafka_field_desc {
    const char *name;       /* Kafka's field name */
    uint8_t type;           /* enum kafka_ftype; of the elements for an array */
    bool array;             /* `int32_t <name>_count; T *<name>;` at aux_off / off */
    bool nullable_struct;   /* a struct field with `bool <name>_null` at aux_off */
    bool ignorable;         /* may be dropped when writing a version that lacks it */
    bool default_null;      /* string/bytes/records/array/struct: null by default */
    int16_t tag;            /* tag in tagged versions, -1 if never tagged */
    uint32_t off;           /* offset of the value (arrays: of the element pointer) */
    uint32_t aux_off;       /* arrays: offset of the count; nullable structs: of the flag */
    uint32_t versions;      /* versions in which the field exists */
    uint32_t nullable;      /* versions in which it may be null */
    uint32_t tagged;        /* versions in which it is a tagged field (subset of versions) */
    uint32_t flexible;      /* versions using compact encodings for this field */
    int64_t def_int;        /* default of bool and integer fields */
    double def_f64;         /* default of float64 fields */
    const char *def_str;    /* default of a non-null string field */
    int32_t def_str_len;
    const struct kafka_struct_desc *sub; /* element struct of KAFKA_T_STRUCT */
};

struct kafka_struct_desc {
    const char *name;       /* C type name */
    uint32_t size;          /* sizeof the C struct */
    uint16_t nfields;
    uint16_t ntagged;       /* fields that are tagged in some version */
    const struct kafka_field_desc *fields;
    const uint8_t *tag_order; /* indices of those fields, by ascending tag */
    uint32_t flexible;      /* versions with a tagged-field section */
    int16_t min_version, max_version; /* of the message this struct belongs to */
};

/* Table-driven operations (see kafka_codec.h for the per-message contracts; these are what
 * the generated kafka_M_* functions call). decode/encode check the version range. */
void kafka_struct_init(const struct kafka_struct_desc *d, void *o);
bool kafka_struct_equal(const struct kafka_struct_desc *d, const void *x, const void *y);
int kafka_struct_decode(const struct kafka_struct_desc *d, al_rd *rd, int16_t v, void *o,
                        kafka_arena *a);
int kafka_struct_encode(const struct kafka_struct_desc *d, al_wr *wr, int16_t v,
                        const void *o);
size_t kafka_struct_size(const struct kafka_struct_desc *d, int16_t v, const void *o);
/*
 * Records by reference (the zero-copy Fetch path): encoding with a kafka_refs leaves every
 * records value of at least min_len bytes out of the output buffer. Its length prefix is
 * written as usual; the bytes themselves become a splice entry {at, ptr, len}: "insert len bytes
 * from ptr at offset `at` of the contiguous output". The wire message is the contiguous output
 * with every splice inserted at its offset, byte for byte what kafka_struct_encode writes.
 *
 *   1. kafka_struct_size_refs(): the wire size (as kafka_struct_size), and in refs->planned /
 *      planned_bytes how many records values and bytes will be referenced;
 *   2. size the output buffer (wire size - planned_bytes) and refs->v (planned entries), set
 *      refs->base to the start of the output buffer and refs->cap;
 *   3. kafka_struct_encode_refs(): entries in refs->v[0..n), in wire order (at ascending).
 * The referenced bytes are not copied: they must stay alive and unchanged until the message
 * has been sent. Without refs (NULL) the functions behave as kafka_struct_size/_encode.
 */
typedef struct kafka_ref {
    size_t at;          /* offset in the contiguous output where the bytes belong */
    const uint8_t *ptr; /* the referenced records */
    size_t len;
} kafka_ref;
typedef struct kafka_refs {
    size_t min_len;       /* in: records values of at least this many bytes (> 0) go by ref */
    kafka_ref *v;         /* in: splice entries (cap of them) */
    int32_t cap;
    const uint8_t *base;  /* in: start of the output buffer (offsets are relative to it) */
    int32_t n;            /* out (encode): entries written */
    int32_t planned;      /* out (size): records values that will go by reference */
    size_t planned_bytes; /* out (size): their bytes */
} kafka_refs;
size_t kafka_struct_size_refs(const struct kafka_struct_desc *d, int16_t v, const void *o,
                              kafka_refs *refs);
/* Returns 0, AL_EUNSUPPORTED (version), AL_EINVAL (a null or invalid value), AL_EMALFORMED
 * (more references than refs->cap) or the writer's error. */
int kafka_struct_encode_refs(const struct kafka_struct_desc *d, al_wr *wr, int16_t v,
                             const void *o, kafka_refs *refs);
/* Prints struct o as one JSON object: the fields present in version v, with Kafka's names;
 * bytes/records as {"len":N}, uuids as 32 hex digits, null values as null. Tools only. */
void kafka_struct_print_json(FILE *out, const struct kafka_struct_desc *d, int16_t v,
                             const void *o);

/*
 * Test filler state: the generated kafka_M_fill_test functions (kafka_codec_fill.c) fill every
 * field present in a version with pseudo-random non-default values from this state.
 * `tagged`: also fill tagged fields (else they stay at their defaults, i.e. absent on the wire).
 * `nulls`: sometimes make nullable fields null. Strings, bytes and arrays come from `arena`.
 */
typedef struct kafka_filler {
    uint64_t rng;
    kafka_arena *arena;
    bool tagged;
    bool nulls;
    int max_count; /* array lengths are 0..max_count (1..max_count when > 0 is wanted) */
} kafka_filler;

uint64_t kafka_fill_u64(kafka_filler *f);
/* Random string of 1..12 lowercase letters, or null (when nullable and f->nulls, 1 in 5). */
void kafka_fill_str(kafka_filler *f, kafka_str *s, bool nullable);
void kafka_fill_bytes(kafka_filler *f, kafka_bytes *b, bool nullable);
void kafka_fill_uuid(kafka_filler *f, kafka_uuid *u);
/* An array count: -1 (1 in 5 when nullable and f->nulls), else 1..max_count. */
int32_t kafka_fill_count(kafka_filler *f, bool nullable);
/* Arena memory for `n` elements of `size` bytes, zeroed; aborts if the arena is exhausted
 * (test code only: the caller sizes the arena). */
void *kafka_fill_alloc(kafka_filler *f, int32_t n, size_t size);
/* Fills struct `o` (table d) for version v: every field present in v gets a pseudo-random
 * value (tagged ones only when f->tagged), the rest their defaults. */
void kafka_struct_fill(const struct kafka_struct_desc *d, void *o, int16_t v, kafka_filler *f);

#endif
