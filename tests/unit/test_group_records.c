/* test_group_records.c — __consumer_offsets record formats checked against bytes written by hand
 * from Kafka's schemas (OffsetCommitKey/Value, GroupMetadataKey/Value), decoding of older value
 * versions, Java String.hashCode partition mapping, and the consumer subscription parser. */
#include "test.h"

#include "coord/group_records.h"

TEST(offset_commit_key_and_value_bytes)
{
    static const uint8_t key[] = {0x00, 0x01, 0x00, 0x01, 'g', 0x00, 0x01, 't',
                                  0x00, 0x00, 0x00, 0x02};
    static const uint8_t val[] = {0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 0x64, 0, 0, 0, 5,
                                  0x00, 0x01, 'm', 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05};
    uint8_t buf[64];
    CHECK_EQ(group_offset_key_encode(NULL, 0, "g", "t", 2), sizeof(key));
    CHECK_EQ(group_offset_key_encode(buf, sizeof(buf), "g", "t", 2), sizeof(key));
    CHECK_MEM(buf, key, sizeof(key));
    CHECK_EQ(group_offset_value_encode(buf, sizeof(buf), 100, 5, "m", 0x0102030405LL), sizeof(val));
    CHECK_MEM(buf, val, sizeof(val));
    CHECK_EQ(group_offset_value_encode(buf, 10, 100, 5, "m", 1), AL_ETOOLARGE);
    struct group_record_key k;
    CHECK_EQ(group_key_decode(key, sizeof(key), &k), 0);
    CHECK_EQ(k.kind, GROUP_KEY_KIND_OFFSET);
    CHECK_EQ(k.group.len, 1);
    CHECK_EQ(k.group.p[0], 'g');
    CHECK_EQ(k.topic.p[0], 't');
    CHECK_EQ(k.partition, 2);
    struct group_record_offset o;
    CHECK_EQ(group_offset_value_decode(val, sizeof(val), &o), 0);
    CHECK_EQ(o.offset, 100);
    CHECK_EQ(o.leader_epoch, 5);
    CHECK_EQ(o.metadata.len, 1);
    CHECK_EQ(o.commit_ts, 0x0102030405LL);
    CHECK_EQ(o.expire_ts, -1);
    /* every truncation is detected */
    for (size_t n = 0; n < sizeof(val); n++) CHECK(group_offset_value_decode(val, n, &o) < 0);
    for (size_t n = 0; n < sizeof(key); n++) CHECK(group_key_decode(key, n, &k) < 0);
}

TEST(older_offset_value_versions_decode)
{
    /* v1: offset, metadata, commit ts, expire ts */
    static const uint8_t v1[] = {0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
                                 0, 0, 0, 0, 0, 0, 0, 8};
    struct group_record_offset o;
    CHECK_EQ(group_offset_value_decode(v1, sizeof(v1), &o), 0);
    CHECK_EQ(o.offset, 9);
    CHECK_EQ(o.metadata.len, 0);
    CHECK_EQ(o.commit_ts, 7);
    CHECK_EQ(o.expire_ts, 8);
    CHECK_EQ(o.leader_epoch, -1);
    uint8_t buf[64];
    CHECK_EQ(group_offset_value_encode_v1(buf, sizeof(buf), 9, "", 7, 8), sizeof(v1));
    CHECK_MEM(buf, v1, sizeof(v1));
    /* v4 (flexible): offset, epoch, compact string "ab", ts, no tags */
    static const uint8_t v4[] = {0, 4, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 3, 'a', 'b',
                                 0, 0, 0, 0, 0, 0, 0, 4, 0};
    CHECK_EQ(group_offset_value_decode(v4, sizeof(v4), &o), 0);
    CHECK_EQ(o.offset, 3);
    CHECK_EQ(o.leader_epoch, 1);
    CHECK_EQ(o.metadata.len, 2);
    CHECK_EQ(o.commit_ts, 4);
    static const uint8_t v9[] = {0, 9, 0};
    CHECK_EQ(group_offset_value_decode(v9, sizeof(v9), &o), AL_EUNSUPPORTED);
    /* a key of a newer record type is recognised as "other" */
    static const uint8_t k5[] = {0, 5, 0, 1, 'x'};
    struct group_record_key k;
    CHECK_EQ(group_key_decode(k5, sizeof(k5), &k), 0);
    CHECK_EQ(k.kind, GROUP_KEY_KIND_OTHER);
}

