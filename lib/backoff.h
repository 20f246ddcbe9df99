/* backoff.h - exponential backoff with full jitter.
 *
 * Delay n is uniform in [base/2, min(cap, base * 2^n)]: the floor keeps a
 * retry from spinning, the jitter keeps a fleet of workers from retrying in
 * lockstep after a shared dependency comes back. */
#ifndef SB_BACKOFF_H
#define SB_BACKOFF_H

#include <stdint.h>

struct backoff {
    int64_t base_ms;
    int64_t cap_ms;
    unsigned attempt;
    uint64_t rng; /* xorshift state; seeded from getrandom */
};

void backoff_init(struct backoff *b, int64_t base_ms, int64_t cap_ms);
/* Returns the next delay and advances the attempt counter. */
int64_t backoff_next(struct backoff *b);
/* Upper bound of the delay for a given attempt (no jitter). */
int64_t backoff_ceiling(const struct backoff *b, unsigned attempt);
void backoff_reset(struct backoff *b);

#endif
