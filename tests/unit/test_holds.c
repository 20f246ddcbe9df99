/* What holds a worker's partitions back (workers/holds.c, and
 * worker_defer_followers in worker.c): a deferred job holds back every
 * later job of its partition and no other partition's; pauses merge to the
 * earliest time and the highest tag and are released by tag; a pinned job
 * keeps its partition's stored offset at it until it is let go, and what
 * is stored then is never past a pin still held nor past what was done. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "worker.h"

/* Jobs over fake messages: worker_defer_followers only compares a
 * message's topic handle and partition, never follows the handle. */
static rd_kafka_topic_t *const TOPIC_A = (rd_kafka_topic_t *)0x1000;
static rd_kafka_topic_t *const TOPIC_B = (rd_kafka_topic_t *)0x2000;

static void make_job(struct job *j, rd_kafka_message_t *m, rd_kafka_topic_t *t, int32_t part, int64_t off)
{
    memset(m, 0, sizeof *m);
    memset(j, 0, sizeof *j);
    m->rkt = t;
    m->partition = part;
    m->offset = off;
    j->msg = m;
}

static void test_defer_followers(void **state)
{
    (void)state;
    struct job jobs[6];
    rd_kafka_message_t msgs[6];
    make_job(&jobs[0], &msgs[0], TOPIC_A, 0, 10); /* before the deferred one: goes on */
    make_job(&jobs[1], &msgs[1], TOPIC_A, 0, 11); /* deferred */
    make_job(&jobs[2], &msgs[2], TOPIC_A, 1, 50); /* another partition */
    make_job(&jobs[3], &msgs[3], TOPIC_A, 0, 12); /* follows: held */
    make_job(&jobs[4], &msgs[4], TOPIC_B, 0, 12); /* same partition number, other topic */
    make_job(&jobs[5], &msgs[5], TOPIC_A, 0, 13); /* deferred itself, later: takes the first's */
    jobs[1].defer_until_ms = 5000;
    jobs[1].hold = 7;
    jobs[5].defer_until_ms = 9000;
    struct job *ptrs[6];
    for (int i = 0; i < 6; i++)
        ptrs[i] = &jobs[i];
    assert_true(worker_defer_followers(ptrs, 6));
    assert_int_equal(jobs[0].defer_until_ms, 0);
    assert_int_equal(jobs[1].defer_until_ms, 5000);
    assert_int_equal(jobs[2].defer_until_ms, 0);
    assert_int_equal(jobs[3].defer_until_ms, 5000);
    assert_int_equal(jobs[3].hold, 7);
    assert_int_equal(jobs[4].defer_until_ms, 0);
    assert_int_equal(jobs[5].defer_until_ms, 5000);
    assert_int_equal(jobs[5].hold, 7);
}

static void test_pauses(void **state)
{
    (void)state;
    static struct pauses ps;
    memset(&ps, 0, sizeof ps);
    assert_null(pauses_find(&ps, "notify.retry", 0));
    assert_true(pauses_add(&ps, "notify.retry", 0, 5000, 0));
    assert_true(pauses_add(&ps, "notify.retry", 1, 8000, 3));
    struct paused_partition *p = pauses_find(&ps, "notify.retry", 1);
    assert_non_null(p);
    pauses_merge(p, 9000, 5); /* later time: kept earlier; higher tag: taken */
    assert_int_equal(p->until_ms, 8000);
    assert_int_equal(p->hold, 5);
    pauses_merge(p, 6000, 2);
    assert_int_equal(p->until_ms, 6000);
    assert_int_equal(p->hold, 5);
    struct paused_partition due;
    assert_false(pauses_take_due(&ps, 4999, &due));
    /* Releasing tags below 5 frees nothing: partition 1 waits for tag 5. */
    pauses_release(&ps, 5);
    assert_false(pauses_take_due(&ps, 4999, &due));
    pauses_release(&ps, 6);
    assert_true(pauses_take_due(&ps, 4999, &due));
    assert_int_equal(due.partition, 1);
    assert_false(pauses_take_due(&ps, 4999, &due));
    /* A pause without a tag waits for its time only. */
    pauses_release(&ps, UINT64_MAX);
    assert_false(pauses_take_due(&ps, 4999, &due));
    assert_true(pauses_take_due(&ps, 5000, &due));
    assert_int_equal(due.partition, 0);
    assert_int_equal(ps.n, 0);
}

