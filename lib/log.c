/* log.c - see log.h. */
#include "log.h"

#include "fmt.h"
#include "json.h"
#include "strbuf.h"

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

/* A value from the caller's arguments (request data, often), as logfmt
 * wants it: quoted and escaped when it holds anything but plain
 * printable characters, so that no value can end the line or pose as
 * another field. quoted: the format already puts it between quotes. At
 * most max bytes of s, cut on a character boundary. */
static void put_value(struct strbuf *o, const char *s, size_t max, bool quoted)
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
        strbuf_append(o, s, len);
        return;
    }
    if (!quoted)
        strbuf_append(o, "\"", 1);
    for (size_t i = 0; i < len;) {
        const unsigned char *c = (const unsigned char *)s + i;
        size_t k = json_utf8_seq(s + i);
        if (k > len - i) /* cut by a precision: not whole */
            k = 0;
        if (k > 1 || (k == 1 && *c >= 0x20 && *c != 0x7f && *c != '"' && *c != '\\')) {
            strbuf_append(o, s + i, k);
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
        strbuf_append(o, esc, n);
        i++;
    }
    if (!quoted)
        strbuf_append(o, "\"", 1);
}

static void put_value_fn(struct strbuf *out, const char *s, size_t max, bool quoted, void *ud)
{
    (void)ud;
    put_value(out, s, max, quoted);
}

/* vsnprintf for the key=value pairs, with every %s escaped (put_value). */
static void kv_format(char *buf, size_t cap, const char *fmt, va_list ap)
{
    struct strbuf b = {0};
    (void)fmt_walk(&b, fmt, ap, put_value_fn, NULL); /* what it wrote is logged either way */
    size_t n = strbuf_failed(&b) ? 0 : b.len;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(buf, b.p, n);
    buf[n] = '\0';
    strbuf_free(&b);
}

/* The trace of the request or job this thread works on (log_set_trace). */
static _Thread_local char g_trace[33];

const char *log_get_trace(void)
{
    return g_trace;
}

void log_copy_trace(char out[33])
{
    memcpy(out, g_trace, sizeof g_trace);
}

void log_set_trace(const char *trace_id)
{
    size_t n = trace_id ? strnlen(trace_id, sizeof g_trace - 1) : 0;
    memcpy(g_trace, trace_id ? trace_id : "", n);
    g_trace[n] = '\0';
}

static void log_vwrite(enum log_level lvl, const char *msg, const char *kvfmt, va_list ap)
{
    char kv[2048] = "";
    size_t k = 0;
    if (g_trace[0])
        k = (size_t)snprintf(kv, sizeof kv, "trace_id=%s%s", g_trace, kvfmt && *kvfmt ? " " : "");
    if (kvfmt && *kvfmt)
        kv_format(kv + k, sizeof kv - k, kvfmt, ap);

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
