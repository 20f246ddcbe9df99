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
#include <stdatomic.h>

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
    atomic_fetch_add(&j->s->worked, 1);
}

static void done(void *arg)
{
    struct job *j = arg;
    if (!pthread_equal(pthread_self(), j->s->loop_thread))
        j->s->done_off_loop++;
    assert_int_equal(j->result, j->n * 2);
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
        jobs[i] = (struct job){&s, i, -1};
        assert_true(threadpool_submit(tp, work, done, q, &jobs[i]));
    }
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_posts_back_to_loop),
        cmocka_unit_test(test_loopq_free_runs_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
