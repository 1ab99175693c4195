/*
 * metrics.c — the registry behind metrics.h: per-shard series storage (chunked arrays
 * published by a release store of the count, an owner-only hash index), the update calls,
 * and the Prometheus text exposition (scrape-side merge across shards).
 */
#include "metrics/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#define CHUNK 64u

struct metrics_family_def metrics_families[M__COUNT] = {
#define METRICS_X_DEF(id, nm, ty, pub, b, maxs, hp, lb) [id] = {nm, ty, pub, b, maxs, hp, lb, 0},
    METRICS_FAMILIES(METRICS_X_DEF)
#undef METRICS_X_DEF
};

struct metrics_series {
    _Atomic uint64_t v;        /* counter: raw count; gauge: double bits */
    _Atomic uint64_t sum;      /* histogram: sum of raw values */
    _Atomic uint64_t *buckets; /* histogram: nbuckets + 1 (last = +Inf), not cumulative */
    const struct metrics_family_def *def;
    _Atomic uint8_t dead;
    uint32_t hash;
    uint32_t labels_len;
    char labels[METRICS_LABELS_BYTES];
};

struct fam_shard {
    _Atomic uint32_t count;                /* published series; release-stored by the owner */
    _Atomic(metrics_series *) *chunks;     /* ceil(max_series / CHUNK) chunk pointers */
    uint32_t *index;                       /* owner only: slot + 1, 0 = empty */
    uint32_t index_mask;
};

struct metrics {
    unsigned shard;
    struct fam_shard fam[M__COUNT];
};

static metrics **g_shards;
static unsigned g_nshards;
_Thread_local metrics *metrics_local;

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n && p < (1u << 30)) p <<= 1;
    return p;
}

static void shard_free(metrics *m)
{
    if (!m) return;
    for (unsigned f = 0; f < M__COUNT; f++) {
        struct fam_shard *fs = &m->fam[f];
        uint32_t n = atomic_load_explicit(&fs->count, memory_order_relaxed);
        uint32_t nchunks = (metrics_families[f].max_series + CHUNK - 1) / CHUNK;
        for (uint32_t i = 0; fs->chunks && i < n; i++) {
            metrics_series *c = atomic_load_explicit(&fs->chunks[i / CHUNK],
                                                     memory_order_relaxed);
            free((void *)c[i % CHUNK].buckets);
        }
        for (uint32_t c = 0; fs->chunks && c < nchunks; c++)
            free(atomic_load_explicit(&fs->chunks[c], memory_order_relaxed));
        free((void *)fs->chunks);
        free(fs->index);
    }
    free(m);
}

static metrics *shard_new(unsigned shard)
{
    metrics *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->shard = shard;
    for (unsigned f = 0; f < M__COUNT; f++) {
        struct fam_shard *fs = &m->fam[f];
        uint32_t maxs = metrics_families[f].max_series;
        fs->chunks = calloc((maxs + CHUNK - 1) / CHUNK, sizeof(*fs->chunks));
        uint32_t cap = pow2_at_least(maxs * 2 + 2);
        fs->index = calloc(cap, sizeof(uint32_t));
        fs->index_mask = cap - 1;
        if (!fs->chunks || !fs->index) {
            shard_free(m);
            return NULL;
        }
    }
    return m;
}

int metrics_init(unsigned nshards)
{
    if (g_shards) return -EEXIST;
    if (nshards == 0 || nshards > METRICS_MAX_SHARDS) return AL_EINVAL;
    for (unsigned f = 0; f < M__COUNT; f++) {
        struct metrics_family_def *d = &metrics_families[f];
        uint32_t n = 0;
        while (n < METRICS_MAX_LABELS && d->labels[n]) n++;
        d->nlabels = n;
        AL_ASSERT(d->max_series >= 1);
        AL_ASSERT(d->type != METRICS_HISTOGRAM || (d->nbuckets >= 1 && d->nbuckets <= 40));
    }
    g_shards = calloc(nshards, sizeof(*g_shards));
    if (!g_shards) return -ENOMEM;
    for (unsigned i = 0; i < nshards; i++) {
        g_shards[i] = shard_new(i);
        if (!g_shards[i]) {
            g_nshards = nshards;
            metrics_shutdown();
            return -ENOMEM;
        }
    }
    g_nshards = nshards;
    return 0;
}

