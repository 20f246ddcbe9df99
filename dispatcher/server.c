/* server.c - see server.h. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/http.h> /* evhttp_parse_query_str only */
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access.h"
#include "findcache.h"
#include "httpparse.h"
#include "strbuf.h"
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

/* ---- connections ----------------------------------------------------------- */

#define HEAD_MAX 16384      /* request line and header fields */
#define IO_TIMEOUT_S 10     /* from accept or the last reply to a whole request */
#define IN_INITIAL 4096
#define BUF_KEEP (64 << 10) /* an idle connection keeps at most this much buffer */
#define EXTRA_HEADERS 256   /* headers a handler adds (Allow, Retry-After, ...) */

struct http_req {
    struct http_conn *conn;
    struct httpparse_req p;
    size_t extra_len;
    char extra[EXTRA_HEADERS];
};

struct http_conn {
    struct loop *loop;
    int fd; /* -1 once closed */
    struct event *rev, *wev, *timer;
    char *in;
    size_t in_len, in_cap;
    struct strbuf out; /* answers not yet written, from out_off */
    size_t out_off;
    struct http_req req;
    bool busy;          /* a handler has the request and has not replied */
    bool req_done;      /* the request was answered: drop its input next */
    bool close_after;   /* close once the output is written */
    bool peer_eof;      /* the client sent FIN: no more input */
    bool read_paused;   /* input full while busy */
    bool writing;       /* wev added */
    bool timer_armed;
    bool continue_sent; /* 100 Continue for this request */
    bool in_process;    /* conn_process is on the stack */
    LIST_ENTRY(http_conn) link;
};

static void conn_process(struct http_conn *c);

static void conn_free(struct http_conn *c)
{
    LIST_REMOVE(c, link);
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->timer)
        event_free(c->timer);
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    strbuf_free(&c->out);
    free(c);
}

/* Closes the socket; the struct stays while a handler has the request. */
static void conn_break(struct http_conn *c)
{
    if (c->fd < 0)
        return;
    event_del(c->rev);
    event_del(c->wev);
    event_del(c->timer);
    c->writing = c->timer_armed = false;
    close(c->fd);
    c->fd = -1;
}

/* Moves a connection buffer to a new capacity; false (buffer kept) if
 * memory is short. */
static bool buf_resize(char **buf, size_t *cap, size_t new_cap)
{
    char *p = realloc(*buf, new_cap);
    if (p == NULL)
        return false;
    *buf = p;
    *cap = new_cap;
    return true;
}

static void out_str(struct http_conn *c, const char *s)
{
    strbuf_append(&c->out, s, strlen(s));
}

static bool out_drained(const struct http_conn *c)
{
    return c->out_off == c->out.len;
}

/* Writes what the output holds; false on a socket error (or if building
 * the output ran out of memory). */
static bool conn_flush(struct http_conn *c)
{
    if (strbuf_failed(&c->out))
        return false;
    while (!out_drained(c)) {
        ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->writing && event_add(c->wev, NULL) != 0)
                return false;
            c->writing = true;
            return true;
        } else {
            return false;
        }
    }
    c->out_off = c->out.len = 0;
    if (c->out.cap > BUF_KEEP)
        strbuf_free(&c->out);
    if (c->writing) {
        event_del(c->wev);
        c->writing = false;
    }
    return true;
}

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

