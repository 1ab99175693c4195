/*
 * topic.c — `ailurus topic create|list|describe|delete|alter-config|add-partitions|produce|
 * consume`: topic administration and a line-oriented producer/consumer over the Kafka protocol,
 * usable against any Kafka-compatible broker. Output is a table for people or JSON
 * (--format json) for scripts; exit codes as in src/cli/commands.h.
 */
#include "cli/cli_util.h"

#include "client/kclient.h"
#include "kafka/errors.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOPIC_USAGE                                                                           \
    "usage: ailurus topic <create|list|describe|delete|alter-config|add-partitions|produce|"   \
    "consume> [args] [options]\n"                                                              \
    "  create NAME [-p N] [-r N] [-c key=value]...    list\n"                                  \
    "  describe NAME                                 delete NAME...\n"                        \
    "  alter-config NAME [--set k=v]... [--delete k]...   add-partitions NAME -n TOTAL\n"     \
    "  produce NAME [--file F] [-k SEP] [-H k=v]... [--acks -1|1] [--compression C]\n"       \
    "  consume NAME [--offset beginning|end|N|@MS] [-f] [-n N] [-p P] [--format text|json]"

#define RESOURCE_TOPIC 2

static const char *const TOPIC_USAGE_S = TOPIC_USAGE;

/* Prints the per-topic error of an admin call and returns CLI_FAILED (or CLI_OK for 0). */
static int topic_result(const char *what, const char *name, int16_t code, kafka_str msg)
{
    if (!code) return CLI_OK;
    char eb[512];
    cli_kerr(code, msg, eb, sizeof(eb));
    if (code == KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION)
        return cli_err(CLI_FAILED, "%s '%s': topic does not exist (list topics with `ailurus "
                       "topic list`, create it with `ailurus topic create %s`)", what, name,
                       name);
    if (code == KAFKA_ERR_TOPIC_ALREADY_EXISTS)
        return cli_err(CLI_FAILED, "%s '%s': topic already exists (see `ailurus topic "
                       "describe %s`)", what, name, name);
    return cli_err(CLI_FAILED, "%s '%s' failed: %s", what, name, eb);
}

/* Metadata for one topic; CLI_FAILED with a helpful message when it does not exist. */
static int topic_md(cli_kafka *k, const char *name,
                    const kafka_MetadataResponse_MetadataResponseTopic **out)
{
    const char *names[1] = {name};
    int rc = cli_kafka_metadata(k, names, 1);
    if (rc) return rc;
    const kafka_MetadataResponse_MetadataResponseTopic *t = cli_md_topic(k, name);
    if (!t) return topic_result("topic", name, KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION,
                                (kafka_str){NULL, -1});
    if (t->ErrorCode) return topic_result("topic", name, t->ErrorCode, (kafka_str){NULL, -1});
    *out = t;
    return CLI_OK;
}

/* --- create / delete / add-partitions / alter-config --- */

static int topic_create(cli_kafka *k, const char *name, int64_t parts, int64_t rf,
                        const cli_list *cfg)
{
    kafka_CreateTopicsRequest req;
    kafka_CreateTopicsRequest_init(&req);
    kafka_CreateTopicsRequest_CreatableTopic t;
    kafka_CreateTopicsRequest_CreatableTopic_init(&t);
    t.Name = kafka_str_from(name);
    t.NumPartitions = (int32_t)parts;
    t.ReplicationFactor = (int16_t)rf;
    t.Configs_count = cfg->n;
    t.Configs = cli_alloc(k, sizeof(*t.Configs) * (size_t)(cfg->n + 1));
    for (int i = 0; i < cfg->n; i++) {
        const char *eq = strchr(cfg->v[i], '=');
        if (!eq || eq == cfg->v[i])
            return cli_err(CLI_USAGE, "-c expects key=value, got '%s'", cfg->v[i]);
        kafka_CreateTopicsRequest_CreateableTopicConfig_init(&t.Configs[i]);
        t.Configs[i].Name = (kafka_str){cfg->v[i], (int32_t)(eq - cfg->v[i])};
        t.Configs[i].Value = kafka_str_from(eq + 1);
    }
    req.Topics_count = 1;
    req.Topics = &t;
    req.timeoutMs = (int32_t)k->o->timeout_ms;
    kafka_CreateTopicsResponse resp;
    int rc = cli_kafka_call(k, NULL, KAFKA_API_CREATE_TOPICS, 5, &req, &resp);
    if (rc) return rc;
    if (resp.Topics_count < 1) return cli_err(CLI_FAILED, "empty CreateTopics response");
    const kafka_CreateTopicsResponse_CreatableTopicResult *r = &resp.Topics[0];
    rc = topic_result("create topic", name, r->ErrorCode, r->ErrorMessage);
    if (rc) return rc;
    json_t *o = json_pack("{s:s, s:i, s:i}", "topic", name, "partitions",
                          (json_int_t)r->NumPartitions, "replication_factor",
                          (json_int_t)r->ReplicationFactor);
    static const char *const cols[] = {"topic", "partitions", "replication_factor", NULL};
    json_t *rows = json_pack("[O]", o);
    cli_print_rows(k->o, k->o->format == CLI_FMT_JSON ? o : rows, cols);
    json_decref(rows);
    json_decref(o);
    return CLI_OK;
}

static int topic_delete(cli_kafka *k, const char **names, int n)
{
    kafka_DeleteTopicsRequest req;
    kafka_DeleteTopicsRequest_init(&req);
    req.TopicNames_count = n;
    req.TopicNames = cli_alloc(k, sizeof(kafka_str) * (size_t)n);
    for (int i = 0; i < n; i++) req.TopicNames[i] = kafka_str_from(names[i]);
    req.TimeoutMs = (int32_t)k->o->timeout_ms;
    kafka_DeleteTopicsResponse resp;
    int rc = cli_kafka_call(k, NULL, KAFKA_API_DELETE_TOPICS, 4, &req, &resp);
    if (rc) return rc;
    json_t *rows = json_array();
    int failed = CLI_OK;
    for (int i = 0; i < resp.Responses_count; i++) {
        const kafka_DeleteTopicsResponse_DeletableTopicResult *r = &resp.Responses[i];
        char *nm = cli_strdup_k(k, r->Name);
        if (r->ErrorCode) failed = topic_result("delete topic", nm, r->ErrorCode, r->ErrorMessage);
        else json_array_append_new(rows, json_pack("{s:s, s:s}", "topic", nm, "status",
                                                   "deleted"));
    }
    static const char *const cols[] = {"topic", "status", NULL};
    if (json_array_size(rows) || !failed) cli_print_rows(k->o, rows, cols);
    json_decref(rows);
    return failed;
}

