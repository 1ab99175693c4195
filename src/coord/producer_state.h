/*
 * producer_state.h — idempotent-producer state, as pure logic (no I/O, no threads, time passed
 * in): producer id allocation with persisted block reservations, InitProducerId for
 * non-transactional producers (with the KIP-360 epoch bump), and per partition the state of each
 * producer: its epoch and the metadata of its last five batches, used to answer a retried batch
 * with its original offset (duplicate detection) and to refuse gaps in sequence numbers.
 *
 * Rules follow Apache Kafka 3.8 (ProducerStateManager / ProducerAppendInfo / UnifiedLog):
 *  - a batch whose (epoch, first seq, last seq) equals one of the producer's last five batches is
 *    a duplicate: answer it with that batch's base offset, do not append;
 *  - an epoch older than the producer's current one -> INVALID_PRODUCER_EPOCH;
 *  - a newer epoch must start at sequence 0 (unless the producer has no known epoch);
 *  - within an epoch the first sequence must be last sequence + 1 (INT32_MAX wraps to 0), else
 *    OUT_OF_ORDER_SEQUENCE_NUMBER;
 *  - a producer the partition does not know (never seen, expired, or its batches deleted by
 *    retention) is accepted at any sequence, as Kafka 3.8 does; `strict_unknown` makes a
 *    non-zero first sequence from an unknown producer UNKNOWN_PRODUCER_ID instead.
 * State is rebuilt after restart by replaying the batch headers of the log in offset order
 * (producer_state_replay), which applies no checks, just like Kafka's log recovery.
 *
 * Threading: an object is used by one thread (the shard owning the partition / coordinator).
 */
#ifndef AL_COORD_PRODUCER_STATE_H
#define AL_COORD_PRODUCER_STATE_H

#include "base/base.h"
#include "coord/hmap.h"

#define PRODUCER_NO_ID       (-1LL)
#define PRODUCER_NO_EPOCH    (-1)
#define PRODUCER_NO_SEQUENCE (-1)
#define PRODUCER_MAX_BATCHES 5 /* batches remembered per producer per partition */

/* ---- producer id allocation (broker-wide, owned by the coordinator shard) ---- */

struct producer_ids {
    int64_t next_id;    /* next id to hand out */
    int64_t block_end;  /* ids below this are durably reserved; next_id <= block_end */
    int64_t block_size; /* how many ids one reservation covers */
    /* epochs handed out, for the KIP-360 bump check: producer id -> latest epoch */
    struct coord_hmap issued;
    int64_t expiration_ms; /* forget an issued id after this long unused */
};

/*
 * Starts the allocator from `persisted_block_end` (the value the caller persisted last time, or
 * 0 on a fresh cluster). No ids are reserved yet: the first allocation asks for a reservation.
 * Ids from before a restart are never reused because they all lie below the persisted end.
 * block_size must be > 0. expiration_ms is producer.id.expiration.ms (Kafka default 86400000).
 */
void producer_ids_init(struct producer_ids *p, int64_t persisted_block_end, int64_t block_size,
                       int64_t expiration_ms);
void producer_ids_destroy(struct producer_ids *p);

/*
 * Allocates the next producer id into *id. Returns 0, or AL_EFULL when the reserved block is
 * used up: the caller must then durably persist producer_ids_reservation(p) and call
 * producer_ids_reserved(p, that value) before trying again. Never returns an id twice, also
 * across restarts, provided the caller persists reservations before calling _reserved.
 */
int producer_ids_alloc(struct producer_ids *p, int64_t *id);

/* The block end the caller must persist for the next reservation. */
int64_t producer_ids_reservation(const struct producer_ids *p);

/* Records that `block_end` (from producer_ids_reservation) is durable; ids below it may be
 * handed out. Returns 0 or AL_EINVAL if it does not extend the reservation. */
int producer_ids_reserved(struct producer_ids *p, int64_t block_end);

/*
 * Cluster mode: the ids [first, first + count) were durably granted to this node (a committed
 * ALLOC_IDS command of the controller): they replace what is left of the current block (the
 * caller asks only once it is used up). Returns 0, or AL_EINVAL when count < 1 or the grant does
 * not lie above every id handed out so far (ids only grow: a grant never repeats one).
 */
int producer_ids_grant(struct producer_ids *p, int64_t first, int64_t count);

/*
 * InitProducerId for a producer without transactional.id. `cur_id`/`cur_epoch` are the request's
 * ProducerId/ProducerEpoch (-1/-1 for a new producer). Rules:
 *  - (-1, -1): a new id with epoch 0;
 *  - an id this allocator issued and still remembers, with the epoch it last issued: the same id
 *    with epoch + 1 (KIP-360), or a new id with epoch 0 when the epoch would exceed 32766;
 *  - a remembered id with a different epoch: KAFKA_ERR_INVALID_PRODUCER_EPOCH (returned in
 *    *kafka_err, 0 otherwise);
 *  - an id this allocator does not remember (e.g. after a restart or expiry): a new id, epoch 0,
 *    as Kafka does for non-transactional producers;
 *  - only one of the two being -1: KAFKA_ERR_INVALID_REQUEST.
 * Returns 0 (check *kafka_err), or AL_EFULL (reserve a block first, as for _alloc), or -ENOMEM.
 */
