/* status.h - a worker's own small HTTP endpoint (status_listen):
 *
 *   GET /healthz  200 {"status":"ok","role",...} while the process runs,
 *                 with the seconds since its last committed batch;
 *   GET /metrics  Prometheus text: the worker's counters, and per
 *                 assigned partition the consumer group's lag
 *                 (switchboard_worker_lag: the log's end minus the
 *                 committed offset).
 *
 * It runs on a thread of its own with its own event loop (libevent's
 * evhttp: a few requests a minute, where the dispatcher's server would be
 * out of place), so a batch that takes minutes never delays an answer. */
#ifndef SB_STATUS_H
#define SB_STATUS_H

#include <stddef.h>

#include "util.h"

struct worker;
struct status;

/* Listens on w->cfg->status_listen and starts serving; NULL on error. */
struct status *status_new(struct worker *w, char *errbuf, size_t errlen);
/* Stops serving and frees (NULL is fine). */
void status_free(struct status *s);

#endif
