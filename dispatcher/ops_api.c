/* ops_api.c - operations routes.
 *
 *   GET  /healthz   the process is up and its loop answers
 *   GET  /readyz    every required dependency answered its last probe
 *                   (else 503); the optional ones are listed too
 *   GET  /metrics   Prometheus text
 *   POST /ops/ping  sends a system.ping job through Kafka to the persister;
 *                   202 once Kafka acknowledged it (a pipeline probe)
 *   GET  /ops/v1/overview  the dependencies, every topic's partitions with
 *                   their offsets, every consumer group (idle ones too)
 *                   with its committed offsets and lag (kafka_admin.h),
 *                   each topic's throughput and each group's lag over
 *                   the last minutes (history.h), and whether the key
 *                   may act */
#include <stdlib.h>
#include <string.h>

#include "ops_api.h"

#include "access.h"
#include "envelope.h"
#include "httpconn.h"
#include "kafka_admin.h"
#include "log.h"
#include "readiness.h"
#include "server.h"
#include "history.h"
#include "httpconn.h"

void ops_healthz(struct http_ctx *ctx)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "status", "ok");
    http_reply_json(ctx, 200, body);
    cJSON_Delete(body);
}

static void add_dep(cJSON *deps, const char *name, bool ok, bool required, const char *err)
{
    cJSON *o = cJSON_AddObjectToObject(deps, name);
    cJSON_AddBoolToObject(o, "ok", ok);
    if (!ok)
        cJSON_AddStringToObject(o, "error", err);
    if (!required)
        cJSON_AddBoolToObject(o, "required", false);
}

/* Every dependency's last probe into body's "dependencies"; true if the
 * dispatcher is ready (every required one answered, not draining). */
static bool add_dependencies(struct dispatcher *d, cJSON *body)
{
    /* Every loop's own Redis connection: a request may land on any loop. */
    int nloops = atomic_load(&d->nloops);
    bool redis_ok = nloops > 0;
    for (int i = 0; i < nloops; i++)
        redis_ok = redis_ok && redis_client_ready(d->loops[i].redis);
    bool draining = atomic_load(&d->draining);
    bool ready = redis_ok && !draining;
    struct dep_state state[DEP_COUNT];
    bool probed[DEP_COUNT];
    for (int i = 0; i < DEP_COUNT; i++) {
        probed[i] = readiness_get(d->readiness, i, &state[i]); /* false: not configured */
        if (probed[i] && !state[i].ok && readiness_required(i))
            ready = false;
    }
    cJSON_AddStringToObject(body, "status", ready ? "ready" : draining ? "draining" : "not_ready");
    cJSON *deps = cJSON_AddObjectToObject(body, "dependencies");
    add_dep(deps, "redis", redis_ok, true, "not connected or not answering PING");
    for (int i = 0; i < DEP_COUNT; i++)
        if (probed[i])
            add_dep(deps, readiness_name(i), state[i].ok, readiness_required(i), state[i].error);
    return ready;
}

void ops_readyz(struct http_ctx *ctx)
{
    cJSON *body = cJSON_CreateObject();
    bool ready = add_dependencies(ctx->loop->d, body);
    http_reply_json(ctx, ready ? 200 : 503, body);
    cJSON_Delete(body);
}

/* ---- GET /ops/v1/overview ------------------------------------------------ */

#define OVERVIEW_KAFKA_TIMEOUT_MS 5000

struct overview_req {
    struct http_pending *p;
    struct dispatcher *d;
    cJSON *kafka; /* kafka_admin_overview's, or NULL (err) */
    bool expired;
    bool read_only; /* asked with a read-only key: the console hides its actions */
    char err[ERRBUF_LEN];
};

static void overview_work(void *ctx, void *arg)
{
    (void)ctx;
    struct overview_req *o = arg;
    o->kafka = kafka_admin_overview(kafka_producer_handle(o->d->producer), OVERVIEW_KAFKA_TIMEOUT_MS, o->err,
                                    sizeof o->err);
}

static void overview_expire(void *arg)
{
    ((struct overview_req *)arg)->expired = true;
}

static void overview_done(void *arg)
{
    struct overview_req *o = arg;
    if (o->expired) {
        http_pending_busy(o->p);
    } else if (o->kafka == NULL) {
        log_warn("ops overview: Kafka did not answer", "err=\"%s\"", o->err);
        http_pending_errorf(o->p, 503, "kafka_unavailable", "Kafka did not answer: %s", o->err);
    } else {
        cJSON_AddNumberToObject(o->kafka, "at", (double)sb_now_ms()); /* beside topics and groups */
        cJSON_AddStringToObject(o->kafka, "access", o->read_only ? "read" : "admin");
        add_dependencies(o->d, o->kafka);
        cJSON *rates = history_throughput(o->d->history), *lags = history_lag(o->d->history);
        if (rates)
            cJSON_AddItemToObject(o->kafka, "throughput", rates);
        if (lags)
            cJSON_AddItemToObject(o->kafka, "lag_history", lags);
        http_pending_reply(o->p, 200, o->kafka);
    }
    cJSON_Delete(o->kafka);
    free(o);
}

