/* The HTTP connection's state changes (dispatcher/httpconn.c), over real
 * loopback TCP sockets and a real event loop, with a handler of the test's
 * own in place of the routes: pipelined requests are served one at a time
 * and answered in order; a client that leaves while its request is with
 * the handler is noticed and the connection freed once the handler lets
 * go; "Connection: close", a malformed request, a body over the limit
 * (refused before it is sent), Expect: 100-continue and a request that
 * does not arrive in time each end as HTTP says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpconn.h"

#define MAX_HELD 8

static struct sb_config cfg;
static struct dispatcher disp;
static struct loop lp;
static struct timeval io_timeout = {0, 300000}; /* 300 ms, for the 408 */
static int listen_fd;

/* The test's handler: answers at once with the path as the body, or
 * keeps the request (hold) for the test to answer. */
static bool hold;
static struct http_req *held[MAX_HELD];
static int nheld, ndispatched;

static void answer(struct http_req *req, const char *body)
{
    httpconn_send(req, "test", 200, "text/plain", body, strlen(body));
}

static void test_dispatch(struct loop *l, struct http_req *req)
{
    (void)l;
    ndispatched++;
    if (hold) {
        assert_true(nheld < MAX_HELD);
        held[nheld++] = req;
        return;
    }
    char path[64];
    snprintf(path, sizeof path, "%.*s", (int)req->p.body_len ? (int)req->p.body_len : 0,
             req->p.body_len ? req->p.body : "");
    answer(req, req->p.body_len ? path : req->p.target);
}

static int setup(void **state)
{
    (void)state;
    cfg.max_body_bytes = 1000;
    cfg.max_output_bytes = 64 << 20;
    disp.cfg = &cfg;
    disp.max_connections = 100;
    lp.d = &disp;
    lp.base = event_base_new();
    lp.io_timeout = &io_timeout;
    lp.dispatch = test_dispatch;
    LIST_INIT(&lp.conns);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lp.base == NULL || bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(listen_fd, 8) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    httpconn_break_all(&lp);
    httpconn_free_all(&lp);
    close(listen_fd);
    event_base_free(lp.base);
    return 0;
}

