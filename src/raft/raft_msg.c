/*
 * raft_msg.c — the wire encoding of Raft messages for the node-to-node RPC transport:
 * versioned, big-endian, through src/base/cursor.h, and closed by a CRC32C of every byte
 * before it. Decoding is zero-copy for entry data and safe on arbitrary input.
 *
 * Body per type (after the common header: version u8, type u8, flags u8, group u64,
 * from i32, to i32, term i64):
 *   VOTE_REQ      last_offset i64, last_term i64
 *   VOTE_RESP     (nothing)
 *   APPEND_REQ    prev_offset i64, prev_term i64, commit i64, n u32,
 *                 n x { offset i64, count i32, type u8, term i64, len u32, data[len] }
 *   APPEND_RESP   match i64, hint_term i64
 *   TIMEOUT_NOW   (nothing)
 *   HB_BATCH      n u32, n x { group u64, type u8, flags u8, term i64, a i64, b i64, c i64 }
 *                 (a, b, c = prev_offset, prev_term, commit for a request;
 *                 match, hint_term, 0 for a response)
 *   SNAPSHOT      prev_offset i64, prev_term i64 (the snapshot point), commit i64,
 *                 snapshot format u8 (1), conf_len u16, conf[conf_len] (raft_config_encode),
 *                 total u64, pos u64, len u32, data[len] (one chunk of the snapshot data)
 */
#include "base/crc32c.h"
#include "base/cursor.h"
#include "raft/raft.h"

enum {
    HDR_SIZE = 1 + 1 + 1 + 8 + 4 + 4 + 8,
    ENTRY_HDR = 8 + 4 + 1 + 8 + 4,
    HB_ITEM = 8 + 1 + 1 + 8 * 4,
};

size_t raft_msg_size(const raft_msg *m)
{
    size_t n = HDR_SIZE + 4;
    switch (m->type) {
    case RAFT_MSG_VOTE_REQ: n += 16; break;
    case RAFT_MSG_APPEND_REQ:
        n += 28;
        for (uint32_t i = 0; i < m->n_entries; i++) n += ENTRY_HDR + m->entries[i].len;
        break;
    case RAFT_MSG_APPEND_RESP: n += 16; break;
    case RAFT_MSG_HB_BATCH: n += 4 + (size_t)m->n_hb * HB_ITEM; break;
    case RAFT_MSG_SNAPSHOT:
        n += 24 + 1 + 2 + raft_config_size(&m->snap_conf) + 8 + 8 + 4 + m->snap_len;
        break;
    default: break;
    }
    return n;
}

int raft_msg_encode(const raft_msg *m, uint8_t *buf, size_t cap)
{
    al_wr wr = al_wr_make(buf, cap);
    al_wr_u8(&wr, RAFT_MSG_VERSION);
    al_wr_u8(&wr, m->type);
    al_wr_u8(&wr, m->flags);
    al_wr_u64(&wr, m->group);
    al_wr_i32(&wr, m->from);
    al_wr_i32(&wr, m->to);
    al_wr_i64(&wr, m->term);
    switch (m->type) {
    case RAFT_MSG_VOTE_REQ:
        al_wr_i64(&wr, m->last_offset);
        al_wr_i64(&wr, m->last_term);
        break;
    case RAFT_MSG_APPEND_REQ:
        al_wr_i64(&wr, m->prev_offset);
        al_wr_i64(&wr, m->prev_term);
        al_wr_i64(&wr, m->commit);
        al_wr_u32(&wr, m->n_entries);
        for (uint32_t i = 0; i < m->n_entries; i++) {
            const raft_entry *e = &m->entries[i];
            al_wr_i64(&wr, e->offset);
            al_wr_i32(&wr, e->count);
            al_wr_u8(&wr, e->type);
            al_wr_i64(&wr, e->term);
            al_wr_u32(&wr, e->len);
            al_wr_bytes(&wr, e->data, e->len);
        }
        break;
    case RAFT_MSG_APPEND_RESP:
        al_wr_i64(&wr, m->match);
        al_wr_i64(&wr, m->hint_term);
        break;
    case RAFT_MSG_HB_BATCH:
        al_wr_u32(&wr, m->n_hb);
        for (uint32_t i = 0; i < m->n_hb; i++) {
            const raft_hb_item *h = &m->hb[i];
            bool req = h->type == RAFT_MSG_APPEND_REQ;
            al_wr_u64(&wr, h->group);
            al_wr_u8(&wr, h->type);
            al_wr_u8(&wr, h->flags);
            al_wr_i64(&wr, h->term);
            al_wr_i64(&wr, req ? h->prev_offset : h->match);
            al_wr_i64(&wr, req ? h->prev_term : h->hint_term);
            al_wr_i64(&wr, req ? h->commit : 0);
        }
        break;
    case RAFT_MSG_SNAPSHOT: {
        uint8_t conf[8 + 8 * RAFT_MAX_NODES];
        if (m->snap_conf.n_voters + m->snap_conf.n_learners > RAFT_MAX_NODES) return AL_EINVAL;
        size_t clen = raft_config_encode(&m->snap_conf, conf);
        al_wr_i64(&wr, m->prev_offset);
        al_wr_i64(&wr, m->prev_term);
        al_wr_i64(&wr, m->commit);
        al_wr_u8(&wr, 1);
        al_wr_u16(&wr, (uint16_t)clen);
        al_wr_bytes(&wr, conf, clen);
        al_wr_u64(&wr, m->snap_total);
        al_wr_u64(&wr, m->snap_pos);
        al_wr_u32(&wr, m->snap_len);
        al_wr_bytes(&wr, m->snap_data, m->snap_len);
        break;
    }
    default: break;
    }
    if (wr.err) return wr.err;
    size_t body = (size_t)(wr.p - buf);
    al_wr_u32(&wr, crc32c(0, buf, body));
    if (wr.err) return wr.err;
    return (int)(body + 4);
}

