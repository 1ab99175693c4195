/* harness.c — runner for the unit-test harness (see test.h). Linked into every test. */
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

struct test_case test_cases[TEST_MAX];
int test_count;
int test_failed_now;
jmp_buf test_jmp;

static uint64_t seed;
static char tmpdir[256];

uint64_t test_seed(void)
{
    if (!seed) {
        const char *s = getenv("AL_TEST_SEED");
        if (s && *s) seed = strtoull(s, NULL, 0);
        else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
        }
        if (!seed) seed = 1;
        fprintf(stderr, "  seed: AL_TEST_SEED=%" PRIu64 "\n", seed);
    }
    return seed;
}

const char *test_tmpdir(void)
{
    if (!tmpdir[0]) {
        const char *base = getenv("AL_TEST_TMP");
        if (!base || !*base) base = "build/tmp";
        char part[256]; /* mkdir -p: run from elsewhere, "build" may not exist either */
        snprintf(part, sizeof(part), "%s", base);
        for (char *q = part + 1; *q; q++) {
            if (*q != '/') continue;
            *q = 0;
            mkdir(part, 0755);
            *q = '/';
        }
        mkdir(base, 0755);
        snprintf(tmpdir, sizeof(tmpdir), "%s/unit-%d", base, (int)getpid());
        mkdir(tmpdir, 0755);
    }
    return tmpdir;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run_one(test_fn fn)
{
    if (setjmp(test_jmp) == 0) fn();
}

int test_main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    for (int i = 0; i < test_count; i++) {
        if (filter && !strstr(test_cases[i].name, filter)) continue;
        test_failed_now = 0;
        double t0 = now_s();
        run_one(test_cases[i].fn);
        double dt = now_s() - t0;
        if (test_failed_now) {
            failed++;
            printf("  FAIL %s (%.2fs)\n", test_cases[i].name, dt);
        } else {
            passed++;
            printf("  ok   %s (%.2fs)\n", test_cases[i].name, dt);
        }
        fflush(stdout);
    }
    if (tmpdir[0] && !failed) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
    printf("%d passed, %d failed\n", passed, failed);
    /* Out before exit: LeakSanitizer's exit check (abort_on_error=1 in scripts/test.sh) aborts
     * without flushing stdio, and a failed CHECK leaks what its test had allocated, so the
     * count was lost with it (CI then counted none of the program's tests). */
    fflush(stdout);
    return failed ? 1 : 0;
}
