/*
 * test_leaders.c — the leadership table (src/cluster/leaders.h): merge rules (higher term wins,
 * a known leader beats an unknown one, only the leader's own report changes the ISR), order
 * independence of merges, growth, and the wire encoding (round trip, filter, malformed input).
 */
#include "cluster/leaders.h"
#include "test.h"

static ldr_entry mk(uint64_t g, int32_t leader, int64_t term, int32_t reporter, int n_isr,
                    const int32_t *isr)
{
    ldr_entry e;
    memset(&e, 0, sizeof(e));
    e.group = g;
    e.leader = leader;
    e.term = term;
    e.reporter = reporter;
    e.n_isr = (uint8_t)n_isr;
    for (int i = 0; i < n_isr; i++) e.isr[i] = isr[i];
    return e;
}

TEST(merge_rules)
{
    ldr_table t;
    CHECK_EQ(ldr_init(&t), 0);
    int32_t isr3[] = {1, 2, 3}, isr2[] = {1, 2};
    /* a follower's view first: leader 1 in term 5, no ISR */
    ldr_entry e = mk(100, 1, 5, 2, 0, NULL);
    CHECK_EQ(ldr_merge(&t, &e), 1);
    /* the leader's report in the same term sets the ISR */
    e = mk(100, 1, 5, 1, 3, isr3);
    CHECK_EQ(ldr_merge(&t, &e), 1);
    CHECK_EQ(ldr_get(&t, 100)->n_isr, 3);
    /* the same again: no change */
    CHECK_EQ(ldr_merge(&t, &e), 0);
    /* a follower of the same term cannot wipe the ISR */
    e = mk(100, 1, 5, 3, 0, NULL);
    CHECK_EQ(ldr_merge(&t, &e), 0);
    CHECK_EQ(ldr_get(&t, 100)->n_isr, 3);
    /* the leader shrinks the ISR */
    e = mk(100, 1, 5, 1, 2, isr2);
    CHECK_EQ(ldr_merge(&t, &e), 1);
    CHECK_EQ(ldr_get(&t, 100)->n_isr, 2);
    /* an older term is ignored */
    e = mk(100, 2, 4, 2, 3, isr3);
    CHECK_EQ(ldr_merge(&t, &e), 0);
    CHECK_EQ(ldr_get(&t, 100)->leader, 1);
    /* a new term without a leader yet (election) replaces it */
    e = mk(100, -1, 6, 3, 0, NULL);
    CHECK_EQ(ldr_merge(&t, &e), 1);
    CHECK_EQ(ldr_get(&t, 100)->leader, -1);
    /* ... and the elected leader of that term replaces the unknown one */
    e = mk(100, 3, 6, 2, 0, NULL);
    CHECK_EQ(ldr_merge(&t, &e), 1);
    CHECK_EQ(ldr_get(&t, 100)->leader, 3);
    /* an unknown leader in the same term does not replace a known one */
    e = mk(100, -1, 6, 1, 0, NULL);
    CHECK_EQ(ldr_merge(&t, &e), 0);
    CHECK_EQ(ldr_get(&t, 100)->leader, 3);
    CHECK(ldr_get(&t, 101) == NULL);
    e = mk(0, 1, 1, 1, 0, NULL);
    CHECK_EQ(ldr_merge(&t, &e), AL_EINVAL);
    ldr_free(&t);
}

/* The same reports merged in two different orders give the same table. */
TEST(merge_order_independent)
{
    uint64_t seed = test_seed();
    srand((unsigned)seed);
    enum { N = 400 };
    ldr_entry es[N];
    for (int i = 0; i < N; i++) {
        int32_t term = rand() % 5, leader = rand() % 4 - 1;
        int32_t reporter = rand() % 3;
        int32_t isr[3] = {leader < 0 ? 0 : leader, (leader + 1) & 3, (leader + 2) & 3};
        /* one leader per term (Raft's guarantee): leader = term % 3 or unknown */
        if (leader >= 0) leader = term % 3;
        isr[0] = leader < 0 ? 0 : leader;
        int n_isr = reporter == leader ? 1 + (term % 3) : 0;
        /* a leader's ISR in a term is what it last reported: make it a function of term */
        es[i] = mk(1 + (uint64_t)(rand() % 20), leader, term, reporter, n_isr, isr);
    }
    ldr_table a, b;
    CHECK_EQ(ldr_init(&a), 0);
    CHECK_EQ(ldr_init(&b), 0);
    for (int i = 0; i < N; i++) CHECK(ldr_merge(&a, &es[i]) >= 0);
    for (int i = N - 1; i >= 0; i--) CHECK(ldr_merge(&b, &es[i]) >= 0);
    CHECK_EQ(a.n, b.n);
    for (uint64_t g = 1; g <= 20; g++) {
        const ldr_entry *x = ldr_get(&a, g), *y = ldr_get(&b, g);
        CHECK((x == NULL) == (y == NULL));
        if (!x || !y) continue;
        CHECK_EQ(x->term, y->term);
        CHECK_EQ(x->leader, y->leader);
        CHECK_EQ(x->n_isr, y->n_isr);
    }
    ldr_free(&a);
    ldr_free(&b);
}

