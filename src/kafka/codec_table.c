/*
 * codec_table.c — the table-driven Kafka codec: init, equal, decode, encode, size and the test
 * filler for any message or nested struct described by a kafka_struct_desc (generated into
 * src/kafka/gen/ from the Kafka schemas; see codec.h).
 *
 * Wire rules: classic vs flexible (compact strings/bytes/arrays as uvarint N+1, a tagged-field
 * section at the end of every struct in flexible versions), nullable versions, tagged fields
 * (written only when not default, unknown tags skipped, a known tag's size must match what its
 * value used), field-level flexible overrides, defaults, version ranges, ignorable fields.
 *
 * Recursion follows the schema's struct nesting, which is fixed and shallow; it is also capped
 * at KAFKA_MAX_DEPTH. Decoding reads only through al_rd and checks every count against the
 * bytes left before allocating from the arena.
 */
#include "kafka/codec.h"

#define KAFKA_MAX_DEPTH 16

/* Size in bytes of one element of type t in a C array (struct elements: sub->size). */
static size_t kafka_elem_size(const struct kafka_field_desc *f)
{
    switch (f->type) {
    case KAFKA_T_BOOL: return sizeof(bool);
    case KAFKA_T_INT8: return 1;
    case KAFKA_T_INT16:
    case KAFKA_T_UINT16: return 2;
    case KAFKA_T_INT32: return 4;
    case KAFKA_T_INT64: return 8;
    case KAFKA_T_FLOAT64: return sizeof(double);
    case KAFKA_T_STRING: return sizeof(kafka_str);
    case KAFKA_T_BYTES:
    case KAFKA_T_RECORDS: return sizeof(kafka_bytes);
    case KAFKA_T_UUID: return sizeof(kafka_uuid);
    case KAFKA_T_STRUCT: return f->sub->size;
    }
    AL_PANIC("kafka codec: bad field type %d", f->type);
}

/* Fixed wire size of scalar types (0 for variable-size ones). */
static size_t kafka_fixed_size(uint8_t t)
{
    switch (t) {
    case KAFKA_T_BOOL:
    case KAFKA_T_INT8: return 1;
    case KAFKA_T_INT16:
    case KAFKA_T_UINT16: return 2;
    case KAFKA_T_INT32: return 4;
    case KAFKA_T_INT64:
    case KAFKA_T_FLOAT64: return 8;
    case KAFKA_T_UUID: return 16;
    default: return 0;
    }
}

static int64_t kafka_get_int(uint8_t t, const void *p)
{
    switch (t) {
    case KAFKA_T_BOOL: return *(const bool *)p;
    case KAFKA_T_INT8: return *(const int8_t *)p;
    case KAFKA_T_INT16: return *(const int16_t *)p;
    case KAFKA_T_UINT16: return *(const uint16_t *)p;
    case KAFKA_T_INT32: return *(const int32_t *)p;
    case KAFKA_T_INT64: return *(const int64_t *)p;
    default: AL_PANIC("kafka codec: not an integer type %d", t);
    }
}

static void kafka_set_int(uint8_t t, void *p, int64_t v)
{
    switch (t) {
    case KAFKA_T_BOOL: *(bool *)p = v != 0; break;
    case KAFKA_T_INT8: *(int8_t *)p = (int8_t)v; break;
    case KAFKA_T_INT16: *(int16_t *)p = (int16_t)v; break;
    case KAFKA_T_UINT16: *(uint16_t *)p = (uint16_t)v; break;
    case KAFKA_T_INT32: *(int32_t *)p = (int32_t)v; break;
    case KAFKA_T_INT64: *(int64_t *)p = v; break;
    default: AL_PANIC("kafka codec: not an integer type %d", t);
    }
}

static inline bool kafka_is_int(uint8_t t)
{
    return t <= KAFKA_T_INT64;
}

static inline void *kafka_at(void *o, uint32_t off)
{
    return (char *)o + off;
}

static inline const void *kafka_cat(const void *o, uint32_t off)
{
    return (const char *)o + off;
}

/* --- init / equal / is_default --- */

