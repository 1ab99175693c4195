/*
 * fuzz_group_records.c — libFuzzer target for the __consumer_offsets record decoders and the
 * group coordinator's loader. Input: a sequence of records [key_len:2][key][value_len:2][value]
 * (value_len 0xffff = tombstone). Each key and value goes through the decoders directly
 * (a version-3 OffsetCommit value that decodes must re-encode to the same bytes, a
 * version-3 GroupMetadata value must survive encode/decode/encode unchanged; the consumer
 * subscription parser sees every value too), then the whole sequence is replayed into a
 * coordinator, which must come out usable (describe, list, fetch, join, tick).
 * Seeds: tests/fuzz/corpus/fuzz_group_records/.
 */
#include <stdlib.h>

#include "base/log.h"
#include "coord/group.h"
#include "coord/group_records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_value(const uint8_t *v, size_t n)
{
    group_subscription_topics(v, n, NULL, NULL);
    struct group_record_offset o;
    if (group_offset_value_decode(v, n, &o) == 0 && n >= 2 && v[0] == 0 && v[1] == 3 &&
        o.metadata.len >= 0) {
        char meta[65536];
        AL_ASSERT((size_t)o.metadata.len < sizeof(meta));
        memcpy(meta, o.metadata.p, (size_t)o.metadata.len);
        meta[o.metadata.len] = 0;
        if (strlen(meta) == (size_t)o.metadata.len) {
            uint8_t *b = malloc(n);
            int k = group_offset_value_encode(b, n, o.offset, o.leader_epoch, meta, o.commit_ts);
            AL_ASSERT(k > 0 && (size_t)k <= n && memcmp(b, v, (size_t)k) == 0);
            free(b);
        }
    }
    int32_t cnt = group_metadata_value_count(v, n);
    if (cnt >= 0 && cnt <= 1000) {
        struct group_record_member *mm = calloc((size_t)cnt + 1, sizeof(*mm));
        struct group_record_meta m;
        if (group_metadata_value_decode(v, n, &m, mm, cnt) == 0 && v[0] == 0 && v[1] == 3 &&
            m.protocol_type.len >= 0) {
            bool sane = true;
            for (int32_t i = 0; i < cnt; i++)
                if (mm[i].subscription_len < 0 || mm[i].assignment_len < 0) sane = false;
            if (sane) {
                /* a null member array re-encodes as empty, so compare encode(decode(encode)) */
                uint8_t *b = malloc(n), *b2 = malloc(n);
                int k = group_metadata_value_encode(b, n, &m);
                AL_ASSERT(k > 0 && (size_t)k <= n);
                struct group_record_meta m2;
                AL_ASSERT(group_metadata_value_decode(b, (size_t)k, &m2, mm, cnt) == 0);
                int k2 = group_metadata_value_encode(b2, n, &m2);
                AL_ASSERT(k2 == k && memcmp(b, b2, (size_t)k) == 0);
                free(b);
                free(b2);
            }
        }
        free(mm);
    }
}

static void on_join(void *arg, const struct group_join_result *r) { (void)arg, (void)r; }
static void on_desc(void *arg, const struct group_description *d) { (void)arg, (void)d; }
static void on_list(void *arg, const char *g, const char *p, const char *s)
{
    (void)arg, (void)p, (void)s;
    AL_ASSERT(g != NULL);
}
static void on_off(void *arg, const char *t, int32_t p, int64_t o, int32_t e, const char *m)
{
    (void)arg, (void)t, (void)p, (void)o, (void)e;
    AL_ASSERT(m != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    al_log_set_level(AL_LOG_OFF);
    struct group_config cfg;
    group_config_defaults(&cfg);
    cfg.initial_rebalance_delay_ms = 0;
    struct group_coordinator c;
    group_coordinator_init(&c, &cfg, NULL, NULL, 1);
    char first_group[64] = "g";
    size_t off = 0;
    for (int rec = 0; rec < 256 && size - off >= 4; rec++) {
        size_t kl = (size_t)data[off] << 8 | data[off + 1];
        off += 2;
        if (kl > size - off) break;
        const uint8_t *key = data + off;
        off += kl;
        if (size - off < 2) break;
        size_t vl = (size_t)data[off] << 8 | data[off + 1];
        off += 2;
        const uint8_t *val = NULL;
        if (vl != 0xffff) {
            if (vl > size - off) break;
            val = data + off;
            off += vl;
            check_value(val, vl);
        }
        struct group_record_key k;
        if (group_key_decode(key, kl, &k) == 0 && k.kind != GROUP_KEY_KIND_OTHER && rec == 0 &&
            (size_t)k.group.len < sizeof(first_group)) {
            memcpy(first_group, k.group.p, (size_t)k.group.len);
            first_group[k.group.len] = 0;
        }
        group_coordinator_load(&c, key, kl, val, vl == 0xffff ? 0 : vl, 0);
    }
    group_coordinator_load_done(&c, 0);
    group_describe(&c, first_group, 6, on_desc, NULL);
    group_list(&c, NULL, 0, on_list, NULL);
    group_fetch_all_offsets(&c, first_group, on_off, NULL);
    if (first_group[0] && strlen(first_group) == strnlen(first_group, sizeof(first_group))) {
        struct group_protocol p = {"range", (const uint8_t *)"", 0};
        struct group_join_request req = {first_group, "", NULL, "c", "h", 10000, 10000,
                                         "consumer", 1, &p, false, false};
        group_join(&c, &req, 1, on_join, NULL);
    }
    group_coordinator_tick(&c, 1);
    group_coordinator_tick(&c, 3600000);
    group_coordinator_destroy(&c);
    return 0;
}
