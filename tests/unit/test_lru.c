/* test_lru.c - eviction order against a reference model, invariants, limits, concurrency.
 * Includes lru.c to check the internal structure (h2o style). */
#include "lru.c"

#include <stdio.h>

#include "testlib.h"

/* Walks the hash chains and the recency list; returns 0 if every invariant holds. */
static int lru_check_invariants(lru_cache *c) {
    pthread_mutex_lock(&c->lock);
    int bad = 0;
    size_t n_list = 0, n_chain = 0;
    lru_entry *prev = NULL;
    for (lru_entry *e = c->head; e; e = e->next) {
        if (e->prev != prev) bad = 1;
        prev = e;
        if (++n_list > c->capacity + 1) {
            bad = 1;
            break;
        }
        /* findable through its bucket */
        lru_entry *x = c->buckets[e->hash & c->mask];
        while (x && x != e) x = x->chain;
        if (!x) bad = 1;
    }
    if (c->tail != prev) bad = 1;
    if (c->capacity > 0) {
        for (size_t b = 0; b <= c->mask; b++)
            for (lru_entry *x = c->buckets[b]; x; x = x->chain) {
                n_chain++;
                if ((x->hash & c->mask) != b) bad = 1;
            }
    }
    if (n_list != c->entries || n_chain != c->entries || c->entries > c->capacity) bad = 1;
    pthread_mutex_unlock(&c->lock);
    return bad ? -1 : 0;
}

static int put_s(lru_cache *c, const char *k, float v) {
    float vec[4] = {v, v + 1, v + 2, v + 3};
    return lru_put(c, k, strlen(k), vec);
}

/* 1 if hit with the expected value, 0 miss, -1 hit with a wrong vector */
static int get_s(lru_cache *c, const char *k, float v) {
    float out[4] = {-1, -1, -1, -1};
    if (!lru_get(c, k, strlen(k), out)) return 0;
    return (out[0] == v && out[3] == v + 3) ? 1 : -1;
}

static void test_basic_and_eviction_order(void) {
    CHECK(lru_create(10, 0) == NULL);
    CHECK(lru_create(10, LRU_MAX_DIM + 1) == NULL);
    CHECK(lru_create(LRU_MAX_CAPACITY + 1, 4) == NULL);

    lru_cache *c = lru_create(3, 4);
    CHECK(c != NULL);
    if (!c) return;
    CHECK_EQ_INT(get_s(c, "a", 1), 0);
    CHECK_EQ_INT(put_s(c, "a", 1), 0);
    CHECK_EQ_INT(put_s(c, "b", 2), 0);
    CHECK_EQ_INT(put_s(c, "c", 3), 0);
    CHECK_EQ_INT(get_s(c, "a", 1), 1); /* a becomes most recent: order a c b */
    CHECK_EQ_INT(put_s(c, "d", 4), 0); /* evicts b */
    CHECK_EQ_INT(get_s(c, "b", 2), 0);
    CHECK_EQ_INT(get_s(c, "c", 3), 1); /* order c d a */
    CHECK_EQ_INT(put_s(c, "e", 5), 0); /* evicts a */
    CHECK_EQ_INT(get_s(c, "a", 1), 0);
    CHECK_EQ_INT(get_s(c, "d", 4), 1);
    CHECK_EQ_INT(get_s(c, "e", 5), 1);
    /* replacing keeps the count and refreshes recency */
    CHECK_EQ_INT(put_s(c, "c", 30), 0);
    CHECK_EQ_INT(get_s(c, "c", 30), 1);
    lru_stats st;
    lru_get_stats(c, &st);
    CHECK_EQ_INT(st.entries, 3);
    CHECK_EQ_INT(st.evictions, 2);
    CHECK_EQ_INT(st.insertions, 6);
    CHECK_EQ_INT(st.hits, 5);
    CHECK_EQ_INT(st.misses, 3);
    CHECK_EQ_INT(st.capacity, 3);
    CHECK_EQ_INT(st.dim, 4);
    CHECK_EQ_INT(lru_check_invariants(c), 0);

    /* keys are byte strings: embedded NULs and the empty key are distinct keys */
    float v1[4] = {7, 8, 9, 10}, v2[4] = {1, 2, 3, 4}, out[4];
    CHECK_EQ_INT(lru_put(c, "x\0a", 3, v1), 0);
    CHECK_EQ_INT(lru_put(c, "x\0b", 3, v2), 0);
    CHECK_EQ_INT(lru_put(c, "", 0, v2), 0);
    CHECK(lru_get(c, "x\0a", 3, out) == 1 && out[0] == 7);
    CHECK(lru_get(c, "x\0b", 3, out) == 1 && out[0] == 1);
    CHECK(lru_get(c, "", 0, out) == 1 && out[3] == 4);
    CHECK(lru_get(c, "x", 1, out) == 0);

    /* too-long keys are refused and miss */
    size_t big = LRU_MAX_KEY_BYTES + 1;
    char *k = calloc(1, big);
    CHECK_EQ_INT(lru_put(c, k, big, v1), -1);
    CHECK_EQ_INT(lru_get(c, k, big, out), 0);
    CHECK_EQ_INT(lru_put(c, k, big - 1, v1), 0);
    CHECK_EQ_INT(lru_get(c, k, big - 1, out), 1);
    free(k);
    CHECK_EQ_INT(lru_put(c, NULL, 3, v1), -1);
    CHECK_EQ_INT(lru_put(c, "a", 1, NULL), -1);

    lru_clear(c);
    lru_get_stats(c, &st);
    CHECK_EQ_INT(st.entries, 0);
    CHECK_EQ_INT(get_s(c, "c", 30), 0);
    CHECK_EQ_INT(lru_check_invariants(c), 0);
    CHECK_EQ_INT(put_s(c, "c", 31), 0); /* usable after clear */
    CHECK_EQ_INT(get_s(c, "c", 31), 1);
    lru_free(c);
    lru_free(NULL);
}