/* A client connection the server has accepted; returns the client end. */
static int connect_client(void)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    getsockname(listen_fd, (struct sockaddr *)&a, &alen);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, alen), 0);
    int sfd = accept(listen_fd, NULL, NULL);
    assert_true(sfd >= 0);
    fcntl(sfd, F_SETFL, fcntl(sfd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    nheld = ndispatched = 0;
    hold = false;
    httpconn_accept(NULL, sfd, NULL, 0, &lp);
    assert_int_equal(atomic_load(&disp.connections), 1);
    return fd;
}

static void spin(int ms)
{
    int64_t end = sb_mono_ms() + ms;
    while (sb_mono_ms() < end) {
        event_base_loop(lp.base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static void send_all(int fd, const char *s)
{
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Reads, running the loop, until `want` is in what was read, EOF, or 2 s;
 * returns what was read (static), *eof set on EOF. */
static const char *read_until(int fd, const char *want, bool *eof)
{
    static char buf[8192];
    size_t len = 0;
    *eof = false;
    int64_t end = sb_mono_ms() + 2000;
    buf[0] = '\0';
    while (sb_mono_ms() < end && !(want && strstr(buf, want))) {
        event_base_loop(lp.base, EVLOOP_NONBLOCK);
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n > 0) {
            len += (size_t)n;
            buf[len] = '\0';
        } else if (n == 0) {
            *eof = true;
            break;
        } else {
            usleep(1000);
        }
    }
    return buf;
}

static void wait_freed(void)
{
    for (int i = 0; i < 2000 && atomic_load(&disp.connections) > 0; i++)
        spin(1);
    assert_int_equal(atomic_load(&disp.connections), 0);
}

static void test_pipelined_in_order(void **state)
{
    (void)state;
    int fd = connect_client();
    hold = true;
    send_all(fd, "GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n");
    spin(50);
    /* The second waits while the first is with the handler. */
    assert_int_equal(ndispatched, 1);
    answer(held[0], "first");
    assert_int_equal(ndispatched, 2); /* the next request starts at the answer */
    answer(held[1], "second");
    bool eof;
    const char *got = read_until(fd, "second", &eof);
    const char *a = strstr(got, "first"), *b = strstr(got, "second");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b);
    assert_false(eof); /* keep-alive */
    close(fd);
    wait_freed();
}

/* A client that resets while its request is with the handler: the
 * handler can tell (http_req_gone), and the connection goes when it lets
 * go, not before (its request is still in use). */
static void test_client_gone_while_busy(void **state)
{
    (void)state;
    int fd = connect_client();
    hold = true;
    send_all(fd, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    spin(30);
    assert_int_equal(nheld, 1);
    assert_false(http_req_gone(held[0]));
    struct linger lg = {1, 0}; /* close with a reset */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    spin(50);
    assert_true(http_req_gone(held[0]));
    assert_int_equal(atomic_load(&disp.connections), 1);
    http_req_abandon(held[0]);
    assert_int_equal(atomic_load(&disp.connections), 0);
}

/* A client that only half-closes still gets its answer, then the
 * connection closes. */
static void test_half_close_gets_answer(void **state)
{
    (void)state;
    int fd = connect_client();
    hold = true;
    send_all(fd, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    shutdown(fd, SHUT_WR);
    spin(30);
    assert_int_equal(nheld, 1);
    answer(held[0], "late");
    bool eof;
    const char *got = read_until(fd, NULL, &eof);
    assert_non_null(strstr(got, "Connection: close"));
    assert_non_null(strstr(got, "late"));
    assert_true(eof);
    close(fd);
    wait_freed();
}

static void test_connection_close(void **state)
{
    (void)state;
    int fd = connect_client();
    send_all(fd, "GET /bye HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: t\r\n\r\n");
    bool eof;
    const char *got = read_until(fd, NULL, &eof);
    assert_true(eof);
    assert_non_null(strstr(got, "/bye"));
    assert_null(strstr(got, "/never"));
    assert_int_equal(ndispatched, 1);
    close(fd);
    wait_freed();
}

/* Input that is not HTTP: a JSON 400, no dispatch, the write side shut
 * (the client sees the end), freed once the client closes. */
static void test_malformed(void **state)
{
    (void)state;
    int fd = connect_client();
    send_all(fd, "NOT HTTP AT ALL\r\n\r\n");
    bool eof;
    const char *got = read_until(fd, NULL, &eof);
    assert_non_null(strstr(got, "HTTP/1.1 400 "));
    assert_non_null(strstr(got, "\"bad_request\""));
    assert_true(eof);
    assert_int_equal(ndispatched, 0);
    assert_int_equal(atomic_load(&disp.connections), 1); /* lingering */
    close(fd);
    wait_freed();
}

/* A body over the limit is refused on its head, before it is sent. */
static void test_body_too_large(void **state)
{
    (void)state;
    int fd = connect_client();
    send_all(fd, "POST /big HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n");
    bool eof;
    const char *got = read_until(fd, "}", &eof);
    assert_non_null(strstr(got, "HTTP/1.1 413 "));
    assert_int_equal(ndispatched, 0);
    close(fd);
    wait_freed();
}

static void test_expect_continue(void **state)
{
    (void)state;
    int fd = connect_client();
    send_all(fd, "POST /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    bool eof;
    const char *got = read_until(fd, "\r\n\r\n", &eof);
    assert_string_equal(got, "HTTP/1.1 100 Continue\r\n\r\n");
    assert_int_equal(ndispatched, 0);
    send_all(fd, "hello");
    got = read_until(fd, "hello", &eof);
    assert_non_null(strstr(got, "HTTP/1.1 200 "));
    assert_int_equal(ndispatched, 1);
    close(fd);
    wait_freed();
}

/* A request begun and not finished in io_timeout: 408 and closed. An idle
 * keep-alive connection: closed without a word. */
static void test_timeouts(void **state)
{
    (void)state;
    int fd = connect_client();
    send_all(fd, "GET /partial HTTP/1.1\r\nHost: t\r\n");
    bool eof;
    const char *got = read_until(fd, NULL, &eof);
    assert_non_null(strstr(got, "HTTP/1.1 408 "));
    assert_true(eof);
    close(fd);
    wait_freed();
    fd = connect_client();
    got = read_until(fd, NULL, &eof);
    assert_true(eof);
    assert_string_equal(got, "");
    close(fd);
    wait_freed();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_in_order),
        cmocka_unit_test(test_client_gone_while_busy),
        cmocka_unit_test(test_half_close_gets_answer),
        cmocka_unit_test(test_connection_close),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_timeouts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
