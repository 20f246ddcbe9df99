/* metrics.c - see metrics.h. */
#include "metrics.h"

#include "strbuf.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum metric_kind { M_COUNTER, M_GAUGE, M_HISTOGRAM };

static const int64_t bucket_us[] = {500,    1000,   2500,    5000,    10000,   25000,
                                    50000,  100000, 250000,  500000,  1000000, 2500000,
                                    5000000, 10000000};
#define NBUCKETS (sizeof bucket_us / sizeof bucket_us[0])

struct metric {
    enum metric_kind kind;
    char name[96];
    char labels[METRICS_LABELS_MAX];
    char help[160];
    _Atomic int64_t value; /* counter/gauge value; histogram count */
    _Atomic int64_t sum_us;
    _Atomic int64_t buckets[NBUCKETS];
};

#define MAX_METRICS 512
static struct metric g_metrics[MAX_METRICS];
static size_t g_count;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
/* Returned when the table is full, so callers never test for NULL. */
static struct metric g_overflow;

static struct metric *metrics_register(enum metric_kind kind, const char *name,
                                       const char *labels, const char *help)
{
    struct metric *m = NULL;
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_count; i++)
        if (strcmp(g_metrics[i].name, name) == 0 && strcmp(g_metrics[i].labels, labels) == 0) {
            m = &g_metrics[i];
            goto done;
        }
    if (g_count == MAX_METRICS) {
        m = &g_overflow;
        goto done;
    }
    m = &g_metrics[g_count++];
    m->kind = kind;
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->labels, sizeof m->labels, "%s", labels);
    snprintf(m->help, sizeof m->help, "%s", help);
done:
    pthread_mutex_unlock(&g_lock);
    return m;
}

struct metric *metrics_counter(const char *name, const char *labels, const char *help)
{
    return metrics_register(M_COUNTER, name, labels, help);
}

struct metric *metrics_gauge(const char *name, const char *labels, const char *help)
{
    return metrics_register(M_GAUGE, name, labels, help);
}

struct metric *metrics_histogram(const char *name, const char *labels, const char *help)
{
    return metrics_register(M_HISTOGRAM, name, labels, help);
}

void metric_add(struct metric *m, int64_t delta)
{
    atomic_fetch_add_explicit(&m->value, delta, memory_order_relaxed);
}

void metric_set(struct metric *m, int64_t value)
{
    atomic_store_explicit(&m->value, value, memory_order_relaxed);
}

int64_t metric_value(const struct metric *m)
{
    return atomic_load_explicit(&((struct metric *)m)->value, memory_order_relaxed);
}

void metric_observe_us(struct metric *m, int64_t micros)
{
    for (size_t i = 0; i < NBUCKETS; i++)
        if (micros <= bucket_us[i]) {
            atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
            break;
        }
    atomic_fetch_add_explicit(&m->sum_us, micros, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->value, 1, memory_order_relaxed);
}

static const char *kind_word(enum metric_kind k)
{
    return k == M_COUNTER ? "counter" : k == M_GAUGE ? "gauge" : "histogram";
}

static void render_one(struct strbuf *b, struct metric *m)
{
    const char *sep = *m->labels ? "," : "";
    const char *open = *m->labels ? "{" : "", *close = *m->labels ? "}" : "";
    if (m->kind != M_HISTOGRAM) {
        strbuf_appendf(b, "%s%s%s%s %lld\n", m->name, open, m->labels, close,
                   (long long)metric_value(m));
        return;
    }
    int64_t cum = 0;
    for (size_t k = 0; k < NBUCKETS; k++) {
        cum += atomic_load_explicit(&m->buckets[k], memory_order_relaxed);
        strbuf_appendf(b, "%s_bucket{%s%sle=\"%g\"} %lld\n", m->name, m->labels, sep,
                   (double)bucket_us[k] / 1e6, (long long)cum);
    }
    int64_t count = metric_value(m);
    strbuf_appendf(b, "%s_bucket{%s%sle=\"+Inf\"} %lld\n", m->name, m->labels, sep,
               (long long)count);
    strbuf_appendf(b, "%s_sum%s%s%s %.6f\n", m->name, open, m->labels, close,
               (double)atomic_load_explicit(&m->sum_us, memory_order_relaxed) / 1e6);
    strbuf_appendf(b, "%s_count%s%s%s %lld\n", m->name, open, m->labels, close, (long long)count);
}

char *metrics_render(size_t *len_out)
{
    struct strbuf b = {0};
    pthread_mutex_lock(&g_lock);
    size_t n = g_count;
    pthread_mutex_unlock(&g_lock);
    /* A family's samples must be contiguous: render each name once, at its
     * first registration, with every label set registered under it. */
    for (size_t i = 0; i < n; i++) {
        bool first = true;
        for (size_t j = 0; j < i; j++)
            if (strcmp(g_metrics[j].name, g_metrics[i].name) == 0)
                first = false;
        if (!first)
            continue;
        strbuf_appendf(&b, "# HELP %s %s\n# TYPE %s %s\n", g_metrics[i].name, g_metrics[i].help,
                   g_metrics[i].name, kind_word(g_metrics[i].kind));
        for (size_t j = i; j < n; j++)
            if (strcmp(g_metrics[j].name, g_metrics[i].name) == 0)
                render_one(&b, &g_metrics[j]);
    }
    size_t len = b.len;
    char *text = strbuf_take(&b);
    if (text == NULL) {
        text = strdup("");
        len = 0;
    }
    if (len_out)
        *len_out = text ? len : 0;
    return text;
}