static void test_disabled(void) {
    lru_cache *c = lru_create(0, 512);
    CHECK(c != NULL);
    float v[512] = {0}, out[512];
    CHECK_EQ_INT(lru_put(c, "a", 1, v), -1);
    CHECK_EQ_INT(lru_get(c, "a", 1, out), 0);
    lru_stats st;
    lru_get_stats(c, &st);
    CHECK_EQ_INT(st.entries + st.hits + st.misses + st.insertions, 0);
    lru_clear(c);
    lru_free(c);
}

/* Reference model: keys 0..K-1, an array ordered by recency. */
#define REF_CAP 37
#define REF_KEYS 150
typedef struct {
    int keys[REF_CAP];
    float vals[REF_CAP];
    int n;
} ref_lru;

static int ref_find(ref_lru *r, int key) {
    for (int i = 0; i < r->n; i++)
        if (r->keys[i] == key) return i;
    return -1;
}

static void ref_touch(ref_lru *r, int i) { /* move i to front (index 0 = most recent) */
    int k = r->keys[i];
    float v = r->vals[i];
    memmove(r->keys + 1, r->keys, (size_t)i * sizeof(int));
    memmove(r->vals + 1, r->vals, (size_t)i * sizeof(float));
    r->keys[0] = k;
    r->vals[0] = v;
}