static void kafka_struct_init_depth(const struct kafka_struct_desc *d, void *o, int depth)
{
    AL_ASSERT(depth < KAFKA_MAX_DEPTH);
    memset(o, 0, d->size);
    for (uint16_t i = 0; i < d->nfields; i++) {
        const struct kafka_field_desc *f = &d->fields[i];
        void *p = kafka_at(o, f->off);
        if (f->array) {
            if (f->default_null) *(int32_t *)kafka_at(o, f->aux_off) = -1;
            continue;
        }
        switch (f->type) {
        case KAFKA_T_STRUCT:
            kafka_struct_init_depth(f->sub, p, depth + 1);
            if (f->nullable_struct) *(bool *)kafka_at(o, f->aux_off) = f->default_null;
            break;
        case KAFKA_T_FLOAT64: *(double *)p = f->def_f64; break;
        case KAFKA_T_STRING: {
            kafka_str *s = p;
            s->ptr = f->default_null ? NULL : f->def_str;
            s->len = f->default_null ? -1 : f->def_str_len;
            break;
        }
        case KAFKA_T_BYTES:
        case KAFKA_T_RECORDS: ((kafka_bytes *)p)->len = f->default_null ? -1 : 0; break;
        case KAFKA_T_UUID: break;
        default: kafka_set_int(f->type, p, f->def_int); break;
        }
    }
}

void kafka_struct_init(const struct kafka_struct_desc *d, void *o)
{
    kafka_struct_init_depth(d, o, 0);
}

static bool kafka_struct_equal_depth(const struct kafka_struct_desc *d, const void *x,
                                     const void *y, int depth);

/* Equality of one value (not an array) of f's element type. */
static bool kafka_value_equal(const struct kafka_field_desc *f, const void *a, const void *b,
                              int depth)
{
    switch (f->type) {
    case KAFKA_T_STRUCT: return kafka_struct_equal_depth(f->sub, a, b, depth + 1);
    case KAFKA_T_FLOAT64: return kafka_f64_equal(*(const double *)a, *(const double *)b);
    case KAFKA_T_STRING: return kafka_str_equal(*(const kafka_str *)a, *(const kafka_str *)b);
    case KAFKA_T_BYTES:
    case KAFKA_T_RECORDS:
        return kafka_bytes_equal(*(const kafka_bytes *)a, *(const kafka_bytes *)b);
    case KAFKA_T_UUID: return kafka_uuid_equal(a, b);
    default: return kafka_get_int(f->type, a) == kafka_get_int(f->type, b);
    }
}

static bool kafka_struct_equal_depth(const struct kafka_struct_desc *d, const void *x,
                                     const void *y, int depth)
{
    AL_ASSERT(depth < KAFKA_MAX_DEPTH);
    for (uint16_t i = 0; i < d->nfields; i++) {
        const struct kafka_field_desc *f = &d->fields[i];
        const void *a = kafka_cat(x, f->off), *b = kafka_cat(y, f->off);
        if (f->array) {
            int32_t n = *(const int32_t *)kafka_cat(x, f->aux_off);
            if (n != *(const int32_t *)kafka_cat(y, f->aux_off)) return false;
            const char *ea = *(const char *const *)a, *eb = *(const char *const *)b;
            size_t es = kafka_elem_size(f);
            for (int32_t k = 0; k < n; k++)
                if (!kafka_value_equal(f, ea + (size_t)k * es, eb + (size_t)k * es, depth))
                    return false;
            continue;
        }
        if (f->nullable_struct) {
            bool na = *(const bool *)kafka_cat(x, f->aux_off);
            if (na != *(const bool *)kafka_cat(y, f->aux_off)) return false;
        }
        if (!kafka_value_equal(f, a, b, depth)) return false;
    }
    return true;
}

bool kafka_struct_equal(const struct kafka_struct_desc *d, const void *x, const void *y)
{
    return kafka_struct_equal_depth(d, x, y, 0);
}

static bool kafka_struct_is_default(const struct kafka_struct_desc *d, const void *o,
                                    int depth);

