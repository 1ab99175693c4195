/*
 * test_offset_fetch_batched.c — OffsetFetch v8-9 (KIP-709 batched groups) against a real broker
 * (`ailurus start --smp 2` from the same build, or $AILURUS_BIN, as a subprocess on 127.0.0.1):
 * offsets committed for two groups with OffsetCommit v7 (simple commits: generation -1, empty
 * member) come back in one OffsetFetch v8 and v9 naming both groups (one with explicit topics,
 * one with null topics = all) plus an unknown group (-1 offsets, NONE), in request order; v7
 * still answers one group. The groups' __consumer_offsets partitions may sit on either shard.
 */
#include "test.h"

#include "broker_calls.h"
#include "broker_proc.h"

#include "client/kclient.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* One committed offset (a simple commit: generation -1, no member). */
struct commit {
    const char *topic;
    int32_t part;
    int64_t off;
    const char *meta;
};

/* Commits c[0..n) for group (each entry its own topic in the request) with OffsetCommit v7.
 * Returns 0, -1 (shape), the first partition error, or a call error. */
static int commit_offsets(kclient_sync *s, const char *group, const struct commit *c, int n)
{
    kafka_OffsetCommitRequest req;
    kafka_OffsetCommitRequest_init(&req);
    kafka_OffsetCommitRequest_OffsetCommitRequestTopic t[8];
    kafka_OffsetCommitRequest_OffsetCommitRequestPartition p[8];
    if (n > 8) return -1;
    for (int i = 0; i < n; i++) {
        kafka_OffsetCommitRequest_OffsetCommitRequestTopic_init(&t[i]);
        kafka_OffsetCommitRequest_OffsetCommitRequestPartition_init(&p[i]);
        t[i].Name = kafka_str_from(c[i].topic);
        t[i].Partitions_count = 1;
        t[i].Partitions = &p[i];
        p[i].PartitionIndex = c[i].part;
        p[i].CommittedOffset = c[i].off;
        p[i].CommittedLeaderEpoch = -1;
        p[i].CommittedMetadata = kafka_str_from(c[i].meta);
    }
    req.GroupId = kafka_str_from(group);
    req.GenerationIdOrMemberEpoch = -1;
    req.MemberId = kafka_str_from("");
    req.GroupInstanceId = (kafka_str){NULL, -1};
    req.Topics_count = n;
    req.Topics = t;
    kafka_OffsetCommitResponse r;
    kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    int16_t ver = -1;
    int rc = kclient_sync_call_into(s, KAFKA_API_OFFSET_COMMIT, 7, &req, &r, &a, &ver);
    if (rc == 0 && (ver != 7 || r.Topics_count != n)) rc = -1;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (r.Topics[i].Partitions_count != 1) rc = -1;
        else rc = r.Topics[i].Partitions[0].ErrorCode;
    }
    kafka_arena_free(&a);
    return rc;
}

static bool kstr_eq(kafka_str s, const char *c)
{
    return s.len >= 0 && (size_t)s.len == strlen(c) && !memcmp(s.ptr, c, (size_t)s.len);
}

/* Finds topic/partition in a v8+ group's answer; NULL when absent. */
static const kafka_OffsetFetchResponse_OffsetFetchResponsePartitions *
group_part(const kafka_OffsetFetchResponse_OffsetFetchResponseGroup *g, const char *topic,
           int32_t part)
{
    for (int32_t t = 0; t < g->Topics_count; t++) {
        if (!kstr_eq(g->Topics[t].Name, topic)) continue;
        for (int32_t p = 0; p < g->Topics[t].Partitions_count; p++)
            if (g->Topics[t].Partitions[p].PartitionIndex == part)
                return &g->Topics[t].Partitions[p];
    }
    return NULL;
}

/* Checks one expected partition of a v8+ group. */
static void check_part(const kafka_OffsetFetchResponse_OffsetFetchResponseGroup *g,
                       const char *topic, int32_t part, int64_t off, const char *meta)
{
    const kafka_OffsetFetchResponse_OffsetFetchResponsePartitions *p = group_part(g, topic, part);
    CHECK(p != NULL);
    if (!p) return;
    CHECK_EQ(p->ErrorCode, 0);
    CHECK_EQ(p->CommittedOffset, off);
    CHECK(kstr_eq(p->Metadata, meta));
}

/* Sends one batched OffsetFetch at version v (8 or 9) for groups A (explicit topics), B (all
 * topics) and an unknown group (explicit topics), and checks every answer. */
