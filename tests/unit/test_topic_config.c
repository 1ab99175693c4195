/* test_topic_config.c — the topic config table: every key's default parses and matches the
 * typed struct, invalid values are refused with a message naming the key, unknown keys,
 * IncrementalAlterConfigs list operations, AlterConfigs replace, cross-key rules, broker
 * synonyms in resolve and describe, and the JSON round trip. */
#include "test.h"

#include "cluster/topic_config.h"
#include "config/config.h"

/* Kafka 3.8's topic-level keys (kafka-configs --describe --all on a topic lists these). */
static const char *const kafka_keys[] = {
    "cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
    "compression.zstd.level", "delete.retention.ms", "file.delete.delay.ms", "flush.messages",
    "flush.ms", "follower.replication.throttled.replicas", "index.interval.bytes",
    "leader.replication.throttled.replicas", "local.retention.bytes", "local.retention.ms",
    "max.compaction.lag.ms", "max.message.bytes", "message.downconversion.enable",
    "message.format.version", "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms", "message.timestamp.difference.max.ms",
    "message.timestamp.type", "min.cleanable.dirty.ratio", "min.compaction.lag.ms",
    "min.insync.replicas", "preallocate", "remote.storage.enable", "retention.bytes",
    "retention.ms", "segment.bytes", "segment.index.bytes", "segment.jitter.ms", "segment.ms",
    "unclean.leader.election.enable"};

TEST(table_is_sorted_complete_and_defaults_valid)
{
    size_t n;
    const struct topic_config_def *d = topic_config_defs(&n);
    CHECK_EQ(n, AL_ARRAY_SIZE(kafka_keys));
    for (size_t i = 0; i < n; i++) {
        if (i) CHECK(strcmp(d[i - 1].name, d[i].name) < 0);
        CHECK(topic_config_find(kafka_keys[i]) == &d[i]);
        char msg[256];
        CHECK_EQ(topic_config_check(d[i].name, d[i].default_value, msg, sizeof(msg)), 0);
        CHECK(d[i].doc && d[i].doc[0]);
        CHECK(d[i].type >= 1 && d[i].type <= 7);
        if (d[i].synonym) CHECK(broker_config_find(d[i].synonym) != NULL);
    }
    CHECK(topic_config_find("retention.hours") == NULL);
    CHECK(topic_config_find("") == NULL);
    size_t nb;
    const struct broker_config_def *b = broker_config_defs(&nb);
    for (size_t i = 1; i < nb; i++) CHECK(strcmp(b[i - 1].name, b[i].name) < 0);
    /* A broker key is writable exactly when a live key of the config table carries its name,
     * and every Kafka name of the config table is a broker key. */
    for (size_t i = 0; i < nb; i++) {
        const struct config_key *k = config_find_kafka(b[i].name);
        if ((k && k->live) == b[i].read_only) fprintf(stderr, "%s\n", b[i].name);
        CHECK_EQ(k && k->live, !b[i].read_only);
    }
    for (size_t i = 0; i < config_key_count; i++)
        if (config_keys[i].kafka) CHECK(broker_config_find(config_keys[i].kafka) != NULL);
}

TEST(broker_value_checks)
{
    char msg[256];
    CHECK_EQ(broker_config_check("log.retention.ms", "-5", msg, sizeof(msg)), AL_EINVAL);
    CHECK(strstr(msg, "Invalid value -5 for configuration log.retention.ms"));
    CHECK_EQ(broker_config_check("log.retention.ms", "100", msg, sizeof(msg)), 0);
    CHECK_EQ(broker_config_check("log.cleanup.policy", "delete,bogus", msg, sizeof(msg)),
             AL_EINVAL);
    CHECK(strstr(msg, "log.cleanup.policy") && strstr(msg, "delete, compact"));
    CHECK_EQ(broker_config_check("log.message.timestamp.type", "Now", msg, sizeof(msg)),
             AL_EINVAL);
    CHECK_EQ(broker_config_check("num.partitions", "x", msg, sizeof(msg)), 0); /* no synonym */
}

