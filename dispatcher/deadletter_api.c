/* deadletter_api.c - see deadletter_api.h. */
#include "deadletter_api.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "kafka.h"
#include "kafka_admin.h"
#include "log.h"
#include "util.h"

#define DL_SCAN_TIMEOUT_MS 10000
#define DL_LIMIT_DEFAULT 50
#define DL_LIMIT_MAX 500
#define DL_TOPICS_MAX 64
#define DL_BODY_MAX (64 << 10) /* of a body shown; longer ones are cut, and say so */
#define DL_CAUSE_MAX 80

struct dl_req {
    struct http_pending *p;
    struct dispatcher *d;
    /* the filter */
    char topic[256];
    char reason[128];
    char cause[DL_CAUSE_MAX + 1];
    char type[64];
    char app[128];
    int64_t since, until; /* ms; 0: open */
    int limit;
    /* the answer */
    long long count;
    cJSON *top[DL_LIMIT_MAX]; /* the newest that match, newest first */
    int64_t top_at[DL_LIMIT_MAX];
    int ntop;
    cJSON *causes; /* {cause: count} */
    bool expired, failed;
    bool unknown; /* topic= names no dead-letter topic */
    char err[ERRBUF_LEN];
};

/* A dead letter's header as text ("" when missing). */
static void header(const rd_kafka_message_t *m, const char *name, char *out, size_t cap)
{
    if (!kafka_header(m, name, out, cap))
        out[0] = '\0';
}

/* The cause a reason belongs to: its words before the first ':' (the
 * detail after it names the job or the provider's answer), each number
 * as N ("gave up after N attempts", "malformed JSON near offset N"). */