void metrics_shutdown(void)
{
    for (unsigned i = 0; g_shards && i < g_nshards; i++) shard_free(g_shards[i]);
    free(g_shards);
    g_shards = NULL;
    g_nshards = 0;
    metrics_local = NULL;
}

metrics *metrics_shard(unsigned shard)
{
    return (g_shards && shard < g_nshards) ? g_shards[shard] : NULL;
}

unsigned metrics_nshards(void)
{
    return g_nshards;
}

void metrics_bind(unsigned shard)
{
    metrics_local = metrics_shard(shard);
}

/* ---- series lookup ---- */

static uint32_t hash_bytes(const char *p, uint32_t n)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

/* Encodes label values as v1\0v2\0... into buf. Returns the length or -1 if too long. */
static int labels_encode(const char *const *labels, uint32_t n, char *buf)
{
    uint32_t len = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *v = labels[i] ? labels[i] : "";
        size_t l = strlen(v);
        if (len + l + 1 > METRICS_LABELS_BYTES) return -1;
        memcpy(buf + len, v, l + 1);
        len += (uint32_t)l + 1;
    }
    return (int)len;
}

static inline metrics_series *slot_at(struct fam_shard *fs, uint32_t i)
{
    metrics_series *c = atomic_load_explicit(&fs->chunks[i / CHUNK], memory_order_relaxed);
    return &c[i % CHUNK];
}

static void series_reset(metrics_series *s, const struct metrics_family_def *d)
{
    atomic_store_explicit(&s->v, 0, memory_order_relaxed);
    atomic_store_explicit(&s->sum, 0, memory_order_relaxed);
    for (uint32_t b = 0; s->buckets && b <= d->nbuckets; b++)
        atomic_store_explicit(&s->buckets[b], 0, memory_order_relaxed);
}

static void count_dropped(metrics *m)
{
    struct fam_shard *fs = &m->fam[M_METRICS_DROPPED_SERIES];
    if (atomic_load_explicit(&fs->count, memory_order_relaxed) == 0) {
        (void)metrics_series_get(m, M_METRICS_DROPPED_SERIES, NULL);
    }
    if (atomic_load_explicit(&fs->count, memory_order_relaxed) > 0)
        metrics_series_add(slot_at(fs, 0), 1);
}

/* Finds the slot with these encoded labels; returns its index or -1 (ip: index position). */
static int64_t series_find(struct fam_shard *fs, const char *enc, uint32_t len, uint32_t h,
                           uint32_t *ip)
{
    uint32_t i = h & fs->index_mask;
    for (uint32_t probes = 0; probes <= fs->index_mask; probes++) {
        uint32_t e = fs->index[i];
        if (e == 0) {
            *ip = i;
            return -1;
        }
        metrics_series *s = slot_at(fs, e - 1);
        if (s->hash == h && s->labels_len == len && !memcmp(s->labels, enc, len)) {
            *ip = i;
            return e - 1;
        }
        i = (i + 1) & fs->index_mask;
    }
    AL_PANIC("metrics index full"); /* cannot happen: index is > 2x max_series */
}

metrics_series *metrics_series_get(metrics *m, enum metrics_id id, const char *const *labels)
{
    if (!m) return NULL;
    AL_ASSERT((unsigned)id < M__COUNT);
    const struct metrics_family_def *d = &metrics_families[id];
    struct fam_shard *fs = &m->fam[id];
    char enc[METRICS_LABELS_BYTES];
    int len = labels_encode(labels, d->nlabels, enc);
    if (len < 0) return NULL;
    uint32_t h = hash_bytes(enc, (uint32_t)len), ip = 0;
    int64_t at = series_find(fs, enc, (uint32_t)len, h, &ip);
    if (at >= 0) {
        metrics_series *s = slot_at(fs, (uint32_t)at);
        if (atomic_load_explicit(&s->dead, memory_order_relaxed)) {
            series_reset(s, d);
            atomic_store_explicit(&s->dead, 0, memory_order_release);
        }
        return s;
    }
    uint32_t n = atomic_load_explicit(&fs->count, memory_order_relaxed);
    if (n >= d->max_series) {
        if (id != M_METRICS_DROPPED_SERIES) count_dropped(m);
        return NULL;
    }
    if (n % CHUNK == 0 && !atomic_load_explicit(&fs->chunks[n / CHUNK], memory_order_relaxed)) {
        metrics_series *c = calloc(CHUNK, sizeof(*c));
        if (!c) return NULL;
        atomic_store_explicit(&fs->chunks[n / CHUNK], c, memory_order_relaxed);
    }
    metrics_series *s = slot_at(fs, n);
    memset(s, 0, sizeof(*s));
    if (d->type == METRICS_HISTOGRAM) {
        s->buckets = calloc(d->nbuckets + 1, sizeof(uint64_t));
        if (!s->buckets) return NULL;
    }
    s->def = d;
    s->hash = h;
    s->labels_len = (uint32_t)len;
    memcpy(s->labels, enc, (size_t)len);
    fs->index[ip] = n + 1;
    atomic_store_explicit(&fs->count, n + 1, memory_order_release);
    return s;
}

