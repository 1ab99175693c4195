/*
 * replica.c — a Raft replica on a storage log (see replica.h for the contract): the log ops
 * over storage_log, the action executor (PERSIST as one asynchronous durable slot write and
 * TRUNCATE asynchronously, each with the later actions held back until it is done, APPEND at
 * the offsets Raft assigned, FLUSH as one
 * group commit, SEND through the owner's transport and the shard's heartbeat batcher), the
 * NOOP/CONFIG control batches, replication waiters and recovery at open.
 *
 * Every input call (raft_step, raft_tick, ...) is followed by pump(): drain and apply the
 * actions, then make the deferred input calls the actions asked for (append_done after an
 * APPEND, flush_done after a FLUSH that completed at once), drain again, and finally tell the
 * owner (waiters, commit, role) once nothing is half applied. Storage callbacks that arrive
 * while a pump runs only set flags; the pump picks them up.
 */
#include "raft/replica.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/crc32c.h"
#include "base/cursor.h"
#include "base/log.h"
#include "storage/batch.h"
#include "storage/log_raft.h"

#define REPLICA_PATH_MAX 4096
#define CALL_READS 16       /* log reads one input call may hold (entries point into them) */
#define PUMP_ROUNDS 64      /* deferred input calls per pump */
#define HS_SIZE 32
#define HS_MAGIC 0x414c5253u   /* "ALRS" */
#define CONF_MAGIC 0x414c5243u /* "ALRC" */
#define SNAP_MAGIC 0x414c534eu /* "ALSN" */
#define OTX_MAGIC 0x414c4f54u  /* "ALOT": snapshot data on the wire: magic, i64 delta, data */
#define OTX_WIRE_HDR 12

/* A log read whose batches entries point into. */
typedef struct rbuf {
    uint8_t *data;
    size_t len;
    int64_t from, next; /* offsets it covers: [from's batch, next) */
} rbuf;

/* An action held back behind an asynchronous truncation, with its data owned. */
typedef struct held_action {
    raft_action a;
    uint8_t *bytes;      /* SEND: the encoded message; APPEND: entry data, back to back */
    size_t len;
    raft_entry *ents;    /* APPEND: copies of the entries (data pointing into bytes) */
    bool skip;           /* PERSIST: taken over by an earlier one (coalesced) */
} held_action;

struct raft_replica {
    io *io;
    storage_log *log;
    raft_group g;
    raft_log_ops ops;
    raft_replica_config cfg;
    char dir[REPLICA_PATH_MAX];
    char hs_path[REPLICA_PATH_MAX + 16];
    char conf_path[REPLICA_PATH_MAX + 16];
    char snap_path[REPLICA_PATH_MAX + 16];
    raft_hardstate hs; /* as durable in raft_state */
    uint64_t hs_seq;   /* its write number (0: no file yet) */
    int hs_fd;         /* raft_state, open for slot writes (-1: no file yet) */
    struct hs_writer *hsw; /* the slot write (reused) */
    bool hs_busy;      /* a PERSIST is being written: later actions are held */
    bool hs_unknown;   /* the last hard-state write failed: it may or may not be on disk */

    /* snapshot point as durable in raft_snap (-1: none; the log starts at snap_off + 1) */
    int64_t snap_off, snap_term;
    raft_config snap_conf;
    uint8_t *snap_data; /* the state machine's snapshot there (controller), or NULL */
    size_t snap_len;
    int64_t snap_delta;  /* Raft gap offsets at or below snap_off (offset translation) */
    uint8_t *snap_wire;  /* what a follower installs: OTX_MAGIC, snap_delta, snap_data */
    size_t snap_wire_len;
    otx otx;             /* Raft offset <-> Kafka offset (offset_translator.h) */
    bool install_pending; /* a SNAPSHOT action waits for its truncation to empty the log */
    /* DeleteRecords: the newest TRIM marker in the log (-1: none pending) and the start it
     * asks for; applied (prefix truncation) once the marker commits */
    int64_t trim_marker, trim_to;
    bool note_snapshot;   /* tell the owner (on_snapshot) */

    bool failed, closing, need_reset;
    int in_pump;

    /* deferred input calls */
    bool pend_append;
    int64_t pend_append_last, pend_append_term;
    bool pend_flush;

    /* group commit: one durability waiter at a time */
    storage_waiter fw;
    bool fw_busy, in_flush_call;
    int64_t flush_want;

    /* asynchronous truncation and the actions held behind it */
    storage_truncation tr;
    bool tr_busy;
    held_action *held;
    uint32_t held_n, held_head, held_cap;

    /* reads */
    storage_read *rd; /* the one read issued to storage (heap: outlives a pending read) */
    bool rd_busy;
    uint64_t log_gen; /* bumped whenever offsets may be rewritten (truncation, reset) */
    uint64_t rd_gen;  /* log_gen when the pending read was issued */
    rbuf pre;         /* a completed asynchronous read, served to the next log op read */
    rbuf call[CALL_READS];
    uint32_t n_call;

    /* outgoing encode buffer */
    uint8_t *tx;
    size_t tx_cap;

    /* waiters (RAFT_WAIT_COMMIT), in offset order; finished ones wait for notify() */
    raft_replicate_req *wq_head, *wq_tail;
    raft_replicate_req *done_head, *done_tail;
    bool note_commit, note_role;
    int64_t commit; /* last COMMIT seen */

    /* config entries in the log (mirrors raft_conf) */
    uint32_t n_confs;
    int64_t conf_off[RAFT_CONF_HISTORY];
    raft_config confs[RAFT_CONF_HISTORY];

    raft_replica_stats st;
    uint8_t ctl[RAFT_CTRL_BATCH_MAX];
};

static void pump(raft_replica *r);
static void fail_replica(raft_replica *r, const char *what, int err);
static int batches_framing(const uint8_t *buf, size_t len, size_t max);

/* ---------------------------------------------------------------- control batches */

int raft_batch_classify(const uint8_t *buf, size_t size, const uint8_t **payload, size_t *plen)
{
    storage_batch_hdr h;
    if (storage_batch_parse_header(buf, size, &h) < 0) return AL_EMALFORMED;
    if (!(h.attributes & STORAGE_ATTR_CONTROL) || (h.attributes & STORAGE_ATTR_TRANSACTIONAL) ||
        h.producer_id != -1)
        return RAFT_ENTRY_DATA;
    if (h.last_offset_delta != 0 || storage_batch_compression(&h) != STORAGE_COMP_NONE ||
        storage_batch_size(&h) > size)
        return AL_EMALFORMED;
    if (h.records_count == 0)
        return storage_batch_size(&h) == STORAGE_BATCH_HEADER ? RAFT_ENTRY_NOOP : AL_EMALFORMED;
    if (h.records_count != 1) return AL_EMALFORMED;
    storage_record_iter it;
    storage_record rec;
    storage_record_iter_init(&it, buf + STORAGE_BATCH_HEADER,
                             storage_batch_size(&h) - STORAGE_BATCH_HEADER, 1);
    if (storage_record_iter_next(&it, &rec) != 1) return AL_EMALFORMED;
    if (rec.key_len == 4 && rec.value_len == 8 && al_be16(rec.key) == 0 &&
        al_be16(rec.key + 2) == RAFT_CTRL_TYPE_TRIM)
        return RAFT_ENTRY_DATA; /* replicated like data; raft_batch_trim_point reads it */
    if (rec.key_len != 4 || rec.value_len < 0 || al_be16(rec.key) != 0 ||
        al_be16(rec.key + 2) != RAFT_CTRL_TYPE_CONFIG)
        return AL_EMALFORMED;
    if (payload) *payload = rec.value;
    if (plen) *plen = (size_t)rec.value_len;
    return RAFT_ENTRY_CONFIG;
}

int raft_batch_build_control(uint8_t *out, size_t cap, int type, int64_t offset, int64_t term,
                             const uint8_t *payload, size_t plen)
{
    if ((type != RAFT_ENTRY_NOOP && type != RAFT_ENTRY_CONFIG) || term < 0 ||
        term > INT32_MAX || plen > RAFT_CTRL_BATCH_MAX || (plen && !payload))
        return AL_EINVAL;
    storage_build_params p = {
        .base_offset = offset,
        .leader_epoch = (int32_t)term,
        .attributes = STORAGE_ATTR_CONTROL,
        .last_offset_delta = 0,
        .base_timestamp = -1,
        .max_timestamp = -1,
        .producer_id = -1,
        .producer_epoch = -1,
        .base_sequence = -1,
    };
    if (type == RAFT_ENTRY_NOOP) return (int)storage_batch_build(out, cap, &p, NULL, 0);
    uint8_t key[4];
    key[0] = 0;
    key[1] = 0;
    key[2] = (uint8_t)(RAFT_CTRL_TYPE_CONFIG >> 8);
    key[3] = (uint8_t)(RAFT_CTRL_TYPE_CONFIG & 0xff);
    storage_build_record rec = {0, 0, key, 4, payload, (int32_t)plen, NULL, 0};
    return (int)storage_batch_build(out, cap, &p, &rec, 1);
}

int raft_batch_build_trim(uint8_t *out, size_t cap, int64_t start)
{
    if (start < 0) return AL_EINVAL;
    storage_build_params p = {
        .base_offset = 0,
        .leader_epoch = 0,
        .attributes = STORAGE_ATTR_CONTROL,
        .last_offset_delta = 0,
        .base_timestamp = -1,
        .max_timestamp = -1,
        .producer_id = -1,
        .producer_epoch = -1,
        .base_sequence = -1,
    };
    uint8_t key[4] = {0, 0, (uint8_t)(RAFT_CTRL_TYPE_TRIM >> 8),
                      (uint8_t)(RAFT_CTRL_TYPE_TRIM & 0xff)};
    uint8_t val[8];
    al_put_be64(val, (uint64_t)start);
    storage_build_record rec = {0, 0, key, 4, val, 8, NULL, 0};
    return (int)storage_batch_build(out, cap, &p, &rec, 1);
}

