/*
 * offset_translator.h — Kafka offsets without Raft's own batches (issue 7, Redpanda's
 * offset_translator). In cluster mode the partition log is the Raft log, and Raft writes
 * batches of its own into it (NOOP, CONFIG, TRIM: "gap" batches, raft_batch_is_gap). They take
 * Raft offsets but no Kafka offsets: for any Raft offset x,
 *
 *     kafka(x) = x - (number of gap offsets below x)
 *
 * (the number of data offsets below x), so data records get contiguous Kafka offsets and a
 * gap offset maps to the Kafka offset of the next data record. A translator keeps the
 * cumulative gap count at the log start (base_delta: gaps that were cut off with the prefix;
 * it is persisted with the Raft snapshot point) and one entry per gap batch still in the log:
 * (its last Raft offset, gaps up to and including it). Entries exist only for Raft batches
 * (a leader change, a membership change, a DeleteRecords), so the array stays small; it is
 * pruned by prefix truncation.
 *
 * Threading: none inside; the owner (the replica, its shard) serialises every call.
 * Errors: 0 or negative (AL_ERANGE, -ENOMEM).
 */
#ifndef AL_RAFT_OFFSET_TRANSLATOR_H
#define AL_RAFT_OFFSET_TRANSLATOR_H

#include "base/base.h"

typedef struct otx_entry {
    int64_t last; /* last Raft offset of a gap batch */
    int64_t cum;  /* gap offsets at or below last (base_delta included) */
} otx_entry;

typedef struct otx {
    int64_t start;      /* first Raft offset the entries describe (the log start) */
    int64_t base_delta; /* gap offsets below start */
    otx_entry *e;       /* ascending by last */
    uint32_t n, cap;
} otx;

/* An empty translator for a log starting at start with base_delta gaps below it. */
void otx_init(otx *t, int64_t start, int64_t base_delta);
void otx_free(otx *t);

/* Whether a batch (its parsed header fields) is a Raft gap batch: a control batch that is not
 * transactional with producer id -1 (NOOP, CONFIG, TRIM; Kafka's transaction markers are
 * transactional and stay data). */
bool otx_is_gap(int16_t attributes, int64_t producer_id);

/* A gap batch covering Raft offsets [base, last] was appended; base must be past every entry
 * and >= start. Returns 0, AL_ERANGE (out of order: nothing changed) or -ENOMEM. */
int otx_add_gap(otx *t, int64_t base, int64_t last);

/* The log's suffix from Raft offset `from` on was removed (suffix truncation): gap batches at
 * or after it are forgotten. */
void otx_truncate_suffix(otx *t, int64_t from);

/* The log now starts at Raft offset start (prefix truncation, start > t->start): entries below
 * are folded into base_delta. A start below t->start changes nothing. */
void otx_truncate_prefix(otx *t, int64_t start);

/* Everything was replaced (an installed snapshot): the log restarts empty at start with
 * base_delta gaps below. */
void otx_reset(otx *t, int64_t start, int64_t base_delta);

/* Gap offsets below Raft offset x (x >= start; below start: base_delta). */
int64_t otx_delta(const otx *t, int64_t x);

/* kafka(x) (see the file comment). */
static inline int64_t otx_to_kafka(const otx *t, int64_t x) { return x - otx_delta(t, x); }

/* The Raft offset of Kafka offset k: the data offset x with kafka(x) = k, or, past the last
 * data record, the offset after the log's gaps (kafka(x) = k, x after every entry). For k below
 * the log start's Kafka offset the answer is below start (the caller checks ranges). */
int64_t otx_to_raft(const otx *t, int64_t k);

#endif
