/* findcache.h - per-loop cache for GET /phonebook/find.
 *
 * One table per event loop (no locks). It keeps only answers that can
 * never become false: numbers MySQL holds as assigned (a number is never
 * unassigned), until pushed out by the LRU bound. "Not assigned" is never
 * kept here, nor an assignment Kafka has but MySQL not yet (the worker may
 * still refuse it): another loop or process may assign the number any
 * moment, and a read must see an assign that was answered. (A "no" is
 * remembered in Redis instead, where an assign outranks it: phone.h.) A lookup that misses
 * creates a pending entry: requests for the same number that arrive while
 * it is being resolved wait on it, so one Redis/MySQL lookup answers them
 * all (single flight; phonebook_api.c rechecks Redis for a waiter that a
 * "no" reaches, since the lookup may have begun before its request). */
#ifndef SB_FINDCACHE_H
#define SB_FINDCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct findcache;

enum find_state { FIND_MISS, FIND_YES, FIND_PENDING };

/* A lookup's outcome: ok = false when it could not be made (503). */
typedef void (*find_done_fn)(void *arg, bool ok, bool exists);
struct find_waiter {
    find_done_fn fn;
    void *arg;
};

/* NULL only when out of memory. */
struct findcache *findcache_new(size_t capacity);
void findcache_free(struct findcache *fc);
/* FIND_YES from the cache (and refreshes its LRU place), else FIND_MISS
 * (absent or pending). Changes nothing else. */
enum find_state findcache_peek(struct findcache *fc, const char *phone);
/* FIND_MISS: the caller resolves it (and answers its own request); a
 * pending entry now exists for later lookups to wait on. FIND_PENDING:
 * (fn, arg) was queued and will be among the waiters findcache_resolve
 * returns. FIND_YES: answered from the cache (fn not called). */
enum find_state findcache_lookup(struct findcache *fc, const char *phone, find_done_fn fn, void *arg);
/* Resolves a pending entry; returns its waiters (an array ended by fn ==
 * NULL that the caller frees, NULL only when out of memory) to call. keep:
 * the number is assigned for good (MySQL has it), and is remembered;
 * otherwise the entry is forgotten. */
struct find_waiter *findcache_resolve(struct findcache *fc, const char *phone, bool keep);
/* Entries held (for tests and metrics). */
size_t findcache_size(const struct findcache *fc);

#endif
