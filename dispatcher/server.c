/* server.c - see server.h. */
#include "server.h"
#include "router.h"
#include "wsconn.h"

#include <errno.h>
#include <event2/http.h> /* evhttp_parse_query_str only */
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access.h"
#include "findcache.h"
#include "httpconn.h"
#include "httpparse.h"
#include "json.h"
#include "log.h"
#include "net.h"

/* Defined in routes_*.c: the route table of this binary. */

bool server_listen(const char *addr, int *fd_out, char *errbuf, size_t errlen)
{
    /* SO_REUSEPORT: more dispatcher processes can serve the same port and
     * the kernel spreads connections among them. TCP_NODELAY, inherited by
     * every accepted connection: a reply must go out when written, not
     * wait for the client's delayed ACK (up to 40 ms) of an earlier
     * segment. */
    return net_bind(addr, NET_REUSEPORT | NET_NODELAY, fd_out, errbuf, errlen);
}

bool server_open(int fd, char *errbuf, size_t errlen)
{
    if (listen(fd, 1024) != 0) {
        sb_errf(errbuf, errlen, "listen: %s", strerror(errno));
        return false;
    }
    return true;
}

int server_max_connections(int64_t configured, uint64_t *fd_limit)
{
    struct rlimit rl;
    uint64_t limit = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        /* RLIM_INFINITY is refused as a soft limit (fs.nr_open caps it). */
        rlim_t want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
            struct rlimit raised = {want, rl.rlim_max};
            if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
                rl.rlim_cur = want;
        }
        limit = rl.rlim_cur == RLIM_INFINITY ? (uint64_t)1 << 20 : (uint64_t)rl.rlim_cur;
    }
    *fd_limit = limit;
    if (configured > 0)
        return (int)configured;
    uint64_t n = limit > SERVER_FD_RESERVE + 16 ? limit - SERVER_FD_RESERVE : 16;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

/* ---- replies ---------------------------------------------------------------- */

static void count_reply(const struct route *r, int code, int64_t start_us)
{
    if (r == NULL)
        return;
    metric_observe_us(r->latency, sb_mono_us() - start_us);
    metric_add(code >= 500 ? r->c5xx : code >= 400 ? r->c4xx : r->c2xx, 1);
}

/* Ends the request's span with its status (before the answer goes: a
 * keep-alive connection's next request reuses req). */
static void end_request_span(struct http_req *req, int code)
{
    if (!req->span.ctx.valid)
        return;
    trace_span_attr_i64(&req->span, "http.response.status_code", code);
    trace_span_end(&req->span, code >= 500);
}

void http_reply_raw(struct http_ctx *ctx, int code, const char *content_type, const char *body,
                    size_t len)
{
    end_request_span(ctx->req, code);
    count_reply(ctx->route, httpconn_send(ctx->req, ctx->request_id, code, content_type, body, len),
                ctx->start_us);
}

void http_reply_json(struct http_ctx *ctx, int code, const cJSON *body)
{
    char *text = json_print(body);
    if (text == NULL) {
        http_reply_raw(ctx, 500, "application/json", HTTP_OOM_BODY, sizeof HTTP_OOM_BODY - 1);
        return;
    }
    http_reply_raw(ctx, code, "application/json", text, strlen(text));
    free(text);
}

void http_reply_error(struct http_ctx *ctx, int code, const char *errcode, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    json_utf8_trim(msg); /* cut by the buffer: at a character's start, not inside it */
    va_end(ap);
    cJSON *body = json_error_body(errcode, msg);
    http_reply_json(ctx, code, body);
    cJSON_Delete(body);
}

/* ct names exactly media type mt (any case), perhaps with parameters:
 * "application/json; charset=utf-8" is application/json,
 * "application/jsonx" is not. */