int64_t raft_batch_trim_point(const uint8_t *buf, size_t size)
{
    storage_batch_hdr h;
    if (storage_batch_parse_header(buf, size, &h) < 0 || !(h.attributes & STORAGE_ATTR_CONTROL) ||
        (h.attributes & STORAGE_ATTR_TRANSACTIONAL) || h.producer_id != -1 ||
        h.records_count != 1 || storage_batch_compression(&h) != STORAGE_COMP_NONE ||
        storage_batch_size(&h) > size)
        return -1;
    storage_record_iter it;
    storage_record rec;
    storage_record_iter_init(&it, buf + STORAGE_BATCH_HEADER,
                             storage_batch_size(&h) - STORAGE_BATCH_HEADER, 1);
    if (storage_record_iter_next(&it, &rec) != 1 || rec.key_len != 4 || rec.value_len != 8 ||
        al_be16(rec.key) != 0 || al_be16(rec.key + 2) != RAFT_CTRL_TYPE_TRIM)
        return -1;
    int64_t v = (int64_t)al_be64(rec.value);
    return v >= 0 ? v : -1;
}

/* ---------------------------------------------------------------- hard state and configs */

/* Hard state file, version 2: two fixed slots (LMDB's two meta pages), so that a write never
 * needs the rename ritual: slot i (i = 0, 1) sits at i * HS_SLOT and holds u32 "ALRS", u32 2,
 * u64 group, u64 seq, i64 term, i32 vote, u32 CRC32C of the 36 bytes before it (HS2_SIZE);
 * the rest of the slot is zero. Write number seq goes to slot seq % 2 (one write in flight at
 * a time), with a durable write (io_write_dsync) and no directory sync: a torn or failed write
 * leaves the other slot, the previous durable state, readable. Reading takes the valid slot
 * with the higher seq. Version 1 (HS_SIZE bytes: u32 "ALRS", u32 1, u64 group, i64 term,
 * i32 vote, u32 CRC32C) is read and rewritten as version 2 at open. */
#define HS_SLOT 4096
#define HS2_SIZE 40
#define HS_FILE (2 * HS_SLOT)

/* The asynchronous write of one slot. Heap-allocated: a replica closed with a write in flight
 * leaves it behind (r NULL) and the completion frees it. */
struct hs_writer {
    io_op op;
    io *io;
    raft_replica *r; /* NULL: the replica is gone */
    int fd;          /* closed by the completion of an orphaned write */
    raft_hardstate hs;
    uint64_t seq;
    uint8_t b[HS2_SIZE];
};

static void hs_encode(const raft_replica *r, uint64_t seq, const raft_hardstate *hs, uint8_t *b)
{
    al_put_be32(b, HS_MAGIC);
    al_put_be32(b + 4, 2);
    al_put_be64(b + 8, r->cfg.group);
    al_put_be64(b + 16, seq);
    al_put_be64(b + 24, (uint64_t)hs->term);
    al_put_be32(b + 32, (uint32_t)hs->vote);
    al_put_be32(b + 36, crc32c(0, b, 36));
}

/* Writes a whole version 2 file (slot seq % 2 = hs, the other empty) with the atomic ritual
 * and opens it for the slot writes that follow. Blocks the shard: at open (a missing file, an
 * upgrade from version 1), and for the first hard state a new replica ever writes. */
static int hs_create(raft_replica *r, uint64_t seq, const raft_hardstate *hs)
{
    uint8_t *b = calloc(1, HS_FILE);
    if (!b) return -ENOMEM;
    hs_encode(r, seq, hs, b + (seq % 2) * HS_SLOT);
    int rc = io_fs_write_atomic(r->io, r->hs_path, b, HS_FILE);
    free(b);
    if (rc < 0) return rc;
    if (r->hs_fd >= 0) io_fs_close(r->io, r->hs_fd);
    r->hs_fd = io_fs_open(r->io, r->hs_path, O_RDWR, 0);
    if (r->hs_fd < 0) {
        rc = r->hs_fd;
        r->hs_fd = -1;
        return rc;
    }
    r->hs = *hs;
    r->hs_seq = seq;
    return 0;
}

/* Writes the hard state durably and synchronously (open only): the next slot, or a new file.
 * 0 or -errno (the previous state stays readable). */
static int hs_write_sync(raft_replica *r, const raft_hardstate *hs)
{
    uint64_t seq = r->hs_seq + 1;
    if (r->hs_fd < 0) return hs_create(r, seq, hs);
    uint8_t b[HS2_SIZE];
    hs_encode(r, seq, hs, b);
    ssize_t n = io_fs_pwrite(r->io, r->hs_fd, b, sizeof(b), (seq % 2) * HS_SLOT);
    if (n < 0) return (int)n;
    if (n != (ssize_t)sizeof(b)) return -EIO;
    int rc = io_fs_fdatasync(r->io, r->hs_fd);
    if (rc < 0) return rc;
    r->hs = *hs;
    r->hs_seq = seq;
    return 0;
}

static void hs_cb(io_op *op);

/* PERSIST: starts the durable write of hs into the next slot; later actions wait for it
 * (hs_busy; see drain and held_run). The first write of a new replica creates the file
 * synchronously (once in its life). */
static void hs_write_start(raft_replica *r, const raft_hardstate *hs)
{
    if (r->hs_fd < 0) {
        int rc = hs_create(r, r->hs_seq + 1, hs);
        if (rc < 0) fail_replica(r, "writing the hard state", rc);
        return;
    }
    struct hs_writer *w = r->hsw;
    if (!w && !(w = r->hsw = calloc(1, sizeof(*w)))) {
        fail_replica(r, "writing the hard state", -ENOMEM);
        return;
    }
    w->io = r->io;
    w->r = r;
    w->fd = r->hs_fd;
    w->hs = *hs;
    w->seq = r->hs_seq + 1;
    hs_encode(r, w->seq, hs, w->b);
    w->op = (io_op){.cb = hs_cb, .ctx = w};
    r->hs_busy = true;
    r->st.hs_writes++;
    io_write_dsync(r->io, &w->op, w->fd, w->b, sizeof(w->b), (w->seq % 2) * HS_SLOT);
}

static void hs_cb(io_op *op)
{
    struct hs_writer *w = op->ctx;
    raft_replica *r = w->r;
    if (!r) { /* the replica was closed meanwhile: the fd is the write's to close */
        io_fs_close(w->io, w->fd);
        free(w);
        return;
    }
    r->hs_busy = false;
    if (r->closing) return;
    if (op->res != (int32_t)sizeof(w->b)) {
        r->hs_unknown = true; /* a failed write may still have reached the disk */
        fail_replica(r, "writing the hard state", op->res < 0 ? op->res : -EIO);
    } else {
        r->hs = w->hs;
        r->hs_seq = w->seq;
    }
    if (!r->in_pump && !r->in_flush_call) pump(r); /* the actions that waited, the owner */
}

/* One slot of a version 2 file: 1 valid (*seq, *hs set), 0 not (empty, torn, corrupt),
 * AL_ECORRUPT (valid but another group's). */
static int hs_slot(const raft_replica *r, const uint8_t *b, int i, uint64_t *seq,
                   raft_hardstate *hs)
{
    if (al_be32(b) != HS_MAGIC || al_be32(b + 4) != 2 || al_be32(b + 36) != crc32c(0, b, 36))
        return 0;
    *seq = al_be64(b + 16);
    if (*seq % 2 != (uint64_t)i) return 0;
    if (al_be64(b + 8) != r->cfg.group) return AL_ECORRUPT;
    hs->term = (int64_t)al_be64(b + 24);
    hs->vote = (int32_t)al_be32(b + 32);
    return 1;
}

/* Reads raft_state (either version): 0 (or -ENOENT: a new replica, hs zeroed) or AL_ECORRUPT
 * / -errno. Sets hs_seq; *legacy when the file is version 1 (to be rewritten). */
static int hs_read(raft_replica *r, raft_hardstate *hs, bool *legacy)
{
    uint8_t *b = NULL;
    size_t n = 0;
    hs->term = 0;
    hs->vote = RAFT_NODE_NONE;
    r->hs_seq = 0;
    *legacy = false;
    int rc = io_fs_read_all(r->io, r->hs_path, HS_FILE, &b, &n);
    if (rc == -EFBIG) n = HS_FILE + 1;
    else if (rc < 0) return rc;
    const char *why = "bad size";
    if (n == HS_SIZE) {
        why = "bad magic, version, checksum or group";
        if (al_be32(b) == HS_MAGIC && al_be32(b + 4) == 1 && al_be32(b + 28) == crc32c(0, b, 28) &&
            al_be64(b + 8) == r->cfg.group) {
            hs->term = (int64_t)al_be64(b + 16);
            hs->vote = (int32_t)al_be32(b + 24);
            *legacy = true;
            free(b);
            return 0;
        }
    } else if (n == HS_FILE) {
        raft_hardstate s[2];
        uint64_t seq[2] = {0, 0};
        int ok[2];
        for (int i = 0; i < 2; i++) ok[i] = hs_slot(r, b + i * HS_SLOT, i, &seq[i], &s[i]);
        why = "a slot of another group";
        if (ok[0] >= 0 && ok[1] >= 0) {
            why = "no valid slot: both torn or corrupt";
            int pick = ok[0] && ok[1] ? (seq[1] > seq[0]) : ok[1] ? 1 : ok[0] ? 0 : -1;
            if (pick >= 0) {
                *hs = s[pick];
                r->hs_seq = seq[pick];
                free(b);
                return 0;
            }
        }
    }
    log_error("raft", "%s: hard state unreadable (%zu bytes, %s): refusing to start the "
                      "replica; restore the file or remove the replica's directory to rejoin "
                      "as a new replica", r->hs_path, n, why);
    free(b);
    return AL_ECORRUPT;
}

/* Rewrites raft_conf from r->confs (atomic ritual). 0 or -errno. */
static int conf_file_write(raft_replica *r)
{
    uint8_t b[12 + RAFT_CONF_HISTORY * (12 + 8 + 8 * RAFT_MAX_NODES) + 4];
    size_t n = 12;
    al_put_be32(b, CONF_MAGIC);
    al_put_be32(b + 4, 1);
    al_put_be32(b + 8, r->n_confs);
    for (uint32_t i = 0; i < r->n_confs; i++) {
        al_put_be64(b + n, (uint64_t)r->conf_off[i]);
        size_t len = raft_config_encode(&r->confs[i], b + n + 12);
        al_put_be32(b + n + 8, (uint32_t)len);
        n += 12 + len;
    }
    al_put_be32(b + n, crc32c(0, b, n));
    return io_fs_write_atomic(r->io, r->conf_path, b, n + 4);
}

