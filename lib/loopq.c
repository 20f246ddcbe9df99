/* loopq.c - see loopq.h. */
#include "loopq.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"

struct loopq {
    pthread_mutex_t lock;
    struct loopq_item *head, *tail;
    bool armed; /* event already activated for the current batch */
    struct event *ev;
};

static void loopq_run(struct loopq *q)
{
    pthread_mutex_lock(&q->lock);
    struct loopq_item *it = q->head;
    q->head = q->tail = NULL;
    q->armed = false;
    pthread_mutex_unlock(&q->lock);
    while (it) {
        struct loopq_item *next = it->next;
        bool owned = it->owned, traced = it->trace[0] != '\0';
        if (traced)
            log_set_trace(it->trace);
        it->fn(it->arg); /* may free an owned item: read before */
        if (traced)
            log_set_trace(NULL);
        if (!owned)
            free(it);
        it = next;
    }
}

static void loopq_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    loopq_run(arg);
}

struct loopq *loopq_new(struct event_base *base)
{
    struct loopq *q = calloc(1, sizeof *q);
    if (q == NULL)
        return NULL;
    pthread_mutex_init(&q->lock, NULL);
    q->ev = event_new(base, -1, 0, loopq_cb, q);
    if (q->ev == NULL) {
        pthread_mutex_destroy(&q->lock);
        free(q);
        return NULL;
    }
    return q;
}

void loopq_free(struct loopq *q)
{
    if (q == NULL)
        return;
    loopq_run(q);
    event_free(q->ev);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

static void push(struct loopq *q, struct loopq_item *it)
{
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    bool wake = !q->armed;
    q->armed = true;
    pthread_mutex_unlock(&q->lock);
    if (wake)
        event_active(q->ev, EV_TIMEOUT, 0);
}

void loopq_post_item(struct loopq *q, struct loopq_item *it, loopq_fn fn, void *arg)
{
    *it = (struct loopq_item){NULL, fn, arg, true, ""};
    log_copy_trace(it->trace);
    push(q, it);
}

bool loopq_post(struct loopq *q, loopq_fn fn, void *arg)
{
    struct loopq_item *it = malloc(sizeof *it);
    if (it == NULL)
        return false;
    *it = (struct loopq_item){NULL, fn, arg, false, ""};
    log_copy_trace(it->trace);
    push(q, it);
    return true;
}