static int topic_add_partitions(cli_kafka *k, const char *name, int64_t total)
{
    kafka_CreatePartitionsRequest req;
    kafka_CreatePartitionsRequest_init(&req);
    kafka_CreatePartitionsRequest_CreatePartitionsTopic t;
    kafka_CreatePartitionsRequest_CreatePartitionsTopic_init(&t);
    t.Name = kafka_str_from(name);
    t.Count = (int32_t)total;
    t.Assignments_count = -1;
    t.Assignments = NULL;
    req.Topics_count = 1;
    req.Topics = &t;
    req.TimeoutMs = (int32_t)k->o->timeout_ms;
    kafka_CreatePartitionsResponse resp;
    int rc = cli_kafka_call(k, NULL, KAFKA_API_CREATE_PARTITIONS, 2, &req, &resp);
    if (rc) return rc;
    if (resp.Results_count < 1) return cli_err(CLI_FAILED, "empty CreatePartitions response");
    rc = topic_result("add partitions to", name, resp.Results[0].ErrorCode,
                      resp.Results[0].ErrorMessage);
    if (rc) return rc;
    json_t *o = json_pack("{s:s, s:I}", "topic", name, "partitions", (json_int_t)total);
    cli_print_object(k->o, o);
    json_decref(o);
    return CLI_OK;
}

static int topic_alter_config(cli_kafka *k, const char *name, const cli_list *set,
                              const cli_list *del)
{
    if (!set->n && !del->n) return cli_err(CLI_USAGE, "alter-config needs --set k=v or --delete k");
    kafka_IncrementalAlterConfigsRequest req;
    kafka_IncrementalAlterConfigsRequest_init(&req);
    kafka_IncrementalAlterConfigsRequest_AlterConfigsResource r;
    kafka_IncrementalAlterConfigsRequest_AlterConfigsResource_init(&r);
    r.ResourceType = RESOURCE_TOPIC;
    r.ResourceName = kafka_str_from(name);
    r.Configs_count = set->n + del->n;
    r.Configs = cli_alloc(k, sizeof(*r.Configs) * (size_t)r.Configs_count);
    for (int i = 0; i < set->n; i++) {
        const char *eq = strchr(set->v[i], '=');
        if (!eq || eq == set->v[i])
            return cli_err(CLI_USAGE, "--set expects key=value, got '%s'", set->v[i]);
        kafka_IncrementalAlterConfigsRequest_AlterableConfig_init(&r.Configs[i]);
        r.Configs[i].Name = (kafka_str){set->v[i], (int32_t)(eq - set->v[i])};
        r.Configs[i].ConfigOperation = 0; /* SET */
        r.Configs[i].Value = kafka_str_from(eq + 1);
    }
    for (int i = 0; i < del->n; i++) {
        kafka_IncrementalAlterConfigsRequest_AlterableConfig *c = &r.Configs[set->n + i];
        kafka_IncrementalAlterConfigsRequest_AlterableConfig_init(c);
        c->Name = kafka_str_from(del->v[i]);
        c->ConfigOperation = 1; /* DELETE */
        c->Value = (kafka_str){NULL, -1};
    }
    req.Resources_count = 1;
    req.Resources = &r;
    kafka_IncrementalAlterConfigsResponse resp;
    int rc = cli_kafka_call(k, NULL, KAFKA_API_INCREMENTAL_ALTER_CONFIGS, 1, &req, &resp);
    if (rc) return rc;
    if (resp.Responses_count < 1) return cli_err(CLI_FAILED, "empty response");
    rc = topic_result("alter config of", name, resp.Responses[0].ErrorCode,
                      resp.Responses[0].ErrorMessage);
    if (rc) return rc;
    json_t *o = json_pack("{s:s, s:i, s:i}", "topic", name, "set", set->n, "deleted", del->n);
    cli_print_object(k->o, o);
    json_decref(o);
    return CLI_OK;
}

/* --- list / describe --- */

static int topic_list(cli_kafka *k)
{
    int rc = cli_kafka_metadata(k, NULL, 0);
    if (rc) return rc;
    json_t *rows = json_array();
    for (int i = 0; i < k->md->Topics_count; i++) {
        const kafka_MetadataResponse_MetadataResponseTopic *t = &k->md->Topics[i];
        int rf = t->Partitions_count ? t->Partitions[0].ReplicaNodes_count : 0;
        json_array_append_new(rows, json_pack("{s:s, s:i, s:i, s:b}", "topic",
                                              cli_strdup_k(k, t->Name), "partitions",
                                              t->Partitions_count, "replicas", rf, "internal",
                                              t->IsInternal));
    }
    static const char *const cols[] = {"topic", "partitions", "replicas", NULL};
    cli_print_rows(k->o, rows, cols);
    json_decref(rows);
    return CLI_OK;
}

/*
 * ListOffsets for every partition of t at timestamp ts (-2 earliest, -1 latest), one request
 * per leader. out[p] gets the offset (-1 when unknown). Returns a CLI code.
 */
