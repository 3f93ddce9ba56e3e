/*
 * lru.h - a bounded least-recently-used cache from byte-string keys to float vectors of one
 * fixed dimension. Used for label embeddings (key = template + "\0" + label text), so a repeated
 * label set costs only the image pass.
 *
 * O(1) get/put: a chained hash table (keyed SipHash-1-3 with a random per-cache key, so crafted
 * labels cannot force collisions) plus a doubly-linked recency list. One mutex guards the whole
 * cache; critical sections are a hash lookup plus a memcpy of dim floats.
 *
 * Copy-in / copy-out: lru_put copies the key and the vector, lru_get copies the vector into the
 * caller's buffer, so no pointer into the cache ever escapes and entries may be evicted at any
 * time. capacity 0 gives a valid, disabled cache (get always misses without counting, put does
 * nothing), so callers need not special-case it.
 *
 * Thread safety: lru_create / lru_free on one thread (free after all users stopped); every other
 * function from any thread concurrently. Ownership: the caller frees the handle with lru_free().
 */
#ifndef CLOOB_LRU_H
#define CLOOB_LRU_H

#include <stddef.h>
#include <stdint.h>

#define LRU_MAX_KEY_BYTES 65536    /* longer keys are never cached: get misses, put refuses */
#define LRU_MAX_CAPACITY 1048576   /* entries (the bucket array is allocated up front) */
#define LRU_MAX_DIM 65536          /* floats per vector */

typedef struct lru_cache lru_cache;

/* capacity: max entries (0 = disabled); dim: floats per vector (1..LRU_MAX_DIM).
 * NULL on bad arguments or allocation failure. Memory: ~(capacity * (dim*4 + key + 64)) bytes at
 * most, allocated per entry as entries arrive (the bucket array is allocated up front). */
lru_cache *lru_create(size_t capacity, size_t dim);
void lru_free(lru_cache *c); /* NULL is fine */

/* Hit: copies dim floats into out, marks the entry most recently used, returns 1.
 * Miss: returns 0, out untouched. Counts a hit or a miss (unless disabled). */
int lru_get(lru_cache *c, const void *key, size_t key_len, float *out);

/*
 * Inserts or replaces key -> vec (dim floats copied), as most recently used, evicting the least
 * recently used entry when full. Returns 0 on success, -1 if the cache is disabled, the key is
 * too long, or allocation failed (the cache stays consistent either way).
 */
int lru_put(lru_cache *c, const void *key, size_t key_len, const float *vec);

/* Removes every entry (keeps counters). */
void lru_clear(lru_cache *c);

typedef struct lru_stats {
    uint64_t hits, misses, insertions, evictions;
    size_t entries, capacity, dim;
} lru_stats;
void lru_get_stats(lru_cache *c, lru_stats *out);

#endif /* CLOOB_LRU_H */