/* Parses raft_conf into r->confs. 0, -ENOENT, AL_ECORRUPT or -errno. */
static int conf_file_read(raft_replica *r)
{
    uint8_t *b = NULL;
    size_t n = 0;
    r->n_confs = 0;
    int rc = io_fs_read_all(r->io, r->conf_path, 65536, &b, &n);
    if (rc < 0) return rc;
    rc = AL_ECORRUPT;
    if (n < 16 || al_be32(b) != CONF_MAGIC || al_be32(b + 4) != 1 ||
        al_be32(b + n - 4) != crc32c(0, b, n - 4))
        goto out;
    al_rd rd = al_rd_make(b + 12, n - 16);
    uint32_t cnt = al_be32(b + 8);
    if (cnt > RAFT_CONF_HISTORY) goto out;
    for (uint32_t i = 0; i < cnt; i++) {
        int64_t off = al_rd_i64(&rd);
        uint32_t len = al_rd_u32(&rd);
        const uint8_t *p = al_rd_bytes(&rd, len);
        if (rd.err || raft_config_decode(p, len, &r->confs[i]) < 0) goto out;
        r->conf_off[i] = off;
    }
    r->n_confs = cnt;
    rc = 0;
out:
    free(b);
    return rc;
}

/* A CONFIG entry is about to be appended at off: record it durably first. */
static int conf_note(raft_replica *r, int64_t off, const uint8_t *payload, size_t len)
{
    raft_config c;
    int rc = raft_config_decode(payload, len, &c);
    if (rc < 0) return rc;
    while (r->n_confs && r->conf_off[r->n_confs - 1] >= off) r->n_confs--;
    if (r->n_confs == RAFT_CONF_HISTORY) {
        memmove(&r->conf_off[0], &r->conf_off[1], sizeof(r->conf_off[0]) * (RAFT_CONF_HISTORY - 1));
        memmove(&r->confs[0], &r->confs[1], sizeof(r->confs[0]) * (RAFT_CONF_HISTORY - 1));
        r->n_confs--;
    }
    r->conf_off[r->n_confs] = off;
    r->confs[r->n_confs] = c;
    r->n_confs++;
    r->st.conf_entries++;
    return conf_file_write(r);
}

/* The log lost offsets >= from: forget config entries there. */
static int conf_truncated(raft_replica *r, int64_t from)
{
    uint32_t n = r->n_confs;
    while (r->n_confs && r->conf_off[r->n_confs - 1] >= from) r->n_confs--;
    r->st.conf_truncated += n - r->n_confs;
    return n == r->n_confs ? 0 : conf_file_write(r);
}

/* Makes wire (OTX_WIRE_HDR + snap_len bytes, taken over) the snapshot a follower installs:
 * OTX_MAGIC, delta, the state machine's data; and delta the snapshot point's. */
static void snap_wire_set(raft_replica *r, uint8_t *wire, int64_t delta)
{
    al_put_be32(wire, OTX_MAGIC);
    al_put_be64(wire + 4, (uint64_t)delta);
    if (r->snap_len) memcpy(wire + OTX_WIRE_HDR, r->snap_data, r->snap_len);
    free(r->snap_wire);
    r->snap_wire = wire;
    r->snap_wire_len = OTX_WIRE_HDR + r->snap_len;
    r->snap_delta = delta;
}

/* Writes raft_snap durably (atomic ritual) and makes it the replica's snapshot point:
 * u32 "ALSN", u32 2, u64 group, i64 offset, i64 term, u32 conf_len, conf, u32 data_len,
 * data, i64 delta (Raft gap offsets at or below offset: offset translation), u32 CRC32C of
 * everything before it (version 1 had no delta: read as 0). data is copied. 0, -ENOMEM or
 * -errno. */
static int snap_write(raft_replica *r, int64_t off, int64_t term, const raft_config *conf,
                      const uint8_t *data, size_t len, int64_t delta)
{
    if (len > RAFT_SNAPSHOT_MAX - OTX_WIRE_HDR || delta < 0 || delta > off + 1)
        return AL_ETOOLARGE;
    uint8_t cbuf[8 + 8 * RAFT_MAX_NODES];
    size_t clen = raft_config_encode(conf, cbuf);
    size_t n = 4 + 4 + 8 + 8 + 8 + 4 + clen + 4 + len + 8 + 4;
    uint8_t *b = malloc(n), *copy = len ? malloc(len) : NULL;
    uint8_t *wire = malloc(OTX_WIRE_HDR + len);
    if (!b || (len && !copy) || !wire) {
        free(b);
        free(copy);
        free(wire);
        return -ENOMEM;
    }
    al_wr wr = al_wr_make(b, n);
    al_wr_u32(&wr, SNAP_MAGIC);
    al_wr_u32(&wr, 2);
    al_wr_u64(&wr, r->cfg.group);
    al_wr_i64(&wr, off);
    al_wr_i64(&wr, term);
    al_wr_u32(&wr, (uint32_t)clen);
    al_wr_bytes(&wr, cbuf, clen);
    al_wr_u32(&wr, (uint32_t)len);
    if (len) al_wr_bytes(&wr, data, len);
    al_wr_i64(&wr, delta);
    al_wr_u32(&wr, crc32c(0, b, n - 4));
    AL_ASSERT(!wr.err);
    int rc = io_fs_write_atomic(r->io, r->snap_path, b, n);
    free(b);
    if (rc < 0) {
        free(copy);
        free(wire);
        return rc;
    }
    if (len) memcpy(copy, data, len);
    free(r->snap_data);
    r->snap_data = copy;
    r->snap_len = len;
    snap_wire_set(r, wire, delta);
    r->snap_off = off;
    r->snap_term = term;
    r->snap_conf = *conf;
    return 0;
}

/* Reads raft_snap: 0 (or -ENOENT: no snapshot, snap_off -1), AL_ECORRUPT or -errno. */
static int snap_read(raft_replica *r)
{
    uint8_t *b = NULL;
    size_t n = 0;
    r->snap_off = -1;
    r->snap_term = 0;
    r->snap_conf = r->cfg.bootstrap;
    int rc = io_fs_read_all(r->io, r->snap_path, RAFT_SNAPSHOT_MAX + 4096, &b, &n);
    if (rc < 0) return rc;
    rc = AL_ECORRUPT;
    uint32_t ver = n >= 8 ? al_be32(b + 4) : 0;
    if (n < 44 || al_be32(b) != SNAP_MAGIC || (ver != 1 && ver != 2) ||
        al_be32(b + n - 4) != crc32c(0, b, n - 4) || al_be64(b + 8) != r->cfg.group)
        goto out;
    al_rd rd = al_rd_make(b + 16, n - 20);
    int64_t off = al_rd_i64(&rd), term = al_rd_i64(&rd);
    uint32_t clen = al_rd_u32(&rd);
    const uint8_t *cp = al_rd_bytes(&rd, clen);
    uint32_t len = al_rd_u32(&rd);
    const uint8_t *data = al_rd_bytes(&rd, len);
    int64_t delta = ver >= 2 ? al_rd_i64(&rd) : 0;
    raft_config c;
    if (rd.err || al_rd_left(&rd) || off < 0 || term < 0 || delta < 0 || delta > off + 1 ||
        len > RAFT_SNAPSHOT_MAX - OTX_WIRE_HDR || raft_config_decode(cp, clen, &c) < 0)
        goto out;
    uint8_t *wire = malloc(OTX_WIRE_HDR + len);
    if (!wire || (len && !(r->snap_data = malloc(len)))) {
        free(wire);
        rc = -ENOMEM;
        goto out;
    }
    if (len) memcpy(r->snap_data, data, len);
    r->snap_len = len;
    r->snap_off = off;
    r->snap_term = term;
    r->snap_conf = c;
    snap_wire_set(r, wire, delta);
    rc = 0;
out:
    if (rc == AL_ECORRUPT)
        log_error("raft", "%s: snapshot file unreadable (%zu bytes: bad size, magic, checksum "
                          "or group): refusing to start the replica; remove the replica's "
                          "directory to rejoin as a new replica", r->snap_path, n);
    free(b);
    return rc;
}

/* The log prefix up to off is gone: config entries there are covered by the snapshot's. */
static int conf_forget_below(raft_replica *r, int64_t off)
{
    uint32_t k = 0;
    while (k < r->n_confs && r->conf_off[k] <= off) k++;
    if (!k) return 0;
    memmove(&r->conf_off[0], &r->conf_off[k], sizeof(r->conf_off[0]) * (r->n_confs - k));
    memmove(&r->confs[0], &r->confs[k], sizeof(r->confs[0]) * (r->n_confs - k));
    r->n_confs -= k;
    return conf_file_write(r);
}

/* ---------------------------------------------------------------- log ops */

/* raft_log_ops over the storage log: term of the batch holding off (0 for -1, -1 absent). */
static int64_t op_term_at(void *ctx, int64_t off)
{
    raft_replica *r = ctx;
    if (off == r->snap_off) return r->snap_term;
    if (off < r->snap_off) return -1;
    int64_t t = storage_log_term_at(r->log, off);
    return t < 0 ? -1 : t;
}

static int64_t op_last_offset(void *ctx)
{
    raft_replica *r = ctx;
    return storage_log_last_offset(r->log);
}

/* raft_log_ops snapshot: the state machine's snapshot at the snapshot point (none: 0). */
static int64_t op_snapshot(void *ctx, int64_t snap, const uint8_t **data)
{
    raft_replica *r = ctx;
    if (snap != r->snap_off) return AL_ERANGE;
    *data = r->snap_wire;
    return (int64_t)r->snap_wire_len;
}

