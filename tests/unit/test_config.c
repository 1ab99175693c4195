/* test_config.c — the configuration table, parsers, loaders and their precedence. */
#include "test.h"

#include "config/config.h"

#include <stdlib.h>

static al_config cfg;

TEST(defaults_valid_and_documented)
{
    config_init(&cfg);
    CHECK_EQ(cfg.node_id, 0);
    CHECK(!strcmp(cfg.data_directory, "./data"));
    CHECK(!strcmp(cfg.kafka_addr.host, "0.0.0.0"));
    CHECK_EQ(cfg.kafka_addr.port, 9092);
    CHECK_EQ(cfg.admin_addr.port, 9644);
    CHECK_EQ(cfg.kafka_max_frame_bytes, 100LL * 1024 * 1024);
    CHECK_EQ(cfg.connections_max_idle_ms, 600000);
    CHECK(!cfg.auto_create_topics_enabled);
    for (size_t i = 0; i < config_key_count; i++) {
        CHECK(config_keys[i].doc && strlen(config_keys[i].doc) > 10);
        CHECK(config_find(config_keys[i].name) == &config_keys[i]);
        /* Every value formats to text that parses back to the same value. */
        char buf[1100];
        config_format(&cfg, &config_keys[i], buf, sizeof(buf));
        al_config copy = cfg;
        CHECK_EQ(config_set(&copy, config_keys[i].name, buf, CONFIG_SRC_FLAG, NULL, 0), 0);
        CHECK(!memcmp((char *)&copy + config_keys[i].offset, (char *)&cfg + config_keys[i].offset,
                      config_keys[i].type == CONFIG_STRING ? config_keys[i].size : 8));
    }
}

TEST(set_parses_and_rejects)
{
    char err[512];
    config_init(&cfg);
    CHECK_EQ(config_set(&cfg, "node-id", "7", CONFIG_SRC_FLAG, err, sizeof(err)), 0);
    CHECK_EQ(cfg.node_id, 7);
    CHECK_EQ(config_set(&cfg, "NODE_ID", "-1", CONFIG_SRC_FLAG, err, sizeof(err)), AL_EINVAL);
    CHECK(strstr(err, "node_id") && strstr(err, "[0, 2147483647]"));
    CHECK_EQ(cfg.node_id, 7);
    CHECK_EQ(config_set(&cfg, "node_id", "12abc", CONFIG_SRC_FLAG, err, sizeof(err)), AL_EINVAL);
    CHECK_EQ(config_set(&cfg, "kafka_max_frame_bytes", "1M", CONFIG_SRC_FLAG, err, sizeof(err)),
             0);
    CHECK_EQ(cfg.kafka_max_frame_bytes, 1 << 20);
    CHECK_EQ(config_set(&cfg, "kafka_max_frame_bytes", "64KiB", CONFIG_SRC_FLAG, err, 512), 0);
    CHECK_EQ(cfg.kafka_max_frame_bytes, 65536);
    CHECK_EQ(config_set(&cfg, "kafka_max_frame_bytes", "3G", CONFIG_SRC_FLAG, err, 512),
             AL_EINVAL);
    CHECK_EQ(config_set(&cfg, "kafka_max_frame_bytes", "10X", CONFIG_SRC_FLAG, err, 512),
             AL_EINVAL);
    CHECK_EQ(config_set(&cfg, "log_level", "DEBUG", CONFIG_SRC_FLAG, err, 512), 0);
    CHECK_EQ(cfg.log_level, 1);
    CHECK_EQ(config_set(&cfg, "log_level", "loud", CONFIG_SRC_FLAG, err, 512), AL_EINVAL);
    CHECK(strstr(err, "log_level") && strstr(err, "trace") && strstr(err, "error"));
    CHECK_EQ(config_set(&cfg, "auto_create_topics_enabled", "yes", CONFIG_SRC_FLAG, err, 512), 0);
    CHECK(cfg.auto_create_topics_enabled);
    CHECK_EQ(config_set(&cfg, "auto_create_topics_enabled", "maybe", CONFIG_SRC_FLAG, err, 512),
             AL_EINVAL);
    CHECK_EQ(config_set(&cfg, "kafka_addr", "10.1.2.3:19092", CONFIG_SRC_FLAG, err, 512), 0);
    CHECK(!strcmp(cfg.kafka_addr.host, "10.1.2.3"));
    CHECK_EQ(cfg.kafka_addr.port, 19092);
    CHECK_EQ(config_set(&cfg, "kafka_addr", "[::1]:9093", CONFIG_SRC_FLAG, err, 512), 0);
    CHECK(!strcmp(cfg.kafka_addr.host, "::1"));
    CHECK_EQ(config_set(&cfg, "kafka_addr", "host:0", CONFIG_SRC_FLAG, err, 512), 0);
    CHECK_EQ(config_set(&cfg, "kafka_addr", "host:65536", CONFIG_SRC_FLAG, err, 512), AL_EINVAL);
    CHECK_EQ(config_set(&cfg, "kafka_addr", "host:-1", CONFIG_SRC_FLAG, err, 512), AL_EINVAL);
    CHECK_EQ(config_set(&cfg, "kafka_addr", "host", CONFIG_SRC_FLAG, err, 512), AL_EINVAL);
    CHECK_EQ(config_set(&cfg, "kafka_addr", "", CONFIG_SRC_FLAG, err, 512), AL_EINVAL);
    CHECK_EQ(config_set(&cfg, "no_such_key", "1", CONFIG_SRC_FLAG, err, 512), AL_ENOTFOUND);
    CHECK(strstr(err, "no_such_key"));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(text, f);
    fclose(f);
}

