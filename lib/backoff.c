/* backoff.c - see backoff.h. */
#include "backoff.h"

#include "util.h"

void backoff_init(struct backoff *b, int64_t base_ms, int64_t cap_ms)
{
    b->base_ms = base_ms > 0 ? base_ms : 1;
    b->cap_ms = cap_ms >= b->base_ms ? cap_ms : b->base_ms;
    b->attempt = 0;
    if (!sb_random_bytes(&b->rng, sizeof b->rng) || b->rng == 0)
        b->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)sb_mono_us();
}

int64_t backoff_ceiling(const struct backoff *b, unsigned attempt)
{
    int64_t d = b->base_ms;
    for (unsigned i = 0; i < attempt && d < b->cap_ms; i++)
        d *= 2;
    return d < b->cap_ms ? d : b->cap_ms;
}

int64_t backoff_next(struct backoff *b)
{
    int64_t hi = backoff_ceiling(b, b->attempt);
    int64_t lo = b->base_ms / 2;
    if (b->attempt < 64)
        b->attempt++;
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    if (hi <= lo)
        return hi;
    return lo + (int64_t)(b->rng % (uint64_t)(hi - lo + 1));
}

void backoff_reset(struct backoff *b)
{
    b->attempt = 0;
}
