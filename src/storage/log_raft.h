/*
 * log_raft.h — what the Raft replica (src/raft/replica.c) needs from a partition log beyond
 * log.h: making the log found at open durable before Raft counts it as such, and synchronous
 * batch scans for start-up recovery (config entries) and tests. Off the data path: these block
 * the shard on synchronous file reads.
 *
 * Threading: like log.h, only on the shard that owns the log.
 */
#ifndef AL_STORAGE_LOG_RAFT_H
#define AL_STORAGE_LOG_RAFT_H

#include "storage/log.h"

/*
 * fdatasyncs every segment file that may hold bytes not yet synced (synchronous). Call right
 * after storage_log_open: recovery trusts whatever the files hold, which after a process crash
 * may still sit in the page cache; Raft treats the whole recovered log as durable. Returns 0 or
 * -errno (the log is then unusable for Raft: close it).
 */
int storage_log_sync_all(storage_log *log);

/*
 * Removes trailing segments that hold no batch (a roll to a new term whose first batch never
 * became durable leaves one behind a crash): the log's last term is then again the term of
 * its last batch, so Raft can append entries of an older term there after it. Call right after
 * storage_log_open (the log must be idle). Returns the number of segments removed or -errno.
 */
int storage_log_drop_empty_tail(storage_log *log);

/*
 * Calls fn(ctx, batch, size) for every stored batch whose last offset >= from, in offset order,
 * reading synchronously (memory buffers or disk), at most max_batches of them (0: no bound).
 * fn returns 0 to go on, 1 to stop, or a negative error that ends the scan. The batch bytes are
 * valid only during the call. Returns 0, fn's error, AL_ECORRUPT (a stored batch fails to
 * parse), -ENOMEM or -errno.
 */
int storage_log_scan_sync(storage_log *log, int64_t from, uint64_t max_batches,
                          int (*fn)(void *ctx, const uint8_t *batch, size_t size), void *ctx);

/*
 * Empties the log and restarts it at offset (a Raft follower installing a snapshot: the next
 * append gets offset; start = high = offset, durable = offset - 1): every segment file is
 * deleted, the new start persisted (log_meta), the cache dropped; durability waiters still
 * queued fail with AL_ERANGE. The log must be idle (no write, sync, truncation or read in
 * flight: call it from a truncation's callback or at open). offset may not be below the log
 * start. Returns 0, AL_EFULL (not idle), AL_EINVAL, AL_EFAILED or -errno.
 */
int storage_log_restart_at(storage_log *log, int64_t offset);

/*
 * Base offset of the stored batch holding offset (synchronous read of its header), or
 * AL_ERANGE when offset is not in [log start, last offset]. Used to round a prefix
 * truncation point down to a batch boundary.
 */
int64_t storage_log_batch_base(storage_log *log, int64_t offset);

/*
 * Applies a topic's current segment.bytes and segment.ms to an open log (a Raft replica keeps
 * its log open across config changes; storage_log_open takes them from its config). The roll
 * itself happens on the append path, as in Kafka: an append rolls the active segment when its
 * batches would take it past segment_bytes (so an active segment already at or past a lowered
 * value rolls at the next append), when the term changes, or when the segment is older than
 * segment_ms (also sealed by housekeeping); a batch is never split, so a segment holding one
 * batch larger than segment_bytes is larger. segment_bytes 0 keeps the current value;
 * segment_ms <= 0 turns age rolls off. Returns whether anything changed. No I/O.
 */
bool storage_log_set_roll(storage_log *log, uint64_t segment_bytes, int64_t segment_ms);

/*
 * Housekeeping for a Raft log, whose start only the replica moves (never beyond the commit
 * index): takes rcfg's segment_bytes and segment_ms for later rolls (the topic's current
 * values, storage_log_set_roll), seals an over-age active segment (the next append rolls),
 * finishes sealed segments and deletes segments below the start (as storage_log_housekeep),
 * but applies no retention and no compaction itself.
 * *retention_start gets the start offset retention (delete policy of rcfg: retention.bytes,
 * retention.ms over whole closed, durable segments) would move to, for the replica to cut.
 * Returns 0 or storage_log_housekeep's error.
 */
int storage_log_housekeep_raft(storage_log *log, int64_t now_ms, const storage_log_config *rcfg,
                               int64_t *retention_start);

/*
 * One bounded step of key compaction of a Raft log whose current settings rcfg (the topic's,
 * as for storage_log_housekeep_raft: cleanup_policy, delete_retention_ms) ask for the compact
 * policy (otherwise 0 and nothing done), per replica as
 * Redpanda does: only closed, durable segments wholly at or below max_offset (the replica's
 * commit index: an entry that could still be truncated is never rewritten), the active
 * segment never. What is kept follows storage_log_housekeep's rules (the newest record per
 * key over the compacted segments, tombstones dropped delete.retention.ms after their batch,
 * records without a key kept), but every batch stays with its base offset, last offset delta
 * and leader epoch (an all-removed batch becomes an empty batch), and control batches (Raft
 * NOOP / CONFIG / TRIM, transaction markers) stay byte for byte: log matching, term lookups
 * and follower catch-up see the same entries as before. Rewritten segments replace the
 * originals atomically (fsync + rename) and their cache entries are dropped; a step runs only
 * while no read of the log is in flight (a Fetch holding cache entries by reference keeps
 * its references). At most budget_bytes of input per call. Returns 1 when more work is left,
 * 0 idle (nothing to compact, not a compact policy, or a read or truncation in flight), or a
 * negative error (the round is abandoned; the next call starts over).
 */
int storage_log_compact_raft(storage_log *log, int64_t now_ms, const storage_log_config *rcfg,
                             int64_t max_offset, size_t budget_bytes);

#endif
