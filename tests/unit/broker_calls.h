/*
 * broker_calls.h — Kafka requests that the unit tests talking to a real broker (broker_proc.h)
 * send through a kclient_sync, shared so each test does not carry its own copy.
 */
#ifndef AL_TEST_BROKER_CALLS_H
#define AL_TEST_BROKER_CALLS_H

#include "client/kclient.h"

/*
 * Creates topic name with parts partitions and replication factor 1 (CreateTopics, 10 s
 * broker-side timeout) on s's broker; calling thread only. Returns 0, the topic's Kafka error
 * code (> 0, e.g. 36 TOPIC_ALREADY_EXISTS), -1 when the response does not name exactly one
 * topic, or a negative error of kclient_sync_call.
 */
int test_create_topic(kclient_sync *s, const char *name, int parts);

#endif
