/* Strict JSON input: UTF-8, nesting, NULs, field checks; json_print. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static cJSON *parse(const char *s, char *err)
{
    return json_parse_strict(s, strlen(s), err, ERRBUF_LEN);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(json_utf8_valid("plain", 5));
    assert_true(json_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    assert_false(json_utf8_valid("\xc3", 1));             /* truncated */
    assert_false(json_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    assert_false(json_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(json_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(json_utf8_valid("\xff", 1));
    assert_int_equal(json_utf8_len("caf\xc3\xa9"), 4);
}

static void test_parse_rejects(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    assert_null(parse("", err));
    assert_null(parse("{\"a\":", err));
    assert_non_null(strstr(err, "malformed"));
    assert_null(parse("{} x", err));
    assert_non_null(strstr(err, "trailing"));
    assert_null(parse("{\"a\":\"\xff\"}", err));
    assert_non_null(strstr(err, "UTF-8"));
    assert_null(parse("{\"a\":\"x\\u0000y\"}", err));
    assert_null(json_parse_strict("{\"a\":\"x\0\"}", 10, err, sizeof err));
    assert_non_null(strstr(err, "NUL"));
    char deep[200] = "";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    assert_null(parse(deep, err));
    assert_non_null(strstr(err, "nested"));
    /* an escaped backslash before u0000 is text, not a NUL escape */
    cJSON *ok = parse("{\"a\":\"\\\\u0000\"}", err);
    assert_non_null(ok);
    cJSON_Delete(ok);
    /* brackets inside strings do not count as nesting */
    ok = parse("{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}", err);
    assert_non_null(ok);
    cJSON_Delete(ok);
}

static const struct json_field fields[] = {
    {"name", JSON_K_STRING, true, 1, 5},
    {"count", JSON_K_INT, false, 1, 100},
    {"flag", JSON_K_BOOL, false, 0, 0},
    {"tags", JSON_K_ARRAY, false, 0, 2},
};

static bool check(const char *s, char *err)
{
    cJSON *o = parse(s, err);
    assert_non_null(o);
    bool ok = json_check_object(o, fields, 4, err, ERRBUF_LEN);
    cJSON_Delete(o);
    return ok;
}

static void test_check_object(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    assert_true(check("{\"name\":\"ab\",\"count\":3,\"flag\":true,\"tags\":[1]}", err));
    assert_true(check("{\"name\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}", err)); /* 5 chars, 10 bytes */
    assert_false(check("{}", err));
    assert_string_equal(err, "missing field 'name'");
    assert_false(check("{\"name\":\"ab\",\"x\":1}", err));
    assert_string_equal(err, "unknown field 'x'");
    assert_false(check("{\"name\":\"ab\",\"name\":\"cd\"}", err));
    assert_string_equal(err, "duplicate field 'name'");
    assert_false(check("{\"name\":1}", err));
    assert_string_equal(err, "field 'name' must be a string");
    assert_false(check("{\"name\":\"\"}", err));
    assert_false(check("{\"name\":\"toolong\"}", err));
    assert_false(check("{\"name\":\"a\",\"count\":1.5}", err));
    assert_false(check("{\"name\":\"a\",\"count\":101}", err));
    assert_false(check("{\"name\":\"a\",\"count\":1e300}", err));
    assert_false(check("{\"name\":\"a\",\"count\":\"3\"}", err));
    assert_false(check("{\"name\":\"a\",\"flag\":1}", err));
    assert_false(check("{\"name\":\"a\",\"tags\":[1,2,3]}", err));
    static const struct json_field tok[] = {{"t", JSON_K_TOKEN, true, 2, 4}};
    cJSON *o = parse("{\"t\":\"aZ0-_\"}", err);
    assert_false(json_check_object(o, tok, 1, err, sizeof err)); /* 5 > 4 chars */
    cJSON_Delete(o);
    o = parse("{\"t\":\"aZ_\"}", err);
    assert_true(json_check_object(o, tok, 1, err, sizeof err));
    cJSON_Delete(o);
    o = parse("{\"t\":\"a'b\"}", err);
    assert_false(json_check_object(o, tok, 1, err, sizeof err));
    assert_non_null(strstr(err, "token"));
    cJSON_Delete(o);
    cJSON *arr = parse("[1]", err);
    assert_false(json_check_object(arr, fields, 4, err, sizeof err));
    cJSON_Delete(arr);
    /* Beyond 2^53 a number may already be rounded: refused, not changed. */
    static const struct json_field big[] = {{"id", JSON_K_INT, true, 1, INT64_MAX}};
    o = parse("{\"id\":9007199254740993}", err);
    assert_false(json_check_object(o, big, 1, err, sizeof err));
    cJSON_Delete(o);
    o = parse("{\"id\":9007199254740991}", err);
    assert_true(json_check_object(o, big, 1, err, sizeof err));
    cJSON_Delete(o);
    /* A raw control character inside a string is not JSON. */
    assert_null(parse("{\"name\":\"a\tb\"}", err));
    assert_non_null(strstr(err, "control character"));
    o = parse("{\"name\":\"a\\tb\"}", err);
    assert_non_null(o);
    cJSON_Delete(o);
}

/* Bytes, not characters, for identifiers; digits as a string or an integer. */
static void test_bytes_and_digits(void **state)
{
    (void)state;
    char err[ERRBUF_LEN], buf[24];
    static const struct json_field f[] = {{"k", JSON_K_BYTES, false, 1, 4},
                                          {"ac", JSON_K_DIGITS, false, 3, 3}};
    static const struct { const char *doc; bool ok; } cases[] = {
        {"{\"k\":\"abcd\"}", true},
        {"{\"k\":\"\xc3\xa9\xc3\xa9\"}", true},           /* 2 characters, 4 bytes */
        {"{\"k\":\"\xc3\xa9\xc3\xa9x\"}", false},         /* 3 characters, 5 bytes */
        {"{\"k\":\"\"}", false},
        {"{\"k\":7}", false},
        {"{\"ac\":613}", true},
        {"{\"ac\":\"613\"}", true},
        {"{\"ac\":61}", false},
        {"{\"ac\":6130}", false},
        {"{\"ac\":61.3}", false},
        {"{\"ac\":-613}", false},
        {"{\"ac\":true}", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *o = parse(cases[i].doc, err);
        assert_non_null(o);
        assert_int_equal(json_check_object(o, f, 2, err, sizeof err), cases[i].ok);
        cJSON_Delete(o);
    }
    cJSON *o = parse("{\"ac\":613}", err);
    assert_string_equal(json_digits(o, "ac", buf, sizeof buf, ""), "613");
    assert_string_equal(json_digits(o, "none", buf, sizeof buf, "-"), "-");
    cJSON_Delete(o);
    o = parse("{\"ac\":\"415\"}", err);
    assert_string_equal(json_digits(o, "ac", buf, sizeof buf, ""), "415");
    cJSON_Delete(o);
}

/* A string cut inside a character loses the partial character. */
static void test_utf8_trim(void **state)
{
    (void)state;
    char a[] = "ab\xe2\x82", b[] = "ab\xe2\x82\xac", c[] = "ab\xf0\x9f\x98", d[] = "abc", e[] = "\xc3";
    json_utf8_trim(a);
    json_utf8_trim(b);
    json_utf8_trim(c);
    json_utf8_trim(d);
    json_utf8_trim(e);
    assert_string_equal(a, "ab");
    assert_string_equal(b, "ab\xe2\x82\xac");
    assert_string_equal(c, "ab");
    assert_string_equal(d, "abc");
    assert_string_equal(e, "");
}

/* Documents one after another: each parsed alone, its end reported. */
static void test_parse_prefix(void **state)
{
    (void)state;
    const char *s = " {\"a\":1} {\"b\":[2]}\n{bad";
    const char *end = NULL;
    cJSON *o = json_parse_strict_prefix(s, strlen(s), &end);
    assert_non_null(o);
    assert_non_null(cJSON_GetObjectItem(o, "a"));
    assert_int_equal(end - s, 8);
    cJSON_Delete(o);
    o = json_parse_strict_prefix(end, strlen(end), &end);
    assert_non_null(cJSON_GetObjectItem(o, "b"));
    assert_int_equal(*end, '\n');
    cJSON_Delete(o);
    assert_null(json_parse_strict_prefix(end, strlen(end), &end));
    const char *nul = "{\"a\":\"x\\u0000y\"}";
    assert_null(json_parse_strict_prefix(nul, strlen(nul), &end));
}

/* json_print writes what cJSON_PrintUnformatted writes, byte for byte. */
static void assert_prints_as_cjson(const cJSON *v, const char *want)
{
    char *mine = json_print(v), *theirs = cJSON_PrintUnformatted(v);
    assert_non_null(mine);
    assert_non_null(theirs);
    assert_string_equal(mine, theirs);
    if (want != NULL)
        assert_string_equal(mine, want);
    free(mine);
    free(theirs);
}

static void test_print(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    static const char *const docs[] = {
        "{}", "[]", "[[],{},[{}]]", "null", "true", "\"\"",
        "{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}",
        "[0,-0,1,-1,2147483647,2147483648,-2147483649,1763841234567,999999999999999,"
        "1000000000000000,9007199254740992,9007199254740993,1e300,-1e-300,0.1,1.5,-2.25e-7,"
        "3.141592653589793,0.30000000000000004,123456789.123456789]",
        "[\"quote \\\" backslash \\\\ slash / \\b\\f\\n\\r\\t \\u0001 \\u001f \\u007f\"]",
        "{\"caf\u00e9 \u20ac\":\"\xf0\x9f\x98\x80 \\ud83d\\ude00\"}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        cJSON *v = parse(docs[i], err);
        assert_non_null(v);
        assert_prints_as_cjson(v, NULL);
        cJSON_Delete(v);
    }
    /* Exact texts where the fast paths apply, and what cJSON does with
     * values no JSON text can hold. */
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateNumber(1763841234567.0));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(-42));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(0.5));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(NAN));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(INFINITY));
    cJSON_AddItemToArray(a, cJSON_CreateString("a\nb\x02\"c"));
    cJSON_AddItemToArray(a, cJSON_CreateRaw("{\"raw\":1}"));
    assert_prints_as_cjson(a, "[1763841234567,-42,0.5,null,null,\"a\\nb\\u0002\\\"c\",{\"raw\":1}]");
    cJSON_Delete(a);
    cJSON bad = {0};
    assert_null(json_print(&bad)); /* cJSON_Invalid */
    assert_null(json_print(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_check_object),
        cmocka_unit_test(test_bytes_and_digits),
        cmocka_unit_test(test_parse_prefix),
        cmocka_unit_test(test_utf8_trim),
        cmocka_unit_test(test_print),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
