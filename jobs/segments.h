/* segments.h - what an SMS text costs: its encoding and how many segments
 * (billed messages) it takes.
 *
 * A text whose every character is in the GSM 03.38 default alphabet or its
 * extension table (^ { } \ [ ~ ] | € and form feed, two septets each) goes
 * as GSM-7: 160 septets in one segment, else 153 per segment of a
 * concatenated message (the rest of each holds the concatenation header).
 * Anything else goes as UCS-2: 70 UTF-16 code units in one segment, else
 * 67 per segment. An extension character's two septets, and a surrogate
 * pair, are never split between segments, as handsets and providers do.
 * An empty text is one segment. */
#ifndef SB_SEGMENTS_H
#define SB_SEGMENTS_H

#include <stdbool.h>
#include <stdint.h>

struct segments {
    bool gsm7;        /* else UCS-2 */
    int64_t units;    /* septets (GSM-7) or UTF-16 code units (UCS-2) */
    int64_t segments; /* at least 1 */
};

/* text: valid UTF-8 (the API has checked it). */
void segments_count(const char *text, struct segments *out);
/* "GSM-7" or "UCS-2". */
const char *segments_encoding(const struct segments *s);

#endif