void metrics_series_remove(metrics *m, enum metrics_id id, const char *const *labels)
{
    if (!m) return;
    AL_ASSERT((unsigned)id < M__COUNT);
    struct fam_shard *fs = &m->fam[id];
    char enc[METRICS_LABELS_BYTES];
    int len = labels_encode(labels, metrics_families[id].nlabels, enc);
    if (len < 0) return;
    uint32_t ip = 0;
    int64_t at = series_find(fs, enc, (uint32_t)len, hash_bytes(enc, (uint32_t)len), &ip);
    if (at >= 0) atomic_store_explicit(&slot_at(fs, (uint32_t)at)->dead, 1, memory_order_release);
}

/* ---- updates (single writer: relaxed load + relaxed store) ---- */

void metrics_series_add(metrics_series *s, uint64_t v)
{
    if (!s) return;
    uint64_t cur = atomic_load_explicit(&s->v, memory_order_relaxed);
    atomic_store_explicit(&s->v, cur + v, memory_order_relaxed);
}

void metrics_series_set(metrics_series *s, double v)
{
    if (!s) return;
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    atomic_store_explicit(&s->v, bits, memory_order_relaxed);
}

uint32_t metrics_bucket_index(uint64_t first_bound, uint32_t nbuckets, uint64_t raw)
{
    if (raw <= first_bound) return 0;
    uint64_t q = (raw - 1) / first_bound; /* >= 1 */
    uint32_t i = 64u - (uint32_t)__builtin_clzll(q);
    return i < nbuckets ? i : nbuckets;
}

void metrics_series_observe(metrics_series *s, uint64_t raw)
{
    if (!s || !s->buckets) return;
    uint64_t sum = atomic_load_explicit(&s->sum, memory_order_relaxed);
    atomic_store_explicit(&s->sum, sum + raw, memory_order_relaxed);
    uint32_t b = metrics_bucket_index(s->def->first_bound, s->def->nbuckets, raw);
    uint64_t c = atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
    atomic_store_explicit(&s->buckets[b], c + 1, memory_order_relaxed);
}

/* Checks that l holds exactly the family's number of label values (NULL-terminated). */
static void labels_check(enum metrics_id id, const char *const *l)
{
    AL_ASSERT((unsigned)id < M__COUNT);
    uint32_t n = metrics_families[id].nlabels;
    for (uint32_t i = 0; i < n; i++) AL_ASSERT(l[i] != NULL);
    AL_ASSERT(l[n] == NULL);
}

void metrics_counter_add_l(metrics *m, enum metrics_id id, uint64_t v, const char *const *l)
{
    if (!m) return;
    labels_check(id, l);
    AL_DASSERT(metrics_families[id].type == METRICS_COUNTER);
    metrics_series_add(metrics_series_get(m, id, l), v);
}

void metrics_gauge_set_l(metrics *m, enum metrics_id id, double v, const char *const *l)
{
    if (!m) return;
    labels_check(id, l);
    AL_DASSERT(metrics_families[id].type == METRICS_GAUGE);
    metrics_series_set(metrics_series_get(m, id, l), v);
}

void metrics_histogram_observe_l(metrics *m, enum metrics_id id, uint64_t raw,
                                 const char *const *l)
{
    if (!m) return;
    labels_check(id, l);
    AL_DASSERT(metrics_families[id].type == METRICS_HISTOGRAM);
    metrics_series_observe(metrics_series_get(m, id, l), raw);
}

