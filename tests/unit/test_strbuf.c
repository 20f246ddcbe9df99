/* strbuf: formatting into free space and growing, integers without printf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static void test_appendf_grows_across_capacity(void **state)
{
    (void)state;
    struct strbuf b = {0};
    char want[4096] = "";
    for (int i = 0; i < 300; i++) {
        strbuf_appendf(&b, "%d,", i);
        snprintf(want + strlen(want), sizeof want - strlen(want), "%d,", i);
        assert_int_equal(b.len, strlen(want));
        assert_string_equal(b.p, want);
    }
    /* A text far larger than the free space. */
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    size_t before = b.len;
    strbuf_appendf(&b, "[%s]", big);
    assert_int_equal(b.len, before + sizeof big + 1);
    assert_int_equal(b.p[b.len - 1], ']');
    assert_int_equal(b.p[b.len], '\0');
    assert_false(strbuf_failed(&b));
    strbuf_free(&b);
}

static void test_append_i64(void **state)
{
    (void)state;
    const int64_t vals[] = {0, 7, -7, 10, 999, 1000, INT64_C(1763817933378), INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        struct strbuf b = {0};
        char want[32];
        strbuf_append(&b, "n=", 2);
        strbuf_append_i64(&b, vals[i]);
        snprintf(want, sizeof want, "n=%lld", (long long)vals[i]);
        assert_string_equal(b.p, want);
        strbuf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appendf_grows_across_capacity),
        cmocka_unit_test(test_append_i64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
