/* fmt.h - printf formats whose strings are written by the caller.
 *
 * fmt_walk reads a printf format and its arguments like vsnprintf, but
 * hands every %s to put_str, which escapes or quotes it for where the text
 * goes: a log line (log.c: logfmt values) or SQL (db.c: db_sqlf). Numbers
 * (d i u x X o with hh h l ll z j t, f g e, c, p) are written as printf
 * writes them. Formats are checked by the compiler (SB_PRINTF) at the
 * callers, so only conversions printf knows reach this. */
#ifndef SB_FMT_H
#define SB_FMT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct strbuf;

/* s: the argument (NULL as printf would print it, "(null)"), at most max
 * bytes of it (a precision); quoted: the format puts it between double
 * quotes ("\"%s\""). */
typedef void (*fmt_str_fn)(struct strbuf *out, const char *s, size_t max, bool quoted, void *ud);

/* Appends the formatted text to out; false (out partly written) on a
 * conversion it does not take. */
bool fmt_walk(struct strbuf *out, const char *fmt, va_list ap, fmt_str_fn put_str, void *ud);

#endif