static bool media_type_is(const char *ct, const char *mt)
{
    size_t n = strlen(mt);
    if (strncasecmp(ct, mt, n) != 0)
        return false;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/* The route's body limit, within max_body_bytes. */
static size_t route_body_limit(const struct dispatcher *d, const struct route *r)
{
    size_t cap = (size_t)d->cfg->max_body_bytes;
    size_t lim = r->max_body;
    if (lim == ROUTE_BODY_PER_SMS)
        lim = (size_t)d->cfg->sms_many_max * route_sms_item_body;
    return lim < cap ? lim : cap;
}

size_t server_body_limit(struct loop *l, const char *method, const char *target)
{
    size_t cap = (size_t)l->d->cfg->max_body_bytes, unknown = cap < ROUTE_BODY_SMALL ? cap : ROUTE_BODY_SMALL;
    char buf[1024];
    size_t n = strcspn(target, "?#");
    if (n >= sizeof buf)
        return unknown; /* longer than any route: a 404 */
    memcpy(buf, target, n);
    buf[n] = '\0';
    const char *path;
    char *query;
    if (!router_split_target(buf, &path, &query))
        return unknown;
    char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX];
    int np;
    bool known;
    const struct route *r =
        router_find(dispatcher_routes, dispatcher_nroutes, method, path, params, &np, &known, NULL, 0);
    if (r)
        return route_body_limit(l->d, r);
    return unknown;
}

const char *http_body_raw(struct http_ctx *ctx, size_t *len, const char *other_type)
{
    assert(ctx->req->json == NULL); /* only the routes of WebSocket commands, which take JSON */
    *len = ctx->req->p.body_len;
    size_t limit = route_body_limit(ctx->loop->d, ctx->route);
    if (*len > limit) {
        http_reply_error(ctx, 413, "body_too_large", "request body exceeds %zu bytes, the limit of %s %s",
                         limit, ctx->route->method, ctx->route->path);
        return NULL;
    }
    const char *ct = http_req_header(ctx->req, "Content-Type");
    if (*len > 0 && ct && !media_type_is(ct, "application/json") &&
        !(other_type && media_type_is(ct, other_type))) {
        http_reply_error(ctx, 415, "unsupported_media_type", "Content-Type must be application/json%s%s",
                         other_type ? " or " : "", other_type ? other_type : "");
        return NULL;
    }
    return *len ? ctx->req->p.body : "";
}

cJSON *http_body_json(struct http_ctx *ctx, const struct json_field *fields, size_t nfields,
                      bool empty_ok)
{
    size_t len;
    char err[ERRBUF_LEN];
    cJSON *root = ctx->req->json;
    if (root) {
        ctx->req->json = NULL; /* parsed with its command, and within the route's limit (wscmd.c) */
    } else if (ctx->req->p.body_len == 0 && empty_ok) {
        return cJSON_CreateObject();
    } else {
        const char *data = http_body_raw(ctx, &len, NULL);
        if (data == NULL)
            return NULL;
        root = json_parse_strict(data, len, err, sizeof err);
    }
    if (root == NULL) {
        http_reply_error(ctx, 400, "bad_json", "%s", err);
    } else if (!json_check_object(root, fields, nfields, err, sizeof err)) {
        http_reply_error(ctx, 400, "invalid_field", "%s", err);
        cJSON_Delete(root);
        root = NULL;
    }
    return root;
}

struct http_pending *http_pending_new(struct http_ctx *ctx)
{
    struct http_pending *p = calloc(1, sizeof *p);
    if (p == NULL) {
        http_reply_error(ctx, 503, "overloaded", "out of memory");
        return NULL;
    }
    p->loop = ctx->loop;
    p->req = ctx->req;
    p->route = ctx->route;
    p->start_us = ctx->start_us;
    memcpy(p->request_id, ctx->request_id, sizeof p->request_id);
    atomic_fetch_add(&ctx->loop->d->inflight, 1);
    return p;
}

void http_pending_reply_text(struct http_pending *p, int code, const char *json, size_t len)
{
    http_pending_reply_typed(p, code, "application/json", json, len);
}

void http_pending_reply_typed(struct http_pending *p, int code, const char *content_type, const char *body,
                              size_t len)
{
    end_request_span(p->req, code);
    if (http_req_gone(p->req))
        http_req_abandon(p->req); /* the client left: nobody to answer */
    else
        code = httpconn_send(p->req, p->request_id, code, content_type, body, len);
    count_reply(p->route, code, p->start_us);
    atomic_fetch_sub(&p->loop->d->inflight, 1);
    free(p);
}