static const char *loop_date(struct loop *l)
{
    time_t now = time(NULL);
    if (now != l->date_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(l->date, sizeof l->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        l->date_at = now;
    }
    return l->date;
}

/* Queues a whole response and starts writing it. keep: the connection
 * stays open for the next request. */
static void conn_respond(struct http_conn *c, int code, const char *request_id, const char *content_type,
                         const char *body, size_t len, bool keep, bool head_only, const char *extra,
                         size_t extra_len)
{
    if (c->fd < 0)
        return;
    out_str(c, "HTTP/1.1 ");
    strbuf_append_i64(&c->out, code >= 100 && code <= 999 ? code : 500);
    out_str(c, " ");
    out_str(c, reason_phrase(code));
    out_str(c, "\r\nDate: ");
    out_str(c, loop_date(c->loop));
    out_str(c, "\r\nContent-Type: ");
    out_str(c, content_type);
    out_str(c, "\r\nX-Request-Id: ");
    out_str(c, request_id);
    out_str(c, "\r\nContent-Length: ");
    strbuf_append_i64(&c->out, (int64_t)len);
    out_str(c, "\r\n");
    strbuf_append(&c->out, extra, extra_len);
    if (!keep)
        out_str(c, "Connection: close\r\n");
    else if (c->req.p.minor_version == 0)
        out_str(c, "Connection: keep-alive\r\n");
    out_str(c, "\r\n");
    if (!head_only)
        strbuf_append(&c->out, body, len);
    if (!keep)
        c->close_after = true;
    if (!conn_flush(c))
        conn_break(c);
}

static const char OOM_BODY[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";

static cJSON *error_body(const char *errcode, const char *msg)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", errcode);
    cJSON_AddStringToObject(e, "message", msg);
    return root;
}

/* A new request id (for a request that brought none we keep). */
static void mint_request_id(char out[33])
{
    if (!sb_random_id(out))
        snprintf(out, 33, "%016llx", (unsigned long long)sb_mono_us());
}

/* Answers input that is not a request we can take, then closes. */
static void conn_refuse(struct http_conn *c, int code, const char *errcode, const char *msg)
{
    char id[33];
    mint_request_id(id);
    log_debug("bad request", "request_id=%s status=%d reason=\"%s\"", id, code, msg);
    cJSON *body = error_body(errcode, msg);
    char *text = json_print(body);
    cJSON_Delete(body);
    if (text)
        conn_respond(c, code, id, "application/json", text, strlen(text), false, false, "", 0);
    else
        conn_respond(c, 500, id, "application/json", OOM_BODY, sizeof OOM_BODY - 1, false, false, "", 0);
    free(text);
}

static const char *refusal_code(int status)
{
    switch (status) {
    case 413: return "body_too_large";
    case 414: return "uri_too_long";
    case 417: return "expectation_failed";
    case 431: return "headers_too_large";
    case 501: return "not_implemented";
    default: return "bad_request";
    }
}

static void on_request(struct http_conn *c);

/* Room for the request being read; false if it cannot fit. */
static bool conn_make_room(struct http_conn *c)
{
    const struct httpparse_req *p = &c->req.p;
    size_t limit = HTTPPARSE_MAX_INPUT(HEAD_MAX, (size_t)c->loop->d->cfg->max_body_bytes);
    size_t need = c->in_len + 1;
    if (p->head_len > 0 && !p->chunked && p->head_len + (size_t)p->content_length > need)
        need = p->head_len + (size_t)p->content_length; /* the whole body at once */
    if (need <= c->in_cap)
        return true;
    if (need > limit)
        return false;
    size_t cap = c->in_cap * 2 > need ? c->in_cap * 2 : need;
    return buf_resize(&c->in, &c->in_cap, cap < limit ? cap : limit);
}

/* Drops the answered request's bytes from the input. */
static void conn_consume(struct http_conn *c)
{
    size_t used = c->req.p.total_len;
    if (used > c->in_len)
        used = c->in_len;
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    httpparse_reset(&c->req.p);
    c->req.extra_len = 0;
    c->req_done = c->continue_sent = false;
    if (c->in_cap > BUF_KEEP && c->in_len < IN_INITIAL)
        (void)buf_resize(&c->in, &c->in_cap, IN_INITIAL); /* if not, it stays large */
}

/* Serves what the input holds, one request at a time; frees the
 * connection when it is over. Runs after input, after a reply and after
 * the output drained. */
static void conn_process(struct http_conn *c)
{
    c->in_process = true;
    while (c->fd >= 0 && !c->busy && out_drained(c) && !c->close_after) {
        if (c->req_done)
            conn_consume(c);
        if (c->in_len == 0)
            break;
        size_t max_body = (size_t)c->loop->d->cfg->max_body_bytes;
        enum httpparse_result r = httpparse_feed(&c->req.p, c->in, c->in_len, HEAD_MAX, max_body);
        if (r == HTTPPARSE_BAD) {
            conn_refuse(c, c->req.p.status, refusal_code(c->req.p.status), c->req.p.reason);
            break;
        }
        if (r == HTTPPARSE_MORE) {
            if (!conn_make_room(c)) {
                conn_refuse(c, 413, "body_too_large", "request too large");
                break;
            }
            if (c->req.p.head_len > 0 && c->req.p.expect_continue && !c->continue_sent) {
                c->continue_sent = true;
                out_str(c, "HTTP/1.1 100 Continue\r\n\r\n");
                if (!conn_flush(c))
                    conn_break(c);
            }
            break;
        }
        c->busy = true;
        if (c->timer_armed) {
            event_del(c->timer);
            c->timer_armed = false;
        }
        on_request(c); /* may answer at once, then the loop goes on */
    }
    c->in_process = false;
    if (c->busy)
        return;
    bool drained = out_drained(c);
    if (c->fd < 0 || (drained && (c->close_after || c->peer_eof))) {
        conn_free(c);
        return;
    }
    if (c->read_paused && c->in_len < c->in_cap && !c->peer_eof) {
        event_add(c->rev, NULL);
        c->read_paused = false;
    }
    if (!c->timer_armed) {
        event_add(c->timer, c->loop->io_timeout);
        c->timer_armed = true;
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct http_conn *c = arg;
    if (c->in_len == c->in_cap) {
        /* Input waits while a request is with its handler (its pointers
         * into the buffer must not move); reading resumes after it. */
        event_del(c->rev);
        c->read_paused = true;
        return;
    }
    ssize_t n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n > 0) {
        c->in_len += (size_t)n;
    } else if (n == 0) {
        c->peer_eof = true;
        event_del(c->rev);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return;
    } else {
        conn_break(c);
    }
    if (!c->busy)
        conn_process(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_conn *c = arg;
    if (!conn_flush(c))
        conn_break(c);
    if (!c->busy && out_drained(c))
        conn_process(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_conn *c = arg;
    c->timer_armed = false;
    /* A request begun and not finished in time gets 408; an idle
     * keep-alive connection, or one whose client stopped reading, just
     * closes. */
    if (c->in_len > 0 && out_drained(c) && !c->req_done)
        conn_refuse(c, 408, "request_timeout", "request not received in time");
    conn_break(c);
    conn_process(c);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)lev;
    (void)sa;
    (void)salen;
    struct loop *l = arg;
    struct http_conn *c = calloc(1, sizeof *c);
    if (c == NULL || (c->in = malloc(IN_INITIAL)) == NULL) {
        free(c);
        close(fd);
        log_warn("connection refused: out of memory", "loop=%d", l->index);
        return;
    }
    c->loop = l;
    c->fd = fd;
    c->in_cap = IN_INITIAL;
    c->req.conn = c;
    httpparse_reset(&c->req.p);
    LIST_INSERT_HEAD(&l->conns, c, link);
    c->rev = event_new(l->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    c->wev = event_new(l->base, fd, EV_WRITE | EV_PERSIST, on_writable, c);
    c->timer = evtimer_new(l->base, on_timeout, c);
    if (c->rev == NULL || c->wev == NULL || c->timer == NULL || event_add(c->rev, NULL) != 0) {
        log_warn("connection refused: cannot watch it", "loop=%d", l->index);
        conn_free(c);
        return;
    }
    conn_process(c); /* arms the timer */
}

/* The request has been answered (or abandoned): go on with the input. */
static void conn_request_over(struct http_conn *c)
{
    c->busy = false;
    c->req_done = true;
    if (!c->in_process)
        conn_process(c);
}

const char *http_req_header(const struct http_req *req, const char *name)
{
    return httpparse_header(&req->p, name);
}

void http_req_add_header(struct http_req *req, const char *name, const char *value)
{
    size_t n = strlen(name), v = strlen(value);
    if (strpbrk(value, "\r\n") != NULL || req->extra_len + n + v + 4 > sizeof req->extra) {
        log_warn("reply header dropped", "name=%s", name);
        return;
    }
    char *w = req->extra + req->extra_len;
    memcpy(w, name, n);
    memcpy(w + n, ": ", 2);
    memcpy(w + n + 2, value, v);
    memcpy(w + n + 2 + v, "\r\n", 2);
    req->extra_len += n + v + 4;
}

bool http_req_gone(const struct http_req *req)
{
    return req->conn->fd < 0;
}

void http_req_abandon(struct http_req *req)
{
    conn_request_over(req->conn);
}

static void send_reply(struct http_req *req, const char *request_id, int code, const char *content_type,
                       const char *body, size_t len)
{
    struct http_conn *c = req->conn;
    bool keep = req->p.keep_alive && !c->peer_eof && !atomic_load(&c->loop->d->draining);
    conn_respond(c, code, request_id, content_type, body, len, keep, strcmp(req->p.method, "HEAD") == 0,
                 req->extra, req->extra_len);
    conn_request_over(c);
}

/* ---- replies ---------------------------------------------------------------- */

static void count_reply(const struct route *r, int code, int64_t start_us)
{
    if (r == NULL)
        return;
    metric_observe_us(r->latency, sb_mono_us() - start_us);
    metric_add(code >= 500 ? r->c5xx : code >= 400 ? r->c4xx : r->c2xx, 1);
}

void http_reply_raw(struct http_ctx *ctx, int code, const char *content_type, const char *body,
                    size_t len)
{
    send_reply(ctx->req, ctx->request_id, code, content_type, body, len);
    count_reply(ctx->route, code, ctx->start_us);
}

void http_reply_json(struct http_ctx *ctx, int code, const cJSON *body)
{
    char *text = json_print(body);
    if (text == NULL) {
        http_reply_raw(ctx, 500, "application/json", OOM_BODY, sizeof OOM_BODY - 1);
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
    va_end(ap);
    cJSON *body = error_body(errcode, msg);
    http_reply_json(ctx, code, body);
    cJSON_Delete(body);
}

const char *http_body_raw(struct http_ctx *ctx, size_t *len, bool ndjson_ok)
{
    *len = ctx->req->p.body_len;
    if ((int64_t)*len > ctx->loop->d->cfg->max_body_bytes) {
        http_reply_error(ctx, 413, "body_too_large", "request body exceeds %lld bytes",
                         (long long)ctx->loop->d->cfg->max_body_bytes);
        return NULL;
    }
    const char *ct = http_req_header(ctx->req, "Content-Type");
    if (*len > 0 && ct && strncasecmp(ct, "application/json", 16) != 0 &&
        !(ndjson_ok && strncasecmp(ct, "application/x-ndjson", 20) == 0)) {
        http_reply_error(ctx, 415, "unsupported_media_type", "Content-Type must be application/json%s",
                         ndjson_ok ? " or application/x-ndjson" : "");
        return NULL;
    }
    return *len ? ctx->req->p.body : "";
}

cJSON *http_body_json(struct http_ctx *ctx, const struct json_field *fields, size_t nfields,
                      bool empty_ok)
{
    size_t len;
    if (ctx->req->p.body_len == 0 && empty_ok)
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

void http_pending_reply(struct http_pending *p, int code, const cJSON *body)
{
    char *text = NULL;
    if (http_req_gone(p->req)) {
        http_req_abandon(p->req); /* the client left: nobody to answer */
    } else if ((text = json_print(body)) != NULL) {
        send_reply(p->req, p->request_id, code, "application/json", text, strlen(text));
        free(text);
    } else {
        send_reply(p->req, p->request_id, 500, "application/json", OOM_BODY, sizeof OOM_BODY - 1);
        code = 500;
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
static void pick_request_id(struct http_req *req, char out[65])
{
    const char *given = http_req_header(req, "X-Request-Id");
    if (given && sb_token_valid(given, 1, 64)) {
        memcpy(out, given, strlen(given) + 1);
        return;
    }
    mint_request_id(out);
}

/* Length of the path segment at s (strcspn's general set costs ~1 % of
 * the dispatcher's CPU here: every request tries the routes in turn). */
static size_t seg_len(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0' && s[n] != '/')
        n++;
    return n;
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
        size_t pl = seg_len(p), ql = seg_len(q);
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

static void on_request(struct http_conn *c)
{
    struct http_req *req = &c->req;
    struct http_ctx ctx = {.loop = c->loop, .req = req, .start_us = sb_mono_us()};
    pick_request_id(req, ctx.request_id);

    /* The target is origin-form ("/path?query"); absolute-form
     * ("http://host/path"), which proxies send, is taken too. */
    char *target = (char *)req->p.target; /* in the connection's input: ours to edit */
    const char *path = target;
    if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
        target = strchr(strstr(target, "//") + 2, '/');
        path = target ? target : "/"; /* "http://host" is the root */
    }
    if (target) {
        target[strcspn(target, "#")] = '\0';
        char *qm = strchr(target, '?');
        if (qm) {
            *qm = '\0';
            ctx.query = qm + 1;
        }
        if (target[0] != '/' || !httpparse_path_decode(target)) {
            http_reply_error(&ctx, 400, "bad_request", "malformed request target");
            return;
        }
    }
    ctx.path = path;
    const char *method = req->p.method;
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
        access_dispatch(&ctx);
    } else if (path_known) {
        http_req_add_header(req, "Allow", allow);
        http_reply_error(&ctx, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)",
                         method, path, allow);
    } else {
        http_reply_error(&ctx, 404, "not_found", "no route for %s %s", method, path);
    }
}

bool loop_init(struct loop *l, struct dispatcher *d, int index, int listen_fd, char *errbuf,
               size_t errlen)
{
    memset(l, 0, sizeof *l);
    l->d = d;
    l->index = index;
    LIST_INIT(&l->conns);
    l->base = event_base_new();
    if (l->base == NULL)
        goto fail;
    /* One timeout for every connection: libevent keeps such "common"
     * timeouts in a queue instead of its heap, so arming one is O(1). */
    l->io_timeout = event_base_init_common_timeout(l->base, &(struct timeval){IO_TIMEOUT_S, 0});
    l->q = loopq_new(l->base);
    l->redis = redis_client_new(l->base, &d->redis_url);
    l->find = findcache_new((size_t)d->cfg->find_cache_size, d->cfg->find_negative_ttl_ms);
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
                         : evconnlistener_new(l->base, on_accept, l,
                                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                                  LEV_OPT_DISABLED,
                                              -1, fd);
    if (l->listener == NULL) {
        if (fd >= 0)
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
    if (l->listener && evconnlistener_enable(l->listener) != 0)
        log_error("cannot enable a loop's listener", "loop=%d", l->index);
}

void loop_stop_accepting(struct loop *l)
{
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
    struct http_conn *c;
    LIST_FOREACH(c, &l->conns, link)
        conn_break(c);
    if (l->redis)
        redis_client_free(l->redis);
    while (!LIST_EMPTY(&l->conns))
        conn_free(LIST_FIRST(&l->conns));
    findcache_free(l->find);
    if (l->base)
        event_base_free(l->base);
    memset(l, 0, sizeof *l);
}
