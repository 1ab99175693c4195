/* test_base.c — cursor bounds and varints, CRC32C against known vectors and the software path,
 * the heap trim policy. */
#include "test.h"

#include "base/crc32c.h"
#include "base/cursor.h"
#include "base/heap.h"

#include <malloc.h>
#include <pthread.h>

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

/* heap_trim_check (heap.h), as the broker runs it: start.c's malloc settings, the memory freed
 * by another thread than the one checking (a shard's arena). 192 MiB in 1 MiB blocks are
 * touched, then all but every 16th freed, so the free memory sits between live blocks where
 * glibc's own trimming (top of heap only) never returns it. The first look only notes it; the
 * second (resident memory unchanged between them) trims, and the process's resident memory
 * drops. Under ASan malloc is ASan's: glibc's
 * heap holds nothing to trim, and no trim is made. */
struct heap_fill {
    void *v[192];
};

static void *heap_fill_thread(void *arg)
{
    struct heap_fill *f = arg;
    for (int i = 0; i < 192; i++) {
        f->v[i] = malloc(1u << 20);
        if (f->v[i]) memset(f->v[i], 0x5a, 1u << 20);
    }
    for (int i = 0; i < 192; i++) {
        if (i % 16 == 0) continue;
        free(f->v[i]);
        f->v[i] = NULL;
    }
    return NULL;
}

#if !defined(__SANITIZE_ADDRESS__)
/* Allocates and touches 96 MiB kept in use (arg: 96 pointers); heap_free_thread frees them. */
static void *heap_hold_thread(void *arg)
{
    void **v = arg;
    for (int i = 0; i < 96; i++) {
        v[i] = malloc(1u << 20);
        if (v[i]) memset(v[i], 0x7c, 1u << 20);
    }
    return NULL;
}

static void *heap_free_thread(void *arg)
{
    void **v = arg;
    for (int i = 0; i < 96; i++) free(v[i]);
    return NULL;
}

/* Takes 96 MiB of the freed memory again, touches it, frees it: the arena heap_fill_thread
 * used (glibc gives an exited thread's arena to the next new thread). */
static void *heap_touch_thread(void *arg)
{
    (void)arg;
    void *v[96];
    heap_hold_thread(v);
    return heap_free_thread(v);
}
#endif

TEST(heap_trim_releases_free_memory_on_the_second_look)
{
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    struct heap_fill f;
    memset(&f, 0, sizeof(f));
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, heap_fill_thread, &f), 0);
    pthread_join(th, NULL);
    struct heap_trim t = {.threshold = 64u << 20};
    size_t rss0 = heap_resident_bytes();
    CHECK(rss0 > 0);
    CHECK_EQ(heap_trim_check(&t), 0); /* the first look: noted, not trimmed */
    CHECK_EQ(t.trims, 0);
#if defined(__SANITIZE_ADDRESS__)
    CHECK(!t.above);
    CHECK_EQ(heap_trim_check(&t), 0);
    CHECK_EQ(t.trims, 0);
#else
    CHECK(t.above);
    CHECK(t.free_bytes >= (size_t)150 << 20);
    size_t released = heap_trim_check(&t);
    CHECK_EQ(t.trims, 1);
    CHECK(released >= (size_t)100 << 20);
    CHECK_EQ(t.released_bytes, released);
    CHECK(heap_resident_bytes() + ((size_t)100 << 20) <= rss0);
    /* The free bytes stay counted after their pages went back: more looks make no trim until
     * the process is resident by threshold more than right after the trim. */
    CHECK(t.free_bytes >= (size_t)150 << 20);
    CHECK_EQ(heap_trim_check(&t), 0);
    CHECK_EQ(heap_trim_check(&t), 0);
    CHECK_EQ(t.trims, 1);
    CHECK(t.above);
    pthread_t th2;
    CHECK_EQ(pthread_create(&th2, NULL, heap_touch_thread, &f), 0); /* 96 MiB touched again */
    pthread_join(th2, NULL);
    /* The look right after: resident memory moved since the last look (in use, not left
     * over), no trim; the next one finds it still: trimmed. */
    CHECK_EQ(heap_trim_check(&t), 0);
    CHECK_EQ(t.trims, 1);
    released = heap_trim_check(&t);
    CHECK_EQ(t.trims, 2);
    CHECK(released >= (size_t)64 << 20);
    static void *held[96];
    /* Memory in use at a trim, freed after it while its pages stay resident (the batch cache
     * dropping an idle partition's batches): the resident size does not move, the free bytes
     * grow by 96 MiB, and that alone makes the next look trim. */
    CHECK_EQ(pthread_create(&th2, NULL, heap_hold_thread, held), 0);
    pthread_join(th2, NULL);
    CHECK_EQ(heap_trim_check(&t), 0); /* resident memory moved: in use */
    heap_trim_check(&t);              /* held still: grown by 96 MiB since the last trim */
    CHECK_EQ(t.trims, 3);
    CHECK_EQ(heap_trim_check(&t), 0); /* nothing new */
    size_t rss_held = heap_resident_bytes();
    CHECK_EQ(pthread_create(&th2, NULL, heap_free_thread, held), 0);
    pthread_join(th2, NULL);
    CHECK(heap_resident_bytes() + ((size_t)32 << 20) > rss_held); /* freed, still resident */
    released = heap_trim_check(&t);
    CHECK_EQ(t.trims, 4);
    CHECK(released >= (size_t)64 << 20);
    CHECK_EQ(heap_trim_check(&t), 0);
    /* A threshold of 0 never trims. */
    struct heap_trim off = {.threshold = 0};
    CHECK_EQ(heap_trim_check(&off), 0);
    CHECK_EQ(heap_trim_check(&off), 0);
    CHECK_EQ(off.trims, 0);
#endif
    for (int i = 0; i < 192; i++) free(f.v[i]); /* the live ones still hold their bytes */
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