/* True when field f of struct o holds its default value. */
static bool kafka_field_is_default(const struct kafka_field_desc *f, const void *o, int depth)
{
    const void *p = kafka_cat(o, f->off);
    if (f->array) return *(const int32_t *)kafka_cat(o, f->aux_off) == (f->default_null ? -1 : 0);
    switch (f->type) {
    case KAFKA_T_STRUCT:
        if (f->nullable_struct) {
            bool is_null = *(const bool *)kafka_cat(o, f->aux_off);
            if (is_null) return f->default_null;
            if (f->default_null) return false;
        }
        return kafka_struct_is_default(f->sub, p, depth + 1);
    case KAFKA_T_FLOAT64: return kafka_f64_equal(*(const double *)p, f->def_f64);
    case KAFKA_T_STRING: {
        const kafka_str *s = p;
        if (f->default_null) return s->len == -1;
        return s->len == f->def_str_len &&
               (s->len <= 0 || memcmp(s->ptr, f->def_str, (size_t)s->len) == 0);
    }
    case KAFKA_T_BYTES:
    case KAFKA_T_RECORDS: return ((const kafka_bytes *)p)->len == (f->default_null ? -1 : 0);
    case KAFKA_T_UUID: return kafka_uuid_equal(p, &(kafka_uuid){{0}});
    case KAFKA_T_INT32: return *(const int32_t *)p == f->def_int; /* the common cases inline */
    case KAFKA_T_INT64: return *(const int64_t *)p == f->def_int;
    default: return kafka_get_int(f->type, p) == f->def_int;
    }
}

static bool kafka_struct_is_default(const struct kafka_struct_desc *d, const void *o,
                                    int depth)
{
    AL_ASSERT(depth < KAFKA_MAX_DEPTH);
    for (uint16_t i = 0; i < d->nfields; i++)
        if (!kafka_field_is_default(&d->fields[i], o, depth)) return false;
    return true;
}

/* --- decode --- */

static int kafka_struct_decode_depth(const struct kafka_struct_desc *d, al_rd *rd, int16_t v,
                                     void *o, kafka_arena *a, int depth);

/* Decodes one value (not an array) of f's element type into p. `elem`: an array element
 * (never null). */
static int kafka_value_decode(const struct kafka_field_desc *f, al_rd *rd, int16_t v, void *o,
                              void *p, bool elem, kafka_arena *a, int depth)
{
    uint32_t bit = 1u << v;
    bool compact = f->flexible & bit, nullable = !elem && (f->nullable & bit);
    switch (f->type) {
    case KAFKA_T_BOOL: *(bool *)p = al_rd_u8(rd) != 0; break;
    case KAFKA_T_INT8: *(int8_t *)p = al_rd_i8(rd); break;
    case KAFKA_T_INT16: *(int16_t *)p = al_rd_i16(rd); break;
    case KAFKA_T_UINT16: *(uint16_t *)p = al_rd_u16(rd); break;
    case KAFKA_T_INT32: *(int32_t *)p = al_rd_i32(rd); break;
    case KAFKA_T_INT64: *(int64_t *)p = al_rd_i64(rd); break;
    case KAFKA_T_FLOAT64: *(double *)p = al_rd_f64(rd); break;
    case KAFKA_T_STRING: return kafka_rd_string(rd, compact, nullable, p);
    case KAFKA_T_BYTES:
    case KAFKA_T_RECORDS: return kafka_rd_bytes(rd, compact, nullable, p);
    case KAFKA_T_UUID: kafka_rd_uuid(rd, p); break;
    case KAFKA_T_STRUCT:
        if (!elem && f->nullable_struct) {
            bool *is_null = kafka_at(o, f->aux_off);
            *is_null = false;
            if (nullable) {
                int8_t marker = al_rd_i8(rd);
                if (rd->err) return rd->err;
                *is_null = marker < 0;
            }
            if (*is_null) {
                kafka_struct_init_depth(f->sub, p, depth + 1);
                return 0;
            }
        }
        return kafka_struct_decode_depth(f->sub, rd, v, p, a, depth + 1);
    }
    return rd->err;
}

/* Decodes field f (value or array) of struct o. */
static int kafka_field_decode(const struct kafka_field_desc *f, al_rd *rd, int16_t v, void *o,
                              kafka_arena *a, int depth)
{
    void *p = kafka_at(o, f->off);
    if (!f->array) return kafka_value_decode(f, rd, v, o, p, false, a, depth);
    uint32_t bit = 1u << v;
    int32_t *count = kafka_at(o, f->aux_off);
    void **items = p;
    int rc = kafka_rd_count(rd, f->flexible & bit, f->nullable & bit, count);
    if (rc) return rc;
    *items = NULL;
    if (*count <= 0) return 0;
    size_t es = kafka_elem_size(f);
    char *e = kafka_arena_alloc(a, (size_t)*count * es);
    if (!e) {
        al_rd_fail(rd, AL_ETOOLARGE);
        return AL_ETOOLARGE;
    }
    *items = e;
    for (int32_t k = 0; k < *count; k++) {
        rc = kafka_value_decode(f, rd, v, o, e + (size_t)k * es, true, a, depth);
        if (rc) return rc;
        if (rd->err) return rd->err;
    }
    return 0;
}

