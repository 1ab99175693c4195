/*
 * group.c — `ailurus group list|describe|seek|delete`: consumer-group inspection and repair over
 * the Kafka protocol. describe shows state, members (client id, host, decoded assignment) and
 * per-partition committed offset, log end offset and lag; seek commits new offsets for an Empty
 * group (OffsetCommit with generation -1); delete removes groups.
 */
#include "cli/cli_util.h"

#include "kafka/errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_USAGE                                                                           \
    "usage: ailurus group <list|describe|seek|delete> [args] [options]\n"                     \
    "  list                       describe GROUP\n"                                             \
    "  seek GROUP [-t TOPIC]... --to-earliest|--to-latest|--to-offset N|--to-timestamp MS\n"  \
    "  delete GROUP..."

static const char *const GROUP_USAGE_S = GROUP_USAGE;

static int group_list(cli_kafka *k)
{
    int rc = cli_kafka_metadata(k, NULL, 0);
    if (rc) return rc;
    json_t *rows = json_array();
    int nb = k->md->Brokers_count;
    int32_t *ids = cli_alloc(k, sizeof(int32_t) * (size_t)(nb + 1));
    for (int i = 0; i < nb; i++) ids[i] = k->md->Brokers[i].NodeId;
    for (int i = 0; i < nb && !rc; i++) {
        cli_conn *c = cli_kafka_node(k, ids[i]);
        if (!c) {
            rc = k->last_err;
            break;
        }
        kafka_ListGroupsRequest req;
        kafka_ListGroupsRequest_init(&req);
        req.StatesFilter_count = 0;
        kafka_ListGroupsResponse resp;
        rc = cli_kafka_call(k, c, KAFKA_API_LIST_GROUPS, 4, &req, &resp);
        if (rc) break;
        if (resp.ErrorCode) {
            char eb[256];
            rc = cli_err(CLI_FAILED, "list groups on broker %d: %s", ids[i],
                         cli_kerr(resp.ErrorCode, (kafka_str){NULL, -1}, eb, sizeof(eb)));
            break;
        }
        for (int j = 0; j < resp.Groups_count; j++) {
            const kafka_ListGroupsResponse_ListedGroup *g = &resp.Groups[j];
            json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:i}", "group",
                                                  cli_strdup_k(k, g->GroupId), "state",
                                                  cli_strdup_k(k, g->GroupState),
                                                  "protocol_type",
                                                  cli_strdup_k(k, g->ProtocolType),
                                                  "coordinator", ids[i]));
        }
    }
    static const char *const cols[] = {"group", "state", "protocol_type", "coordinator", NULL};
    if (!rc) cli_print_rows(k->o, rows, cols);
    json_decref(rows);
    return rc;
}

/* DescribeGroups of one group on its coordinator c. */
static int group_describe_one(cli_kafka *k, cli_conn *c, const char *group,
                              kafka_DescribeGroupsResponse_DescribedGroup **out)
{
    kafka_DescribeGroupsRequest req;
    kafka_DescribeGroupsRequest_init(&req);
    kafka_str g = kafka_str_from(group);
    req.Groups_count = 1;
    req.Groups = &g;
    kafka_DescribeGroupsResponse *resp = cli_alloc(k, sizeof(*resp));
    int rc = cli_kafka_call(k, c, KAFKA_API_DESCRIBE_GROUPS, 4, &req, resp);
    if (rc) return rc;
    if (resp->Groups_count < 1) return cli_err(CLI_FAILED, "empty DescribeGroups response");
    kafka_DescribeGroupsResponse_DescribedGroup *d = &resp->Groups[0];
    if (d->ErrorCode) {
        char eb[256];
        return cli_err(CLI_FAILED, "describe group '%s': %s", group,
                       cli_kerr(d->ErrorCode, (kafka_str){NULL, -1}, eb, sizeof(eb)));
    }
    *out = d;
    return CLI_OK;
}

/* Committed offsets of every partition of the group (OffsetFetch with all topics). */
static int group_offsets(cli_kafka *k, cli_conn *c, const char *group,
                         kafka_OffsetFetchResponse **out)
{
    kafka_OffsetFetchRequest req;
    kafka_OffsetFetchRequest_init(&req);
    req.GroupId = kafka_str_from(group);
    req.Topics_count = -1;
    req.Topics = NULL;
    kafka_OffsetFetchResponse *resp = cli_alloc(k, sizeof(*resp));
    int rc = cli_kafka_call(k, c, KAFKA_API_OFFSET_FETCH, 7, &req, resp);
    if (rc) return rc;
    if (resp->ErrorCode) {
        char eb[256];
        return cli_err(CLI_FAILED, "committed offsets of group '%s': %s", group,
                       cli_kerr(resp->ErrorCode, (kafka_str){NULL, -1}, eb, sizeof(eb)));
    }
    *out = resp;
    return CLI_OK;
}