TEST(default_typed_values)
{
    struct topic_configs c;
    topic_config_defaults(&c);
    CHECK_EQ(c.cleanup_policy, TOPIC_CLEANUP_DELETE);
    CHECK_EQ(c.compression_type, TOPIC_COMPRESSION_PRODUCER);
    CHECK_EQ(c.compression_gzip_level, -1);
    CHECK_EQ(c.compression_lz4_level, 9);
    CHECK_EQ(c.compression_zstd_level, 3);
    CHECK_EQ(c.delete_retention_ms, 86400000);
    CHECK_EQ(c.file_delete_delay_ms, 60000);
    CHECK_EQ(c.flush_messages, INT64_MAX);
    CHECK_EQ(c.flush_ms, INT64_MAX);
    CHECK_EQ(c.index_interval_bytes, 4096);
    CHECK_EQ(c.local_retention_bytes, -2);
    CHECK_EQ(c.local_retention_ms, -2);
    CHECK_EQ(c.max_compaction_lag_ms, INT64_MAX);
    CHECK_EQ(c.max_message_bytes, 1048588);
    CHECK_EQ(c.message_downconversion_enable, 1);
    CHECK_EQ(c.message_timestamp_after_max_ms, INT64_MAX);
    CHECK_EQ(c.message_timestamp_before_max_ms, INT64_MAX);
    CHECK_EQ(c.message_timestamp_difference_max_ms, INT64_MAX);
    CHECK_EQ(c.message_timestamp_type, TOPIC_TIMESTAMP_CREATE_TIME);
    CHECK(c.min_cleanable_dirty_ratio == 0.5);
    CHECK_EQ(c.min_compaction_lag_ms, 0);
    CHECK_EQ(c.min_insync_replicas, 1);
    CHECK_EQ(c.preallocate, 0);
    CHECK_EQ(c.remote_storage_enable, 0);
    CHECK_EQ(c.retention_bytes, -1);
    CHECK_EQ(c.retention_ms, 604800000);
    CHECK_EQ(c.segment_bytes, 1073741824);
    CHECK_EQ(c.segment_index_bytes, 10485760);
    CHECK_EQ(c.segment_jitter_ms, 0);
    CHECK_EQ(c.segment_ms, 604800000);
    CHECK_EQ(c.unclean_leader_election_enable, 0);
}

TEST(invalid_values_are_refused_with_a_message)
{
    static const struct topic_config_pair bad[] = {
        {"cleanup.policy", "delete,shred"}, {"cleanup.policy", "delete,,compact"},
        {"compression.type", "brotli"}, {"compression.type", "GZIP"},
        {"compression.gzip.level", "0"}, {"compression.lz4.level", "18"},
        {"compression.zstd.level", "23"}, {"delete.retention.ms", "-1"},
        {"flush.messages", "0"}, {"follower.replication.throttled.replicas", "1:x"},
        {"leader.replication.throttled.replicas", "0:1,*"}, {"local.retention.ms", "-3"},
        {"max.compaction.lag.ms", "0"}, {"max.message.bytes", "2147483648"},
        {"message.downconversion.enable", "yes"}, {"message.format.version", "three"},
        {"message.timestamp.type", "createtime"}, {"min.cleanable.dirty.ratio", "1.5"},
        {"min.cleanable.dirty.ratio", "nan"}, {"min.insync.replicas", "0"},
        {"preallocate", ""}, {"retention.bytes", "12abc"}, {"retention.ms", "-2"},
        {"retention.ms", "99999999999999999999"}, {"segment.bytes", "13"},
        {"segment.index.bytes", "3"}, {"segment.ms", "0"}, {"segment.jitter.ms", "-5"},
        {"unclean.leader.election.enable", "1"}, {"index.interval.bytes", "-1"},
    };
    for (size_t i = 0; i < AL_ARRAY_SIZE(bad); i++) {
        char msg[256] = "";
        int rc = topic_config_check(bad[i].key, bad[i].value, msg, sizeof(msg));
        if (rc != AL_EINVAL) fprintf(stderr, "    accepted %s=%s\n", bad[i].key, bad[i].value);
        CHECK_EQ(rc, AL_EINVAL);
        CHECK(strstr(msg, bad[i].key) != NULL);
    }
    char msg[256];
    CHECK_EQ(topic_config_check("message.timestamp.type", "x", msg, sizeof(msg)), AL_EINVAL);
    CHECK(strstr(msg, "CreateTime, LogAppendTime") != NULL);
    CHECK_EQ(topic_config_check("no.such.key", "1", msg, sizeof(msg)), AL_ENOTFOUND);
    CHECK(strstr(msg, "no.such.key") != NULL);
    static const struct topic_config_pair good[] = {
        {"cleanup.policy", " compact , delete "}, {"cleanup.policy", ""},
        {"retention.ms", " -1 "}, {"retention.bytes", "-7"}, {"preallocate", "TRUE"},
        {"leader.replication.throttled.replicas", "*"},
        {"follower.replication.throttled.replicas", "0:1, 1:2"},
        {"message.format.version", "2.8"}, {"message.format.version", "0.10.2-IV0"},
        {"min.cleanable.dirty.ratio", "0"}, {"segment.bytes", "14"},
        {"message.timestamp.type", "LogAppendTime"}, {"compression.zstd.level", "-131072"},
    };
    for (size_t i = 0; i < AL_ARRAY_SIZE(good); i++)
        CHECK_EQ(topic_config_check(good[i].key, good[i].value, NULL, 0), 0);
}

