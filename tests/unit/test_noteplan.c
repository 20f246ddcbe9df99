/* The notifier's batch plan and its holds for detached deliveries
 * (workers/noteplan.c): jobs with one id are one group, then jobs with one
 * idempotency key; groups keep log order; a retry not yet due defers its
 * partition's later jobs; a job with the id or key of a delivery still
 * running is held under that delivery's highest tag, and holds are
 * released only below the lowest tag still running. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "noteplan.h"

#define MAXJ 8
static rd_kafka_topic_t *const TOPIC = (rd_kafka_topic_t *)0x1000;

struct batch {
    struct job jobs[MAXJ];
    rd_kafka_message_t msgs[MAXJ];
    struct job *ptrs[MAXJ];
    struct plan plan[MAXJ];
    size_t n;
};

/* Adds a job of partition part with this id and key ("" = none). */
static struct job *add(struct batch *b, int32_t part, const char *id, const char *key)
{
    size_t i = b->n++;
    char text[256];
    snprintf(text, sizeof text, "{\"id\":\"%s\"%s%s%s}", id, *key ? ",\"idempotency_key\":\"" : "", key,
             *key ? "\"" : "");
    memset(&b->jobs[i], 0, sizeof b->jobs[i]);
    memset(&b->msgs[i], 0, sizeof b->msgs[i]);
    b->msgs[i].rkt = TOPIC;
    b->msgs[i].partition = part;
    b->msgs[i].offset = (int64_t)i;
    b->jobs[i].msg = &b->msgs[i];
    b->jobs[i].env.root = cJSON_Parse(text);
    b->jobs[i].env.payload = b->jobs[i].env.root;
    assert_non_null(b->jobs[i].env.root);
    b->ptrs[i] = &b->jobs[i];
    return &b->jobs[i];
}

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        cJSON_Delete(b->jobs[i].env.root);
}

/* Plans with no busy delivery; returns the groups; grouped/start filled. */
static size_t plan(struct batch *b, struct job **grouped, size_t *start)
{
    plan_hold(b->ptrs, b->n, b->plan, NULL, 0, 0);
    size_t ng = plan_groups(b->ptrs, b->n, b->plan);
    assert_int_not_equal(ng, SIZE_MAX);
    assert_true(plan_order(b->ptrs, b->n, b->plan, ng, grouped, start));
    return ng;
}

static void test_groups_by_id_then_key(void **state)
{
    (void)state;
    struct batch b = {.n = 0};
    struct job *a = add(&b, 0, "n1", "");
    struct job *bb = add(&b, 1, "n2", "k");
    struct job *c = add(&b, 2, "n1", "");  /* a repeat of a: a's group */
    struct job *d = add(&b, 0, "n3", "k"); /* same key as bb: bb's group */
    struct job *e = add(&b, 1, "n4", "");
    struct job *grouped[MAXJ];
    size_t start[MAXJ + 1];
    assert_int_equal(plan(&b, grouped, start), 3);
    struct job *want[] = {a, c, bb, d, e};
    for (size_t i = 0; i < 5; i++)
        assert_ptr_equal(grouped[i], want[i]);
    assert_int_equal(start[0], 0);
    assert_int_equal(start[1], 2);
    assert_int_equal(start[2], 4);
    assert_int_equal(start[3], 5);
    batch_free(&b);
}

/* The id outranks the key: a job sharing its id with one group and its key
 * with another joins the id's. */
static void test_id_before_key(void **state)
{
    (void)state;
    struct batch b = {.n = 0};
    add(&b, 0, "n1", "k1");
    add(&b, 0, "n2", "k2");
    add(&b, 0, "n2", "k1");
    struct job *grouped[MAXJ];
    size_t start[MAXJ + 1];
    assert_int_equal(plan(&b, grouped, start), 2);
    assert_int_equal(b.plan[2].group, b.plan[1].group);
    batch_free(&b);
}

