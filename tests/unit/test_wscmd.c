/* The WebSocket command protocol (dispatcher/wscmd.c): a command line
 * becomes its route, path parameters and body, or a reason it cannot be
 * taken (with its id when that was readable); replies echo the id and
 * error bodies gain "temporary". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "wscmd.h"

#define TOKEN "AAAAAAAAAAAAAAAAAAAAAA"

static bool parse(const char *line, const char *token, struct wscmd *c, char *err)
{
    return wscmd_parse(line, strlen(line), ROUTE_BODY_SMALL, token, c, err, ERRBUF_LEN);
}

static void test_each_op(void **state)
{
    (void)state;
    static const struct {
        const char *line, *route, *method, *path, *body;
    } cases[] = {
        {"{\"id\":1,\"op\":\"chat.create\",\"token\":\"" TOKEN "\"}", "chat_create", "POST",
         "/api/v1/applications/" TOKEN "/chats", NULL},
        {"{\"id\":\"x\",\"op\":\"message.create\",\"token\":\"" TOKEN "\",\"chat\":3,\"body\":{\"body\":\"hi\"}}",
         "message_create", "POST", "/api/v1/applications/" TOKEN "/chats/3/messages", "{\"body\":\"hi\"}"},
        {"{\"op\":\"message.update\",\"id\":2,\"token\":\"" TOKEN "\",\"chat\":3,\"message\":9,\"body\":{\"body\":\"b\"}}",
         "message_update", "PUT", "/api/v1/applications/" TOKEN "/chats/3/messages/9", "{\"body\":\"b\"}"},
        {"{\"id\":3,\"op\":\"sms.send\",\"body\":{\"sms\":{}}}", "sms_send_one", "POST", "/sms/send/one",
         "{\"sms\":{}}"},
        {"{\"id\":4,\"op\":\"notification.send\",\"body\":{}}", "notify_create", "POST", "/v1/messages", "{}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wscmd c;
        char err[ERRBUF_LEN];
        assert_true(parse(cases[i].line, "", &c, err));
        assert_string_equal(c.route->name, cases[i].route);
        assert_string_equal(c.route->method, cases[i].method);
        assert_string_equal(c.path, cases[i].path);
        if (cases[i].body) { /* a short line: its body comes parsed */
            char *text = json_print(c.json);
            assert_string_equal(text, cases[i].body);
            free(text);
        } else {
            assert_null(c.json);
        }
        assert_null(c.body);
        wscmd_clear(&c);
    }
}

/* A line past the least body limit of any route: the body comes as
 * text, for its route to measure against its own limit (413). */
static void test_long_body(void **state)
{
    (void)state;
    static char line[40000], text[20000];
    memset(text, 'x', sizeof text - 1);
    snprintf(line, sizeof line, "{\"id\":1,\"op\":\"message.create\",\"token\":\"" TOKEN "\",\"chat\":1,"
             "\"body\":{\"body\":\"%s\"}}", text);
    struct wscmd c;
    char err[ERRBUF_LEN];
    assert_true(parse(line, "", &c, err));
    assert_null(c.json);
    assert_int_equal(c.body_len, strlen(text) + 11);
    assert_int_equal(strncmp(c.body, "{\"body\":\"xxx", 12), 0);
    wscmd_clear(&c);
}

