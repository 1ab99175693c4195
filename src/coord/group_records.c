/* group_records.c — __consumer_offsets record formats, the group -> partition hash and the
 * consumer subscription parser (contracts in group_records.h). */
#include "coord/group_records.h"

#include "base/cursor.h"

/* ---- Java String.hashCode over UTF-16 code units ---- */

/* Decodes one UTF-8 code point at s[*i] (n bytes); malformed input yields U+FFFD and consumes
 * one byte, like Java's replacing decoder does for each malformed byte sequence start. */
static uint32_t utf8_next(const uint8_t *s, size_t n, size_t *i)
{
    uint8_t b = s[*i];
    uint32_t cp, min;
    size_t need;
    if (b < 0x80) {
        (*i)++;
        return b;
    } else if ((b & 0xe0) == 0xc0) {
        cp = b & 0x1f, need = 1, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
        cp = b & 0x0f, need = 2, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
        cp = b & 0x07, need = 3, min = 0x10000;
    } else {
        (*i)++;
        return 0xfffd;
    }
    if (n - *i <= need) { /* not enough bytes left */
        (*i)++;
        return 0xfffd;
    }
    for (size_t k = 1; k <= need; k++) {
        uint8_t c = s[*i + k];
        if ((c & 0xc0) != 0x80) {
            (*i)++;
            return 0xfffd;
        }
        cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        (*i)++;
        return 0xfffd;
    }
    *i += need + 1;
    return cp;
}

int32_t coord_java_hash(const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    uint32_t h = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t cp = utf8_next(u, n, &i);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            h = 31 * h + (0xd800 + (cp >> 10));
            h = 31 * h + (0xdc00 + (cp & 0x3ff));
        } else {
            h = 31 * h + cp;
        }
    }
    return (int32_t)h;
}

int32_t coord_partition_for(const char *key, size_t n, int32_t partitions)
{
    AL_ASSERT(partitions > 0);
    int32_t h = coord_java_hash(key, n);
    int32_t a = h == INT32_MIN ? 0 : (h < 0 ? -h : h);
    return a % partitions;
}

/* ---- encoding (a counting writer: buf NULL just measures) ---- */

struct enc {
    uint8_t *p, *end;
    size_t n;
    bool overflow;
};

static void enc_bytes(struct enc *e, const void *src, size_t len)
{
    if (e->p) {
        if ((size_t)(e->end - e->p) < len) {
            e->overflow = true;
        } else if (len) {
            memcpy(e->p, src, len);
            e->p += len;
        }
    }
    e->n += len;
}

static void enc_u16(struct enc *e, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    enc_bytes(e, b, 2);
}

static void enc_u32(struct enc *e, uint32_t v)
{
    uint8_t b[4];
    al_put_be32(b, v);
    enc_bytes(e, b, 4);
}

static void enc_u64(struct enc *e, uint64_t v)
{
    uint8_t b[8];
    al_put_be64(b, v);
    enc_bytes(e, b, 8);
}

/* string (nullable when s is NULL), int16 length; longer than INT16_MAX is an overflow */
static void enc_str(struct enc *e, const char *s, int32_t len)
{
    if (!s) {
        enc_u16(e, 0xffff);
        return;
    }
    if (len < 0) len = (int32_t)strlen(s);
    if (len > INT16_MAX) {
        e->overflow = true;
        return;
    }
    enc_u16(e, (uint16_t)len);
    enc_bytes(e, s, (size_t)len);
}

static void enc_cstr(struct enc *e, struct coord_str s)
{
    enc_str(e, s.len < 0 ? NULL : (s.p ? s.p : ""), s.len < 0 ? -1 : s.len);
}

static void enc_blob(struct enc *e, const uint8_t *p, int32_t len)
{
    if (len < 0) len = 0; /* the schema's bytes fields are not nullable */
    enc_u32(e, (uint32_t)len);
    enc_bytes(e, p, (size_t)len);
}

static int enc_done(struct enc *e)
{
    if (e->overflow || e->n > INT32_MAX) return AL_ETOOLARGE;
    return (int)e->n;
}

static struct enc enc_make(uint8_t *buf, size_t cap)
{
    struct enc e = {buf, buf ? buf + cap : NULL, 0, false};
    return e;
}

int group_offset_key_encode(uint8_t *buf, size_t cap, const char *group, const char *topic,
                            int32_t partition)
{
    struct enc e = enc_make(buf, cap);
    enc_u16(&e, GROUP_KEY_OFFSET_COMMIT);
    enc_str(&e, group, -1);
    enc_str(&e, topic, -1);
    enc_u32(&e, (uint32_t)partition);
    return enc_done(&e);
}

int group_offset_value_encode(uint8_t *buf, size_t cap, int64_t offset, int32_t leader_epoch,
                              const char *metadata, int64_t commit_ts)
{
    struct enc e = enc_make(buf, cap);
    enc_u16(&e, GROUP_VALUE_OFFSET_COMMIT);
    enc_u64(&e, (uint64_t)offset);
    enc_u32(&e, (uint32_t)leader_epoch);
    enc_str(&e, metadata ? metadata : "", -1);
    enc_u64(&e, (uint64_t)commit_ts);
    return enc_done(&e);
}