TEST(yaml_loads_and_names_bad_keys)
{
    char path[512], err[512];
    snprintf(path, sizeof(path), "%s/a.yaml", test_tmpdir());
    write_file(path, "# comment\nnode_id: 3\nkafka_addr: 127.0.0.1:19092\n"
                     "data_directory: /tmp/x y\nconnections_max_idle_ms: 250\n");
    config_init(&cfg);
    CHECK_EQ(config_load_yaml(&cfg, path, err, sizeof(err)), 0);
    CHECK_EQ(cfg.node_id, 3);
    CHECK_EQ(cfg.kafka_addr.port, 19092);
    CHECK(!strcmp(cfg.data_directory, "/tmp/x y"));
    CHECK_EQ(cfg.connections_max_idle_ms, 250);

    write_file(path, "ailurus:\n  node_id: 4\n");
    CHECK_EQ(config_load_yaml(&cfg, path, err, sizeof(err)), 0);
    CHECK_EQ(cfg.node_id, 4);

    write_file(path, "node_id: 5\nbogus_key: 1\n");
    CHECK_EQ(config_load_yaml(&cfg, path, err, sizeof(err)), AL_ENOTFOUND);
    CHECK(strstr(err, "bogus_key") && strstr(err, ":2:"));

    write_file(path, "smp: lots\n");
    CHECK_EQ(config_load_yaml(&cfg, path, err, sizeof(err)), AL_EINVAL);
    CHECK(strstr(err, "smp") && strstr(err, "[0, 256]"));

    write_file(path, "node_id: [1, 2]\n");
    CHECK_EQ(config_load_yaml(&cfg, path, err, sizeof(err)), AL_EMALFORMED);
    write_file(path, "- a\n- b\n");
    CHECK_EQ(config_load_yaml(&cfg, path, err, sizeof(err)), AL_EMALFORMED);
    write_file(path, "node_id: : :\n  x: [\n");
    CHECK(config_load_yaml(&cfg, path, err, sizeof(err)) < 0);
    write_file(path, "");
    CHECK_EQ(config_load_yaml(&cfg, path, err, sizeof(err)), 0);
    CHECK_EQ(config_load_yaml(&cfg, "/nonexistent/x.yaml", err, sizeof(err)), -ENOENT);
}

