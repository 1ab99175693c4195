/*
 * test_topic_table.c — the topic catalogue: name rules, create/delete/partitions/configs,
 * persistence through the io_uring back end (save, reload, corruption detected), replica sync by
 * encode/decode, the partition -> shard mapping (stable, in range, spread), and replica
 * assignments (stored form round trips; single-node form unchanged; a pre-assignment file loads).
 */
#include "cluster/topic_table.h"
#include "base/crc32c.h"
#include "reactor/io.h"
#include "test.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static io *make_io(void)
{
    io *x = NULL;
    struct io_uring_opts o = {.entries = 64, .seed = test_seed()};
    int err = io_uring_create(&x, &o);
    if (err) {
        fprintf(stderr, "io_uring_create: %d\n", err);
        exit(1);
    }
    return x;
}

static const char *subdir(const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), name);
    mkdir(path, 0755);
    return path;
}

TEST(name_rules)
{
    CHECK(topic_name_valid("a", 1));
    CHECK(topic_name_valid("Orders_v2.eu-west", 17));
    CHECK(topic_name_valid("...", 3));
    CHECK(!topic_name_valid(".", 1));
    CHECK(!topic_name_valid("..", 2));
    CHECK(!topic_name_valid("", 0));
    CHECK(!topic_name_valid("a b", 3));
    CHECK(!topic_name_valid("a/b", 3));
    CHECK(!topic_name_valid("ü", strlen("ü")));
    char long_name[260];
    memset(long_name, 'x', sizeof(long_name));
    CHECK(topic_name_valid(long_name, 249));
    CHECK(!topic_name_valid(long_name, 250));
}

TEST(create_find_delete)
{
    topic_table tt;
    io *x = make_io();
    CHECK_EQ(topic_table_init(&tt, x, subdir("cfd")), 0);
    CHECK_EQ(topic_table_create(&tt, "b", 3, 1, NULL, 0, false, NULL), 0);
    CHECK_EQ(topic_table_create(&tt, "a", 1, 1, NULL, 0, false, NULL), 0);
    CHECK_EQ(topic_table_create(&tt, "c", 2, 1, NULL, 0, false, NULL), 0);
    CHECK_EQ(topic_table_create(&tt, "b", 3, 1, NULL, 0, false, NULL), AL_EEXISTS);
    CHECK_EQ(topic_table_create(&tt, "bad name", 3, 1, NULL, 0, false, NULL), AL_EINVAL);
    CHECK_EQ(topic_table_create(&tt, "z", 0, 1, NULL, 0, false, NULL), AL_EINVAL);
    CHECK_EQ(topic_table_create(&tt, "z", TOPIC_PARTITIONS_MAX + 1, 1, NULL, 0, false, NULL),
             AL_EINVAL);
    CHECK_EQ(topic_table_create(&tt, "z", 1, 0, NULL, 0, false, NULL), AL_EINVAL);
    CHECK_EQ(tt.n, 3);
    /* Sorted by name. */
    CHECK(!strcmp(topic_table_at(&tt, 0)->name, "a"));
    CHECK(!strcmp(topic_table_at(&tt, 1)->name, "b"));
    CHECK(!strcmp(topic_table_at(&tt, 2)->name, "c"));
    const topic *b = topic_table_find(&tt, "bxyz", 1); /* length-delimited lookup */
    CHECK(b != NULL);
    CHECK_EQ(b->partitions, 3);
    CHECK(topic_table_find_id(&tt, b->id) == b);
    CHECK_EQ(b->id[6] >> 4, 4); /* UUID version 4 */
    CHECK(topic_table_find(&tt, "d", 1) == NULL);
    CHECK(topic_table_find(&tt, "", 0) == NULL);
    /* Distinct ids. */
    CHECK(memcmp(topic_table_at(&tt, 0)->id, topic_table_at(&tt, 1)->id, 16) != 0);
    CHECK_EQ(topic_table_add_partitions(&tt, "b", 3), AL_EINVAL);
    CHECK_EQ(topic_table_add_partitions(&tt, "b", 5), 0);
    CHECK_EQ(topic_table_find(&tt, "b", 1)->partitions, 5);
    CHECK_EQ(topic_table_add_partitions(&tt, "nope", 5), AL_ENOTFOUND);
    CHECK_EQ(topic_table_delete(&tt, "b"), 0);
    CHECK_EQ(topic_table_delete(&tt, "b"), AL_ENOTFOUND);
    CHECK_EQ(tt.n, 2);
    CHECK(topic_table_find(&tt, "c", 1) != NULL);
    CHECK(topic_table_find(&tt, "a", 1) != NULL);
    topic_table_free(&tt);
    io_destroy(x);
}

