/* version.h — the product version, shown by `ailurus version` and in ApiVersions' software
 * fields and the admin API. */
#ifndef AL_CLI_VERSION_H
#define AL_CLI_VERSION_H
#define AILURUS_VERSION "0.1.0"
#endif
