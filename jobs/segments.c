/* segments.c - see segments.h. */
#include "segments.h"

#include <stddef.h>

/* The default alphabet's characters outside ASCII, and the ASCII ones it
 * lacks (` and the extension table's), by Unicode code point. */
static const uint32_t gsm_basic_extra[] = {
    0x00A3, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC, 0x00F2, 0x00C7, 0x00D8, 0x00F8, 0x00C5, 0x00E5,
    0x0394, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8, 0x03A3, 0x0398, 0x039E, 0x00C6, 0x00E6,
    0x00DF, 0x00C9, 0x00A4, 0x00A1, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7, 0x00BF, 0x00E4, 0x00F6,
    0x00F1, 0x00FC, 0x00E0,
};
static const uint32_t gsm_ext[] = {0x000C, '^', '{', '}', '\\', '[', '~', ']', '|', 0x20AC};

static bool in(const uint32_t *set, size_t n, uint32_t c)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == c)
            return true;
    return false;
}

/* Septets of c in GSM-7: 1, 2 (extension table), or 0 (not there). */
static int septets(uint32_t c)
{
    if (in(gsm_ext, sizeof gsm_ext / sizeof *gsm_ext, c))
        return 2;
    if (c == '\n' || c == '\r' || (c >= 0x20 && c < 0x7f && c != '`'))
        return 1;
    return in(gsm_basic_extra, sizeof gsm_basic_extra / sizeof *gsm_basic_extra, c) ? 1 : 0;
}

/* The next code point of valid UTF-8 at *p, advancing it. */
static uint32_t next_cp(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t c;
    int more;
    if (s[0] < 0x80) {
        c = s[0];
        more = 0;
    } else if (s[0] < 0xE0) {
        c = s[0] & 0x1F;
        more = 1;
    } else if (s[0] < 0xF0) {
        c = s[0] & 0x0F;
        more = 2;
    } else {
        c = s[0] & 0x07;
        more = 3;
    }
    s++;
    for (; more > 0 && (*s & 0xC0) == 0x80; more--)
        c = c << 6 | (*s++ & 0x3F);
    *p = s;
    return c;
}

/* Segments of text (units in all, in its encoding): one if it fits single
 * units, else as many as it takes at per units each, a character whole in
 * one of them. */
static int64_t split(const char *text, bool gsm7, int64_t units, int64_t single, int64_t per)
{
    if (units <= single)
        return 1;
    int64_t n = 1, used = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        uint32_t c = next_cp(&p);
        int64_t cost = gsm7 ? septets(c) : (c > 0xFFFF ? 2 : 1);
        if (used + cost > per) { /* never split a character */
            n++;
            used = 0;
        }
        used += cost;
    }
    return n;
}

void segments_count(const char *text, struct segments *out)
{
    int64_t gsm = 0, utf16 = 0;
    bool gsm7 = true;
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        uint32_t c = next_cp(&p);
        int s = septets(c);
        gsm7 = gsm7 && s > 0;
        gsm += s;
        utf16 += c > 0xFFFF ? 2 : 1;
    }
    out->gsm7 = gsm7;
    out->units = gsm7 ? gsm : utf16;
    out->segments = gsm7 ? split(text, true, gsm, 160, 153) : split(text, false, utf16, 70, 67);
}

const char *segments_encoding(const struct segments *s)
{
    return s->gsm7 ? "GSM-7" : "UCS-2";
}