TEST(resolve_overrides_broker_synonyms_and_cross_rules)
{
    struct topic_config_pair t[] = {{"retention.ms", "1000"}, {"cleanup.policy", "compact,delete"},
                                    {"message.timestamp.type", "LogAppendTime"}};
    struct topic_config_pair b[] = {{"log.retention.ms", "5000"}, {"log.segment.bytes", "4096"},
                                    {"some.unrelated.key", "x"}};
    struct topic_configs c;
    char msg[256];
    CHECK_EQ(topic_config_resolve(t, 3, b, 3, &c, msg, sizeof(msg)), 0);
    CHECK_EQ(c.retention_ms, 1000); /* topic beats broker */
    CHECK_EQ(c.segment_bytes, 4096); /* broker beats default */
    CHECK_EQ(c.cleanup_policy, TOPIC_CLEANUP_DELETE | TOPIC_CLEANUP_COMPACT);
    CHECK_EQ(c.message_timestamp_type, TOPIC_TIMESTAMP_LOG_APPEND_TIME);
    struct topic_config_pair lag[] = {{"min.compaction.lag.ms", "10"},
                                      {"max.compaction.lag.ms", "5"}};
    CHECK_EQ(topic_config_resolve(lag, 2, NULL, 0, &c, msg, sizeof(msg)), AL_EINVAL);
    CHECK(strstr(msg, "min.compaction.lag.ms"));
    struct topic_config_pair rs[] = {{"remote.storage.enable", "true"}, {"retention.ms", "100"},
                                     {"local.retention.ms", "200"}};
    CHECK_EQ(topic_config_resolve(rs, 3, NULL, 0, &c, msg, sizeof(msg)), AL_EINVAL);
    rs[2].value = "50";
    CHECK_EQ(topic_config_resolve(rs, 3, NULL, 0, &c, msg, sizeof(msg)), 0);
    struct topic_config_pair unk[] = {{"retention.hours", "1"}};
    CHECK_EQ(topic_config_resolve(unk, 1, NULL, 0, &c, msg, sizeof(msg)), AL_ENOTFOUND);
}