static void rbuf_free(rbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* Entries from the batches in b, starting with the one holding from. */
static int rbuf_entries(const rbuf *b, int64_t from, raft_entry *out, int max, size_t max_bytes)
{
    int n = 0;
    size_t bytes = 0;
    for (size_t pos = 0; pos + STORAGE_BATCH_HEADER <= b->len && n < max;) {
        storage_batch_hdr h;
        storage_batch_parse_header(b->data + pos, b->len - pos, &h);
        size_t sz = storage_batch_size(&h);
        if (pos + sz > b->len) break;
        const uint8_t *batch = b->data + pos;
        pos += sz;
        if (storage_batch_last_offset(&h) < from) continue;
        if (n == 0 && h.base_offset > from) return AL_ECORRUPT; /* a gap in a Raft log */
        raft_entry e = {.offset = h.base_offset, .count = h.last_offset_delta + 1,
                        .term = h.leader_epoch};
        const uint8_t *payload = NULL;
        size_t plen = 0;
        int type = raft_batch_classify(batch, sz, &payload, &plen);
        if (type < 0) return type;
        e.type = (uint8_t)type;
        if (type == RAFT_ENTRY_DATA) {
            e.data = batch;
            e.len = (uint32_t)sz;
        } else if (type == RAFT_ENTRY_CONFIG) {
            e.data = payload;
            e.len = (uint32_t)plen;
        }
        if (n > 0 && bytes + e.len > max_bytes) break;
        out[n++] = e;
        bytes += e.len;
    }
    return n;
}

/* Takes a completed read's batches from r->rd into *dst. */
static void rd_take(raft_replica *r, rbuf *dst)
{
    dst->data = r->rd->data;
    dst->len = r->rd->len;
    dst->from = r->rd->offset;
    dst->next = r->rd->next_offset;
    r->rd->data = NULL;
    storage_read_release(r->rd);
}

/* A log read that went to disk completed: keep its batches for the group's next ask (unless
 * the log was rewritten meanwhile) and let the group ask now. */
static void rd_cb(storage_read *sr)
{
    raft_replica *r = sr->ctx;
    r->rd_busy = false;
    if (r->closing) {
        storage_read_release(sr);
        return;
    }
    if (sr->res < 0) {
        log_warn("raft", "group %" PRIu64 ": log read at %" PRId64 ": %s", r->cfg.group,
                 sr->offset, al_strerror(sr->res));
        storage_read_release(sr);
        return;
    }
    if (r->rd_gen != r->log_gen) { /* read before a truncation: those entries may be gone */
        storage_read_release(sr);
        return;
    }
    rbuf_free(&r->pre);
    rd_take(r, &r->pre);
    /* The group asked for these entries: let it send them now rather than at the next tick. */
    if (!r->in_pump && !r->in_flush_call && !r->failed && !r->tr_busy && !r->held_n &&
        !r->install_pending) {
        raft_tick(&r->g, io_now_ns(r->io) / 1000000u);
        pump(r);
    }
}

/* Entries read back must be what the log holds now (a stale read would send another
 * leader's entries under these offsets): their terms match the log's. */
static int checked_entries(raft_replica *r, const rbuf *b, int64_t from, raft_entry *out,
                           int max, size_t max_bytes)
{
    int n = rbuf_entries(b, from, out, max, max_bytes);
    for (int i = 0; i < n; i++) AL_ASSERT(op_term_at(r, out[i].offset) == out[i].term);
    return n;
}

/* raft_log_ops read: entries from the kept read, or from a new storage read (done now, or
 * pending: 0, the group asks again). The buffers live until the end of the drain. */
static int op_read(void *ctx, int64_t from, raft_entry *out, int max, size_t max_bytes)
{
    raft_replica *r = ctx;
    if (r->pre.data && from >= r->pre.from && from < r->pre.next) {
        if (r->n_call == CALL_READS) return 0;
        r->call[r->n_call] = r->pre; /* the call list owns it now: freed after the drain */
        memset(&r->pre, 0, sizeof(r->pre));
        return checked_entries(r, &r->call[r->n_call++], from, out, max, max_bytes);
    }
    if (r->rd_busy || r->n_call == CALL_READS) return 0;
    storage_read *sr = r->rd;
    memset(sr, 0, sizeof(*sr));
    sr->offset = from;
    sr->max_bytes = max_bytes;
    sr->cb = rd_cb;
    sr->ctx = r;
    r->rd_gen = r->log_gen;
    int rc = storage_log_read(r->log, sr);
    if (rc == 0) {
        r->rd_busy = true;
        r->st.async_reads++;
        return 0;
    }
    if (rc < 0) return rc;
    rbuf *b = &r->call[r->n_call++];
    rd_take(r, b);
    return checked_entries(r, b, from, out, max, max_bytes);
}

/* ---------------------------------------------------------------- sending */

static int tx_reserve(raft_replica *r, size_t n)
{
    if (n <= r->tx_cap) return 0;
    size_t cap = AL_MAX(n, (size_t)4096);
    uint8_t *p = realloc(r->tx, cap);
    if (!p) return -ENOMEM;
    r->tx = p;
    r->tx_cap = cap;
    return 0;
}

/* Encodes m into r->tx; returns the size or a negative error. */
static int encode(raft_replica *r, const raft_msg *m)
{
    size_t n = raft_msg_size(m);
    int rc = tx_reserve(r, n);
    if (rc < 0) return rc;
    return raft_msg_encode(m, r->tx, r->tx_cap);
}

typedef void (*send_fn)(void *ctx, int32_t to, uint64_t group, const uint8_t *buf, size_t len);

void raft_replica_hb_flush(raft_hb_batcher *b, send_fn send, void *ctx)
{
    raft_msg m;
    uint8_t stackbuf[2048];
    for (uint32_t i = 0; i <= b->max_dest && raft_hb_batcher_take(b, &m) == 1; i++) {
        size_t n = raft_msg_size(&m);
        uint8_t *buf = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
        if (!buf) continue; /* dropped: heartbeats are resent */
        int len = raft_msg_encode(&m, buf, n);
        if (len > 0) send(ctx, m.to, m.group, buf, (size_t)len);
        if (buf != stackbuf) free(buf);
    }
}

/* SEND: into the shard's heartbeat batcher when it takes it (flushing a full one first),
 * else encoded and handed to the transport. */
static void send_now(raft_replica *r, const raft_msg *m)
{
    raft_hb_batcher *hb = r->cfg.hb;
    if (hb) {
        int rc = raft_hb_batcher_add(hb, m);
        if (rc == AL_EFULL) {
            raft_replica_hb_flush(hb, r->cfg.cb.send, r->cfg.cb.ctx);
            rc = raft_hb_batcher_add(hb, m);
        }
        if (rc == 1) return;
    }
    int len = encode(r, m);
    if (len < 0) {
        log_warn("raft", "group %" PRIu64 ": cannot encode a message to %d: %s", r->cfg.group,
                 m->to, al_strerror(len));
        return;
    }
    r->cfg.cb.send(r->cfg.cb.ctx, m->to, m->group, r->tx, (size_t)len);
}

/* ---------------------------------------------------------------- waiters */

static void waiter_done(raft_replica *r, raft_replicate_req *q, int res)
{
    q->res = res;
    q->next = NULL;
    if (r->done_tail) r->done_tail->next = q;
    else r->done_head = q;
    r->done_tail = q;
}

static void waiters_fail(raft_replica *r, int res)
{
    while (r->wq_head) {
        raft_replicate_req *q = r->wq_head;
        r->wq_head = q->next;
        waiter_done(r, q, res);
    }
    r->wq_tail = NULL;
}

/* COMMIT on the leader: every waiter whose last offset is covered is done (res 0). */
static void waiters_commit(raft_replica *r, int64_t commit)
{
    while (r->wq_head && r->wq_head->last_offset <= commit) {
        raft_replicate_req *q = r->wq_head;
        r->wq_head = q->next;
        if (!r->wq_head) r->wq_tail = NULL;
        /* waiters are failed as soon as the leader leaves its term, so a commit covering one
         * is of that term's entries */
        AL_ASSERT(op_term_at(r, q->last_offset) == q->term);
        waiter_done(r, q, 0);
    }
}

/* ---------------------------------------------------------------- applying actions */

/* The replica cannot go on safely (hard state, log failure): stop, fail every waiter. */
static void fail_replica(raft_replica *r, const char *what, int err)
{
    if (!r->failed)
        log_error("raft", "group %" PRIu64 " (%s): %s: %s; the replica stops until reopened",
                  r->cfg.group, r->dir, what, al_strerror(err));
    r->failed = true;
    waiters_fail(r, AL_EFAILED);
}

static void flush_issue(raft_replica *r);

/* The durability wait finished: report the durable offset to the group (via the pump),
 * reset after ENOSPC (the log dropped its unflushed suffix), fail on anything else. */
static void flush_cb(storage_waiter *w)
{
    raft_replica *r = w->ctx;
    r->fw_busy = false;
    if (r->closing || r->failed) return;
    if (w->res == -ENOSPC) {
        r->need_reset = true; /* the log dropped what was not durable */
    } else if (w->res < 0 && w->res != AL_ERANGE) {
        fail_replica(r, "log flush", w->res);
    }
    r->pend_flush = true;
    r->flush_want = AL_MIN(r->flush_want, storage_log_last_offset(r->log));
    if (r->in_flush_call) return; /* called back from inside flush_issue: it carries on */
    flush_issue(r);
    if (!r->in_pump) pump(r); /* also tells the waiters a failure failed */
}

/* Starts one durability wait for flush_want if none runs; reports at once when durable.
 * storage_log_flush_wait may call flush_cb before it returns (a failure it finds while
 * kicking the flush), so the waiter is marked busy first and the loop looks again. */
static void flush_issue(raft_replica *r)
{
    for (int round = 0; round < 4; round++) {
        if (r->fw_busy || r->failed || r->need_reset) return;
        if (r->flush_want <= storage_log_durable_offset(r->log)) {
            r->pend_flush = true;
            return;
        }
        r->fw = (storage_waiter){.cb = flush_cb, .ctx = r, .offset = r->flush_want};
        r->fw_busy = true;
        r->in_flush_call = true;
        int rc = storage_log_flush_wait(r->log, r->flush_want, &r->fw);
        r->in_flush_call = false;
        r->st.flushes++;
        if (rc == 1) {
            r->fw_busy = false;
            r->pend_flush = true;
            return;
        }
        if (rc < 0) {
            r->fw_busy = false;
            fail_replica(r, "log flush", rc);
            return;
        }
    }
}

/* Appends one entry at exactly the offset Raft gave it. data is mutable (stamped). */
static int append_entry(raft_replica *r, const raft_entry *e)
{
    AL_ASSERT(e->term >= 1 && e->term <= INT32_MAX); /* storage keeps terms as int32 epochs */
    AL_ASSERT(storage_log_high_offset(r->log) == e->offset);
    uint8_t *buf;
    size_t len;
    int rc;
    if (e->type == RAFT_ENTRY_DATA) {
        buf = (uint8_t *)(uintptr_t)e->data; /* callers' buffers are mutable (replica.h) */
        len = e->len;
    } else {
        if (e->type == RAFT_ENTRY_CONFIG && (rc = conf_note(r, e->offset, e->data, e->len)) < 0)
            return rc;
        rc = raft_batch_build_control(r->ctl, sizeof(r->ctl), e->type, e->offset, e->term,
                                      e->data, e->len);
        if (rc < 0) return rc;
        buf = r->ctl;
        len = (size_t)rc;
    }
    storage_append_result res;
    /* every batch was checked in full before it became an entry (raft_replicate on the
     * leader; on a follower, by the leader, then covered by the message's CRC) or was built
     * here: only the framing is checked again */
    rc = storage_log_append_validated(r->log, (int32_t)e->term, buf, len, &res);
    if (rc < 0) return rc;
    AL_ASSERT(res.base_offset == e->offset && res.last_offset == raft_entry_last(e));
    r->st.appended++;
    /* NOOP and CONFIG entries, and TRIM markers (control DATA): no Kafka offsets */
    if (e->type != RAFT_ENTRY_DATA ||
        (len >= STORAGE_BATCH_HEADER && otx_is_gap(al_be16(buf + 21), (int64_t)al_be64(buf + 43))))
        if ((rc = otx_add_gap(&r->otx, res.base_offset, res.last_offset)) < 0) return rc;
    if (e->type == RAFT_ENTRY_DATA && len >= STORAGE_BATCH_HEADER &&
        (al_be16(buf + 21) & STORAGE_ATTR_CONTROL)) {
        int64_t to = raft_batch_trim_point(buf, len);
        if (to >= 0) {
            r->trim_marker = e->offset;
            r->trim_to = AL_MAX(r->trim_to, to);
        }
    }
    return 0;
}

static void trunc_done(raft_replica *r, int res);

/* An installed snapshot's log was truncated: restart it after the point. A read that started
 * meanwhile keeps the log busy (AL_EFULL): the tick tries again, the actions stay held. */
static void install_finish(raft_replica *r)
{
    int rc = storage_log_restart_at(r->log, r->snap_off + 1);
    if (rc == AL_EFULL) return;
    r->install_pending = false;
    if (rc < 0) {
        fail_replica(r, "restarting the log after an installed snapshot", rc);
        return;
    }
    otx_reset(&r->otx, r->snap_off + 1, r->snap_delta);
    r->note_snapshot = true; /* the owner hears of it with the log in place */
    log_info("raft", "group %" PRIu64 ": installed the leader's snapshot at %" PRId64
                     " (%zu data bytes): the log restarts at %" PRId64,
             r->cfg.group, r->snap_off, r->snap_len, r->snap_off + 1);
}

static void trunc_cb(storage_truncation *t)
{
    raft_replica *r = t->ctx;
    if (r->closing) return;
    trunc_done(r, t->res);
}

/* Carries out one drained action (see the rules in raft.h and the file comment). */
static void apply(raft_replica *r, const raft_action *a)
{
    int rc;
    switch (a->type) {
    case RAFT_ACT_PERSIST: hs_write_start(r, &a->hs); break;
    case RAFT_ACT_SEND: send_now(r, &a->msg); break;
    case RAFT_ACT_APPEND:
        for (uint32_t i = 0; i < a->n && !r->need_reset; i++) {
            if ((rc = append_entry(r, &a->entries[i])) < 0) {
                log_warn("raft", "group %" PRIu64 ": append at %" PRId64 ": %s; resetting "
                                 "the replica from its log", r->cfg.group,
                         a->entries[i].offset, al_strerror(rc));
                if (rc == AL_EFAILED) fail_replica(r, "log append", rc);
                else r->need_reset = true;
                return;
            }
        }
        if (a->n) {
            r->pend_append = true;
            r->pend_append_last = raft_entry_last(&a->entries[a->n - 1]);
            r->pend_append_term = a->entries[a->n - 1].term;
        }
        break;
    case RAFT_ACT_TRUNCATE:
        rbuf_free(&r->pre);
        r->log_gen++;
        r->tr = (storage_truncation){.offset = a->offset, .cb = trunc_cb, .ctx = r};
        rc = storage_log_truncate_suffix_async(r->log, &r->tr);
        r->st.truncations++;
        if (rc == 0) {
            r->tr_busy = true;
            r->st.async_truncations++;
        }
        else trunc_done(r, rc < 0 ? rc : 0);
        break;
    case RAFT_ACT_FLUSH:
        if (a->offset > r->flush_want) r->flush_want = a->offset;
        flush_issue(r);
        break;
    case RAFT_ACT_COMMIT:
        r->commit = a->offset;
        waiters_commit(r, a->offset);
        r->note_commit = true;
        break;
    case RAFT_ACT_ROLE:
        if (a->role != RAFT_LEADER) waiters_fail(r, RAFT_ELOST);
        r->note_role = true;
        break;
    case RAFT_ACT_SNAPSHOT:
        /* the snapshot is durable first; then the whole log goes (asynchronously, later
         * actions held) and restarts after its point (trunc_done) */
        /* the leader's snapshot: OTX_MAGIC, delta, the state machine's data (snap_wire) */
        if (a->len < OTX_WIRE_HDR || al_be32(a->data) != OTX_MAGIC) {
            fail_replica(r, "installing a snapshot without its offset-translation header",
                         AL_EMALFORMED);
            break;
        }
        rc = snap_write(r, a->offset, a->term, &a->conf, a->data + OTX_WIRE_HDR,
                        (size_t)a->len - OTX_WIRE_HDR, (int64_t)al_be64(a->data + 4));
        if (rc < 0) {
            fail_replica(r, "writing the installed snapshot", rc);
            break;
        }
        r->n_confs = 0;
        if ((rc = conf_file_write(r)) < 0) {
            fail_replica(r, "rewriting raft_conf for an installed snapshot", rc);
            break;
        }
        rbuf_free(&r->pre);
        r->log_gen++;
        r->st.installs++;
        r->install_pending = true;
        r->tr = (storage_truncation){.offset = storage_log_start_offset(r->log), .cb = trunc_cb,
                                     .ctx = r};
        rc = storage_log_truncate_suffix_async(r->log, &r->tr);
        if (rc == 0) r->tr_busy = true;
        else trunc_done(r, rc < 0 ? rc : 0);
        break;
    default: AL_PANIC("raft replica: unknown action %d", a->type);
    }
}

/* Keeps an action (with copies of what it points at) until the truncation ahead is done. */
static int hold(raft_replica *r, const raft_action *a)
{
    if (r->held_n == r->held_cap) {
        uint32_t cap = r->held_cap ? r->held_cap * 2 : 16;
        held_action *p = realloc(r->held, sizeof(*p) * cap);
        if (!p) return -ENOMEM;
        r->held = p;
        r->held_cap = cap;
    }
    held_action *h = &r->held[r->held_n];
    memset(h, 0, sizeof(*h));
    h->a = *a;
    if (a->type == RAFT_ACT_SEND) {
        int len = encode(r, &a->msg);
        if (len < 0) return len;
        h->bytes = malloc((size_t)len);
        if (!h->bytes) return -ENOMEM;
        memcpy(h->bytes, r->tx, (size_t)len);
        h->len = (size_t)len;
    } else if (a->type == RAFT_ACT_APPEND) {
        size_t total = 0;
        for (uint32_t i = 0; i < a->n; i++) total += a->entries[i].len;
        h->ents = malloc(sizeof(raft_entry) * AL_MAX(a->n, 1u));
        h->bytes = malloc(AL_MAX(total, (size_t)1));
        if (!h->ents || !h->bytes) {
            free(h->ents);
            free(h->bytes);
            return -ENOMEM;
        }
        size_t pos = 0;
        for (uint32_t i = 0; i < a->n; i++) {
            h->ents[i] = a->entries[i];
            if (a->entries[i].len) memcpy(h->bytes + pos, a->entries[i].data, a->entries[i].len);
            h->ents[i].data = a->entries[i].len ? h->bytes + pos : NULL;
            pos += a->entries[i].len;
        }
        h->a.entries = h->ents;
    } else if (a->type == RAFT_ACT_SNAPSHOT && a->len) {
        h->bytes = malloc((size_t)a->len); /* the group frees its copy at the next call */
        if (!h->bytes) return -ENOMEM;
        memcpy(h->bytes, a->data, (size_t)a->len);
        h->len = (size_t)a->len;
        h->a.data = h->bytes;
    }
    r->held_n++;
    r->st.held++;
    return 0;
}

static void held_free(held_action *h)
{
    free(h->bytes);
    free(h->ents);
    memset(h, 0, sizeof(*h));
}

/* A held PERSIST is about to be written: the newest held PERSIST's state is written instead
 * (and that one skipped), so the actions in between wait for a state at least as new as the
 * one they depend on. Terms only grow and a vote is never taken back within a term, so the
 * newer state keeps every promise the older one made. */
static void held_coalesce(raft_replica *r, held_action *h)
{
    for (uint32_t j = r->held_n; j-- > r->held_head;) {
        held_action *x = &r->held[j];
        if (x->a.type != RAFT_ACT_PERSIST || x->skip) continue;
        AL_ASSERT(x->a.hs.term >= h->a.hs.term);
        h->a.hs = x->a.hs;
        x->skip = true;
        r->st.hs_coalesced++;
        break;
    }
}

/* Applies held actions in order until another truncation or a hard-state write has to wait
 * (or none are left). */
static void held_run(raft_replica *r)
{
    while (r->held_head < r->held_n && !r->tr_busy && !r->install_pending && !r->hs_busy &&
           !r->failed) {
        held_action *h = &r->held[r->held_head++];
        if (h->skip) {
            /* coalesced into an earlier PERSIST */
        } else if (h->a.type == RAFT_ACT_PERSIST) {
            held_coalesce(r, h);
            apply(r, &h->a);
        } else if (r->need_reset) {
            if (h->a.type == RAFT_ACT_PERSIST) apply(r, &h->a);
        } else if (h->a.type == RAFT_ACT_SEND) {
            r->cfg.cb.send(r->cfg.cb.ctx, h->a.msg.to, h->a.msg.group, h->bytes, h->len);
        } else {
            apply(r, &h->a);
        }
        held_free(h);
    }
    if (r->held_head == r->held_n || r->failed) {
        for (uint32_t i = r->held_head; i < r->held_n; i++) held_free(&r->held[i]);
        r->held_head = r->held_n = 0;
    }
}

/* A TRUNCATE finished (at once or from its callback): forget what the old suffix held,
 * then let the pump run the actions held behind it. */
static void trunc_done(raft_replica *r, int res)
{
    r->tr_busy = false;
    if (res < 0) {
        fail_replica(r, "log truncation", res);
        if (!r->in_pump && !r->in_flush_call) pump(r); /* tells the waiters */
        return;
    }
    rbuf_free(&r->pre); /* a read that finished while it waited saw the old suffix */
    r->log_gen++;
    otx_truncate_suffix(&r->otx, r->tr.offset);
    int rc = conf_truncated(r, r->tr.offset);
    if (rc < 0) fail_replica(r, "rewriting raft_conf after a truncation", rc);
    if (r->trim_marker >= r->tr.offset) r->trim_marker = r->trim_to = -1; /* marker gone */
    if (r->install_pending) install_finish(r); /* the log is empty and idle now */
    r->flush_want = AL_MIN(r->flush_want, storage_log_last_offset(r->log));
    /* inside a pump, it goes on with the held actions itself */
    if (!r->in_pump && !r->in_flush_call) pump(r);
}

/* Drains the group's queued actions: applies them, or holds them behind a truncation or a
 * hard-state write. */
static void drain(raft_replica *r)
{
    raft_action a;
    for (uint32_t guard = 0; raft_action_next(&r->g, &a) == 1; guard++) {
        AL_ASSERT(guard < 1000000);
        if (r->failed) continue; /* drop: the replica stopped */
        if (r->tr_busy || r->held_n || r->install_pending || r->hs_busy) {
            int rc = hold(r, &a);
            if (rc < 0) fail_replica(r, "holding actions behind a truncation", rc);
            continue;
        }
        if (r->need_reset && a.type != RAFT_ACT_PERSIST) continue; /* rebuilt from the log */
        apply(r, &a);
    }
    for (uint32_t i = 0; i < r->n_call; i++) rbuf_free(&r->call[i]);
    r->n_call = 0;
}

/* ---------------------------------------------------------------- group (re)creation */

/* Replays one config entry of the log into the fresh group. */
static int restore_one(raft_replica *r, int64_t off, const raft_config *c)
{
    uint8_t buf[8 + 8 * RAFT_MAX_NODES];
    size_t len = raft_config_encode(c, buf);
    return raft_restore_config(&r->g, off, buf, len);
}

/* Creates the group from the hard state and the log. After a reset the log may hold appended
 * entries that are not durable yet: the group learns the durable offset through a flush. */
static int group_create(raft_replica *r)
{
    raft_options o = r->cfg.raft;
    o.group = r->cfg.group;
    o.self = r->cfg.self;
    if (!o.seed) o.seed = io_random(r->io);
    int rc = raft_group_init(&r->g, &o, &r->ops, r, &r->hs, &r->cfg.bootstrap,
                             io_now_ns(r->io) / 1000000u);
    if (rc < 0) return rc;
    if (r->snap_off >= 0 &&
        (rc = raft_restore_snapshot(&r->g, r->snap_off, r->snap_term, &r->snap_conf)) < 0)
        return rc;
    for (uint32_t i = 0; i < r->n_confs; i++)
        if (r->conf_off[i] > r->snap_off &&
            (rc = restore_one(r, r->conf_off[i], &r->confs[i])) < 0)
            return rc;
    int64_t durable = storage_log_durable_offset(r->log);
    if (durable < r->g.last) {
        r->g.durable = durable;
        r->flush_want = r->g.last;
        flush_issue(r);
    }
    r->commit = r->g.commit; /* the snapshot point is committed */
    return 0;
}

/* After a storage error on the append path: rebuild the group from the log as it is now.
 * Volatile state (role, commit) restarts as after a reboot; pending waiters fail. */
static void reset(raft_replica *r)
{
    if (r->failed || r->tr_busy || r->held_n || r->install_pending || r->hs_busy)
        return; /* again once those are done */
    r->need_reset = false;
    r->st.resets++;
    waiters_fail(r, RAFT_ELOST);
    raft_group_free(&r->g);
    r->pend_append = r->pend_flush = false;
    rbuf_free(&r->pre);
    r->log_gen++; /* the log may have dropped its unflushed suffix */
    /* ... and with it config entries (or a config entry's append failed after raft_conf
     * listed it): only those still in the log count */
    int rc = conf_truncated(r, storage_log_last_offset(r->log) + 1);
    otx_truncate_suffix(&r->otx, storage_log_last_offset(r->log) + 1);
    if (r->trim_marker > storage_log_last_offset(r->log)) r->trim_marker = r->trim_to = -1;
    if (rc == 0) rc = group_create(r);
    if (rc < 0) {
        fail_replica(r, "recreating the group", rc);
        return;
    }
    r->note_role = true;
}

/* ---------------------------------------------------------------- the pump */

/* Tells the owner what finished: waiters, then commit, then role. Owner callbacks may call
 * back into the replica. */
static void trim_apply(raft_replica *r);

static void notify(raft_replica *r)
{
    if (r->trim_marker >= 0 && r->g.commit >= r->trim_marker) trim_apply(r);
    for (uint32_t guard = 0; r->done_head && guard < 1000000; guard++) {
        raft_replicate_req *q = r->done_head;
        r->done_head = q->next;
        if (!r->done_head) r->done_tail = NULL;
        q->next = NULL;
        q->cb(q);
    }
    if (r->note_snapshot) {
        r->note_snapshot = false;
        if (r->cfg.cb.on_snapshot)
            r->cfg.cb.on_snapshot(r->cfg.cb.ctx, r, r->snap_off, r->snap_data, r->snap_len);
    }
    if (r->note_commit) {
        r->note_commit = false;
        if (r->cfg.cb.on_commit) r->cfg.cb.on_commit(r->cfg.cb.ctx, r, r->commit);
    }
    if (r->note_role) {
        r->note_role = false;
        if (r->cfg.cb.on_role)
            r->cfg.cb.on_role(r->cfg.cb.ctx, r, r->g.role, r->g.term, r->g.leader);
    }
}

/* After every input call: drain and apply, make the deferred input calls, reset if a storage
 * error asked for it, then tell the owner. Re-entry (a storage callback inside) is a no-op. */
static void pump(raft_replica *r)
{
    if (r->in_pump) return;
    r->in_pump = 1;
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        if (!r->tr_busy && !r->install_pending && !r->hs_busy && r->held_n) held_run(r);
        drain(r);
        if (r->tr_busy || r->install_pending || r->hs_busy || r->failed || r->need_reset)
            break;
        if (r->held_n) continue; /* a truncation finished during the drain */
        if (r->pend_append) {
            r->pend_append = false;
            raft_append_done(&r->g, r->pend_append_last, r->pend_append_term);
            continue;
        }
        if (r->pend_flush) {
            r->pend_flush = false;
            raft_flush_done(&r->g, storage_log_durable_offset(r->log));
            continue;
        }
        break;
    }
    if (r->need_reset) reset(r);
    r->in_pump = 0;
    notify(r);
}

