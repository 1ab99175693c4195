/*
 * kafka_fuzz_common.h — shared body of the Kafka codec fuzzers (fuzz_kafka_request.c,
 * fuzz_kafka_response.c). Input: [api_key:2][version:2][body], big-endian. The body is decoded
 * with an arena limit; if it decodes, it must re-encode (with encode length == size()) and
 * decode again to an equal message with nothing left over, and print as JSON (to /dev/null).
 * Any difference aborts.
 */
#ifndef KAFKA_FUZZ_COMMON_H
#define KAFKA_FUZZ_COMMON_H

#include "kafka_codec.h"

#include <stdio.h>
#include <stdlib.h>

#define KAFKA_FUZZ_ARENA_LIMIT (4u << 20)

typedef int (*kafka_fuzz_decode_fn)(int16_t, int16_t, al_rd *, void *, kafka_arena *);
typedef int (*kafka_fuzz_encode_fn)(int16_t, int16_t, al_wr *, const void *);
typedef size_t (*kafka_fuzz_size_fn)(int16_t, int16_t, const void *);
typedef bool (*kafka_fuzz_equal_fn)(int16_t, const void *, const void *);
typedef size_t (*kafka_fuzz_struct_size_fn)(int16_t);
typedef const struct kafka_msg_desc *(*kafka_fuzz_desc_fn)(int16_t);

/* Runs one input through decode / encode / decode; aborts on any broken property. */
static inline int kafka_fuzz_one(const uint8_t *data, size_t size,
                                 kafka_fuzz_struct_size_fn struct_size,
                                 kafka_fuzz_decode_fn decode, kafka_fuzz_encode_fn encode,
                                 kafka_fuzz_size_fn msize, kafka_fuzz_equal_fn equal,
                                 kafka_fuzz_desc_fn desc)
{
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    if (size < 4) return 0;
    int16_t key = (int16_t)al_be16(data), version = (int16_t)al_be16(data + 2);
    size_t ss = struct_size(key);
    const struct kafka_api_info *info = kafka_api_info(key);
    if (!ss || !info) return 0;
    void *msg = calloc(1, ss), *again = calloc(1, ss);
    uint8_t *buf = NULL;
    if (!msg || !again) abort();
    /* Kept across inputs and reset, as a connection would use them. */
    static kafka_arena a1, a2;
    static bool inited;
    if (!inited) {
        kafka_arena_init(&a1, KAFKA_FUZZ_ARENA_LIMIT);
        kafka_arena_init(&a2, KAFKA_FUZZ_ARENA_LIMIT);
        inited = true;
    }
    kafka_arena_reset(&a1);
    kafka_arena_reset(&a2);
    al_rd rd = al_rd_make(data + 4, size - 4);
    int rc = decode(key, version, &rd, msg, &a1);
    if (rc == 0) {
        if (version < info->min_version || version > info->max_version) abort();
        size_t n = msize(key, version, msg);
        buf = malloc(n ? n : 1);
        if (!buf) abort();
        al_wr wr = al_wr_make(buf, n);
        rc = encode(key, version, &wr, msg);
        if (rc != 0 || (size_t)(wr.p - buf) != n) {
            fprintf(stderr, "re-encode failed: key %d v%d rc %d len %zu size %zu\n", key,
                    version, rc, (size_t)(wr.p - buf), n);
            abort();
        }
        al_rd rd2 = al_rd_make(buf, n);
        rc = decode(key, version, &rd2, again, &a2);
        if (rc != 0 || al_rd_left(&rd2) != 0 || !equal(key, msg, again)) {
            fprintf(stderr, "re-decode differs: key %d v%d rc %d\n", key, version, rc);
            abort();
        }
        if (devnull) kafka_struct_print_json(devnull, desc(key)->desc, version, again);
    }
    free(buf);
    free(msg);
    free(again);
    return 0;
}

#endif
