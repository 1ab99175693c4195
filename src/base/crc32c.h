/*
 * crc32c.h — CRC-32C (Castagnoli), the checksum of Kafka record batches (magic 2) and of every
 * on-disk record Ailurus writes. Uses the SSE4.2 crc32 instruction when the CPU has it, a
 * table otherwise. Thread-safe, no state.
 */
#ifndef AL_CRC32C_H
#define AL_CRC32C_H

#include "base/base.h"

/* Extends crc (0 to start) over len bytes of data; returns the new value. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* Software-only version, for tests that compare the two paths. */
uint32_t crc32c_sw(uint32_t crc, const void *data, size_t len);

#endif
