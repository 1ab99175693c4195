/*
 * handle_metadata.c — the Metadata handler (API key 3, v0-12): the broker list (this node at
 * its advertised address), cluster id, controller id (this node) and the topics asked for.
 * There is no topic table yet, so every named topic is unknown and "all topics" is empty.
 *
 * Versions 10+ carry topic ids; advertising them is correct only while every topic listed has
 * a real (non-zero) id: whoever adds the topic table must fill TopicId.
 */
#include "kafka/handlers.h"

#include "base/log.h"

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