static void cause_of(const char *reason, char out[DL_CAUSE_MAX + 1])
{
    size_t n = 0;
    for (const char *p = reason; *p && *p != ':' && n < DL_CAUSE_MAX; p++) {
        if (*p >= '0' && *p <= '9') {
            while (p[1] >= '0' && p[1] <= '9')
                p++;
            out[n++] = 'N';
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    json_utf8_trim(out);
}

static bool matches(const struct dl_req *r, const char *reason, const char *cause, int64_t at, const char *type,
                    const char *app)
{
    return (!r->reason[0] || strcasestr(reason, r->reason)) && (!r->cause[0] || strcmp(cause, r->cause) == 0) &&
           (!r->type[0] || strcmp(type, r->type) == 0) &&
           (!r->app[0] || strcmp(app, r->app) == 0) && (!r->since || at >= r->since) &&
           (!r->until || at < r->until);
}

static cJSON *item(const rd_kafka_message_t *m, const char *reason, const char *cause, const char *otopic,
                   const char *opart, const char *ooff, int64_t at, const char *group, const char *type,
                   const char *app, const cJSON *payload)
{
    cJSON *it = cJSON_CreateObject();
    cJSON *dlq = cJSON_AddObjectToObject(it, "dead_letter");
    cJSON_AddStringToObject(dlq, "topic", rd_kafka_topic_name(m->rkt));
    cJSON_AddNumberToObject(dlq, "partition", m->partition);
    cJSON_AddNumberToObject(dlq, "offset", (double)m->offset);
    cJSON_AddStringToObject(it, "reason", reason);
    cJSON_AddStringToObject(it, "cause", cause);
    cJSON *orig = cJSON_AddObjectToObject(it, "original");
    cJSON_AddStringToObject(orig, "topic", otopic);
    cJSON_AddNumberToObject(orig, "partition", strtol(opart, NULL, 10));
    cJSON_AddNumberToObject(orig, "offset", (double)strtoll(ooff, NULL, 10));
    cJSON_AddNumberToObject(it, "failed_at", (double)at);
    cJSON_AddStringToObject(it, "consumer_group", group);
    cJSON_AddStringToObject(it, "type", type);
    cJSON_AddStringToObject(it, "application", app);
    const cJSON *attempt = cJSON_GetObjectItemCaseSensitive(payload, "attempt");
    if (cJSON_IsNumber(attempt))
        cJSON_AddNumberToObject(it, "attempts", attempt->valuedouble);
    /* The body as it is on the topic (text: it may not be JSON). */
    size_t n = m->len < DL_BODY_MAX ? m->len : DL_BODY_MAX;
    char *body = malloc(n + 1);
    if (body) {
        memcpy(body, m->payload, n);
        body[n] = '\0';
        json_utf8_trim(body);
        cJSON_AddStringToObject(it, "body", body);
        free(body);
    }
    if (n < m->len)
        cJSON_AddBoolToObject(it, "body_cut", true);
    return it;
}

static bool on_letter(void *arg, const rd_kafka_message_t *m)
{
    struct dl_req *r = arg;
    char reason[1024], otopic[256], opart[16], ooff[24], at_s[24], group[256];
    header(m, "x-dlq-reason", reason, sizeof reason);
    header(m, "x-original-topic", otopic, sizeof otopic);
    header(m, "x-original-partition", opart, sizeof opart);
    header(m, "x-original-offset", ooff, sizeof ooff);
    header(m, "x-failed-at", at_s, sizeof at_s);
    header(m, "x-consumer-group", group, sizeof group);
    int64_t at = strtoll(at_s, NULL, 10);
    /* The job, if it is one (a poison message is dead-lettered as it came). */
    cJSON *job = cJSON_ParseWithLength(m->payload, m->len);
    const cJSON *payload = cJSON_GetObjectItemCaseSensitive(job, "payload");
    const char *type = json_str(job, "type", "");
    const char *app = json_str(payload, "application_token", json_str(job, "key", ""));
    char cause[DL_CAUSE_MAX + 1];
    cause_of(reason, cause);
    if (matches(r, reason, cause, at, type, app)) {
        r->count++;
        cJSON *c = cJSON_GetObjectItemCaseSensitive(r->causes, cause);
        if (c)
            cJSON_SetNumberValue(c, c->valuedouble + 1);
        else
            cJSON_AddNumberToObject(r->causes, cause, 1);
        /* Newest first, at most limit: the letters come in offset order
         * per partition, so each takes its place by failure time (in an
         * array of our own: cJSON 1.7.15's insert loses an item put just
         * before the last). */
        int idx = r->ntop;
        while (idx > 0 && r->top_at[idx - 1] < at)
            idx--;
        if (idx < r->limit) {
            cJSON *it = item(m, reason, cause, otopic, opart, ooff, at, group, type, app, payload);
            if (r->ntop == r->limit)
                cJSON_Delete(r->top[--r->ntop]);
            memmove(r->top + idx + 1, r->top + idx, (size_t)(r->ntop - idx) * sizeof *r->top);
            memmove(r->top_at + idx + 1, r->top_at + idx, (size_t)(r->ntop - idx) * sizeof *r->top_at);
            r->top[idx] = it;
            r->top_at[idx] = at;
            r->ntop++;
        }
    }
    cJSON_Delete(job);
    return true;
}

static void list_work(void *ctx, void *arg)
{
    (void)ctx;
    struct dl_req *r = arg;
    const struct sb_config *cfg = r->d->cfg;
    char *topics[DL_TOPICS_MAX];
    int n = kafka_admin_topics(kafka_producer_handle(r->d->producer), ".dlq", topics, DL_TOPICS_MAX,
                               DL_SCAN_TIMEOUT_MS, r->err, sizeof r->err);
    r->failed = n < 0;
    r->unknown = r->topic[0] != '\0';
    for (int i = 0; i < n; i++)
        if (r->topic[0] && strcmp(topics[i], r->topic) == 0)
            r->unknown = false;
    for (int i = 0; i < n; i++) {
        if (!r->failed && !r->unknown && (!r->topic[0] || strcmp(topics[i], r->topic) == 0) &&
            !kafka_admin_scan(cfg->kafka_brokers, cfg->kafka_conf, topics[i], DL_SCAN_TIMEOUT_MS, on_letter, r,
                              r->err, sizeof r->err))
            r->failed = true;
        free(topics[i]);
    }
}

static void list_expire(void *arg)
{
    ((struct dl_req *)arg)->expired = true;
}

static void dl_free(struct dl_req *r)
{
    for (int i = 0; i < r->ntop; i++)
        cJSON_Delete(r->top[i]);
    cJSON_Delete(r->causes);
    free(r);
}

static void list_done(void *arg)
{
    struct dl_req *r = arg;
    if (r->expired) {
        http_pending_busy(r->p);
    } else if (r->unknown && !r->failed) {
        http_pending_errorf(r->p, 404, "not_found", "no dead-letter topic %s", r->topic);
    } else if (r->failed) {
        log_warn("dead letters: Kafka did not answer", "err=\"%s\"", r->err);
        http_pending_errorf(r->p, 503, "kafka_unavailable", "cannot read the dead letters: %s", r->err);
    } else {
        cJSON *body = cJSON_CreateObject();
        cJSON_AddNumberToObject(body, "count", (double)r->count);
        cJSON_AddItemToObject(body, "causes", r->causes);
        cJSON *items = cJSON_AddArrayToObject(body, "items");
        for (int i = 0; i < r->ntop; i++)
            cJSON_AddItemToArray(items, r->top[i]);
        r->ntop = 0;
        r->causes = NULL;
        http_pending_reply(r->p, 200, body);
        cJSON_Delete(body);
    }
    dl_free(r);
}

/* A time bound: milliseconds since the epoch, or absent. */
static bool time_param(struct http_ctx *ctx, const char *name, int64_t *out)
{
    char v[24];
    *out = 0;
    if (!http_query_param(ctx, name, v, sizeof v))
        return true;
    if (!sb_parse_i64(v, 1, INT64_MAX, out)) {
        http_reply_error(ctx, 400, "invalid_parameter", "%s must be a time in milliseconds since the epoch", name);
        return false;
    }
    return true;
}

/* A filter's words: absent, or 1 to cap - 1 bytes. */
static bool text_param(struct http_ctx *ctx, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    if (http_query_param(ctx, name, out, cap) && out[0] == '\0') {
        http_reply_error(ctx, 400, "invalid_parameter", "%s must be 1 to %zu bytes", name, cap - 1);
        return false;
    }
    return true;
}

void deadletter_list(struct http_ctx *ctx)
{
    struct dl_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        http_reply_error(ctx, 503, "overloaded", "out of memory");
        return;
    }
    char limit[16];
    int64_t lim = DL_LIMIT_DEFAULT;
    bool ok = true;
    if (http_query_param(ctx, "topic", r->topic, sizeof r->topic)) {
        /* A Kafka topic name (letters, digits, '.', '_', '-'), of a .dlq */
        size_t n = strlen(r->topic);
        if (n < 5 || strcmp(r->topic + n - 4, ".dlq") != 0 ||
            strspn(r->topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n) {
            http_reply_error(ctx, 400, "invalid_parameter", "topic must name a dead-letter topic (<topic>.dlq)");
            ok = false;
        }
    }
    if (ok && http_query_param(ctx, "limit", limit, sizeof limit) && !sb_parse_i64(limit, 0, DL_LIMIT_MAX, &lim)) {
        http_reply_error(ctx, 400, "invalid_parameter", "limit must be 0 to %d", DL_LIMIT_MAX);
        ok = false;
    }
    ok = ok && time_param(ctx, "since", &r->since) && time_param(ctx, "until", &r->until);
    ok = ok && text_param(ctx, "reason", r->reason, sizeof r->reason) &&
         text_param(ctx, "cause", r->cause, sizeof r->cause) &&
         text_param(ctx, "type", r->type, sizeof r->type) && text_param(ctx, "application", r->app, sizeof r->app);
    if (ok) {
        r->limit = (int)lim;
        r->d = ctx->loop->d;
        r->causes = cJSON_CreateObject();
        ok = r->causes && (r->p = http_pending_new(ctx)) != NULL;
        if (!ok)
            http_reply_error(ctx, 503, "overloaded", "out of memory");
    }
    if (!ok) {
        dl_free(r);
        return;
    }
    /* Kafka round trips and a read of whole topics: on a pool thread. */
    if (!http_pool_submit(r->p, r->d->dbpool, threadpool_tenant(ctx->principal), list_work, list_expire, list_done,
                          r))
        dl_free(r);
}
