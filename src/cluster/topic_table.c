/*
 * topic_table.c — the topic catalogue (see topic_table.h): a name-sorted array of topics with
 * binary search, JSON persistence (jansson) behind a checksummed header line, replica
 * assignments (optional per topic: "assignments": [[[node, shard], ...], ...] in the JSON), and
 * the partition -> shard mapping (jump consistent hash).
 */
#include "cluster/topic_table.h"

#include "base/crc32c.h"
#include "base/log.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#define TOPIC_FILE_NAME  "topics.json"
#define TOPIC_FILE_MAGIC "ailurus-topics 1"

bool topic_name_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > TOPIC_NAME_MAX) return false;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

int topic_table_init(topic_table *tt, io *ioh, const char *data_dir)
{
    memset(tt, 0, sizeof(*tt));
    tt->io = ioh;
    if (data_dir) {
        int n = snprintf(tt->path, sizeof(tt->path), "%s/%s", data_dir, TOPIC_FILE_NAME);
        if (n < 0 || (size_t)n >= sizeof(tt->path)) return -ENAMETOOLONG;
    }
    return 0;
}

static void topic_destroy(topic *t)
{
    if (!t) return;
    free(t->configs);
    free(t->assign);
    free(t);
}

void topic_table_free(topic_table *tt)
{
    for (int32_t i = 0; i < tt->n; i++) topic_destroy(tt->topics[i]);
    free(tt->topics);
    tt->topics = NULL;
    tt->n = tt->cap = 0;
}

/* Binary search: returns the index of name, or -(insertion point) - 1. */
static int32_t table_search(const topic_table *tt, const char *name, size_t len)
{
    int32_t lo = 0, hi = tt->n - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        const char *m = tt->topics[mid]->name;
        size_t mlen = strlen(m);
        int c = memcmp(m, name, AL_MIN(mlen, len));
        if (c == 0) c = (mlen > len) - (mlen < len);
        if (c == 0) return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -lo - 1;
}

const topic *topic_table_find(const topic_table *tt, const char *name, size_t len)
{
    if (!name) return NULL;
    int32_t i = table_search(tt, name, len);
    return i >= 0 ? tt->topics[i] : NULL;
}

const topic *topic_table_find_id(const topic_table *tt, const uint8_t id[16])
{
    static const uint8_t zero[16];
    if (!memcmp(id, zero, 16)) return NULL;
    for (int32_t i = 0; i < tt->n; i++)
        if (!memcmp(tt->topics[i]->id, id, 16)) return tt->topics[i];
    return NULL;
}

static topic *topic_mut(topic_table *tt, const char *name)
{
    int32_t i = table_search(tt, name, strlen(name));
    return i >= 0 ? tt->topics[i] : NULL;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const topic_config_kv *)a)->key, ((const topic_config_kv *)b)->key);
}

/* Checks a config list (lengths, count, duplicates) and returns a sorted malloc'd copy in *out
 * (NULL when n == 0). Returns 0, AL_EINVAL or -ENOMEM. */
static int configs_copy(const topic_config_kv *configs, int32_t n, topic_config_kv **out)
{
    *out = NULL;
    if (n < 0 || n > TOPIC_CONFIGS_MAX) return AL_EINVAL;
    if (n == 0) return 0;
    for (int32_t i = 0; i < n; i++) {
        if (strnlen(configs[i].key, TOPIC_CONFIG_KEY_MAX) >= TOPIC_CONFIG_KEY_MAX) return AL_EINVAL;
        if (configs[i].key[0] == 0) return AL_EINVAL;
        if (strnlen(configs[i].value, TOPIC_CONFIG_VALUE_MAX) >= TOPIC_CONFIG_VALUE_MAX)
            return AL_EINVAL;
    }
    topic_config_kv *c = malloc(sizeof(*c) * (size_t)n);
    if (!c) return -ENOMEM;
    memcpy(c, configs, sizeof(*c) * (size_t)n);
    al_sort(c, (size_t)n, sizeof(*c), kv_cmp);
    for (int32_t i = 1; i < n; i++) {
        if (!strcmp(c[i - 1].key, c[i].key)) {
            free(c);
            return AL_EINVAL;
        }
    }
    *out = c;
    return 0;
}

