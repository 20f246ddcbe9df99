/* threadpool.c - see threadpool.h. */
#include "threadpool.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"

struct tp_job {
    struct tp_job *next;
    threadpool_work_fn work;
    loopq_fn done;
    struct loopq *reply;
    void *arg;
};

struct threadpool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct tp_job *head, *tail;
    size_t backlog;
    bool stopping;
    size_t nthreads;
    pthread_t *threads;
    threadpool_ctx_new_fn ctx_new;
    threadpool_ctx_free_fn ctx_free;
    void *user;
};

static void *tp_main(void *arg)
{
    struct threadpool *tp = arg;
    void *ctx = tp->ctx_new ? tp->ctx_new(tp->user) : NULL;
    for (;;) {
        pthread_mutex_lock(&tp->lock);
        while (tp->head == NULL && !tp->stopping)
            pthread_cond_wait(&tp->cond, &tp->lock);
        struct tp_job *job = tp->head;
        if (job == NULL) { /* stopping and drained */
            pthread_mutex_unlock(&tp->lock);
            break;
        }
        tp->head = job->next;
        if (tp->head == NULL)
            tp->tail = NULL;
        tp->backlog--;
        pthread_mutex_unlock(&tp->lock);

        job->work(ctx, job->arg);
        if (job->done && job->reply) {
            if (!loopq_post(job->reply, job->done, job->arg))
                log_error("threadpool: reply lost, out of memory", "%s", "");
        }
        free(job);
    }
    if (tp->ctx_free)
        tp->ctx_free(ctx);
    return NULL;
}

struct threadpool *threadpool_new(size_t nthreads, threadpool_ctx_new_fn ctx_new,
                                  threadpool_ctx_free_fn ctx_free, void *user, char *errbuf,
                                  size_t errlen)
{
    struct threadpool *tp = calloc(1, sizeof *tp);
    if (tp == NULL || (tp->threads = calloc(nthreads, sizeof *tp->threads)) == NULL) {
        free(tp);
        sb_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&tp->lock, NULL);
    pthread_cond_init(&tp->cond, NULL);
    tp->ctx_new = ctx_new;
    tp->ctx_free = ctx_free;
    tp->user = user;
    for (size_t i = 0; i < nthreads; i++) {
        if (pthread_create(&tp->threads[i], NULL, tp_main, tp) != 0) {
            sb_errf(errbuf, errlen, "pthread_create failed");
            threadpool_free(tp);
            return NULL;
        }
        tp->nthreads++;
    }
    return tp;
}

void threadpool_stop(struct threadpool *tp)
{
    if (tp == NULL)
        return;
    pthread_mutex_lock(&tp->lock);
    tp->stopping = true;
    pthread_cond_broadcast(&tp->cond);
    pthread_mutex_unlock(&tp->lock);
    for (size_t i = 0; i < tp->nthreads; i++)
        pthread_join(tp->threads[i], NULL);
    tp->nthreads = 0; /* joined: a second stop (or the free) joins nothing */
}

void threadpool_free(struct threadpool *tp)
{
    if (tp == NULL)
        return;
    threadpool_stop(tp);
    pthread_cond_destroy(&tp->cond);
    pthread_mutex_destroy(&tp->lock);
    free(tp->threads);
    free(tp);
}

bool threadpool_submit(struct threadpool *tp, threadpool_work_fn work, loopq_fn done,
                       struct loopq *reply, void *arg)
{
    struct tp_job *job = malloc(sizeof *job);
    if (job == NULL)
        return false;
    *job = (struct tp_job){NULL, work, done, reply, arg};
    pthread_mutex_lock(&tp->lock);
    if (tp->stopping) {
        pthread_mutex_unlock(&tp->lock);
        free(job);
        return false;
    }
    if (tp->tail)
        tp->tail->next = job;
    else
        tp->head = job;
    tp->tail = job;
    tp->backlog++;
    pthread_cond_signal(&tp->cond);
    pthread_mutex_unlock(&tp->lock);
    return true;
}

size_t threadpool_backlog(struct threadpool *tp)
{
    pthread_mutex_lock(&tp->lock);
    size_t n = tp->backlog;
    pthread_mutex_unlock(&tp->lock);
    return n;
}
