/* server.c - see server.h. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access.h"
#include "findcache.h"
#include "json.h"
#include "log.h"

/* Defined in routes_*.c: the route table of this binary. */
extern struct route dispatcher_routes[];
extern const size_t dispatcher_nroutes;

bool server_listen(const char *addr, int *fd_out, char *errbuf, size_t errlen)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    int64_t port;
    if (colon == NULL || (size_t)(colon - addr) >= sizeof host ||
        !sb_parse_i64(colon + 1, 0, 65535, &port)) {
        sb_errf(errbuf, errlen, "listen address must be host:port (got '%s')", addr);
        return false;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        sb_errf(errbuf, errlen, "listen host must be an IPv4 address (got '%s')", host);
        return false;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        sb_errf(errbuf, errlen, "socket: %s", strerror(errno));
        return false;
    }
    int one = 1;
    /* SO_REUSEPORT: more dispatcher processes can serve the same port and
     * the kernel spreads connections among them. */
    /* TCP_NODELAY, inherited by every accepted connection: a reply must go
     * out when written, not wait for the client's delayed ACK (up to 40 ms)
     * of an earlier segment. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        sb_errf(errbuf, errlen, "bind %s: %s", addr, strerror(errno));
        close(fd);
        return false;
    }
    *fd_out = fd;
    return true;
}

bool server_open(int fd, char *errbuf, size_t errlen)
{
    if (listen(fd, 1024) != 0) {
        sb_errf(errbuf, errlen, "listen: %s", strerror(errno));
        return false;
    }
    return true;
}

static void set_common_headers(struct evhttp_request *req, const char *request_id,
                               const char *content_type)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "X-Request-Id", request_id);
}

static void count_reply(const struct route *r, int code, int64_t start_us)
{
    if (r == NULL)
        return;
    metric_observe_us(r->latency, sb_mono_us() - start_us);
    metric_add(code >= 500 ? r->c5xx : code >= 400 ? r->c4xx : r->c2xx, 1);
}

static void send_reply(struct evhttp_request *req, const char *request_id, int code,
                       const char *content_type, const char *body, size_t len)
{
    set_common_headers(req, request_id, content_type);
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL || evbuffer_add(buf, body, len) != 0) {
        /* Nothing sensible left to send; close rather than hang. */
        if (buf)
            evbuffer_free(buf);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evhttp_send_reply(req, code, NULL, buf);
    evbuffer_free(buf);
}

void http_reply_raw(struct http_ctx *ctx, int code, const char *content_type, const char *body,
                    size_t len)
{
    send_reply(ctx->req, ctx->request_id, code, content_type, body, len);
    count_reply(ctx->route, code, ctx->start_us);
}

void http_reply_json(struct http_ctx *ctx, int code, const cJSON *body)
{
    char *text = cJSON_PrintUnformatted(body);
    if (text == NULL) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        http_reply_raw(ctx, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    http_reply_raw(ctx, code, "application/json", text, strlen(text));
    free(text);
}

static cJSON *error_body(const char *errcode, const char *msg)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", errcode);
    cJSON_AddStringToObject(e, "message", msg);
    return root;
}

void http_reply_error(struct http_ctx *ctx, int code, const char *errcode, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *body = error_body(errcode, msg);
    http_reply_json(ctx, code, body);
    cJSON_Delete(body);
}

const char *http_body_raw(struct http_ctx *ctx, size_t *len, bool ndjson_ok)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(ctx->req);
    *len = evbuffer_get_length(in);
    if ((int64_t)*len > ctx->loop->d->cfg->max_body_bytes) {
        http_reply_error(ctx, 413, "body_too_large", "request body exceeds %lld bytes",
                         (long long)ctx->loop->d->cfg->max_body_bytes);
        return NULL;
    }
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(ctx->req), "Content-Type");
    if (*len > 0 && ct && strncasecmp(ct, "application/json", 16) != 0 &&
        !(ndjson_ok && strncasecmp(ct, "application/x-ndjson", 20) == 0)) {
        http_reply_error(ctx, 415, "unsupported_media_type", "Content-Type must be application/json%s",
                         ndjson_ok ? " or application/x-ndjson" : "");
        return NULL;
    }
    const char *data = (const char *)evbuffer_pullup(in, -1);
    return data ? data : "";
}

