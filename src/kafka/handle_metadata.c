/*
 * handle_metadata.c — the Metadata handler (API key 3, v0-12) for a broker without a data
 * plane: the broker list (this node at its advertised address), cluster id, controller id
 * (this node) and the topics asked for, all unknown. The data-plane handler
 * (handler_topics.c) answers with the topic table and uses the cluster-mode helpers here:
 * the broker list and controller from the node service's view (src/cluster/cluster.h), and
 * each partition's replicas from its stored assignment.
 *
 * Versions 10+ carry topic ids; advertising them is correct only while every topic listed has
 * a real (non-zero) id: whoever adds the topic table must fill TopicId.
 */
#include "kafka/handlers.h"

#include "base/log.h"
#include "cluster/partition_raft.h"
#include "cluster/cluster.h"

#include <stdlib.h>

/* The view's brokers as Kafka sees them: live ACTIVE and DRAINING nodes (decommissioning and
 * removed ones are leaving; a node not heard from within CLUSTER_LIVENESS_MS is down: Kafka
 * lists only registered, unfenced brokers, and its partitions name it in replicas only). */
static bool md_listed(const cluster_view_broker *b)
{
    return b->alive && (b->membership == CONTROLLER_NODE_ACTIVE ||
                        b->membership == CONTROLLER_NODE_DRAINING);
}

int kafka_cluster_brokers(kafka_req *req, kafka_str_broker_fn fill, void *out, int32_t *n_out,
                          int32_t *controller)
{
    int max = cluster_view_brokers(NULL, 0, NULL, NULL); /* size first: usually a few */
    if (max < 0) return 0;
    max = AL_MIN(max + 4, CLUSTER_VIEW_MAX);
    cluster_view_broker *v = malloc(sizeof(*v) * (size_t)max);
    if (!v) return -ENOMEM;
    int n = cluster_view_brokers(v, max, controller, NULL);
    if (n < 0) {
        free(v);
        return 0;
    }
    n = AL_MIN(n, max);
    int32_t k = 0;
    for (int i = 0; i < n; i++) {
        if (!md_listed(&v[i])) continue;
        size_t hl = strlen(v[i].kafka_host), rl = strlen(v[i].rack);
        char *host = kafka_arena_alloc(&req->arena, hl + 1);
        char *rack = rl ? kafka_arena_alloc(&req->arena, rl + 1) : NULL;
        if (!host || (rl && !rack)) {
            free(v);
            return -ENOMEM;
        }
        memcpy(host, v[i].kafka_host, hl + 1);
        if (rl) memcpy(rack, v[i].rack, rl + 1);
        fill(out, k++, v[i].node_id, (kafka_str){host, (int32_t)hl}, v[i].kafka_port,
             rl ? (kafka_str){rack, (int32_t)rl} : (kafka_str){NULL, -1});
    }
    free(v);
    *n_out = k;
    return 1;
}

static void md_fill_broker(void *out, int32_t i, int32_t id, kafka_str host, uint16_t port,
                           kafka_str rack)
{
    kafka_MetadataResponse_MetadataResponseBroker *b =
        &((kafka_MetadataResponse_MetadataResponseBroker *)out)[i];
    kafka_MetadataResponse_MetadataResponseBroker_init(b);
    b->NodeId = id;
    b->Host = host;
    b->Port = port;
    b->Rack = rack;
}

int kafka_metadata_cluster_brokers(kafka_req *req, kafka_MetadataResponse *out)
{
    if (!cluster_active()) return 0;
    kafka_MetadataResponse_MetadataResponseBroker *brk =
        kafka_arena_alloc(&req->arena, sizeof(*brk) * CLUSTER_VIEW_MAX);
    if (!brk) return -ENOMEM;
    int32_t n = 0, controller = -1;
    int rc = kafka_cluster_brokers(req, md_fill_broker, brk, &n, &controller);
    if (rc <= 0) return rc;
    out->Brokers = brk;
    out->Brokers_count = n;
    out->ControllerId = controller;
    return 1;
}