/* True when the replica cannot take an input call now. Before saying no, catches a log that
 * lost entries the group still counts on (a pending reset, or the log dropping its unflushed
 * suffix after ENOSPC with no waiter of ours to tell) and rebuilds the group from it. */
static bool busy(raft_replica *r)
{
    if (r->failed || r->closing || r->tr_busy || r->held_n || r->in_pump || r->install_pending ||
        r->hs_busy)
        return true;
    if (r->need_reset || storage_log_last_offset(r->log) < r->g.last) {
        r->need_reset = true;
        pump(r); /* drains nothing, resets, tells the owner */
    }
    return r->failed || r->need_reset;
}

/* ---------------------------------------------------------------- lifecycle */

/* Open: make the log start right after the snapshot point. A crash between writing raft_snap
 * and cutting the log leaves the log starting earlier: cut it now (keeping the suffix when
 * the point's entry is there with the snapshot's term, else emptying it, as an install
 * would). A log that starts later than the point has lost entries Raft counts on. */
static int start_fixup(raft_replica *r)
{
    int64_t start = storage_log_start_offset(r->log), want = r->snap_off + 1;
    if (start == want) return 0;
    if (start > want) {
        log_error("raft", "%s: the log starts at %" PRId64 " but the Raft snapshot point is %"
                          PRId64 " (a Raft log must start right after it): refusing to start "
                          "the replica; remove its directory to rejoin as a new replica",
                  r->dir, start, r->snap_off);
        return AL_EINVAL;
    }
    int64_t t = storage_log_last_offset(r->log) >= r->snap_off
                    ? storage_log_term_at(r->log, r->snap_off) : -1;
    int64_t base = t == r->snap_term && r->snap_off < storage_log_last_offset(r->log)
                       ? storage_log_batch_base(r->log, want) : want;
    log_info("raft", "%s: completing a prefix truncation at %" PRId64 " (%s)", r->dir, want,
             t == r->snap_term && base == want ? "keeping the suffix" : "emptying the log");
    if (t == r->snap_term && base == want) return storage_log_set_start_offset(r->log, want);
    return storage_log_restart_at(r->log, want);
}