cJSON *http_body_json(struct http_ctx *ctx, const struct json_field *fields, size_t nfields,
                      bool empty_ok)
{
    size_t len;
    if (evbuffer_get_length(evhttp_request_get_input_buffer(ctx->req)) == 0 && empty_ok)
        return cJSON_CreateObject();
    const char *data = http_body_raw(ctx, &len, false);
    if (data == NULL)
        return NULL;
    char err[ERRBUF_LEN];
    cJSON *root = json_parse_strict(data, len, err, sizeof err);
    if (root == NULL) {
        http_reply_error(ctx, 400, "bad_json", "%s", err);
    } else if (!json_check_object(root, fields, nfields, err, sizeof err)) {
        http_reply_error(ctx, 400, "invalid_field", "%s", err);
        cJSON_Delete(root);
        root = NULL;
    }
    return root;
}

static void on_conn_close(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    struct http_pending *p = arg;
    p->req = NULL; /* libevent frees the request with the connection */
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
    evhttp_connection_set_closecb(evhttp_request_get_connection(ctx->req), on_conn_close, p);
    atomic_fetch_add(&ctx->loop->d->inflight, 1);
    return p;
}

void http_pending_reply(struct http_pending *p, int code, const cJSON *body)
{
    if (p->req) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(p->req), NULL, NULL);
        char *text = cJSON_PrintUnformatted(body);
        if (text) {
            send_reply(p->req, p->request_id, code, "application/json", text, strlen(text));
            free(text);
        } else {
            evhttp_send_error(p->req, 500, NULL);
            code = 500;
        }
    }
    count_reply(p->route, code, p->start_us);
    atomic_fetch_sub(&p->loop->d->inflight, 1);
    free(p);
}

void http_pending_error(struct http_pending *p, int code, const char *errcode, const char *msg)
{
    cJSON *body = error_body(errcode, msg);
    http_pending_reply(p, code, body);
    cJSON_Delete(body);
}

void http_pending_errorf(struct http_pending *p, int code, const char *errcode, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    http_pending_error(p, code, errcode, msg);
}

/* A client's X-Request-Id is kept if it is short and plain; else we mint one. */
static void pick_request_id(struct evhttp_request *req, char out[65])
{
    const char *given = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    if (given && sb_token_valid(given, 1, 64)) {
        memcpy(out, given, strlen(given) + 1);
        return;
    }
    char id[33];
    if (!sb_random_id(id))
        snprintf(id, sizeof id, "%016llx", (unsigned long long)sb_mono_us());
    memcpy(out, id, sizeof id);
}

