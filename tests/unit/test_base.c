/* test_base.c — cursor bounds and varints, CRC32C against known vectors and the software path. */
#include "test.h"

#include "base/crc32c.h"
#include "base/cursor.h"

TEST(crc32c_known_vectors)
{
    CHECK_EQ(crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ(crc32c_sw(0, "123456789", 9), 0xE3069283u);
    uint8_t zeros[32] = {0};
    CHECK_EQ(crc32c(0, zeros, 32), 0x8A9136AAu);
}

TEST(crc32c_hw_equals_sw_on_random_data)
{
    uint64_t s = test_seed();
    uint8_t buf[4096];
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof(buf); i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            buf[i] = (uint8_t)(s >> 56);
        }
        size_t off = (size_t)(s % 17), len = (size_t)((s >> 8) % (sizeof(buf) - 17));
        CHECK_EQ(crc32c(0, buf + off, len), crc32c_sw(0, buf + off, len));
        /* incremental equals one-shot */
        uint32_t c = crc32c(0, buf + off, len / 2);
        c = crc32c(c, buf + off + len / 2, len - len / 2);
        CHECK_EQ(c, crc32c(0, buf + off, len));
    }
}

TEST(cursor_reads_are_bounded)
{
    uint8_t b[3] = {1, 2, 3};
    al_rd rd = al_rd_make(b, 3);
    CHECK_EQ(al_rd_u16(&rd), 0x0102);
    CHECK_EQ(al_rd_u32(&rd), 0);
    CHECK_EQ(rd.err, AL_ETRUNCATED);
    CHECK_EQ(al_rd_u8(&rd), 0); /* sticky */
    CHECK(al_rd_bytes(&rd, 0) == NULL);
}

TEST(varints_round_trip)
{
    int64_t vals[] = {0, 1, -1, 63, -64, 64, 300, -300, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN};
    uint8_t buf[256];
    al_wr wr = al_wr_make(buf, sizeof(buf));
    for (size_t i = 0; i < AL_ARRAY_SIZE(vals); i++) {
        al_wr_varlong(&wr, vals[i]);
        if (vals[i] >= INT32_MIN && vals[i] <= INT32_MAX) al_wr_varint(&wr, (int32_t)vals[i]);
    }
    CHECK_EQ(wr.err, 0);
    al_rd rd = al_rd_make(buf, (size_t)(wr.p - buf));
    for (size_t i = 0; i < AL_ARRAY_SIZE(vals); i++) {
        CHECK_EQ(al_rd_varlong(&rd), vals[i]);
        if (vals[i] >= INT32_MIN && vals[i] <= INT32_MAX) CHECK_EQ(al_rd_varint(&rd), vals[i]);
    }
    CHECK_EQ(rd.err, 0);
    CHECK_EQ(al_rd_left(&rd), 0);
}

TEST(uvarint_rejects_overlong)
{
    uint8_t bad[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    al_rd rd = al_rd_make(bad, sizeof(bad));
    al_rd_uvarint(&rd);
    CHECK_EQ(rd.err, AL_EMALFORMED);
    uint8_t trunc[2] = {0x80, 0x80};
    rd = al_rd_make(trunc, sizeof(trunc));
    al_rd_uvarint(&rd);
    CHECK_EQ(rd.err, AL_ETRUNCATED);
}

TEST(writer_overflow_is_sticky)
{
    uint8_t buf[3];
    al_wr wr = al_wr_make(buf, sizeof(buf));
    al_wr_u16(&wr, 7);
    al_wr_u16(&wr, 8);
    CHECK_EQ(wr.err, AL_ETOOLARGE);
    al_wr_u8(&wr, 1);
    CHECK(wr.p == buf + 2);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