static void fetch_batched(kclient_sync *s, int16_t v)
{
    int32_t a_parts[3] = {0, 1, 2}, u_part[1] = {0}, x_parts[1] = {0};
    kafka_OffsetFetchRequest_OffsetFetchRequestTopics at[2], ut[1];
    kafka_OffsetFetchRequest_OffsetFetchRequestTopics_init(&at[0]);
    at[0].Name = kafka_str_from("ofb-t");
    at[0].PartitionIndexes_count = 3;
    at[0].PartitionIndexes = a_parts;
    kafka_OffsetFetchRequest_OffsetFetchRequestTopics_init(&at[1]);
    at[1].Name = kafka_str_from("ofb-u");
    at[1].PartitionIndexes_count = 1;
    at[1].PartitionIndexes = u_part;
    kafka_OffsetFetchRequest_OffsetFetchRequestTopics_init(&ut[0]);
    ut[0].Name = kafka_str_from("ofb-t");
    ut[0].PartitionIndexes_count = 1;
    ut[0].PartitionIndexes = x_parts;
    kafka_OffsetFetchRequest_OffsetFetchRequestGroup g[4];
    const char *ids[4] = {"ofb-group-a", "ofb-group-b", "ofb-no-such-group", "ofb-nothing"};
    for (int i = 0; i < 4; i++) {
        kafka_OffsetFetchRequest_OffsetFetchRequestGroup_init(&g[i]);
        g[i].GroupId = kafka_str_from(ids[i]);
        g[i].MemberId = kafka_str_from("");
        g[i].MemberEpoch = -1;
    }
    g[0].Topics_count = 2;
    g[0].Topics = at;
    g[1].Topics_count = -1; /* all */
    g[1].Topics = NULL;
    g[2].Topics_count = 1;
    g[2].Topics = ut;
    g[3].Topics_count = -1; /* unknown group, all topics: nothing */
    g[3].Topics = NULL;
    kafka_OffsetFetchRequest req;
    kafka_OffsetFetchRequest_init(&req);
    req.Groups_count = 4;
    req.Groups = g;
    kafka_OffsetFetchResponse r;
    kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    int16_t ver = -1;
    CHECK_EQ(kclient_sync_call_into(s, KAFKA_API_OFFSET_FETCH, v, &req, &r, &a, &ver), 0);
    CHECK_EQ(ver, v);
    CHECK_EQ(r.Groups_count, 4);
    if (r.Groups_count == 4) {
        for (int i = 0; i < 4; i++) {
            CHECK(kstr_eq(r.Groups[i].GroupId, ids[i]));
            CHECK_EQ(r.Groups[i].ErrorCode, 0);
        }
        const kafka_OffsetFetchResponse_OffsetFetchResponseGroup *ga = &r.Groups[0];
        CHECK_EQ(ga->Topics_count, 2);
        check_part(ga, "ofb-t", 0, 10, "ma0");
        check_part(ga, "ofb-t", 1, 11, "ma1");
        check_part(ga, "ofb-t", 2, -1, ""); /* not committed by A */
        check_part(ga, "ofb-u", 0, 5, "mu");
        const kafka_OffsetFetchResponse_OffsetFetchResponseGroup *gb = &r.Groups[1];
        CHECK_EQ(gb->Topics_count, 2); /* exactly what B committed */
        int np = 0;
        for (int32_t t = 0; t < gb->Topics_count; t++) np += gb->Topics[t].Partitions_count;
        CHECK_EQ(np, 2);
        check_part(gb, "ofb-t", 2, 22, "mb");
        check_part(gb, "ofb-u", 0, 7, "");
        CHECK(group_part(gb, "ofb-t", 0) == NULL);
        const kafka_OffsetFetchResponse_OffsetFetchResponseGroup *gu = &r.Groups[2];
        CHECK_EQ(gu->Topics_count, 1);
        check_part(gu, "ofb-t", 0, -1, "");
        CHECK_EQ(r.Groups[3].Topics_count, 0);
    }
    kafka_arena_free(&a);
}

TEST(offset_fetch_batched_v8_v9_v7)
{
    CHECK_EQ(test_broker_start(2), 0);
    kclient_sync *s = NULL;
    CHECK_EQ(kclient_sync_open(&s, test_broker_addr, 10000), 0);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ(kclient_api_version(kclient_sync_client(s), KAFKA_API_OFFSET_FETCH), 9);
    CHECK_EQ(test_create_topic(s, "ofb-t", 3), 0);
    CHECK_EQ(test_create_topic(s, "ofb-u", 1), 0);
    const struct commit ca[] = {
        {"ofb-t", 0, 10, "ma0"}, {"ofb-t", 1, 11, "ma1"}, {"ofb-u", 0, 5, "mu"}};
    const struct commit cb[] = {{"ofb-u", 0, 7, ""}, {"ofb-t", 2, 22, "mb"}};
    CHECK_EQ(commit_offsets(s, "ofb-group-a", ca, 3), 0);
    CHECK_EQ(commit_offsets(s, "ofb-group-b", cb, 2), 0);

    fetch_batched(s, 8);
    fetch_batched(s, 9);

    /* v7: one group, all topics. */
    kafka_OffsetFetchRequest req;
    kafka_OffsetFetchRequest_init(&req);
    req.GroupId = kafka_str_from("ofb-group-b");
    req.Topics_count = -1;
    req.Topics = NULL;
    kafka_OffsetFetchResponse r;
    kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    int16_t ver = -1;
    CHECK_EQ(kclient_sync_call_into(s, KAFKA_API_OFFSET_FETCH, 7, &req, &r, &a, &ver), 0);
    CHECK_EQ(ver, 7);
    CHECK_EQ(r.ErrorCode, 0);
    CHECK_EQ(r.Topics_count, 2);
    int found = 0;
    for (int32_t t = 0; t < r.Topics_count; t++) {
        for (int32_t p = 0; p < r.Topics[t].Partitions_count; p++) {
            const kafka_OffsetFetchResponse_OffsetFetchResponsePartition *q =
                &r.Topics[t].Partitions[p];
            CHECK_EQ(q->ErrorCode, 0);
            if (kstr_eq(r.Topics[t].Name, "ofb-t") && q->PartitionIndex == 2) {
                CHECK_EQ(q->CommittedOffset, 22);
                found++;
            } else if (kstr_eq(r.Topics[t].Name, "ofb-u") && q->PartitionIndex == 0) {
                CHECK_EQ(q->CommittedOffset, 7);
                found++;
            }
        }
    }
    CHECK_EQ(found, 2);
    kafka_arena_free(&a);
    kclient_sync_close(s);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