/* Open-time fallback: rebuild the config list from every CONFIG batch in the log. */
static int scan_conf(void *ctx, const uint8_t *batch, size_t size)
{
    raft_replica *r = ctx;
    const uint8_t *p;
    size_t plen;
    if (raft_batch_classify(batch, size, &p, &plen) != RAFT_ENTRY_CONFIG) return 0;
    storage_batch_hdr h;
    storage_batch_parse_header(batch, size, &h);
    raft_config c;
    if (raft_config_decode(p, plen, &c) < 0) return AL_ECORRUPT;
    if (r->n_confs == RAFT_CONF_HISTORY) {
        memmove(&r->conf_off[0], &r->conf_off[1], sizeof(r->conf_off[0]) * (RAFT_CONF_HISTORY - 1));
        memmove(&r->confs[0], &r->confs[1], sizeof(r->confs[0]) * (RAFT_CONF_HISTORY - 1));
        r->n_confs--;
    }
    r->conf_off[r->n_confs] = h.base_offset;
    r->confs[r->n_confs++] = c;
    return 0;
}

struct conf_check {
    const raft_config *want;
    bool ok;
};

/* Open: is the batch at a listed offset the CONFIG entry raft_conf says it is? */
static int check_conf(void *ctx, const uint8_t *batch, size_t size)
{
    struct conf_check *cc = ctx;
    const uint8_t *p;
    size_t plen;
    raft_config c;
    cc->ok = raft_batch_classify(batch, size, &p, &plen) == RAFT_ENTRY_CONFIG &&
             raft_config_decode(p, plen, &c) == 0 && memcmp(&c, cc->want, sizeof(c)) == 0;
    return 1;
}

/* Loads the config entries of the log: from raft_conf, each checked against the log; by a
 * full scan when the file is unreadable. */
