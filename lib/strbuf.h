/* strbuf.h - a growable string for building SQL, JSON and text output.
 * An allocation failure is sticky: later appends do nothing and
 * strbuf_failed() tells the caller once, at the end. */
#ifndef SB_STRBUF_H
#define SB_STRBUF_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct strbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

void strbuf_appendf(struct strbuf *b, const char *fmt, ...) SB_PRINTF(2, 3);
void strbuf_append(struct strbuf *b, const char *s, size_t n);
/* A string literal, its length counted by the compiler. */
#define strbuf_append_lit(b, lit) strbuf_append((b), "" lit, sizeof(lit) - 1)
/* Decimal, without printf (hot loops that write numbers into SQL). */
void strbuf_append_i64(struct strbuf *b, int64_t v);
bool strbuf_failed(const struct strbuf *b);
/* Hands the text over (never NULL unless failed); resets b. */
char *strbuf_take(struct strbuf *b);
void strbuf_free(struct strbuf *b);

#endif
