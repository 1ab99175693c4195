/*
 * handlers_data.h — the data-path and admin Kafka handlers (topics, partitions, produce, fetch,
 * offsets, configs). Each follows the contract of kafka/request.h and uses the calling shard's
 * data_shard (cluster/data_plane.h); partitions owned by other shards are reached through
 * cross-shard messages and the answer is completed on the connection's shard. Their lines in
 * the dispatch table (src/kafka/dispatch.c) state the versions implemented and advertised.
 */
#ifndef AL_KAFKA_HANDLERS_DATA_H
#define AL_KAFKA_HANDLERS_DATA_H

#include "kafka/request.h"

/* Produce v3-7: acks 0/1/all (all = after fsync), idempotent checks, LogAppendTime. */
int kafka_handle_produce(kafka_req *req);

/* Fetch v4-11: long poll woken by durable appends, min/max bytes, per-partition limits,
 * high watermark = durable offset + 1, LSO = HW (no transactions). */
int kafka_handle_fetch(kafka_req *req);

/* ListOffsets v0-7: earliest (-2), latest (-1), max timestamp (-3, v7), by timestamp. */
int kafka_handle_list_offsets(kafka_req *req);

/* Metadata v0-12 with the topic table: topic ids (v10+), auto-create when enabled. */
int kafka_handle_metadata_topics(kafka_req *req);

/* CreateTopics v0-7, DeleteTopics v0-6, CreatePartitions v0-3. */
int kafka_handle_create_topics(kafka_req *req);
int kafka_handle_delete_topics(kafka_req *req);
int kafka_handle_create_partitions(kafka_req *req);

/* DescribeConfigs v0-4, AlterConfigs v0-2, IncrementalAlterConfigs v0-1 (topics, broker). */
int kafka_handle_describe_configs(kafka_req *req);
int kafka_handle_alter_configs(kafka_req *req);
int kafka_handle_incremental_alter_configs(kafka_req *req);

/* DescribeCluster v0-1, DeleteRecords v0-2, DescribeLogDirs v0-4, OffsetForLeaderEpoch v0-4,
 * InitProducerId v0-4. */
int kafka_handle_describe_cluster(kafka_req *req);
int kafka_handle_delete_records(kafka_req *req);
int kafka_handle_describe_log_dirs(kafka_req *req);
int kafka_handle_offset_for_leader_epoch(kafka_req *req);
int kafka_handle_init_producer_id(kafka_req *req);

/* Consumer groups (coord/group.h served on the shard owning the group's __consumer_offsets
 * partition; records durable before answers): FindCoordinator v0-4, JoinGroup v0-5,
 * SyncGroup v0-3, Heartbeat v0-3, LeaveGroup v0-3, OffsetCommit v0-7, OffsetFetch v0-7,
 * DescribeGroups v0-4, ListGroups v0-4. */
int kafka_handle_find_coordinator(kafka_req *req);
int kafka_handle_join_group(kafka_req *req);
int kafka_handle_sync_group(kafka_req *req);
int kafka_handle_heartbeat(kafka_req *req);
int kafka_handle_leave_group(kafka_req *req);
int kafka_handle_offset_commit(kafka_req *req);
int kafka_handle_offset_fetch(kafka_req *req);
int kafka_handle_describe_groups(kafka_req *req);
int kafka_handle_list_groups(kafka_req *req);
/* DeleteGroups v0-2, OffsetDelete v0. */
int kafka_handle_delete_groups(kafka_req *req);
int kafka_handle_offset_delete(kafka_req *req);

#endif
