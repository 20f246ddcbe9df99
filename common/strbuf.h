/* strbuf.h - a growable string for building SQL, JSON and text output.
 * An allocation failure is sticky: later appends do nothing and
 * strbuf_failed() tells the caller once, at the end. */
#ifndef SB_STRBUF_H
#define SB_STRBUF_H

#include <stddef.h>

#include "util.h"

struct strbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

void strbuf_appendf(struct strbuf *b, const char *fmt, ...) SB_PRINTF(2, 3);
void strbuf_append(struct strbuf *b, const char *s, size_t n);
bool strbuf_failed(const struct strbuf *b);
/* Hands the text over (never NULL unless failed); resets b. */
char *strbuf_take(struct strbuf *b);
void strbuf_free(struct strbuf *b);

#endif