void http_pending_reply(struct http_pending *p, int code, const cJSON *body)
{
    if (http_req_gone(p->req)) { /* nothing to print: nobody to answer */
        http_pending_reply_text(p, code, "", 0);
        return;
    }
    char *text = json_print(body);
    if (text)
        http_pending_reply_text(p, code, text, strlen(text));
    else
        http_pending_reply_text(p, 500, HTTP_OOM_BODY, sizeof HTTP_OOM_BODY - 1);
    free(text);
}

void http_pending_error(struct http_pending *p, int code, const char *errcode, const char *msg)
{
    cJSON *body = json_error_body(errcode, msg);
    http_pending_reply(p, code, body);
    cJSON_Delete(body);
}

void http_pending_errorf(struct http_pending *p, int code, const char *errcode, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    json_utf8_trim(msg); /* cut by the buffer: at a character's start, not inside it */
    va_end(ap);
    http_pending_error(p, code, errcode, msg);
}

/* A client's X-Request-Id is kept if it is short and plain; else we mint one. */
static void pick_request_id(struct http_req *req, char out[65])
{
    const char *given = http_req_header(req, "X-Request-Id");
    if (given && sb_token_valid(given, 1, 64)) {
        memcpy(out, given, strlen(given) + 1);
        return;
    }
    http_mint_request_id(out);
}

static void enqueued_on_loop(void *arg)
{
    struct http_enqueue *e = arg;
    char tid[33] = "";
    if (e->span.ctx.valid) {
        trace_id_hex(&e->span.ctx, tid);
        trace_span_end(&e->span, e->err != 0);
    }
    log_set_trace(tid);
    e->done(e->arg, e->err); /* may free e */
    log_set_trace(NULL);
}

/* On librdkafka's delivery-report thread. */
static void enqueue_delivered(void *opaque, rd_kafka_resp_err_t err)
{
    struct http_enqueue *e = opaque;
    e->err = err;
    loopq_post_item(e->loop->q, &e->item, enqueued_on_loop, e);
}

bool http_enqueue(struct http_enqueue *e, struct loop *l, const struct trace_ctx *trace, const char *topic,
                  const char *key, size_t keylen, const char *job, http_enqueued_fn done, void *arg, char *errbuf,
                  size_t errlen)
{
    e->loop = l;
    e->done = done;
    e->arg = arg;
    e->err = 0;
    e->span.ctx.valid = false;
    rd_kafka_headers_t *h = NULL;
    if (trace && trace->valid) {
        /* The job's traceparent names the produce span: the worker's job
         * span is its child. Sampled or not, the decision travels. */
        trace_span_start(&e->span, trace, "kafka.produce", TRACE_PRODUCER);
        trace_span_attr(&e->span, "messaging.destination.name", topic);
        char tp[TRACEPARENT_LEN + 1];
        trace_format(&e->span.ctx, tp);
        h = rd_kafka_headers_new(1);
        if (h)
            rd_kafka_header_add(h, "traceparent", -1, tp, TRACEPARENT_LEN);
    }
    if (kafka_produce(l->d->producer, topic, key, keylen, job, strlen(job), h, enqueue_delivered, e, errbuf,
                      errlen))
        return true;
    trace_span_end(&e->span, true);
    return false;
}

void http_pending_busy(struct http_pending *p)
{
    http_req_add_header(p->req, "Retry-After", "1");
    http_pending_error(p, 503, "overloaded", "the database is busy; retry shortly");
}

bool http_pool_submit(struct http_pending *p, struct threadpool *tp, uint64_t tenant,
                      threadpool_work_fn work, void (*expire)(void *arg), loopq_fn done, void *arg)
{
    struct loop *l = p->loop;
    enum tp_submit st = threadpool_submit_for(tp, tenant, sb_mono_ms() + l->d->cfg->pool_wait_ms, work, expire,
                                              done, l->q, arg);
    if (st == TP_OK)
        return true;
    http_req_add_header(p->req, "Retry-After", "1");
    http_pending_error(p, 503, "overloaded",
                       st == TP_SHARE ? "this client has as many database requests waiting as it may; retry shortly"
                       : st == TP_FULL ? "the database queue is full; retry shortly"
                                       : "cannot queue the database request");
    return false;
}