TEST(configs)
{
    topic_table tt;
    io *x = make_io();
    CHECK_EQ(topic_table_init(&tt, x, subdir("cfg")), 0);
    topic_config_kv kv[2] = {{"retention.ms", "1000"}, {"cleanup.policy", "compact"}};
    CHECK_EQ(topic_table_create(&tt, "t", 1, 1, kv, 2, false, NULL), 0);
    const topic *t = topic_table_find(&tt, "t", 1);
    CHECK(!strcmp(topic_config_value(t, "retention.ms"), "1000"));
    CHECK(!strcmp(topic_config_value(t, "cleanup.policy"), "compact"));
    CHECK(topic_config_value(t, "segment.bytes") == NULL);
    topic_config_kv dup[2] = {{"a", "1"}, {"a", "2"}};
    CHECK_EQ(topic_table_create(&tt, "u", 1, 1, dup, 2, false, NULL), AL_EINVAL);
    CHECK(topic_table_find(&tt, "u", 1) == NULL);
    CHECK_EQ(topic_table_set_config(&tt, "t", "segment.bytes", "4096"), 0);
    CHECK_EQ(topic_table_set_config(&tt, "t", "retention.ms", "5"), 0);
    CHECK_EQ(topic_table_set_config(&tt, "t", "cleanup.policy", NULL), 0);
    CHECK_EQ(topic_table_set_config(&tt, "t", "not.there", NULL), 0);
    CHECK_EQ(topic_table_set_config(&tt, "x", "a", "b"), AL_ENOTFOUND);
    t = topic_table_find(&tt, "t", 1);
    CHECK_EQ(t->n_configs, 2);
    CHECK(!strcmp(topic_config_value(t, "retention.ms"), "5"));
    CHECK(!strcmp(topic_config_value(t, "segment.bytes"), "4096"));
    CHECK(topic_config_value(t, "cleanup.policy") == NULL);
    topic_config_kv one = {"max.message.bytes", "100"};
    CHECK_EQ(topic_table_replace_configs(&tt, "t", &one, 1), 0);
    t = topic_table_find(&tt, "t", 1);
    CHECK_EQ(t->n_configs, 1);
    CHECK(topic_config_value(t, "retention.ms") == NULL);
    CHECK_EQ(topic_table_replace_configs(&tt, "t", NULL, 0), 0);
    CHECK_EQ(topic_table_find(&tt, "t", 1)->n_configs, 0);
    topic_table_free(&tt);
    io_destroy(x);
}

TEST(save_reload_and_replica)
{
    const char *dir = subdir("persist");
    io *x = make_io();
    topic_table tt;
    CHECK_EQ(topic_table_init(&tt, x, dir), 0);
    CHECK_EQ(topic_table_load(&tt), 0); /* no file: empty */
    CHECK_EQ(tt.n, 0);
    topic_config_kv kv = {"cleanup.policy", "compact"};
    CHECK_EQ(topic_table_create(&tt, TOPIC_CONSUMER_OFFSETS, 16, 1, &kv, 1, true, NULL), 0);
    CHECK_EQ(topic_table_create(&tt, "orders", 6, 1, NULL, 0, false, NULL), 0);
    CHECK_EQ(topic_table_set_config(&tt, "orders", "retention.ms", "\"quoted\"\\n"), 0);
    CHECK_EQ(topic_table_save(&tt), 0);

    topic_table back;
    CHECK_EQ(topic_table_init(&back, x, dir), 0);
    CHECK_EQ(topic_table_load(&back), 0);
    CHECK_EQ(back.n, 2);
    CHECK_EQ(back.version, tt.version);
    for (int32_t i = 0; i < 2; i++) {
        const topic *a = topic_table_at(&tt, i), *b = topic_table_at(&back, i);
        CHECK(!strcmp(a->name, b->name));
        CHECK_MEM(a->id, b->id, 16);
        CHECK_EQ(a->partitions, b->partitions);
        CHECK_EQ(a->internal, b->internal);
        CHECK_EQ(a->created_ms, b->created_ms);
        CHECK_EQ(a->n_configs, b->n_configs);
    }
    CHECK(!strcmp(topic_config_value(topic_table_find(&back, "orders", 6), "retention.ms"),
                  "\"quoted\"\\n"));
    CHECK(
        topic_table_find(&back, TOPIC_CONSUMER_OFFSETS, strlen(TOPIC_CONSUMER_OFFSETS))->internal);

    /* A replica decodes the encoded table; a second decode replaces everything. */
    uint8_t *buf;
    size_t len;
    CHECK_EQ(topic_table_encode(&tt, &buf, &len), 0);
    topic_table rep;
    CHECK_EQ(topic_table_init(&rep, NULL, NULL), 0);
    CHECK_EQ(topic_table_create(&rep, "stale", 1, 1, NULL, 0, false, NULL), 0);
    CHECK_EQ(topic_table_decode(&rep, buf, len), 0);
    CHECK_EQ(rep.n, 2);
    CHECK(topic_table_find(&rep, "stale", 5) == NULL);
    CHECK_EQ(topic_table_save(&rep), AL_EINVAL);

    /* Corruption anywhere is refused and leaves the target untouched. */
    uint64_t seed = test_seed();
    for (int i = 0; i < 200; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t at = (size_t)(seed >> 33) % len;
        uint8_t saved = buf[at];
        buf[at] ^= (uint8_t)(1u << ((seed >> 20) & 7));
        CHECK(topic_table_decode(&rep, buf, len) < 0);
        buf[at] = saved;
        CHECK_EQ(rep.n, 2);
    }
    CHECK(topic_table_decode(&rep, buf, len - 1) < 0);
    free(buf);

    /* A corrupt file fails the load loudly instead of starting with no topics. */
    char path[1100];
    snprintf(path, sizeof(path), "%s/topics.json", dir);
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK_EQ(pwrite(fd, "X", 1, 40), 1);
    close(fd);
    topic_table bad;
    CHECK_EQ(topic_table_init(&bad, x, dir), 0);
    CHECK_EQ(topic_table_load(&bad), AL_ECORRUPT);
    CHECK_EQ(bad.n, 0);

    topic_table_free(&bad);
    topic_table_free(&rep);
    topic_table_free(&back);
    topic_table_free(&tt);
    io_destroy(x);
}

