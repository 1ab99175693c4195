/*
 * main.c — the `ailurus` binary: broker, admin API, CLI and tools behind one entry point.
 * Subcommands are declared in src/cli/commands.h and listed in the table below.
 */
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"version", cmd_version, "print the version"},
    {"storage", cmd_storage, "dump, check or benchmark storage (ailurus storage --help)"},
    {"kafka-decode", cmd_kafka_decode, "decode a captured request frame (tool)"},
    {"start", cmd_start, "start a broker (ailurus start --help)"},
    {"config", cmd_config, "print, check or document the configuration"},
    {"topic", cmd_topic, "create, list, describe, produce to, consume topics (--help)"},
    {"group", cmd_group, "list, describe (lag), seek, delete consumer groups (--help)"},
    {"cluster", cmd_cluster, "cluster info, health and config get|set|edit (--help)"},
    {"bench", cmd_bench, "Kafka load generator: throughput and latency (ailurus bench --help)"},
    {"tune", cmd_tune, "check (and with --apply set) host settings for the broker"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ailurus <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nRun 'ailurus <command> --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ailurus: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