void ops_overview(struct http_ctx *ctx)
{
    struct overview_req *o = calloc(1, sizeof *o);
    if (o == NULL || (o->p = http_pending_new(ctx)) == NULL) {
        if (o == NULL)
            http_reply_error(ctx, 503, "overloaded", "out of memory");
        free(o);
        return;
    }
    o->d = ctx->loop->d;
    o->read_only = access_read_only(ctx->principal);
    /* Broker round trips: on a pool thread, never on the loop. */
    if (!http_pool_submit(o->p, o->d->dbpool, threadpool_tenant(ctx->principal), overview_work, overview_expire,
                          overview_done, o))
        free(o);
}

void ops_metrics(struct http_ctx *ctx)
{
    /* Saturation, read at the scrape (registering is a lookup after the
     * first time). */
    struct dispatcher *d = ctx->loop->d;
    long long ws_commands = 0, ws_queued = 0;
    for (int i = 0, n = atomic_load(&d->nloops); i < n; i++) {
        ws_commands += atomic_load_explicit(&d->loops[i].ws_commands, memory_order_relaxed);
        ws_queued += atomic_load_explicit(&d->loops[i].ws_queued, memory_order_relaxed);
    }
    metric_set(metrics_gauge("switchboard_http_connections", "", "open client connections"),
               atomic_load(&d->connections));
    metric_set(metrics_gauge("switchboard_http_output_bytes", "",
                             "answers written and not yet taken by their clients (max_output_bytes)"),
               (double)atomic_load(&d->out_bytes));
    metric_set(metrics_gauge("switchboard_requests_in_flight", "",
                             "requests waiting for Redis, Kafka or a database"),
               atomic_load(&d->inflight));
    metric_set(metrics_gauge("switchboard_ws_connections", "", "open WebSocket connections (also in "
                             "switchboard_http_connections)"), atomic_load(&d->ws_open));
    metric_set(metrics_gauge("switchboard_ws_commands_in_flight", "",
                             "WebSocket commands without a reply (at most ws_max_inflight per connection)"),
               (double)ws_commands);
    metric_set(metrics_gauge("switchboard_ws_reply_bytes_queued", "",
                             "WebSocket replies not yet taken by their clients (at most ws_max_reply_bytes "
                             "per connection)"), (double)ws_queued);
    metric_set(metrics_gauge("switchboard_kafka_outstanding", "",
                             "jobs produced and not yet acknowledged by Kafka"),
               kafka_producer_outstanding(d->producer));
    size_t len;
    char *text = metrics_render(&len);
    http_reply_raw(ctx, 200, "text/plain; version=0.0.4", text, len);
    free(text);
}

/* ---- POST /ops/ping ---------------------------------------------------- */

static const struct json_field ping_req_fields[] = {
    {"note", JSON_K_STRING, false, 0, 200},
};

struct produce_done {
    struct http_pending *pending;
    struct http_enqueue eq;
};

/* On the loop: the answer follows Kafka's verdict, never precedes it. */
static void ping_answer(void *arg, rd_kafka_resp_err_t err)
{
    struct produce_done *pd = arg;
    struct http_pending *p = pd->pending;
    if (err) {
        log_warn("enqueue failed", "request_id=%s err=%s", p->request_id, rd_kafka_err2name(err));
        http_pending_error(p, 503, "queue_unavailable", "the job queue did not accept the job; retry later");
    } else {
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "request_id", p->request_id);
        cJSON_AddStringToObject(body, "status", "queued");
        http_pending_reply(p, 202, body);
        cJSON_Delete(body);
    }
    free(pd);
}

void ops_ping(struct http_ctx *ctx)
{
    char err[ERRBUF_LEN];
    cJSON *req = http_body_json(ctx, ping_req_fields, SB_ARRAY_LEN(ping_req_fields), true);
    if (req == NULL)
        return;
    cJSON *payload = cJSON_CreateObject();
    const char *note = json_str(req, "note", NULL);
    if (note)
        cJSON_AddStringToObject(payload, "note", note);
    cJSON_Delete(req);
    const struct job_type *jt = envelope_job_type("system.ping");
    char *job = envelope_encode("system.ping", ctx->request_id, ctx->request_id, sb_now_ms(),
                                payload, err, sizeof err);
    if (job == NULL) {
        http_reply_error(ctx, 500, "internal", "%s", err);
        return;
    }
    struct produce_done *pd = calloc(1, sizeof *pd);
    struct http_pending *p = pd ? http_pending_new(ctx) : NULL;
    if (p == NULL) {
        free(pd);
        free(job);
        if (!pd)
            http_reply_error(ctx, 503, "overloaded", "out of memory");
        return;
    }
    pd->pending = p;
    if (!http_enqueue(&pd->eq, ctx->loop, &ctx->req->span.ctx, jt->topic, ctx->request_id, strlen(ctx->request_id), job,
                      ping_answer, pd, err, sizeof err)) {
        log_warn("enqueue refused", "request_id=%s err=\"%s\"", ctx->request_id, err);
        http_pending_error(p, 503, "queue_unavailable", "the job queue is full or unavailable; retry later");
        free(pd);
    }
    free(job);
}