/* Latest (ts -1) or earliest (-2) or by-timestamp offset of one partition; -1 if unknown. */
static int part_offset(cli_kafka *k, const char *topic, int32_t part, int64_t ts, int64_t *out)
{
    *out = -1;
    const kafka_MetadataResponse_MetadataResponseTopic *t = cli_md_topic(k, topic);
    if (!t) {
        const char *names[1] = {topic};
        int rc = cli_kafka_metadata(k, names, 1);
        if (rc) return rc;
        t = cli_md_topic(k, topic);
        if (!t || t->ErrorCode) return CLI_OK; /* deleted topic: unknown end */
    }
    int32_t leader = -1;
    for (int i = 0; i < t->Partitions_count; i++)
        if (t->Partitions[i].PartitionIndex == part) leader = t->Partitions[i].LeaderId;
    if (leader < 0) return CLI_OK;
    cli_conn *c = cli_kafka_node(k, leader);
    if (!c) return k->last_err;
    kafka_ListOffsetsRequest req;
    kafka_ListOffsetsRequest_init(&req);
    req.ReplicaId = -1;
    kafka_ListOffsetsRequest_ListOffsetsTopic lt;
    kafka_ListOffsetsRequest_ListOffsetsTopic_init(&lt);
    lt.Name = kafka_str_from(topic);
    kafka_ListOffsetsRequest_ListOffsetsPartition lp;
    kafka_ListOffsetsRequest_ListOffsetsPartition_init(&lp);
    lp.PartitionIndex = part;
    lp.CurrentLeaderEpoch = -1;
    lp.Timestamp = ts;
    lt.Partitions_count = 1;
    lt.Partitions = &lp;
    req.Topics_count = 1;
    req.Topics = &lt;
    kafka_ListOffsetsResponse resp;
    int rc = cli_kafka_call(k, c, KAFKA_API_LIST_OFFSETS, 4, &req, &resp);
    if (rc) return rc;
    if (resp.Topics_count == 1 && resp.Topics[0].Partitions_count == 1 &&
        !resp.Topics[0].Partitions[0].ErrorCode)
        *out = resp.Topics[0].Partitions[0].Offset;
    return CLI_OK;
}

/* "topic:0,1,2;other:3" text of a member assignment, and the owner per topic-partition. */
static json_t *decode_assignment(cli_kafka *k, kafka_bytes a)
{
    json_t *arr = json_array();
    if (a.len < 2) return arr;
    al_rd rd = al_rd_make(a.ptr, (size_t)a.len);
    int16_t v = al_rd_i16(&rd);
    kafka_ConsumerProtocolAssignment asg;
    kafka_ConsumerProtocolAssignment_init(&asg);
    if (kafka_ConsumerProtocolAssignment_decode(&rd, v > 3 ? 3 : v, &asg, &k->arena) ||
        rd.err)
        return arr;
    for (int i = 0; i < asg.AssignedPartitions_count; i++) {
        const kafka_ConsumerProtocolAssignment_TopicPartition *tp = &asg.AssignedPartitions[i];
        char *tn = cli_strdup_k(k, tp->Topic);
        for (int j = 0; j < tp->Partitions_count; j++) {
            char buf[300];
            snprintf(buf, sizeof(buf), "%s:%d", tn, tp->Partitions[j]);
            json_array_append_new(arr, json_string(buf));
        }
    }
    return arr;
}