static int confs_load(raft_replica *r)
{
    int rc = conf_file_read(r);
    int64_t last = storage_log_last_offset(r->log);
    if (rc == 0) {
        uint32_t keep = 0;
        for (uint32_t i = 0; i < r->n_confs; i++) {
            struct conf_check cc = {.want = &r->confs[i]};
            if (r->conf_off[i] > last || r->conf_off[i] <= r->snap_off) continue;
            rc = storage_log_scan_sync(r->log, r->conf_off[i], 1, check_conf, &cc);
            if (rc < 0) return rc;
            if (!cc.ok) continue;
            r->conf_off[keep] = r->conf_off[i];
            r->confs[keep++] = r->confs[i];
        }
        bool changed = keep != r->n_confs;
        r->n_confs = keep;
        return changed ? conf_file_write(r) : 0;
    }
    if (rc != -ENOENT)
        log_warn("raft", "%s unreadable (%s): rebuilding it by scanning the log", r->conf_path,
                 al_strerror(rc));
    r->n_confs = 0;
    if (last > r->snap_off &&
        (rc = storage_log_scan_sync(r->log, r->snap_off + 1, 0, scan_conf, r)) < 0)
        return rc;
    return rc == -ENOENT && r->n_confs == 0 ? 0 : conf_file_write(r);
}

/* Open: the offset translator from the snapshot point's delta and the headers of the log's
 * gap batches (one header scan of the log). */
static int otx_scan(void *ctx, const storage_batch_hdr *h)
{
    raft_replica *r = ctx;
    if (!otx_is_gap(h->attributes, h->producer_id)) return 0;
    return otx_add_gap(&r->otx, h->base_offset, h->base_offset + h->last_offset_delta);
}

static int otx_load(raft_replica *r)
{
    int64_t start = storage_log_start_offset(r->log);
    otx_init(&r->otx, start, r->snap_delta);
    if (storage_log_last_offset(r->log) < start) return 0;
    return storage_log_scan_headers(r->log, start, otx_scan, r);
}

int raft_replica_open(io *iop, const raft_replica_config *cfg, raft_replica **out)
{
    if (!cfg || !cfg->dir || !cfg->cb.send || cfg->self < 0 ||
        strlen(cfg->dir) >= REPLICA_PATH_MAX - 128)
        return AL_EINVAL;
    raft_replica *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->io = iop;
    r->hs_fd = -1;
    r->cfg = *cfg;
    snprintf(r->dir, sizeof(r->dir), "%s", cfg->dir);
    r->cfg.dir = r->dir;
    snprintf(r->hs_path, sizeof(r->hs_path), "%s/raft_state", r->dir);
    snprintf(r->conf_path, sizeof(r->conf_path), "%s/raft_conf", r->dir);
    r->ops = (raft_log_ops){op_term_at, op_last_offset, op_read, op_snapshot};
    snprintf(r->snap_path, sizeof(r->snap_path), "%s/raft_snap", r->dir);
    r->snap_off = -1;
    r->trim_marker = r->trim_to = -1;
    r->flush_want = -1;
    r->commit = -1;
    int rc = -ENOMEM;
    r->rd = calloc(1, sizeof(*r->rd));
    if (!r->rd) goto err;
    if ((rc = storage_log_open(iop, r->dir, &r->cfg.log, &r->log)) < 0) goto err;
    if ((rc = storage_log_sync_all(r->log)) < 0) goto err;
    if ((rc = storage_log_drop_empty_tail(r->log)) < 0) goto err;
    rc = snap_read(r);
    if (rc == -ENOENT) rc = 0;
    if (rc < 0) goto err;
    if ((rc = start_fixup(r)) < 0) goto err;
    bool legacy = false;
    rc = hs_read(r, &r->hs, &legacy);
    if (rc == 0 && legacy) {
        rc = hs_create(r, 1, &r->hs); /* upgrade in place to the two-slot file */
        if (rc == 0)
            log_info("raft", "%s: hard state rewritten in the two-slot format (version 2)",
                     r->hs_path);
    } else if (rc == 0 && (r->hs_fd = io_fs_open(iop, r->hs_path, O_RDWR, 0)) < 0) {
        rc = r->hs_fd;
        r->hs_fd = -1;
    }
    if (rc == -ENOENT) rc = 0;
    if (rc < 0) goto err;
    /* A log written before this replica had a hard state (a partition from a single-node
     * broker, say) may hold terms above it: adopt the log's term so new entries never have a
     * lower term than the log's tail. Raising the term, without a vote, is always safe. */
    int64_t log_term = op_term_at(r, storage_log_last_offset(r->log));
    if (log_term > r->hs.term) {
        raft_hardstate hs = {log_term, RAFT_NODE_NONE};
        if ((rc = hs_write_sync(r, &hs)) < 0) goto err;
    }
    if ((rc = confs_load(r)) < 0) goto err;
    if ((rc = otx_load(r)) < 0) goto err;
    if ((rc = group_create(r)) < 0) goto err;
    r->flush_want = AL_MAX(r->flush_want, storage_log_durable_offset(r->log));
    log_debug("raft", "group %" PRIu64 ": node %d opened %s: term %" PRId64 " vote %d, log to "
                      "%" PRId64 ", %u config entr%s",
              cfg->group, cfg->self, r->dir, r->hs.term, r->hs.vote, r->g.last, r->n_confs,
              r->n_confs == 1 ? "y" : "ies");
    *out = r;
    return 0;
err:
    if (r->log) storage_log_close(r->log);
    if (r->hs_fd >= 0) io_fs_close(iop, r->hs_fd);
    otx_free(&r->otx);
    free(r->snap_data);
    free(r->snap_wire);
    free(r->rd);
    free(r);
    return rc;
}

/* Frees everything the replica owns except the log. */
static void replica_free(raft_replica *r)
{
    raft_group_free(&r->g);
    for (uint32_t i = r->held_head; i < r->held_n; i++) held_free(&r->held[i]);
    free(r->held);
    for (uint32_t i = 0; i < r->n_call; i++) rbuf_free(&r->call[i]);
    rbuf_free(&r->pre);
    free(r->tx);
    free(r->rd);
    free(r->snap_data);
    free(r->snap_wire);
    otx_free(&r->otx);
    free(r->hsw);
    free(r);
}

int raft_replica_close(raft_replica *r)
{
    AL_ASSERT(!r->in_pump);
    waiters_fail(r, AL_ECLOSED);
    r->closing = true; /* storage callbacks during the close do nothing */
    for (raft_replicate_req *q = r->done_head; q;) {
        raft_replicate_req *next = q->next;
        q->next = NULL;
        q->cb(q);
        q = next;
    }
    r->done_head = r->done_tail = NULL;
    int rc = storage_log_close(r->log);
    if (r->rd_busy) storage_read_release(r->rd);
    if (r->hs_busy) { /* its completion closes the fd and frees the writer */
        r->hsw->r = NULL;
        r->hsw = NULL;
    } else if (r->hs_fd >= 0) {
        io_fs_close(r->io, r->hs_fd);
    }
    replica_free(r);
    return rc;
}

void raft_replica_abandon(raft_replica *r)
{
    if (r->rd_busy) { /* its disk read will never complete: free what the read holds */
        free(r->rd->abuf);
        r->rd->abuf = NULL;
        storage_read_release(r->rd);
    }
    storage_log_abandon(r->log);
    if (r->hs_fd >= 0) io_fs_close(r->io, r->hs_fd); /* a write in flight never completes */
    replica_free(r);
}

/* ---------------------------------------------------------------- inputs */

void raft_replica_set_campaign(raft_replica *r, bool on)
{
    raft_set_campaign(&r->g, on);
}

int raft_replica_tick(raft_replica *r)
{
    if (r->failed) return AL_EFAILED;
    if (r->install_pending && !r->tr_busy && !r->in_pump) {
        install_finish(r);
        if (!r->install_pending) pump(r); /* the held actions, then the owner */
    }
    if (busy(r)) return 0;
    if (r->trim_marker >= 0 && r->g.commit >= r->trim_marker) trim_apply(r);
    if (storage_log_start_offset(r->log) <= r->snap_off) { /* a cut that failed half way */
        int rc = storage_log_set_start_offset(r->log, r->snap_off + 1);
        if (rc < 0 && rc != AL_ERANGE)
            log_warn("raft", "group %" PRIu64 ": moving the log start to %" PRId64 ": %s",
                     r->cfg.group, r->snap_off + 1, al_strerror(rc));
    }
    raft_tick(&r->g, io_now_ns(r->io) / 1000000u);
    pump(r);
    return 0;
}

/* Checks an append request's entries against what they claim before the group sees them. */
static int check_entries(const raft_replica *r, const raft_msg *m)
{
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const raft_entry *e = &m->entries[i];
        raft_config c;
        if (e->term < 1 || e->term > INT32_MAX || e->count < 1) return AL_EMALFORMED;
        switch (e->type) {
        case RAFT_ENTRY_DATA: {
            /* The bytes are as the leader checked them in full (at replicate, or when its
             * log read them back): the message's CRC32C covers them in transit, so only the
             * framing is checked here, as storage_log_append_validated expects. */
            storage_batch_hdr h;
            int nb = batches_framing(e->data, e->len, r->cfg.log.max_message_bytes);
            if (nb < 0) return nb;
            storage_batch_parse_header(e->data, e->len, &h);
            if (nb != 1 || h.last_offset_delta + 1 != e->count ||
                raft_batch_classify(e->data, e->len, NULL, NULL) != RAFT_ENTRY_DATA)
                return AL_EMALFORMED;
            break;
        }
        case RAFT_ENTRY_NOOP:
            if (e->len || e->count != 1) return AL_EMALFORMED;
            break;
        case RAFT_ENTRY_CONFIG:
            if (e->count != 1 || raft_config_decode(e->data, e->len, &c) < 0)
                return AL_EMALFORMED;
            break;
        default: return AL_EMALFORMED;
        }
    }
    return 0;
}

struct hb_ctx {
    raft_replica *(*lookup)(void *ctx, uint64_t group);
    void *ctx;
};

/* raft_hb_dispatch glue: the group of a hosted replica that can take an input now. */
static raft_group *hb_lookup(void *ctx, uint64_t group)
{
    struct hb_ctx *h = ctx;
    raft_replica *r = h->lookup(h->ctx, group);
    return r && !busy(r) ? &r->g : NULL;
}

/* raft_hb_dispatch glue: apply what stepping one heartbeat item queued. */
static void hb_after(void *ctx, raft_group *g)
{
    AL_UNUSED(ctx);
    pump(AL_CONTAINER_OF(g, raft_replica, g));
}

