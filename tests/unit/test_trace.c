/* Tracing (clients/trace.c): traceparent parsing by W3C Trace Context's
 * rules and its round trip; new traces sampled at the ratio, children
 * following their parent's flag; a full queue drops spans and counts them
 * rather than wait; spans the collector does not take are counted too.
 * The collector here is a socket that listens and never answers, so the
 * first batch's export hangs while the loop's spans go on ending. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "trace.h"

static void parse_and_format(void **state)
{
    (void)state;
    struct trace_ctx t;
    const char *good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_true(trace_parse(good, &t));
    assert_true(t.valid);
    assert_int_equal(t.flags, 1);
    char out[TRACEPARENT_LEN + 1], id[33];
    trace_format(&t, out);
    assert_string_equal(out, good);
    trace_id_hex(&t, id);
    assert_string_equal(id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_true(trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &t));
    assert_int_equal(t.flags, 0);
    /* flags other than sampled are not passed on */
    assert_true(trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", &t));
    assert_int_equal(t.flags, 1);
    /* a later version may carry more after a dash */
    assert_true(trace_parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", &t));

    const char *bad[] = {
        NULL,
        "",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero span id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version ff */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* upper case */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* 00 has no more */
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  /* short */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(trace_parse(bad[i], &t));
        assert_false(t.valid);
        trace_id_hex(&t, id);
        assert_string_equal(id, "");
    }
}

static void off_does_nothing(void **state)
{
    (void)state;
    struct sb_config cfg = {.trace_otlp_url = "", .trace_sample_ratio = "1", .trace_otlp_protocol = "http/protobuf",
                            .trace_queue_max = 16, .trace_flush_ms = 1000};
    char err[256];
    assert_true(trace_setup("test", &cfg, err, sizeof err));
    assert_false(trace_on());
    struct trace_span s;
    trace_span_start(&s, NULL, "x", TRACE_SERVER);
    assert_false(s.ctx.valid);
    cfg.trace_sample_ratio = "1.5";
    assert_false(trace_setup("test", &cfg, err, sizeof err));
    assert_non_null(strstr(err, "trace_sample_ratio"));
    cfg.trace_sample_ratio = "a tenth";
    assert_false(trace_setup("test", &cfg, err, sizeof err));
    cfg.trace_sample_ratio = "0.5";
    cfg.trace_otlp_url = "ftp://x";
    assert_false(trace_setup("test", &cfg, err, sizeof err));
    cfg.trace_otlp_url = "";
    cfg.trace_otlp_protocol = "grpc"; /* refused with tracing off too */
    assert_false(trace_setup("test", &cfg, err, sizeof err));
    assert_non_null(strstr(err, "trace_otlp_protocol"));
    cfg.trace_otlp_url = "http://127.0.0.1:9/v1/traces";
    assert_false(trace_setup("test", &cfg, err, sizeof err));
    assert_false(trace_on());
}

static void sampling_and_queue(void **state)
{
    (void)state;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(ls, 16), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &alen), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", ntohs(a.sin_port));
    struct sb_config cfg = {.trace_otlp_url = url, .trace_sample_ratio = "0.1", .trace_otlp_protocol = "http/protobuf",
                            .trace_queue_max = 16, .trace_flush_ms = 60000};
    char err[256];
    assert_true(trace_setup("test", &cfg, err, sizeof err));
    assert_true(trace_on());

    /* New traces: a tenth sampled (10000 draws: 1000, sd 30) */
    int sampled = 0;
    struct trace_span s, c;
    for (int i = 0; i < 10000; i++) {
        trace_span_start(&s, NULL, "root", TRACE_SERVER);
        assert_true(s.ctx.valid);
        sampled += trace_sampled(&s.ctx);
    }
    assert_in_range(sampled, 850, 1150);

    /* Children follow their parent, whatever the ratio. */
    struct trace_ctx yes, no;
    assert_true(trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &yes));
    assert_true(trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &no));
    for (int i = 0; i < 100; i++) {
        trace_span_start(&c, &no, "child", TRACE_CLIENT);
        assert_false(trace_sampled(&c.ctx));
        trace_span_end(&c, false);
    }
    struct trace_counts n;
    trace_counts(&n);
    assert_int_equal(n.queued + n.dropped_full, 0); /* unsampled: never queued */

    /* 100 sampled spans into a queue of 16 whose first batch hangs at the
     * collector: 16 or 32 wait, the rest are dropped and counted, and
     * every end returned (the test would hang otherwise). */
    for (int i = 0; i < 100; i++) {
        trace_span_start(&c, &yes, "child", TRACE_CLIENT);
        assert_true(trace_sampled(&c.ctx));
        assert_memory_equal(c.ctx.trace_id, yes.trace_id, 16);
        assert_memory_equal(c.parent, yes.span_id, 8);
        trace_span_attr(&c, "i", "v");
        trace_span_end(&c, false);
        assert_false(c.ctx.valid); /* ended once */
    }
    trace_counts(&n);
    assert_int_equal(n.queued + n.dropped_full, 100);
    assert_in_range(n.queued, 16, 32);

    /* The collector goes away: what was queued is counted as not exported. */
    close(ls);
    trace_shutdown();
    trace_counts(&n);
    assert_int_equal(n.exported, 0);
    assert_int_equal(n.dropped_export, n.queued);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_and_format),
        cmocka_unit_test(off_does_nothing),
        cmocka_unit_test(sampling_and_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