TEST(group_metadata_key_and_value_bytes)
{
    static const uint8_t key[] = {0x00, 0x02, 0x00, 0x01, 'g'};
    static const uint8_t val[] = {
        0x00, 0x03,                                      /* version */
        0x00, 0x08, 'c', 'o', 'n', 's', 'u', 'm', 'e', 'r', /* protocol type */
        0x00, 0x00, 0x00, 0x01,                          /* generation */
        0x00, 0x05, 'r', 'a', 'n', 'g', 'e',             /* protocol */
        0x00, 0x02, 'm', '1',                            /* leader */
        0, 0, 0, 0, 0, 0, 0, 7,                          /* current state timestamp */
        0x00, 0x00, 0x00, 0x01,                          /* members */
        0x00, 0x02, 'm', '1',                            /* member id */
        0xff, 0xff,                                      /* group instance id: null */
        0x00, 0x01, 'c',                                 /* client id */
        0x00, 0x02, '/', 'h',                            /* client host */
        0x00, 0x00, 0x03, 0xe8,                          /* rebalance timeout 1000 */
        0x00, 0x00, 0x01, 0xf4,                          /* session timeout 500 */
        0x00, 0x00, 0x00, 0x01, 0xaa,                    /* subscription */
        0x00, 0x00, 0x00, 0x02, 0xbb, 0xcc,              /* assignment */
    };
    uint8_t buf[128];
    CHECK_EQ(group_metadata_key_encode(buf, sizeof(buf), "g"), sizeof(key));
    CHECK_MEM(buf, key, sizeof(key));
    static const uint8_t sub[] = {0xaa}, asg[] = {0xbb, 0xcc};
    struct group_record_member m = {{"m1", 2}, {NULL, -1}, {"c", 1}, {"/h", 2}, 1000, 500, sub, 1,
                                    asg, 2};
    struct group_record_meta meta = {{"consumer", 8}, {"range", 5}, {"m1", 2}, 1, 7, 1, &m};
    CHECK_EQ(group_metadata_value_encode(NULL, 0, &meta), sizeof(val));
    CHECK_EQ(group_metadata_value_encode(buf, sizeof(buf), &meta), sizeof(val));
    CHECK_MEM(buf, val, sizeof(val));
    struct group_record_member out[2];
    struct group_record_meta d;
    CHECK_EQ(group_metadata_value_count(val, sizeof(val)), 1);
    CHECK_EQ(group_metadata_value_decode(val, sizeof(val), &d, out, 2), 0);
    CHECK_EQ(d.generation, 1);
    CHECK_EQ(d.state_ts, 7);
    CHECK_EQ(d.protocol.len, 5);
    CHECK_EQ(d.nmembers, 1);
    CHECK_EQ(out[0].group_instance_id.len, -1);
    CHECK_EQ(out[0].rebalance_timeout_ms, 1000);
    CHECK_EQ(out[0].session_timeout_ms, 500);
    CHECK_EQ(out[0].assignment_len, 2);
    CHECK_EQ(out[0].assignment[1], 0xcc);
    for (size_t n = 0; n < sizeof(val); n++)
        CHECK(group_metadata_value_decode(val, n, &d, out, 2) < 0);
    CHECK_EQ(group_metadata_value_decode(val, sizeof(val), &d, out, 0), AL_ETOOLARGE);
    /* an empty group: null protocol and leader */
    struct group_record_meta e = {{"consumer", 8}, {NULL, -1}, {NULL, -1}, 4, 9, 0, NULL};
    int n = group_metadata_value_encode(buf, sizeof(buf), &e);
    CHECK_EQ(n, 2 + 10 + 4 + 2 + 2 + 8 + 4);
    CHECK_EQ(buf[16], 0xff);
    CHECK_EQ(buf[17], 0xff);
}

