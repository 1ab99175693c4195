/*
 * batch.h — Kafka record batches (magic 2) as Ailurus stores them: header parsing, validation
 * (magic, lengths, record count, CRC32C), stamping the base offset and leader epoch (= Raft term)
 * in place, record iteration, decompression (gzip, snappy raw or xerial, lz4 frame, zstd) and
 * building uncompressed batches (compaction, tests). Pure functions over caller buffers: no I/O,
 * no global state, callable from any thread. The Kafka layer uses these too.
 *
 * Layout of a batch (big-endian), offsets in bytes:
 *   0 baseOffset i64 | 8 batchLength i32 (bytes after this field) | 12 partitionLeaderEpoch i32
 *   16 magic i8 | 17 crc u32 (CRC32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
 *   27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
 *   53 baseSequence i32 | 57 recordsCount i32 | 61 records...
 * baseOffset and partitionLeaderEpoch are outside the CRC, so stamping them keeps the CRC valid.
 */
#ifndef AL_STORAGE_BATCH_H
#define AL_STORAGE_BATCH_H

#include "base/base.h"

enum {
    STORAGE_BATCH_HEADER = 61,      /* bytes of the fixed header */
    STORAGE_BATCH_LOG_OVERHEAD = 12, /* baseOffset + batchLength */
    STORAGE_BATCH_OFF_BASE = 0,
    STORAGE_BATCH_OFF_LENGTH = 8,
    STORAGE_BATCH_OFF_EPOCH = 12,
    STORAGE_BATCH_OFF_MAGIC = 16,
    STORAGE_BATCH_OFF_CRC = 17,
    STORAGE_BATCH_OFF_ATTR = 21,
    STORAGE_BATCH_OFF_RECORDS = 61,
};

enum storage_compression {
    STORAGE_COMP_NONE = 0,
    STORAGE_COMP_GZIP = 1,
    STORAGE_COMP_SNAPPY = 2,
    STORAGE_COMP_LZ4 = 3,
    STORAGE_COMP_ZSTD = 4,
};

enum {
    STORAGE_ATTR_COMPRESSION_MASK = 0x07,
    STORAGE_ATTR_TIMESTAMP_LOG_APPEND = 0x08,
    STORAGE_ATTR_TRANSACTIONAL = 0x10,
    STORAGE_ATTR_CONTROL = 0x20,
};

/* The parsed fixed header of one batch. */
typedef struct storage_batch_hdr {
    int64_t base_offset;
    int32_t batch_length; /* bytes after the batchLength field */
    int32_t leader_epoch;
    int8_t magic;
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t records_count;
} storage_batch_hdr;

/* Total size in bytes of the batch (header + records). */
static inline size_t storage_batch_size(const storage_batch_hdr *h)
{
    return (size_t)h->batch_length + STORAGE_BATCH_LOG_OVERHEAD;
}

static inline int64_t storage_batch_last_offset(const storage_batch_hdr *h)
{
    return h->base_offset + h->last_offset_delta;
}

static inline int storage_batch_compression(const storage_batch_hdr *h)
{
    return h->attributes & STORAGE_ATTR_COMPRESSION_MASK;
}

/*
 * Parses the fixed header at buf (len bytes available; only the first 61 are read). Checks
 * nothing but that 61 bytes exist. Returns 0 or AL_ETRUNCATED.
 */
int storage_batch_parse_header(const void *buf, size_t len, storage_batch_hdr *out);

/*
 * Validates one batch at the start of buf: magic 2, batchLength within [49, max_size - 12] and
 * within len, lastOffsetDelta >= 0, 0 <= recordsCount <= lastOffsetDelta + 1, CRC32C over
 * attributes..end, and for uncompressed batches that the records parse and their number equals
 * recordsCount. max_size 0 means no limit beyond len. On success fills *out (may be NULL) and
 * returns the batch's total size. Errors: AL_ETRUNCATED (len too short for the declared size),
 * AL_EMALFORMED (bad magic, lengths, counts, records), AL_ECORRUPT (CRC mismatch),
 * AL_ETOOLARGE (over max_size).
 */