/* Matches path against pattern segment by segment, capturing {params}. */
static bool route_match(const char *pattern, const char *path, struct http_ctx *ctx)
{
    int np = 0;
    const char *p = pattern, *q = path;
    while (*p && *q) {
        if (*p != '/' || *q != '/')
            return false;
        p++;
        q++;
        size_t pl = strcspn(p, "/"), ql = strcspn(q, "/");
        if (pl > 2 && p[0] == '{' && p[pl - 1] == '}') {
            if (ql == 0 || ql >= sizeof ctx->params[0] || np == 4)
                return false;
            memcpy(ctx->params[np], q, ql);
            ctx->params[np][ql] = '\0';
            np++;
        } else if (pl != ql || memcmp(p, q, pl) != 0) {
            return false;
        }
        p += pl;
        q += ql;
    }
    if (*p || *q)
        return false;
    ctx->nparams = np;
    return true;
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
    bool found = v != NULL && strlen(v) < cap;
    if (found)
        memcpy(out, v, strlen(v) + 1);
    evhttp_clear_headers(&q);
    return found;
}

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    default: return "OTHER";
    }
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct loop *l = arg;
    struct http_ctx ctx = {.loop = l, .req = req, .start_us = sb_mono_us()};
    pick_request_id(req, ctx.request_id);

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
    char *path = raw_path ? evhttp_uridecode(raw_path, 0, NULL) : NULL;
    if (path == NULL) {
        http_reply_error(&ctx, 400, "bad_request", "malformed request URI");
        return;
    }
    ctx.path = path;
    ctx.query = evhttp_uri_get_query(uri);
    const char *method = method_name(evhttp_request_get_command(req));
    bool path_known = false;
    char allow[64] = "";
    for (size_t i = 0; i < dispatcher_nroutes; i++) {
        struct route *r = &dispatcher_routes[i];
        if (!route_match(r->path, path, &ctx))
            continue;
        path_known = true;
        if (strcmp(r->method, method) == 0) {
            ctx.route = r;
            break;
        }
        size_t n = strlen(allow);
        snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "", r->method);
    }
    if (ctx.route) {
        access_dispatch(&ctx, path); /* takes path */
        return;
    } else if (path_known) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
        http_reply_error(&ctx, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)",
                         method, path, allow);
    } else {
        http_reply_error(&ctx, 404, "not_found", "no route for %s %s", method, path);
    }
    free(path);
}

bool loop_init(struct loop *l, struct dispatcher *d, int index, int listen_fd, char *errbuf,
               size_t errlen)
{
    memset(l, 0, sizeof *l);
    l->d = d;
    l->index = index;
    l->base = event_base_new();
    if (l->base == NULL)
        goto fail;
    l->http = evhttp_new(l->base);
    l->q = loopq_new(l->base);
    l->redis = redis_client_new(l->base, &d->redis_url);
    l->find = findcache_new((size_t)d->cfg->find_cache_size, d->cfg->find_negative_ttl_ms);
    if (l->http == NULL || l->q == NULL || l->redis == NULL || l->find == NULL)
        goto fail;
    evhttp_set_max_body_size(l->http, d->cfg->max_body_bytes);
    evhttp_set_max_headers_size(l->http, 16384);
    /* Slow or stalled clients are cut off instead of holding a slot. */
    evhttp_set_timeout(l->http, 10);
    evhttp_set_allowed_methods(l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(l->http, on_request, l);
    /* Each loop gets its own descriptor for the one socket, so removing a
     * loop's listener never closes the others'. The listener starts
     * disabled: the socket is only bound until server_open() (a bound,
     * not listening socket polls readable and accept() fails with EINVAL,
     * a busy loop of warnings); loop_start_accepting() enables it. */
    int fd = dup(listen_fd);
    struct evconnlistener *lev =
        fd < 0 ? NULL
               : evconnlistener_new(l->base, NULL, NULL,
                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED, -1, fd);
    if (lev == NULL || (l->bound = evhttp_bind_listener(l->http, lev)) == NULL) {
        if (lev)
            evconnlistener_free(lev); /* closes fd */
        else if (fd >= 0)
            close(fd);
        goto fail;
    }
    return true;
fail:
    sb_errf(errbuf, errlen, "cannot set up event loop %d", index);
    loop_destroy(l);
    return false;
}

void loop_start_accepting(struct loop *l)
{
    if (l->bound && evconnlistener_enable(evhttp_bound_socket_get_listener(l->bound)) != 0)
        log_error("cannot enable a loop's listener", "loop=%d", l->index);
}

void loop_stop_accepting(struct loop *l)
{
    if (l->bound) {
        evhttp_del_accept_socket(l->http, l->bound); /* closes the dup'ed fd */
        l->bound = NULL;
    }
}

void loop_destroy(struct loop *l)
{
    if (l->q)
        loopq_free(l->q);
    if (l->http)
        evhttp_free(l->http);
    if (l->redis)
        redis_client_free(l->redis);
    findcache_free(l->find);
    if (l->base)
        event_base_free(l->base);
    memset(l, 0, sizeof *l);
}
