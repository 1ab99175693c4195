/*
 * broker_calls.c — Kafka requests shared by the unit tests that talk to a real broker (see
 * broker_calls.h). Linked into every unit-test program.
 */
#include "broker_calls.h"

int test_create_topic(kclient_sync *s, const char *name, int parts)
{
    kafka_CreateTopicsRequest req;
    kafka_CreateTopicsRequest_init(&req);
    kafka_CreateTopicsRequest_CreatableTopic t;
    kafka_CreateTopicsRequest_CreatableTopic_init(&t);
    t.Name = kafka_str_from(name);
    t.NumPartitions = parts;
    t.ReplicationFactor = 1;
    req.Topics_count = 1;
    req.Topics = &t;
    req.timeoutMs = 10000;
    const void *rp;
    int rc = kclient_sync_call(s, KAFKA_API_CREATE_TOPICS, &req, &rp, NULL);
    if (rc < 0) return rc;
    const kafka_CreateTopicsResponse *r = rp;
    return r->Topics_count == 1 ? r->Topics[0].ErrorCode : -1;
}
