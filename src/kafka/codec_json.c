/*
 * codec_json.c — prints any decoded Kafka message as JSON from its generated field table
 * (kafka_struct_desc): the fields present in a version, with Kafka's names. For tools and
 * debugging (`ailurus kafka-decode`), not for hot paths.
 */
#include "kafka/codec.h"

#include <inttypes.h>

#define KAFKA_JSON_MAX_DEPTH 16

static void kafka_json_str(FILE *out, const char *p, int32_t len)
{
    if (len < 0) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (int32_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f) fprintf(out, "\\u%04x", c);
        else fputc(c, out);
    }
    fputc('"', out);
}

static void kafka_json_struct(FILE *out, const struct kafka_struct_desc *d, int16_t v,
                              const void *o, int depth);

/* One value (not an array) of f's element type at p. */
static void kafka_json_value(FILE *out, const struct kafka_field_desc *f, int16_t v,
                             const void *o, const void *p, bool elem, int depth)
{
    switch (f->type) {
    case KAFKA_T_BOOL: fputs(*(const bool *)p ? "true" : "false", out); break;
    case KAFKA_T_INT8: fprintf(out, "%d", *(const int8_t *)p); break;
    case KAFKA_T_INT16: fprintf(out, "%d", *(const int16_t *)p); break;
    case KAFKA_T_UINT16: fprintf(out, "%u", *(const uint16_t *)p); break;
    case KAFKA_T_INT32: fprintf(out, "%" PRId32, *(const int32_t *)p); break;
    case KAFKA_T_INT64: fprintf(out, "%" PRId64, *(const int64_t *)p); break;
    case KAFKA_T_FLOAT64: fprintf(out, "%.17g", *(const double *)p); break;
    case KAFKA_T_STRING: {
        const kafka_str *s = p;
        kafka_json_str(out, s->ptr, s->len);
        break;
    }
    case KAFKA_T_BYTES:
    case KAFKA_T_RECORDS: {
        const kafka_bytes *b = p;
        if (b->len < 0) fputs("null", out);
        else fprintf(out, "{\"len\":%" PRId32 "}", b->len);
        break;
    }
    case KAFKA_T_UUID: {
        const kafka_uuid *u = p;
        fputc('"', out);
        for (int i = 0; i < 16; i++) fprintf(out, "%02x", u->b[i]);
        fputc('"', out);
        break;
    }
    case KAFKA_T_STRUCT:
        if (!elem && f->nullable_struct && *(const bool *)((const char *)o + f->aux_off)) {
            fputs("null", out);
            break;
        }
        kafka_json_struct(out, f->sub, v, p, depth + 1);
        break;
    default: fputs("null", out); break;
    }
}

static size_t kafka_json_elem_size(const struct kafka_field_desc *f)
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
    default: return f->sub->size;
    }
}

static void kafka_json_struct(FILE *out, const struct kafka_struct_desc *d, int16_t v,
                              const void *o, int depth)
{
    if (depth >= KAFKA_JSON_MAX_DEPTH) {
        fputs("null", out);
        return;
    }
    uint32_t bit = 1u << v;
    bool first = true;
    fputc('{', out);
    for (uint16_t i = 0; i < d->nfields; i++) {
        const struct kafka_field_desc *f = &d->fields[i];
        if (!(f->versions & bit)) continue;
        fprintf(out, "%s\"%s\":", first ? "" : ",", f->name);
        first = false;
        const void *p = (const char *)o + f->off;
        if (!f->array) {
            kafka_json_value(out, f, v, o, p, false, depth);
            continue;
        }
        int32_t n = *(const int32_t *)((const char *)o + f->aux_off);
        if (n < 0) {
            fputs("null", out);
            continue;
        }
        const char *e = *(const char *const *)p;
        size_t es = kafka_json_elem_size(f);
        fputc('[', out);
        for (int32_t k = 0; k < n; k++) {
            if (k) fputc(',', out);
            kafka_json_value(out, f, v, o, e + (size_t)k * es, true, depth);
        }
        fputc(']', out);
    }
    fputc('}', out);
}

void kafka_struct_print_json(FILE *out, const struct kafka_struct_desc *d, int16_t v,
                             const void *o)
{
    if (v < d->min_version || v > d->max_version) {
        fputs("null", out);
        return;
    }
    kafka_json_struct(out, d, v, o, 0);
}