int raft_msg_decode(const uint8_t *buf, size_t len, raft_msg *out, raft_entry *ents,
                    size_t max_ents, raft_hb_item *hbs, size_t max_hbs)
{
    memset(out, 0, sizeof(*out));
    if (len < HDR_SIZE + 4) return AL_ETRUNCATED;
#ifndef AL_FUZZING /* fuzzers reach the decoder past the checksum */
    if (al_be32(buf + len - 4) != crc32c(0, buf, len - 4)) return AL_ECORRUPT;
#endif
    al_rd rd = al_rd_make(buf, len - 4);
    if (al_rd_u8(&rd) != RAFT_MSG_VERSION) return AL_EMALFORMED;
    out->type = al_rd_u8(&rd);
    out->flags = al_rd_u8(&rd);
    out->group = al_rd_u64(&rd);
    out->from = al_rd_i32(&rd);
    out->to = al_rd_i32(&rd);
    out->term = al_rd_i64(&rd);
    if (out->term < 0) return AL_EMALFORMED;
    switch (out->type) {
    case RAFT_MSG_VOTE_REQ:
        out->last_offset = al_rd_i64(&rd);
        out->last_term = al_rd_i64(&rd);
        break;
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_TIMEOUT_NOW: break;
    case RAFT_MSG_APPEND_REQ: {
        out->prev_offset = al_rd_i64(&rd);
        out->prev_term = al_rd_i64(&rd);
        out->commit = al_rd_i64(&rd);
        uint32_t n = al_rd_u32(&rd);
        if (rd.err) return rd.err;
        if (n > RAFT_MSG_MAX_ENTRIES || n > max_ents) return AL_ETOOLARGE;
        for (uint32_t i = 0; i < n; i++) {
            raft_entry *e = &ents[i];
            e->offset = al_rd_i64(&rd);
            e->count = al_rd_i32(&rd);
            e->type = al_rd_u8(&rd);
            e->term = al_rd_i64(&rd);
            e->len = al_rd_u32(&rd);
            e->data = al_rd_bytes(&rd, e->len);
            if (rd.err) return rd.err;
            if (e->count < 1 || e->offset < 0 || e->term < 0 || e->type > RAFT_ENTRY_CONFIG ||
                e->offset > INT64_MAX - e->count)
                return AL_EMALFORMED;
        }
        out->n_entries = n;
        out->entries = n ? ents : NULL;
        break;
    }
    case RAFT_MSG_APPEND_RESP:
        out->match = al_rd_i64(&rd);
        out->hint_term = al_rd_i64(&rd);
        break;
    case RAFT_MSG_HB_BATCH: {
        uint32_t n = al_rd_u32(&rd);
        if (rd.err) return rd.err;
        if (n > RAFT_MSG_MAX_HB || n > max_hbs) return AL_ETOOLARGE;
        for (uint32_t i = 0; i < n; i++) {
            raft_hb_item *h = &hbs[i];
            memset(h, 0, sizeof(*h));
            h->group = al_rd_u64(&rd);
            h->type = al_rd_u8(&rd);
            h->flags = al_rd_u8(&rd);
            h->term = al_rd_i64(&rd);
            int64_t a = al_rd_i64(&rd), b = al_rd_i64(&rd), c = al_rd_i64(&rd);
            if (rd.err) return rd.err;
            if (h->term < 0) return AL_EMALFORMED;
            if (h->type == RAFT_MSG_APPEND_REQ) {
                h->prev_offset = a;
                h->prev_term = b;
                h->commit = c;
            } else if (h->type == RAFT_MSG_APPEND_RESP && c == 0) {
                h->match = a;
                h->hint_term = b;
            } else {
                return AL_EMALFORMED;
            }
        }
        out->n_hb = n;
        out->hb = n ? hbs : NULL;
        break;
    }
    case RAFT_MSG_SNAPSHOT: {
        out->prev_offset = al_rd_i64(&rd);
        out->prev_term = al_rd_i64(&rd);
        out->commit = al_rd_i64(&rd);
        uint8_t fmt = al_rd_u8(&rd);
        uint16_t clen = al_rd_u16(&rd);
        const uint8_t *conf = al_rd_bytes(&rd, clen);
        out->snap_total = al_rd_u64(&rd);
        out->snap_pos = al_rd_u64(&rd);
        out->snap_len = al_rd_u32(&rd);
        out->snap_data = al_rd_bytes(&rd, out->snap_len);
        if (rd.err) return rd.err;
        if (fmt != 1 || raft_config_decode(conf, clen, &out->snap_conf) < 0 ||
            out->prev_offset < -1 || out->prev_term < 0 ||
            out->snap_total > RAFT_SNAPSHOT_MAX || out->snap_pos > out->snap_total ||
            out->snap_len > out->snap_total - out->snap_pos)
            return AL_EMALFORMED;
        if (!out->snap_len) out->snap_data = NULL;
        break;
    }
    default: return AL_EMALFORMED;
    }
    if (rd.err) return rd.err;
    if (al_rd_left(&rd)) return AL_EMALFORMED;
    return 0;
}
