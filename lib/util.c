/* util.c - see util.h. */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

bool sb_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf == NULL || errlen == 0)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    return false;
}

int64_t sb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sb_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sb_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

bool sb_cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return false;
    bool ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 && pthread_cond_init(cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
    return ok;
}

struct timespec sb_mono_deadline(int64_t mono_ms)
{
    return (struct timespec){.tv_sec = (time_t)(mono_ms / 1000), .tv_nsec = (long)(mono_ms % 1000) * 1000000};
}

static bool getrandom_all(void *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = getrandom((char *)buf + off, len - off, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        off += (size_t)n;
    }
    return true;
}

/* Small requests are served from a per-thread pool filled 512 bytes at a
 * time: request ids and lock owners took two getrandom(2) calls per
 * message create. The bytes are the kernel's CSPRNG output either way, and
 * each is handed out once (wiped as it goes). The pool is per thread, so
 * nothing is shared; these processes never fork, which would copy it. */
bool sb_random_bytes(void *buf, size_t len)
{
    static _Thread_local unsigned char pool[512];
    static _Thread_local size_t left;
    if (len > sizeof pool / 8)
        return getrandom_all(buf, len);
    if (left < len) {
        if (!getrandom_all(pool, sizeof pool))
            return false;
        left = sizeof pool;
    }
    unsigned char *from = pool + sizeof pool - left;
    memcpy(buf, from, len);
    memset(from, 0, len);
    left -= len;
    return true;
}

void sb_hex(const void *bytes, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = bytes;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * len] = '\0';
}

bool sb_random_id(char out[33])
{
    unsigned char raw[16];
    if (!sb_random_bytes(raw, sizeof raw))
        return false;
    sb_hex(raw, sizeof raw, out);
    return true;
}

void sb_sleep_ms_unless(int64_t ms, const atomic_int *stop)
{
    int64_t end = sb_mono_ms() + ms;
    while (!(stop && atomic_load(stop))) {
        int64_t left = end - sb_mono_ms();
        if (left <= 0)
            break;
        if (left > 50)
            left = 50; /* re-check the stop flag often */
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};
        nanosleep(&ts, NULL);
    }
}

char *sb_read_file(const char *path, size_t *len_out, char *errbuf, size_t errlen)
{
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        sb_errf(errbuf, errlen, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0)
        goto fail;
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto fail;
    buf = malloc((size_t)n + 1);
    if (buf == NULL)
        goto fail;
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        goto fail;
    buf[n] = '\0';
    fclose(f);
    if (len_out)
        *len_out = (size_t)n;
    return buf;
fail:
    sb_errf(errbuf, errlen, "read %s: %s", path, strerror(errno));
    free(buf);
    fclose(f);
    return NULL;
}

bool sb_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (s == NULL || *s == '\0')
        return false;
    /* Strictly decimal: no sign but a '-' where negatives are allowed, no
     * space, no leading zero ("+1", " 1" and "01" are not 1). */
    const char *d = s + (*s == '-' && min < 0);
    if (*d < '0' || *d > '9' || (d[0] == '0' && (d[1] != '\0' || d != s)))
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool sb_parse_host_port(const char **p, char *host, size_t hostlen, int *port)
{
    const char *s = *p;
    size_t hlen = strcspn(s, ":/");
    if (hlen == 0 || hlen >= hostlen)
        return false;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    s += hlen;
    if (*s == ':') {
        size_t plen = strcspn(s + 1, "/");
        char digits[8];
        int64_t v;
        if (plen == 0 || plen >= sizeof digits)
            return false;
        memcpy(digits, s + 1, plen);
        digits[plen] = '\0';
        if (!sb_parse_i64(digits, 1, 65535, &v))
            return false;
        *port = (int)v;
        s += 1 + plen;
    }
    *p = s;
    return true;
}

bool sb_token_valid(const char *s, size_t min, size_t max)
{
    size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
    return s[n] == '\0' && n >= min && n <= max;
}

bool sb_secret_key(const char *key)
{
    static const char *const marks[] = {"password", "secret", "jaas", "oauthbearer.config",
                                        "key.pem", "token", "credential"};
    for (size_t i = 0; i < SB_ARRAY_LEN(marks); i++)
        if (strstr(key, marks[i]) != NULL)
            return true;
    return false;
}

const char *sb_kv_item_end(const char *p)
{
    while (*p && *p != ',')
        p += (*p == '\\' && (p[1] == ',' || p[1] == '\\')) ? 2 : 1;
    return p;
}

void sb_mask_kv_list(const char *list, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    const char *p = list;
    while (*p) {
        const char *e = sb_kv_item_end(p);
        const char *eq = memchr(p, '=', (size_t)(e - p));
        char key[256];
        size_t kl = eq ? (size_t)(eq - p) : 0;
        snprintf(key, sizeof key, "%.*s", (int)(kl < sizeof key ? kl : sizeof key - 1), p);
        int w = eq && sb_secret_key(key)
                    ? snprintf(out + n, cap - n, "%s%.*s=***", n ? "," : "", (int)kl, p)
                    : snprintf(out + n, cap - n, "%s%.*s", n ? "," : "", (int)(e - p), p);
        if (w < 0 || (size_t)w >= cap - n) {
            out[n] = '\0'; /* whole items only */
            return;
        }
        n += (size_t)w;
        p = *e ? e + 1 : e;
    }
}

size_t sb_join(char *dst, size_t cap, ...)
{
    size_t len = 0;
    va_list ap;
    va_start(ap, cap);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) {
        size_t n = strlen(s);
        if (len < cap)
            memcpy(dst + len, s, len + n < cap ? n : cap - len - 1);
        len += n;
    }
    va_end(ap);
    if (cap)
        dst[len < cap ? len : cap - 1] = '\0';
    return len;
}

size_t sb_i64_to_str(int64_t v, char out[SB_I64_STR])
{
    char tmp[SB_I64_STR];
    size_t i = sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    memcpy(out, tmp + i, sizeof tmp - i);
    out[sizeof tmp - i] = '\0';
    return sizeof tmp - i;
}