/* Fills id with a random version-4 UUID that is not all zero and not used in tt. */
static void topic_id_random(topic_table *tt, uint8_t id[16])
{
    for (int attempt = 0; attempt < 64; attempt++) {
        uint64_t a = tt->io ? io_random(tt->io) : 0, b = tt->io ? io_random(tt->io) : 0;
        if (!tt->io) {
            /* A replica never creates topics with random ids; keep it defined anyway. */
            a = 0x1234567890abcdefull + tt->version + (uint64_t)attempt;
            b = 0xfedcba0987654321ull ^ (uint64_t)tt->n;
        }
        memcpy(id, &a, 8);
        memcpy(id + 8, &b, 8);
        id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* version 4 */
        id[8] = (uint8_t)((id[8] & 0x3f) | 0x80); /* variant 1 */
        if (!topic_table_find_id(tt, id)) return;
    }
    AL_PANIC("topic_table: could not draw an unused topic id");
}

/* Inserts t at its sorted place. Returns 0, AL_EEXISTS, AL_EFULL or -ENOMEM (t not taken). */
static int table_insert(topic_table *tt, topic *t)
{
    int32_t i = table_search(tt, t->name, strlen(t->name));
    if (i >= 0) return AL_EEXISTS;
    if (tt->n >= TOPIC_TABLE_MAX) return AL_EFULL;
    int32_t at = -i - 1;
    if (tt->n == tt->cap) {
        int32_t ncap = tt->cap ? tt->cap * 2 : 16;
        topic **nt = realloc(tt->topics, sizeof(*nt) * (size_t)ncap);
        if (!nt) return -ENOMEM;
        tt->topics = nt;
        tt->cap = ncap;
    }
    memmove(&tt->topics[at + 1], &tt->topics[at], sizeof(topic *) * (size_t)(tt->n - at));
    tt->topics[at] = t;
    tt->n++;
    tt->version++;
    return 0;
}

bool topic_assignment_valid(const topic_assignment *a)
{
    if (a->n < 1 || a->n > TOPIC_REPLICAS_MAX) return false;
    for (int i = 0; i < a->n; i++) {
        if (a->nodes[i] < 0 || a->shards[i] >= TOPIC_SHARDS_MAX) return false;
        for (int j = 0; j < i; j++)
            if (a->nodes[j] == a->nodes[i]) return false;
    }
    return true;
}

/* Checks n assignments and returns a malloc'd copy in *out. Returns 0, AL_EINVAL, -ENOMEM. */
static int assign_copy(const topic_assignment *a, int32_t n, topic_assignment **out)
{
    *out = NULL;
    if (n < 1 || n > TOPIC_PARTITIONS_MAX) return AL_EINVAL;
    for (int32_t i = 0; i < n; i++)
        if (!topic_assignment_valid(&a[i])) return AL_EINVAL;
    topic_assignment *c = malloc(sizeof(*c) * (size_t)n);
    if (!c) return -ENOMEM;
    memcpy(c, a, sizeof(*c) * (size_t)n);
    *out = c;
    return 0;
}

int topic_table_create(topic_table *tt, const char *name, int32_t partitions, int16_t rf,
                       const topic_config_kv *configs, int32_t n, bool internal, const uint8_t *id)
{
    topic_spec s = {.name = name,
                    .partitions = partitions,
                    .replication_factor = rf,
                    .internal = internal,
                    .id = id,
                    .created_ms = -1,
                    .configs = configs,
                    .n_configs = n};
    return topic_table_create_spec(tt, &s);
}

int topic_table_create_spec(topic_table *tt, const topic_spec *spec)
{
    const char *name = spec->name;
    int32_t partitions = spec->partitions;
    if (!name || !topic_name_valid(name, strlen(name))) return AL_EINVAL;
    if (partitions < 1 || partitions > TOPIC_PARTITIONS_MAX || spec->replication_factor < 1)
        return AL_EINVAL;
    if (topic_table_find(tt, name, strlen(name))) return AL_EEXISTS;
    topic *t = calloc(1, sizeof(*t));
    if (!t) return -ENOMEM;
    int err = configs_copy(spec->configs, spec->n_configs, &t->configs);
    if (err) goto fail;
    t->n_configs = spec->n_configs;
    if (spec->assign) {
        err = assign_copy(spec->assign, partitions, &t->assign);
        if (err) goto fail;
    }
    strcpy(t->name, name);
    t->partitions = partitions;
    t->replication_factor = spec->replication_factor;
    t->internal = spec->internal;
    if (spec->created_ms >= 0)
        t->created_ms = spec->created_ms;
    else
        t->created_ms = tt->io ? io_wall_ms(tt->io) : 0;
    const uint8_t *id = spec->id;
    static const uint8_t zero[16];
    if (id && memcmp(id, zero, 16)) {
        if (topic_table_find_id(tt, id)) {
            err = AL_EEXISTS;
            goto fail;
        }
        memcpy(t->id, id, 16);
    } else {
        topic_id_random(tt, t->id);
    }
    err = table_insert(tt, t);
    if (err) goto fail;
    return 0;
fail:
    topic_destroy(t);
    return err;
}