/* The tagged-field section: unknown tags are skipped; a known tag's value must use exactly
 * the bytes its size says. */
static int kafka_tags_decode(const struct kafka_struct_desc *d, al_rd *rd, int16_t v, void *o,
                             kafka_arena *a, int depth)
{
    uint32_t bit = 1u << v;
    uint32_t ntags = al_rd_uvarint(rd);
    if (rd->err) return rd->err;
    if (ntags > al_rd_left(rd)) { /* every tag takes at least two bytes */
        al_rd_fail(rd, AL_ETRUNCATED);
        return AL_ETRUNCATED;
    }
    for (uint32_t t = 0; t < ntags; t++) {
        uint32_t tag = al_rd_uvarint(rd);
        uint32_t tsize = al_rd_uvarint(rd);
        const uint8_t *tp = al_rd_bytes(rd, tsize);
        if (!tp) return rd->err;
        for (uint16_t k = 0; k < d->ntagged; k++) {
            const struct kafka_field_desc *f = &d->fields[d->tag_order[k]];
            if ((uint32_t)f->tag != tag || !(f->tagged & bit)) continue;
            al_rd sub = al_rd_make(tp, tsize);
            int rc = kafka_field_decode(f, &sub, v, o, a, depth);
            if (!rc) rc = sub.err;
            if (!rc && al_rd_left(&sub)) rc = AL_EMALFORMED;
            if (rc) {
                al_rd_fail(rd, rc);
                return rc;
            }
            break;
        }
    }
    return rd->err;
}

static int kafka_struct_decode_depth(const struct kafka_struct_desc *d, al_rd *rd, int16_t v,
                                     void *o, kafka_arena *a, int depth)
{
    if (depth >= KAFKA_MAX_DEPTH) {
        al_rd_fail(rd, AL_EMALFORMED);
        return AL_EMALFORMED;
    }
    uint32_t bit = 1u << v;
    kafka_struct_init_depth(d, o, depth);
    for (uint16_t i = 0; i < d->nfields; i++) {
        const struct kafka_field_desc *f = &d->fields[i];
        if (!(f->versions & bit) || (f->tagged & bit)) continue;
        int rc = kafka_field_decode(f, rd, v, o, a, depth);
        if (rc) return rc;
    }
    if (d->flexible & bit) return kafka_tags_decode(d, rd, v, o, a, depth);
    return rd->err;
}

int kafka_struct_decode(const struct kafka_struct_desc *d, al_rd *rd, int16_t v, void *o,
                        kafka_arena *a)
{
    if (v < d->min_version || v > d->max_version) return AL_EUNSUPPORTED;
    return kafka_struct_decode_depth(d, rd, v, o, a, 0);
}

/* --- size --- */

/* Records by reference: a records value of at least refs->min_len bytes is left out of the
 * contiguous encoding (see codec.h). The same rule decides in the size and encode passes. */
static inline bool kafka_ref_wanted(const kafka_refs *refs, const kafka_bytes *b)
{
    return refs && b->len > 0 && (size_t)b->len >= refs->min_len;
}

static size_t kafka_struct_size_depth(const struct kafka_struct_desc *d, int16_t v,
                                      const void *o, kafka_refs *refs, int depth);

static size_t kafka_value_size(const struct kafka_field_desc *f, int16_t v, const void *o,
                               const void *p, bool elem, kafka_refs *refs, int depth)
{
    bool compact = f->flexible & (1u << v);
    size_t fixed = kafka_fixed_size(f->type);
    if (fixed) return fixed;
    switch (f->type) {
    case KAFKA_T_STRING: return kafka_string_size(compact, *(const kafka_str *)p);
    case KAFKA_T_RECORDS:
        if (kafka_ref_wanted(refs, p)) { /* planning pass: count what will be referenced */
            refs->planned++;
            refs->planned_bytes += (size_t)((const kafka_bytes *)p)->len;
        }
        return kafka_bytes_size(compact, *(const kafka_bytes *)p);
    case KAFKA_T_BYTES: return kafka_bytes_size(compact, *(const kafka_bytes *)p);
    case KAFKA_T_STRUCT: {
        size_t n = 0;
        if (!elem && f->nullable_struct) {
            if (f->nullable & (1u << v)) n += 1;
            if (*(const bool *)kafka_cat(o, f->aux_off)) return n;
        }
        return n + kafka_struct_size_depth(f->sub, v, p, refs, depth + 1);
    }
    default: AL_PANIC("kafka codec: size of type %d", f->type);
    }
}