TEST(env_and_precedence)
{
    char path[512], err[512];
    snprintf(path, sizeof(path), "%s/b.yaml", test_tmpdir());
    write_file(path, "node_id: 1\nsmp: 2\nlog_level: warn\n");
    char *envp[] = {"AILURUS_BIN=/x/y", "AILURUS_SMP=3", "AILURUS_LOG_LEVEL=error", "PATH=/bin",
                    NULL};
    config_init(&cfg);
    CHECK_EQ(config_load_env(&cfg, envp, err, sizeof(err)), 0);
    CHECK_EQ(cfg.smp, 3);
    char *bad[] = {"AILURUS_SMP=many", NULL};
    CHECK_EQ(config_load_env(&cfg, bad, err, sizeof(err)), AL_EINVAL);
    CHECK(strstr(err, "AILURUS_SMP") && strstr(err, "smp"));

    /* flags > env > file > --dev > defaults, through the command-line front end. */
    setenv("AILURUS_SMP", "3", 1);
    setenv("AILURUS_NODE_ID", "9", 1);
    char *argv[] = {"start", "--dev", "--config", path, "--node-id", "5", "--set",
                    "connections_max_idle_ms=1234", NULL};
    CHECK_EQ(config_from_args(&cfg, 8, argv, 1, "start"), 0);
    unsetenv("AILURUS_SMP");
    unsetenv("AILURUS_NODE_ID");
    CHECK_EQ(cfg.node_id, 5);     /* flag over env and file */
    CHECK_EQ(cfg.smp, 3);         /* env over file and --dev */
    CHECK_EQ(cfg.log_level, 3);   /* file over default */
    CHECK(cfg.developer_mode);    /* --dev */
    CHECK(!strcmp(cfg.kafka_addr.host, "127.0.0.1"));
    CHECK_EQ(cfg.connections_max_idle_ms, 1234);
    CHECK(!strcmp(cfg.advertised_kafka_addr.host, "127.0.0.1")); /* derived */
    CHECK_EQ(cfg.advertised_kafka_addr.port, 9092);

    char *argv2[] = {"start", "--kafka-addr", "0.0.0.0:7777", "--data-dir", "/tmp/dd", NULL};
    CHECK_EQ(config_from_args(&cfg, 5, argv2, 1, "start"), 0);
    CHECK(!strcmp(cfg.advertised_kafka_addr.host, "127.0.0.1"));
    CHECK_EQ(cfg.advertised_kafka_addr.port, 7777);
    CHECK(!strcmp(cfg.data_directory, "/tmp/dd"));
    CHECK(cfg.smp >= 1);
    CHECK(cfg.memory > 0);

    /* Issue 7's spelling of the seed list: --seeds is --seed-servers. */
    char *argv5[] = {"start", "--seeds", "127.0.0.1:33145,127.0.0.1:33146", NULL};
    CHECK_EQ(config_from_args(&cfg, 3, argv5, 1, "start"), 0);
    CHECK(!strcmp(cfg.seed_servers, "127.0.0.1:33145,127.0.0.1:33146"));

    char *argv3[] = {"start", "--frobnicate", "1", NULL};
    CHECK(config_from_args(&cfg, 3, argv3, 1, "start") < 0);
    char *argv4[] = {"start", "--kafka-conn-max-inflight-bytes", "1G",
                     "--kafka-shard-max-inflight-bytes", "512M", NULL};
    CHECK_EQ(config_from_args(&cfg, 5, argv4, 1, "start"), AL_EINVAL);
}

TEST(cluster_changes_kafka_names_and_the_admin_file)
{
    char err[512];
    al_config start, c;
    config_init(&start);
    CHECK_EQ(config_set(&start, "log_retention_ms", "7200000", CONFIG_SRC_FILE, err, 512), 0);
    c = start;
    /* Kafka names map to keys; broker.id is node.id. */
    CHECK(config_find_kafka("message.max.bytes") == config_find("kafka_batch_max_bytes"));
    CHECK(config_find_kafka("broker.id") == config_find("node_id"));
    CHECK(config_find_kafka("log.retention.hours") == NULL);
    CHECK(config_find("log_segment_size")->live && !config_find("max_connections")->live);
    /* A change is source admin; a reset goes back to the start-up value and its source. */
    CHECK_EQ(config_change(&c, &start, "log_retention_ms", "1000", err, 512), 0);
    size_t idx = (size_t)(config_find("log_retention_ms") - config_keys);
    CHECK_EQ(c.log_retention_ms, 1000);
    CHECK_EQ(c.source[idx], CONFIG_SRC_ADMIN);
    CHECK_EQ(config_change(&c, &start, "log_retention_ms", NULL, err, 512), 0);
    CHECK_EQ(c.log_retention_ms, 7200000);
    CHECK_EQ(c.source[idx], CONFIG_SRC_FILE);
    CHECK_EQ(config_change(&c, &start, "log_retention_ms", "-2", err, 512), AL_EINVAL);
    CHECK(strstr(err, "log_retention_ms"));
    CHECK_EQ(config_change(&c, &start, "nope", "1", err, 512), AL_ENOTFOUND);
    /* log_cleanup_policy takes Kafka's list in any order and prints it one way. */
    static const char *const cases[][2] = {{"delete", "delete"}, {"COMPACT", "compact"},
                                           {"delete, compact", "compact,delete"},
                                           {"compact,delete", "compact,delete"}};
    const struct config_key *cp = config_find("log_cleanup_policy");
    for (size_t i = 0; i < AL_ARRAY_SIZE(cases); i++) {
        char out[64];
        CHECK_EQ(config_change(&c, &start, "log_cleanup_policy", cases[i][0], err, 512), 0);
        config_format(&c, cp, out, sizeof(out));
        CHECK(!strcmp(out, cases[i][1]));
    }
    CHECK_EQ(config_change(&c, &start, "log_cleanup_policy", "", err, 512), AL_EINVAL);
    CHECK_EQ(config_change(&c, &start, "log_cleanup_policy", "delete,sometimes", err, 512),
             AL_EINVAL);
    /* The admin file holds exactly the admin-sourced keys and loads back over the file. */
    io *iop = NULL;
    CHECK_EQ(io_uring_create(&iop, NULL), 0);
    snprintf(c.data_directory, sizeof(c.data_directory), "%s", test_tmpdir());
    CHECK_EQ(config_change(&c, &start, "kafka_batch_max_bytes", "5000", err, 512), 0);
    CHECK_EQ(config_save_admin(iop, &c), 0);
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), CONFIG_ADMIN_FILE);
    al_config back = start;
    CHECK_EQ(config_load_admin(&back, path, err, 512), 0);
    CHECK_EQ(back.kafka_batch_max_bytes, 5000);
    CHECK_EQ(back.log_cleanup_policy, 2); /* compact,delete */
    CHECK_EQ(back.log_retention_ms, 7200000); /* not admin-set: the file's value stays */
    CHECK_EQ(config_save_admin(NULL, &c), 0); /* no io: nothing written */
    io_destroy(iop);
}

