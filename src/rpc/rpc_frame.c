/*
 * rpc_frame.c — encoding and safe decoding of RPC frame headers, HELLO and error payloads.
 * See rpc_frame.h for the layout. Untrusted bytes are read only through cursor.h.
 */
#include "rpc/rpc_frame.h"

#include "base/crc32c.h"
#include "base/cursor.h"

void rpc_hdr_encode(uint8_t out[RPC_HDR_SIZE], uint8_t flags, uint16_t type, uint64_t corr,
                    const void *payload, uint32_t len)
{
    /* Fixed offsets into a fixed-size buffer (trusted: we write it). */
    al_put_be32(out, RPC_MAGIC);
    out[4] = RPC_VERSION;
    out[5] = flags;
    out[6] = (uint8_t)(type >> 8);
    out[7] = (uint8_t)type;
    al_put_be64(out + 8, corr);
    al_put_be32(out + 16, len);
    al_put_be32(out + 20, len ? crc32c(0, payload, len) : 0);
    al_put_be32(out + 24, crc32c(0, out, RPC_HDR_SIZE - 4));
}

int64_t rpc_frame_decode(const uint8_t *buf, size_t len, size_t max_payload, rpc_hdr *hdr)
{
    if (len < RPC_HDR_SIZE) {
        /* Refuse a wrong magic as early as its bytes are here (a stranger's stream). */
        static const uint8_t magic[4] = {0x41, 0x4c, 0x52, 0x50};
        if (len == 0) return 0;
        if (memcmp(buf, magic, AL_MIN(len, 4)) != 0) return AL_EMALFORMED;
        return 0;
    }
    if (max_payload == 0) max_payload = RPC_MAX_FRAME_DEFAULT;
    al_rd r = al_rd_make(buf, RPC_HDR_SIZE);
    uint32_t magic = al_rd_u32(&r);
    uint8_t version = al_rd_u8(&r);
    uint8_t flags = al_rd_u8(&r);
    uint16_t type = al_rd_u16(&r);
    uint64_t corr = al_rd_u64(&r);
    uint32_t plen = al_rd_u32(&r);
    uint32_t pcrc = al_rd_u32(&r);
    uint32_t hcrc = al_rd_u32(&r);
    AL_ASSERT(r.err == 0);
    if (magic != RPC_MAGIC) return AL_EMALFORMED;
    if (hcrc != crc32c(0, buf, RPC_HDR_SIZE - 4)) return AL_ECORRUPT;
    if (version != RPC_VERSION) return AL_EUNSUPPORTED;
    if ((flags & ~RPC_F_KNOWN) || ((flags & RPC_F_REQUEST) && (flags & RPC_F_RESPONSE)) ||
        ((flags & RPC_F_ERROR) && !(flags & RPC_F_RESPONSE)))
        return AL_EMALFORMED;
    if (type == 0 || type >= RPC_T_MAX) return AL_EINVAL;
    if (plen > max_payload) return AL_ETOOLARGE;
    hdr->version = version;
    hdr->flags = flags;
    hdr->type = type;
    hdr->corr = corr;
    hdr->len = plen;
    hdr->payload_crc = pcrc;
    if (len - RPC_HDR_SIZE < plen) return 0;
    if (plen && crc32c(0, buf + RPC_HDR_SIZE, plen) != pcrc) return AL_ECORRUPT;
    if (!plen && pcrc != 0) return AL_ECORRUPT;
    return (int64_t)RPC_HDR_SIZE + plen;
}

/* ---- HELLO ---- */

static void wr_str(al_wr *w, const char *s)
{
    size_t n = strlen(s);
    al_wr_u16(w, (uint16_t)n);
    al_wr_bytes(w, s, n);
}

/* Reads a u16-length string of at most max bytes into out[max + 1]. */
static void rd_str(al_rd *r, char *out, size_t max)
{
    uint16_t n = al_rd_u16(r);
    if (n > max) {
        al_rd_fail(r, AL_EMALFORMED);
        out[0] = 0;
        return;
    }
    const uint8_t *p = al_rd_bytes(r, n);
    if (!p) {
        out[0] = 0;
        return;
    }
    if (memchr(p, 0, n)) {
        al_rd_fail(r, AL_EMALFORMED);
        out[0] = 0;
        return;
    }
    memcpy(out, p, n);
    out[n] = 0;
}

int rpc_hello_encode(const rpc_hello *h, uint8_t *buf, size_t cap)
{
    if (strlen(h->cluster_id) > RPC_CLUSTER_ID_MAX || strlen(h->addr) > RPC_ADDR_MAX)
        return AL_ETOOLARGE;
    al_wr w = al_wr_make(buf, cap);
    al_wr_u16(&w, h->min_version);
    al_wr_u16(&w, h->max_version);
    al_wr_i32(&w, h->node_id);
    wr_str(&w, h->cluster_id);
    wr_str(&w, h->addr);
    if (w.err) return w.err;
    return (int)(w.p - buf);
}

int rpc_hello_decode(const uint8_t *buf, size_t len, rpc_hello *out)
{
    al_rd r = al_rd_make(buf, len);
    memset(out, 0, sizeof(*out));
    out->min_version = al_rd_u16(&r);
    out->max_version = al_rd_u16(&r);
    out->node_id = al_rd_i32(&r);
    rd_str(&r, out->cluster_id, RPC_CLUSTER_ID_MAX);
    rd_str(&r, out->addr, RPC_ADDR_MAX);
    if (r.err) return r.err;
    if (out->min_version > out->max_version || out->node_id < -1) return AL_EMALFORMED;
    return 0;
}

/* ---- error payloads ---- */

int rpc_error_encode(int err, const char *text, uint8_t *buf, size_t cap)
{
    size_t n = text ? strlen(text) : 0;
    if (n > 1024) n = 1024;
    al_wr w = al_wr_make(buf, cap);
    al_wr_i32(&w, err);
    al_wr_u16(&w, (uint16_t)n);
    al_wr_bytes(&w, text ? text : "", n);
    if (w.err) return w.err;
    return (int)(w.p - buf);
}

int rpc_error_decode(const uint8_t *buf, size_t len, int *err, char *text, size_t text_cap)
{
    al_rd r = al_rd_make(buf, len);
    int32_t code = al_rd_i32(&r);
    uint16_t n = al_rd_u16(&r);
    const uint8_t *p = al_rd_bytes(&r, n);
    if (text && text_cap) text[0] = 0;
    if (r.err || code >= 0) {
        *err = AL_EMALFORMED;
        return AL_EMALFORMED;
    }
    *err = code;
    if (text && text_cap) {
        size_t k = AL_MIN((size_t)n, text_cap - 1);
        memcpy(text, p, k);
        text[k] = 0;
        for (size_t i = 0; i < k; i++)
            if (text[i] == 0) text[i] = '?';
    }
    return 0;
}