bool http_query_param(struct http_ctx *ctx, const char *name, char *out, size_t cap)
{
    if (ctx->query == NULL)
        return false;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(ctx->query, &q) != 0)
        return false;
    const char *v = evhttp_find_header(&q, name);
    if (v != NULL && cap > 0) {
        size_t n = strlen(v);
        if (n < cap)
            memcpy(out, v, n + 1);
        else
            out[0] = '\0'; /* too long: invalid, not absent */
    }
    evhttp_clear_headers(&q);
    return v != NULL;
}

/* The query parses, and names only parameters the route takes (a
 * misspelt ?limt= is refused, not read as no limit); false after 400. */
static bool query_ok(struct http_ctx *ctx)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    bool ok = evhttp_parse_query_str(ctx->query, &q) == 0;
    char unknown[64] = "";
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &q, next) {
        char key[48];
        int n = snprintf(key, sizeof key, ",%s,", kv->key);
        if (*unknown == '\0' && (ctx->route->query == NULL || n < 3 || (size_t)n >= sizeof key ||
                                 strstr(ctx->route->query, key) == NULL))
            snprintf(unknown, sizeof unknown, "%s", kv->key);
    }
    evhttp_clear_headers(&q);
    if (!ok)
        http_reply_error(ctx, 400, "bad_request", "malformed query string");
    else if (*unknown)
        http_reply_error(ctx, 400, "invalid_parameter", "unknown query parameter '%s'%s%.*s", unknown,
                         ctx->route->query ? "; this route takes " : " (this route takes none)",
                         ctx->route->query ? (int)strlen(ctx->route->query) - 2 : 0,
                         ctx->route->query ? ctx->route->query + 1 : "");
    return ok && !*unknown;
}

/* The request's span: a child of the client's traceparent, or the root
 * of a new trace; the trace id goes on the lines this turn logs. */
static void start_request_span(struct http_ctx *ctx)
{
    struct http_req *req = ctx->req;
    struct trace_ctx parent;
    /* A malformed traceparent starts a new trace (W3C Trace Context 4.3). */
    bool given = trace_parse(http_req_header(req, "traceparent"), &parent);
    trace_span_start(&req->span, given ? &parent : NULL, ctx->route->name, TRACE_SERVER);
    trace_span_attr(&req->span, "http.request.method", req->p.method);
    trace_span_attr(&req->span, "http.route", ctx->route->path);
    trace_span_attr(&req->span, "request_id", ctx->request_id);
    http_req_log_trace(req);
}

static void dispatch_request(struct loop *l, struct http_req *req)
{
    struct http_ctx ctx = {.loop = l, .req = req, .start_us = sb_mono_us()};
    req->span.ctx.valid = false;
    pick_request_id(req, ctx.request_id);

    const char *path;
    char *query;
    /* The target is in the connection's input: ours to edit. */
    bool ok = router_split_target((char *)req->p.target, &path, &query);
    ctx.query = query;
    if (!ok) {
        http_reply_error(&ctx, 400, "bad_request", "malformed request target");
        return;
    }
    ctx.path = path;
    /* RFC 9112 3.2: an HTTP/1.1 request names its Host exactly once; a
     * request with two could be read two ways by two hops. */
    size_t hosts = 0;
    for (size_t i = 0; i < req->p.nheaders; i++)
        hosts += strcasecmp(req->p.headers[i].name, "Host") == 0;
    if (hosts > 1 || (hosts == 0 && req->p.minor_version >= 1)) {
        http_reply_error(&ctx, 400, "bad_request",
                         hosts ? "more than one Host header" : "an HTTP/1.1 request needs a Host header");
        return;
    }
    bool path_known;
    char allow[64];
    ctx.route = router_find(dispatcher_routes, dispatcher_nroutes, req->p.method, path, ctx.params,
                            &ctx.nparams, &path_known, allow, sizeof allow);
    if (ctx.route && ctx.query && !query_ok(&ctx))
        return;
    if (ctx.route) {
        if (trace_on())
            start_request_span(&ctx);
        access_dispatch(&ctx);
    } else if (path_known) {
        http_req_add_header(req, "Allow", allow);
        http_reply_error(&ctx, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)",
                         req->p.method, path, allow);
    } else {
        http_reply_error(&ctx, 404, "not_found", "no route for %s %s", req->p.method, path);
    }
}

