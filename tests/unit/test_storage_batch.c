/* test_storage_batch.c — record batch validation, stamping, record iteration, building and
 * decompression of every codec (gzip, snappy raw and xerial, lz4 frame, zstd). */
#include "storage_util.h"

#include "base/crc32c.h"

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

TEST(batch_build_validate_roundtrip)
{
    uint8_t b[65536];
    int keys[3] = {7, -1, 9};
    size_t n = su_batch(b, sizeof(b), 3, keys, 42, 10, false, 1000);
    storage_batch_hdr h;
    CHECK_EQ(storage_batch_validate(b, n, 0, &h), (int64_t)n);
    CHECK_EQ(h.magic, 2);
    CHECK_EQ(h.records_count, 3);
    CHECK_EQ(h.last_offset_delta, 2);
    CHECK_EQ(h.base_timestamp, 1000);
    CHECK_EQ(storage_batch_size(&h), n);
    storage_record_iter it;
    storage_record r;
    storage_record_iter_init(&it, b + STORAGE_BATCH_OFF_RECORDS, n - STORAGE_BATCH_HEADER, 3);
    int i = 0;
    while (storage_record_iter_next(&it, &r) == 1) {
        CHECK_EQ(r.offset_delta, i);
        if (i == 1) CHECK_EQ(r.key_len, -1);
        else CHECK(r.key_len == 2 && r.key[0] == 'k');
        CHECK(r.value_len >= 10);
        i++;
    }
    CHECK_EQ(i, 3);
    CHECK_EQ(it.err, 0);
}

TEST(batch_stamp_keeps_crc)
{
    uint8_t b[4096];
    size_t n = su_batch(b, sizeof(b), 2, NULL, 1, 0, false, 5);
    storage_batch_stamp(b, 123456789012LL, 77);
    storage_batch_hdr h;
    CHECK_EQ(storage_batch_validate(b, n, 0, &h), (int64_t)n);
    CHECK_EQ(h.base_offset, 123456789012LL);
    CHECK_EQ(h.leader_epoch, 77);
}

TEST(batch_rejects_corruption_everywhere)
{
    uint8_t b[4096], c[4096];
    size_t n = su_batch(b, sizeof(b), 4, NULL, 3, 20, false, 9);
    /* Flipping any byte of the CRC'd part or the magic/length must be refused. */
    for (size_t i = 16; i < n; i++) {
        memcpy(c, b, n);
        c[i] ^= 0x40;
        CHECK(storage_batch_validate(c, n, 0, NULL) < 0);
    }
    /* Every truncation is refused. */
    for (size_t k = 0; k < n; k++) CHECK(storage_batch_validate(b, k, 0, NULL) < 0);
    /* Bad magic, even with a recomputed CRC. */
    memcpy(c, b, n);
    c[STORAGE_BATCH_OFF_MAGIC] = 1;
    CHECK_EQ(storage_batch_validate(c, n, 0, NULL), AL_EMALFORMED);
    /* Record count that does not match the records, CRC fixed up. */
    memcpy(c, b, n);
    al_put_be32(c + 57, 3);
    storage_batch_set_crc(c, n);
    CHECK_EQ(storage_batch_validate(c, n, 0, NULL), AL_EMALFORMED);
    /* Too large for max_size. */
    CHECK_EQ(storage_batch_validate(b, n, n - 1, NULL), AL_ETOOLARGE);
    /* Several batches back to back, then trailing junk. */
    memcpy(c, b, n);
    memcpy(c + n, b, n);
    int64_t recs = 0;
    CHECK_EQ(storage_batches_validate(c, 2 * n, 0, &recs), 2);
    CHECK_EQ(recs, 8);
    CHECK(storage_batches_validate(c, 2 * n - 1, 0, NULL) < 0);
    CHECK(storage_batches_validate(c, 0, 0, NULL) < 0);
}

