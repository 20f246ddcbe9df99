/* trace.c - see trace.h. */
#include "trace.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "otlp.h"
#include "strbuf.h"

#define EXPORT_TIMEOUT_MS 5000

static struct {
    bool on;
    uint64_t threshold; /* a new trace is sampled when a random 64-bit value is below it */
    bool sample_all;
    char service[64];
    char *url;
    enum otlp_format format;
    size_t cap, batch_max;
    int64_t flush_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    struct trace_span *q;
    struct trace_span *spare; /* the exporter's: the queue and it swap at each send */
    size_t n;
    bool stop;
    struct metric *m_queued, *m_exported, *m_full, *m_export;
} t = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Ids and sampling draws: xoshiro256** per thread, seeded from the
 * kernel's random source once (a getrandom per span would be a syscall on
 * every request). Not for secrets. */
static _Thread_local uint64_t rng[4];
static _Thread_local bool rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rand64(void)
{
    if (!rng_seeded) {
        if (!sb_random_bytes(rng, sizeof rng)) {
            /* No kernel randomness: time and thread still make ids that
             * do not collide in practice. */
            rng[0] = (uint64_t)trace_now_ns();
            rng[1] = (uint64_t)(uintptr_t)&rng_seeded;
            rng[2] = (uint64_t)getpid();
            rng[3] = 0x9e3779b97f4a7c15u;
        }
        rng_seeded = true;
    }
    uint64_t r = rotl(rng[1] * 5, 7) * 9, s = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= s;
    rng[3] = rotl(rng[3], 45);
    return r;
}

static void random_id(uint8_t *out, size_t len)
{
    do {
        for (size_t i = 0; i < len; i += 8) {
            uint64_t r = rand64();
            memcpy(out + i, &r, len - i < 8 ? len - i : 8);
        }
    } while (out[0] == 0 && memcmp(out, out + 1, len - 1) == 0); /* all zero is invalid */
}

int64_t trace_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool trace_on(void)
{
    return t.on;
}

bool trace_sampled(const struct trace_ctx *c)
{
    return c->valid && (c->flags & 1);
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; /* lowercase only (W3C) */
}

