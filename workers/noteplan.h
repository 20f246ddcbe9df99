/* noteplan.h - how the notifier cuts a batch into groups, and holds jobs
 * for the deliveries that outlasted their batch.
 *
 * The batch's plan, in log order: a retry that is not due yet, and every
 * later job of its partition, is deferred; so is a job with the id or key
 * of a delivery still running from an earlier batch (a detached one), held
 * under that delivery's tag until it is over. Every other job joins the
 * group of an earlier job with the same id if there is one, else of one
 * with the same idempotency key, else starts a group. The id comes first:
 * a repeat of a notification finds its record "mine" and would deliver it
 * again beside the original, so every job with one id must be in one
 * group. Two jobs sharing only a key usually meet too; if they do not
 * (each also matched another job), the store's unique key lets one
 * through, as between processes. Senders take whole groups, one at a time
 * (notifier.c). Pure functions: no lock, no clock, no I/O. */
#ifndef SB_NOTEPLAN_H
#define SB_NOTEPLAN_H

#include <stddef.h>
#include <stdint.h>

#include "worker.h"

struct plan {
    uint64_t id, key; /* hashes; key 0 = none */
    size_t group;     /* SIZE_MAX: deferred */
};

/* A detached delivery still running: its job's hashes and its tag. */
struct plan_busy {
    uint64_t id, key, tag;
};

/* A job's id and idempotency key as hashes (key 0 = none). Jobs with
 * equal ids or keys must meet; a collision only puts two jobs in one group
 * (or holds one back for nothing). */
void plan_job_hashes(const struct job *j, uint64_t *id, uint64_t *key);

/* Fills plan[i]'s hashes for every job not yet deferred, and holds (defers
 * until hold_until_ms, with the tag as job.hold) each one with the id or
 * key of a busy delivery: the highest such tag. */
void plan_hold(struct job **jobs, size_t n, struct plan *plan, const struct plan_busy *busy,
               size_t nbusy, int64_t hold_until_ms);

/* Defers the followers of deferred jobs in their partitions, then assigns
 * groups; returns the number of groups, or SIZE_MAX when out of memory. */
size_t plan_groups(struct job **jobs, size_t n, struct plan *plan);

/* Orders the jobs by group, each group in log order: group g is
 * grouped[start[g] .. start[g + 1]). start has ngroups + 1 entries; false
 * when out of memory. */
bool plan_order(struct job **jobs, size_t n, const struct plan *plan, size_t ngroups,
                struct job **grouped, size_t *start);

/* A detached delivery's repeats, grouped[from .. end), wait for it: held
 * under its tag until at the latest until_ms. */
void plan_hold_rest(struct job **grouped, size_t from, size_t end, int64_t until_ms, uint64_t tag);

/* The holds that may be released (worker_release) while these deliveries
 * run: every tag below the lowest of them (UINT64_MAX if none runs). */
uint64_t plan_release_below(const struct plan_busy *busy, size_t nbusy);

#endif
