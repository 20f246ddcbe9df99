/* The find cache (dispatcher/findcache.c): it keeps only numbers resolved
 * as assigned for good, never a "no"; lookups of a number being resolved
 * wait on the one lookup in flight and all get its answer; the LRU bound
 * holds and never drops a lookup in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>

#include "findcache.h"

static void done_cb(void *arg, bool ok, bool exists)
{
    (void)arg;
    (void)ok;
    (void)exists;
}

static size_t count_waiters(struct find_waiter *w)
{
    size_t n = 0;
    while (w[n].fn)
        n++;
    return n;
}

static void test_positive_kept(void **state)
{
    (void)state;
    struct findcache *fc = findcache_new(8);
    assert_int_equal(findcache_peek(fc, "6135550100"), FIND_MISS);
    assert_int_equal(findcache_lookup(fc, "6135550100", done_cb, NULL), FIND_MISS);
    /* In flight: peek still says miss (the caller must not answer yes). */
    assert_int_equal(findcache_peek(fc, "6135550100"), FIND_MISS);
    struct find_waiter *w = findcache_resolve(fc, "6135550100", true);
    assert_non_null(w);
    assert_int_equal(count_waiters(w), 0);
    free(w);
    assert_int_equal(findcache_peek(fc, "6135550100"), FIND_YES);
    assert_int_equal(findcache_lookup(fc, "6135550100", done_cb, NULL), FIND_YES);
    assert_int_equal(findcache_size(fc), 1);
    findcache_free(fc);
}

/* A "no" is forgotten at once: the number may be assigned the next
 * moment, on another loop or process. */
static void test_negative_not_kept(void **state)
{
    (void)state;
    struct findcache *fc = findcache_new(8);
    assert_int_equal(findcache_lookup(fc, "6135550101", done_cb, NULL), FIND_MISS);
    free(findcache_resolve(fc, "6135550101", false));
    assert_int_equal(findcache_size(fc), 0);
    assert_int_equal(findcache_peek(fc, "6135550101"), FIND_MISS);
    /* The next lookup resolves afresh (a miss, not a wait on nothing). */
    assert_int_equal(findcache_lookup(fc, "6135550101", done_cb, NULL), FIND_MISS);
    assert_int_equal(findcache_size(fc), 1);
    free(findcache_resolve(fc, "6135550101", true));
    assert_int_equal(findcache_peek(fc, "6135550101"), FIND_YES);
    findcache_free(fc);
}

static void test_single_flight(void **state)
{
    (void)state;
    struct findcache *fc = findcache_new(8);
    int args[20];
    assert_int_equal(findcache_lookup(fc, "6135550102", done_cb, NULL), FIND_MISS);
    for (int i = 0; i < 20; i++)
        assert_int_equal(findcache_lookup(fc, "6135550102", done_cb, &args[i]), FIND_PENDING);
    /* Another number is its own lookup. */
    assert_int_equal(findcache_lookup(fc, "6135550103", done_cb, NULL), FIND_MISS);
    struct find_waiter *w = findcache_resolve(fc, "6135550102", false);
    assert_int_equal(count_waiters(w), 20);
    for (int i = 0; i < 20; i++)
        assert_ptr_equal(w[i].arg, &args[i]); /* in arrival order */
    free(w);
    /* Resolving again (or a number never looked up) has no waiters. */
    w = findcache_resolve(fc, "6135550102", true);
    assert_int_equal(count_waiters(w), 0);
    free(w);
    assert_int_equal(findcache_peek(fc, "6135550102"), FIND_MISS);
    free(findcache_resolve(fc, "6135550103", true));
    findcache_free(fc);
}

static void test_lru_bound(void **state)
{
    (void)state;
    struct findcache *fc = findcache_new(4);
    char phone[16];
    for (int i = 0; i < 4; i++) {
        snprintf(phone, sizeof phone, "61355501%02d", i);
        assert_int_equal(findcache_lookup(fc, phone, done_cb, NULL), FIND_MISS);
        free(findcache_resolve(fc, phone, true));
    }
    /* 00 is used again, so 01 is now the least recent. */
    assert_int_equal(findcache_peek(fc, "6135550100"), FIND_YES);
    /* A lookup in flight past the bound is not evicted by the next answer. */
    assert_int_equal(findcache_lookup(fc, "6135550198", done_cb, NULL), FIND_MISS);
    assert_int_equal(findcache_lookup(fc, "6135550199", done_cb, NULL), FIND_MISS);
    free(findcache_resolve(fc, "6135550199", true));
    assert_int_equal(findcache_peek(fc, "6135550101"), FIND_MISS);
    assert_int_equal(findcache_peek(fc, "6135550102"), FIND_MISS);
    assert_int_equal(findcache_peek(fc, "6135550100"), FIND_YES);
    assert_int_equal(findcache_peek(fc, "6135550199"), FIND_YES);
    assert_int_equal(findcache_lookup(fc, "6135550198", done_cb, NULL), FIND_PENDING);
    struct find_waiter *w = findcache_resolve(fc, "6135550198", true);
    assert_int_equal(count_waiters(w), 1);
    free(w);
    assert_int_equal(findcache_size(fc), 4);
    findcache_free(fc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positive_kept),
        cmocka_unit_test(test_negative_not_kept),
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_lru_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
