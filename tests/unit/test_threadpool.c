/* Thread pool + loopq: work runs off the loop, completions run on it, in
 * the order they were posted, and nothing queued is lost at shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <stdatomic.h>
#include <unistd.h>

#include "log.h"
#include "threadpool.h"

#define JOBS 1000

struct shared {
    pthread_t loop_thread;
    struct event_base *base;
    atomic_int worked;
    int done;                /* touched on the loop thread only */
    int done_off_loop;
    atomic_int ctx_made;
};

struct job {
    struct shared *s;
    int n;
    int result;
    char trace[33];      /* the trace id it was submitted under ("" none) */
    bool trace_in_work;  /* work logged with it */
};

static void *ctx_new(void *user)
{
    struct shared *s = user;
    atomic_fetch_add(&s->ctx_made, 1);
    return s;
}

static void work(void *ctx, void *arg)
{
    struct job *j = arg;
    assert_ptr_equal(ctx, j->s);
    j->result = j->n * 2;
    j->trace_in_work = strcmp(log_get_trace(), j->trace) == 0;
    atomic_fetch_add(&j->s->worked, 1);
}

static void done(void *arg)
{
    struct job *j = arg;
    if (!pthread_equal(pthread_self(), j->s->loop_thread))
        j->s->done_off_loop++;
    assert_int_equal(j->result, j->n * 2);
    /* The request's trace id is on the lines of its work and its
     * completion (log.h), whichever thread runs them. */
    assert_true(j->trace_in_work);
    assert_string_equal(log_get_trace(), j->trace);
    if (++j->s->done == JOBS)
        event_base_loopbreak(j->s->base);
}

static void test_pool_posts_back_to_loop(void **state)
{
    (void)state;
    assert_int_equal(evthread_use_pthreads(), 0);
    struct shared s = {.loop_thread = pthread_self()};
    s.base = event_base_new();
    struct loopq *q = loopq_new(s.base);
    char err[256];
    struct threadpool *tp = threadpool_new(4, ctx_new, NULL, &s, err, sizeof err);
    assert_non_null(tp);
    static struct job jobs[JOBS];
    for (int i = 0; i < JOBS; i++) {
        jobs[i] = (struct job){&s, i, -1, "", false};
        if (i % 2) /* every other one submitted within a traced request */
            snprintf(jobs[i].trace, sizeof jobs[i].trace, "%032x", i);
        log_set_trace(jobs[i].trace);
        assert_true(threadpool_submit(tp, work, done, q, &jobs[i]));
    }
    log_set_trace(NULL);
    struct timeval limit = {.tv_sec = 20};
    event_base_loopexit(s.base, &limit);
    event_base_dispatch(s.base);
    assert_int_equal(s.done, JOBS);
    assert_int_equal(s.done_off_loop, 0);
    assert_int_equal(atomic_load(&s.worked), JOBS);
    threadpool_free(tp);
    assert_int_equal(atomic_load(&s.ctx_made), 4);
    loopq_free(q);
    event_base_free(s.base);
}

static void count(void *arg)
{
    (*(int *)arg)++;
}

static void test_loopq_free_runs_pending(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct loopq *q = loopq_new(base);
    int n = 0;
    for (int i = 0; i < 10; i++)
        assert_true(loopq_post(q, count, &n));
    loopq_free(q); /* never dispatched: the calls still happen */
    assert_int_equal(n, 10);
    event_base_free(base);
}

/* Tenants: a tenant runs at most half the threads, holds at most half
 * the queue; the queue is bounded; a job past its deadline is expired,
 * not run. */
struct fjob {
    atomic_int started; /* order it started in, 0: not yet */
    atomic_bool expired;
};
static atomic_int fair_seq;
static atomic_bool fair_gate;

static void fair_work(void *ctx, void *arg)
{
    (void)ctx;
    struct fjob *j = arg;
    atomic_store(&j->started, atomic_fetch_add(&fair_seq, 1) + 1);
    while (!atomic_load(&fair_gate))
        usleep(1000);
}

static void fair_expire(void *arg)
{
    atomic_store(&((struct fjob *)arg)->expired, true);
}