static size_t kafka_field_size(const struct kafka_field_desc *f, int16_t v, const void *o,
                               kafka_refs *refs, int depth)
{
    const void *p = kafka_cat(o, f->off);
    if (!f->array) return kafka_value_size(f, v, o, p, false, refs, depth);
    int32_t n = *(const int32_t *)kafka_cat(o, f->aux_off);
    size_t size = kafka_count_size(f->flexible & (1u << v), n);
    if (n <= 0) return size;
    size_t fixed = kafka_fixed_size(f->type);
    if (fixed) return size + (size_t)n * fixed;
    const char *e = *(const char *const *)p;
    size_t es = kafka_elem_size(f);
    for (int32_t k = 0; k < n; k++)
        size += kafka_value_size(f, v, o, e + (size_t)k * es, true, refs, depth);
    return size;
}

static size_t kafka_struct_size_depth(const struct kafka_struct_desc *d, int16_t v,
                                      const void *o, kafka_refs *refs, int depth)
{
    AL_ASSERT(depth < KAFKA_MAX_DEPTH);
    uint32_t bit = 1u << v;
    size_t n = 0;
    for (uint16_t i = 0; i < d->nfields; i++) {
        const struct kafka_field_desc *f = &d->fields[i];
        if (!(f->versions & bit) || (f->tagged & bit)) continue;
        n += kafka_field_size(f, v, o, refs, depth);
    }
    if (!(d->flexible & bit)) return n;
    uint32_t ntags = 0;
    for (uint16_t k = 0; k < d->ntagged; k++) {
        const struct kafka_field_desc *f = &d->fields[d->tag_order[k]];
        if (!(f->tagged & bit) || kafka_field_is_default(f, o, depth)) continue;
        size_t ts = kafka_field_size(f, v, o, refs, depth);
        n += al_uvarint_size((uint64_t)f->tag) + al_uvarint_size(ts) + ts;
        ntags++;
    }
    return n + al_uvarint_size(ntags);
}

size_t kafka_struct_size(const struct kafka_struct_desc *d, int16_t v, const void *o)
{
    if (v < d->min_version || v > d->max_version) return 0;
    return kafka_struct_size_depth(d, v, o, NULL, 0);
}

size_t kafka_struct_size_refs(const struct kafka_struct_desc *d, int16_t v, const void *o,
                              kafka_refs *refs)
{
    refs->planned = 0;
    refs->planned_bytes = 0;
    if (v < d->min_version || v > d->max_version) return 0;
    return kafka_struct_size_depth(d, v, o, refs, 0);
}

/* --- encode --- */

static int kafka_struct_encode_depth(const struct kafka_struct_desc *d, al_wr *wr, int16_t v,
                                     const void *o, kafka_refs *refs, int depth);

/* Writes a records value: its length prefix, then the bytes, or (by reference) a splice entry
 * in refs at the current position of wr instead of the bytes. */
static int kafka_records_encode(al_wr *wr, bool compact, bool nullable, const kafka_bytes *b,
                                kafka_refs *refs)
{
    if (!kafka_ref_wanted(refs, b)) return kafka_wr_bytes(wr, compact, nullable, *b);
    if (!b->ptr) return AL_EINVAL;
    if (refs->n >= refs->cap) return AL_EMALFORMED; /* the size pass planned fewer */
    if (compact) al_wr_uvarint(wr, (uint32_t)b->len + 1u);
    else al_wr_i32(wr, b->len);
    if (wr->err) return wr->err;
    refs->v[refs->n++] = (kafka_ref){.at = (size_t)(wr->p - refs->base), .ptr = b->ptr,
                                     .len = (size_t)b->len};
    return 0;
}

