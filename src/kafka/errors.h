/*
 * errors.h — Kafka's wire error codes (the ErrorCode fields of responses), with Kafka's own
 * names and messages (Apache Kafka 3.8, org.apache.kafka.common.protocol.Errors). These are a
 * separate space from internal errors (AL_E* / -errno, src/base/base.h): a handler maps internal
 * errors to one of these, e.g. storage AL_EFAILED or -ENOSPC -> KAFKA_ERR_KAFKA_STORAGE_ERROR.
 */
#ifndef AL_KAFKA_ERRORS_H
#define AL_KAFKA_ERRORS_H

#include <stdbool.h>
#include <stdint.h>

/* X(code, NAME, "message") */
#define KAFKA_ERRORS(X) \
    X(-1, UNKNOWN_SERVER_ERROR, "The server experienced an unexpected error when processing the request.") \
    X(0, NONE, "") \
    X(1, OFFSET_OUT_OF_RANGE, "The requested offset is not within the range of offsets maintained by the server.") \
    X(2, CORRUPT_MESSAGE, "This message has failed its CRC checksum, exceeds the valid size, has a null key for a compacted topic, or is otherwise corrupt.") \
    X(3, UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.") \
    X(4, INVALID_FETCH_SIZE, "The requested fetch size is invalid.") \
    X(5, LEADER_NOT_AVAILABLE, "There is no leader for this topic-partition as we are in the middle of a leadership election.") \
    X(6, NOT_LEADER_OR_FOLLOWER, "For requests intended only for the leader, this error indicates that the broker is not the current leader.") \
    X(7, REQUEST_TIMED_OUT, "The request timed out.") \
    X(8, BROKER_NOT_AVAILABLE, "The broker is not available.") \
    X(9, REPLICA_NOT_AVAILABLE, "The replica is not available for the requested topic-partition.") \
    X(10, MESSAGE_TOO_LARGE, "The request included a message larger than the max message size the server will accept.") \
    X(11, STALE_CONTROLLER_EPOCH, "The controller moved to another broker.") \
    X(12, OFFSET_METADATA_TOO_LARGE, "The metadata field of the offset request was too large.") \
    X(13, NETWORK_EXCEPTION, "The server disconnected before a response was received.") \
    X(14, COORDINATOR_LOAD_IN_PROGRESS, "The coordinator is loading and hence can't process requests.") \
    X(15, COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.") \
    X(16, NOT_COORDINATOR, "This is not the correct coordinator.") \
    X(17, INVALID_TOPIC_EXCEPTION, "The request attempted to perform an operation on an invalid topic.") \
    X(18, RECORD_LIST_TOO_LARGE, "The request included message batch larger than the configured segment size on the server.") \
    X(19, NOT_ENOUGH_REPLICAS, "Messages are rejected since there are fewer in-sync replicas than required.") \
    X(20, NOT_ENOUGH_REPLICAS_AFTER_APPEND, "Messages are written to the log, but to fewer in-sync replicas than required.") \
    X(21, INVALID_REQUIRED_ACKS, "Produce request specified an invalid value for required acks.") \
    X(22, ILLEGAL_GENERATION, "Specified group generation id is not valid.") \
    X(23, INCONSISTENT_GROUP_PROTOCOL, "The group member's supported protocols are incompatible with those of existing members or first group member tried to join with empty protocol type or empty protocol list.") \
    X(24, INVALID_GROUP_ID, "The configured groupId is invalid.") \
    X(25, UNKNOWN_MEMBER_ID, "The coordinator is not aware of this member.") \
    X(26, INVALID_SESSION_TIMEOUT, "The session timeout is not within the range allowed by the broker.") \
    X(27, REBALANCE_IN_PROGRESS, "The group is rebalancing, so a rejoin is needed.") \
    X(28, INVALID_COMMIT_OFFSET_SIZE, "The committing offset data size is not valid.") \
    X(29, TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed.") \
    X(30, GROUP_AUTHORIZATION_FAILED, "Group authorization failed.") \
    X(31, CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.") \
    X(32, INVALID_TIMESTAMP, "The timestamp of the message is out of acceptable range.") \
    X(33, UNSUPPORTED_SASL_MECHANISM, "The broker does not support the requested SASL mechanism.") \
    X(34, ILLEGAL_SASL_STATE, "Request is not valid given the current SASL state.") \
    X(35, UNSUPPORTED_VERSION, "The version of API is not supported.") \
    X(36, TOPIC_ALREADY_EXISTS, "Topic with this name already exists.") \
    X(37, INVALID_PARTITIONS, "Number of partitions is below 1.") \
    X(38, INVALID_REPLICATION_FACTOR, "Replication factor is below 1 or larger than the number of available brokers.") \
    X(39, INVALID_REPLICA_ASSIGNMENT, "Replica assignment is invalid.") \
    X(40, INVALID_CONFIG, "Configuration is invalid.") \
    X(41, NOT_CONTROLLER, "This is not the correct controller for this cluster.") \
    X(42, INVALID_REQUEST, "This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker.") \
    X(43, UNSUPPORTED_FOR_MESSAGE_FORMAT, "The message format version on the broker does not support the request.") \
    X(44, POLICY_VIOLATION, "Request parameters do not satisfy the configured policy.") \
    X(45, OUT_OF_ORDER_SEQUENCE_NUMBER, "The broker received an out of order sequence number.") \
    X(46, DUPLICATE_SEQUENCE_NUMBER, "The broker received a duplicate sequence number.") \
    X(47, INVALID_PRODUCER_EPOCH, "Producer attempted to produce with an old epoch.") \
    X(48, INVALID_TXN_STATE, "The producer attempted a transactional operation in an invalid state.") \
    X(49, INVALID_PRODUCER_ID_MAPPING, "The producer attempted to use a producer id which is not currently assigned to its transactional id.") \
    X(50, INVALID_TRANSACTION_TIMEOUT, "The transaction timeout is larger than the maximum value allowed by the broker.") \
    X(51, CONCURRENT_TRANSACTIONS, "The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing.") \
    X(52, TRANSACTION_COORDINATOR_FENCED, "Indicates that the transaction coordinator sending a WriteTxnMarker is no longer the current coordinator for a given producer.") \
    X(53, TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "Transactional Id authorization failed.") \
    X(54, SECURITY_DISABLED, "Security features are disabled.") \
    X(55, OPERATION_NOT_ATTEMPTED, "The broker did not attempt to execute this operation.") \
    X(56, KAFKA_STORAGE_ERROR, "Disk error when trying to access log file on the disk.") \
    X(57, LOG_DIR_NOT_FOUND, "The user-specified log directory is not found in the broker config.") \
    X(58, SASL_AUTHENTICATION_FAILED, "SASL Authentication failed.") \
    X(59, UNKNOWN_PRODUCER_ID, "This exception is raised by the broker if it could not locate the producer metadata associated with the producerId in question.") \
    X(60, REASSIGNMENT_IN_PROGRESS, "A partition reassignment is in progress.") \
    X(61, DELEGATION_TOKEN_AUTH_DISABLED, "Delegation Token feature is not enabled.") \
    X(62, DELEGATION_TOKEN_NOT_FOUND, "Delegation Token is not found on server.") \
    X(63, DELEGATION_TOKEN_OWNER_MISMATCH, "Specified Principal is not valid Owner/Renewer.") \
    X(64, DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, "Delegation Token requests are not allowed on PLAINTEXT/1-way SSL channels and on delegation token authenticated channels.") \
    X(65, DELEGATION_TOKEN_AUTHORIZATION_FAILED, "Delegation Token authorization failed.") \
    X(66, DELEGATION_TOKEN_EXPIRED, "Delegation Token is expired.") \
    X(67, INVALID_PRINCIPAL_TYPE, "Supplied principalType is not supported.") \
    X(68, NON_EMPTY_GROUP, "The group is not empty.") \
    X(69, GROUP_ID_NOT_FOUND, "The group id does not exist.") \
    X(70, FETCH_SESSION_ID_NOT_FOUND, "The fetch session ID was not found.") \
    X(71, INVALID_FETCH_SESSION_EPOCH, "The fetch session epoch is invalid.") \
    X(72, LISTENER_NOT_FOUND, "There is no listener on the leader broker that matches the listener on which metadata request was processed.") \
    X(73, TOPIC_DELETION_DISABLED, "Topic deletion is disabled.") \
    X(74, FENCED_LEADER_EPOCH, "The leader epoch in the request is older than the epoch on the broker.") \
    X(75, UNKNOWN_LEADER_EPOCH, "The leader epoch in the request is newer than the epoch on the broker.") \
    X(76, UNSUPPORTED_COMPRESSION_TYPE, "The requesting client does not support the compression type of given partition.") \
    X(77, STALE_BROKER_EPOCH, "Broker epoch has changed.") \
    X(78, OFFSET_NOT_AVAILABLE, "The leader high watermark has not caught up from a recent leader election so the offsets cannot be guaranteed to be monotonically increasing.") \
    X(79, MEMBER_ID_REQUIRED, "The group member needs to have a valid member id before actually entering a consumer group.") \
    X(80, PREFERRED_LEADER_NOT_AVAILABLE, "The preferred leader was not available.") \
    X(81, GROUP_MAX_SIZE_REACHED, "The consumer group has reached its max size.") \
    X(82, FENCED_INSTANCE_ID, "The broker rejected this static consumer since another consumer with the same group.instance.id has registered with a different member.id.") \
    X(83, ELIGIBLE_LEADERS_NOT_AVAILABLE, "Eligible topic partition leaders are not available.") \
    X(84, ELECTION_NOT_NEEDED, "Leader election not needed for topic partition.") \
    X(85, NO_REASSIGNMENT_IN_PROGRESS, "No partition reassignment is in progress.") \
    X(86, GROUP_SUBSCRIBED_TO_TOPIC, "Deleting offsets of a topic is forbidden while the consumer group is actively subscribed to it.") \
    X(87, INVALID_RECORD, "This record has failed the validation on broker and hence will be rejected.") \
    X(88, UNSTABLE_OFFSET_COMMIT, "There are unstable offsets that need to be cleared.") \
    X(89, THROTTLING_QUOTA_EXCEEDED, "The throttling quota has been exceeded.") \
    X(90, PRODUCER_FENCED, "There is a newer producer with the same transactionalId which fences the current one.") \
    X(91, RESOURCE_NOT_FOUND, "A request illegally referred to a resource that does not exist.") \
    X(92, DUPLICATE_RESOURCE, "A request illegally referred to the same resource twice.") \
    X(93, UNACCEPTABLE_CREDENTIAL, "Requested credential would not meet criteria for acceptability.") \
    X(94, INCONSISTENT_VOTER_SET, "Indicates that the either the sender or recipient of a voter-only request is not one of the expected voters.") \
    X(95, INVALID_UPDATE_VERSION, "The given update version was invalid.") \
    X(96, FEATURE_UPDATE_FAILED, "Unable to update finalized features due to an unexpected server error.") \
    X(97, PRINCIPAL_DESERIALIZATION_FAILURE, "Request principal deserialization failed during forwarding.") \
    X(98, SNAPSHOT_NOT_FOUND, "Requested snapshot was not found.") \
    X(99, POSITION_OUT_OF_RANGE, "Requested position is not greater than or equal to zero, and less than the size of the snapshot.") \
    X(100, UNKNOWN_TOPIC_ID, "This server does not host this topic ID.") \
    X(101, DUPLICATE_BROKER_REGISTRATION, "This broker ID is already in use.") \
    X(102, BROKER_ID_NOT_REGISTERED, "The given broker ID was not registered.") \
    X(103, INCONSISTENT_TOPIC_ID, "The log's topic ID did not match the topic ID in the request.") \
    X(104, INCONSISTENT_CLUSTER_ID, "The clusterId in the request does not match that found on the server.") \
    X(105, TRANSACTIONAL_ID_NOT_FOUND, "The transactionalId could not be found.") \
    X(106, FETCH_SESSION_TOPIC_ID_ERROR, "The fetch session encountered inconsistent topic ID usage.") \
    X(107, INELIGIBLE_REPLICA, "The new ISR contains at least one ineligible replica.") \
    X(108, NEW_LEADER_ELECTED, "The AlterPartition request successfully updated the partition state but the leader has changed.") \
    X(109, OFFSET_MOVED_TO_TIERED_STORAGE, "The requested offset is moved to tiered storage.") \
    X(110, FENCED_MEMBER_EPOCH, "The member epoch is fenced by the group coordinator.") \
    X(111, UNRELEASED_INSTANCE_ID, "The instance ID is still used by another member in the consumer group.") \
    X(112, UNSUPPORTED_ASSIGNOR, "The assignor or its version range is not supported by the consumer group.") \
    X(113, STALE_MEMBER_EPOCH, "The member epoch is stale.") \
    X(114, MISMATCHED_ENDPOINT_TYPE, "The request was sent to an endpoint of the wrong type.") \
    X(115, UNSUPPORTED_ENDPOINT_TYPE, "This endpoint type is not supported yet.") \
    X(116, UNKNOWN_CONTROLLER_ID, "This controller ID is not known.") \
    X(117, UNKNOWN_SUBSCRIPTION_ID, "Client sent a push telemetry request with an invalid or outdated subscription ID.") \
    X(118, TELEMETRY_TOO_LARGE, "Client sent a push telemetry request larger than the maximum size the broker will accept.") \
    X(119, INVALID_REGISTRATION, "The controller has considered the broker registration to be invalid.") \
    X(120, TRANSACTION_ABORTABLE, "The server encountered an error with the transaction.")

enum kafka_error {
#define KAFKA_ERR_ENUM_(code, name, msg) KAFKA_ERR_##name = code,
    KAFKA_ERRORS(KAFKA_ERR_ENUM_)
#undef KAFKA_ERR_ENUM_
};

/* Kafka's name for a code ("UNKNOWN_TOPIC_OR_PARTITION"), or "UNKNOWN_ERROR_CODE". */
const char *kafka_err_name(int16_t code);

/* Kafka's human-readable message for a code, or "" for NONE / unknown codes. */
const char *kafka_err_message(int16_t code);

/* Whether clients treat the error as retriable (Kafka's RetriableException subclasses). */
bool kafka_err_retriable(int16_t code);

/* Maps an internal error (-errno or AL_E*) to the Kafka error a client should see. */
int16_t kafka_err_from_internal(int err);

/* A Kafka error code carried as an internal error (e.g. a controller command's result passed
 * through code that speaks AL_E*): kafka_err_from_internal gives the code back. 0 stays 0. */
#define KAFKA_EWIRE_BASE (-120000)
static inline int kafka_err_to_internal(int16_t code)
{
    return code > 0 ? KAFKA_EWIRE_BASE - code : 0;
}

#endif
