/* Metrics: Prometheus text with families grouped, histogram buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static void test_render(void **state)
{
    (void)state;
    struct metric *a = metrics_counter("t_requests_total", "route=\"a\"", "requests");
    struct metric *g = metrics_gauge("t_up", "", "up");
    struct metric *b = metrics_counter("t_requests_total", "route=\"b\"", "requests");
    struct metric *h = metrics_histogram("t_latency_seconds", "", "latency");
    assert_ptr_equal(a, metrics_counter("t_requests_total", "route=\"a\"", "requests"));
    metric_add(a, 2);
    metric_add(b, 5);
    metric_set(g, 1);
    metric_observe_us(h, 700);    /* <= 1 ms */
    metric_observe_us(h, 30000);  /* <= 50 ms */
    metric_observe_us(h, 99000000); /* only +Inf */
    size_t len;
    char *text = metrics_render(&len);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "t_requests_total{route=\"a\"} 2\nt_requests_total{route=\"b\"} 5\n"));
    assert_non_null(strstr(text, "# TYPE t_up gauge\nt_up 1\n"));
    assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"0.0005\"} 0\n"));
    assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"0.001\"} 1\n"));
    assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"0.05\"} 2\n"));
    assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"10\"} 2\n"));
    assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(text, "t_latency_seconds_count 3\n"));
    /* one HELP per family even with two label sets */
    char *first = strstr(text, "# HELP t_requests_total");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# HELP t_requests_total"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_render)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
