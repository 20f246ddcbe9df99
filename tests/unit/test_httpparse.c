/* httpparse: whole requests, requests that arrive a byte at a time,
 * pipelining, chunked bodies, and the statuses bad input gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpparse.h"

#define MAX_HEAD 16384
#define MAX_BODY 65536

/* Parses text (copied: the parser writes into its buffer). */
static enum httpparse_result parse(const char *text, size_t len, struct httpparse_req *r, char **buf)
{
    *buf = malloc(len + 1);
    assert_non_null(*buf);
    memcpy(*buf, text, len);
    httpparse_reset(r);
    return httpparse_feed(r, *buf, len, MAX_HEAD, MAX_BODY);
}

/* Feeds text one more byte at a time, as a slow client would send it:
 * MORE until the last byte, then DONE. */
static void parse_trickle(const char *text, size_t len, struct httpparse_req *r, char *buf)
{
    httpparse_reset(r);
    for (size_t n = 1; n <= len; n++) {
        buf[n - 1] = text[n - 1];
        enum httpparse_result res = httpparse_feed(r, buf, n, MAX_HEAD, MAX_BODY);
        if (n < len)
            assert_int_equal(res, HTTPPARSE_MORE);
        else
            assert_int_equal(res, HTTPPARSE_DONE);
    }
}

static void test_get_with_headers(void **state)
{
    (void)state;
    const char req[] = "GET /a/b?x=1 HTTP/1.1\r\nHost: example\r\nX-Request-Id:   abc  \r\n"
                       "authorization: Bearer k\r\n\r\n";
    struct httpparse_req r;
    char *buf;
    assert_int_equal(parse(req, sizeof req - 1, &r, &buf), HTTPPARSE_DONE);
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.target, "/a/b?x=1");
    assert_int_equal(r.minor_version, 1);
    assert_true(r.keep_alive);
    assert_int_equal(r.nheaders, 3);
    assert_string_equal(httpparse_header(&r, "x-request-id"), "abc"); /* OWS trimmed */
    assert_string_equal(httpparse_header(&r, "AUTHORIZATION"), "Bearer k");
    assert_null(httpparse_header(&r, "Content-Type"));
    assert_int_equal(r.body_len, 0);
    assert_int_equal(r.total_len, sizeof req - 1);
    free(buf);
}

static void test_trickled_body_and_lf_lines(void **state)
{
    (void)state;
    /* Bare LF line ends are taken (RFC 9112 2.2); so is an empty line
     * before the request line. */
    const char req[] = "\r\nPOST /m HTTP/1.1\nContent-Type: application/json\nContent-Length: 11\n\n"
                       "{\"body\":12}";
    struct httpparse_req r;
    char *buf = malloc(sizeof req);
    assert_non_null(buf);
    parse_trickle(req, sizeof req - 1, &r, buf);
    assert_string_equal(r.method, "POST");
    assert_string_equal(httpparse_header(&r, "content-type"), "application/json");
    assert_int_equal(r.content_length, 11);
    assert_int_equal(r.body_len, 11);
    assert_memory_equal(r.body, "{\"body\":12}", 11);
    assert_int_equal(r.total_len, sizeof req - 1);
    free(buf);
}

static void test_pipelined_requests(void **state)
{
    (void)state;
    const char two[] = "POST /one HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                       "GET /two HTTP/1.1\r\nConnection: close\r\n\r\n";
    struct httpparse_req r;
    char *buf;
    assert_int_equal(parse(two, sizeof two - 1, &r, &buf), HTTPPARSE_DONE);
    assert_string_equal(r.target, "/one");
    assert_memory_equal(r.body, "abc", 3);
    size_t used = r.total_len;
    assert_int_equal(used, strlen("POST /one HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"));
    httpparse_reset(&r);
    assert_int_equal(httpparse_feed(&r, buf + used, sizeof two - 1 - used, MAX_HEAD, MAX_BODY),
                     HTTPPARSE_DONE);
    assert_string_equal(r.target, "/two");
    assert_false(r.keep_alive);
    assert_int_equal(r.total_len, sizeof two - 1 - used);
    free(buf);
}

static void test_keep_alive_rules(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        bool keep;
    } cases[] = {
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.1\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct httpparse_req r;
        char *buf;
        assert_int_equal(parse(cases[i].req, strlen(cases[i].req), &r, &buf), HTTPPARSE_DONE);
        if (r.keep_alive != cases[i].keep)
            fail_msg("case %zu (%s): keep_alive %d", i, cases[i].req, r.keep_alive);
        free(buf);
    }
}

static void test_chunked_body(void **state)
{
    (void)state;
    const char req[] = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "4\r\nWiki\r\n5;name=value\r\npedia\r\nD \r\n in\r\n\r\nchunks\r\n0\r\nX-Trailer: t\r\n\r\n"
                       "GET /next HTTP/1.1\r\n\r\n";
    const char *body = "Wikipedia in\r\n\r\nchunks";
    struct httpparse_req r;
    char *buf;
    assert_int_equal(parse(req, sizeof req - 1, &r, &buf), HTTPPARSE_DONE);
    assert_true(r.chunked);
    assert_int_equal(r.body_len, strlen(body));
    assert_memory_equal(r.body, body, strlen(body));
    size_t used = r.total_len;
    assert_memory_equal(buf + used, "GET /next", 9); /* the next request is untouched */
    free(buf);

    /* The same request a byte at a time (without the next one). */
    size_t len = strstr(req, "GET /next") - req;
    buf = malloc(len);
    assert_non_null(buf);
    parse_trickle(req, len, &r, buf);
    assert_int_equal(r.body_len, strlen(body));
    assert_memory_equal(r.body, body, strlen(body));
    assert_int_equal(r.total_len, len);
    free(buf);
}

