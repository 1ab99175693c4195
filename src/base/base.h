/*
 * base.h — what every Ailurus file includes: fixed-width types, always-on assertions,
 * small helpers and the internal error convention.
 *
 * Error convention: functions return 0 (or a non-negative count) on success and a negative
 * value on failure: -errno for system errors, or one of the AL_E* codes below, which sit in a
 * reserved range far from errno values. Kafka wire error codes are a separate enum
 * (src/kafka/errors.h) and never travel through these returns.
 */
#ifndef AL_BASE_H
#define AL_BASE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AL_LIKELY(x)   __builtin_expect(!!(x), 1)
#define AL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define AL_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define AL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define AL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define AL_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define AL_ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a)-1))
#define AL_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define AL_UNUSED(x) (void)(x)
#define AL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define AL_NORETURN __attribute__((noreturn))

/* Internal error codes: a reserved range well below -4095 (the largest errno is < 4096). */
enum {
    AL_EBASE = -100000,
    AL_ECORRUPT,   /* data failed a checksum or structural check */
    AL_ETRUNCATED, /* input ended before a complete value */
    AL_EMALFORMED, /* input is structurally invalid (bad length, bad varint, ...) */
    AL_ETOOLARGE,  /* a size or count is over a configured limit */
    AL_ENOTFOUND,  /* the thing named does not exist */
    AL_EEXISTS,    /* the thing already exists */
    AL_EFAILED,    /* the object is in a failed state and refuses work (e.g. a log after a
                      failed fsync) */
    AL_ECLOSED,    /* the object was closed or is shutting down */
    AL_EFULL,      /* a bounded queue or budget is full: back off and retry */
    AL_EINVAL,     /* a caller's argument is invalid */
    AL_EUNSUPPORTED,
    AL_ETIMEDOUT,
    AL_ERANGE,     /* an offset or index outside what exists */
    AL_ELAST
};

/* Returns a static, human-readable description of an internal error or -errno value. */
const char *al_strerror(int err);

/*
 * Always-on assertion, also in release builds: for invariants whose violation could lose or
 * corrupt data. Prints the condition, file and line, then aborts.
 */
#define AL_ASSERT(cond)                                                                          \
    do {                                                                                         \
        if (AL_UNLIKELY(!(cond))) al_assert_fail(#cond, __FILE__, __LINE__, __func__);          \
    } while (0)

/* Debug-only assertion for cheaper checks; compiled out of release builds. */
#ifdef AL_DEBUG
#define AL_DASSERT(cond) AL_ASSERT(cond)
#else
#define AL_DASSERT(cond) ((void)0)
#endif

/* Abort with a formatted message: an impossible state was reached. */
#define AL_PANIC(...) al_panic(__FILE__, __LINE__, __VA_ARGS__)

/*
 * qsort that accepts an empty or NULL array: qsort's pointer is declared nonnull, so
 * al_sort(NULL, 0, ...) is undefined behaviour (UBSan stops on it). Use this everywhere.
 */
void al_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));

/* bsearch that accepts an empty or NULL array (returns NULL), for the same reason. */
void *al_search(const void *key, const void *base, size_t n, size_t size,
                int (*cmp)(const void *, const void *));

AL_NORETURN void al_assert_fail(const char *cond, const char *file, int line, const char *func);
AL_NORETURN AL_PRINTF(3, 4) void al_panic(const char *file, int line, const char *fmt, ...);

#endif