static void test_against_reference(void) {
    lru_cache *c = lru_create(REF_CAP, 1);
    ref_lru r = {.n = 0};
    uint64_t rng = 12345;
    int mismatches = 0, hits = 0;
    for (int op = 0; op < 200000; op++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        int key = (int)((rng >> 33) % REF_KEYS);
        char kb[16];
        int kl = snprintf(kb, sizeof kb, "k%d", key);
        if ((rng >> 20) & 1) {
            float out = -1;
            int hit = lru_get(c, kb, (size_t)kl, &out);
            int i = ref_find(&r, key);
            if (hit != (i >= 0) || (hit && out != r.vals[i])) mismatches++;
            if (i >= 0) ref_touch(&r, i);
            hits += hit;
        } else {
            float v = (float)op;
            if (lru_put(c, kb, (size_t)kl, &v) != 0) mismatches++;
            int i = ref_find(&r, key);
            if (i < 0) {
                if (r.n == REF_CAP) r.n--; /* drop the least recent (last) */
                i = r.n++;
                r.keys[i] = key;
            }
            r.vals[i] = v;
            ref_touch(&r, i);
        }
        if (op % 5000 == 0) CHECK_EQ_INT(lru_check_invariants(c), 0);
    }
    CHECK_EQ_INT(mismatches, 0);
    CHECK(hits > 1000); /* the test exercised hits, not just misses */
    /* final order of the list equals the reference order */
    int order_ok = 1, i = 0;
    for (lru_entry *e = c->head; e; e = e->next, i++) {
        char kb[16];
        int kl = snprintf(kb, sizeof kb, "k%d", r.keys[i]);
        if (i >= r.n || e->key_len != (size_t)kl || memcmp(entry_key(c, e), kb, (size_t)kl) != 0)
            order_ok = 0;
    }
    CHECK(order_ok && i == r.n);
    CHECK_EQ_INT(lru_check_invariants(c), 0);
    lru_free(c);
}

/* ---- concurrency --------------------------------------------------------------------------- */

#define THREADS 4
#define OPS 100000
#define DIM 64
typedef struct {
    lru_cache *c;
    int seed;
    uint64_t gets, torn;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    uint64_t rng = (uint64_t)a->seed * 7919 + 1;
    float vec[DIM], out[DIM];
    for (int op = 0; op < OPS; op++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t key = (uint32_t)(rng >> 40) % 500;
        char kb[32];
        int kl = snprintf(kb, sizeof kb, "label-%u", key);
        if ((rng >> 10) % 3 == 0) {
            for (int i = 0; i < DIM; i++) vec[i] = (float)(key * 1000 + (uint32_t)i);
            lru_put(a->c, kb, (size_t)kl, vec);
        } else {
            a->gets++;
            if (lru_get(a->c, kb, (size_t)kl, out)) {
                /* copy-out under the lock: a hit is never a mix of two vectors */
                for (int i = 0; i < DIM; i++)
                    if (out[i] != (float)(key * 1000 + (uint32_t)i)) {
                        a->torn++;
                        break;
                    }
            }
        }
    }
    return NULL;
}

static void test_concurrent(void) {
    lru_cache *c = lru_create(200, DIM);
    pthread_t th[THREADS];
    worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg){c, i, 0, 0};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    uint64_t gets = 0, torn = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        gets += args[i].gets;
        torn += args[i].torn;
    }
    lru_stats st;
    lru_get_stats(c, &st);
    CHECK_EQ_INT(torn, 0);
    CHECK_EQ_INT(st.hits + st.misses, gets);
    CHECK(st.hits > 0 && st.misses > 0 && st.evictions > 0);
    CHECK_EQ_INT(st.entries, 200);
    CHECK_EQ_INT(lru_check_invariants(c), 0);
    lru_free(c);
}

static void test_siphash_keyed(void) {
    /* Same input, different keys -> different hashes; every input byte matters. */
    const uint8_t m[15] = "abcdefghijklmno";
    uint64_t h1 = siphash13(1, 2, m, sizeof m), h2 = siphash13(1, 3, m, sizeof m);
    CHECK(h1 != h2);
    CHECK(siphash13(1, 2, m, 14) != h1);
    CHECK(siphash13(1, 2, m, sizeof m) == h1);
    /* SipHash-1-3 reference vector (k = 00..0f, empty input), as in Rust's std tests. */
    uint64_t k0 = 0x0706050403020100ULL, k1 = 0x0f0e0d0c0b0a0908ULL;
    CHECK_MSG(siphash13(k0, k1, m, 0) == 0xabac0158050fc4dcULL, "%llx",
              (unsigned long long)siphash13(k0, k1, m, 0));
}

int main(void) {
    test_basic_and_eviction_order();
    test_disabled();
    test_against_reference();
    test_concurrent();
    test_siphash_keyed();
    TEST_MAIN_END();
}
