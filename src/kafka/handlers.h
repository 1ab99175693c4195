/*
 * handlers.h — the Kafka API handlers. Each takes a dispatched request (req->msg is the decoded
 * kafka_<Api>Request) and answers it (see request.h for the contract). Register a new handler
 * by adding its line to the table in src/kafka/dispatch.c.
 */
#ifndef AL_KAFKA_HANDLERS_H
#define AL_KAFKA_HANDLERS_H

#include "kafka/request.h"

/* ApiVersions 0-3: the handler table as ApiKeys. v3 checks the client software name and
 * version (KIP-511 pattern) and answers INVALID_REQUEST if they do not match. */
int kafka_handle_api_versions(kafka_req *req);

/* Metadata 0-12: this broker, the cluster id, the controller (this node), and the topics
 * asked for (none exist yet: each named topic gets UNKNOWN_TOPIC_OR_PARTITION, each topic
 * asked for by id UNKNOWN_TOPIC_ID; "all topics" is an empty list). */
int kafka_handle_metadata(kafka_req *req);

/* ---- cluster mode (handle_metadata.c; src/cluster/cluster.h) ---- */

/* Stores broker i (id, advertised Kafka host/port, rack or null) into a response's array. */
typedef void (*kafka_str_broker_fn)(void *out, int32_t i, int32_t id, kafka_str host,
                                    uint16_t port, kafka_str rack);
/* The cluster's brokers (active and draining) through fill into out (room for
 * CLUSTER_VIEW_MAX), strings in req's arena; *n_out the count, *controller group 0's leader
 * (-1 unknown). Returns 1, 0 when not in cluster mode, or -ENOMEM. Any shard. */
int kafka_cluster_brokers(kafka_req *req, kafka_str_broker_fn fill, void *out, int32_t *n_out,
                          int32_t *controller);
/* Metadata's Brokers and ControllerId from the cluster. 1, 0 (single node), or -ENOMEM. */
struct kafka_MetadataResponse;
int kafka_metadata_cluster_brokers(kafka_req *req, struct kafka_MetadataResponse *out);
/* Partition p of a topic with stored assignments: replicas (ISR = replicas, leader = the
 * preferred one until a leadership table says otherwise). 1, 0 (single-node form), -ENOMEM. */
struct topic;
struct kafka_MetadataResponse_MetadataResponsePartition;
int kafka_metadata_partition(kafka_req *req, const struct topic *t, int32_t p,
                             struct kafka_MetadataResponse_MetadataResponsePartition *out);

/*
 * Encodes the v0-form UNSUPPORTED_VERSION ApiVersions response (KIP-511: ErrorCode 35, ApiKeys
 * = [{18, min, max}]) that answers an ApiVersions request of a version we do not implement.
 * Used by the dispatcher; the body is not parsed. Returns 0 or a negative error.
 */
int kafka_respond_api_versions_unsupported(kafka_req *req);

/* KIP-511: true if s is a valid ClientSoftwareName/Version ([a-zA-Z0-9](?:[a-zA-Z0-9\-.]*
 * [a-zA-Z0-9])?). */
bool kafka_software_str_valid(kafka_str s);

#endif
