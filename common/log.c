/* log.c - see log.h. */
#include "log.h"

#include "json.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level g_level = LOG_INFO;
static bool g_json = false;
static const char *g_program = "switchboard";
static const char *const level_names[] = {"debug", "info", "warn", "error"};

bool log_setup(const char *level, const char *format, const char *program)
{
    bool ok = false;
    for (size_t i = 0; i < SB_ARRAY_LEN(level_names); i++) {
        if (strcmp(level, level_names[i]) == 0) {
            g_level = (enum log_level)i;
            ok = true;
        }
    }
    if (!ok)
        return false;
    if (strcmp(format, "json") == 0)
        g_json = true;
    else if (strcmp(format, "logfmt") == 0)
        g_json = false;
    else
        return false;
    if (program)
        g_program = program;
    return true;
}

bool log_every_due(struct log_every *e, int64_t period_ms, int64_t *skipped)
{
    int64_t now = sb_mono_ms();
    if (e->at_ms != 0 && now - e->at_ms < period_ms) {
        e->skipped++;
        return false;
    }
    *skipped = e->skipped;
    e->at_ms = now;
    e->skipped = 0;
    return true;
}

bool log_enabled(enum log_level lvl)
{
    return lvl >= g_level;
}

/* Appends s to buf as the body of a JSON string (no quotes). */
static size_t json_escape(char *buf, size_t cap, size_t n, const char *s)
{
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    return n;
}

struct out {
    char *p;
    size_t cap, n; /* p[n] is kept '\0'; stops quietly when full */
};

static void out_put(struct out *o, const char *s, size_t len)
{
    if (o->n >= o->cap - 1)
        return;
    if (len > o->cap - 1 - o->n)
        len = o->cap - 1 - o->n;
    memcpy(o->p + o->n, s, len);
    o->n += len;
    o->p[o->n] = '\0';
}

/* A value from the caller's arguments (request data, often), as logfmt
 * wants it: quoted and escaped when it holds anything but plain
 * printable characters, so that no value can end the line or pose as
 * another field. quoted: the format already puts it between quotes. At
 * most max bytes of s, cut on a character boundary. */
static void put_value(struct out *o, const char *s, size_t max, bool quoted)
{
    static const char hex[] = "0123456789abcdef";
    if (s == NULL)
        s = "(null)";
    size_t len = strnlen(s, max);
    bool plain = len > 0;
    for (size_t i = 0; plain && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        plain = c > ' ' && c < 0x7f && c != '"' && c != '=' && c != '\\';
    }
    if (plain || (quoted && len == 0)) {
        out_put(o, s, len);
        return;
    }
    if (!quoted)
        out_put(o, "\"", 1);
    for (size_t i = 0; i < len;) {
        const unsigned char *c = (const unsigned char *)s + i;
        size_t k = json_utf8_seq(s + i);
        if (k > len - i) /* cut by a precision: not whole */
            k = 0;
        if (k > 1 || (k == 1 && *c >= 0x20 && *c != 0x7f && *c != '"' && *c != '\\')) {
            out_put(o, s + i, k);
            i += k;
            continue;
        }
        char esc[4] = {'\\', (char)*c, 0, 0};
        size_t n = 2;
        switch (*c) {
        case '"': case '\\': break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: /* a control character, or a byte that is not UTF-8 */
            esc[1] = 'x';
            esc[2] = hex[*c >> 4];
            esc[3] = hex[*c & 15];
            n = 4;
        }
        out_put(o, esc, n);
        i++;
    }
    if (!quoted)
        out_put(o, "\"", 1);
}

/* vsnprintf for the key=value pairs, with every %s escaped (put_value).
 * Other conversions are numbers, passed to snprintf one at a time. */
static void kv_format(char *buf, size_t cap, const char *fmt, va_list ap)
{
    struct out o = {buf, cap, 0};
    buf[0] = '\0';
    for (const char *f = fmt; *f;) {
        if (*f != '%') {
            const char *pct = strchr(f, '%');
            size_t len = pct ? (size_t)(pct - f) : strlen(f);
            out_put(&o, f, len);
            f += len;
            continue;
        }
        const char *start = f++;
        if (*f == '%') {
            out_put(&o, "%", 1);
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
            out_put(&o, "?", 1);
            return;
        }
        memcpy(len, f, nlen);
        f += nlen;
        char conv = *f ? *f++ : '\0';
        if (conv == 's') {
            bool quoted = start > fmt && start[-1] == '"' && *f == '"';
            put_value(&o, va_arg(ap, const char *), prec >= 0 ? (size_t)prec : SIZE_MAX, quoted);
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
            put_value(&o, ch, 1, false);
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
            out_put(&o, "?", 1); /* a conversion this cannot take: stop, va_list unknown */
            return;
        }
        out_put(&o, num, strlen(num));
    }
}

static void log_vwrite(enum log_level lvl, const char *msg, const char *kvfmt, va_list ap)
{
    char kv[2048] = "";
    if (kvfmt && *kvfmt)
        kv_format(kv, sizeof kv, kvfmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof when - w, ".%03ldZ", ts.tv_nsec / 1000000);

    char line[4096];
    size_t n;
    if (g_json) {
        n = (size_t)snprintf(line, sizeof line,
                             "{\"ts\":\"%s\",\"level\":\"%s\",\"prog\":\"%s\",\"msg\":\"",
                             when, level_names[lvl], g_program);
        n = json_escape(line, sizeof line, n, msg);
        n += (size_t)snprintf(line + n, sizeof line - n, "\",\"kv\":\"");
        n = json_escape(line, sizeof line, n, kv);
        n += (size_t)snprintf(line + n, sizeof line - n, "\"}\n");
    } else {
        n = (size_t)snprintf(line, sizeof line, "ts=%s level=%s prog=%s msg=\"%s\"%s%s\n",
                             when, level_names[lvl], g_program, msg, *kv ? " " : "", kv);
    }
    if (n >= sizeof line) {
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    ssize_t rc = write(STDERR_FILENO, line, n);
    (void)rc; /* nowhere left to report a failed log write */
}

void log_msg(enum log_level lvl, const char *msg, const char *kvfmt, ...)
{
    if (lvl < g_level)
        return;
    va_list ap;
    va_start(ap, kvfmt);
    log_vwrite(lvl, msg, kvfmt, ap);
    va_end(ap);
}

void die(const char *msg, const char *kvfmt, ...)
{
    va_list ap;
    va_start(ap, kvfmt);
    log_vwrite(LOG_ERROR, msg, kvfmt, ap);
    va_end(ap);
    exit(1);
}