/* Cluster mode: the controller's overrides replace the admin layer; env and flags still win;
 * a key dropped from the set goes back; refused keys are skipped and counted. */
TEST(cluster_overrides_replace_admin_layer)
{
    al_config start, out;
    char err[512];
    config_init(&start);
    CHECK_EQ(config_set(&start, "log_retention_ms", "7200000", CONFIG_SRC_FILE, err, 512), 0);
    CHECK_EQ(config_set(&start, "kafka_batch_max_bytes", "3000", CONFIG_SRC_ADMIN, err, 512), 0);
    CHECK_EQ(config_set(&start, "retention_bytes", "999", CONFIG_SRC_ENV, err, 512), 0);
    CHECK_EQ(config_set(&start, "log_segment_ms", "60000", CONFIG_SRC_FLAG, err, 512), 0);
    const struct config_key *kb = config_find("kafka_batch_max_bytes");
    /* No overrides: the admin-sourced key is reset (default), the rest stays. */
    CHECK_EQ(config_with_overrides(&out, &start, NULL, NULL, 0, err, 512), 0);
    al_config def;
    config_init(&def);
    CHECK_EQ(out.kafka_batch_max_bytes, def.kafka_batch_max_bytes);
    CHECK_EQ(out.source[kb - config_keys], CONFIG_SRC_DEFAULT);
    CHECK_EQ(out.log_retention_ms, 7200000);
    CHECK_EQ(out.retention_bytes, 999);
    /* Overrides: set with source ADMIN; env/flag keys keep their values; bad ones skipped. */
    const char *keys[] = {"log_retention_ms", "retention_bytes", "log_segment_ms",
                          "kafka_batch_max_bytes", "no_such_key", "log_cleanup_policy"};
    const char *vals[] = {"1000", "5", "1", "4096", "1", "sometimes"};
    CHECK_EQ(config_with_overrides(&out, &start, keys, vals, 6, err, 512), 2);
    CHECK(strstr(err, "no_such_key") != NULL);
    CHECK_EQ(out.log_retention_ms, 1000);
    CHECK_EQ(out.source[config_find("log_retention_ms") - config_keys], CONFIG_SRC_ADMIN);
    CHECK_EQ(out.kafka_batch_max_bytes, 4096);
    CHECK_EQ(out.retention_bytes, 999);
    CHECK_EQ(out.log_segment_ms, 60000);
    CHECK_EQ(out.log_cleanup_policy, start.log_cleanup_policy);
    /* Idempotent: applying the same set to the result's own start gives the same values. */
    al_config again;
    CHECK_EQ(config_with_overrides(&again, &out, keys, vals, 6, err, 512), 2);
    CHECK_EQ(again.log_retention_ms, 1000);
    CHECK_EQ(again.kafka_batch_max_bytes, 4096);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
