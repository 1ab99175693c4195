/*
 * gen_kafka_seeds.c — writes the seed corpora of the Kafka codec fuzzers: for every API, a
 * valid request and response encoding (from the generated test filler) in its lowest, middle
 * and highest version, framed as [api_key:2][version:2][body]. Not a fuzz target; build and run:
 *   cc -std=gnu17 -Isrc -Isrc/kafka/gen -D_GNU_SOURCE -msse4.2 -o /tmp/gen_kafka_seeds
 *      tests/fuzz/gen_kafka_seeds.c src/kafka/codec.c src/kafka/codec_table.c \
 *      src/kafka/gen/kafka_codec_*.c \
 *      src/base/base.c src/base/log.c src/base/crc32c.c -lm
 *   /tmp/gen_kafka_seeds tests/fuzz/corpus
 * Deterministic (fixed seed), so regenerating gives the same files.
 */
#include "kafka_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int write_seed(const char *dir, const struct kafka_msg_desc *d, int16_t v)
{
    kafka_arena a;
    kafka_arena_init(&a, 16u << 20);
    void *m = calloc(1, d->struct_size);
    if (!m) return -1;
    kafka_filler f = {.rng = 0x5eed0000u + (uint64_t)d->api_key * 100 + (uint64_t)v,
                      .arena = &a, .tagged = true, .nulls = true, .max_count = 2};
    kafka_msg_fill_test(d, m, v, &f);
    size_t n = d->size(v, m);
    uint8_t *buf = malloc(n + 4);
    if (!buf) return -1;
    buf[0] = (uint8_t)(d->api_key >> 8);
    buf[1] = (uint8_t)d->api_key;
    buf[2] = (uint8_t)(v >> 8);
    buf[3] = (uint8_t)v;
    al_wr wr = al_wr_make(buf + 4, n);
    int rc = d->encode(&wr, v, m);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s_v%d", dir, d->name, v);
    FILE *fp = rc ? NULL : fopen(path, "wb");
    if (fp) {
        rc = fwrite(buf, 1, n + 4, fp) == n + 4 ? 0 : -1;
        if (fclose(fp)) rc = -1;
    } else {
        rc = -1;
    }
    free(buf);
    free(m);
    kafka_arena_free(&a);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_kafka_seeds CORPUS_DIR\n");
        return 2;
    }
    char req[400], resp[400];
    snprintf(req, sizeof(req), "%s/fuzz_kafka_request", argv[1]);
    snprintf(resp, sizeof(resp), "%s/fuzz_kafka_response", argv[1]);
    mkdir(req, 0755);
    mkdir(resp, 0755);
    int files = 0;
    for (size_t i = 0; i < kafka_msg_desc_count; i++) {
        const struct kafka_msg_desc *d = &kafka_msg_descs[i];
        const char *dir = !strcmp(d->kind, "request") ? req
                          : !strcmp(d->kind, "response") ? resp : NULL;
        if (!dir) continue;
        int16_t vs[3] = {d->min_version, (int16_t)((d->min_version + d->max_version) / 2),
                         d->max_version};
        for (int k = 0; k < 3; k++) {
            if (k > 0 && vs[k] == vs[k - 1]) continue;
            if (write_seed(dir, d, vs[k])) {
                fprintf(stderr, "could not write a seed for %s v%d\n", d->name, vs[k]);
                return 1;
            }
            files++;
        }
    }
    printf("%d seed files\n", files);
    return 0;
}
