/* loopq.h - hand a function call to a libevent loop from any thread.
 *
 * The Kafka delivery-report thread and the MySQL pool threads finish work
 * off the loop; the HTTP reply must be sent on the loop that owns the
 * connection. loopq_post appends to a mutex-guarded list and activates one
 * event; the loop runs every queued call in order. Needs
 * evthread_use_pthreads() before the base is created. The trace id the
 * posting thread logs with (log_set_trace) is the call's too. */
#ifndef SB_LOOPQ_H
#define SB_LOOPQ_H

#include <event2/event.h>

#include "util.h"

struct loopq;
typedef void (*loopq_fn)(void *arg);

/* A call's place in the queue. loopq_post allocates one (and can fail);
 * loopq_post_item takes one the caller owns, so a call that must reach
 * the loop (a delivery report that answers a client) cannot be lost. */
struct loopq_item {
    struct loopq_item *next;
    loopq_fn fn;
    void *arg;
    bool owned; /* the caller's: not freed by the queue */
    char trace[33]; /* the poster's trace id (log.h), on the lines fn logs */
};

/* NULL only when out of memory. */
struct loopq *loopq_new(struct event_base *base);
/* Pending calls are run (on the calling thread) before the queue is freed,
 * so no posted work is silently dropped. */
void loopq_free(struct loopq *q);
bool loopq_post(struct loopq *q, loopq_fn fn, void *arg) SB_NODISCARD;
/* Queues fn(arg) in it, which must stay valid until fn has run. */
void loopq_post_item(struct loopq *q, struct loopq_item *it, loopq_fn fn, void *arg);

#endif