static void test_expect_continue_after_head(void **state)
{
    (void)state;
    const char head[] = "PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    struct httpparse_req r;
    char *buf;
    assert_int_equal(parse(head, sizeof head - 1, &r, &buf), HTTPPARSE_MORE);
    assert_int_equal(r.head_len, sizeof head - 1); /* the caller may send 100 Continue now */
    assert_true(r.expect_continue);
    assert_int_equal(r.content_length, 5);
    free(buf);
}

static void test_bad_requests(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"GET / HTTP/2.0\r\n\r\n", 400},
        {"GET / HTTP/1.1 \r\n\r\n", 400},
        {"GET  / HTTP/1.1\r\n\r\n", 400},
        {"G@T / HTTP/1.1\r\n\r\n", 400},
        {"GET /\x01 HTTP/1.1\r\n\r\n", 400},
        {"GET\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nA: b\r\n\tfolded\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nName : v\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n: v\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", 413},
        {"POST / HTTP/1.1\r\nContent-Length: 999999999999999999\r\n\r\n", 413},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 x\r\nabc\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n", 413},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1234567890abcdef0\r\n", 413},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct httpparse_req r;
        char *buf;
        enum httpparse_result res = parse(cases[i].req, strlen(cases[i].req), &r, &buf);
        if (res != HTTPPARSE_BAD || r.status != cases[i].status)
            fail_msg("case %zu (%s): result %d status %d", i, cases[i].req, res, r.status);
        assert_non_null(r.reason);
        free(buf);
    }
    /* Same Content-Length twice is one length. */
    struct httpparse_req r;
    char *buf;
    const char dup[] = "POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nab";
    assert_int_equal(parse(dup, sizeof dup - 1, &r, &buf), HTTPPARSE_DONE);
    free(buf);
    /* A NUL in a header value. */
    const char nul[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
    assert_int_equal(parse(nul, sizeof nul - 1, &r, &buf), HTTPPARSE_BAD);
    assert_int_equal(r.status, 400);
    free(buf);
}

static void test_limits(void **state)
{
    (void)state;
    struct httpparse_req r;
    char *buf;
    /* A request line longer than the head limit, no LF yet: 414. */
    size_t n = MAX_HEAD + 100;
    char *line = malloc(n);
    assert_non_null(line);
    memcpy(line, "GET /", 5);
    memset(line + 5, 'a', n - 5);
    assert_int_equal(parse(line, n, &r, &buf), HTTPPARSE_BAD);
    assert_int_equal(r.status, 414);
    free(buf);
    /* A header block longer than the limit: 431, found or not. */
    memcpy(line, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(parse(line, n, &r, &buf), HTTPPARSE_BAD);
    assert_int_equal(r.status, 431);
    free(buf);
    memcpy(line + n - 4, "\r\n\r\n", 4);
    assert_int_equal(parse(line, n, &r, &buf), HTTPPARSE_BAD);
    assert_int_equal(r.status, 431);
    free(buf);
    free(line);
    /* 64 header fields are taken, 65 are not. */
    char many[4096] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < HTTPPARSE_MAX_HEADERS; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "H%d: v\r\n", i);
    strcat(many, "\r\n");
    assert_int_equal(parse(many, strlen(many), &r, &buf), HTTPPARSE_DONE);
    assert_int_equal(r.nheaders, HTTPPARSE_MAX_HEADERS);
    free(buf);
    many[strlen(many) - 2] = '\0';
    strcat(many, "Extra: v\r\n\r\n");
    assert_int_equal(parse(many, strlen(many), &r, &buf), HTTPPARSE_BAD);
    assert_int_equal(r.status, 431);
    free(buf);
    /* A chunked body over the limit, in small chunks: 413. */
    size_t chunks = MAX_BODY / 1000 + 2, cap = 100 + chunks * 1010;
    char *big = malloc(cap);
    assert_non_null(big);
    size_t len = (size_t)snprintf(big, cap, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t i = 0; i < chunks; i++) {
        len += (size_t)snprintf(big + len, cap - len, "3e8\r\n");
        memset(big + len, 'x', 1000);
        len += 1000;
        memcpy(big + len, "\r\n", 2);
        len += 2;
    }
    assert_int_equal(parse(big, len, &r, &buf), HTTPPARSE_BAD);
    assert_int_equal(r.status, 413);
    free(buf);
    free(big);
}

static void test_path_decode(void **state)
{
    (void)state;
    char a[] = "/a%2Fb/%41%7e+x/%zz/%4";
    assert_true(httpparse_path_decode(a));
    assert_string_equal(a, "/a/b/A~+x/%zz/%4"); /* '+' and bad escapes stay */
    char nul[] = "/v1/%00x";
    assert_false(httpparse_path_decode(nul));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_with_headers),
        cmocka_unit_test(test_trickled_body_and_lf_lines),
        cmocka_unit_test(test_pipelined_requests),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_expect_continue_after_head),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_path_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
