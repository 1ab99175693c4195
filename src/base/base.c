/* base.c — assertion failure, panic and error strings. */
#include "base/base.h"
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void al_assert_fail(const char *cond, const char *file, int line, const char *func)
{
    fprintf(stderr, "ASSERTION FAILED: %s at %s:%d in %s()\n", cond, file, line, func);
    fflush(stderr);
    abort();
}

void al_panic(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "PANIC at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

const char *al_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case AL_ECORRUPT: return "data is corrupt (checksum or structure check failed)";
    case AL_ETRUNCATED: return "input is truncated";
    case AL_EMALFORMED: return "input is malformed";
    case AL_ETOOLARGE: return "size or count over the configured limit";
    case AL_ENOTFOUND: return "not found";
    case AL_EEXISTS: return "already exists";
    case AL_EFAILED: return "object is in a failed state";
    case AL_ECLOSED: return "closed";
    case AL_EFULL: return "queue or budget full";
    case AL_EINVAL: return "invalid argument";
    case AL_EUNSUPPORTED: return "unsupported";
    case AL_ETIMEDOUT: return "timed out";
    case AL_ERANGE: return "out of range";
    default: break;
    }
    if (err < 0 && err > -4096) return strerror(-err);
    return "unknown error";
}

void al_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1) qsort(base, n, size, cmp);
}

void *al_search(const void *key, const void *base, size_t n, size_t size,
                int (*cmp)(const void *, const void *))
{
    return n ? bsearch(key, base, n, size, cmp) : NULL;
}