int group_offset_value_encode_v1(uint8_t *buf, size_t cap, int64_t offset, const char *metadata,
                                 int64_t commit_ts, int64_t expire_ts)
{
    struct enc e = enc_make(buf, cap);
    enc_u16(&e, 1);
    enc_u64(&e, (uint64_t)offset);
    enc_str(&e, metadata ? metadata : "", -1);
    enc_u64(&e, (uint64_t)commit_ts);
    enc_u64(&e, (uint64_t)expire_ts);
    return enc_done(&e);
}

int group_metadata_key_encode(uint8_t *buf, size_t cap, const char *group)
{
    struct enc e = enc_make(buf, cap);
    enc_u16(&e, GROUP_KEY_GROUP_METADATA);
    enc_str(&e, group, -1);
    return enc_done(&e);
}

int group_metadata_value_encode(uint8_t *buf, size_t cap, const struct group_record_meta *m)
{
    struct enc e = enc_make(buf, cap);
    enc_u16(&e, GROUP_VALUE_GROUP_METADATA);
    struct coord_str pt = m->protocol_type;
    if (pt.len < 0) pt = (struct coord_str){"", 0}; /* not nullable */
    enc_cstr(&e, pt);
    enc_u32(&e, (uint32_t)m->generation);
    enc_cstr(&e, m->protocol);
    enc_cstr(&e, m->leader);
    enc_u64(&e, (uint64_t)m->state_ts);
    enc_u32(&e, (uint32_t)m->nmembers);
    for (int32_t i = 0; i < m->nmembers; i++) {
        const struct group_record_member *mm = &m->members[i];
        enc_cstr(&e, mm->member_id);
        enc_cstr(&e, mm->group_instance_id);
        enc_cstr(&e, mm->client_id);
        enc_cstr(&e, mm->client_host);
        enc_u32(&e, (uint32_t)mm->rebalance_timeout_ms);
        enc_u32(&e, (uint32_t)mm->session_timeout_ms);
        enc_blob(&e, mm->subscription, mm->subscription_len);
        enc_blob(&e, mm->assignment, mm->assignment_len);
    }
    return enc_done(&e);
}

/* ---- decoding ---- */

/* Reads a string in the classic (int16 length) or compact (uvarint length + 1) form. */
static struct coord_str rd_str(al_rd *rd, bool flexible)
{
    struct coord_str s = {NULL, -1};
    int64_t len;
    if (flexible) {
        len = (int64_t)al_rd_uvarint(rd) - 1;
    } else {
        len = al_rd_i16(rd);
    }
    if (rd->err) return s;
    if (len < -1) {
        al_rd_fail(rd, AL_EMALFORMED);
        return s;
    }
    if (len == -1) return s;
    const uint8_t *p = al_rd_bytes(rd, (size_t)len);
    if (!p) return s;
    s.p = (const char *)p;
    s.len = (int32_t)len;
    return s;
}

static const uint8_t *rd_blob(al_rd *rd, bool flexible, int32_t *out_len)
{
    int64_t len = flexible ? (int64_t)al_rd_uvarint(rd) - 1 : al_rd_i32(rd);
    *out_len = -1;
    if (rd->err) return NULL;
    if (len < -1 || len > INT32_MAX) {
        al_rd_fail(rd, AL_EMALFORMED);
        return NULL;
    }
    if (len == -1) return NULL;
    const uint8_t *p = al_rd_bytes(rd, (size_t)len);
    if (p) *out_len = (int32_t)len;
    return p;
}

static int32_t rd_count(al_rd *rd, bool flexible)
{
    int64_t n = flexible ? (int64_t)al_rd_uvarint(rd) - 1 : al_rd_i32(rd);
    if (rd->err) return 0;
    if (n < -1 || n > INT32_MAX) {
        al_rd_fail(rd, AL_EMALFORMED);
        return 0;
    }
    return n < 0 ? 0 : (int32_t)n;
}

/* Skips a flexible struct's tagged fields (bounded by the buffer). */
static void rd_skip_tags(al_rd *rd)
{
    uint32_t n = al_rd_uvarint(rd);
    for (uint32_t i = 0; i < n && !rd->err; i++) {
        al_rd_uvarint(rd); /* tag */
        uint32_t sz = al_rd_uvarint(rd);
        al_rd_bytes(rd, sz);
    }
}

int group_key_decode(const uint8_t *buf, size_t len, struct group_record_key *k)
{
    memset(k, 0, sizeof(*k));
    al_rd rd = al_rd_make(buf, len);
    k->version = al_rd_i16(&rd);
    if (rd.err) return rd.err;
    if (k->version == 0 || k->version == 1) {
        k->kind = GROUP_KEY_KIND_OFFSET;
        k->group = rd_str(&rd, false);
        k->topic = rd_str(&rd, false);
        k->partition = al_rd_i32(&rd);
        if (!rd.err && (k->group.len < 0 || k->topic.len < 0)) return AL_EMALFORMED;
    } else if (k->version == 2) {
        k->kind = GROUP_KEY_KIND_GROUP;
        k->group = rd_str(&rd, false);
        if (!rd.err && k->group.len < 0) return AL_EMALFORMED;
    } else {
        k->kind = GROUP_KEY_KIND_OTHER;
        return 0;
    }
    return rd.err;
}