/* Compresses raw with codec into out; returns the size. */
static size_t compress_with(int codec, const uint8_t *raw, size_t n, uint8_t *out, size_t cap,
                            bool xerial)
{
    switch (codec) {
    case STORAGE_COMP_GZIP: {
        z_stream zs;
        memset(&zs, 0, sizeof(zs));
        AL_ASSERT(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
        zs.next_in = (Bytef *)raw;
        zs.avail_in = (uInt)n;
        zs.next_out = out;
        zs.avail_out = (uInt)cap;
        AL_ASSERT(deflate(&zs, Z_FINISH) == Z_STREAM_END);
        size_t o = cap - zs.avail_out;
        deflateEnd(&zs);
        return o;
    }
    case STORAGE_COMP_SNAPPY: {
        size_t hdr = 0;
        if (xerial) {
            const uint8_t m[16] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1};
            memcpy(out, m, 16);
            hdr = 16;
            /* two blocks */
            size_t half = n / 2, o = hdr;
            for (int blk = 0; blk < 2; blk++) {
                const uint8_t *src = blk ? raw + half : raw;
                size_t sl = blk ? n - half : half;
                size_t cl = cap - o - 4;
                AL_ASSERT(snappy_compress((const char *)src, sl, (char *)out + o + 4, &cl) ==
                          SNAPPY_OK);
                al_put_be32(out + o, (uint32_t)cl);
                o += 4 + cl;
            }
            return o;
        }
        size_t cl = cap;
        AL_ASSERT(snappy_compress((const char *)raw, n, (char *)out, &cl) == SNAPPY_OK);
        return cl;
    }
    case STORAGE_COMP_LZ4: {
        size_t r = LZ4F_compressFrame(out, cap, raw, n, NULL);
        AL_ASSERT(!LZ4F_isError(r));
        return r;
    }
    case STORAGE_COMP_ZSTD: {
        size_t r = ZSTD_compress(out, cap, raw, n, 3);
        AL_ASSERT(!ZSTD_isError(r));
        return r;
    }
    }
    return 0;
}

TEST(batch_decompress_every_codec)
{
    static uint8_t plain[65536], comp[65536], raw[65536];
    size_t n = su_batch(plain, sizeof(plain), 50, NULL, 9, 100, false, 77);
    size_t rlen = n - STORAGE_BATCH_HEADER;
    memcpy(raw, plain + STORAGE_BATCH_OFF_RECORDS, rlen);
    for (int variant = 0; variant < 5; variant++) {
        int codec = variant < 4 ? variant + 1 : STORAGE_COMP_SNAPPY;
        bool xerial = variant == 4;
        memcpy(comp, plain, STORAGE_BATCH_HEADER);
        size_t cl = compress_with(codec, raw, rlen, comp + STORAGE_BATCH_HEADER,
                                  sizeof(comp) - STORAGE_BATCH_HEADER, xerial);
        size_t total = STORAGE_BATCH_HEADER + cl;
        al_put_be32(comp + 8, (uint32_t)(total - 12));
        comp[21] = 0;
        comp[22] = (uint8_t)codec;
        storage_batch_set_crc(comp, total);
        storage_batch_hdr h;
        CHECK_EQ(storage_batch_validate(comp, total, 0, &h), (int64_t)total);
        const uint8_t *out;
        size_t olen;
        uint8_t *owned;
        CHECK_EQ(storage_batch_records(comp, total, 0, &out, &olen, &owned), 0);
        CHECK(owned != NULL);
        CHECK_EQ(olen, rlen);
        CHECK_MEM(out, raw, rlen);
        free(owned);
        /* Bounded output. */
        CHECK_EQ(storage_batch_records(comp, total, 100, &out, &olen, &owned), AL_ETOOLARGE);
        /* Garbage compressed data is an error, never a crash. */
        memset(comp + STORAGE_BATCH_HEADER + cl / 2, 0xA5, cl - cl / 2);
        int rc = storage_batch_records(comp, total, 0, &out, &olen, &owned);
        if (rc == 0) {
            CHECK(olen != rlen || memcmp(out, raw, rlen) != 0);
            free(owned);
        }
    }
}

TEST(record_iter_rejects_garbage)
{
    uint64_t s = test_seed() | 1;
    uint8_t buf[512];
    for (int round = 0; round < 20000; round++) {
        size_t n = su_rand(&s) % sizeof(buf);
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)su_rand(&s);
        storage_record_iter it;
        storage_record r;
        storage_record_iter_init(&it, buf, n, (int32_t)(su_rand(&s) % 8));
        int guard = 0, rc;
        while ((rc = storage_record_iter_next(&it, &r)) == 1) {
            CHECK(r.key_len < 0 || (r.key >= buf && r.key + r.key_len <= buf + n));
            CHECK(r.value_len < 0 || (r.value >= buf && r.value + r.value_len <= buf + n));
            CHECK(++guard <= 8);
        }
    }
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