TEST(incremental_alter_set_delete_append_subtract)
{
    struct topic_config_set s;
    topic_config_set_init(&s);
    char msg[256];
    struct topic_config_alter_op ops1[] = {
        {"retention.ms", "60000", TOPIC_CONFIG_OP_SET},
        {"cleanup.policy", "compact", TOPIC_CONFIG_OP_APPEND},
        {"leader.replication.throttled.replicas", "0:1,1:1", TOPIC_CONFIG_OP_SET}};
    CHECK_EQ(topic_config_alter_incremental(&s, ops1, 3, false, msg, sizeof(msg)), 0);
    CHECK(!strcmp(topic_config_set_get(&s, "retention.ms"), "60000"));
    /* APPEND starts from the default "delete" */
    CHECK(!strcmp(topic_config_set_get(&s, "cleanup.policy"), "delete,compact"));
    struct topic_config_alter_op ops2[] = {
        {"cleanup.policy", "delete,compact", TOPIC_CONFIG_OP_APPEND}, /* no duplicates */
        {"leader.replication.throttled.replicas", "0:1", TOPIC_CONFIG_OP_SUBTRACT},
        {"retention.ms", NULL, TOPIC_CONFIG_OP_DELETE}};
    CHECK_EQ(topic_config_alter_incremental(&s, ops2, 3, false, msg, sizeof(msg)), 0);
    CHECK(!strcmp(topic_config_set_get(&s, "cleanup.policy"), "delete,compact"));
    CHECK(!strcmp(topic_config_set_get(&s, "leader.replication.throttled.replicas"), "1:1"));
    CHECK(topic_config_set_get(&s, "retention.ms") == NULL);
    struct topic_config_alter_op sub[] = {{"cleanup.policy", "delete", TOPIC_CONFIG_OP_SUBTRACT}};
    CHECK_EQ(topic_config_alter_incremental(&s, sub, 1, false, msg, sizeof(msg)), 0);
    CHECK(!strcmp(topic_config_set_get(&s, "cleanup.policy"), "compact"));
    /* APPEND on a non-list key is refused; nothing changes (all or nothing) */
    struct topic_config_alter_op bad[] = {{"segment.ms", "100", TOPIC_CONFIG_OP_SET},
                                          {"retention.ms", "5", TOPIC_CONFIG_OP_APPEND}};
    CHECK_EQ(topic_config_alter_incremental(&s, bad, 2, false, msg, sizeof(msg)), AL_EINVAL);
    CHECK(strstr(msg, "retention.ms"));
    CHECK(topic_config_set_get(&s, "segment.ms") == NULL);
    struct topic_config_alter_op unk[] = {{"bogus", "1", TOPIC_CONFIG_OP_SET}};
    CHECK_EQ(topic_config_alter_incremental(&s, unk, 1, false, msg, sizeof(msg)), AL_ENOTFOUND);
    unk[0].op = TOPIC_CONFIG_OP_APPEND;
    CHECK_EQ(topic_config_alter_incremental(&s, unk, 1, false, msg, sizeof(msg)), AL_ENOTFOUND);
    /* DELETE of an unknown name is a no-op, and clears a stale one loaded from disk */
    unk[0].op = TOPIC_CONFIG_OP_DELETE;
    CHECK_EQ(topic_config_alter_incremental(&s, unk, 1, false, msg, sizeof(msg)), 0);
    struct topic_config_set stale;
    CHECK_EQ(topic_config_set_from_json(&stale, "{\"bogus\":\"1\"}", 13), 0);
    CHECK_EQ(topic_config_alter_incremental(&stale, unk, 1, false, msg, sizeof(msg)), 0);
    CHECK_EQ(stale.n, 0);
    topic_config_set_free(&stale);
    struct topic_config_alter_op dup[] = {{"segment.ms", "100", TOPIC_CONFIG_OP_SET},
                                          {"segment.ms", "200", TOPIC_CONFIG_OP_SET}};
    CHECK_EQ(topic_config_alter_incremental(&s, dup, 2, false, msg, sizeof(msg)), AL_EINVAL);
    struct topic_config_alter_op badv[] = {{"cleanup.policy", "shred", TOPIC_CONFIG_OP_APPEND}};
    CHECK_EQ(topic_config_alter_incremental(&s, badv, 1, false, msg, sizeof(msg)), AL_EINVAL);
    /* validate_only leaves the set alone */
    struct topic_config_alter_op vo[] = {{"segment.ms", "100", TOPIC_CONFIG_OP_SET}};
    CHECK_EQ(topic_config_alter_incremental(&s, vo, 1, true, msg, sizeof(msg)), 0);
    CHECK(topic_config_set_get(&s, "segment.ms") == NULL);
    /* a cross-key conflict created by a SET is refused */
    struct topic_config_alter_op cx[] = {{"min.compaction.lag.ms", "10", TOPIC_CONFIG_OP_SET},
                                         {"max.compaction.lag.ms", "9", TOPIC_CONFIG_OP_SET}};
    CHECK_EQ(topic_config_alter_incremental(&s, cx, 2, false, msg, sizeof(msg)), AL_EINVAL);
    topic_config_set_free(&s);
}