TEST(group_metadata_value_v0_decodes)
{
    /* v0: protocol type, generation, protocol, leader, members[id, client, host, session,
     * subscription, assignment] */
    static const uint8_t v0[] = {0, 0, 0, 1, 'x', 0, 0, 0, 2, 0, 1, 'p', 0, 1, 'a',
                                 0, 0, 0, 1, 0, 1, 'a', 0, 1, 'c', 0, 1, 'h',
                                 0, 0, 0x27, 0x10, 0, 0, 0, 0, 0, 0, 0, 0};
    struct group_record_member out[1];
    struct group_record_meta d;
    CHECK_EQ(group_metadata_value_decode(v0, sizeof(v0), &d, out, 1), 0);
    CHECK_EQ(d.generation, 2);
    CHECK_EQ(d.state_ts, -1);
    CHECK_EQ(out[0].session_timeout_ms, 10000);
    CHECK_EQ(out[0].rebalance_timeout_ms, 10000);
}

TEST(java_hash_code_partition_mapping)
{
    /* values of java.lang.String.hashCode(), computed independently over UTF-16 code units */
    CHECK_EQ(coord_java_hash("abc", 3), 96354);
    CHECK_EQ(coord_java_hash("", 0), 0);
    CHECK_EQ(coord_java_hash("my-group", 8), -1906497762);
    CHECK_EQ(coord_java_hash("console-consumer-12345", 22), 158455506);
    const char *u = "gr\xc3\xbc\xc3\x9f" "e-\xe2\x82\xac"; /* grüße-€ */
    CHECK_EQ(coord_java_hash(u, strlen(u)), 426799350);
    const char *e = "\xf0\x9f\x98\x80x"; /* U+1F600 (a surrogate pair) then x */
    CHECK_EQ(coord_java_hash(e, strlen(e)), 54959989);
    CHECK_EQ(coord_java_hash("polygenelubricants", 18), INT32_MIN);
    CHECK_EQ(coord_partition_for("abc", 3, 50), 4);
    CHECK_EQ(coord_partition_for("my-group", 8, 50), 12);
    CHECK_EQ(coord_partition_for("my-group", 8, 16), 2);
    CHECK_EQ(coord_partition_for(u, strlen(u), 16), 6);
    CHECK_EQ(coord_partition_for(e, strlen(e), 50), 39);
    CHECK_EQ(coord_partition_for("polygenelubricants", 18, 50), 0); /* Utils.abs(MIN) == 0 */
    /* malformed UTF-8 counts as U+FFFD: "a\xff" == "a\uFFFD" = 31*97 + 65533 */
    CHECK_EQ(coord_java_hash("a\xff", 2), 31 * 97 + 65533);
}

TEST(consumer_subscription_topics)
{
    /* version 1: topics ["a","bc"], userData null, owned partitions [] and trailing junk */
    static const uint8_t sub[] = {0, 1, 0, 0, 0, 2, 0, 1, 'a', 0, 2, 'b', 'c',
                                  0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 9, 9};
    int n = group_subscription_topics(sub, sizeof(sub), NULL, NULL);
    CHECK_EQ(n, 2);
    for (size_t k = 0; k < 13; k++) CHECK(group_subscription_topics(sub, k, NULL, NULL) < 0);
    static const uint8_t bad[] = {0, 0, 0x7f, 0xff, 0xff, 0xff};
    CHECK(group_subscription_topics(bad, sizeof(bad), NULL, NULL) < 0);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
