/* SMS segments (jobs/segments.c): GSM-7 when every character is in the
 * default alphabet or its extension table (two septets each), else UCS-2;
 * 160/153 septets, 70/67 UTF-16 units; an extension character or a
 * surrogate pair never split between segments. The cases at each boundary
 * are counted by hand, not by the code under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "segments.h"

static char *repeat(const char *unit, int n)
{
    size_t len = strlen(unit);
    char *s = malloc(len * (size_t)n + 1);
    assert_non_null(s);
    for (int i = 0; i < n; i++)
        memcpy(s + len * (size_t)i, unit, len);
    s[len * (size_t)n] = '\0';
    return s;
}

static void check(const char *text, const char *encoding, int64_t units, int64_t segs)
{
    struct segments s;
    segments_count(text, &s);
    assert_string_equal(segments_encoding(&s), encoding);
    assert_int_equal(s.units, units);
    assert_int_equal(s.segments, segs);
}

static void check_repeat(const char *unit, int n, const char *encoding, int64_t units, int64_t segs)
{
    char *s = repeat(unit, n);
    check(s, encoding, units, segs);
    free(s);
}

static void test_gsm7(void **state)
{
    (void)state;
    check("", "GSM-7", 0, 1);
    check("hi, how are you?", "GSM-7", 16, 1);
    check("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\r\n", "GSM-7", 44, 1);
    check_repeat("a", 160, "GSM-7", 160, 1);
    check_repeat("a", 161, "GSM-7", 161, 2);
    check_repeat("a", 306, "GSM-7", 306, 2); /* 2 x 153 */
    check_repeat("a", 307, "GSM-7", 307, 3);
    /* The extension table: two septets each. */
    check("{}[]~|^\\€\f", "GSM-7", 20, 1);
    check_repeat("€", 80, "GSM-7", 160, 1);
    check_repeat("€", 81, "GSM-7", 162, 2);
    /* 158 septets with a pair in them still fit one segment of 160. */
    char *s = repeat("a", 152);
    char buf[200];
    strcpy(buf, s);
    strcat(buf, "€aaaa");
    check(buf, "GSM-7", 158, 1);
    free(s);
    /* 306 septets, two segments' worth, that take three because of where
     * a pair falls: 152 a's, €, 152 a's go 152 | 2 + 151 | 1. */
    char *a = repeat("a", 152), *b = repeat("a", 152);
    char big[400];
    snprintf(big, sizeof big, "%s€%s", a, b);
    check(big, "GSM-7", 306, 3);
    free(a);
    free(b);
}

static void test_ucs2(void **state)
{
    (void)state;
    check("`", "UCS-2", 1, 1); /* the one printable ASCII character GSM-7 lacks */
    check("привет", "UCS-2", 6, 1);
    check_repeat("ж", 70, "UCS-2", 70, 1);
    check_repeat("ж", 71, "UCS-2", 71, 2);
    check_repeat("ж", 134, "UCS-2", 134, 2); /* 2 x 67 */
    check_repeat("ж", 135, "UCS-2", 135, 3);
    /* One character outside GSM-7 turns the whole text UCS-2. */
    char *s = repeat("a", 69);
    char buf[100];
    snprintf(buf, sizeof buf, "%sé", s); /* é is GSM-7 */
    check(buf, "GSM-7", 70, 1);
    snprintf(buf, sizeof buf, "%sê", s); /* ê is not */
    check(buf, "UCS-2", 70, 1);
    snprintf(buf, sizeof buf, "%sêa", s);
    check(buf, "UCS-2", 71, 2);
    free(s);
    /* Emoji: a surrogate pair, two units, never split. */
    check_repeat("😀", 35, "UCS-2", 70, 1);
    check_repeat("😀", 36, "UCS-2", 72, 2);
    /* 134 units, two segments' worth, that take three because a pair
     * would straddle the first boundary: 66 | 2 + 65 | 1. */
    char *x = repeat("x", 66), *y = repeat("y", 66);
    char *longer = malloc(300);
    snprintf(longer, 300, "%s😀%s", x, y);
    check(longer, "UCS-2", 134, 3);
    free(longer);
    free(x);
    free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gsm7),
        cmocka_unit_test(test_ucs2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
