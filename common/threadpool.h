/* threadpool.h - a fixed set of threads for blocking work (MySQL).
 *
 * Each thread owns a context made by ctx_new (for the MySQL pool: one
 * connection), so a connection is never shared between threads. work()
 * runs on a pool thread; done() runs afterwards on the loop behind the
 * loopq given at submit time. Jobs are taken in FIFO order. */
#ifndef SB_THREADPOOL_H
#define SB_THREADPOOL_H

#include <stddef.h>

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
/* Jobs queued but not started (a gauge for /metrics). */
size_t threadpool_backlog(struct threadpool *tp);

#endif
