/* findcache.c - see findcache.h. A chained hash table plus an intrusive
 * LRU list; pending entries are never evicted. */
#include "findcache.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phone.h"
#include "util.h"

struct entry {
    char phone[PHONE_MAX + 1];
    enum find_state state;        /* FIND_YES or FIND_PENDING */
    struct find_waiter *waiters;   /* FIND_PENDING only */
    size_t nwaiters, capwaiters;
    struct entry *hnext;           /* hash chain */
    struct entry *prev, *next;     /* LRU, most recent first (not pending) */
};

struct findcache {
    struct entry **buckets;
    size_t nbuckets, size, capacity;
    struct entry *head, *tail;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

struct findcache *findcache_new(size_t capacity)
{
    struct findcache *fc = calloc(1, sizeof *fc);
    if (fc == NULL)
        return NULL;
    fc->nbuckets = 16;
    while (fc->nbuckets < capacity)
        fc->nbuckets *= 2;
    fc->buckets = calloc(fc->nbuckets, sizeof *fc->buckets);
    if (fc->buckets == NULL) {
        free(fc);
        return NULL;
    }
    fc->capacity = capacity;
    return fc;
}

void findcache_free(struct findcache *fc)
{
    if (fc == NULL)
        return;
    for (size_t i = 0; i < fc->nbuckets; i++)
        for (struct entry *e = fc->buckets[i], *n; e; e = n) {
            n = e->hnext;
            free(e->waiters);
            free(e);
        }
    free(fc->buckets);
    free(fc);
}

static struct entry **slot_of(struct findcache *fc, const char *phone)
{
    struct entry **pp = &fc->buckets[hash(phone) & (fc->nbuckets - 1)];
    while (*pp && strcmp((*pp)->phone, phone) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

static void lru_unlink(struct findcache *fc, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else if (fc->head == e)
        fc->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else if (fc->tail == e)
        fc->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(struct findcache *fc, struct entry *e)
{
    assert(e->state == FIND_YES); /* an entry in flight is never evicted */
    assert(e->prev == NULL && e->next == NULL && fc->head != e);
    e->prev = NULL;
    e->next = fc->head;
    if (fc->head)
        fc->head->prev = e;
    fc->head = e;
    if (fc->tail == NULL)
        fc->tail = e;
}

static void remove_entry(struct findcache *fc, struct entry *e)
{
    struct entry **pp = slot_of(fc, e->phone);
    *pp = e->hnext;
    lru_unlink(fc, e);
    free(e->waiters);
    free(e);
    assert(fc->size > 0);
    fc->size--;
}

static bool add_waiter(struct entry *e, find_done_fn fn, void *arg)
{
    if (e->nwaiters + 1 >= e->capwaiters) {
        size_t cap = e->capwaiters ? e->capwaiters * 2 : 4;
        struct find_waiter *w = realloc(e->waiters, cap * sizeof *w);
        if (w == NULL)
            return false;
        e->waiters = w;
        e->capwaiters = cap;
    }
    e->waiters[e->nwaiters++] = (struct find_waiter){fn, arg};
    return true;
}

enum find_state findcache_peek(struct findcache *fc, const char *phone)
{
    struct entry *e = *slot_of(fc, phone);
    if (e == NULL || e->state == FIND_PENDING)
        return FIND_MISS;
    lru_unlink(fc, e);
    lru_push(fc, e);
    return e->state;
}

enum find_state findcache_lookup(struct findcache *fc, const char *phone, find_done_fn fn, void *arg)
{
    struct entry **pp = slot_of(fc, phone);
    struct entry *e = *pp;
    if (e && e->state == FIND_PENDING && add_waiter(e, fn, arg))
        return FIND_PENDING;
    if (e && e->state == FIND_PENDING)
        return FIND_MISS; /* out of memory: resolve it separately */
    if (e) {
        lru_unlink(fc, e);
        lru_push(fc, e);
        return e->state;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return FIND_MISS; /* unrecorded: the caller resolves it all the same */
    snprintf(e->phone, sizeof e->phone, "%s", phone);
    e->state = FIND_PENDING;
    *pp = e;
    fc->size++;
    return FIND_MISS;
}

struct find_waiter *findcache_resolve(struct findcache *fc, const char *phone, bool keep)
{
    struct entry *e = *slot_of(fc, phone);
    if (e == NULL || e->state != FIND_PENDING)
        return calloc(1, sizeof(struct find_waiter));
    struct find_waiter *w = e->waiters ? e->waiters : calloc(1, sizeof *w);
    if (w)
        w[e->nwaiters] = (struct find_waiter){NULL, NULL};
    e->waiters = NULL;
    e->nwaiters = e->capwaiters = 0;
    if (!keep) {
        remove_entry(fc, e);
        return w;
    }
    e->state = FIND_YES;
    lru_push(fc, e);
    /* Over the bound: drop the least recently used answers. */
    while (fc->size > fc->capacity && fc->tail && fc->tail != e)
        remove_entry(fc, fc->tail);
    return w;
}

size_t findcache_size(const struct findcache *fc)
{
    return fc->size;
}
