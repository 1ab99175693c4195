/*
 * frame.h — Kafka's framing: every request and response is a 4-byte big-endian size followed by
 * that many bytes. This is the only code that reads the size prefix of untrusted input.
 */
#ifndef AL_NET_FRAME_H
#define AL_NET_FRAME_H

#include "base/base.h"

/*
 * Looks at the received bytes buf[0..len) for the next frame.
 * Returns 4 + size when a whole frame is there (the payload is buf[4 .. 4 + size)), 0 when more
 * bytes are needed, AL_EMALFORMED for a negative size or AL_ETOOLARGE for a size above max.
 * *size is the frame's declared payload size once the 4-byte prefix is there, else -1.
 * Pure function, any thread.
 */
int64_t net_frame_next(const uint8_t *buf, size_t len, int64_t max, int32_t *size);

#endif
