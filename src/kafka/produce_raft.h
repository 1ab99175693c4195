/*
 * produce_raft.h — the replicated append of Produce in cluster mode (issue 7): a partition with
 * a Raft replica (pm_partition->rr) is written through raft_replicate on its leader instead of
 * storage_log_append. handler_produce.c calls it from its owner-shard job.
 */
#ifndef AL_KAFKA_PRODUCE_RAFT_H
#define AL_KAFKA_PRODUCE_RAFT_H

#include "cluster/data_plane.h"
#include "kafka/request.h"

typedef void (*kafka_produce_raft_done_fn)(data_shard *ds, void *arg);

/*
 * On the partition's shard, p->rr set: the partition's part of a Produce request. Not the
 * leader -> NOT_LEADER_OR_FOLLOWER. Validates every batch as the single-node path does (CRC,
 * size against max.message.bytes, compression, no control/transactional batches), checks
 * idempotent producers (a duplicate is answered with its original offset once committed),
 * checks min.insync.replicas for acks=all (NOT_ENOUGH_REPLICAS), stamps LogAppendTime, then
 * replicates each batch as one Raft entry and records the producer state after the local
 * append. acks=all is answered once the last offset is committed (on a majority's disks);
 * acks=1/0 once appended to the leader's log. Leadership lost before the commit ->
 * NOT_LEADER_OR_FOLLOWER (retriable; never a success), too much uncommitted (AL_EFULL) ->
 * NOT_ENOUGH_REPLICAS (retriable, and "not persisted" for librdkafka: nothing was written). What Raft would refuse (raft_replica_writable) is refused
 * for the whole request before any sequence check, and each retriable refusal that wrote
 * nothing fences the producer (kafka_produce_raft_fence). Fills out (ErrorCode, BaseOffset, LogAppendTimeMs,
 * LogStartOffset) and calls done(ds, arg) exactly once, possibly before returning. records
 * (len bytes, inside the request frame) are stamped in place.
 */
void kafka_produce_raft(data_shard *ds, pm_partition *p,
                        kafka_ProduceResponse_PartitionProduceResponse *out, uint8_t *records,
                        size_t len, int16_t acks, int16_t version, kafka_produce_raft_done_fn done,
                        void *arg);

/*
 * On the partition's shard: a request for a partition this node does not host was refused
 * with err (retriable, nothing written): fences its idempotent producers as
 * kafka_produce_raft's own refusals do (coord/producer_state.h, refusal fences), so a later
 * in-flight batch does not find a sequence gap if the partition opens here meanwhile. Reads
 * only batch headers that fit in records[len].
 */
void kafka_produce_raft_fence(data_shard *ds, const uint8_t topic_id[16], int32_t partition,
                              const uint8_t *records, size_t len, int16_t err);

#endif