TEST(alter_configs_replaces_everything)
{
    struct topic_config_set s;
    topic_config_set_init(&s);
    char msg[256];
    struct topic_config_pair a[] = {{"retention.ms", "1"}, {"segment.ms", "2"}};
    CHECK_EQ(topic_config_replace(&s, a, 2, false, msg, sizeof(msg)), 0);
    CHECK_EQ(s.n, 2);
    struct topic_config_pair b[] = {{"max.message.bytes", "100"}, {"retention.ms", NULL}};
    CHECK_EQ(topic_config_replace(&s, b, 2, false, msg, sizeof(msg)), 0);
    CHECK_EQ(s.n, 1);
    CHECK(!strcmp(topic_config_set_get(&s, "max.message.bytes"), "100"));
    struct topic_config_pair c[] = {{"retention.ms", "5"}, {"nope", "1"}};
    CHECK_EQ(topic_config_replace(&s, c, 2, false, msg, sizeof(msg)), AL_ENOTFOUND);
    CHECK_EQ(s.n, 1);
    topic_config_set_free(&s);
}

TEST(describe_sources_and_synonyms)
{
    struct topic_config_set s;
    topic_config_set_init(&s);
    struct topic_config_alter_op o[] = {{"retention.ms", "1234", TOPIC_CONFIG_OP_SET}};
    CHECK_EQ(topic_config_alter_incremental(&s, o, 1, false, NULL, 0), 0);
    /* log.retention.ms set through the admin API / AlterConfigs, log.segment.bytes in YAML. */
    al_config cfg;
    config_init(&cfg);
    CHECK_EQ(config_change(&cfg, NULL, "log_retention_ms", "999", NULL, 0), 0);
    CHECK_EQ(config_set(&cfg, "log_segment_size", "1M", CONFIG_SRC_FILE, NULL, 0), 0);
    struct broker_config_defaults bd;
    broker_config_defaults_build(&cfg, &bd);
    struct topic_config_entry e;
    topic_config_describe(&s, &bd, topic_config_find("retention.ms"), &e);
    CHECK(!strcmp(e.value, "1234"));
    CHECK_EQ(e.source, TOPIC_CONFIG_SOURCE_TOPIC);
    CHECK(!e.is_default && !e.read_only && !e.sensitive);
    CHECK_EQ(e.type, TOPIC_CONFIG_TYPE_LONG);
    CHECK_EQ(e.nsynonyms, 3);
    CHECK(!strcmp(e.synonyms[1].name, "log.retention.ms"));
    CHECK(!strcmp(e.synonyms[1].value, "999"));
    CHECK_EQ(e.synonyms[1].source, TOPIC_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER);
    topic_config_describe(&s, &bd, topic_config_find("segment.bytes"), &e);
    CHECK(!strcmp(e.value, "1048576"));
    CHECK_EQ(e.source, TOPIC_CONFIG_SOURCE_STATIC_BROKER);
    /* A broker value at its default is not a synonym of its own. */
    topic_config_describe(&s, &bd, topic_config_find("max.message.bytes"), &e);
    CHECK_EQ(e.source, TOPIC_CONFIG_SOURCE_DEFAULT);
    CHECK_EQ(e.nsynonyms, 1);
    CHECK(!strcmp(e.synonyms[0].name, "message.max.bytes"));
    /* segment.bytes: the broker's own default (128 MiB), not Kafka's 1 GiB, source DEFAULT. */
    config_init(&cfg);
    broker_config_defaults_build(&cfg, &bd);
    topic_config_describe(&s, &bd, topic_config_find("segment.bytes"), &e);
    CHECK(!strcmp(e.value, "134217728") && e.source == TOPIC_CONFIG_SOURCE_DEFAULT);
    CHECK_EQ(e.nsynonyms, 1);
    CHECK_EQ(config_change(&cfg, NULL, "log_retention_ms", "999", NULL, 0), 0);
    CHECK_EQ(config_set(&cfg, "log_segment_size", "1M", CONFIG_SRC_FILE, NULL, 0), 0);
    broker_config_defaults_build(&cfg, &bd);
    /* The typed resolution takes the broker value when the topic has no override. */
    struct topic_configs tc;
    struct topic_config_set none;
    topic_config_set_init(&none);
    CHECK_EQ(topic_config_set_resolve(&none, bd.pairs, bd.n, &tc, NULL, 0), 0);
    CHECK_EQ(tc.retention_ms, 999);
    CHECK_EQ(tc.segment_bytes, 1048576);
    CHECK_EQ(tc.max_message_bytes, 1048588);
    CHECK_EQ(config_change(&cfg, NULL, "log_cleanup_policy", "delete, compact", NULL, 0), 0);
    CHECK_EQ(config_change(&cfg, NULL, "log_message_timestamp_type", "logappendtime", NULL, 0),
             0);
    broker_config_defaults_build(&cfg, &bd);
    CHECK_EQ(topic_config_set_resolve(&none, bd.pairs, bd.n, &tc, NULL, 0), 0);
    CHECK_EQ(tc.cleanup_policy, TOPIC_CLEANUP_DELETE | TOPIC_CLEANUP_COMPACT);
    CHECK_EQ(tc.message_timestamp_type, TOPIC_TIMESTAMP_LOG_APPEND_TIME);
    topic_config_describe(&s, &bd, topic_config_find("cleanup.policy"), &e);
    CHECK(!strcmp(e.value, "compact,delete"));
    CHECK_EQ(e.source, TOPIC_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER);
    topic_config_describe(&s, NULL, topic_config_find("cleanup.policy"), &e);
    CHECK(!strcmp(e.value, "delete"));
    CHECK(e.is_default);
    CHECK_EQ(e.source, TOPIC_CONFIG_SOURCE_DEFAULT);
    CHECK_EQ(e.type, TOPIC_CONFIG_TYPE_LIST);
    CHECK_EQ(e.nsynonyms, 1);
    CHECK(!strcmp(e.synonyms[0].name, "log.cleanup.policy"));
    topic_config_set_free(&s);
}

