/*
 * fuzz_kafka_frame.c — libFuzzer target for the connection's receive path without sockets:
 * the input is a byte stream as a client would send it. It is cut into frames exactly as a
 * connection does (net_frame_next, max 1 MiB), and every frame is dispatched through
 * kafka_dispatch (API/version checks, header and body decoding, ApiVersions/Metadata handlers,
 * responses encoded). Checked: no crash or sanitizer error; every request completes exactly
 * once; a successful response frame's size prefix matches its length and carries the request's
 * correlation id; a failed request produces no bytes. APIs whose handlers need the data plane
 * (a running shard) are only peeked and header-decoded, not dispatched.
 */
#include "config/config.h"
#include "kafka/request.h"
#include "net/frame.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int done_count;

static void on_done(kafka_req *r)
{
    (void)r;
    done_count++;
}

static bool dispatchable(int16_t key)
{
    return key == KAFKA_API_API_VERSIONS || key == KAFKA_API_METADATA ||
           !kafka_handler_find(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static al_config cfg;
    static struct kafka_broker broker;
    static bool init;
    if (!init) {
        config_init(&cfg);
        broker.cfg = &cfg;
        broker.advertised_host = "127.0.0.1";
        broker.advertised_port = 9092;
        broker.cluster_id = "fuzz";
        init = true;
    }
    size_t pos = 0;
    for (int n = 0; n < 10000 && pos < size; n++) {
        int32_t fsize;
        int64_t whole = net_frame_next(data + pos, size - pos, 1 << 20, &fsize);
        if (whole <= 0) break; /* needs more, or a bad prefix: the connection would close */
        if (whole != 4 + (int64_t)fsize) abort();
        uint8_t *frame = malloc(fsize ? (size_t)fsize : 1);
        if (!frame) abort();
        memcpy(frame, data + pos + 4, (size_t)fsize);
        pos += (size_t)whole;
        kafka_req *r = kafka_req_new(frame, (size_t)fsize);
        if (!r) abort();
        r->broker = &broker;
        r->on_done = on_done;
        int16_t key, ver;
        int32_t corr;
        if (kafka_req_peek(frame, (size_t)fsize, &key, &ver, &corr) == 0 && !dispatchable(key)) {
            al_rd rd = al_rd_make(frame, (size_t)fsize);
            kafka_RequestHeader h;
            int16_t hv = kafka_request_header_version(key, ver);
            if (hv >= 0 && hv <= 2) (void)kafka_RequestHeader_decode(&rd, hv, &h, &r->arena);
            kafka_req_free(r);
            continue;
        }
        done_count = 0;
        kafka_dispatch(r);
        if (r->state != KAFKA_REQ_DONE || done_count != 1) abort();
        if (r->fail) {
            if (r->resp) abort();
            kafka_req_free(r);
            break; /* the connection closes */
        }
        if (!r->resp || r->resp_len < 8) abort();
        if (al_be32(r->resp) != r->resp_len - 4) abort();
        if ((int32_t)al_be32(r->resp + 4) != r->correlation_id) abort();
        kafka_req_free(r);
    }
    return 0;
}