static int group_describe(cli_kafka *k, const char *group)
{
    cli_conn *c = cli_kafka_coordinator(k, group);
    if (!c) return k->last_err;
    kafka_DescribeGroupsResponse_DescribedGroup *d;
    int rc = group_describe_one(k, c, group, &d);
    if (rc) return rc;
    char *state = cli_strdup_k(k, d->GroupState);
    if (!strcmp(state, "Dead"))
        return cli_err(CLI_FAILED, "group '%s' does not exist (list groups with `ailurus group "
                       "list`)", group);
    json_t *members = json_array();
    for (int i = 0; i < d->Members_count; i++) {
        const kafka_DescribeGroupsResponse_DescribedGroupMember *m = &d->Members[i];
        json_array_append_new(members, json_pack("{s:s, s:s, s:s, s:o}", "member_id",
                                                 cli_strdup_k(k, m->MemberId), "client_id",
                                                 cli_strdup_k(k, m->ClientId), "host",
                                                 cli_strdup_k(k, m->ClientHost), "assignment",
                                                 decode_assignment(k, m->MemberAssignment)));
    }
    kafka_OffsetFetchResponse *of;
    rc = group_offsets(k, c, group, &of);
    if (rc) {
        json_decref(members);
        return rc;
    }
    json_t *offs = json_array();
    int64_t total_lag = 0;
    for (int i = 0; i < of->Topics_count && !rc; i++) {
        char *tn = cli_strdup_k(k, of->Topics[i].Name);
        for (int j = 0; j < of->Topics[i].Partitions_count; j++) {
            const kafka_OffsetFetchResponse_OffsetFetchResponsePartition *p =
                &of->Topics[i].Partitions[j];
            if (p->CommittedOffset < 0) continue;
            int64_t end;
            rc = part_offset(k, tn, p->PartitionIndex, -1, &end);
            if (rc) break;
            int64_t lag = end >= 0 ? end - p->CommittedOffset : -1;
            if (lag < -1) lag = 0;
            if (lag > 0) total_lag += lag;
            /* which member owns it */
            char want[300];
            snprintf(want, sizeof(want), "%s:%d", tn, p->PartitionIndex);
            const char *owner = NULL;
            size_t mi;
            json_t *m;
            json_array_foreach(members, mi, m) {
                size_t ai;
                json_t *e;
                json_array_foreach(json_object_get(m, "assignment"), ai, e) {
                    if (!strcmp(json_string_value(e), want))
                        owner = json_string_value(json_object_get(m, "client_id"));
                }
            }
            json_t *row = json_pack("{s:s, s:i, s:I, s:I, s:I, s:s?}", "topic", tn,
                                    "partition", p->PartitionIndex, "committed_offset",
                                    (json_int_t)p->CommittedOffset, "log_end_offset",
                                    (json_int_t)end, "lag", (json_int_t)lag, "owner", owner);
            json_array_append_new(offs, row);
        }
    }
    if (rc) {
        json_decref(members);
        json_decref(offs);
        return rc;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:I}", "group", group, "state", state,
                          "protocol_type", cli_strdup_k(k, d->ProtocolType), "protocol",
                          cli_strdup_k(k, d->ProtocolData), "members", members, "offsets",
                          offs, "total_lag", (json_int_t)total_lag);
    if (k->o->format == CLI_FMT_JSON) {
        cli_print_object(k->o, o);
    } else {
        printf("Group: %s  state: %s  protocol: %s/%s  members: %d  total lag: %lld\n\n", group,
               state, json_string_value(json_object_get(o, "protocol_type")),
               json_string_value(json_object_get(o, "protocol")), d->Members_count,
               (long long)total_lag);
        if (d->Members_count) {
            static const char *const mcols[] = {"member_id", "client_id", "host", "assignment",
                                                NULL};
            cli_print_rows(k->o, members, mcols);
            printf("\n");
        }
        static const char *const ocols[] = {"topic", "partition", "committed_offset",
                                            "log_end_offset", "lag", "owner", NULL};
        cli_print_rows(k->o, offs, ocols);
    }
    json_decref(o);
    return CLI_OK;
}

enum { SEEK_NONE, SEEK_EARLIEST, SEEK_LATEST, SEEK_OFFSET, SEEK_TIMESTAMP };