static bool hex_bytes(const char *s, uint8_t *out, size_t len)
{
    uint8_t any = 0;
    for (size_t i = 0; i < len; i++) {
        int hi = hexv(s[2 * i]), lo = hexv(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
        any |= out[i];
    }
    return any != 0;
}

bool trace_parse(const char *s, struct trace_ctx *out)
{
    memset(out, 0, sizeof *out);
    if (s == NULL || strlen(s) < TRACEPARENT_LEN)
        return false;
    uint8_t version, flags;
    if (!hex_bytes(s, &version, 1) && !(s[0] == '0' && s[1] == '0'))
        return false;
    if (version == 0xff || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return false;
    /* Version 00 is exactly 55 characters; a later version may add
     * fields after a '-' (W3C Trace Context, 4.3). */
    if (s[0] == '0' && s[1] == '0' ? s[TRACEPARENT_LEN] != '\0'
                                   : s[TRACEPARENT_LEN] != '\0' && s[TRACEPARENT_LEN] != '-')
        return false;
    if (!hex_bytes(s + 3, out->trace_id, 16) || !hex_bytes(s + 36, out->span_id, 8))
        return false;
    if (hexv(s[53]) < 0 || hexv(s[54]) < 0)
        return false;
    flags = (uint8_t)(hexv(s[53]) << 4 | hexv(s[54]));
    out->flags = flags & 1;
    out->valid = true;
    return true;
}

void trace_format(const struct trace_ctx *c, char out[TRACEPARENT_LEN + 1])
{
    memcpy(out, "00-", 3);
    sb_hex(c->trace_id, 16, out + 3);
    out[35] = '-';
    sb_hex(c->span_id, 8, out + 36);
    out[52] = '-';
    out[53] = '0';
    out[54] = (c->flags & 1) ? '1' : '0';
    out[55] = '\0';
}

void trace_id_hex(const struct trace_ctx *c, char out[33])
{
    if (c->valid)
        sb_hex(c->trace_id, 16, out);
    else
        out[0] = '\0';
}

void trace_span_start_at(struct trace_span *s, const struct trace_ctx *parent, const char *name,
                         enum trace_kind kind, int64_t start_ns)
{
    s->ctx.valid = false;
    if (!t.on || (parent && !parent->valid))
        return;
    if (parent) {
        memcpy(s->ctx.trace_id, parent->trace_id, 16);
        memcpy(s->parent, parent->span_id, 8);
        s->ctx.flags = parent->flags;
    } else {
        random_id(s->ctx.trace_id, 16);
        memset(s->parent, 0, 8);
        s->ctx.flags = t.sample_all || rand64() < t.threshold;
    }
    random_id(s->ctx.span_id, 8);
    s->ctx.valid = true;
    s->name = name;
    s->kind = kind;
    s->start_ns = start_ns;
    s->error = false;
    s->nattrs = 0;
}

void trace_span_start(struct trace_span *s, const struct trace_ctx *parent, const char *name, enum trace_kind kind)
{
    trace_span_start_at(s, parent, name, kind, 0);
    if (trace_sampled(&s->ctx)) /* the clock only for spans that are recorded */
        s->start_ns = trace_now_ns();
}

void trace_span_attr(struct trace_span *s, const char *key, const char *value)
{
    if (!trace_sampled(&s->ctx) || s->nattrs == TRACE_ATTRS)
        return;
    size_t n = strnlen(value, sizeof s->attr_val[0] - 1);
    s->attr_key[s->nattrs] = key;
    memcpy(s->attr_val[s->nattrs], value, n);
    s->attr_val[s->nattrs][n] = '\0';
    s->nattrs++;
}

void trace_span_attr_i64(struct trace_span *s, const char *key, int64_t value)
{
    char v[24];
    if (!trace_sampled(&s->ctx))
        return;
    snprintf(v, sizeof v, "%" PRId64, value);
    trace_span_attr(s, key, v);
}

void trace_span_end(struct trace_span *s, bool error)
{
    if (!trace_sampled(&s->ctx)) {
        s->ctx.valid = false;
        return;
    }
    s->end_ns = trace_now_ns();
    s->error = error;
    bool kept = false, wake = false;
    pthread_mutex_lock(&t.mu);
    if (t.n < t.cap) {
        t.q[t.n++] = *s;
        kept = true;
        wake = t.n == t.batch_max;
    }
    pthread_mutex_unlock(&t.mu);
    if (wake)
        pthread_cond_signal(&t.cv);
    metric_add(kept ? t.m_queued : t.m_full, 1);
    s->ctx.valid = false;
}

/* -- export --------------------------------------------------------------- */

static size_t discard_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static bool post(CURL *c, const char *body, size_t len, char *why, size_t whylen)
{
    curl_easy_reset(c);
    char ctype[64];
    snprintf(ctype, sizeof ctype, "Content-Type: %s", otlp_content_type(t.format));
    struct curl_slist *h = curl_slist_append(NULL, ctype);
    if (h == NULL)
        return sb_errf(why, whylen, "out of memory");
    curl_easy_setopt(c, CURLOPT_URL, t.url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)EXPORT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    if (rc != CURLE_OK)
        return sb_errf(why, whylen, "%s", curl_easy_strerror(rc));
    if (status < 200 || status > 299)
        return sb_errf(why, whylen, "the collector answered %ld", status);
    return true;
}

static void *export_main(void *arg)
{
    (void)arg;
    CURL *c = curl_easy_init();
    struct trace_span *batch = t.spare;
    char host[128] = "", pid[24];
    gethostname(host, sizeof host - 1);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    const struct otlp_resource res = {.service = t.service, .host = host, .pid = pid};
    struct log_every failed = {0};
    pthread_mutex_lock(&t.mu);
    for (;;) {
        if (t.n < t.batch_max && !t.stop) {
            struct timespec ts = sb_mono_deadline(sb_mono_ms() + t.flush_ms);
            pthread_cond_timedwait(&t.cv, &t.mu, &ts);
        }
        bool stopping = t.stop;
        /* Swap the queue out: the loops go on queueing while we send. */
        size_t n = t.n;
        struct trace_span *full = t.q;
        if (n > 0) {
            t.q = batch;
            t.n = 0;
            batch = full;
        }
        pthread_mutex_unlock(&t.mu);
        bool gave_up = false;
        for (size_t off = 0; off < n; off += t.batch_max) {
            size_t k = n - off < t.batch_max ? n - off : t.batch_max;
            struct strbuf b = {0};
            otlp_encode(&b, t.format, &res, batch + off, k);
            char why[256] = "out of memory";
            if (!gave_up && c && !strbuf_failed(&b) && post(c, b.p, b.len, why, sizeof why)) {
                metric_add(t.m_exported, (int64_t)k);
            } else {
                /* Stopping, one failure is enough: the rest would each wait
                 * out the export timeout while the process wants to exit. */
                gave_up = gave_up || stopping;
                int64_t skipped;
                metric_add(t.m_export, (int64_t)k);
                if (log_every_due(&failed, 10000, &skipped))
                    log_warn("spans not exported: dropped", "url=%s spans=%zu error=\"%s\" failures_before=%lld",
                             t.url, k, why, (long long)skipped);
            }
            strbuf_free(&b);
        }
        pthread_mutex_lock(&t.mu);
        if (stopping && t.n == 0)
            break;
    }
    pthread_mutex_unlock(&t.mu);
    t.spare = batch; /* freed by trace_shutdown, with the queue */
    curl_easy_cleanup(c);
    return NULL;
}

bool trace_setup(const char *service, const struct sb_config *cfg, char *errbuf, size_t errlen)
{
    snprintf(t.service, sizeof t.service, "%s", service);
    char *end = NULL;
    double ratio = strtod(cfg->trace_sample_ratio, &end);
    if (end == cfg->trace_sample_ratio || *end != '\0' || !(ratio >= 0.0 && ratio <= 1.0))
        return sb_errf(errbuf, errlen, "trace_sample_ratio must be a number from 0 to 1, not \"%s\"",
                       cfg->trace_sample_ratio);
    /* Below 1, ratio * 2^64 is below 2^64 (and a double's rounding of
     * it at most 2^64 - 2048): it fits. At 1, every trace. */
    t.sample_all = ratio >= 1.0;
    t.threshold = t.sample_all ? 0 : (uint64_t)(ratio * 18446744073709551616.0);
    /* Checked with tracing off too: a typo shows at start, not when
     * tracing is turned on. */
    if (!otlp_format_parse(cfg->trace_otlp_protocol, &t.format))
        return sb_errf(errbuf, errlen, "trace_otlp_protocol must be http/protobuf or http/json, not \"%s\"",
                       cfg->trace_otlp_protocol);
    if (cfg->trace_otlp_url[0] == '\0')
        return true;
    if (strncmp(cfg->trace_otlp_url, "http://", 7) != 0 && strncmp(cfg->trace_otlp_url, "https://", 8) != 0)
        return sb_errf(errbuf, errlen, "trace_otlp_url must be an http(s) URL (an OTLP/HTTP traces endpoint)");
    t.url = strdup(cfg->trace_otlp_url);
    t.cap = (size_t)cfg->trace_queue_max;
    t.batch_max = t.cap < 512 ? t.cap : 512;
    t.flush_ms = cfg->trace_flush_ms;
    t.q = malloc(t.cap * sizeof *t.q);
    t.spare = malloc(t.cap * sizeof *t.spare);
    t.n = 0;
    t.stop = false;
    if (t.url == NULL || t.q == NULL || t.spare == NULL)
        return sb_errf(errbuf, errlen, "out of memory");
    t.m_queued = metrics_counter("switchboard_trace_spans_total", "", "spans recorded (sampled)");
    t.m_exported = metrics_counter("switchboard_trace_spans_exported_total", "", "spans the collector took");
    t.m_full = metrics_counter("switchboard_trace_spans_dropped_total", "reason=\"queue_full\"",
                               "spans dropped: the queue was full (trace_queue_max), or the collector refused them");
    t.m_export = metrics_counter("switchboard_trace_spans_dropped_total", "reason=\"export\"",
                                 "spans dropped: the queue was full (trace_queue_max), or the collector refused them");
    if (!sb_cond_init_mono(&t.cv))
        return sb_errf(errbuf, errlen, "cannot make the exporter's condition variable");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return sb_errf(errbuf, errlen, "cannot initialise libcurl");
    if (pthread_create(&t.thread, NULL, export_main, NULL) != 0)
        return sb_errf(errbuf, errlen, "cannot start the span exporter");
    t.on = true;
    log_info("tracing on", "otlp_url=%s protocol=%s sample_ratio=%s queue_max=%zu", t.url, cfg->trace_otlp_protocol,
             cfg->trace_sample_ratio, t.cap);
    return true;
}

void trace_shutdown(void)
{
    if (!t.on)
        return;
    pthread_mutex_lock(&t.mu);
    t.stop = true;
    pthread_cond_signal(&t.cv);
    pthread_mutex_unlock(&t.mu);
    pthread_join(t.thread, NULL);
    t.on = false;
    free(t.q);
    free(t.spare);
    free(t.url);
    t.q = t.spare = NULL;
    t.url = NULL;
    curl_global_cleanup();
}

void trace_counts(struct trace_counts *out)
{
    out->queued = t.m_queued ? metric_value(t.m_queued) : 0;
    out->exported = t.m_exported ? metric_value(t.m_exported) : 0;
    out->dropped_full = t.m_full ? metric_value(t.m_full) : 0;
    out->dropped_export = t.m_export ? metric_value(t.m_export) : 0;
}
