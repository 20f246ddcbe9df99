/* threadpool.c - see threadpool.h. */
#include "threadpool.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"

struct tp_job {
    struct tp_job *next;
    threadpool_work_fn work;
    void (*expire)(void *arg);
    loopq_fn done;
    struct loopq *reply;
    void *arg;
    uint64_t tenant;     /* 0: the pool's own work, never held back */
    int64_t deadline_ms; /* tenants' jobs */
    struct tp_tenant *slot; /* its tenant's (stays put while it has jobs) */
    char trace[33]; /* the submitter's trace id (log.h): on the lines work and done log */
};

#define DEADLINE_CHECK_MS 50

/* A tenant with jobs in the pool: waiting and running. */
struct tp_tenant {
    uint64_t id;
    size_t queued, running;
};

struct threadpool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct tp_job *head, *tail;
    size_t backlog;
    size_t tenant_jobs;           /* tenants' jobs waiting */
    size_t max_queue;             /* 0: unbounded */
    struct tp_tenant *tenants;    /* max_queue + nthreads slots */
    size_t ntenants;
    pthread_cond_t reaper_cond;   /* signalled at stop only */
    pthread_t reaper;
    bool has_reaper;
    bool stopping;
    size_t nthreads;
    pthread_t *threads;
    threadpool_ctx_new_fn ctx_new;
    threadpool_ctx_free_fn ctx_free;
    void *user;
};

/* The tenant's slot, made if it has none; NULL if every slot is taken.
 * Jobs keep theirs (tp_job.slot), so this runs once per submit. Under the
 * lock. */
static struct tp_tenant *tenant_of(struct threadpool *tp, uint64_t id)
{
    struct tp_tenant *free_slot = NULL;
    for (size_t i = 0; i < tp->ntenants; i++) {
        if (tp->tenants[i].id == id)
            return &tp->tenants[i];
        if (tp->tenants[i].id == 0 && free_slot == NULL)
            free_slot = &tp->tenants[i];
    }
    if (free_slot)
        *free_slot = (struct tp_tenant){id, 0, 0};
    return free_slot;
}

static void tenant_release(struct tp_tenant *t)
{
    if (t && t->queued == 0 && t->running == 0)
        t->id = 0;
}

/* Unlinks job (after prev, or the head) from the queue. Under the lock. */
static void unlink_job(struct threadpool *tp, struct tp_job *prev, struct tp_job *job)
{
    if (prev)
        prev->next = job->next;
    else
        tp->head = job->next;
    if (tp->tail == job)
        tp->tail = prev;
    job->next = NULL;
    tp->backlog--;
    if (job->slot) {
        tp->tenant_jobs--;
        job->slot->queued--;
    }
}

/* The next job to run: the first whose tenant runs fewer than half the
 * threads; if there is none, the first whose tenant leaves one thread
 * free (a client alone may use more than half, never all: whoever comes
 * next finds a thread). Jobs past their deadline are moved to *expired
 * on the way. Under the lock. */
static void post_done(struct tp_job *job)
{
    if (job->done && job->reply && !loopq_post(job->reply, job->done, job->arg))
        log_error("threadpool: reply lost, out of memory", "%s", "");
}

/* Moves the tenants' jobs past their deadline to *expired. Under the lock. */
static void collect_expired(struct threadpool *tp, struct tp_job **expired)
{
    if (tp->tenant_jobs == 0)
        return;
    int64_t now = sb_mono_ms();
    for (struct tp_job *prev = NULL, *j = tp->head, *next; j; j = next) {
        next = j->next;
        if (j->slot == NULL || now <= j->deadline_ms) {
            prev = j;
            continue;
        }
        struct tp_tenant *t = j->slot;
        unlink_job(tp, prev, j);
        tenant_release(t);
        j->next = *expired;
        *expired = j;
    }
}

/* Runs expire and done for each job of a list (not under the lock). */
static void run_expired(struct tp_job *expired)
{
    for (struct tp_job *e = expired, *n; e; e = n) {
        n = e->next;
        log_set_trace(e->trace);
        e->expire(e->arg);
        post_done(e);
        log_set_trace(NULL);
        free(e);
    }
}

static struct tp_job *next_job(struct threadpool *tp, struct tp_job **expired)
{
    size_t half = tp->nthreads / 2 ? tp->nthreads / 2 : 1;
    size_t most = tp->nthreads > 1 ? tp->nthreads - 1 : 1;
    collect_expired(tp, expired);
    for (size_t cap = half;; cap = most) {
        for (struct tp_job *prev = NULL, *j = tp->head, *next; j; j = next) {
            next = j->next;
            if (j->slot == NULL || j->slot->running < cap) {
                unlink_job(tp, prev, j);
                if (j->slot)
                    j->slot->running++;
                return j;
            }
            prev = j;
        }
        if (cap == most)
            return NULL;
    }
}


/* While every thread is busy (or held back by shares), nobody looks at the
 * queue: the reaper does, every DEADLINE_CHECK_MS, so a job past its
 * deadline is answered then rather than when a thread comes free. */
static void *tp_reaper(void *arg)
{
    struct threadpool *tp = arg;
    pthread_mutex_lock(&tp->lock);
    while (!tp->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += DEADLINE_CHECK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&tp->reaper_cond, &tp->lock, &ts);
        struct tp_job *expired = NULL;
        collect_expired(tp, &expired);
        if (expired) {
            pthread_mutex_unlock(&tp->lock);
            run_expired(expired);
            pthread_mutex_lock(&tp->lock);
        }
    }
    pthread_mutex_unlock(&tp->lock);
    return NULL;
}

