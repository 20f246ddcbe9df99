/* threadpool.h - a fixed set of threads for blocking work (MySQL).
 *
 * Each thread owns a context made by ctx_new (for the MySQL pool: one
 * connection), so a connection is never shared between threads. work()
 * runs on a pool thread; done() runs afterwards on the loop behind the
 * loopq given at submit time. Jobs are taken in FIFO order, except that a
 * job of a tenant (threadpool_submit_for) waits while its tenant already
 * runs half the threads and another tenant's job waits, and always while
 * it runs all but one: so one tenant's slow queries cannot hold every
 * thread. Tenants' jobs wait in a bounded queue, each for at most its
 * deadline (checked every 50 ms while they wait). */
#ifndef SB_THREADPOOL_H
#define SB_THREADPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "loopq.h"
#include "util.h"

struct threadpool;
typedef void *(*threadpool_ctx_new_fn)(void *user);
typedef void (*threadpool_ctx_free_fn)(void *ctx);
typedef void (*threadpool_work_fn)(void *ctx, void *arg);

struct threadpool *threadpool_new(size_t nthreads, threadpool_ctx_new_fn ctx_new,
                                  threadpool_ctx_free_fn ctx_free, void *user, char *errbuf,
                                  size_t errlen);
/* Finishes the queued jobs (their done() is posted as usual) and joins the
 * threads; submitting fails from then on. The pool stays valid until
 * threadpool_free. */
void threadpool_stop(struct threadpool *tp);
/* Stops the pool if that has not been done, then frees it. */
void threadpool_free(struct threadpool *tp);
/* done and reply may be NULL (fire and forget). False when shutting down
 * or out of memory; done is then not called. */
bool threadpool_submit(struct threadpool *tp, threadpool_work_fn work, loopq_fn done,
                       struct loopq *reply, void *arg) SB_NODISCARD;
/* Bounds for tenants' jobs (threadpool_submit_for): at most max_queue
 * waiting, a tenant at most half of them. Before it is set, unbounded. */
void threadpool_set_limits(struct threadpool *tp, size_t max_queue);

enum tp_submit { TP_OK, TP_FULL, TP_SHARE, TP_STOPPED };
/* A job for tenant (a hash, never 0). It waits until deadline_ms
 * (sb_mono_ms) at most: a job still waiting then gets expire(arg) on a
 * pool thread instead of work (so done can answer 503), then done as
 * usual. TP_FULL: the queue is full; TP_SHARE: the tenant holds half of
 * it already; TP_STOPPED: shutting down or out of memory. done is not
 * called unless TP_OK. */
enum tp_submit threadpool_submit_for(struct threadpool *tp, uint64_t tenant, int64_t deadline_ms,
                                     threadpool_work_fn work, void (*expire)(void *arg),
                                     loopq_fn done, struct loopq *reply, void *arg) SB_NODISCARD;
/* A tenant's hash for threadpool_submit_for. */
uint64_t threadpool_tenant(const char *name);

/* Jobs queued but not started (a gauge for /metrics). */
size_t threadpool_backlog(struct threadpool *tp);

#endif