TEST(json_round_trip)
{
    struct topic_config_set s, r;
    topic_config_set_init(&s);
    struct topic_config_alter_op o[] = {{"retention.ms", "1234", TOPIC_CONFIG_OP_SET},
                                        {"cleanup.policy", "compact", TOPIC_CONFIG_OP_SET}};
    CHECK_EQ(topic_config_alter_incremental(&s, o, 2, false, NULL, 0), 0);
    char *js;
    CHECK_EQ(topic_config_set_to_json(&s, &js), 0);
    CHECK(!strcmp(js, "{\"cleanup.policy\":\"compact\",\"retention.ms\":\"1234\"}"));
    CHECK_EQ(topic_config_set_from_json(&r, js, strlen(js)), 0);
    CHECK_EQ(r.n, 2);
    CHECK(!strcmp(topic_config_set_get(&r, "retention.ms"), "1234"));
    struct topic_configs c;
    CHECK_EQ(topic_config_set_resolve(&r, NULL, 0, &c, NULL, 0), 0);
    CHECK_EQ(c.cleanup_policy, TOPIC_CLEANUP_COMPACT);
    free(js);
    topic_config_set_free(&r);
    struct topic_config_set x;
    CHECK_EQ(topic_config_set_from_json(&x, "[1]", 3), AL_ECORRUPT);
    CHECK_EQ(topic_config_set_from_json(&x, "{\"a\":1}", 7), AL_ECORRUPT);
    CHECK_EQ(topic_config_set_from_json(&x, "{\"a\":", 5), AL_ECORRUPT);
    topic_config_set_free(&s);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
