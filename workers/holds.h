/* holds.h - what holds a worker's partitions back: pauses and pins.
 *
 * A deferred job (job.defer_until_ms) rewinds its partition to it and
 * pauses the partition until its time, or until the role releases the
 * hold tag it carries (worker_release), whichever comes first; jobs
 * deferred in one partition merge into one pause (the earliest time, the
 * highest tag).
 *
 * A pinned job (job.pin) counts as done for its batch, so its partition's
 * later jobs go on, but the partition's stored offset must not pass it
 * until the role lets it go: a crash meanwhile fetches it again. Each pin
 * remembers how far its partition has been handled ("high", the offset
 * past the last job done; every pin of one partition carries the same
 * high), so that the last pin let go stores that. A pin let go unhandled
 * seeks the partition back to its job and lowers the others' high to it:
 * until the jobs from there are done again, nothing past it is stored. Pure bookkeeping: the worker turns
 * what these return into Kafka calls (worker.c). */
#ifndef SB_HOLDS_H
#define SB_HOLDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WORKER_MAX_PAUSED 256

struct paused_partition {
    char topic[128];
    int32_t partition;
    int64_t until_ms;
    uint64_t hold; /* the highest tag of its jobs; 0 = none */
};

struct pauses {
    struct paused_partition v[WORKER_MAX_PAUSED];
    size_t n;
};

/* The pause of a partition, or NULL. */
struct paused_partition *pauses_find(struct pauses *ps, const char *topic, int32_t partition);
/* Merges a deferred job into its partition's pause: the earlier time, the
 * higher tag. */
void pauses_merge(struct paused_partition *p, int64_t until_ms, uint64_t hold);
/* Records a partition the consumer has paused. False when full. */
bool pauses_add(struct pauses *ps, const char *topic, int32_t partition, int64_t until_ms, uint64_t hold);
/* Pauses whose hold tag is below `below` become due at once. */
void pauses_release(struct pauses *ps, uint64_t below);
/* Takes one pause that is due at now_ms into *out (the caller resumes
 * the partition); false when none is. */
bool pauses_take_due(struct pauses *ps, int64_t now_ms, struct paused_partition *out);

/* notify_concurrency (at most 256) twice: a sender can be pinned again
 * before its last pin is let go. */
#define WORKER_MAX_PINS 512

struct pin {
    char topic[128];
    int32_t partition;
    int64_t offset;
    int64_t high; /* the offset to store once the partition has no pin left */
    uint64_t tag;
};

struct pins {
    struct pin v[WORKER_MAX_PINS];
    size_t n;
};

/* Pins the job at (topic, partition, offset) under tag; it takes the
 * partition's high. False when WORKER_MAX_PINS are pinned. */
bool pins_add(struct pins *ps, const char *topic, int32_t partition, int64_t offset, uint64_t tag);

/* The lowest pin of a partition, or NULL: the offset that partition may
 * store. */
const struct pin *pins_lowest(const struct pins *ps, const char *topic, int32_t partition);

/* A job of a pinned partition at offset is done: the partition's high
 * moves past it. */
void pins_done(struct pins *ps, const char *topic, int32_t partition, int64_t offset);

/* The offset a pinned partition may store, given its lowest pin: that
 * pin's job, or the point it was sought back to if that is lower. */
int64_t pins_store_at(const struct pin *lowest);

/* What letting a pin go asks of the consumer. */
struct pin_release {
    char topic[128];
    int32_t partition;
    bool seek;      /* true: seek the partition back to offset (fetch the job again) */
    int64_t offset; /* else: store this offset */
};

/* Lets pin `tag` go (handled: its job is done). False if no such pin (its
 * batch was rewound, or its partition revoked): nothing to do. */
bool pins_remove(struct pins *ps, uint64_t tag, bool handled, struct pin_release *out);

#endif
