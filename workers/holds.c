/* holds.c - see holds.h. */
#include "holds.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static bool same_partition(const struct pin *p, const char *topic, int32_t partition)
{
    return p->partition == partition && strcmp(p->topic, topic) == 0;
}

const struct pin *pins_lowest(const struct pins *ps, const char *topic, int32_t partition)
{
    const struct pin *low = NULL;
    for (size_t i = 0; i < ps->n; i++)
        if (same_partition(&ps->v[i], topic, partition) && (low == NULL || ps->v[i].offset < low->offset))
            low = &ps->v[i];
    return low;
}

bool pins_add(struct pins *ps, const char *topic, int32_t partition, int64_t offset, uint64_t tag)
{
    assert(tag != 0);
    if (ps->n == WORKER_MAX_PINS)
        return false;
    const struct pin *other = pins_lowest(ps, topic, partition);
    struct pin *p = &ps->v[ps->n];
    snprintf(p->topic, sizeof p->topic, "%s", topic);
    p->partition = partition;
    p->offset = offset;
    p->tag = tag;
    p->high = other ? other->high : offset + 1;
    ps->n++;
    return true;
}

void pins_done(struct pins *ps, const char *topic, int32_t partition, int64_t offset)
{
    for (size_t i = 0; i < ps->n; i++)
        if (same_partition(&ps->v[i], topic, partition) && offset + 1 > ps->v[i].high)
            ps->v[i].high = offset + 1;
}

bool pins_remove(struct pins *ps, uint64_t tag, bool handled, struct pin_release *out)
{
    size_t i = 0;
    while (i < ps->n && ps->v[i].tag != tag)
        i++;
    if (i == ps->n)
        return false;
    struct pin gone = ps->v[i];
    ps->v[i] = ps->v[--ps->n];
    snprintf(out->topic, sizeof out->topic, "%s", gone.topic);
    out->partition = gone.partition;
    out->seek = !handled;
    if (!handled) {
        /* Fetched again from the job on: what was done after it is found
         * done. The partition's other pins store no further than it. */
        for (size_t p = 0; p < ps->n; p++)
            if (same_partition(&ps->v[p], gone.topic, gone.partition) && ps->v[p].high > gone.offset)
                ps->v[p].high = gone.offset;
        out->offset = gone.offset;
        return true;
    }
    /* The partition's next pin bounds it, or else how far it was handled
     * (high == offset: up to this job, which is handled now). */
    const struct pin *next = pins_lowest(ps, gone.topic, gone.partition);
    out->offset = next ? pins_store_at(next) : gone.high == gone.offset ? gone.offset + 1 : gone.high;
    return true;
}

int64_t pins_store_at(const struct pin *lowest)
{
    return lowest->high < lowest->offset ? lowest->high : lowest->offset;
}

struct paused_partition *pauses_find(struct pauses *ps, const char *topic, int32_t partition)
{
    for (size_t k = 0; k < ps->n; k++)
        if (ps->v[k].partition == partition && strcmp(ps->v[k].topic, topic) == 0)
            return &ps->v[k];
    return NULL;
}

void pauses_merge(struct paused_partition *p, int64_t until_ms, uint64_t hold)
{
    if (until_ms < p->until_ms)
        p->until_ms = until_ms;
    if (hold > p->hold)
        p->hold = hold;
}

bool pauses_add(struct pauses *ps, const char *topic, int32_t partition, int64_t until_ms, uint64_t hold)
{
    assert(pauses_find(ps, topic, partition) == NULL);
    if (ps->n == WORKER_MAX_PAUSED)
        return false;
    struct paused_partition *p = &ps->v[ps->n++];
    snprintf(p->topic, sizeof p->topic, "%s", topic);
    p->partition = partition;
    p->until_ms = until_ms;
    p->hold = hold;
    return true;
}

void pauses_release(struct pauses *ps, uint64_t below)
{
    for (size_t k = 0; k < ps->n; k++)
        if (ps->v[k].hold != 0 && ps->v[k].hold < below)
            ps->v[k].until_ms = 0;
}

bool pauses_take_due(struct pauses *ps, int64_t now_ms, struct paused_partition *out)
{
    for (size_t k = 0; k < ps->n; k++)
        if (ps->v[k].until_ms <= now_ms) {
            *out = ps->v[k];
            ps->v[k] = ps->v[--ps->n];
            return true;
        }
    return false;
}