void metrics_group_lag_report(metrics *m, const char *group, const char *const *topics,
                              const int32_t *partitions, const int64_t *lag, int n)
{
    if (!m) return;
    int64_t sum = 0, max = 0;
    for (int i = 0; i < n; i++) {
        int64_t l = lag[i] > 0 ? lag[i] : 0;
        sum += l;
        max = AL_MAX(max, l);
        char p[16];
        snprintf(p, sizeof(p), "%d", partitions[i]);
        metrics_gauge_set(m, M_GROUP_PARTITION_LAG, (double)l, group, topics[i], p);
    }
    metrics_gauge_set(m, M_GROUP_LAG_SUM, (double)sum, group);
    metrics_gauge_set(m, M_GROUP_LAG_MAX, (double)max, group);
}

void metrics_gauge_visit(enum metrics_id id,
                         void (*visit)(void *arg, const char *const *labels, double value),
                         void *arg)
{
    AL_ASSERT((unsigned)id < M__COUNT);
    const struct metrics_family_def *d = &metrics_families[id];
    AL_ASSERT(d->type == METRICS_GAUGE);
    for (unsigned sh = 0; g_shards && sh < g_nshards; sh++) {
        struct fam_shard *fs = &g_shards[sh]->fam[id];
        uint32_t c = atomic_load_explicit(&fs->count, memory_order_acquire);
        for (uint32_t i = 0; i < c; i++) {
            metrics_series *s = slot_at(fs, i);
            if (atomic_load_explicit(&s->dead, memory_order_acquire)) continue;
            const char *labels[METRICS_MAX_LABELS + 1] = {0};
            const char *v = s->labels;
            for (uint32_t l = 0; l < d->nlabels; l++) {
                labels[l] = v;
                v += strlen(v) + 1;
            }
            uint64_t bits = atomic_load_explicit(&s->v, memory_order_relaxed);
            double g;
            memcpy(&g, &bits, sizeof(g));
            visit(arg, labels, g);
        }
    }
}

/* ---- exposition ---- */

static int series_cmp(const void *a, const void *b)
{
    const metrics_series *x = *(metrics_series *const *)a, *y = *(metrics_series *const *)b;
    uint32_t n = AL_MIN(x->labels_len, y->labels_len);
    int c = memcmp(x->labels, y->labels, n);
    if (c) return c;
    return (x->labels_len > y->labels_len) - (x->labels_len < y->labels_len);
}

static void write_escaped(FILE *f, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\') fputs("\\\\", f);
        else if (*s == '\n') fputs("\\n", f);
        else if (quote && *s == '"') fputs("\\\"", f);
        else fputc(*s, f);
    }
}

static void write_double(FILE *f, double v)
{
    if (isnan(v)) fputs("NaN", f);
    else if (isinf(v)) fputs(v > 0 ? "+Inf" : "-Inf", f);
    else {
        /* The shortest of %.15g / %.17g that reads back as the same double. */
        char buf[32];
        snprintf(buf, sizeof(buf), "%.15g", v);
        if (strtod(buf, NULL) != v) snprintf(buf, sizeof(buf), "%.17g", v);
        fputs(buf, f);
    }
}

/* Writes `{l1="v1",...[,le="X"]}` (nothing if no labels and no le). */
static void write_labels(FILE *f, const struct metrics_family_def *d, const metrics_series *s,
                         const char *le)
{
    if (d->nlabels == 0 && !le) return;
    fputc('{', f);
    const char *v = s->labels;
    for (uint32_t i = 0; i < d->nlabels; i++) {
        fprintf(f, "%s%s=\"", i ? "," : "", d->labels[i]);
        write_escaped(f, v, true);
        fputc('"', f);
        v += strlen(v) + 1;
    }
    if (le) fprintf(f, "%sle=\"%s\"", d->nlabels ? "," : "", le);
    fputc('}', f);
}

/* The merged values of one label set across shards. */
struct merged {
    uint64_t v;
    double g;
    uint64_t sum;
    uint64_t buckets[41];
};

