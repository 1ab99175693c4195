/*
 * fuzz_http_admin.c — libFuzzer target over the admin API's handlers through the real HTTP
 * connection layer: arbitrary requests (paths, methods, query strings, JSON bodies for
 * PUT /v1/cluster_config and /v1/loggers) must always get a well-formed HTTP answer, and
 * afterwards GET /v1/cluster_config must still answer 200 with a JSON object (accepted changes
 * never leave the admin's configuration unrenderable).
 */
#include "base/log.h"
#include "http/admin.h"

#include <stdio.h>
#include <stdlib.h>

static struct admin_state *st;
static http_router router;
static struct http_limits lim;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!st) {
        static al_config cfg;
        config_init(&cfg);
        st = admin_state_new(&cfg, "fuzz", 1);
        router = admin_router(st);
        lim = (struct http_limits){.max_body_bytes = 8192, .max_pipelined = 4};
        http_limits_defaults(&lim);
    }
    al_log_set_level(AL_LOG_OFF);
    http_conn *c = http_conn_new(&router, &lim, NULL, NULL);
    if (!c) return 0;
    http_conn_feed(c, data, size);
    size_t n;
    char *o = http_conn_take_output(c, &n);
    if (o && (n < 12 || memcmp(o, "HTTP/1.1 ", 9))) abort();
    free(o);
    http_conn_free(c);

    static const char get[] = "GET /v1/cluster_config HTTP/1.1\r\n\r\n";
    c = http_conn_new(&router, &lim, NULL, NULL);
    if (!c) return 0;
    http_conn_feed(c, get, sizeof(get) - 1);
    o = http_conn_take_output(c, &n);
    if (!o || n < 12 || memcmp(o, "HTTP/1.1 200 ", 13)) abort();
    const char *body = memmem(o, n, "\r\n\r\n", 4);
    json_error_t je;
    json_t *j = body ? json_loadb(body + 4, n - (size_t)(body + 4 - o), 0, &je) : NULL;
    if (!json_is_object(j)) abort();
    json_decref(j);
    free(o);
    http_conn_free(c);
    al_log_set_level(AL_LOG_OFF);
    return 0;
}