static int topic_offsets(cli_kafka *k, const kafka_MetadataResponse_MetadataResponseTopic *t,
                         int64_t ts, int64_t *out)
{
    int np = t->Partitions_count;
    for (int p = 0; p < np; p++) out[p] = -1;
    bool *done = cli_alloc(k, (size_t)np + 1);
    memset(done, 0, (size_t)np + 1);
    for (int i = 0; i < np; i++) {
        if (done[i]) continue;
        int32_t leader = t->Partitions[i].LeaderId;
        kafka_ListOffsetsRequest req;
        kafka_ListOffsetsRequest_init(&req);
        req.ReplicaId = -1;
        kafka_ListOffsetsRequest_ListOffsetsTopic lt;
        kafka_ListOffsetsRequest_ListOffsetsTopic_init(&lt);
        lt.Name = t->Name;
        lt.Partitions = cli_alloc(k, sizeof(*lt.Partitions) * (size_t)np);
        lt.Partitions_count = 0;
        for (int j = i; j < np; j++) {
            if (done[j] || t->Partitions[j].LeaderId != leader) continue;
            done[j] = true;
            kafka_ListOffsetsRequest_ListOffsetsPartition *q =
                &lt.Partitions[lt.Partitions_count++];
            kafka_ListOffsetsRequest_ListOffsetsPartition_init(q);
            q->PartitionIndex = t->Partitions[j].PartitionIndex;
            q->CurrentLeaderEpoch = -1;
            q->Timestamp = ts;
        }
        req.Topics_count = 1;
        req.Topics = &lt;
        cli_conn *c = cli_kafka_node(k, leader);
        if (!c) return k->last_err;
        kafka_ListOffsetsResponse resp;
        int rc = cli_kafka_call(k, c, KAFKA_API_LIST_OFFSETS, 4, &req, &resp);
        if (rc) return rc;
        for (int a = 0; a < resp.Topics_count; a++)
            for (int b = 0; b < resp.Topics[a].Partitions_count; b++) {
                const kafka_ListOffsetsResponse_ListOffsetsPartitionResponse *r =
                    &resp.Topics[a].Partitions[b];
                if (r->PartitionIndex >= 0 && r->PartitionIndex < np && !r->ErrorCode)
                    out[r->PartitionIndex] = r->Offset;
            }
    }
    return CLI_OK;
}