static void merge_one(const struct metrics_family_def *d, const metrics_series *s,
                      struct merged *out)
{
    uint64_t v = atomic_load_explicit(&s->v, memory_order_relaxed);
    if (d->type == METRICS_GAUGE) {
        double g;
        memcpy(&g, &v, sizeof(g));
        out->g += g;
    } else if (d->type == METRICS_COUNTER) {
        out->v += v;
    } else {
        out->sum += atomic_load_explicit(&s->sum, memory_order_relaxed);
        for (uint32_t b = 0; b <= d->nbuckets; b++)
            out->buckets[b] += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
    }
}

static void write_merged(FILE *f, const struct metrics_family_def *d, const metrics_series *s,
                         const struct merged *m)
{
    if (d->type == METRICS_COUNTER || d->type == METRICS_GAUGE) {
        fputs(d->name, f);
        write_labels(f, d, s, NULL);
        fputc(' ', f);
        if (d->type == METRICS_GAUGE) write_double(f, m->g);
        else if (d->divisor == 1.0) fprintf(f, "%" PRIu64, m->v);
        else write_double(f, (double)m->v / d->divisor);
        fputc('\n', f);
        return;
    }
    uint64_t cum = 0;
    char le[48];
    for (uint32_t b = 0; b <= d->nbuckets; b++) {
        cum += m->buckets[b];
        if (b < d->nbuckets)
            snprintf(le, sizeof(le), "%.9g", (double)(d->first_bound << b) / d->divisor);
        else
            snprintf(le, sizeof(le), "+Inf");
        fprintf(f, "%s_bucket", d->name);
        write_labels(f, d, s, le);
        fprintf(f, " %" PRIu64 "\n", cum);
    }
    fprintf(f, "%s_sum", d->name);
    write_labels(f, d, s, NULL);
    fputc(' ', f);
    if (d->divisor == 1.0) fprintf(f, "%" PRIu64, m->sum);
    else write_double(f, (double)m->sum / d->divisor);
    fprintf(f, "\n%s_count", d->name);
    write_labels(f, d, s, NULL);
    fprintf(f, " %" PRIu64 "\n", cum);
}

/* Collects the live series of family id from every shard into *out (malloc'd). Returns the
 * count or -ENOMEM. */
static int64_t family_collect(enum metrics_id id, metrics_series ***out)
{
    size_t total = 0;
    for (unsigned sh = 0; sh < g_nshards; sh++)
        total += atomic_load_explicit(&g_shards[sh]->fam[id].count, memory_order_acquire);
    *out = NULL;
    if (total == 0) return 0;
    metrics_series **v = malloc(total * sizeof(*v));
    if (!v) return -ENOMEM;
    size_t n = 0;
    for (unsigned sh = 0; sh < g_nshards; sh++) {
        struct fam_shard *fs = &g_shards[sh]->fam[id];
        uint32_t c = atomic_load_explicit(&fs->count, memory_order_acquire);
        for (uint32_t i = 0; i < c && n < total; i++) {
            metrics_series *s = slot_at(fs, i);
            if (!atomic_load_explicit(&s->dead, memory_order_acquire)) v[n++] = s;
        }
    }
    al_sort(v, n, sizeof(*v), series_cmp);
    *out = v;
    return (int64_t)n;
}

int metrics_write_prometheus(FILE *f, bool public_only)
{
    for (unsigned id = 0; id < M__COUNT; id++) {
        const struct metrics_family_def *d = &metrics_families[id];
        if (public_only && !d->is_public) continue;
        static const char *const tname[] = {"counter", "gauge", "histogram"};
        fprintf(f, "# HELP %s ", d->name);
        write_escaped(f, d->help, false);
        fprintf(f, "\n# TYPE %s %s\n", d->name, tname[d->type]);
        metrics_series **v = NULL;
        int64_t n = g_shards ? family_collect((enum metrics_id)id, &v) : 0;
        if (n < 0) return (int)n;
        for (int64_t i = 0; i < n;) {
            struct merged m = {0};
            int64_t j = i;
            while (j < n && series_cmp(&v[i], &v[j]) == 0) merge_one(d, v[j++], &m);
            write_merged(f, d, v[i], &m);
            i = j;
        }
        free(v);
    }
    return ferror(f) ? -EIO : 0;
}

int metrics_render(bool public_only, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return -ENOMEM;
    int err = metrics_write_prometheus(f, public_only);
    if (fclose(f) != 0 && !err) err = -ENOMEM;
    if (err) {
        free(buf);
        return err;
    }
    *out = buf;
    *len = n;
    return 0;
}
