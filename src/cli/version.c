/* version.c — `ailurus version`. */
#include "cli/commands.h"
#include "cli/version.h"

#include <stdio.h>

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("ailurus %s\n", AILURUS_VERSION);
    return CLI_OK;
}