int kafka_metadata_partition(kafka_req *req, const topic *t, int32_t p,
                             kafka_MetadataResponse_MetadataResponsePartition *out)
{
    if (!t->assign) return 0;
    const topic_assignment *a = &t->assign[p];
    int32_t *nodes = kafka_arena_alloc(&req->arena, sizeof(int32_t) * (size_t)a->n);
    int32_t *offline = kafka_arena_alloc(&req->arena, sizeof(int32_t) * (size_t)AL_MAX(a->n, 1));
    if (!nodes || !offline) return -ENOMEM;
    int32_t n_off = 0;
    for (int i = 0; i < a->n; i++) {
        nodes[i] = a->nodes[i];
        if (!cluster_node_alive(a->nodes[i])) offline[n_off++] = a->nodes[i]; /* as Kafka */
    }
    out->ErrorCode = 0;
    out->PartitionIndex = p;
    out->ReplicaNodes_count = a->n;
    out->ReplicaNodes = nodes;
    out->OfflineReplicas_count = n_off;
    out->OfflineReplicas = n_off ? offline : NULL;
    /* Leader, epoch (= Raft term) and ISR from the node's leadership table; a leader that is
     * down here is not offered (clients would look for a broker the list does not have). */
    ldr_entry e;
    bool found = pr_leader_lookup(cluster_group_id(t->id, p), &e);
    if (!found || e.leader < 0 || !cluster_node_alive(e.leader)) {
        out->ErrorCode = KAFKA_ERR_LEADER_NOT_AVAILABLE; /* election: clients ask again */
        out->LeaderId = -1;
        out->LeaderEpoch = -1;
        out->IsrNodes_count = 0;
        out->IsrNodes = NULL;
        return 1;
    }
    int32_t *isr = kafka_arena_alloc(&req->arena, sizeof(int32_t) * (size_t)AL_MAX(e.n_isr, 1));
    if (!isr) return -ENOMEM;
    int32_t n_isr = 0;
    if (e.n_isr == 0) isr[n_isr++] = e.leader; /* only the leader's own report has the ISR */
    for (int i = 0; i < e.n_isr; i++) /* a replica down here is out of sync for clients */
        if (e.isr[i] == e.leader || cluster_node_alive(e.isr[i])) isr[n_isr++] = e.isr[i];
    out->LeaderId = e.leader;
    out->LeaderEpoch = (int32_t)e.term;
    out->IsrNodes_count = n_isr;
    out->IsrNodes = isr;
    return 1;
}

int kafka_handle_metadata(kafka_req *req)
{
    const kafka_MetadataRequest *in = req->msg;
    const struct kafka_broker *b = req->broker;
    kafka_MetadataResponse out;
    kafka_MetadataResponse_init(&out);

    kafka_MetadataResponse_MetadataResponseBroker *brk =
        kafka_arena_alloc(&req->arena, sizeof(*brk));
    if (!brk) return -ENOMEM;
    kafka_MetadataResponse_MetadataResponseBroker_init(brk);
    brk->NodeId = b->node_id;
    brk->Host = kafka_str_from(b->advertised_host);
    brk->Port = b->advertised_port;
    brk->Rack.ptr = NULL;
    brk->Rack.len = -1;
    out.ThrottleTimeMs = 0;
    out.Brokers_count = 1;
    out.Brokers = brk;
    out.ClusterId = kafka_str_from(b->cluster_id);
    out.ControllerId = b->node_id;

    /* Topics asked for: null (v1+) or empty (v0) means all, of which there are none. */
    int32_t n = in->Topics_count;
    out.Topics_count = 0;
    if (n > 0) {
        kafka_MetadataResponse_MetadataResponseTopic *t =
            kafka_arena_alloc(&req->arena, (size_t)n * sizeof(*t));
        if (!t) return -ENOMEM;
        for (int32_t i = 0; i < n; i++) {
            const kafka_MetadataRequest_MetadataRequestTopic *q = &in->Topics[i];
            kafka_MetadataResponse_MetadataResponseTopic_init(&t[i]);
            if (q->Name.len < 0) {
                /* v10+: by topic id. v10-11 cannot return a null name; use "". */
                t[i].ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_ID;
                t[i].TopicId = q->TopicId;
                if (req->api_version >= 12) t[i].Name = q->Name;
                else t[i].Name = kafka_str_from("");
            } else {
                t[i].ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
                t[i].Name = q->Name;
            }
            t[i].Partitions_count = 0;
        }
        out.Topics_count = n;
        out.Topics = t;
    }
    int rc = kafka_req_respond(req, &out);
    return rc < 0 ? rc : KAFKA_DONE;
}
