/*
 * commands.h — the subcommands of the one `ailurus` binary. Each is `int cmd_X(int argc,
 * char **argv)` with argv[0] the subcommand name; it returns the process exit code:
 * 0 success, 1 the operation failed, 2 bad usage (flags, arguments), 3 the broker could not be
 * reached. The table itself is in src/main.c.
 */
#ifndef AL_CLI_COMMANDS_H
#define AL_CLI_COMMANDS_H

enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2, CLI_UNREACHABLE = 3 };

int cmd_version(int argc, char **argv);
int cmd_start(int argc, char **argv);  /* src/cli/start.c */
int cmd_config(int argc, char **argv); /* src/config/config_cli.c */
int cmd_kafka_decode(int argc, char **argv); /* src/cli/kafka_decode.c (hidden tool) */

int cmd_storage(int argc, char **argv); /* src/storage/storage_cli.c */
int cmd_tune(int argc, char **argv);    /* src/cli/tune.c */
int cmd_bench(int argc, char **argv);   /* src/cli/bench.c */

int cmd_topic(int argc, char **argv);   /* src/cli/topic.c */
int cmd_group(int argc, char **argv);   /* src/cli/group.c */
int cmd_cluster(int argc, char **argv); /* src/cli/cluster.c */

#endif
