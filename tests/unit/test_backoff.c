/* Backoff: grows exponentially, capped, jittered within bounds, resets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

static void test_bounds_and_growth(void **state)
{
    (void)state;
    struct backoff b;
    backoff_init(&b, 100, 5000);
    assert_int_equal(backoff_ceiling(&b, 0), 100);
    assert_int_equal(backoff_ceiling(&b, 3), 800);
    assert_int_equal(backoff_ceiling(&b, 10), 5000);
    for (unsigned a = 0; a < 20; a++) {
        int64_t d = backoff_next(&b);
        assert_true(d >= 50);
        assert_true(d <= backoff_ceiling(&b, a));
    }
    backoff_reset(&b);
    assert_int_equal(b.attempt, 0);
    assert_true(backoff_next(&b) <= 100);
}

static void test_jitter_spreads(void **state)
{
    (void)state;
    /* At the cap, 200 draws from [50, 5000] must not all be equal. */
    struct backoff b;
    backoff_init(&b, 100, 5000);
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 200; i++) {
        b.attempt = 10;
        int64_t d = backoff_next(&b);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(hi - lo > 1000);
}

static void test_degenerate_config(void **state)
{
    (void)state;
    struct backoff b;
    backoff_init(&b, 0, 0); /* clamped to 1 ms */
    assert_true(backoff_next(&b) >= 0);
    assert_true(backoff_next(&b) <= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_and_growth),
        cmocka_unit_test(test_jitter_spreads),
        cmocka_unit_test(test_degenerate_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