static void test_params(void **state)
{
    (void)state;
    struct wscmd c;
    char err[ERRBUF_LEN];
    /* An application's connection: its token is the default. */
    assert_true(parse("{\"id\":1,\"op\":\"message.create\",\"chat\":7,\"body\":{\"body\":\"x\"}}", TOKEN, &c, err));
    assert_int_equal(c.nparams, 2);
    assert_string_equal(c.params[0], TOKEN);
    assert_string_equal(c.params[1], "7");
    wscmd_clear(&c);
    /* An admin key's: the token is needed. */
    assert_false(parse("{\"id\":1,\"op\":\"chat.create\"}", "", &c, err));
    assert_non_null(strstr(err, "needs token"));
    assert_string_equal(c.id, "1");
    static const char *const bad[] = {
        "{\"id\":1,\"op\":\"message.create\",\"token\":\"" TOKEN "\"}",                 /* no chat */
        "{\"id\":1,\"op\":\"message.create\",\"token\":\"" TOKEN "\",\"chat\":\"3\"}",   /* chat a string */
        "{\"id\":1,\"op\":\"message.create\",\"token\":\"" TOKEN "\",\"chat\":1.5}",     /* not an integer */
        "{\"id\":1,\"op\":\"message.create\",\"token\":\"" TOKEN "\",\"chat\":1e300}",   /* far out of range */
        "{\"id\":1,\"op\":\"chat.create\",\"token\":\"" TOKEN "\",\"chat\":1}",         /* chat.create takes none */
        "{\"id\":1,\"op\":\"sms.send\",\"token\":\"" TOKEN "\"}",                      /* sms takes no token */
        "{\"id\":1,\"op\":\"chat.create\",\"token\":\"" TOKEN "\",\"body\":[]}",        /* body an array */
        "{\"id\":1,\"op\":\"chat.create\",\"token\":\"" TOKEN "\",\"extra\":1}",        /* unknown field */
        "{\"id\":1,\"op\":\"chat.remove\",\"token\":\"" TOKEN "\"}",                    /* unknown op */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(parse(bad[i], "", &c, err));
        assert_string_equal(c.id, "1"); /* read before the fault: echoed */
        assert_null(c.body);
        assert_null(c.json);
    }
}

static void test_ids(void **state)
{
    (void)state;
    struct wscmd c;
    char err[ERRBUF_LEN];
    assert_true(parse("{\"id\":\"a\\\"b\",\"op\":\"notification.send\"}", "", &c, err));
    assert_string_equal(c.id, "\"a\\\"b\"");
    wscmd_clear(&c);
    assert_true(parse("{\"id\":-42,\"op\":\"notification.send\"}", "", &c, err));
    assert_string_equal(c.id, "-42");
    wscmd_clear(&c);
    char line[200];
    snprintf(line, sizeof line, "{\"id\":\"%065d\",\"op\":\"notification.send\"}", 0); /* 65 bytes */
    assert_false(parse(line, "", &c, err));
    static const char *const unread[] = {"not json", "[1]", "{\"op\":\"chat.create\"}", "{\"id\":1.5}", "{\"id\":1e300}",
                                         "{\"id\":null}", "{\"id\":{}}"};
    for (size_t i = 0; i < sizeof unread / sizeof unread[0]; i++) {
        assert_false(parse(unread[i], "", &c, err));
        assert_string_equal(c.id, "null");
    }
}

static void test_replies(void **state)
{
    (void)state;
    struct strbuf b = {0};
    wscmd_reply(&b, "7", 201, "{\"number\":3}", 12, false);
    assert_string_equal(b.p, "{\"id\":7,\"status\":201,\"body\":{\"number\":3}}\n");
    b.len = 0;
    const char *err = "{\"error\":{\"code\":\"overloaded\",\"message\":\"m\"}}";
    wscmd_reply(&b, "\"x\"", 503, err, strlen(err), false);
    assert_string_equal(b.p, "{\"id\":\"x\",\"status\":503,\"body\":{\"error\":{\"code\":\"overloaded\","
                             "\"message\":\"m\",\"temporary\":true}}}\n");
    b.len = 0;
    wscmd_reply(&b, "1", 409, err, strlen(err), true); /* the route asked for a retry (Retry-After) */
    assert_non_null(strstr(b.p, "\"temporary\":true"));
    b.len = 0;
    wscmd_reply_error(&b, "null", 400, "bad_command", "why");
    assert_string_equal(b.p, "{\"id\":null,\"status\":400,\"body\":{\"error\":{\"code\":\"bad_command\","
                             "\"message\":\"why\",\"temporary\":false}}}\n");
    strbuf_free(&b);
    assert_true(wscmd_temporary(429));
    assert_true(wscmd_temporary(503));
    assert_false(wscmd_temporary(400));
    assert_false(wscmd_temporary(404));
    assert_false(wscmd_temporary(500));
}

/* The plain way (no tree of the fields) gives what the general way gives,
 * and takes only what it can read exactly; the rest goes the general way. */