static int kafka_value_encode(const struct kafka_field_desc *f, al_wr *wr, int16_t v,
                              const void *o, const void *p, bool elem, kafka_refs *refs,
                              int depth)
{
    uint32_t bit = 1u << v;
    bool compact = f->flexible & bit, nullable = !elem && (f->nullable & bit);
    switch (f->type) {
    case KAFKA_T_BOOL: al_wr_u8(wr, *(const bool *)p ? 1 : 0); break;
    case KAFKA_T_INT8: al_wr_i8(wr, *(const int8_t *)p); break;
    case KAFKA_T_INT16: al_wr_i16(wr, *(const int16_t *)p); break;
    case KAFKA_T_UINT16: al_wr_u16(wr, *(const uint16_t *)p); break;
    case KAFKA_T_INT32: al_wr_i32(wr, *(const int32_t *)p); break;
    case KAFKA_T_INT64: al_wr_i64(wr, *(const int64_t *)p); break;
    case KAFKA_T_FLOAT64: al_wr_f64(wr, *(const double *)p); break;
    case KAFKA_T_STRING: return kafka_wr_string(wr, compact, nullable, *(const kafka_str *)p);
    case KAFKA_T_BYTES: return kafka_wr_bytes(wr, compact, nullable, *(const kafka_bytes *)p);
    case KAFKA_T_RECORDS: return kafka_records_encode(wr, compact, nullable, p, refs);
    case KAFKA_T_UUID: al_wr_bytes(wr, ((const kafka_uuid *)p)->b, 16); break;
    case KAFKA_T_STRUCT:
        if (!elem && f->nullable_struct) {
            bool is_null = *(const bool *)kafka_cat(o, f->aux_off);
            if (is_null && !nullable) return AL_EINVAL;
            if (nullable) al_wr_i8(wr, is_null ? -1 : 1);
            if (is_null) return 0;
        }
        return kafka_struct_encode_depth(f->sub, wr, v, p, refs, depth + 1);
    }
    return 0;
}

static int kafka_field_encode(const struct kafka_field_desc *f, al_wr *wr, int16_t v,
                              const void *o, kafka_refs *refs, int depth)
{
    const void *p = kafka_cat(o, f->off);
    if (!f->array) return kafka_value_encode(f, wr, v, o, p, false, refs, depth);
    uint32_t bit = 1u << v;
    int32_t n = *(const int32_t *)kafka_cat(o, f->aux_off);
    const char *e = *(const char *const *)p;
    int rc = kafka_wr_count(wr, f->flexible & bit, f->nullable & bit, n, e);
    if (rc) return rc;
    size_t es = kafka_elem_size(f);
    for (int32_t k = 0; k < n; k++) {
        rc = kafka_value_encode(f, wr, v, o, e + (size_t)k * es, true, refs, depth);
        if (rc) return rc;
    }
    return 0;
}

static int kafka_struct_encode_depth(const struct kafka_struct_desc *d, al_wr *wr, int16_t v,
                                     const void *o, kafka_refs *refs, int depth)
{
    AL_ASSERT(depth < KAFKA_MAX_DEPTH);
    uint32_t bit = 1u << v;
    for (uint16_t i = 0; i < d->nfields; i++) {
        const struct kafka_field_desc *f = &d->fields[i];
        if (!(f->versions & bit) && !f->ignorable && !kafka_field_is_default(f, o, depth))
            return AL_EINVAL;
    }
    for (uint16_t i = 0; i < d->nfields; i++) {
        const struct kafka_field_desc *f = &d->fields[i];
        if (!(f->versions & bit) || (f->tagged & bit)) continue;
        int rc = kafka_field_encode(f, wr, v, o, refs, depth);
        if (rc) return rc;
    }
    if (!(d->flexible & bit)) return wr->err;
    AL_ASSERT(d->ntagged <= 32);
    uint32_t ntags = 0, present = 0; /* bit k: tagged field k is written */
    for (uint16_t k = 0; k < d->ntagged; k++) {
        const struct kafka_field_desc *f = &d->fields[d->tag_order[k]];
        if ((f->tagged & bit) && !kafka_field_is_default(f, o, depth)) {
            present |= 1u << k;
            ntags++;
        }
    }
    al_wr_uvarint(wr, ntags);
    for (uint16_t k = 0; k < d->ntagged; k++) {
        const struct kafka_field_desc *f = &d->fields[d->tag_order[k]];
        if (!(present & (1u << k))) continue;
        al_wr_uvarint(wr, (uint32_t)f->tag);
        /* The wire size of the tagged value (records inside it count in full either way). */
        al_wr_uvarint64(wr, kafka_field_size(f, v, o, NULL, depth));
        int rc = kafka_field_encode(f, wr, v, o, refs, depth);
        if (rc) return rc;
    }
    return wr->err;
}