/* As store_done leaves it: partition 3 has pins at 10 (tag 1) and 12
 * (tag 2), jobs 10 to 14 done (the pinned ones count as done); partition 4
 * a pin at 100. */
static void two_pins(struct pins *ps)
{
    memset(ps, 0, sizeof *ps);
    assert_true(pins_add(ps, "notify.requests", 3, 10, 1));
    pins_done(ps, "notify.requests", 3, 10);
    pins_done(ps, "notify.requests", 3, 11);
    assert_true(pins_add(ps, "notify.requests", 3, 12, 2));
    for (int64_t off = 12; off <= 14; off++)
        pins_done(ps, "notify.requests", 3, off);
    assert_true(pins_add(ps, "notify.requests", 4, 100, 3)); /* another partition */
    pins_done(ps, "notify.requests", 4, 100);
}

static void test_pins_handled(void **state)
{
    (void)state;
    static struct pins ps;
    two_pins(&ps);
    assert_int_equal(pins_lowest(&ps, "notify.requests", 3)->offset, 10);
    struct pin_release r;
    /* The later pin goes first: the partition still stores the lower one. */
    assert_true(pins_remove(&ps, 2, true, &r));
    assert_false(r.seek);
    assert_int_equal(r.partition, 3);
    assert_int_equal(r.offset, 10);
    /* The last pin of the partition: everything done past it. */
    assert_true(pins_remove(&ps, 1, true, &r));
    assert_false(r.seek);
    assert_int_equal(r.offset, 15);
    assert_null(pins_lowest(&ps, "notify.requests", 3));
    /* A pin with nothing done past it stores just past its job. */
    assert_true(pins_remove(&ps, 3, true, &r));
    assert_int_equal(r.partition, 4);
    assert_int_equal(r.offset, 101);
    assert_false(pins_remove(&ps, 3, true, &r)); /* gone (or revoked): nothing */
}

static void test_pins_unhandled(void **state)
{
    (void)state;
    static struct pins ps;
    two_pins(&ps);
    struct pin_release r;
    assert_true(pins_remove(&ps, 1, false, &r));
    assert_true(r.seek);
    assert_int_equal(r.offset, 10);
    /* Everything from 10 is fetched again: the partition stores no further
     * than 10 until those jobs are done again, though its lowest pin is 12. */
    const struct pin *low = pins_lowest(&ps, "notify.requests", 3);
    assert_int_equal(low->offset, 12);
    assert_int_equal(pins_store_at(low), 10);
    static struct pins again;
    again = ps;
    assert_true(pins_remove(&ps, 2, true, &r));
    assert_false(r.seek);
    assert_int_equal(r.offset, 10);
    /* Once 10 and 11 are done again, the handled pin at 12 stores 13. */
    pins_done(&again, "notify.requests", 3, 10);
    pins_done(&again, "notify.requests", 3, 11);
    assert_true(pins_remove(&again, 2, true, &r));
    assert_int_equal(r.offset, 13);
    static struct pins full;
    memset(&full, 0, sizeof full);
    for (int i = 0; i < WORKER_MAX_PINS; i++)
        assert_true(pins_add(&full, "t", 0, i, (uint64_t)i + 1));
    assert_false(pins_add(&full, "t", 0, 9999, 9999));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defer_followers),
        cmocka_unit_test(test_pauses),
        cmocka_unit_test(test_pins_handled),
        cmocka_unit_test(test_pins_unhandled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