static json_t *int_array(const int32_t *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static int topic_describe(cli_kafka *k, const char *name)
{
    const kafka_MetadataResponse_MetadataResponseTopic *t;
    int rc = topic_md(k, name, &t);
    if (rc) return rc;
    int np = t->Partitions_count;
    int64_t *lo = cli_alloc(k, sizeof(int64_t) * (size_t)(np + 1));
    int64_t *hi = cli_alloc(k, sizeof(int64_t) * (size_t)(np + 1));
    if ((rc = topic_offsets(k, t, -2, lo)) || (rc = topic_offsets(k, t, -1, hi))) return rc;
    json_t *parts = json_array();
    for (int i = 0; i < np; i++) {
        const kafka_MetadataResponse_MetadataResponsePartition *p = &t->Partitions[i];
        json_t *row = json_pack("{s:i, s:i, s:i, s:o, s:o, s:I, s:I}", "partition",
                                p->PartitionIndex, "leader", p->LeaderId, "epoch",
                                p->LeaderEpoch, "replicas",
                                int_array(p->ReplicaNodes, p->ReplicaNodes_count), "isr",
                                int_array(p->IsrNodes, p->IsrNodes_count), "log_start_offset",
                                (json_int_t)lo[i], "high_watermark", (json_int_t)hi[i]);
        json_object_set_new(row, "records", json_integer(lo[i] >= 0 && hi[i] >= lo[i]
                                                             ? hi[i] - lo[i] : 0));
        json_array_append_new(parts, row);
    }
    /* configs */
    kafka_DescribeConfigsRequest dreq;
    kafka_DescribeConfigsRequest_init(&dreq);
    kafka_DescribeConfigsRequest_DescribeConfigsResource res;
    kafka_DescribeConfigsRequest_DescribeConfigsResource_init(&res);
    res.ResourceType = RESOURCE_TOPIC;
    res.ResourceName = kafka_str_from(name);
    res.ConfigurationKeys_count = -1;
    res.ConfigurationKeys = NULL;
    dreq.Resources_count = 1;
    dreq.Resources = &res;
    kafka_DescribeConfigsResponse dresp;
    json_t *cfgs = json_array();
    rc = cli_kafka_call(k, NULL, KAFKA_API_DESCRIBE_CONFIGS, 3, &dreq, &dresp);
    if (rc) {
        json_decref(parts);
        json_decref(cfgs);
        return rc;
    }
    static const char *const src_names[] = {"unknown", "topic", "dynamic-broker",
                                            "dynamic-default-broker", "static-broker",
                                            "default", "dynamic-broker-logger"};
    for (int i = 0; i < dresp.Results_count; i++) {
        const kafka_DescribeConfigsResponse_DescribeConfigsResult *r = &dresp.Results[i];
        if (r->ErrorCode) {
            char eb[256];
            fprintf(stderr, "ailurus: warning: configs of '%s': %s\n", name,
                    cli_kerr(r->ErrorCode, r->ErrorMessage, eb, sizeof(eb)));
            continue;
        }
        for (int j = 0; j < r->Configs_count; j++) {
            const kafka_DescribeConfigsResponse_DescribeConfigsResourceResult *c = &r->Configs[j];
            int s = c->ConfigSource >= 0 && c->ConfigSource <= 6 ? c->ConfigSource : 0;
            json_t *row = json_pack("{s:s, s:s?, s:s}", "name", cli_strdup_k(k, c->Name),
                                    "value", c->Value.len >= 0 ? cli_strdup_k(k, c->Value)
                                                               : NULL,
                                    "source", src_names[s]);
            json_array_append_new(cfgs, row);
        }
    }
    if (k->o->format == CLI_FMT_JSON) {
        json_t *o = json_pack("{s:s, s:b, s:o, s:o}", "topic", name, "internal", t->IsInternal,
                              "partitions", parts, "configs", cfgs);
        cli_print_object(k->o, o);
        json_decref(o);
        return CLI_OK;
    }
    printf("Topic: %s  (%d partitions)\n\n", name, np);
    static const char *const pcols[] = {"partition", "leader", "epoch", "replicas", "isr",
                                        "log_start_offset", "high_watermark", "records", NULL};
    cli_print_rows(k->o, parts, pcols);
    printf("\n");
    static const char *const ccols[] = {"name", "value", "source", NULL};
    cli_print_rows(k->o, cfgs, ccols);
    json_decref(parts);
    json_decref(cfgs);
    return CLI_OK;
}

/* --- produce --- */

/* Kafka's murmur2 (the default partitioner's hash) of a key. */
static uint32_t murmur2(const uint8_t *data, size_t len)
{
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        uint32_t kk = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 |
                      (uint32_t)data[i + 2] << 16 | (uint32_t)data[i + 3] << 24;
        kk *= m;
        kk ^= kk >> 24;
        kk *= m;
        h *= m;
        h ^= kk;
    }
    switch (len & 3) {
    case 3: h ^= (uint32_t)data[i + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)data[i + 1] << 8;  /* fall through */
    case 1: h ^= data[i]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/* Pending records of one partition. */
struct pbuf {
    kclient_record *recs;
    int n, cap;
    size_t bytes;
};

struct produce_state {
    cli_kafka *k;
    const kafka_MetadataResponse_MetadataResponseTopic *t;
    const char *topic;
    int16_t acks;
    int comp;
    int np;
    struct pbuf *pb;
    int64_t *first_off, *count; /* per partition results */
    int64_t sent_records;
    int64_t base_ts;
};

/* Sends every pending partition buffer (one Produce per leader). Returns a CLI code. */
static int produce_flush(struct produce_state *s)
{
    int np = s->np;
    bool *done = calloc((size_t)np, 1);
    if (!done) return cli_err(CLI_FAILED, "out of memory");
    int rc = CLI_OK;
    uint8_t **batches = calloc((size_t)np, sizeof(uint8_t *));
    for (int i = 0; i < np && !rc; i++) {
        if (done[i] || !s->pb[i].n) continue;
        int32_t leader = s->t->Partitions[i].LeaderId;
        kafka_ProduceRequest req;
        kafka_ProduceRequest_init(&req);
        req.TransactionalId = (kafka_str){NULL, -1};
        req.Acks = s->acks;
        req.TimeoutMs = (int32_t)s->k->o->timeout_ms;
        kafka_ProduceRequest_TopicProduceData td;
        kafka_ProduceRequest_TopicProduceData_init(&td);
        td.Name = kafka_str_from(s->topic);
        kafka_ProduceRequest_PartitionProduceData *pd = cli_alloc(s->k, sizeof(*pd) * (size_t)np);
        td.PartitionData = pd;
        td.PartitionData_count = 0;
        for (int j = i; j < np; j++) {
            struct pbuf *b = &s->pb[j];
            if (done[j] || !b->n || s->t->Partitions[j].LeaderId != leader) continue;
            done[j] = true;
            for (int r = 0; r < b->n; r++) b->recs[r].timestamp = s->base_ts;
            size_t sz = kclient_batch_bound(b->recs, b->n);
            batches[j] = malloc(sz);
            if (!batches[j]) {
                rc = cli_err(CLI_FAILED, "out of memory");
                break;
            }
            int64_t bs = kclient_batch_build(batches[j], sz, b->recs, b->n, s->comp);
            if (bs < 0) {
                rc = cli_err(CLI_FAILED, "cannot build a record batch: %d", (int)bs);
                break;
            }
            kafka_ProduceRequest_PartitionProduceData_init(&pd[td.PartitionData_count]);
            pd[td.PartitionData_count].Index = s->t->Partitions[j].PartitionIndex;
            pd[td.PartitionData_count].Records = (kafka_bytes){batches[j], (int32_t)bs};
            td.PartitionData_count++;
        }
        if (rc) break;
        req.TopicData_count = 1;
        req.TopicData = &td;
        cli_conn *c = cli_kafka_node(s->k, leader);
        if (!c) {
            rc = s->k->last_err;
            break;
        }
        kafka_ProduceResponse resp;
        rc = cli_kafka_call(s->k, c, KAFKA_API_PRODUCE, 7, &req, &resp);
        for (int a = 0; !rc && a < resp.Responses_count; a++)
            for (int b = 0; b < resp.Responses[a].PartitionResponses_count; b++) {
                const kafka_ProduceResponse_PartitionProduceResponse *r =
                    &resp.Responses[a].PartitionResponses[b];
                if (r->ErrorCode) {
                    char eb[512];
                    rc = cli_err(CLI_FAILED, "produce to %s[%d] failed: %s", s->topic, r->Index,
                                 cli_kerr(r->ErrorCode, r->ErrorMessage, eb, sizeof(eb)));
                    break;
                }
                if (r->Index < 0 || r->Index >= np) continue;
                if (s->first_off[r->Index] < 0) s->first_off[r->Index] = r->BaseOffset;
                s->count[r->Index] += s->pb[r->Index].n;
                s->sent_records += s->pb[r->Index].n;
            }
    }
    for (int i = 0; i < np; i++) {
        free(batches[i]);
        struct pbuf *b = &s->pb[i];
        for (int j = 0; j < b->n; j++) {
            free((void *)b->recs[j].key);
            free((void *)b->recs[j].value);
        }
        b->n = 0;
        b->bytes = 0;
    }
    free(batches);
    free(done);
    kafka_arena_reset(&s->k->arena); /* responses are consumed; metadata is re-read below */
    s->k->md = NULL;
    return rc;
}

static int topic_produce(cli_kafka *k, const char *name, const char *file, const char *ksep,
                         const cli_list *hdrs, int64_t acks, const char *comp_s,
                         int64_t partition, bool progress)
{
    int comp = kclient_compression_parse(comp_s ? comp_s : "none");
    if (comp < 0)
        return cli_err(CLI_USAGE, "--compression must be none, gzip, snappy, lz4 or zstd");
    if (acks != -1 && acks != 1)
        return cli_err(CLI_USAGE, "--acks must be -1 (all) or 1 (the CLI reports offsets, "
                       "so acks=0 is not offered)");
    if (ksep && !*ksep) return cli_err(CLI_USAGE, "-k needs a non-empty separator");
    /* headers: parsed once, shared by every record */
    kclient_header hv[CLI_LIST_MAX];
    size_t hbytes = 1;
    for (int i = 0; i < hdrs->n; i++) {
        const char *eq = strchr(hdrs->v[i], '=');
        if (!eq || eq == hdrs->v[i]) return cli_err(CLI_USAGE, "-H expects key=value");
        hv[i] = (kclient_header){hdrs->v[i], (int32_t)(eq - hdrs->v[i]), eq + 1,
                                 (int32_t)strlen(eq + 1)};
        hbytes += 2 + strlen(hdrs->v[i]);
    }
    if (hbytes > 8192) return cli_err(CLI_USAGE, "headers too large (max 8 KiB)");

    FILE *in = stdin;
    int64_t total = 0;
    if (file) {
        in = fopen(file, "rb");
        if (!in) return cli_err(CLI_FAILED, "cannot open %s: %s", file, strerror(errno));
        struct stat st;
        if (!fstat(fileno(in), &st)) total = st.st_size;
    }
    if (!progress && file && isatty(2) && total > (4 << 20)) progress = true;

    const kafka_MetadataResponse_MetadataResponseTopic *t;
    int rc = topic_md(k, name, &t);
    if (rc) goto out_file;
    struct produce_state s = {.k = k, .topic = name, .acks = (int16_t)acks, .comp = comp};
    s.np = t->Partitions_count;
    if (s.np <= 0) {
        rc = cli_err(CLI_FAILED, "topic '%s' has no partitions", name);
        goto out_file;
    }
    if (partition >= s.np) {
        rc = cli_err(CLI_USAGE, "partition %lld does not exist (topic '%s' has %d)",
                     (long long)partition, name, s.np);
        goto out_file;
    }
    s.pb = calloc((size_t)s.np, sizeof(*s.pb));
    s.first_off = malloc(sizeof(int64_t) * (size_t)s.np);
    s.count = calloc((size_t)s.np, sizeof(int64_t));
    if (!s.pb || !s.first_off || !s.count) {
        rc = cli_err(CLI_FAILED, "out of memory");
        goto out;
    }
    for (int i = 0; i < s.np; i++) s.first_off[i] = -1;
    s.t = t;
    char *line = NULL;
    size_t lcap = 0, pending = 0, pending_recs = 0;
    int64_t done_bytes = 0;
    uint32_t rr = 0;
    for (int64_t guard = 0; guard < ((int64_t)1 << 40); guard++) {
        ssize_t n = getline(&line, &lcap, in);
        if (n < 0) break;
        done_bytes += n;
        if (n && line[n - 1] == '\n') line[--n] = 0;
        if (n && line[n - 1] == '\r') line[--n] = 0;
        const char *key = NULL, *val = line;
        size_t klen = 0, vlen = (size_t)n;
        if (ksep) {
            const char *sp = strstr(line, ksep);
            if (sp) {
                key = line;
                klen = (size_t)(sp - line);
                val = sp + strlen(ksep);
                vlen = (size_t)n - klen - strlen(ksep);
            }
        }
        int p;
        if (partition >= 0) p = (int)partition;
        else if (key) p = (int)((murmur2((const uint8_t *)key, klen) & 0x7fffffff) %
                                (uint32_t)s.np);
        else p = (int)(rr++ % (uint32_t)s.np);
        struct pbuf *b = &s.pb[p];
        if (b->n == b->cap) {
            int nc = b->cap ? b->cap * 2 : 64;
            kclient_record *nr = realloc(b->recs, sizeof(*nr) * (size_t)nc);
            if (!nr) {
                rc = cli_err(CLI_FAILED, "out of memory");
                break;
            }
            b->recs = nr;
            b->cap = nc;
        }
        kclient_record *r = &b->recs[b->n];
        memset(r, 0, sizeof(*r));
        void *kc = NULL, *vc = malloc(vlen + 1);
        if (key) kc = malloc(klen + 1);
        if (!vc || (key && !kc)) {
            free(kc);
            free(vc);
            rc = cli_err(CLI_FAILED, "out of memory");
            break;
        }
        memcpy(vc, val, vlen);
        if (key) memcpy(kc, key, klen);
        r->key = kc;
        r->key_len = key ? (int32_t)klen : -1;
        r->value = vc;
        r->value_len = (int32_t)vlen;
        r->headers = hdrs->n ? hv : NULL;
        r->header_count = hdrs->n;
        b->n++;
        pending += vlen + klen + 32;
        pending_recs++;
        if (b->n == 1 && pending_recs == 1) s.base_ts = cli_now_ms();
        if (pending >= (1u << 20) || pending_recs >= 10000) {
            rc = produce_flush(&s);
            if (!rc) rc = topic_md(k, name, &t);
            if (rc) break;
            s.t = t;
            pending = pending_recs = 0;
            if (progress) cli_progress(done_bytes, total ? total : done_bytes, false);
        }
    }
    free(line);
    if (!rc && pending_recs) rc = produce_flush(&s);
    if (progress) cli_progress(done_bytes, total ? total : done_bytes, true);
    if (rc) goto out;
    json_t *rows = json_array();
    for (int i = 0; i < s.np; i++) {
        if (!s.count[i]) continue;
        json_array_append_new(rows, json_pack("{s:s, s:i, s:I, s:I}", "topic", name,
                                              "partition", i, "first_offset",
                                              (json_int_t)s.first_off[i], "records",
                                              (json_int_t)s.count[i]));
    }
    static const char *const cols[] = {"topic", "partition", "first_offset", "records", NULL};
    cli_print_rows(k->o, rows, cols);
    json_decref(rows);
out:
    if (s.pb) {
        for (int i = 0; i < s.np; i++) {
            for (int j = 0; j < s.pb[i].n; j++) {
                free((void *)s.pb[i].recs[j].key);
                free((void *)s.pb[i].recs[j].value);
            }
            free(s.pb[i].recs);
        }
    }
    free(s.pb);
    free(s.first_off);
    free(s.count);
out_file:
    if (in != stdin) fclose(in);
    return rc;
}

/* --- consume --- */

static volatile sig_atomic_t consume_stop;
static void on_sigint(int sig)
{
    (void)sig;
    consume_stop = 1;
}

/* Bytes as a JSON string (null for n < 0). Bytes that are not valid UTF-8 are taken as
 * Latin-1, so binary data still gives valid JSON (one character per byte). */
static json_t *json_bytes(const uint8_t *p, int32_t n)
{
    if (n < 0) return json_null();
    json_t *j = json_stringn((const char *)p, (size_t)n);
    if (j) return j;
    char *u = malloc((size_t)n * 2 + 1);
    if (!u) return json_null();
    size_t w = 0;
    for (int32_t i = 0; i < n; i++) {
        if (p[i] < 0x80) {
            u[w++] = (char)p[i];
        } else {
            u[w++] = (char)(0xc0 | (p[i] >> 6));
            u[w++] = (char)(0x80 | (p[i] & 0x3f));
        }
    }
    j = json_stringn(u, w);
    free(u);
    return j ? j : json_null();
}

/* The record's headers as a JSON object (later duplicates of a key win). */
static json_t *record_headers(const kclient_fetched *r)
{
    json_t *h = json_object();
    kclient_header_iter it;
    kclient_header_iter_init(&it, r);
    kclient_header hd;
    for (int32_t i = 0; i < 10000 && kclient_header_iter_next(&it, &hd) == 1; i++) {
        char kb[256];
        snprintf(kb, sizeof(kb), "%.*s", (int)hd.key_len, (const char *)hd.key);
        json_object_set_new(h, kb, json_bytes(hd.value ? hd.value : (const uint8_t *)"",
                                              hd.value_len));
    }
    return h;
}

enum { SHOW_KEY = 1, SHOW_HEADERS = 2 };

/* Prints one record: a JSON line, or (text) [headers TAB] [key TAB] value per `show`. */
static void print_record(const cli_opts *o, const char *topic, int32_t part,
                         const kclient_fetched *r, int show)
{
    if (o->format == CLI_FMT_JSON) {
        json_t *h = record_headers(r);
        json_t *j = json_pack("{s:s, s:i, s:I, s:I, s:o, s:o, s:o}", "topic", topic,
                              "partition", part, "offset", (json_int_t)r->offset,
                              "timestamp", (json_int_t)r->timestamp, "key",
                              json_bytes(r->key, r->key_len), "value",
                              json_bytes(r->value, r->value_len), "headers", h);
        json_dumpf(j, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
        fputc('\n', stdout);
        json_decref(j);
        return;
    }
    if (show & SHOW_HEADERS) {
        json_t *h = record_headers(r);
        const char *hk;
        json_t *hv;
        bool first = true;
        json_object_foreach(h, hk, hv) {
            printf("%s%s=%s", first ? "" : ",", hk, json_string_value(hv) ?: "");
            first = false;
        }
        json_decref(h);
        fputc('\t', stdout);
    }
    if (show & SHOW_KEY) {
        if (r->key_len >= 0) fwrite(r->key, 1, (size_t)r->key_len, stdout);
        fputc('\t', stdout);
    }
    if (r->value_len > 0) fwrite(r->value, 1, (size_t)r->value_len, stdout);
    fputc('\n', stdout);
}

/*
 * Prints the records of one Fetch partition response from *pos on (at most limit - *printed;
 * limit < 0: all), advancing *pos past every batch seen and setting *at_end once *pos reaches
 * the high watermark. Returns a CLI code (errors printed).
 */
static int consume_partition(const cli_opts *o, const char *name,
                             const kafka_FetchResponse_PartitionData *pd, int64_t *pos,
                             bool *at_end, int64_t limit, int64_t *printed, int show,
                             bool *progressed)
{
    int32_t part = pd->PartitionIndex;
    if (pd->ErrorCode == KAFKA_ERR_OFFSET_OUT_OF_RANGE)
        return cli_err(CLI_FAILED, "offset %lld is out of range for %s[%d] (see `ailurus topic "
                       "describe %s` for valid offsets)", (long long)*pos, name, part, name);
    if (pd->ErrorCode) {
        char eb[256];
        return cli_err(CLI_FAILED, "fetch %s[%d]: %s", name, part,
                       cli_kerr(pd->ErrorCode, (kafka_str){NULL, -1}, eb, sizeof(eb)));
    }
    kclient_fetch_iter it;
    kclient_fetch_iter_init(&it, pd->Records.ptr,
                            pd->Records.len > 0 ? (size_t)pd->Records.len : 0);
    kclient_fetched r;
    int n = 0;
    for (int guard = 0; guard < (1 << 30); guard++) {
        if (limit >= 0 && *printed >= limit) {
            kclient_fetch_iter_free(&it);
            return CLI_OK;
        }
        n = kclient_fetch_iter_next(&it, &r);
        if (n <= 0) break;
        if (r.offset < *pos) continue;
        print_record(o, name, part, &r, show);
        (*printed)++;
        *pos = r.offset + 1;
        *progressed = true;
    }
    kclient_fetch_iter_free(&it);
    if (n < 0)
        return cli_err(CLI_FAILED, "corrupt batch in %s[%d] at offset %lld: %s", name, part,
                       (long long)(it.next_offset >= 0 ? it.next_offset : *pos),
                       al_strerror(n));
    if (it.next_offset > *pos) { /* past control batches and compacted-away offsets */
        *pos = it.next_offset;
        *progressed = true;
    }
    if (*pos >= pd->HighWatermark) *at_end = true;
    return CLI_OK;
}

static int topic_consume(cli_kafka *k, cli_opts *o, const char *name, const char *from,
                         bool follow, int64_t limit, int64_t only_part, int show)
{
    const kafka_MetadataResponse_MetadataResponseTopic *t;
    int rc = topic_md(k, name, &t);
    if (rc) return rc;
    if (o->format == CLI_FMT_TABLE) o->format = CLI_FMT_TEXT;
    int np = t->Partitions_count;
    if (only_part >= np)
        return cli_err(CLI_USAGE, "partition %lld does not exist (topic '%s' has %d)",
                       (long long)only_part, name, np);
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)np);
    int64_t *tmp = malloc(sizeof(int64_t) * (size_t)np);
    int32_t *leader = malloc(sizeof(int32_t) * (size_t)np);
    int32_t *pidx = malloc(sizeof(int32_t) * (size_t)np);
    bool *at_end = calloc((size_t)np, 1);
    if (!pos || !tmp || !leader || !pidx || !at_end) {
        rc = cli_err(CLI_FAILED, "out of memory");
        goto out;
    }
    for (int i = 0; i < np; i++) {
        leader[i] = t->Partitions[i].LeaderId;
        pidx[i] = t->Partitions[i].PartitionIndex;
    }
    /* starting positions */
    if (!from || !strcmp(from, "beginning")) rc = topic_offsets(k, t, -2, pos);
    else if (!strcmp(from, "end")) rc = topic_offsets(k, t, -1, pos);
    else if (from[0] == '@') {
        char *end;
        long long ts = strtoll(from + 1, &end, 10);
        if (*end || end == from + 1 || ts < 0) {
            rc = cli_err(CLI_USAGE, "--offset @MS expects milliseconds since the epoch");
            goto out;
        }
        rc = topic_offsets(k, t, ts, pos);
        /* no record at/after ts: start at the end */
        if (!rc && (rc = topic_offsets(k, t, -1, tmp)) == 0)
            for (int i = 0; i < np; i++)
                if (pos[i] < 0) pos[i] = tmp[i];
    } else {
        char *end;
        long long n = strtoll(from, &end, 10);
        if (*end || end == from || n < 0) {
            rc = cli_err(CLI_USAGE, "--offset must be beginning, end, a number or @MS, not '%s'",
                         from);
            goto out;
        }
        for (int i = 0; i < np; i++) pos[i] = n;
    }
    if (rc) goto out;
    signal(SIGINT, on_sigint);
    signal(SIGPIPE, SIG_IGN);
    int64_t printed = 0;
    int64_t deadline = cli_mono_ms() + o->timeout_ms;
    for (int64_t round = 0; !consume_stop && round < ((int64_t)1 << 40); round++) {
        if (limit >= 0 && printed >= limit) break;
        bool all_end = true;
        for (int i = 0; i < np; i++)
            if ((only_part < 0 || i == only_part) && !at_end[i]) all_end = false;
        if (all_end && !follow) break;
        if (!follow && cli_mono_ms() > deadline) {
            rc = cli_err(CLI_FAILED, "timed out reading %s (raise --timeout)", name);
            break;
        }
        kafka_arena_reset(&k->arena);
        k->md = NULL;
        bool progressed = false;
        bool *sent = calloc((size_t)np, 1);
        if (!sent) {
            rc = cli_err(CLI_FAILED, "out of memory");
            break;
        }
        for (int i = 0; i < np && !rc; i++) {
            if ((only_part >= 0 && i != only_part) || sent[i] || (at_end[i] && !follow))
                continue;
            /* one Fetch per leader with all of its partitions we still read */
            kafka_FetchRequest req;
            kafka_FetchRequest_init(&req);
            req.ReplicaId = -1;
            /* follow: long-poll, but well inside the socket timeout */
            req.MaxWaitMs = follow ? (int32_t)(o->timeout_ms < 1000 ? o->timeout_ms / 2 : 500)
                                   : 0;
            req.MinBytes = 1;
            req.MaxBytes = 4 << 20;
            req.IsolationLevel = 0;
            req.SessionId = 0;
            req.SessionEpoch = -1;
            kafka_FetchRequest_FetchTopic ft;
            kafka_FetchRequest_FetchTopic_init(&ft);
            ft.Topic = kafka_str_from(name);
            ft.Partitions = cli_alloc(k, sizeof(*ft.Partitions) * (size_t)np);
            ft.Partitions_count = 0;
            for (int j = i; j < np; j++) {
                if ((only_part >= 0 && j != only_part) || sent[j] || leader[j] != leader[i] ||
                    (at_end[j] && !follow))
                    continue;
                sent[j] = true;
                kafka_FetchRequest_FetchPartition *fp = &ft.Partitions[ft.Partitions_count++];
                kafka_FetchRequest_FetchPartition_init(fp);
                fp->Partition = pidx[j];
                fp->CurrentLeaderEpoch = -1;
                fp->FetchOffset = pos[j];
                fp->LogStartOffset = -1;
                fp->PartitionMaxBytes = 1 << 20;
            }
            req.Topics_count = 1;
            req.Topics = &ft;
            req.ForgottenTopicsData_count = 0;
            req.RackId = kafka_str_from("");
            if (!k->md && (rc = cli_kafka_metadata(k, NULL, 0))) break;
            cli_conn *c = cli_kafka_node(k, leader[i]);
            if (!c) {
                rc = k->last_err;
                break;
            }
            kafka_FetchResponse resp;
            rc = cli_kafka_call(k, c, KAFKA_API_FETCH, 11, &req, &resp);
            if (rc) break;
            if (resp.ErrorCode) {
                char eb[256];
                rc = cli_err(CLI_FAILED, "fetch failed: %s",
                             cli_kerr(resp.ErrorCode, (kafka_str){NULL, -1}, eb, sizeof(eb)));
                break;
            }
            for (int a = 0; a < resp.Responses_count && !rc; a++)
                for (int b = 0; b < resp.Responses[a].Partitions_count && !rc; b++) {
                    const kafka_FetchResponse_PartitionData *pd = &resp.Responses[a].Partitions[b];
                    int x = -1;
                    for (int j = 0; j < np; j++)
                        if (pidx[j] == pd->PartitionIndex) x = j;
                    if (x < 0) continue;
                    rc = consume_partition(o, name, pd, &pos[x], &at_end[x], limit, &printed,
                                           show, &progressed);
                }
        }
        free(sent);
        fflush(stdout);
        if (rc) break;
        if (progressed) deadline = cli_mono_ms() + o->timeout_ms;
    }
out:
    free(pos);
    free(tmp);
    free(leader);
    free(pidx);
    free(at_end);
    return rc;
}

/* --- entry --- */

int cmd_topic(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout, "%s\n", TOPIC_USAGE_S);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *sub = argv[1];
    static const char *const subs[] = {"create", "list", "describe", "delete", "alter-config",
                                       "add-partitions", "produce", "consume", NULL};
    bool known = false;
    for (int i = 0; subs[i]; i++) known |= !strcmp(sub, subs[i]);
    if (!known) {
        cli_err(CLI_USAGE, "unknown topic subcommand '%s'", sub);
        fprintf(stderr, "%s\n", TOPIC_USAGE_S);
        return CLI_USAGE;
    }
    cli_opts o;
    cli_opts_init(&o);
    int64_t parts = INT64_MIN, rf = -1, total = -1, acks = -1; /* MIN: not given */
    cli_list cfg = {0}, set = {0}, del = {0}, hdrs = {0};
    const char *file = NULL, *ksep = NULL, *comp = NULL, *from = NULL;
    bool follow = false, progress = false, print_key = false, print_hdrs = false;
    cli_flag flags[] = {
        {"partitions", 'p', CLI_F_INT, &parts,
         "create: partitions (default: broker's); produce/consume: one partition"},
        {"replicas", 'r', CLI_F_INT, &rf, "create: replication factor (default: broker's)"},
        {"config", 'c', CLI_F_LIST, &cfg, "create: topic config key=value (repeatable)"},
        {"set", 0, CLI_F_LIST, &set, "alter-config: key=value to set (repeatable)"},
        {"delete", 0, CLI_F_LIST, &del, "alter-config: key to reset (repeatable)"},
        {"num", 'n', CLI_F_INT, &total, "add-partitions: new total; consume: max records"},
        {"file", 0, CLI_F_STR, &file, "produce: read lines from this file (default stdin)"},
        {"key-separator", 'k', CLI_F_STR, &ksep, "produce: split each line into key SEP value"},
        {"header", 'H', CLI_F_LIST, &hdrs, "produce: header key=value (repeatable)"},
        {"acks", 0, CLI_F_INT, &acks, "produce: -1 (all, default) or 1"},
        {"compression", 0, CLI_F_STR, &comp, "produce: none|gzip|snappy|lz4|zstd"},
        {"progress", 0, CLI_F_BOOL, &progress, "produce: show a progress bar"},
        {"offset", 'o', CLI_F_STR, &from, "consume: beginning|end|N|@MS (default beginning)"},
        {"follow", 'f', CLI_F_BOOL, &follow, "consume: keep waiting for new records"},
        {"print-key", 'K', CLI_F_BOOL, &print_key, "consume (text): print KEY<TAB>VALUE"},
        {"print-headers", 0, CLI_F_BOOL, &print_hdrs, "consume (text): print k=v,..<TAB> first"},
        CLI_GLOBAL_FLAGS(&o),
        {0},
    };
    const char *pos[64];
    int npos;
    int rc = cli_flags_parse(flags, argc - 2, argv + 2, pos, &npos, 64, &o, TOPIC_USAGE_S);
    if (rc) return rc < 0 ? CLI_OK : rc;
    bool parts_given = parts != INT64_MIN;
    bool needs_name = strcmp(sub, "list") != 0;
    if (needs_name && npos < 1) return cli_err(CLI_USAGE, "topic %s needs a topic name", sub);
    if (!needs_name && npos) return cli_err(CLI_USAGE, "topic list takes no arguments");
    if (strcmp(sub, "delete") && npos > 1)
        return cli_err(CLI_USAGE, "topic %s takes one topic name", sub);
    /* create without -p/-r: -1 asks the broker for its defaults (CreateTopics v4+) */
    if (!strcmp(sub, "create") && ((parts_given && (parts < 1 || parts > INT32_MAX)) ||
                                   (rf != -1 && (rf < 1 || rf > 32767))))
        return cli_err(CLI_USAGE, "-p and -r must be >= 1");
    if (!strcmp(sub, "add-partitions") && total < 1)
        return cli_err(CLI_USAGE, "add-partitions needs -n TOTAL (the new partition count)");
    if (!strcmp(sub, "consume") && o.format == CLI_FMT_TABLE && o.format_s)
        return cli_err(CLI_USAGE, "consume --format is text or json");
    if (from && strcmp(from, "beginning") && strcmp(from, "end")) {
        char *end;
        const char *num = from[0] == '@' ? from + 1 : from;
        long long v = strtoll(num, &end, 10);
        if (*end || end == num || v < 0)
            return cli_err(CLI_USAGE, "--offset must be beginning, end, a number or @MS, "
                           "not '%s'", from);
    }
    int64_t one_part = parts_given ? parts : -1;
    if ((!strcmp(sub, "produce") || !strcmp(sub, "consume")) && parts_given && parts < 0)
        return cli_err(CLI_USAGE, "-p must be a partition number >= 0");

    cli_kafka k;
    rc = cli_kafka_open(&k, &o);
    if (rc) goto out;
    if (!strcmp(sub, "create")) rc = topic_create(&k, pos[0], parts_given ? parts : -1, rf, &cfg);
    else if (!strcmp(sub, "list")) rc = topic_list(&k);
    else if (!strcmp(sub, "describe")) rc = topic_describe(&k, pos[0]);
    else if (!strcmp(sub, "delete")) rc = topic_delete(&k, pos, npos);
    else if (!strcmp(sub, "alter-config")) rc = topic_alter_config(&k, pos[0], &set, &del);
    else if (!strcmp(sub, "add-partitions")) rc = topic_add_partitions(&k, pos[0], total);
    else if (!strcmp(sub, "produce"))
        rc = topic_produce(&k, pos[0], file, ksep, &hdrs, acks, comp, one_part, progress);
    else rc = topic_consume(&k, &o, pos[0], from, follow, total, one_part,
                            (print_key ? SHOW_KEY : 0) | (print_hdrs ? SHOW_HEADERS : 0));
out:
    cli_kafka_close(&k);
    return rc;
}