int raft_replica_deliver(raft_rx *rx, uint8_t *buf, size_t len,
                         raft_replica *(*lookup)(void *ctx, uint64_t group), void *ctx)
{
    raft_msg m;
    int rc = raft_msg_decode(buf, len, &m, rx->ents, RAFT_MSG_MAX_ENTRIES, rx->hbs,
                             RAFT_MSG_MAX_HB);
    if (rc < 0) return rc;
    if (m.type == RAFT_MSG_HB_BATCH) {
        struct hb_ctx h = {lookup, ctx};
        rc = raft_hb_dispatch(&m, hb_lookup, hb_after, &h);
        return rc < 0 ? rc : 0;
    }
    raft_replica *r = lookup(ctx, m.group);
    if (!r) return AL_ENOTFOUND;
    if (busy(r)) { /* dropped: Raft retries */
        r->st.dropped_busy++;
        return 0;
    }
    if (m.type == RAFT_MSG_APPEND_REQ && (rc = check_entries(r, &m)) < 0) {
        log_warn("raft", "group %" PRIu64 ": dropping an append request from %d with a bad "
                         "entry: %s", m.group, m.from, al_strerror(rc));
        return rc;
    }
    rc = raft_step(&r->g, &m);
    pump(r);
    return rc == AL_EINVAL ? rc : 0;
}

/* Counts the batches in buf checking only their framing (magic, lengths, max size): for
 * bytes the caller checked in full. Returns the count or the error storage_batches_validate
 * would give. */
static int batches_framing(const uint8_t *buf, size_t len, size_t max)
{
    int n = 0;
    for (size_t pos = 0; pos < len; n++) {
        storage_batch_hdr h;
        if (n >= 1000000) return AL_ETOOLARGE;
        if (storage_batch_parse_header(buf + pos, len - pos, &h) < 0) return AL_ETRUNCATED;
        if (h.magic != 2 || h.batch_length < STORAGE_BATCH_HEADER - STORAGE_BATCH_LOG_OVERHEAD ||
            h.last_offset_delta < 0 || h.records_count < 0 ||
            h.records_count > h.last_offset_delta + 1)
            return AL_EMALFORMED;
        size_t sz = storage_batch_size(&h);
        if (max && sz > max) return AL_ETOOLARGE;
        if (sz > len - pos) return AL_ETRUNCATED;
        pos += sz;
    }
    return n ? n : AL_EMALFORMED;
}

int raft_replicate(raft_replica *r, uint8_t *buf, size_t len, raft_replicate_req *q)
{
    if (r->failed) return AL_EFAILED;
    if (r->g.role != RAFT_LEADER) return RAFT_ENOTLEADER;
    if (busy(r)) return RAFT_EBUSY;
    int nb = q->validated ? batches_framing(buf, len, r->cfg.log.max_message_bytes)
                          : storage_batches_validate(buf, len, r->cfg.log.max_message_bytes, NULL);
    if (nb < 0) return nb;
    if ((uint32_t)nb > AL_MIN(r->cfg.raft.max_msg_entries, 64u)) return AL_EINVAL;
    raft_entry ents[64];
    size_t pos = 0;
    for (int i = 0; i < nb; i++) {
        storage_batch_hdr h;
        storage_batch_parse_header(buf + pos, len - pos, &h);
        size_t sz = storage_batch_size(&h);
        if (raft_batch_classify(buf + pos, sz, NULL, NULL) != RAFT_ENTRY_DATA) return AL_EINVAL;
        ents[i] = (raft_entry){.count = h.last_offset_delta + 1, .type = RAFT_ENTRY_DATA,
                               .len = (uint32_t)sz, .data = buf + pos};
        pos += sz;
    }
    int64_t base = -1;
    int rc = raft_propose(&r->g, ents, (uint32_t)nb, &base);
    if (rc < 0) return rc;
    q->base_offset = base;
    q->last_offset = raft_entry_last(&ents[nb - 1]);
    q->term = r->g.term;
    q->res = 0;
    q->next = NULL;
    bool wait = q->wait == RAFT_WAIT_COMMIT;
    if (wait) {
        if (r->wq_tail) r->wq_tail->next = q;
        else r->wq_head = q;
        r->wq_tail = q;
    }
    pump(r); /* appends the batches (buf is stamped), sends them, may even commit */
    if (wait) return 0;
    if (r->failed) return AL_EFAILED;
    /* a storage error while appending reset the group: the batches are not in the log */
    if (op_term_at(r, q->last_offset) != q->term) return RAFT_ELOST;
    return 1;
}

int raft_replica_writable(raft_replica *r)
{
    if (r->failed) return AL_EFAILED;
    if (r->g.role != RAFT_LEADER) return RAFT_ENOTLEADER;
    if (busy(r)) return r->failed ? AL_EFAILED : RAFT_EBUSY;
    if (r->g.transferee != RAFT_NODE_NONE) return RAFT_EBUSY;
    if (r->g.last - r->g.commit > (int64_t)r->g.opt.max_uncommitted) return AL_EFULL;
    return 0;
}

int raft_replica_transfer_leadership(raft_replica *r, int32_t target)
{
    if (r->failed) return AL_EFAILED;
    if (busy(r)) return RAFT_EBUSY;
    int rc = raft_transfer_leadership(&r->g, target);
    pump(r);
    return rc;
}

int raft_replica_change_membership(raft_replica *r, int op, int32_t node)
{
    if (r->failed) return AL_EFAILED;
    if (busy(r)) return RAFT_EBUSY;
    int rc = raft_change_membership(&r->g, op, node);
    pump(r);
    return rc;
}

int raft_replica_prefix_truncate(raft_replica *r, int64_t start, const uint8_t *data,
                                 size_t len)
{
    if (r->failed) return AL_EFAILED;
    if (busy(r)) return RAFT_EBUSY;
    int64_t off = start - 1;
    if (off <= r->snap_off) { /* done, unless an earlier cut could not move the log start */
        if (storage_log_start_offset(r->log) > r->snap_off) return 0;
        return storage_log_set_start_offset(r->log, r->snap_off + 1);
    }
    if (off > r->g.commit || off > r->g.durable || off > storage_log_last_offset(r->log))
        return AL_ERANGE;
    /* the point must end a batch: start is the base of the batch holding it */
    if (start <= storage_log_last_offset(r->log) && storage_log_batch_base(r->log, start) != start)
        return AL_EINVAL;
    raft_config conf;
    int64_t term = raft_term_at(&r->g, off);
    int rc = raft_config_at(&r->g, off, &conf);
    if (rc < 0 || term < 0) return rc < 0 ? rc : AL_EINVAL;
    /* durable first: a failure leaves both the group and the log as they were */
    if ((rc = snap_write(r, off, term, &conf, data, len, otx_delta(&r->otx, start))) < 0) {
        log_warn("raft", "group %" PRIu64 ": writing the snapshot at %" PRId64 ": %s",
                 r->cfg.group, off, al_strerror(rc));
        return rc;
    }
    rc = raft_compact(&r->g, off, NULL);
    AL_ASSERT(rc == 0); /* checked above */
    otx_truncate_prefix(&r->otx, start);
    if ((rc = conf_forget_below(r, off)) < 0) return rc;
    rc = storage_log_set_start_offset(r->log, start);
    if (rc < 0) return rc; /* finished at the next open (start_fixup) */
    r->st.prefix_truncations++;
    log_debug("raft", "group %" PRIu64 ": log prefix cut: starts at %" PRId64, r->cfg.group,
              start);
    return 0;
}

/* A committed DeleteRecords marker: cut the prefix to where it asks (rounded down to a batch
 * base; never past the commit index). Kept for a retry (tick) while the cut cannot be made
 * yet (busy, or not durable that far). */
static void trim_apply(raft_replica *r)
{
    int64_t to = AL_MIN(r->trim_to, r->g.commit + 1);
    int64_t start = storage_log_start_offset(r->log);
    if (to > start && to <= storage_log_last_offset(r->log)) {
        int64_t base = storage_log_batch_base(r->log, to);
        if (base < 0) return;
        to = base;
    }
    if (to <= start) {
        r->trim_marker = r->trim_to = -1;
        return;
    }
    int rc = raft_replica_prefix_truncate(r, to, NULL, 0);
    if (rc == 0) {
        log_info("raft", "group %" PRIu64 ": records before %" PRId64 " deleted (DeleteRecords)",
                 r->cfg.group, to);
        r->trim_marker = r->trim_to = -1;
    } else if (rc != RAFT_EBUSY && rc != AL_ERANGE) {
        log_warn("raft", "group %" PRIu64 ": DeleteRecords to %" PRId64 ": %s", r->cfg.group, to,
                 raft_strerror(rc));
        r->trim_marker = r->trim_to = -1;
    }
}

int64_t raft_replica_snapshot_offset(const raft_replica *r) { return r->snap_off; }
const otx *raft_replica_otx(const raft_replica *r) { return &r->otx; }

const uint8_t *raft_replica_snapshot_data(const raft_replica *r, size_t *len)
{
    *len = r->snap_len;
    return r->snap_data;
}

/* ---------------------------------------------------------------- accessors */

int raft_replica_role(const raft_replica *r) { return r->g.role; }
int32_t raft_replica_leader(const raft_replica *r) { return r->g.leader; }
int64_t raft_replica_term(const raft_replica *r) { return r->g.term; }
int32_t raft_replica_vote(const raft_replica *r) { return r->g.vote; }
raft_hardstate raft_replica_durable_hardstate(const raft_replica *r) { return r->hs; }

bool raft_replica_hardstate_pending(const raft_replica *r, raft_hardstate *out)
{
    bool maybe = r->hs_busy || (r->hs_unknown && r->hsw);
    if (maybe && out) *out = r->hsw->hs;
    return maybe;
}
int64_t raft_replica_commit(const raft_replica *r) { return r->g.commit; }
int64_t raft_replica_last_offset(const raft_replica *r) { return r->g.last; }
const raft_config *raft_replica_membership(const raft_replica *r) { return &r->g.conf; }
storage_log *raft_replica_log(raft_replica *r) { return r->log; }
uint64_t raft_replica_group(const raft_replica *r) { return r->cfg.group; }
bool raft_replica_failed(const raft_replica *r) { return r->failed; }

int64_t raft_replica_match(const raft_replica *r, int32_t node)
{
    if (r->g.role != RAFT_LEADER) return -1;
    if (node == r->cfg.self) return r->g.durable;
    for (uint32_t i = 0; i < r->g.n_pr; i++)
        if (r->g.pr[i].id == node) return r->g.pr[i].match;
    return -1;
}

void raft_replica_get_stats(const raft_replica *r, raft_replica_stats *out)
{
    *out = r->st;
}
