/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
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

static void log_vwrite(enum log_level lvl, const char *msg, const char *kvfmt, va_list ap)
{
    char kv[2048] = "";
    if (kvfmt && *kvfmt)
        vsnprintf(kv, sizeof kv, kvfmt, ap);

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