static void check_ways(const char *line, size_t parsed_max, bool plain)
{
    struct wscmd a, b;
    char err[ERRBUF_LEN];
    bool general = wscmd_parse_general(line, strlen(line), parsed_max, "", &b, err, sizeof err);
    if (!wscmd_parse_plain(line, strlen(line), parsed_max, "", &a)) {
        if (plain)
            fail_msg("not read the plain way: %s", line);
    } else {
        if (!plain)
            fail_msg("read the plain way: %s", line);
        assert_true(general);
        if (!wscmd_same(&a, &b))
            fail_msg("the two ways differ: %s", line);
        wscmd_clear(&a);
    }
    if (general)
        wscmd_clear(&b);
}

static void test_plain_way(void **state)
{
    (void)state;
    static const char *const plain[] = {
        "{\"id\":1,\"op\":\"chat.create\",\"token\":\"" TOKEN "\"}",
        " { \"id\" : \"a b\" ,\t\"op\":\"message.create\", \"token\":\"" TOKEN "\",\"chat\":-3,"
        "\"body\":{\"body\":\"h\\u00e9\\\"}\\\\\",\"x\":[1,{\"y\":\"}\"}]}}\r",
        "{\"body\":{},\"op\":\"notification.send\",\"id\":999999999999999}",
        "{\"id\":0,\"op\":\"message.update\",\"token\":\"" TOKEN "\",\"chat\":1,\"message\":2,"
        "\"body\":{\"body\":\"b\"}}",
    };
    static const char *const general[] = {
        "{\"id\":1,\"op\":\"chat.create\",\"token\":\"" TOKEN "\",\"id\":2}", /* a duplicate */
        "{\"id\":\"\\u0041\",\"op\":\"chat.create\",\"token\":\"" TOKEN "\"}", /* an escape */
        "{\"id\":\"\xc3\xa9\",\"op\":\"chat.create\",\"token\":\"" TOKEN "\"}", /* not ASCII */
        "{\"id\":1.0,\"op\":\"chat.create\",\"token\":\"" TOKEN "\"}",
        "{\"id\":1e2,\"op\":\"chat.create\",\"token\":\"" TOKEN "\"}",
        "{\"id\":-0,\"op\":\"chat.create\",\"token\":\"" TOKEN "\"}",
        "{\"id\":01,\"op\":\"chat.create\",\"token\":\"" TOKEN "\"}",
        "{\"id\":1234567890123456,\"op\":\"chat.create\",\"token\":\"" TOKEN "\"}",
        "{\"id\":true,\"op\":\"chat.create\",\"token\":\"" TOKEN "\"}",
        "{\"id\":1,\"op\":\"chat.create\",\"token\":\"" TOKEN "\"} x", /* trailing bytes */
        "{\"id\":1,\"op\":\"chat.create\",\"token\":\"" TOKEN "\",}",
        "{\"id\":1,\"op\":\"chat.remove\",\"token\":\"" TOKEN "\"}", /* an error */
        "{\"id\":1,\"op\":\"notification.send\",\"body\":[]}",
        "{\"id\":1,\"op\":\"notification.send\",\"body\":{\"a\":}}",
        "{\"id\":1,\"op\":\"notification.send\",\"body\":{\"a\":\"\\u0000\"}}",
        "{\"id\":1,\"op\":\"notification.send\",\"x\":1}",
        "[]", "", "{", "{\"id\"", "{\"id\":\"", "{}",
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        check_ways(plain[i], ROUTE_BODY_SMALL, true);
        check_ways(plain[i], 10, true); /* a long line: the body as text */
    }
    for (size_t i = 0; i < sizeof general / sizeof general[0]; i++)
        check_ways(general[i], ROUTE_BODY_SMALL, false);
    /* Nesting: the line is one level deeper than its body. */
    for (int depth = JSON_MAX_DEPTH - 1; depth <= JSON_MAX_DEPTH; depth++) {
        char line[256] = "{\"id\":1,\"op\":\"notification.send\",\"body\":{\"a\":";
        size_t n = strlen(line);
        for (int d = 1; d < depth; d++)
            line[n++] = '[';
        for (int d = 1; d < depth; d++)
            line[n++] = ']';
        memcpy(line + n, "}}", 3);
        check_ways(line, ROUTE_BODY_SMALL, depth + 1 <= JSON_MAX_DEPTH);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_op),
        cmocka_unit_test(test_long_body),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_plain_way),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
