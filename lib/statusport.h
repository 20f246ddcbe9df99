/* statusport.h - a long-running process's own small HTTP endpoint
 * (status_listen), for the processes that serve no API: workers and the
 * count roll-up daemon.
 *
 *   GET /healthz  200 {"status":"ok", ...the source's fields} while the
 *                 process runs;
 *   GET /metrics  Prometheus text: the process's metrics registry, then
 *                 whatever the source appends.
 *
 * It runs on a thread of its own with its own event loop (libevent's
 * evhttp: a few requests a minute, where the dispatcher's server would be
 * out of place), so work that takes minutes never delays an answer. The
 * source's health() runs on that thread; metrics() on a second one, so
 * that /healthz never waits behind a scrape that waits on a broker.
 * Scrapes that arrive together share one rendering. */
#ifndef SB_STATUSPORT_H
#define SB_STATUSPORT_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "metrics.h"
#include "strbuf.h"
#include "util.h"

struct statusport_source {
    const char *name; /* in the log line that says where it listens */
    /* Optional: adds fields to /healthz's answer. */
    void (*health)(void *arg, cJSON *body);
    /* Optional: appends Prometheus text after the registry's. */
    void (*metrics)(void *arg, struct strbuf *out);
    void *arg;
};

/* For a source's health(): adds field, the seconds since the unix-seconds
 * timestamp in gauge, or null while it is 0 (nothing done yet). */
void statusport_add_age(cJSON *body, const char *field, const struct metric *gauge);

/* Listens on addr ("ipv4:port", port 0 = any free port) and starts
 * serving src (copied); NULL on error. */
struct statusport *statusport_new(const char *addr, const struct statusport_source *src, char *errbuf,
                                  size_t errlen);
/* Stops serving and frees (NULL is fine). */
void statusport_free(struct statusport *s);

#endif