int producer_ids_init_producer(struct producer_ids *p, int64_t cur_id, int16_t cur_epoch,
                               int64_t now_ms, int64_t *out_id, int16_t *out_epoch,
                               int16_t *kafka_err);

/* Forgets issued ids unused for expiration_ms. Returns how many were forgotten. */
int producer_ids_tick(struct producer_ids *p, int64_t now_ms);

/* ---- per-partition producer state ---- */

struct producer_batch_meta {
    int32_t first_seq;
    int32_t last_seq;
    int64_t base_offset; /* offset of the batch's first record */
    int32_t last_offset_delta;
    int64_t timestamp; /* the batch's max timestamp */
};

struct producer_entry {
    struct coord_hnode node;
    int64_t producer_id;
    int16_t epoch;
    uint8_t nbatches; /* 0..PRODUCER_MAX_BATCHES, oldest first in batches[] */
    struct producer_batch_meta batches[PRODUCER_MAX_BATCHES];
    int64_t last_timestamp; /* max timestamp of the last batch, for expiry */
};

struct producer_state {
    struct coord_hmap producers; /* producer id -> producer_entry */
    int64_t expiration_ms;       /* producer.id.expiration.ms */
    bool strict_unknown;         /* see the file comment */
};

/* A batch header as read from a produce request or from the log. */
struct producer_batch {
    int64_t producer_id; /* -1: not idempotent, nothing to check */
    int16_t epoch;
    int32_t base_seq;
    int32_t record_count; /* >= 1 */
    int64_t max_timestamp;
};

enum producer_verdict {
    PRODUCER_OK = 0,  /* append it, then call producer_state_record */
    PRODUCER_DUPLICATE /* do not append; answer with *dup_base_offset */
};

void producer_state_init(struct producer_state *s, int64_t expiration_ms);
void producer_state_destroy(struct producer_state *s);

/* The last sequence of a batch: base_seq + count - 1, wrapping past INT32_MAX to 0. */
int32_t producer_seq_add(int32_t seq, int32_t n);

/*
 * Checks a batch from a client before it is appended. Returns PRODUCER_OK, PRODUCER_DUPLICATE
 * (with the original batch's base offset in *dup_base_offset, and its last offset delta in
 * *dup_last_delta if not NULL), or a negative Kafka error code:
 * -KAFKA_ERR_INVALID_PRODUCER_EPOCH, -KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
 * -KAFKA_ERR_UNKNOWN_PRODUCER_ID (strict mode only), -KAFKA_ERR_INVALID_RECORD (count < 1 or
 * base seq < 0). Does not change state. Batches with producer_id -1 are always OK.
 */
int producer_state_check(const struct producer_state *s, const struct producer_batch *b,
                         int64_t *dup_base_offset, int32_t *dup_last_delta);

/*
 * Records a batch that was appended at `base_offset` (after a PRODUCER_OK check, or when
 * replaying the log). Returns 0 or -ENOMEM. A newer epoch clears the remembered batches.
 */
int producer_state_record(struct producer_state *s, const struct producer_batch *b,
                          int64_t base_offset);

/* Replay of one batch header from the log during recovery: the same as _record (no checks). */
static inline int producer_state_replay(struct producer_state *s, const struct producer_batch *b,
                                        int64_t base_offset)
{
    return producer_state_record(s, b, base_offset);
}

/* Removes producers whose last batch timestamp is expiration_ms or more before now_ms.
 * Returns how many were removed. */
int producer_state_tick(struct producer_state *s, int64_t now_ms);

/* Removes every producer entry (e.g. after the partition's log was truncated to empty). */
void producer_state_clear(struct producer_state *s);

/* Looks up a producer's entry, or NULL. The pointer is valid until the next mutation. */
const struct producer_entry *producer_state_find(const struct producer_state *s, int64_t pid);

/* Number of producers tracked. */
static inline size_t producer_state_count(const struct producer_state *s)
{
    return s->producers.count;
}

/* ---- snapshot (clean close) ----
 *
 * The table of a partition, as written next to its log at a clean close so that the next open
 * need not rebuild it by reading the log's batch headers (Kafka's <offset>.snapshot files). The
 * snapshot records end_offset, the log's next offset when it was taken: it is only valid for a
 * log that ends exactly there with the same contents (the caller's rule: trust it only at open,
 * when the log ends at end_offset, and remove it before any new append). Format (big-endian):
 * magic "ALPS", version 1, end_offset i64, count u32, per producer {id i64, epoch i16,
 * nbatches u8, last_timestamp i64, per batch {first_seq i32, last_seq i32, base_offset i64,
 * last_offset_delta i32, timestamp i64}}, then a CRC-32C of everything before it.
 */

/* Encodes s into a malloc'd buffer (*out, *len). Returns 0, -ENOMEM, or AL_ERANGE when a
 * remembered batch does not lie below end_offset (the table does not describe a log ending
 * there, e.g. after the log dropped appends: such a table must not be saved). */
