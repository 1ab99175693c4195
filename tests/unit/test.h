/*
 * test.h — the unit-test harness: one program per module (tests/unit/test_X.c), each a list of
 * TEST() cases run in order. A failed CHECK reports file:line and the expression, marks the case
 * failed and continues with the next case. The program prints one line per case and ends with
 * "N passed, N failed"; it exits 1 if any case failed, 0 otherwise.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ(a, b); ... }
 *   int main(int argc, char **argv) { return test_main(argc, argv); }
 *
 * Anything random prints its seed (test_seed(), from AL_TEST_SEED or the clock) so a failure
 * can be replayed: AL_TEST_SEED=1234 build/release/tests/test_X [case-name-substring].
 */
#ifndef AL_TEST_H
#define AL_TEST_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*test_fn)(void);
struct test_case {
    const char *name;
    test_fn fn;
};

#define TEST_MAX 512
extern struct test_case test_cases[TEST_MAX];
extern int test_count;
extern int test_failed_now;
extern jmp_buf test_jmp;

#define TEST(name)                                                                               \
    static void test_##name(void);                                                               \
    __attribute__((constructor)) static void test_register_##name(void)                          \
    {                                                                                            \
        if (test_count < TEST_MAX) test_cases[test_count++] = (struct test_case){#name, test_##name}; \
    }                                                                                            \
    static void test_##name(void)

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "    CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);        \
            test_failed_now = 1;                                                                 \
            longjmp(test_jmp, 1);                                                                \
        }                                                                                        \
    } while (0)

#define CHECK_EQ(a, b)                                                                           \
    do {                                                                                         \
        long long _a = (long long)(a), _b = (long long)(b);                                      \
        if (_a != _b) {                                                                          \
            fprintf(stderr, "    CHECK_EQ failed: %s == %s (%lld vs %lld) (%s:%d)\n", #a, #b, _a,  \
                    _b, __FILE__, __LINE__);                                                     \
            test_failed_now = 1;                                                                 \
            longjmp(test_jmp, 1);                                                                \
        }                                                                                        \
    } while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

uint64_t test_seed(void);
/* A scratch directory unique to this run (created on first call, removed at exit if empty
 * of failures); tests put their files under it. */
const char *test_tmpdir(void);
int test_main(int argc, char **argv);

#endif