int kafka_struct_encode(const struct kafka_struct_desc *d, al_wr *wr, int16_t v, const void *o)
{
    if (v < d->min_version || v > d->max_version) return AL_EUNSUPPORTED;
    return kafka_struct_encode_depth(d, wr, v, o, NULL, 0);
}

int kafka_struct_encode_refs(const struct kafka_struct_desc *d, al_wr *wr, int16_t v,
                             const void *o, kafka_refs *refs)
{
    if (v < d->min_version || v > d->max_version) return AL_EUNSUPPORTED;
    refs->n = 0;
    return kafka_struct_encode_depth(d, wr, v, o, refs, 0);
}

/* --- test filler --- */

static void kafka_struct_fill_depth(const struct kafka_struct_desc *d, void *o, int16_t v,
                                    kafka_filler *fl, int depth);

static void kafka_value_fill(const struct kafka_field_desc *f, void *o, void *p, int16_t v,
                             bool elem, kafka_filler *fl, int depth)
{
    bool nullable = !elem && (f->nullable & (1u << v));
    switch (f->type) {
    case KAFKA_T_FLOAT64: {
        double x = (double)(kafka_fill_u64(fl) % 1000000) / 8.0 + 0.5;
        if (kafka_f64_equal(x, elem ? 0.0 : f->def_f64)) x += 1.0;
        *(double *)p = x;
        break;
    }
    case KAFKA_T_STRING: kafka_fill_str(fl, p, nullable); break;
    case KAFKA_T_BYTES:
    case KAFKA_T_RECORDS: kafka_fill_bytes(fl, p, nullable); break;
    case KAFKA_T_UUID: kafka_fill_uuid(fl, p); break;
    case KAFKA_T_STRUCT:
        if (!elem && f->nullable_struct) {
            bool *is_null = kafka_at(o, f->aux_off);
            *is_null = nullable && fl->nulls && kafka_fill_u64(fl) % 4 == 0;
            if (*is_null) break;
        }
        kafka_struct_fill_depth(f->sub, p, v, fl, depth + 1);
        break;
    case KAFKA_T_BOOL: *(bool *)p = elem ? true : !f->def_int; break;
    default: {
        int64_t def = elem ? 0 : f->def_int;
        kafka_set_int(f->type, p, (int64_t)kafka_fill_u64(fl));
        if (kafka_get_int(f->type, p) == def) kafka_set_int(f->type, p, def ^ 1);
        break;
    }
    }
}

static void kafka_struct_fill_depth(const struct kafka_struct_desc *d, void *o, int16_t v,
                                    kafka_filler *fl, int depth)
{
    AL_ASSERT(depth < KAFKA_MAX_DEPTH);
    uint32_t bit = 1u << v;
    kafka_struct_init_depth(d, o, depth);
    for (uint16_t i = 0; i < d->nfields; i++) {
        const struct kafka_field_desc *f = &d->fields[i];
        if (!(f->versions & bit) || ((f->tagged & bit) && !fl->tagged)) continue;
        void *p = kafka_at(o, f->off);
        if (!f->array) {
            kafka_value_fill(f, o, p, v, false, fl, depth);
            continue;
        }
        int32_t *count = kafka_at(o, f->aux_off);
        *count = kafka_fill_count(fl, f->nullable & bit);
        *(void **)p = NULL;
        if (*count <= 0) continue;
        size_t es = kafka_elem_size(f);
        char *e = kafka_fill_alloc(fl, *count, es);
        *(void **)p = e;
        for (int32_t k = 0; k < *count; k++)
            kafka_value_fill(f, o, e + (size_t)k * es, v, true, fl, depth);
    }
}

void kafka_struct_fill(const struct kafka_struct_desc *d, void *o, int16_t v, kafka_filler *f)
{
    AL_ASSERT(v >= d->min_version && v <= d->max_version);
    kafka_struct_fill_depth(d, o, v, f, 0);
}
