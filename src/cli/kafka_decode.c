/*
 * kafka_decode.c — `ailurus kafka-decode FILE` (hidden tool): reads one size-prefixed Kafka
 * request frame from FILE, decodes the request header and body with the generated codec and
 * prints a one-line JSON summary. Exit 0 when the frame decodes completely (no bytes left over),
 * 1 when it does not, 2 on bad usage. Used by tests/integration/test_capture.py on frames
 * captured from real clients.
 *
 *
 * `ailurus kafka-decode --fill request|response KEY VERSION SEED FILE` (test support) fills a
 * message of that kind with the codec's pseudo-random test filler (no nulls, no tagged
 * fields), writes its encoded body to FILE and prints the body as JSON, so tests can decode our
 * bytes with another Kafka implementation and compare.
 *
 * Output: {"ok":true,"api_key":18,"api_name":"ApiVersions","api_version":3,
 *          "header_version":2,"correlation_id":1,"client_id":"rdkafka","body_bytes":19,
 *          "fields":{...a few per-API fields...},"body":{...every field of the body...}}
 * or      {"ok":false,"error":"..."}.
 */
#include "cli/commands.h"
#include "kafka_codec.h"

#include <stdio.h>
#include <stdlib.h>

#define KAFKA_DECODE_MAX_FRAME (64u << 20)

/* Prints s as a JSON string (null for a null kafka_str). */
static void kd_print_str(FILE *out, kafka_str s)
{
    if (s.len < 0) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (int32_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f) fprintf(out, "\\u%04x", c);
        else fputc(c, out);
    }
    fputc('"', out);
}

static int kd_fail(const char *what, int err)
{
    printf("{\"ok\":false,\"error\":\"%s%s%s\"}\n", what, err ? ": " : "",
           err ? al_strerror(err) : "");
    return CLI_FAILED;
}

/* Reads the whole file (at most KAFKA_DECODE_MAX_FRAME + 4 bytes) into a malloc'd buffer. */
static uint8_t *kd_read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
        if (n == cap) {
            if (cap > KAFKA_DECODE_MAX_FRAME) break;
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(fp);
    *len = n;
    return buf;
}

/* A few recognisable fields per API, for tests that compare with what the client was told. */
static void kd_print_fields(int16_t key, const void *body)
{
    printf(",\"fields\":{");
    if (key == KAFKA_API_API_VERSIONS) {
        const kafka_ApiVersionsRequest *r = body;
        printf("\"ClientSoftwareName\":");
        kd_print_str(stdout, r->ClientSoftwareName);
        printf(",\"ClientSoftwareVersion\":");
        kd_print_str(stdout, r->ClientSoftwareVersion);
    } else if (key == KAFKA_API_METADATA) {
        const kafka_MetadataRequest *r = body;
        printf("\"Topics\":");
        if (r->Topics_count < 0) {
            printf("null");
        } else {
            printf("[");
            for (int32_t i = 0; i < r->Topics_count; i++) {
                if (i) printf(",");
                kd_print_str(stdout, r->Topics[i].Name);
            }
            printf("]");
        }
        printf(",\"AllowAutoTopicCreation\":%s", r->AllowAutoTopicCreation ? "true" : "false");
    } else if (key == KAFKA_API_PRODUCE) {
        const kafka_ProduceRequest *r = body;
        printf("\"Acks\":%d,\"TimeoutMs\":%d,\"Topics\":%d", r->Acks, r->TimeoutMs,
               r->TopicData_count);
    } else if (key == KAFKA_API_FIND_COORDINATOR) {
        const kafka_FindCoordinatorRequest *r = body;
        printf("\"Key\":");
        kd_print_str(stdout, r->Key);
    }
    printf("}");
}

