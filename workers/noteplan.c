/* noteplan.c - see noteplan.h. */
#include "noteplan.h"

#include <assert.h>
#include <stdlib.h>

#include "json.h"

/* FNV-1a. */
static uint64_t str_hash(const char *str)
{
    uint64_t h = 14695981039346656037u;
    for (; *str; str++)
        h = (h ^ (unsigned char)*str) * 1099511628211u;
    return h;
}

void plan_job_hashes(const struct job *j, uint64_t *id, uint64_t *key)
{
    const char *k = json_str(j->env.payload, "idempotency_key", "");
    *id = str_hash(json_str(j->env.payload, "id", ""));
    *key = *k ? str_hash(k) | 1 : 0;
}

void plan_hold(struct job **jobs, size_t n, struct plan *plan, const struct plan_busy *busy,
               size_t nbusy, int64_t hold_until_ms)
{
    for (size_t i = 0; i < n; i++) {
        struct job *j = jobs[i];
        if (j->defer_until_ms)
            continue;
        plan_job_hashes(j, &plan[i].id, &plan[i].key);
        uint64_t tag = 0;
        for (size_t k = 0; k < nbusy; k++)
            if ((busy[k].id == plan[i].id || (plan[i].key && busy[k].key == plan[i].key)) &&
                busy[k].tag > tag)
                tag = busy[k].tag;
        if (tag) {
            j->hold = tag;
            j->defer_until_ms = hold_until_ms;
        }
    }
}

/* The group of the first job before i with i's id (by_key: key), or
 * SIZE_MAX. */
static size_t plan_join(const struct plan *plan, size_t i, bool by_key)
{
    for (size_t k = 0; k < i; k++)
        if (plan[k].group != SIZE_MAX &&
            (by_key ? plan[k].key == plan[i].key : plan[k].id == plan[i].id))
            return plan[k].group;
    return SIZE_MAX;
}

size_t plan_groups(struct job **jobs, size_t n, struct plan *plan)
{
    if (!worker_defer_followers(jobs, n))
        return SIZE_MAX;
    size_t ngroups = 0;
    for (size_t i = 0; i < n; i++) {
        plan[i].group = SIZE_MAX;
        if (jobs[i]->defer_until_ms)
            continue;
        plan[i].group = plan_join(plan, i, false);
        if (plan[i].group == SIZE_MAX && plan[i].key)
            plan[i].group = plan_join(plan, i, true);
        if (plan[i].group == SIZE_MAX)
            plan[i].group = ngroups++;
    }
    return ngroups;
}

bool plan_order(struct job **jobs, size_t n, const struct plan *plan, size_t ngroups,
                struct job **grouped, size_t *start)
{
    size_t *fill = calloc(ngroups + 1, sizeof *fill);
    if (fill == NULL)
        return false;
    /* A counting sort. */
    for (size_t g = 0; g <= ngroups; g++)
        start[g] = 0;
    for (size_t i = 0; i < n; i++)
        if (plan[i].group != SIZE_MAX) {
            assert(plan[i].group < ngroups);
            start[plan[i].group + 1]++;
        }
    for (size_t g = 0; g < ngroups; g++)
        fill[g] = start[g + 1] += start[g];
    for (size_t i = n; i-- > 0;)
        if (plan[i].group != SIZE_MAX)
            grouped[--fill[plan[i].group]] = jobs[i];
    free(fill);
    return true;
}

void plan_hold_rest(struct job **grouped, size_t from, size_t end, int64_t until_ms, uint64_t tag)
{
    assert(tag != 0);
    for (size_t i = from; i < end; i++) {
        grouped[i]->defer_until_ms = until_ms;
        grouped[i]->hold = tag;
    }
}

uint64_t plan_release_below(const struct plan_busy *busy, size_t nbusy)
{
    uint64_t below = UINT64_MAX;
    for (size_t k = 0; k < nbusy; k++)
        if (busy[k].tag < below)
            below = busy[k].tag;
    return below;
}