int group_offset_value_decode(const uint8_t *buf, size_t len, struct group_record_offset *v)
{
    memset(v, 0, sizeof(*v));
    v->leader_epoch = -1;
    v->expire_ts = -1;
    al_rd rd = al_rd_make(buf, len);
    int16_t ver = al_rd_i16(&rd);
    if (rd.err) return rd.err;
    if (ver < 0 || ver > 4) return AL_EUNSUPPORTED;
    bool flex = ver >= 4;
    v->offset = al_rd_i64(&rd);
    if (ver >= 3) v->leader_epoch = al_rd_i32(&rd);
    v->metadata = rd_str(&rd, flex);
    v->commit_ts = al_rd_i64(&rd);
    if (ver == 1) v->expire_ts = al_rd_i64(&rd);
    if (flex) rd_skip_tags(&rd);
    return rd.err;
}

/* Decodes a GroupMetadata value; when members is NULL only counts. */
static int meta_decode(const uint8_t *buf, size_t len, struct group_record_meta *m,
                       struct group_record_member *members, int32_t max_members)
{
    memset(m, 0, sizeof(*m));
    m->state_ts = -1;
    al_rd rd = al_rd_make(buf, len);
    int16_t ver = al_rd_i16(&rd);
    if (rd.err) return rd.err;
    if (ver < 0 || ver > 4) return AL_EUNSUPPORTED;
    bool flex = ver >= 4;
    m->protocol_type = rd_str(&rd, flex);
    m->generation = al_rd_i32(&rd);
    m->protocol = rd_str(&rd, flex);
    m->leader = rd_str(&rd, flex);
    if (ver >= 2) m->state_ts = al_rd_i64(&rd);
    m->nmembers = rd_count(&rd, flex);
    if (rd.err) return rd.err;
    if ((size_t)m->nmembers > al_rd_left(&rd) / 8) return AL_EMALFORMED; /* >= 8 bytes each */
    if (!members) return 0;
    if (m->nmembers > max_members) return AL_ETOOLARGE;
    m->members = members;
    for (int32_t i = 0; i < m->nmembers && !rd.err; i++) {
        struct group_record_member *mm = &members[i];
        memset(mm, 0, sizeof(*mm));
        mm->group_instance_id = (struct coord_str){NULL, -1};
        mm->member_id = rd_str(&rd, flex);
        if (ver >= 3) mm->group_instance_id = rd_str(&rd, flex);
        mm->client_id = rd_str(&rd, flex);
        mm->client_host = rd_str(&rd, flex);
        if (ver >= 1) mm->rebalance_timeout_ms = al_rd_i32(&rd);
        mm->session_timeout_ms = al_rd_i32(&rd);
        if (ver == 0) mm->rebalance_timeout_ms = mm->session_timeout_ms;
        mm->subscription = rd_blob(&rd, flex, &mm->subscription_len);
        mm->assignment = rd_blob(&rd, flex, &mm->assignment_len);
        if (flex) rd_skip_tags(&rd);
        if (!rd.err && (mm->member_id.len < 0 || mm->client_id.len < 0 ||
                        mm->client_host.len < 0))
            return AL_EMALFORMED;
    }
    if (flex) rd_skip_tags(&rd);
    return rd.err;
}

int group_metadata_value_decode(const uint8_t *buf, size_t len, struct group_record_meta *m,
                                struct group_record_member *members, int32_t max_members)
{
    AL_ASSERT(members || max_members == 0);
    if (!members) {
        int rc = meta_decode(buf, len, m, NULL, 0);
        if (rc == 0 && m->nmembers > 0) return AL_ETOOLARGE;
        return rc;
    }
    return meta_decode(buf, len, m, members, max_members);
}

int32_t group_metadata_value_count(const uint8_t *buf, size_t len)
{
    struct group_record_meta m;
    int rc = meta_decode(buf, len, &m, NULL, 0);
    return rc < 0 ? rc : m.nmembers;
}

int group_subscription_topics(const uint8_t *buf, size_t len,
                              void (*visit)(void *arg, const char *topic, size_t n), void *arg)
{
    al_rd rd = al_rd_make(buf, len);
    int16_t ver = al_rd_i16(&rd);
    if (rd.err) return rd.err;
    if (ver < 0) return AL_EMALFORMED;
    int32_t n = al_rd_i32(&rd);
    if (rd.err) return rd.err;
    if (n < 0 || (size_t)n > al_rd_left(&rd) / 2) return AL_EMALFORMED;
    for (int32_t i = 0; i < n; i++) {
        struct coord_str t = rd_str(&rd, false);
        if (rd.err) return rd.err;
        if (t.len < 0) return AL_EMALFORMED;
        if (visit) visit(arg, t.p, (size_t)t.len);
    }
    return n;
}