static int group_seek(cli_kafka *k, const char *group, const cli_list *topics, int mode,
                      int64_t value)
{
    cli_conn *c = cli_kafka_coordinator(k, group);
    if (!c) return k->last_err;
    kafka_DescribeGroupsResponse_DescribedGroup *d;
    int rc = group_describe_one(k, c, group, &d);
    if (rc) return rc;
    char *state = cli_strdup_k(k, d->GroupState);
    if (strcmp(state, "Empty") && strcmp(state, "Dead"))
        return cli_err(CLI_FAILED, "group '%s' is %s with %d member(s): stop its consumers "
                       "first, then seek (offsets can only be reset for an Empty group)",
                       group, state, d->Members_count);
    /* which topics: -t given, else every topic the group has committed offsets for */
    const char *tn[CLI_LIST_MAX];
    int nt = 0;
    for (int i = 0; i < topics->n; i++) tn[nt++] = topics->v[i];
    if (!nt) {
        kafka_OffsetFetchResponse *of;
        if ((rc = group_offsets(k, c, group, &of))) return rc;
        for (int i = 0; i < of->Topics_count && nt < CLI_LIST_MAX; i++)
            tn[nt++] = cli_strdup_k(k, of->Topics[i].Name);
        if (!nt)
            return cli_err(CLI_USAGE, "group '%s' has no committed offsets: name the topics "
                           "with -t TOPIC", group);
    }
    if ((rc = cli_kafka_metadata(k, tn, nt))) return rc;
    kafka_OffsetCommitRequest req;
    kafka_OffsetCommitRequest_init(&req);
    req.GroupId = kafka_str_from(group);
    req.GenerationIdOrMemberEpoch = -1;
    req.MemberId = kafka_str_from("");
    req.GroupInstanceId = (kafka_str){NULL, -1};
    req.RetentionTimeMs = -1;
    req.Topics_count = nt;
    req.Topics = cli_alloc(k, sizeof(*req.Topics) * (size_t)nt);
    json_t *rows = json_array();
    for (int i = 0; i < nt; i++) {
        const kafka_MetadataResponse_MetadataResponseTopic *t = cli_md_topic(k, tn[i]);
        if (!t || t->ErrorCode) {
            json_decref(rows);
            return cli_err(CLI_FAILED, "seek: topic '%s' does not exist (see `ailurus topic "
                           "list`)", tn[i]);
        }
        kafka_OffsetCommitRequest_OffsetCommitRequestTopic *ct = &req.Topics[i];
        kafka_OffsetCommitRequest_OffsetCommitRequestTopic_init(ct);
        ct->Name = kafka_str_from(tn[i]);
        int np = t->Partitions_count;
        ct->Partitions_count = np;
        ct->Partitions = cli_alloc(k, sizeof(*ct->Partitions) * (size_t)(np + 1));
        for (int j = 0; j < np; j++) {
            int32_t p = t->Partitions[j].PartitionIndex;
            int64_t off = value;
            if (mode != SEEK_OFFSET) {
                int64_t ts = mode == SEEK_EARLIEST ? -2 : mode == SEEK_LATEST ? -1 : value;
                if ((rc = part_offset(k, tn[i], p, ts, &off))) {
                    json_decref(rows);
                    return rc;
                }
                if (off < 0 && mode == SEEK_TIMESTAMP &&
                    (rc = part_offset(k, tn[i], p, -1, &off))) {
                    json_decref(rows);
                    return rc;
                }
                if (off < 0) {
                    json_decref(rows);
                    return cli_err(CLI_FAILED, "cannot resolve the offset of %s[%d]", tn[i], p);
                }
            }
            kafka_OffsetCommitRequest_OffsetCommitRequestPartition *cp = &ct->Partitions[j];
            kafka_OffsetCommitRequest_OffsetCommitRequestPartition_init(cp);
            cp->PartitionIndex = p;
            cp->CommittedOffset = off;
            cp->CommittedLeaderEpoch = -1;
            cp->CommitTimestamp = -1;
            cp->CommittedMetadata = kafka_str_from("");
            json_array_append_new(rows, json_pack("{s:s, s:i, s:I}", "topic", tn[i],
                                                  "partition", p, "new_offset",
                                                  (json_int_t)off));
        }
    }
    kafka_OffsetCommitResponse resp;
    rc = cli_kafka_call(k, c, KAFKA_API_OFFSET_COMMIT, 7, &req, &resp);
    for (int i = 0; !rc && i < resp.Topics_count; i++)
        for (int j = 0; j < resp.Topics[i].Partitions_count; j++) {
            int16_t e = resp.Topics[i].Partitions[j].ErrorCode;
            if (!e) continue;
            char eb[256];
            rc = cli_err(CLI_FAILED, "seek %.*s[%d]: %s", (int)resp.Topics[i].Name.len,
                         resp.Topics[i].Name.ptr, resp.Topics[i].Partitions[j].PartitionIndex,
                         cli_kerr(e, (kafka_str){NULL, -1}, eb, sizeof(eb)));
            break;
        }
    static const char *const cols[] = {"topic", "partition", "new_offset", NULL};
    if (!rc) cli_print_rows(k->o, rows, cols);
    json_decref(rows);
    return rc;
}

