/* fmt.c - see fmt.h. */
#include "fmt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "strbuf.h"

bool fmt_walk(struct strbuf *o, const char *fmt, va_list ap, fmt_str_fn put_str, void *ud)
{
    for (const char *f = fmt; *f;) {
        if (*f != '%') {
            const char *pct = strchr(f, '%');
            size_t len = pct ? (size_t)(pct - f) : strlen(f);
            strbuf_append(o, f, len);
            f += len;
            continue;
        }
        const char *start = f++;
        if (*f == '%') {
            strbuf_append(o, "%", 1);
            f++;
            continue;
        }
        f += strspn(f, "-+ #0");
        int width = -1, prec = -1;
        if (*f == '*') {
            width = va_arg(ap, int);
            f++;
        } else {
            f += strspn(f, "0123456789");
        }
        if (*f == '.') {
            f++;
            if (*f == '*') {
                prec = va_arg(ap, int);
                f++;
            } else {
                prec = atoi(f);
                f += strspn(f, "0123456789");
            }
        }
        char len[3] = "";
        size_t nlen = strspn(f, "hlzjt");
        if (nlen > 2) {
            strbuf_append(o, "?", 1);
            return false;
        }
        memcpy(len, f, nlen);
        f += nlen;
        char conv = *f ? *f++ : '\0';
        if (conv == 's') {
            bool quoted = start > fmt && start[-1] == '"' && *f == '"';
            put_str(o, va_arg(ap, const char *), prec >= 0 ? (size_t)prec : SIZE_MAX, quoted, ud);
            continue;
        }
        /* A number (or a pointer, or one character). */
        char num[64] = "";
        int w = width > 0 && width < 40 ? width : 0;
        bool sgn = conv == 'd' || conv == 'i';
        if (conv == 'f' || conv == 'g' || conv == 'e') {
            char spec[8] = {'%', '*', '.', '*', conv, 0};
            snprintf(num, sizeof num, spec, w, prec >= 0 ? prec : 6, va_arg(ap, double));
        } else if (conv == 'p') {
            snprintf(num, sizeof num, "%p", va_arg(ap, void *));
        } else if (conv == 'c') {
            char ch[2] = {(char)va_arg(ap, int), 0};
            put_str(o, ch, 1, false, ud);
        } else if (sgn || conv == 'u' || conv == 'x' || conv == 'X' || conv == 'o') {
            intmax_t sv = 0;
            uintmax_t uv = 0;
            if (strcmp(len, "ll") == 0) {
                if (sgn) sv = va_arg(ap, long long); else uv = va_arg(ap, unsigned long long);
            } else if (strcmp(len, "l") == 0) {
                if (sgn) sv = va_arg(ap, long); else uv = va_arg(ap, unsigned long);
            } else if (strcmp(len, "z") == 0) {
                if (sgn) sv = va_arg(ap, ssize_t); else uv = va_arg(ap, size_t);
            } else if (strcmp(len, "j") == 0) {
                if (sgn) sv = va_arg(ap, intmax_t); else uv = va_arg(ap, uintmax_t);
            } else if (strcmp(len, "t") == 0) {
                if (sgn) sv = va_arg(ap, ptrdiff_t); else uv = (uintmax_t)va_arg(ap, ptrdiff_t);
            } else { /* int, or short and char promoted to it */
                if (sgn) sv = va_arg(ap, int); else uv = va_arg(ap, unsigned int);
            }
            char spec[8] = {'%', '*', 'j', sgn ? 'd' : conv, 0};
            if (sgn)
                snprintf(num, sizeof num, spec, w, sv);
            else
                snprintf(num, sizeof num, spec, w, uv);
        } else {
            strbuf_append(o, "?", 1); /* a conversion this cannot take: stop, va_list unknown */
            return false;
        }
        strbuf_append(o, num, strlen(num));
    }
    return true;
}
