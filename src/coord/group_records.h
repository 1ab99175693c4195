/*
 * group_records.h — the bytes the group coordinator keeps in the compacted internal topic
 * __consumer_offsets, in Apache Kafka's own formats (so Kafka tools that read the topic, e.g.
 * kafka-console-consumer with the OffsetsMessageFormatter, recognise them):
 *
 *   OffsetCommit key   (key version 1):  group string, topic string, partition int32
 *   OffsetCommit value (version 3):      offset int64, leader epoch int32, metadata string,
 *                                        commit timestamp int64
 *   GroupMetadata key  (key version 2):  group string
 *   GroupMetadata value (version 3):     protocol type string, generation int32, protocol
 *                                        nullable string, leader nullable string, current state
 *                                        timestamp int64, members [member id, group instance id
 *                                        (nullable), client id, client host, rebalance timeout,
 *                                        session timeout, subscription bytes, assignment bytes]
 *   A null value (tombstone) deletes the key.
 * Every record starts with an int16 version; strings are int16-length, bytes int32-length
 * (classic encoding). Decoding accepts value versions 0..4 (4 is the flexible encoding).
 *
 * Also here: which __consumer_offsets partition a group lives on (Kafka's
 * Utils.abs(groupId.hashCode()) % partitions, with Java's String.hashCode over UTF-16 code units)
 * and a lenient parser of the "consumer" protocol's subscription metadata (the topics).
 *
 * Pure functions; any thread. Decoders read untrusted bytes only through src/base/cursor.h.
 */
#ifndef AL_COORD_GROUP_RECORDS_H
#define AL_COORD_GROUP_RECORDS_H

#include "base/base.h"

#define GROUP_KEY_OFFSET_COMMIT 1   /* versions 0 and 1 */
#define GROUP_KEY_GROUP_METADATA 2
#define GROUP_VALUE_OFFSET_COMMIT 3
#define GROUP_VALUE_GROUP_METADATA 3

/* A length-delimited string inside a decoded buffer; len -1 = null. Not NUL-terminated. */
struct coord_str {
    const char *p;
    int32_t len;
};

/* Java's String.hashCode() of the UTF-8 string s (n bytes), computed over its UTF-16 code units
 * (code points above U+FFFF as surrogate pairs; malformed UTF-8 bytes count as U+FFFD, as Java's
 * decoder substitutes them). */
int32_t coord_java_hash(const char *s, size_t n);

/* The partition (0..partitions-1) of a coordinator key (group id or transactional id):
 * Utils.abs(hashCode) % partitions, where Utils.abs(INT32_MIN) is 0. partitions must be > 0. */
int32_t coord_partition_for(const char *key, size_t n, int32_t partitions);

/* ---- encoding: each returns the number of bytes written, or AL_ETOOLARGE if cap is short;
 * call with buf NULL / cap 0 to get the size. ---- */

int group_offset_key_encode(uint8_t *buf, size_t cap, const char *group, const char *topic,
                            int32_t partition);
int group_offset_value_encode(uint8_t *buf, size_t cap, int64_t offset, int32_t leader_epoch,
                              const char *metadata, int64_t commit_ts);
/* Version 1 (offset, metadata, commit timestamp, expire timestamp): what Kafka writes when an
 * OffsetCommit v2-v4 request carried a retention time. */
int group_offset_value_encode_v1(uint8_t *buf, size_t cap, int64_t offset, const char *metadata,
                                 int64_t commit_ts, int64_t expire_ts);
int group_metadata_key_encode(uint8_t *buf, size_t cap, const char *group);

struct group_record_member {
    struct coord_str member_id, group_instance_id, client_id, client_host;
    int32_t rebalance_timeout_ms, session_timeout_ms;
    const uint8_t *subscription;
    int32_t subscription_len; /* -1 / 0: none */
    const uint8_t *assignment;
    int32_t assignment_len;
};

struct group_record_meta {
    struct coord_str protocol_type, protocol, leader;
    int32_t generation;
    int64_t state_ts; /* -1 when the record version has none */
    int32_t nmembers;
    struct group_record_member *members; /* filled by the decoder up to max_members */
};

int group_metadata_value_encode(uint8_t *buf, size_t cap, const struct group_record_meta *m);

/* ---- decoding ---- */

enum group_key_kind { GROUP_KEY_KIND_OFFSET, GROUP_KEY_KIND_GROUP, GROUP_KEY_KIND_OTHER };

struct group_record_key {
    int kind; /* enum group_key_kind; OTHER = a newer record type (e.g. KIP-848), skip it */
    int16_t version;
    struct coord_str group, topic;
    int32_t partition;
};

/* Decodes a key. Returns 0 or AL_ETRUNCATED / AL_EMALFORMED. */
int group_key_decode(const uint8_t *buf, size_t len, struct group_record_key *k);

struct group_record_offset {
    int64_t offset;
    int32_t leader_epoch; /* -1 when absent */
    struct coord_str metadata;
    int64_t commit_ts;
    int64_t expire_ts; /* -1 when absent (only value version 1 has it) */
};

/* Decodes an OffsetCommit value (versions 0..4). Returns 0, AL_ETRUNCATED, AL_EMALFORMED or
 * AL_EUNSUPPORTED (unknown version). */
int group_offset_value_decode(const uint8_t *buf, size_t len, struct group_record_offset *v);

/* Decodes a GroupMetadata value (versions 0..4) into *m; member entries go to members[] (room
 * for max_members; more is AL_ETOOLARGE). Pointers refer into buf. Returns as above. */
int group_metadata_value_decode(const uint8_t *buf, size_t len, struct group_record_meta *m,
                                struct group_record_member *members, int32_t max_members);

/* Number of members a GroupMetadata value says it has (for sizing), or a negative error. */
int32_t group_metadata_value_count(const uint8_t *buf, size_t len);

/*
 * Parses a "consumer" protocol subscription (ConsumerProtocolSubscription, any version >= 0:
 * version int16, topics [string], then user data and fields of later versions, which are
 * ignored) and calls visit(arg, topic, len) for each topic. Returns the topic count, or
 * AL_ETRUNCATED / AL_EMALFORMED.
 */
int group_subscription_topics(const uint8_t *buf, size_t len,
                              void (*visit)(void *arg, const char *topic, size_t n), void *arg);

#endif