int64_t storage_batch_validate(const void *buf, size_t len, size_t max_size,
                               storage_batch_hdr *out);

/*
 * Validates a buffer of one or more whole batches back to back (as in a Produce request).
 * Returns the number of batches (> 0) or the first batch's error; an empty buffer or trailing
 * partial bytes are AL_EMALFORMED/AL_ETRUNCATED. Fills *total_records with the sum of
 * lastOffsetDelta + 1 (the number of offsets the batches take) when not NULL.
 */
int storage_batches_validate(const void *buf, size_t len, size_t max_size,
                             int64_t *total_records);

/*
 * The framing checks of storage_batches_validate only (magic, lengths, max_size, offset delta
 * and record counts, known codec) without the CRC and without parsing the records: for input a
 * caller validated in full moments earlier (storage_log_append_validated). Same returns.
 */
int storage_batches_frame_check(const void *buf, size_t len, size_t max_size,
                                int64_t *total_records);

/* Writes baseOffset and partitionLeaderEpoch into the batch at buf (outside the CRC'd part). */
void storage_batch_stamp(void *buf, int64_t base_offset, int32_t leader_epoch);

/* Recomputes and stores the CRC of a whole batch of `size` bytes at buf. */
void storage_batch_set_crc(void *buf, size_t size);

/* One record, pointing into the (decompressed) records buffer. key/value NULL means null. */
typedef struct storage_record {
    int8_t attributes;
    int64_t timestamp_delta;
    int32_t offset_delta;
    const uint8_t *key;
    int32_t key_len;   /* -1 for a null key */
    const uint8_t *value;
    int32_t value_len; /* -1 for a null value (a tombstone) */
    const uint8_t *headers; /* raw encoded headers: count varint then entries */
    size_t headers_size;
    int32_t header_count;
} storage_record;

/* Iterator over the records of an uncompressed records buffer. */
typedef struct storage_record_iter {
    const uint8_t *p;
    const uint8_t *end;
    int32_t left; /* records still expected */
    int err;
} storage_record_iter;

void storage_record_iter_init(storage_record_iter *it, const void *records, size_t len,
                              int32_t count);
/*
 * Returns 1 and fills *rec with the next record, 0 at the end (all `count` records read and
 * no bytes left), or a negative error (AL_EMALFORMED/AL_ETRUNCATED; also sticky in it->err).
 */
int storage_record_iter_next(storage_record_iter *it, storage_record *rec);

/*
 * Produces the uncompressed records section of a validated batch. For an uncompressed batch
 * *out points into buf and *owned is NULL; otherwise the records are decompressed into a new
 * malloc'd buffer returned in both *out and *owned (the caller frees *owned). max_out bounds
 * the decompressed size (AL_ETOOLARGE beyond). Errors: AL_EMALFORMED (bad compressed data or
 * unknown codec), AL_ETOOLARGE, -ENOMEM.
 */
int storage_batch_records(const void *buf, size_t size, size_t max_out, const uint8_t **out,
                          size_t *out_len, uint8_t **owned);

/* Input of storage_batch_build: one record to write. */
typedef struct storage_build_record {
    int32_t offset_delta;
    int64_t timestamp_delta;
    const void *key;
    int32_t key_len;   /* -1: null */
    const void *value;
    int32_t value_len; /* -1: null */
    const void *headers; /* raw encoded headers including the count varint; NULL: zero headers */
    size_t headers_size;
} storage_build_record;

/* Parameters of storage_batch_build (header fields copied into the new batch). */
typedef struct storage_build_params {
    int64_t base_offset;
    int32_t leader_epoch;
    int16_t attributes; /* compression bits are forced to none */
    int32_t last_offset_delta; /* -1: the last record's offset_delta */
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
} storage_build_params;

/* Bytes storage_batch_build needs for these records. */
size_t storage_batch_build_size(const storage_build_record *recs, int n);

/*
 * Writes an uncompressed magic-2 batch with n records into out (cap bytes) and sets its CRC.
 * Returns the batch size or AL_ETOOLARGE when cap is too small.
 */
int64_t storage_batch_build(void *out, size_t cap, const storage_build_params *p,
                            const storage_build_record *recs, int n);

#endif
