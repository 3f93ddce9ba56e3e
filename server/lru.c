/*
 * lru.c - bounded LRU cache: chained hash table + doubly-linked recency list under one mutex.
 *
 * Invariants (checked by lru_check_invariants in the unit test):
 *   - every entry is in exactly one hash chain (bucket = hash & mask) and in the recency list;
 *   - the list runs from head (most recently used) to tail (least recently used);
 *   - entries <= capacity.
 * Each entry is one allocation: the struct, then dim floats, then the key bytes.
 */
#include "lru.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

typedef struct lru_entry {
    struct lru_entry *chain;      /* next in the same hash bucket */
    struct lru_entry *prev, *next; /* recency list: prev = more recent */
    uint64_t hash;
    size_t key_len;
    float vec[];                  /* dim floats, then key_len key bytes */
} lru_entry;

struct lru_cache {
    pthread_mutex_t lock;
    size_t capacity, dim;
    size_t entries;
    size_t mask;        /* buckets - 1 (power of two) */
    lru_entry **buckets;
    lru_entry *head, *tail;
    uint64_t sip_k0, sip_k1;
    uint64_t hits, misses, insertions, evictions;
};

/* ---- SipHash-1-3 (Aumasson & Bernstein; the variant Rust's HashMap uses) ----------------- */

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                               \
    do {                                                                                       \
        v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);                          \
        v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                                               \
        v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                                               \
        v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);                          \
    } while (0)

static uint64_t load_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t siphash13(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len) {
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load_le64(in + i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++) b |= (uint64_t)in[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- helpers (lock held) ------------------------------------------------------------------ */

static unsigned char *entry_key(lru_cache *c, lru_entry *e) {
    return (unsigned char *)(e->vec + c->dim);
}

static void list_unlink(lru_cache *c, lru_entry *e) {
    if (e->prev) e->prev->next = e->next; else c->head = e->next;
    if (e->next) e->next->prev = e->prev; else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_front(lru_cache *c, lru_entry *e) {
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e; else c->tail = e;
    c->head = e;
}

/* Returns the address of the chain pointer that points at the matching entry (or at NULL). */
static lru_entry **find_slot(lru_cache *c, uint64_t h, const void *key, size_t key_len) {
    lru_entry **slot = &c->buckets[h & c->mask];
    while (*slot) {
        lru_entry *e = *slot;
        if (e->hash == h && e->key_len == key_len && memcmp(entry_key(c, e), key, key_len) == 0)
            return slot;
        slot = &e->chain;
    }
    return slot;
}

static void remove_entry(lru_cache *c, lru_entry *e) {
    lru_entry **slot = &c->buckets[e->hash & c->mask];
    while (*slot != e) slot = &(*slot)->chain;
    *slot = e->chain;
    list_unlink(c, e);
    c->entries--;
    free(e);
}

/* ---- API ---------------------------------------------------------------------------------- */

lru_cache *lru_create(size_t capacity, size_t dim) {
    if (dim == 0 || dim > LRU_MAX_DIM || capacity > LRU_MAX_CAPACITY) return NULL;
    lru_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return NULL;
    }
    c->capacity = capacity;
    c->dim = dim;
    if (capacity > 0) {
        /* load factor <= 1 */
        size_t n = 16;
        while (n < capacity) n <<= 1;
        c->buckets = calloc(n, sizeof *c->buckets);
        if (!c->buckets) {
            pthread_mutex_destroy(&c->lock);
            free(c);
            return NULL;
        }
        c->mask = n - 1;
    }
    uint64_t k[2];
    if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
        /* No entropy yet: hashing still works, only flooding resistance is weaker. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
        k[1] = (uint64_t)(uintptr_t)c * 0xc2b2ae3d27d4eb4fULL ^ (uint64_t)ts.tv_sec;
    }
    c->sip_k0 = k[0];
    c->sip_k1 = k[1];
    return c;
}

void lru_free(lru_cache *c) {
    if (!c) return;
    lru_entry *e = c->head;
    while (e) {
        lru_entry *next = e->next;
        free(e);
        e = next;
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Any thread. */
int lru_get(lru_cache *c, const void *key, size_t key_len, float *out) {
    if (!c || c->capacity == 0 || (!key && key_len) || !out) return 0;
    if (key_len > LRU_MAX_KEY_BYTES) {
        pthread_mutex_lock(&c->lock);
        c->misses++;
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    /* Hash outside the lock: it only reads the immutable key. */
    uint64_t h = siphash13(c->sip_k0, c->sip_k1, key, key_len);
    pthread_mutex_lock(&c->lock);
    lru_entry *e = *find_slot(c, h, key, key_len);
    if (!e) {
        c->misses++;
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    memcpy(out, e->vec, c->dim * sizeof(float));
    if (c->head != e) {
        list_unlink(c, e);
        list_push_front(c, e);
    }
    c->hits++;
    pthread_mutex_unlock(&c->lock);
    return 1;
}

/* Any thread. */
int lru_put(lru_cache *c, const void *key, size_t key_len, const float *vec) {
    if (!c || c->capacity == 0 || (!key && key_len) || !vec || key_len > LRU_MAX_KEY_BYTES)
        return -1;
    uint64_t h = siphash13(c->sip_k0, c->sip_k1, key, key_len);
    /* Allocate (and fill) before taking the lock, and before evicting anything, so a failed
     * allocation leaves the cache unchanged and the lock is never held across malloc. */
    lru_entry *n = malloc(sizeof *n + c->dim * sizeof(float) + key_len);
    if (!n) return -1;
    n->chain = n->prev = n->next = NULL;
    n->hash = h;
    n->key_len = key_len;
    memcpy(n->vec, vec, c->dim * sizeof(float));
    if (key_len) memcpy(entry_key(c, n), key, key_len);

    lru_entry *victim = NULL;
    pthread_mutex_lock(&c->lock);
    lru_entry **slot = find_slot(c, h, key, key_len);
    if (*slot) { /* replace in place of the old entry */
        lru_entry *old = *slot;
        n->chain = old->chain;
        *slot = n;
        list_unlink(c, old);
        victim = old;
    } else {
        if (c->entries == c->capacity) {
            lru_entry *lru = c->tail;
            lru_entry **vs = &c->buckets[lru->hash & c->mask];
            while (*vs != lru) vs = &(*vs)->chain;
            *vs = lru->chain;
            list_unlink(c, lru);
            c->entries--;
            c->evictions++;
            victim = lru;
            /* slot may have pointed at lru->chain; find it again */
            slot = find_slot(c, h, key, key_len);
        }
        *slot = n;
        c->entries++;
    }
    list_push_front(c, n);
    c->insertions++;
    pthread_mutex_unlock(&c->lock);
    free(victim); /* outside the lock */
    return 0;
}

void lru_clear(lru_cache *c) {
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    while (c->head) remove_entry(c, c->head);
    pthread_mutex_unlock(&c->lock);
}

void lru_get_stats(lru_cache *c, lru_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    out->hits = c->hits;
    out->misses = c->misses;
    out->insertions = c->insertions;
    out->evictions = c->evictions;
    out->entries = c->entries;
    out->capacity = c->capacity;
    out->dim = c->dim;
    pthread_mutex_unlock(&c->lock);
}