/* A retry not due yet defers itself and its partition's later jobs, no
 * other partition's; deferred jobs are in no group. */
static void test_not_due_defers_partition(void **state)
{
    (void)state;
    struct batch b = {.n = 0};
    add(&b, 0, "n1", "");
    struct job *retry = add(&b, 1, "n2", "");
    struct job *later = add(&b, 1, "n3", "");
    add(&b, 0, "n4", "");
    retry->defer_until_ms = 9000; /* as the notifier marks a job not due */
    struct job *grouped[MAXJ];
    size_t start[MAXJ + 1];
    assert_int_equal(plan(&b, grouped, start), 2);
    assert_int_equal(later->defer_until_ms, 9000);
    assert_int_equal(b.plan[1].group, SIZE_MAX);
    assert_int_equal(b.plan[2].group, SIZE_MAX);
    assert_int_equal(start[2], 2); /* two jobs grouped in all */
    batch_free(&b);
}

static void test_held_by_detached(void **state)
{
    (void)state;
    struct batch b = {.n = 0};
    add(&b, 0, "n1", "");   /* the id of busy tag 3 */
    add(&b, 1, "n9", "k");  /* the key of busy tag 5 */
    add(&b, 2, "n1", "k");  /* both: the highest, 5 */
    add(&b, 0, "n7", "");   /* after a held job in partition 0: held too */
    add(&b, 3, "n8", "k2"); /* free */
    struct plan_busy busy[2] = {{0, 0, 3}, {0, 0, 5}};
    uint64_t key;
    plan_job_hashes(&b.jobs[0], &busy[0].id, &key);
    plan_job_hashes(&b.jobs[1], &busy[1].id, &busy[1].key);
    busy[1].id ^= 1; /* another notification with that key */
    plan_hold(b.ptrs, b.n, b.plan, busy, 2, 7777);
    assert_int_equal(b.jobs[0].hold, 3);
    assert_int_equal(b.jobs[0].defer_until_ms, 7777);
    assert_int_equal(b.jobs[1].hold, 5);
    assert_int_equal(b.jobs[2].hold, 5);
    assert_int_equal(b.jobs[3].defer_until_ms, 0);
    assert_int_equal(b.jobs[4].defer_until_ms, 0);
    assert_int_equal(plan_groups(b.ptrs, b.n, b.plan), 1);
    assert_int_equal(b.jobs[3].hold, 3);
    assert_int_equal(b.jobs[3].defer_until_ms, 7777);
    assert_int_equal(b.plan[4].group, 0);
    /* Holds are released below the lowest tag still running. */
    assert_int_equal(plan_release_below(busy, 2), 3);
    assert_int_equal(plan_release_below(busy + 1, 1), 5);
    assert_int_equal(plan_release_below(NULL, 0), UINT64_MAX);
    batch_free(&b);
}

/* A detached delivery's repeats in its group wait for it. */
static void test_hold_rest(void **state)
{
    (void)state;
    struct batch b = {.n = 0};
    add(&b, 0, "n1", "");
    add(&b, 1, "n1", "");
    add(&b, 2, "n1", "");
    add(&b, 3, "n2", "");
    struct job *grouped[MAXJ];
    size_t start[MAXJ + 1];
    assert_int_equal(plan(&b, grouped, start), 2);
    plan_hold_rest(grouped, 1, start[1], 4242, 9);
    assert_int_equal(grouped[0]->defer_until_ms, 0);
    assert_int_equal(grouped[1]->hold, 9);
    assert_int_equal(grouped[2]->defer_until_ms, 4242);
    assert_int_equal(grouped[3]->defer_until_ms, 0);
    batch_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_groups_by_id_then_key),
        cmocka_unit_test(test_id_before_key),
        cmocka_unit_test(test_not_due_defers_partition),
        cmocka_unit_test(test_held_by_detached),
        cmocka_unit_test(test_hold_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
