/* frame.c — Kafka size-prefix framing; see frame.h. */
#include "net/frame.h"

#include "base/cursor.h"

int64_t net_frame_next(const uint8_t *buf, size_t len, int64_t max, int32_t *size)
{
    *size = -1;
    if (len < 4) return 0;
    int32_t n = (int32_t)al_be32(buf);
    if (n < 0) return AL_EMALFORMED;
    if ((int64_t)n > max) return AL_ETOOLARGE;
    *size = n;
    if (len - 4 < (size_t)n) return 0;
    return 4 + (int64_t)n;
}