int topic_table_delete(topic_table *tt, const char *name)
{
    int32_t i = table_search(tt, name, strlen(name));
    if (i < 0) return AL_ENOTFOUND;
    topic_destroy(tt->topics[i]);
    memmove(&tt->topics[i], &tt->topics[i + 1], sizeof(topic *) * (size_t)(tt->n - i - 1));
    tt->n--;
    tt->version++;
    return 0;
}

int topic_table_add_partitions(topic_table *tt, const char *name, int32_t new_count)
{
    topic *t = topic_mut(tt, name);
    if (!t) return AL_ENOTFOUND;
    if (new_count <= t->partitions || new_count > TOPIC_PARTITIONS_MAX || t->assign)
        return AL_EINVAL;
    t->partitions = new_count;
    tt->version++;
    return 0;
}

int topic_table_add_partitions_assigned(topic_table *tt, const char *name, int32_t new_count,
                                        const topic_assignment *added)
{
    topic *t = topic_mut(tt, name);
    if (!t) return AL_ENOTFOUND;
    if (new_count <= t->partitions || new_count > TOPIC_PARTITIONS_MAX || !t->assign || !added)
        return AL_EINVAL;
    int32_t extra = new_count - t->partitions;
    for (int32_t i = 0; i < extra; i++)
        if (!topic_assignment_valid(&added[i])) return AL_EINVAL;
    topic_assignment *a = realloc(t->assign, sizeof(*a) * (size_t)new_count);
    if (!a) return -ENOMEM;
    memcpy(&a[t->partitions], added, sizeof(*a) * (size_t)extra);
    t->assign = a;
    t->partitions = new_count;
    tt->version++;
    return 0;
}

int topic_table_set_assignment(topic_table *tt, const char *name, int32_t partition,
                               const topic_assignment *a)
{
    topic *t = topic_mut(tt, name);
    if (!t) return AL_ENOTFOUND;
    if (partition < 0 || partition >= t->partitions) return AL_ERANGE;
    if (!t->assign || !topic_assignment_valid(a)) return AL_EINVAL;
    t->assign[partition] = *a;
    tt->version++;
    return 0;
}

int topic_table_replace_configs(topic_table *tt, const char *name, const topic_config_kv *configs,
                                int32_t n)
{
    topic *t = topic_mut(tt, name);
    if (!t) return AL_ENOTFOUND;
    topic_config_kv *c;
    int err = configs_copy(configs, n, &c);
    if (err) return err;
    free(t->configs);
    t->configs = c;
    t->n_configs = n;
    tt->version++;
    return 0;
}

int topic_table_set_config(topic_table *tt, const char *name, const char *key, const char *value)
{
    topic *t = topic_mut(tt, name);
    if (!t) return AL_ENOTFOUND;
    if (!key || !key[0] || strlen(key) >= TOPIC_CONFIG_KEY_MAX) return AL_EINVAL;
    if (value && strlen(value) >= TOPIC_CONFIG_VALUE_MAX) return AL_EINVAL;
    int32_t at = -1;
    for (int32_t i = 0; i < t->n_configs; i++)
        if (!strcmp(t->configs[i].key, key)) at = i;
    if (!value) {
        if (at < 0) return 0;
        memmove(&t->configs[at], &t->configs[at + 1],
                sizeof(topic_config_kv) * (size_t)(t->n_configs - at - 1));
        t->n_configs--;
        tt->version++;
        return 0;
    }
    if (at >= 0) {
        strcpy(t->configs[at].value, value);
        tt->version++;
        return 0;
    }
    if (t->n_configs >= TOPIC_CONFIGS_MAX) return AL_EINVAL;
    topic_config_kv *c = realloc(t->configs, sizeof(*c) * (size_t)(t->n_configs + 1));
    if (!c) return -ENOMEM;
    t->configs = c;
    strcpy(c[t->n_configs].key, key);
    strcpy(c[t->n_configs].value, value);
    t->n_configs++;
    al_sort(c, (size_t)t->n_configs, sizeof(*c), kv_cmp);
    tt->version++;
    return 0;
}