/* --fill: see the file comment. Returns the exit code. */
static int kd_fill(int argc, char **argv)
{
    if (argc != 7) return CLI_USAGE;
    bool resp = !strcmp(argv[2], "response");
    if (!resp && strcmp(argv[2], "request")) return CLI_USAGE;
    int16_t key = (int16_t)atoi(argv[3]), ver = (int16_t)atoi(argv[4]);
    const struct kafka_msg_desc *d = resp ? kafka_response_desc(key) : kafka_request_desc(key);
    if (!d) return kd_fail("unknown api key", 0);
    if (ver < d->min_version || ver > d->max_version) return kd_fail("bad version", 0);
    int rc = CLI_FAILED;
    kafka_arena arena;
    kafka_arena_init(&arena, 64u << 20);
    kafka_filler f = {.rng = strtoull(argv[5], NULL, 0), .arena = &arena, .tagged = false,
                      .nulls = false, .max_count = 2};
    void *msg = calloc(1, d->struct_size);
    uint8_t *buf = NULL;
    if (!msg) goto out;
    kafka_msg_fill_test(d, msg, ver, &f);
    size_t n = d->size(ver, msg);
    buf = malloc(n ? n : 1);
    if (!buf) goto out;
    al_wr wr = al_wr_make(buf, n);
    int err = d->encode(&wr, ver, msg);
    if (err) {
        rc = kd_fail("encode", err);
        goto out;
    }
    FILE *fp = fopen(argv[6], "wb");
    if (!fp) {
        rc = kd_fail("cannot write the file", 0);
        goto out;
    }
    bool ok = fwrite(buf, 1, n, fp) == n;
    if (fclose(fp) || !ok) {
        rc = kd_fail("cannot write the file", 0);
        goto out;
    }
    kafka_struct_print_json(stdout, d->desc, ver, msg);
    printf("\n");
    rc = CLI_OK;
out:
    free(buf);
    free(msg);
    kafka_arena_free(&arena);
    return rc;
}

int cmd_kafka_decode(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--fill")) {
        int rc = kd_fill(argc, argv);
        if (rc == CLI_USAGE)
            fprintf(stderr, "usage: ailurus kafka-decode --fill request|response KEY VERSION "
                            "SEED FILE\n");
        return rc;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: ailurus kafka-decode FILE\n"
                        "  FILE holds one request frame: int32 size, header, body\n");
        return CLI_USAGE;
    }
    int rc = CLI_FAILED;
    size_t len = 0;
    void *body = NULL;
    kafka_arena arena;
    kafka_arena_init(&arena, 64u << 20);
    uint8_t *buf = kd_read_file(argv[1], &len);
    if (!buf) return kd_fail("cannot read the file", 0);
    if (len < 4 || al_be32(buf) != len - 4) {
        rc = kd_fail("the file is not one size-prefixed frame", 0);
        goto out;
    }
    al_rd rd = al_rd_make(buf + 4, len - 4);
    if (len < 8) {
        rc = kd_fail("frame too short for a request header", 0);
        goto out;
    }
    int16_t key = (int16_t)al_be16(buf + 4), ver = (int16_t)al_be16(buf + 6);
    const struct kafka_api_info *info = kafka_api_info(key);
    if (!info) {
        rc = kd_fail("unknown api key", 0);
        goto out;
    }
    int16_t hv = kafka_request_header_version(key, ver);
    kafka_RequestHeader h;
    int err = kafka_RequestHeader_decode(&rd, hv, &h, &arena);
    if (err) {
        rc = kd_fail("request header", err);
        goto out;
    }
    size_t body_bytes = al_rd_left(&rd);
    body = calloc(1, kafka_request_struct_size(key));
    if (!body) {
        rc = kd_fail("out of memory", 0);
        goto out;
    }
    err = kafka_request_decode(key, ver, &rd, body, &arena);
    if (err) {
        rc = kd_fail("request body", err);
        goto out;
    }
    if (al_rd_left(&rd) != 0) {
        rc = kd_fail("bytes left over after the body", 0);
        goto out;
    }
    printf("{\"ok\":true,\"api_key\":%d,\"api_name\":\"%s\",\"api_version\":%d,"
           "\"header_version\":%d,\"correlation_id\":%d,\"client_id\":",
           key, info->name, ver, hv, h.CorrelationId);
    kd_print_str(stdout, h.ClientId);
    printf(",\"body_bytes\":%zu", body_bytes);
    kd_print_fields(key, body);
    printf(",\"body\":");
    kafka_struct_print_json(stdout, kafka_request_desc(key)->desc, ver, body);
    printf("}\n");
    rc = CLI_OK;
out:
    free(body);
    free(buf);
    kafka_arena_free(&arena);
    return rc;
}
