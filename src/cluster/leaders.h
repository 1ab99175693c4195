/*
 * leaders.h — the leadership table of a cluster node: for every partition Raft group (key: the
 * group id, cluster_group_id of (topic id, partition)) the leader node, its term (= Kafka leader
 * epoch) and the in-sync replicas the leader reported. Metadata answers from it on every node,
 * also for partitions the node does not host.
 *
 * Where entries come from (src/cluster/partition_raft.c): each shard merges its replicas'
 * (leader, term, isr) into the node's table every ~200 ms and after a role change; shard 0
 * sends the entries its node leads to every peer (encoded with ldr_encode) and merges what
 * peers send.
 *
 * Merge rules (ldr_merge), so the same reports in any order converge on the same table:
 *   - a higher term replaces what is known;
 *   - in the same term: a known leader replaces an unknown one (-1), and the leader's own
 *     report (reporter == leader) replaces the ISR; nothing else changes the entry;
 *   - a lower term is ignored.
 * Entries are never removed (group ids are not reused: topic ids are random); a deleted
 * topic's entries are simply never asked for again.
 *
 * Wire format (big-endian): u32 "ALLD", u16 version 1, i32 from, u32 n, then n x
 *   (u64 group, i32 leader, i64 term, u8 n_isr, n_isr x i32).
 *
 * Threading: not thread-safe; the node's table is used under partition_raft.c's mutex. Pure
 * code: no I/O.
 */
#ifndef AL_CLUSTER_LEADERS_H
#define AL_CLUSTER_LEADERS_H

#include "base/base.h"

enum {
    LDR_ISR_MAX = 16,           /* = RAFT_MAX_NODES */
    LDR_TABLE_MAX = 1u << 22,   /* bound on entries (slots) */
    LDR_WIRE_VERSION = 1,
};
#define LDR_WIRE_MAGIC 0x414c4c44u /* "ALLD" */

typedef struct ldr_entry {
    uint64_t group;   /* 0: empty slot */
    int32_t leader;   /* -1: no leader known in term */
    int64_t term;
    int32_t reporter; /* node whose report set the entry */
    uint8_t n_isr;
    int32_t isr[LDR_ISR_MAX];
} ldr_entry;

typedef struct ldr_table {
    ldr_entry *slots; /* open addressing, linear probing; cap a power of two */
    uint32_t cap, n;
    uint64_t version; /* bumped on every change */
} ldr_table;

/* Initialises an empty table. Returns 0 or -ENOMEM. */
int ldr_init(ldr_table *t);
void ldr_free(ldr_table *t);

/* Merges one report e (e->group != 0) by the rules above. Returns 1 if the table changed, 0
 * if not, AL_EINVAL (group 0, n_isr too big), AL_EFULL (LDR_TABLE_MAX) or -ENOMEM. */
int ldr_merge(ldr_table *t, const ldr_entry *e);

/* The entry of group, or NULL. Valid until the next change of t. */
const ldr_entry *ldr_get(const ldr_table *t, uint64_t group);

/* Replaces dst's contents with a copy of src. Returns 0 or -ENOMEM (dst unchanged). */
int ldr_copy(ldr_table *dst, const ldr_table *src);

/*
 * Encodes the entries for which keep(ctx, e) is true (keep NULL: all) as a message from node
 * `from` into a malloc'd buffer (*out, caller frees). Returns the number of entries encoded (>=
 * 0) or -ENOMEM.
 */
int ldr_encode(const ldr_table *t, int32_t from, bool (*keep)(void *ctx, const ldr_entry *e),
               void *ctx, uint8_t **out, size_t *len);

/*
 * Decodes a message and calls fn(ctx, from, &entry) for each entry, in order (untrusted input:
 * bounds-checked; nothing is called for a malformed message, which is checked whole first).
 * Returns the number of entries, or AL_EMALFORMED / AL_ETRUNCATED.
 */
int ldr_decode(const uint8_t *buf, size_t len,
               void (*fn)(void *ctx, int32_t from, const ldr_entry *e), void *ctx);

#endif