static int group_delete(cli_kafka *k, const char **groups, int n)
{
    json_t *rows = json_array();
    int rc = CLI_OK, failed = CLI_OK;
    for (int i = 0; i < n && !rc; i++) {
        cli_conn *c = cli_kafka_coordinator(k, groups[i]);
        if (!c) {
            rc = k->last_err;
            break;
        }
        kafka_DeleteGroupsRequest req;
        kafka_DeleteGroupsRequest_init(&req);
        kafka_str g = kafka_str_from(groups[i]);
        req.GroupsNames_count = 1;
        req.GroupsNames = &g;
        kafka_DeleteGroupsResponse resp;
        rc = cli_kafka_call(k, c, KAFKA_API_DELETE_GROUPS, 2, &req, &resp);
        for (int j = 0; !rc && j < resp.Results_count; j++) {
            int16_t e = resp.Results[j].ErrorCode;
            char eb[256];
            if (e == KAFKA_ERR_GROUP_ID_NOT_FOUND)
                failed = cli_err(CLI_FAILED, "group '%s' does not exist (see `ailurus group "
                                 "list`)", groups[i]);
            else if (e == KAFKA_ERR_NON_EMPTY_GROUP)
                failed = cli_err(CLI_FAILED, "group '%s' still has members: stop its "
                                 "consumers first", groups[i]);
            else if (e)
                failed = cli_err(CLI_FAILED, "delete group '%s': %s", groups[i],
                                 cli_kerr(e, (kafka_str){NULL, -1}, eb, sizeof(eb)));
            else
                json_array_append_new(rows, json_pack("{s:s, s:s}", "group", groups[i],
                                                      "status", "deleted"));
        }
    }
    static const char *const cols[] = {"group", "status", NULL};
    if (!rc && (json_array_size(rows) || !failed)) cli_print_rows(k->o, rows, cols);
    json_decref(rows);
    return rc ? rc : failed;
}

int cmd_group(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout, "%s\n", GROUP_USAGE_S);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "list") && strcmp(sub, "describe") && strcmp(sub, "seek") &&
        strcmp(sub, "delete")) {
        cli_err(CLI_USAGE, "unknown group subcommand '%s'", sub);
        fprintf(stderr, "%s\n", GROUP_USAGE_S);
        return CLI_USAGE;
    }
    cli_opts o;
    cli_opts_init(&o);
    cli_list topics = {0};
    bool earliest = false, latest = false;
    int64_t to_off = -1, to_ts = -1;
    cli_flag flags[] = {
        {"topic", 't', CLI_F_LIST, &topics, "seek: topic to reset (repeatable; default all)"},
        {"to-earliest", 0, CLI_F_BOOL, &earliest, "seek: to the log start"},
        {"to-latest", 0, CLI_F_BOOL, &latest, "seek: to the log end"},
        {"to-offset", 0, CLI_F_INT, &to_off, "seek: to this offset"},
        {"to-timestamp", 0, CLI_F_INT, &to_ts, "seek: to the first record at/after MS"},
        CLI_GLOBAL_FLAGS(&o),
        {0},
    };
    const char *pos[64];
    int npos;
    int rc = cli_flags_parse(flags, argc - 2, argv + 2, pos, &npos, 64, &o, GROUP_USAGE_S);
    if (rc) return rc < 0 ? CLI_OK : rc;
    if (!strcmp(sub, "list") && npos) return cli_err(CLI_USAGE, "group list takes no arguments");
    if (strcmp(sub, "list") && npos < 1) return cli_err(CLI_USAGE, "group %s needs a group", sub);
    if ((!strcmp(sub, "describe") || !strcmp(sub, "seek")) && npos != 1)
        return cli_err(CLI_USAGE, "group %s takes one group", sub);
    int mode = SEEK_NONE, nmodes = 0;
    int64_t value = 0;
    if (earliest) mode = SEEK_EARLIEST, nmodes++;
    if (latest) mode = SEEK_LATEST, nmodes++;
    if (to_off >= 0) mode = SEEK_OFFSET, value = to_off, nmodes++;
    if (to_ts >= 0) mode = SEEK_TIMESTAMP, value = to_ts, nmodes++;
    if (!strcmp(sub, "seek") && nmodes != 1)
        return cli_err(CLI_USAGE, "seek needs exactly one of --to-earliest, --to-latest, "
                       "--to-offset N, --to-timestamp MS");
    cli_kafka k;
    rc = cli_kafka_open(&k, &o);
    if (rc) goto out;
    if (!strcmp(sub, "list")) rc = group_list(&k);
    else if (!strcmp(sub, "describe")) rc = group_describe(&k, pos[0]);
    else if (!strcmp(sub, "seek")) rc = group_seek(&k, pos[0], &topics, mode, value);
    else rc = group_delete(&k, pos, npos);
out:
    cli_kafka_close(&k);
    return rc;
}