TEST(grow_and_copy)
{
    ldr_table t, c;
    CHECK_EQ(ldr_init(&t), 0);
    CHECK_EQ(ldr_init(&c), 0);
    for (uint64_t g = 1; g <= 5000; g++) {
        ldr_entry e = mk(g << 20 | 1, (int32_t)(g % 3), (int64_t)g, (int32_t)(g % 3), 0, NULL);
        CHECK_EQ(ldr_merge(&t, &e), 1);
    }
    CHECK_EQ(t.n, 5000u);
    CHECK_EQ(ldr_copy(&c, &t), 0);
    for (uint64_t g = 1; g <= 5000; g += 7) {
        const ldr_entry *e = ldr_get(&c, g << 20 | 1);
        CHECK(e != NULL);
        if (e) CHECK_EQ(e->term, (int64_t)g);
    }
    ldr_free(&t);
    ldr_free(&c);
}

struct collect {
    int n;
    int32_t from;
    ldr_entry e[8];
};

static void collect_cb(void *ctx, int32_t from, const ldr_entry *e)
{
    struct collect *c = ctx;
    c->from = from;
    if (c->n < 8) c->e[c->n] = *e;
    c->n++;
}

static bool keep_leader_1(void *ctx, const ldr_entry *e)
{
    (void)ctx;
    return e->leader == 1;
}

TEST(wire_round_trip_and_malformed)
{
    ldr_table t;
    CHECK_EQ(ldr_init(&t), 0);
    int32_t isr[] = {1, 2, 3};
    ldr_entry e1 = mk(10, 1, 3, 1, 3, isr), e2 = mk(20, 2, 4, 2, 1, isr + 1);
    ldr_entry e3 = mk(30, 1, 9, 1, 0, NULL);
    ldr_merge(&t, &e1);
    ldr_merge(&t, &e2);
    ldr_merge(&t, &e3);
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_EQ(ldr_encode(&t, 1, keep_leader_1, NULL, &buf, &len), 2);
    struct collect c = {0};
    CHECK_EQ(ldr_decode(buf, len, collect_cb, &c), 2);
    CHECK_EQ(c.n, 2);
    CHECK_EQ(c.from, 1);
    for (int i = 0; i < 2 && i < c.n; i++) {
        const ldr_entry *want = c.e[i].group == 10 ? &e1 : &e3;
        CHECK_EQ(c.e[i].leader, want->leader);
        CHECK_EQ(c.e[i].term, want->term);
        CHECK_EQ(c.e[i].n_isr, want->n_isr);
        CHECK_EQ(c.e[i].reporter, 1);
        if (want->n_isr) CHECK_EQ(c.e[i].isr[2], 3);
    }
    /* every truncation is refused and calls nothing */
    for (size_t cut = 0; cut < len; cut++) {
        struct collect d = {0};
        CHECK(ldr_decode(buf, cut, collect_cb, &d) < 0);
        CHECK_EQ(d.n, 0);
    }
    /* trailing garbage, bad magic, bad isr count */
    uint8_t *big = malloc(len + 1);
    memcpy(big, buf, len);
    big[len] = 0;
    struct collect d = {0};
    CHECK_EQ(ldr_decode(big, len + 1, collect_cb, &d), AL_EMALFORMED);
    big[0] ^= 1;
    CHECK_EQ(ldr_decode(big, len, collect_cb, &d), AL_EMALFORMED);
    big[0] ^= 1;
    big[14 + 20] = 200; /* first entry's n_isr */
    CHECK_EQ(ldr_decode(big, len, collect_cb, &d), AL_EMALFORMED);
    CHECK_EQ(d.n, 0);
    /* random flips never crash and never read past the end (ASan) */
    uint64_t seed = test_seed();
    srand((unsigned)seed + 1);
    for (int i = 0; i < 20000; i++) {
        memcpy(big, buf, len);
        big[rand() % len] = (uint8_t)rand();
        struct collect x = {0};
        int rc = ldr_decode(big, len, collect_cb, &x);
        CHECK(rc < 0 || rc == x.n);
    }
    free(big);
    free(buf);
    ldr_free(&t);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