const char *topic_config_value(const topic *t, const char *key)
{
    for (int32_t i = 0; i < t->n_configs; i++)
        if (!strcmp(t->configs[i].key, key)) return t->configs[i].value;
    return NULL;
}

void topic_id_hex(const uint8_t id[16], char out[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[32] = 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int topic_id_parse(const char *s, uint8_t id[16])
{
    if (!s || strlen(s) != 32) return AL_EMALFORMED;
    for (int i = 0; i < 16; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return AL_EMALFORMED;
        id[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* ---- partition -> shard ---- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm". */
static int32_t jump_hash(uint64_t key, int32_t buckets)
{
    int64_t b = -1, j = 0;
    for (int i = 0; i < 256 && j < buckets; i++) { /* ~ln(buckets) rounds; 256 is a bound */
        b = j;
        key = key * 2862933555777941757ull + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1ull << 31) / (double)((key >> 33) + 1)));
    }
    return (int32_t)b;
}

uint32_t topic_partition_shard(const uint8_t id[16], int32_t partition, uint32_t smp)
{
    if (smp <= 1) return 0;
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    uint64_t key = mix64(a ^ mix64(b ^ mix64((uint64_t)(uint32_t)partition + 1)));
    int32_t s = jump_hash(key, (int32_t)smp);
    AL_ASSERT(s >= 0 && (uint32_t)s < smp);
    return (uint32_t)s;
}

void topic_partition_assignment(const topic *t, int32_t p, int32_t self, uint32_t smp,
                                topic_assignment *out)
{
    AL_ASSERT(p >= 0 && p < t->partitions);
    if (t->assign) {
        *out = t->assign[p];
        return;
    }
    memset(out, 0, sizeof(*out));
    out->n = 1;
    out->nodes[0] = self;
    out->shards[0] = (uint16_t)topic_partition_shard(t->id, p, smp);
}

int32_t topic_partition_local_shard(const topic *t, int32_t p, int32_t self, uint32_t smp)
{
    AL_ASSERT(p >= 0 && p < t->partitions);
    if (!t->assign) return (int32_t)topic_partition_shard(t->id, p, smp);
    const topic_assignment *a = &t->assign[p];
    for (int i = 0; i < a->n; i++)
        if (a->nodes[i] == self) return smp <= 1 ? 0 : (int32_t)(a->shards[i] % smp);
    return -1;
}

/* ---- encoding ---- */

/* The "assignments" JSON of a topic with stored assignments: [[[node, shard], ...], ...]. */
static json_t *assign_to_json(const topic *t)
{
    json_t *arr = json_array();
    if (!arr) return NULL;
    for (int32_t p = 0; p < t->partitions; p++) {
        json_t *reps = json_array();
        if (!reps || json_array_append_new(arr, reps)) goto fail;
        for (int i = 0; i < t->assign[p].n; i++) {
            json_t *pair = json_pack("[ii]", (int)t->assign[p].nodes[i],
                                     (int)t->assign[p].shards[i]);
            if (!pair || json_array_append_new(reps, pair)) goto fail;
        }
    }
    return arr;
fail:
    json_decref(arr);
    return NULL;
}

/* Parses "assignments" (partitions entries) into a new malloc'd array, or NULL (malformed). */
static topic_assignment *assign_from_json(json_t *arr, int32_t partitions)
{
    if (!json_is_array(arr) || json_array_size(arr) != (size_t)partitions) return NULL;
    topic_assignment *a = calloc((size_t)partitions, sizeof(*a));
    if (!a) return NULL;
    for (int32_t p = 0; p < partitions; p++) {
        json_t *reps = json_array_get(arr, (size_t)p);
        size_t n = json_array_size(reps);
        if (!json_is_array(reps) || n < 1 || n > TOPIC_REPLICAS_MAX) goto fail;
        a[p].n = (int16_t)n;
        for (size_t i = 0; i < n; i++) {
            json_t *pair = json_array_get(reps, i);
            json_t *jn = json_array_get(pair, 0), *js = json_array_get(pair, 1);
            if (json_array_size(pair) != 2 || !json_is_integer(jn) || !json_is_integer(js))
                goto fail;
            json_int_t node = json_integer_value(jn), shard = json_integer_value(js);
            if (node < 0 || node > INT32_MAX || shard < 0 || shard >= TOPIC_SHARDS_MAX) goto fail;
            a[p].nodes[i] = (int32_t)node;
            a[p].shards[i] = (uint16_t)shard;
        }
        if (!topic_assignment_valid(&a[p])) goto fail;
    }
    return a;
fail:
    free(a);
    return NULL;
}

static json_t *topic_to_json(const topic *t)
{
    char idhex[33];
    topic_id_hex(t->id, idhex);
    json_t *cfg = json_object();
    json_t *o = json_object();
    if (!cfg || !o) goto fail;
    for (int32_t i = 0; i < t->n_configs; i++)
        if (json_object_set_new(cfg, t->configs[i].key, json_string(t->configs[i].value)))
            goto fail;
    if (json_object_set_new(o, "name", json_string(t->name)) ||
        json_object_set_new(o, "id", json_string(idhex)) ||
        json_object_set_new(o, "partitions", json_integer(t->partitions)) ||
        json_object_set_new(o, "replication_factor", json_integer(t->replication_factor)) ||
        json_object_set_new(o, "internal", json_boolean(t->internal)) ||
        json_object_set_new(o, "created_ms", json_integer(t->created_ms)))
        goto fail;
    if (json_object_set_new(o, "configs", cfg)) {
        cfg = NULL;
        goto fail;
    }
    cfg = NULL;
    if (t->assign) {
        json_t *as = assign_to_json(t);
        if (!as || json_object_set_new(o, "assignments", as)) goto fail;
    }
    return o;
fail:
    json_decref(cfg);
    json_decref(o);
    return NULL;
}

int topic_table_encode(const topic_table *tt, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int err = -ENOMEM;
    char *text = NULL;
    json_t *arr = json_array();
    json_t *root = json_object();
    if (!arr || !root) goto out;
    for (int32_t i = 0; i < tt->n; i++) {
        json_t *o = topic_to_json(tt->topics[i]);
        if (!o || json_array_append_new(arr, o)) goto out;
    }
    if (json_object_set_new(root, "format", json_integer(1)) ||
        json_object_set_new(root, "version", json_integer((json_int_t)tt->version)))
        goto out;
    if (json_object_set_new(root, "topics", arr)) {
        arr = NULL;
        goto out;
    }
    arr = NULL;
    text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text) goto out;
    size_t tlen = strlen(text);
    char head[96];
    int hn = snprintf(head, sizeof(head), "%s %08" PRIx32 " %zu\n", TOPIC_FILE_MAGIC,
                      crc32c(0, text, tlen), tlen);
    uint8_t *buf = malloc((size_t)hn + tlen);
    if (!buf) goto out;
    memcpy(buf, head, (size_t)hn);
    memcpy(buf + hn, text, tlen);
    *out = buf;
    *len = (size_t)hn + tlen;
    err = 0;
out:
    free(text);
    json_decref(arr);
    json_decref(root);
    return err;
}

/* Parses one topic object into a new topic. Returns it or NULL (malformed). */
static topic *topic_from_json(json_t *o)
{
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *idhex = json_string_value(json_object_get(o, "id"));
    json_t *jp = json_object_get(o, "partitions"), *jr = json_object_get(o, "replication_factor");
    json_t *cfg = json_object_get(o, "configs");
    if (!name || !idhex || !json_is_integer(jp) || !json_is_integer(jr) || !json_is_object(cfg))
        return NULL;
    if (!topic_name_valid(name, strlen(name))) return NULL;
    json_int_t p = json_integer_value(jp), r = json_integer_value(jr);
    if (p < 1 || p > TOPIC_PARTITIONS_MAX || r < 1 || r > INT16_MAX) return NULL;
    size_t nc = json_object_size(cfg);
    if (nc > TOPIC_CONFIGS_MAX) return NULL;
    topic *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    if (topic_id_parse(idhex, t->id)) goto fail;
    strcpy(t->name, name);
    t->partitions = (int32_t)p;
    t->replication_factor = (int16_t)r;
    t->internal = json_is_true(json_object_get(o, "internal"));
    t->created_ms = json_integer_value(json_object_get(o, "created_ms"));
    json_t *as = json_object_get(o, "assignments");
    if (as) {
        t->assign = assign_from_json(as, t->partitions);
        if (!t->assign) goto fail;
    }
    if (nc) {
        t->configs = calloc(nc, sizeof(topic_config_kv));
        if (!t->configs) goto fail;
        const char *k;
        json_t *v;
        json_object_foreach(cfg, k, v)
        {
            const char *s = json_string_value(v);
            if (!s || !k[0] || strlen(k) >= TOPIC_CONFIG_KEY_MAX ||
                strlen(s) >= TOPIC_CONFIG_VALUE_MAX)
                goto fail;
            strcpy(t->configs[t->n_configs].key, k);
            strcpy(t->configs[t->n_configs].value, s);
            t->n_configs++;
        }
        al_sort(t->configs, (size_t)t->n_configs, sizeof(topic_config_kv), kv_cmp);
    }
    return t;
fail:
    topic_destroy(t);
    return NULL;
}

int topic_table_decode(topic_table *tt, const uint8_t *buf, size_t len)
{
    /* Header line: magic, crc, length. */
    const uint8_t *nl = memchr(buf, '\n', AL_MIN(len, (size_t)96));
    if (!nl) return AL_ECORRUPT;
    char head[96];
    size_t hlen = (size_t)(nl - buf);
    memcpy(head, buf, hlen);
    head[hlen] = 0;
    unsigned crc;
    size_t jlen;
    char magic_a[32], magic_b[8];
    if (sscanf(head, "%31s %7s %x %zu", magic_a, magic_b, &crc, &jlen) != 4) return AL_ECORRUPT;
    char magic[48];
    snprintf(magic, sizeof(magic), "%s %s", magic_a, magic_b);
    if (strcmp(magic, TOPIC_FILE_MAGIC)) return AL_ECORRUPT;
    /* Only the exact form we write (lowercase hex, no extra spaces) is accepted. */
    char canon[96];
    int cn = snprintf(canon, sizeof(canon), "%s %08x %zu", TOPIC_FILE_MAGIC, crc, jlen);
    if (cn < 0 || (size_t)cn != hlen || memcmp(canon, head, hlen)) return AL_ECORRUPT;
    const uint8_t *text = nl + 1;
    if (jlen != len - hlen - 1) return AL_ECORRUPT;
    if (crc32c(0, text, jlen) != (uint32_t)crc) return AL_ECORRUPT;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)text, jlen, 0, &jerr);
    if (!root) return AL_ECORRUPT;
    topic_table fresh;
    topic_table_init(&fresh, tt->io, NULL);
    int err = AL_ECORRUPT;
    json_t *arr = json_object_get(root, "topics");
    if (!json_is_array(arr) || json_array_size(arr) > TOPIC_TABLE_MAX) goto out;
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        topic *t = topic_from_json(o);
        if (!t) goto out;
        if (topic_table_find_id(&fresh, t->id) || table_insert(&fresh, t)) {
            topic_destroy(t);
            goto out;
        }
    }
    fresh.version = (uint64_t)json_integer_value(json_object_get(root, "version"));
    /* Swap the contents in, keep tt's io and path. */
    topic_table_free(tt);
    tt->topics = fresh.topics;
    tt->n = fresh.n;
    tt->cap = fresh.cap;
    tt->version = fresh.version;
    fresh.topics = NULL;
    fresh.n = 0;
    err = 0;
out:
    topic_table_free(&fresh);
    json_decref(root);
    return err;
}

int topic_table_save(const topic_table *tt)
{
    if (!tt->path[0] || !tt->io) return AL_EINVAL;
    uint8_t *buf;
    size_t len;
    int err = topic_table_encode(tt, &buf, &len);
    if (err) return err;
    err = io_fs_write_atomic(tt->io, tt->path, buf, len);
    free(buf);
    if (err) log_error("cluster", "saving %s failed: %s", tt->path, al_strerror(err));
    return err;
}

int topic_table_load(topic_table *tt)
{
    if (!tt->path[0] || !tt->io) return AL_EINVAL;
    uint8_t *buf;
    size_t len;
    int err = io_fs_read_all(tt->io, tt->path, TOPIC_FILE_MAX, &buf, &len);
    if (err == -ENOENT) return 0;
    if (err) return err;
    err = topic_table_decode(tt, buf, len);
    free(buf);
    if (err)
        log_error("cluster", "%s is corrupt (%s): refusing to start with a partial topic list",
                  tt->path, al_strerror(err));
    return err;
}