TEST(partition_shards)
{
    uint8_t id[16];
    uint64_t seed = test_seed() | 1;
    int counts[4] = {0};
    for (int t = 0; t < 50; t++) {
        for (int i = 0; i < 16; i++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            id[i] = (uint8_t)seed;
        }
        for (int32_t p = 0; p < 40; p++) {
            uint32_t s = topic_partition_shard(id, p, 4);
            CHECK(s < 4);
            CHECK_EQ(s, topic_partition_shard(id, p, 4)); /* stable */
            CHECK_EQ(topic_partition_shard(id, p, 1), 0);
            counts[s]++;
            /* Consistent: growing from 4 to 5 shards moves a partition only to the new one. */
            uint32_t s5 = topic_partition_shard(id, p, 5);
            CHECK(s5 == s || s5 == 4);
        }
    }
    for (int s = 0; s < 4; s++) CHECK(counts[s] > 2000 / 4 / 2); /* roughly even */
}

static topic_assignment mk_assign(int n, int32_t first, uint16_t shard)
{
    topic_assignment a;
    memset(&a, 0, sizeof(a));
    a.n = (int16_t)n;
    for (int i = 0; i < n; i++) {
        a.nodes[i] = first + i;
        a.shards[i] = (uint16_t)(shard + i);
    }
    return a;
}