void server_dispatch(struct loop *l, struct http_req *req)
{
    if (!trace_on()) {
        dispatch_request(l, req);
        return;
    }
    /* A pipelined request can be dispatched from within another's
     * completion: that one's trace id goes back on when this one is
     * done, and none of it is on this one's lines. */
    char outer[33];
    log_copy_trace(outer);
    log_set_trace(NULL);
    dispatch_request(l, req);
    log_set_trace(outer);
}

bool loop_init(struct loop *l, struct dispatcher *d, int index, int listen_fd, char *errbuf,
               size_t errlen)
{
    memset(l, 0, sizeof *l);
    l->d = d;
    l->index = index;
    TAILQ_INIT(&l->num_wait);
    l->dispatch = server_dispatch;
    LIST_INIT(&l->ws);
    LIST_INIT(&l->conns);
    l->base = event_base_new();
    if (l->base == NULL)
        goto fail;
    /* One timeout for every connection: libevent keeps such "common"
     * timeouts in a queue instead of its heap, so arming one is O(1). */
    l->io_timeout = event_base_init_common_timeout(l->base, &(struct timeval){HTTPCONN_IO_TIMEOUT_S, 0});
    l->q = loopq_new(l->base);
    l->redis = redis_client_new(l->base, &d->redis_url);
    l->find = findcache_new((size_t)d->cfg->find_cache_size);
    if (l->io_timeout == NULL || l->q == NULL || l->redis == NULL || l->find == NULL)
        goto fail;
    /* Each loop gets its own descriptor for the one socket, so removing a
     * loop's listener never closes the others'. The listener starts
     * disabled: the socket is only bound until server_open() (a bound,
     * not listening socket polls readable and accept() fails with EINVAL,
     * a busy loop of warnings); loop_start_accepting() enables it.
     * Accepted sockets are non-blocking and inherit TCP_NODELAY. */
    int fd = dup(listen_fd);
    l->listener = fd < 0 ? NULL
                         : evconnlistener_new(l->base, httpconn_accept, l,
                                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                                  LEV_OPT_DISABLED,
                                              -1, fd);
    if (l->listener == NULL) {
        if (fd >= 0)
            close(fd);
        goto fail;
    }
    char what[32];
    snprintf(what, sizeof what, "loop-%d", index);
    l->accept_guard = net_accept_guard_new(l->listener, what);
    if (l->accept_guard == NULL)
        goto fail;
    return true;
fail:
    sb_errf(errbuf, errlen, "cannot set up event loop %d", index);
    loop_destroy(l);
    return false;
}

void loop_start_accepting(struct loop *l)
{
    if (l->listener && evconnlistener_enable(l->listener) != 0)
        log_error("cannot enable a loop's listener", "loop=%d", l->index);
}

void loop_stop_accepting(struct loop *l)
{
    net_accept_guard_free(l->accept_guard); /* its timer would enable the listener again */
    l->accept_guard = NULL;
    if (l->listener) {
        evconnlistener_free(l->listener); /* closes the dup'ed fd */
        l->listener = NULL;
    }
}

void loop_destroy(struct loop *l)
{
    if (l->q)
        loopq_free(l->q);
    loop_stop_accepting(l);
    /* The loop has stopped: requests still with a handler are dropped.
     * Their connections close first, and are freed only after the Redis
     * client: freeing it runs the callbacks still pending (NULL replies),
     * which must find their clients gone, not freed. */
    httpconn_break_all(l);
    wsconn_free_all(l); /* their commands in flight find them gone */
    if (l->redis)
        redis_client_free(l->redis);
    httpconn_free_all(l);
    wsconn_free_spares(l);
    findcache_free(l->find);
    if (l->base)
        event_base_free(l->base);
    memset(l, 0, sizeof *l);
}
