/* metrics.h - a process-wide registry rendered as Prometheus text.
 *
 * Metrics are registered once (name + fixed label set) and updated with
 * relaxed atomics from any thread; rendering walks the table. Latency
 * histograms use fixed buckets from 0.5 ms to 10 s. */
#ifndef SB_METRICS_H
#define SB_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metric;

/* Longest label set, with its quotes and commas. */
#define METRICS_LABELS_MAX 400

/* labels is "" or the inside of the braces, e.g. "route=\"healthz\"";
 * shorter than METRICS_LABELS_MAX (a longer one is cut). */
struct metric *metrics_counter(const char *name, const char *labels, const char *help);
struct metric *metrics_gauge(const char *name, const char *labels, const char *help);
struct metric *metrics_histogram(const char *name, const char *labels, const char *help);

void metric_add(struct metric *m, int64_t delta);
void metric_set(struct metric *m, int64_t value);
int64_t metric_value(const struct metric *m);
void metric_observe_us(struct metric *m, int64_t micros);

/* Prometheus text exposition format; caller frees. */
char *metrics_render(size_t *len_out);

#endif
