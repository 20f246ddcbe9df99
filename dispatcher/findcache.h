/* findcache.h - per-loop cache for GET /phonebook/find.
 *
 * One table per event loop (no locks): positive answers stay until pushed
 * out by the LRU bound (an assigned number stays assigned), negative ones
 * for a short TTL (a number may be assigned any moment). A lookup that
 * misses creates a pending entry: requests for the same number that arrive
 * while it is being resolved wait on it, so one Redis/MySQL lookup answers
 * them all (single flight). */
#ifndef SB_FINDCACHE_H
#define SB_FINDCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct findcache;

enum find_state { FIND_MISS, FIND_YES, FIND_NO, FIND_PENDING };

/* A lookup's outcome: ok = false when it could not be made (503). */
typedef void (*find_done_fn)(void *arg, bool ok, bool exists);
struct find_waiter {
    find_done_fn fn;
    void *arg;
};

struct findcache *findcache_new(size_t capacity, int64_t negative_ttl_ms);
void findcache_free(struct findcache *fc);
/* FIND_YES / FIND_NO from the cache (and refreshes its LRU place), else
 * FIND_MISS (absent, expired or pending). Changes nothing else. */
enum find_state findcache_peek(struct findcache *fc, const char *phone);
/* FIND_MISS: the caller resolves it (and answers its own request); a
 * pending entry now exists for later lookups to wait on. FIND_PENDING:
 * (fn, arg) was queued and will be among the waiters findcache_resolve
 * returns. FIND_YES / FIND_NO: answered from the cache (fn not called). */
enum find_state findcache_lookup(struct findcache *fc, const char *phone, find_done_fn fn, void *arg);
/* Resolves a pending entry; returns its waiters (an array ended by fn ==
 * NULL that the caller frees, NULL only when out of memory) to call. cacheable =
 * false (the lookup failed) forgets the entry instead of storing it. */
struct find_waiter *findcache_resolve(struct findcache *fc, const char *phone, bool exists,
                                      bool cacheable);
/* Entries held (for tests and metrics). */
size_t findcache_size(const struct findcache *fc);

#endif