static void *tp_main(void *arg)
{
    struct threadpool *tp = arg;
    void *ctx = tp->ctx_new ? tp->ctx_new(tp->user) : NULL;
    for (;;) {
        struct tp_job *expired = NULL, *job;
        pthread_mutex_lock(&tp->lock);
        while ((job = next_job(tp, &expired)) == NULL && expired == NULL && !(tp->stopping && !tp->head))
            pthread_cond_wait(&tp->cond, &tp->lock);
        pthread_mutex_unlock(&tp->lock);
        run_expired(expired);
        if (job == NULL) {
            if (expired)
                continue;
            break; /* stopping and drained */
        }
        log_set_trace(job->trace); /* and loopq_post hands it on to done */
        job->work(ctx, job->arg);
        post_done(job);
        log_set_trace(NULL);
        if (job->slot) { /* its tenant may run another one now */
            pthread_mutex_lock(&tp->lock);
            struct tp_tenant *t = job->slot;
            t->running--;
            tenant_release(t);
            pthread_cond_broadcast(&tp->cond);
            pthread_mutex_unlock(&tp->lock);
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
    pthread_cond_init(&tp->reaper_cond, NULL);
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
    pthread_cond_broadcast(&tp->reaper_cond);
    pthread_mutex_unlock(&tp->lock);
    for (size_t i = 0; i < tp->nthreads; i++)
        pthread_join(tp->threads[i], NULL);
    tp->nthreads = 0; /* joined: a second stop (or the free) joins nothing */
    if (tp->has_reaper)
        pthread_join(tp->reaper, NULL);
    tp->has_reaper = false;
}

void threadpool_free(struct threadpool *tp)
{
    if (tp == NULL)
        return;
    threadpool_stop(tp);
    pthread_cond_destroy(&tp->cond);
    pthread_cond_destroy(&tp->reaper_cond);
    pthread_mutex_destroy(&tp->lock);
    free(tp->tenants);
    free(tp->threads);
    free(tp);
}

void threadpool_set_limits(struct threadpool *tp, size_t max_queue)
{
    pthread_mutex_lock(&tp->lock);
    size_t n = max_queue + tp->nthreads;
    struct tp_tenant *t = tp->tenants == NULL ? calloc(n, sizeof *t) : NULL;
    if (t) {
        tp->tenants = t;
        tp->ntenants = n;
        tp->max_queue = max_queue;
        tp->has_reaper = pthread_create(&tp->reaper, NULL, tp_reaper, tp) == 0;
        if (!tp->has_reaper)
            log_warn("threadpool: no reaper thread; deadlines are checked when a thread comes free", "%s", "");
    }
    pthread_mutex_unlock(&tp->lock);
}

uint64_t threadpool_tenant(const char *name)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 1099511628211ULL;
    return h ? h : 1;
}

static void enqueue(struct threadpool *tp, struct tp_job *job)
{
    if (tp->tail)
        tp->tail->next = job;
    else
        tp->head = job;
    tp->tail = job;
    tp->backlog++;
    pthread_cond_signal(&tp->cond);
}

enum tp_submit threadpool_submit_for(struct threadpool *tp, uint64_t tenant, int64_t deadline_ms,
                                     threadpool_work_fn work, void (*expire)(void *arg),
                                     loopq_fn done, struct loopq *reply, void *arg)
{
    assert(tenant != 0 && expire != NULL);
    struct tp_job *job = malloc(sizeof *job);
    if (job == NULL)
        return TP_STOPPED;
    *job = (struct tp_job){NULL, work, expire, done, reply, arg, tenant, deadline_ms, NULL, ""};
    log_copy_trace(job->trace);
    enum tp_submit res = TP_OK;
    pthread_mutex_lock(&tp->lock);
    struct tp_tenant *t = tp->max_queue ? tenant_of(tp, tenant) : NULL;
    if (tp->stopping)
        res = TP_STOPPED;
    else if (tp->max_queue && tp->tenant_jobs >= tp->max_queue)
        res = TP_FULL;
    else if (tp->max_queue && (t == NULL || t->queued >= (tp->max_queue + 1) / 2))
        res = TP_SHARE;
    if (res != TP_OK) {
        tenant_release(t);
        pthread_mutex_unlock(&tp->lock);
        free(job);
        return res;
    }
    if (t == NULL) { /* unbounded pool: no tenant table, plain FIFO */
        job->tenant = 0;
    } else {
        job->slot = t;
        t->queued++;
        tp->tenant_jobs++;
    }
    enqueue(tp, job);
    pthread_mutex_unlock(&tp->lock);
    return TP_OK;
}

bool threadpool_submit(struct threadpool *tp, threadpool_work_fn work, loopq_fn done,
                       struct loopq *reply, void *arg)
{
    struct tp_job *job = malloc(sizeof *job);
    if (job == NULL)
        return false;
    *job = (struct tp_job){NULL, work, NULL, done, reply, arg, 0, 0, NULL, ""};
    log_copy_trace(job->trace);
    pthread_mutex_lock(&tp->lock);
    if (tp->stopping) {
        pthread_mutex_unlock(&tp->lock);
        free(job);
        return false;
    }
    enqueue(tp, job);
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
