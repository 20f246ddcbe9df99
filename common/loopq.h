/* loopq.h - hand a function call to a libevent loop from any thread.
 *
 * The Kafka delivery-report thread and the MySQL pool threads finish work
 * off the loop; the HTTP reply must be sent on the loop that owns the
 * connection. loopq_post appends to a mutex-guarded list and activates one
 * event; the loop runs every queued call in order. Needs
 * evthread_use_pthreads() before the base is created. */
#ifndef SB_LOOPQ_H
#define SB_LOOPQ_H

#include <event2/event.h>

#include "util.h"

struct loopq;
typedef void (*loopq_fn)(void *arg);

struct loopq *loopq_new(struct event_base *base);
/* Pending calls are run (on the calling thread) before the queue is freed,
 * so no posted work is silently dropped. */
void loopq_free(struct loopq *q);
bool loopq_post(struct loopq *q, loopq_fn fn, void *arg) SB_NODISCARD;

#endif
