/*
 * handle_api_versions.c — the ApiVersions handler (API key 18, v0-3): advertises the handler
 * table (src/kafka/dispatch.c), so clients negotiate exactly what is implemented.
 */
#include "kafka/handlers.h"

#include "base/log.h"

static bool software_char_ok(char c, bool edge)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return !edge && (c == '-' || c == '.');
}

bool kafka_software_str_valid(kafka_str s)
{
    if (s.len <= 0 || !s.ptr) return false;
    for (int32_t i = 0; i < s.len; i++)
        if (!software_char_ok(s.ptr[i], i == 0 || i == s.len - 1)) return false;
    return true;
}

int kafka_handle_api_versions(kafka_req *req)
{
    const kafka_ApiVersionsRequest *in = req->msg;
    kafka_ApiVersionsResponse out;
    kafka_ApiVersionsResponse_init(&out);
    if (req->api_version >= 3 && (!kafka_software_str_valid(in->ClientSoftwareName) ||
                                  !kafka_software_str_valid(in->ClientSoftwareVersion))) {
        log_debug("kafka", "ApiVersions v%d: invalid client software name/version",
                  req->api_version);
        out.ErrorCode = KAFKA_ERR_INVALID_REQUEST;
        out.ApiKeys_count = 0;
        int rc = kafka_req_respond(req, &out);
    return rc < 0 ? rc : KAFKA_DONE;
    }
    size_t n = kafka_handler_count;
    kafka_ApiVersionsResponse_ApiVersion *keys =
        kafka_arena_alloc(&req->arena, n * sizeof(*keys));
    if (!keys) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        kafka_ApiVersionsResponse_ApiVersion k = {0};
        k.ApiKey = kafka_handlers[i].api_key;
        k.MinVersion = kafka_handlers[i].min_version;
        k.MaxVersion = kafka_handlers[i].max_version;
        size_t j = i; /* insertion sort by key: Kafka lists keys in order */
        while (j > 0 && keys[j - 1].ApiKey > k.ApiKey) {
            keys[j] = keys[j - 1];
            j--;
        }
        keys[j] = k;
    }
    out.ErrorCode = KAFKA_ERR_NONE;
    out.ApiKeys_count = (int32_t)n;
    out.ApiKeys = keys;
    out.ThrottleTimeMs = 0;
    int rc = kafka_req_respond(req, &out);
    return rc < 0 ? rc : KAFKA_DONE;
}