static void wait_started(struct fjob *j)
{
    for (int i = 0; i < 5000 && !atomic_load(&j->started); i++)
        usleep(1000);
    assert_true(atomic_load(&j->started) > 0);
}

static void test_tenants_share_bounds_and_deadlines(void **state)
{
    (void)state;
    char err[256];
    struct threadpool *tp = threadpool_new(2, NULL, NULL, NULL, err, sizeof err);
    assert_non_null(tp);
    threadpool_set_limits(tp, 4);
    uint64_t a = threadpool_tenant("k:a"), b = threadpool_tenant("t:b"), c = threadpool_tenant("t:c");
    int64_t later = sb_mono_ms() + 60000;
    static struct fjob a1, a2, a3, a4, b1, c1, c2, c3;
#define SUBMIT(t, j, dl) threadpool_submit_for(tp, t, dl, fair_work, fair_expire, NULL, NULL, &j)
    assert_int_equal(SUBMIT(a, a1, later), TP_OK);
    wait_started(&a1);
    assert_int_equal(SUBMIT(a, a2, later), TP_OK); /* waits: a runs one of two threads */
    assert_int_equal(SUBMIT(b, b1, later), TP_OK);
    wait_started(&b1);                             /* b goes first, on the other thread */
    assert_int_equal(atomic_load(&a2.started), 0);
    assert_int_equal(SUBMIT(a, a3, later), TP_OK);
    assert_int_equal(SUBMIT(a, a4, later), TP_SHARE); /* a holds half the queue */
    assert_int_equal(SUBMIT(c, c1, later), TP_OK);
    assert_int_equal(SUBMIT(c, c2, later - 60000 - 1), TP_OK); /* already late */
    assert_int_equal(SUBMIT(c, c3, later), TP_FULL);
#undef SUBMIT
    atomic_store(&fair_gate, true);
    threadpool_free(tp);
    assert_true(atomic_load(&a2.started) > atomic_load(&b1.started));
    assert_true(atomic_load(&a3.started) > 0 && atomic_load(&c1.started) > 0);
    assert_true(atomic_load(&c2.expired));
    assert_int_equal(atomic_load(&c2.started), 0);
    assert_false(atomic_load(&a4.started) || atomic_load(&c3.started));
}

/* A client alone may use all threads but one; a job held back past its
 * deadline is expired then, though no thread came free. */
static void test_alone_uses_more_and_deadlines_hold_while_busy(void **state)
{
    (void)state;
    char err[256];
    atomic_store(&fair_gate, false);
    struct threadpool *tp = threadpool_new(4, NULL, NULL, NULL, err, sizeof err);
    assert_non_null(tp);
    threadpool_set_limits(tp, 16);
    uint64_t x = threadpool_tenant("t:x"), y = threadpool_tenant("t:y");
    int64_t later = sb_mono_ms() + 60000;
    static struct fjob xs[5], y1, late;
    for (int i = 0; i < 5; i++)
        assert_int_equal(threadpool_submit_for(tp, x, later, fair_work, fair_expire, NULL, NULL, &xs[i]), TP_OK);
    wait_started(&xs[2]); /* three of four threads: nobody else waits */
    usleep(100 * 1000);
    assert_int_equal(atomic_load(&xs[3].started), 0);
    assert_int_equal(threadpool_submit_for(tp, y, later, fair_work, fair_expire, NULL, NULL, &y1), TP_OK);
    wait_started(&y1); /* the fourth thread was left for whoever came */
    int64_t t0 = sb_mono_ms();
    assert_int_equal(threadpool_submit_for(tp, x, t0 + 100, fair_work, fair_expire, NULL, NULL, &late), TP_OK);
    for (int i = 0; i < 2000 && !atomic_load(&late.expired); i++)
        usleep(1000);
    assert_true(atomic_load(&late.expired));
    assert_true(sb_mono_ms() - t0 < 1000); /* every thread still busy */
    atomic_store(&fair_gate, true);
    threadpool_free(tp);
    assert_int_equal(atomic_load(&late.started), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tenants_share_bounds_and_deadlines),
        cmocka_unit_test(test_alone_uses_more_and_deadlines_hold_while_busy),
        cmocka_unit_test(test_pool_posts_back_to_loop),
        cmocka_unit_test(test_loopq_free_runs_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