int producer_state_encode(const struct producer_state *s, int64_t end_offset, uint8_t **out,
                          size_t *len);

/* Decodes a snapshot into s, which must be empty; *end_offset gets its end offset. Returns 0,
 * AL_ECORRUPT (bad magic, version, CRC, length, or a value no table can hold: s is left empty)
 * or -ENOMEM (s left empty). Never trusts a count or length from the bytes beyond len. */
int producer_state_decode(struct producer_state *s, const uint8_t *b, size_t len,
                          int64_t *end_offset);

/* ---- refusal fences (Produce in cluster mode) ----
 *
 * A client keeps up to five Produce requests in flight per partition. When the leader refuses
 * one batch with a retriable error that leaves it unwritten (NOT_LEADER_OR_FOLLOWER while a
 * leadership transfer runs, NOT_ENOUGH_REPLICAS, ...) and the condition clears before the next
 * in-flight batch arrives, that batch would find a sequence gap and get
 * OUT_OF_ORDER_SEQUENCE_NUMBER. librdkafka treats that answer as a sequence desynchronization
 * (an epoch bump at best; before 2.3.0, after an earlier "possibly persisted" error such as a
 * dropped connection, a fatal error: "rewound sequence number"). A fence remembers, per
 * (partition, producer), the first sequence refused that way and its error for
 * PRODUCER_FENCE_MS: a later batch of the same epoch whose gap starts at or before that
 * sequence gets the refusal's error again instead of OUT_OF_ORDER_SEQUENCE_NUMBER, so the
 * client retries its batches in order. A batch appended for the producer lifts the fence.
 * The table is bounded (PRODUCER_FENCES, the oldest slot reused); losing a fence only means
 * Kafka's own answer (OUT_OF_ORDER_SEQUENCE_NUMBER). One table per thread (shard).
 */
#define PRODUCER_FENCES   64
#define PRODUCER_FENCE_MS 10000

struct producer_fence {
    uint64_t part;       /* producer_fence_key of the partition; 0: free */
    int64_t producer_id;
    int16_t epoch;
    int16_t err;         /* the Kafka error of the latest refusal */
    int32_t seq;         /* the first sequence refused */
    int64_t until_ms;    /* expires then */
};

struct producer_fences {
    struct producer_fence f[PRODUCER_FENCES];
    uint32_t used; /* slots with part != 0: none (the usual case) skips every lookup */
};

/* A non-zero key for a partition (topic id, index). */
uint64_t producer_fence_key(const uint8_t topic_id[16], int32_t partition);

/*
 * Records that batch b of partition `part` was refused with Kafka error err (> 0) and nothing
 * of it was written. Keeps the earliest sequence of an active fence of the same epoch; a
 * newer epoch replaces it. Batches without producer id are ignored.
 */
void producer_fences_refused(struct producer_fences *t, uint64_t part,
                             const struct producer_batch *b, int16_t err, int64_t now_ms);

/*
 * For a batch that producer_state_check (on s) answered OUT_OF_ORDER_SEQUENCE_NUMBER: returns
 * the error to answer instead (an active fence of the same producer and epoch whose sequence
 * lies in the gap: expected next sequence <= fence sequence < b's base sequence), or 0 to
 * answer OUT_OF_ORDER_SEQUENCE_NUMBER.
 */
int16_t producer_fences_gap(const struct producer_fences *t, uint64_t part,
                            const struct producer_state *s, const struct producer_batch *b,
                            int64_t now_ms);

/* A batch of producer_id was appended to partition part: lifts its fence. */
void producer_fences_clear(struct producer_fences *t, uint64_t part, int64_t producer_id);

/*
 * A new leader's gaps (Produce in cluster mode). Fences live on the node that refused: when
 * the OLD leader refused batch N (a transfer running) and the client sends its in-flight
 * N+1 to the NEW leader before retrying N (librdkafka moves a partition to its new leader
 * with requests still in flight to the old one), the new leader finds a gap it cannot tell
 * from a lost batch. For a batch producer_state_check (on s) answered
 * OUT_OF_ORDER_SEQUENCE_NUMBER: true when the producer's last batch lies below `since` (the
 * log's end when this leadership began: a previous leader appended it) and b skips ahead of
 * it (same epoch: base sequence past the next one; a newer epoch: past 0), i.e. the gap opens
 * right where the previous leadership ended, by no more than what a client can have had in
 * flight ahead of b: PRODUCER_MAX_BATCHES - 1 batches of the largest record count among b and
 * the producer's remembered batches. The caller then answers a retriable error (as Kafka
 * does when it cannot tell) for a bounded time after the leadership began. A longer gap
 * (e.g. librdkafka skipping batches that timed out unwritten, which it recovers from with an
 * epoch bump) and a gap behind a batch of this leadership stay OUT_OF_ORDER_SEQUENCE_NUMBER.
 */
bool producer_state_gap_at_handover(const struct producer_state *s,
                                    const struct producer_batch *b, int64_t since);

#endif