TEST(assignments)
{
    topic_table tt;
    CHECK_EQ(topic_table_init(&tt, NULL, NULL), 0);
    topic_assignment as[3] = {mk_assign(3, 1, 0), mk_assign(3, 2, 1), mk_assign(3, 3, 2)};
    uint8_t id[16] = {1, 2, 3, 4, 5, 6, 0x47, 8, 0x89, 10, 11, 12, 13, 14, 15, 16};
    topic_spec s = {.name = "rep", .partitions = 3, .replication_factor = 3, .id = id,
                    .created_ms = 1234, .assign = as};
    CHECK_EQ(topic_table_create_spec(&tt, &s), 0);
    /* Invalid assignments are refused and leave nothing behind. */
    topic_assignment dup = mk_assign(2, 5, 0);
    dup.nodes[1] = 5;
    topic_assignment bad[3] = {as[0], dup, as[2]};
    topic_spec s2 = s;
    s2.name = "rep2";
    s2.id = NULL;
    s2.assign = bad;
    CHECK_EQ(topic_table_create_spec(&tt, &s2), AL_EINVAL);
    topic_assignment none = mk_assign(0, 0, 0), neg = mk_assign(1, -1, 0);
    CHECK(!topic_assignment_valid(&none));
    CHECK(!topic_assignment_valid(&neg));
    CHECK(!topic_assignment_valid(&dup));
    CHECK_EQ(tt.n, 1);
    const topic *t = topic_table_find(&tt, "rep", 3);
    CHECK_EQ(t->created_ms, 1234);
    CHECK_EQ(t->assign[1].nodes[0], 2);
    /* Local shard: a replica gets its stored shard, others -1. */
    CHECK_EQ(topic_partition_local_shard(t, 0, 2, 8), 1);
    CHECK_EQ(topic_partition_local_shard(t, 0, 9, 8), -1);
    CHECK_EQ(topic_partition_local_shard(t, 2, 5, 2), 0); /* stored 4 folded into 2 shards */
    topic_assignment got;
    topic_partition_assignment(t, 2, 77, 4, &got);
    CHECK_EQ(got.n, 3);
    CHECK_EQ(got.nodes[0], 3);
    /* Growing needs assignments for the new partitions; moves replace one partition. */
    CHECK_EQ(topic_table_add_partitions(&tt, "rep", 5), AL_EINVAL);
    topic_assignment more[2] = {mk_assign(3, 4, 0), mk_assign(3, 5, 0)};
    CHECK_EQ(topic_table_add_partitions_assigned(&tt, "rep", 5, more), 0);
    t = topic_table_find(&tt, "rep", 3);
    CHECK_EQ(t->partitions, 5);
    CHECK_EQ(t->assign[4].nodes[2], 7);
    topic_assignment mv = mk_assign(2, 10, 3);
    CHECK_EQ(topic_table_set_assignment(&tt, "rep", 4, &mv), 0);
    CHECK_EQ(topic_table_set_assignment(&tt, "rep", 5, &mv), AL_ERANGE);
    CHECK_EQ(topic_table_set_assignment(&tt, "nope", 0, &mv), AL_ENOTFOUND);
    CHECK_EQ(topic_table_set_assignment(&tt, "rep", 0, &dup), AL_EINVAL);
    /* The single-node form: no stored assignment, replicas [self], hashed shard. */
    CHECK_EQ(topic_table_create(&tt, "plain", 4, 1, NULL, 0, false, NULL), 0);
    const topic *pl = topic_table_find(&tt, "plain", 5);
    CHECK(pl->assign == NULL);
    CHECK_EQ(topic_table_set_assignment(&tt, "plain", 0, &mv), AL_EINVAL);
    CHECK_EQ(topic_table_add_partitions_assigned(&tt, "plain", 5, more), AL_EINVAL);
    for (int32_t p = 0; p < 4; p++) {
        topic_partition_assignment(pl, p, 7, 3, &got);
        CHECK_EQ(got.n, 1);
        CHECK_EQ(got.nodes[0], 7);
        CHECK_EQ(got.shards[0], topic_partition_shard(pl->id, p, 3));
        CHECK_EQ(topic_partition_local_shard(pl, p, 7, 3), topic_partition_shard(pl->id, p, 3));
    }
    /* The encoded table (what shard 0 ships, and topics.json) carries the assignments. */
    uint8_t *buf;
    size_t len;
    CHECK_EQ(topic_table_encode(&tt, &buf, &len), 0);
    topic_table rep;
    CHECK_EQ(topic_table_init(&rep, NULL, NULL), 0);
    CHECK_EQ(topic_table_decode(&rep, buf, len), 0);
    free(buf);
    const topic *r = topic_table_find(&rep, "rep", 3);
    CHECK(r && r->assign);
    CHECK_EQ(r->partitions, 5);
    CHECK_MEM(r->assign, topic_table_find(&tt, "rep", 3)->assign, 5 * sizeof(topic_assignment));
    CHECK(topic_table_find(&rep, "plain", 5)->assign == NULL);
    topic_table_free(&rep);
    topic_table_free(&tt);
}

/* A topics.json written before assignments existed (format of the previous release). */
TEST(old_file_loads)
{
    const char *json = "{\"format\":1,\"topics\":[{\"configs\":{},\"created_ms\":5,\"id\":"
                       "\"0123456789abcdef0123456789abcdef\",\"internal\":false,\"name\":\"old\","
                       "\"partitions\":3,\"replication_factor\":1}],\"version\":4}";
    char head[96];
    int hn = snprintf(head, sizeof(head), "ailurus-topics 1 %08x %zu\n",
                      crc32c(0, json, strlen(json)), strlen(json));
    char buf[1024];
    memcpy(buf, head, (size_t)hn);
    memcpy(buf + hn, json, strlen(json));
    topic_table tt;
    CHECK_EQ(topic_table_init(&tt, NULL, NULL), 0);
    CHECK_EQ(topic_table_decode(&tt, (const uint8_t *)buf, (size_t)hn + strlen(json)), 0);
    const topic *t = topic_table_find(&tt, "old", 3);
    CHECK(t && t->assign == NULL);
    CHECK_EQ(t->partitions, 3);
    CHECK_EQ(tt.version, 4);
    CHECK_EQ(topic_partition_local_shard(t, 2, 0, 4), topic_partition_shard(t->id, 2, 4));
    topic_table_free(&tt);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
