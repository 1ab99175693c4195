/*
 * config_cli.c — the command-line front end of the configuration: flag parsing shared by
 * `ailurus start` and `ailurus config`, and the `ailurus config print|docs|check` command.
 */
#include "cli/commands.h"
#include "config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* Flag aliases: --flag VALUE sets key. Any --<key> VALUE works too. */
static const char *const flag_alias[][2] = {
    {"data-dir", "data_directory"},
    {"advertise-kafka-addr", "advertised_kafka_addr"},
    {"advertised-kafka-addr", "advertised_kafka_addr"},
    {"admin-addr", "admin_addr"},
    {"seeds", "seed_servers"}, /* cluster mode: --seeds host:port,... */
};

static void print_usage(FILE *f, const char *cmd)
{
    fprintf(f,
            "usage: ailurus %s [--config FILE] [--dev] [--smp N] [--node-id N]\n"
            "       [--kafka-addr HOST:PORT] [--advertise-kafka-addr HOST:PORT]\n"
            "       [--data-dir DIR] [--log-level LEVEL] [--set KEY=VALUE] [--<key> VALUE]\n"
            "       [--seeds HOST:PORT,...] [--rpc-addr HOST:PORT]   (cluster mode)\n"
            "\n"
            "Precedence: flags > environment (AILURUS_<KEY>) > --config file > --dev > "
            "defaults.\n"
            "Every key is listed by 'ailurus config docs'.\n",
            cmd);
}

int config_from_args(al_config *c, int argc, char **argv, int first, const char *usage_cmd)
{
    char err[1024];
    const char *file = NULL;
    bool dev = false;
    /* Pass 1: --dev, --config and --help, which decide the lower layers. */
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            print_usage(stdout, usage_cmd);
            return 1;
        }
        if (!strcmp(a, "--dev")) dev = true;
        else if (!strcmp(a, "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ailurus %s: --config needs a FILE\n", usage_cmd);
                return AL_EINVAL;
            }
            file = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) file = a + 9;
        else if (!strncmp(a, "--", 2) && !strchr(a, '=') && i + 1 < argc) i++; /* its value */
    }
    config_init(c);
    if (dev) config_apply_dev(c);
    int rc;
    if (file && (rc = config_load_yaml(c, file, err, sizeof(err)))) goto fail;
    if ((rc = config_load_env(c, environ, err, sizeof(err)))) goto fail;
    /* Pass 2: every other flag, in order. */
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--dev")) continue;
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9)) continue;
        if (strncmp(a, "--", 2) || !a[2]) {
            snprintf(err, sizeof(err), "unexpected argument '%s'", a);
            rc = AL_EINVAL;
            goto fail;
        }
        char name[160];
        const char *value;
        const char *eq = strchr(a, '=');
        if (!strcmp(a, "--set")) {
            if (i + 1 >= argc || !strchr(argv[i + 1], '=')) {
                snprintf(err, sizeof(err), "--set needs KEY=VALUE");
                rc = AL_EINVAL;
                goto fail;
            }
            a = argv[++i];
            eq = strchr(a, '=');
            snprintf(name, sizeof(name), "%.*s", (int)(eq - a), a);
            value = eq + 1;
        } else if (eq) {
            snprintf(name, sizeof(name), "%.*s", (int)(eq - a - 2), a + 2);
            value = eq + 1;
        } else {
            if (i + 1 >= argc) {
                snprintf(err, sizeof(err), "flag %s needs a value", a);
                rc = AL_EINVAL;
                goto fail;
            }
            snprintf(name, sizeof(name), "%s", a + 2);
            value = argv[++i];
        }
        for (size_t j = 0; j < AL_ARRAY_SIZE(flag_alias); j++)
            if (!strcmp(name, flag_alias[j][0])) snprintf(name, sizeof(name), "%s", flag_alias[j][1]);
        if (!config_find(name)) {
            snprintf(err, sizeof(err), "unknown flag --%s (no configuration key '%s'; see "
                     "'ailurus config docs')", name, name);
            rc = AL_ENOTFOUND;
            goto fail;
        }
        if ((rc = config_set(c, name, value, CONFIG_SRC_FLAG, err, sizeof(err)))) goto fail;
    }
    char apath[CONFIG_PATH_MAX + 32];
    snprintf(apath, sizeof(apath), "%s/%s", c->data_directory, CONFIG_ADMIN_FILE);
    if ((rc = config_load_admin(c, apath, err, sizeof(err)))) goto fail;
    if ((rc = config_finalize(c, err, sizeof(err)))) goto fail;
    return 0;
fail:
    fprintf(stderr, "ailurus %s: %s\n", usage_cmd, err);
    return rc;
}

int cmd_config(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: ailurus config print [start flags]   effective configuration (YAML)\n"
                "       ailurus config check [start flags]   validate, print nothing\n"
                "       ailurus config docs                  Markdown table of every key\n");
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (!strcmp(argv[1], "docs")) {
        config_print_docs(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "print") && strcmp(argv[1], "check")) {
        fprintf(stderr, "ailurus config: unknown subcommand '%s'\n", argv[1]);
        return CLI_USAGE;
    }
    al_config *c = malloc(sizeof(*c));
    if (!c) return CLI_FAILED;
    int rc = config_from_args(c, argc, argv, 2, "config");
    if (rc == 0 && !strcmp(argv[1], "print")) config_print_yaml(c, stdout);
    free(c);
    return rc == 1 ? CLI_OK : rc < 0 ? CLI_USAGE : CLI_OK;
}
