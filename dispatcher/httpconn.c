/* httpconn.c - see httpconn.h. */
#include "httpconn.h"

#include <assert.h>
#include <errno.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "heap.h"
#include "log.h"
#include "strbuf.h"

#define HEAD_MAX 16384      /* request line and header fields */
#define IN_INITIAL 4096
#define BUF_KEEP (64 << 10) /* an idle connection keeps at most this much buffer */
/* After an early answer (413, 431, 400 on framing) the client may still be
 * sending; closing at once would make the kernel answer its bytes with a
 * reset, which can destroy the answer before the client reads it. So, as
 * nginx does: shut the write side, read and discard until the client
 * closes or LINGER_MS pass. */
#define LINGER_MS 2000

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
    bool linger;        /* refused mid-request: close gently once answered */
    httpconn_takeover_fn takeover; /* the handler takes the socket (httpconn_take_over) */
    void *takeover_arg;
    bool lingering;     /* answered and shut for writing: reading to discard */
    size_t body_limit;  /* of the request's route, once its head is read (0 before) */
    size_t counted;     /* of its unsent output, in the dispatcher's out_bytes */
    LIST_ENTRY(http_conn) link;
};

static void conn_process(struct http_conn *c);

/* After a large answer: hands free heap pages back to the system, at most
 * once a second. The rows of such an answer were allocated on pool
 * threads, in their own arenas, in small pieces; without this, the RSS a
 * burst of large answers raised would stay (heap.h). */
static void give_back(struct dispatcher *d)
{
    long long now = sb_mono_ms(), last = atomic_load(&d->trimmed_ms);
    if (now - last >= 1000 && atomic_compare_exchange_strong(&d->trimmed_ms, &last, now))
        heap_give_back();
}

/* Frees the connection's output buffer (it must hold nothing unsent that
 * anyone will read), giving the heap back after a large one. */
static void out_release(struct http_conn *c)
{
    bool big = c->out.cap > (1 << 20);
    strbuf_free(&c->out);
    c->out_off = 0;
    if (big)
        give_back(c->loop->d);
}

/* Brings the dispatcher's count of unsent output up to date with this
 * connection's (none once its socket is closed). */
static void out_sync(struct http_conn *c)
{
    size_t pending = c->fd >= 0 ? c->out.len - c->out_off : 0;
    if (pending != c->counted)
        atomic_fetch_add(&c->loop->d->out_bytes, (long long)pending - (long long)c->counted);
    c->counted = pending;
}

static void conn_free(struct http_conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    out_sync(c);
    LIST_REMOVE(c, link);
    atomic_fetch_sub(&c->loop->d->connections, 1);
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
    out_sync(c);
    /* Nobody will read it: the memory goes now, not when the handler (if
     * one still has the request) is done. */
    out_release(c);
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
    assert(c->out_off <= c->out.len);
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
            out_sync(c);
            return true;
        } else {
            return false;
        }
    }
    c->out_off = c->out.len = 0;
    out_sync(c);
    if (c->out.cap > BUF_KEEP)
        out_release(c);
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

void http_mint_request_id(char out[33])
{
    if (!sb_random_id(out))
        snprintf(out, 33, "%016llx", (unsigned long long)sb_mono_us());
}

/* Answers input that is not a request we can take, then closes. */
static void conn_refuse(struct http_conn *c, int code, const char *errcode, const char *msg)
{
    char id[33];
    http_mint_request_id(id);
    log_debug("bad request", "request_id=%s status=%d reason=\"%s\"", id, code, msg);
    cJSON *body = json_error_body(errcode, msg);
    char *text = json_print(body);
    cJSON_Delete(body);
    c->linger = true;
    if (text)
        conn_respond(c, code, id, "application/json", text, strlen(text), false, false, "", 0);
    else
        conn_respond(c, 500, id, "application/json", HTTP_OOM_BODY, sizeof HTTP_OOM_BODY - 1, false, false, "", 0);
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
    c->body_limit = 0;
    c->req.extra_len = 0;
    c->req_done = c->continue_sent = false;
    if (c->in_cap > BUF_KEEP && c->in_len < IN_INITIAL)
        (void)buf_resize(&c->in, &c->in_cap, IN_INITIAL); /* if not, it stays large */
}

/* The answer is out: shut the write side (the client sees the end of the
 * answer) and discard what it still sends, for at most LINGER_MS. */
static void conn_linger(struct http_conn *c)
{
    c->lingering = true;
    c->in_len = 0;
    struct timeval tv = sb_timeval_ms(LINGER_MS);
    if (shutdown(c->fd, SHUT_WR) != 0 || event_add(c->rev, NULL) != 0 ||
        event_add(c->timer, &tv) != 0) {
        conn_free(c);
        return;
    }
    c->read_paused = false;
    c->timer_armed = true;
}

/* The handler took the socket over (a WebSocket): it gets the fd and the
 * bytes the client sent after the request; the HTTP side lets go. */
static void hand_over(struct http_conn *c)
{
    size_t used = c->req.p.total_len < c->in_len ? c->req.p.total_len : c->in_len;
    int fd = c->fd;
    c->fd = -1; /* conn_free must not close it */
    event_del(c->rev);
    event_del(c->wev);
    event_del(c->timer);
    httpconn_takeover_fn fn = c->takeover;
    void *arg = c->takeover_arg;
    struct loop *l = c->loop;
    /* The leftover is copied by fn before the connection's input goes. */
    fn(l, fd, c->in + used, c->in_len - used, arg);
    conn_free(c);
}

/* Serves what the input holds, one request at a time; frees the
 * connection when it is over. Runs after input, after a reply and after
 * the output drained. */
static void conn_process(struct http_conn *c)
{
    assert(!c->in_process);           /* not re-entered: a reply inside dispatch returns here */
    assert(!(c->busy && c->lingering)); /* lingering only after the answer */
    c->in_process = true;
    while (c->fd >= 0 && !c->busy && out_drained(c) && !c->close_after) {
        if (c->req_done)
            conn_consume(c);
        if (c->in_len == 0)
            break;
        size_t max_body = c->body_limit ? c->body_limit : (size_t)c->loop->d->cfg->max_body_bytes;
        enum httpparse_result r = httpparse_feed(&c->req.p, c->in, c->in_len, HEAD_MAX, max_body);
        if (r == HTTPPARSE_BAD) {
            conn_refuse(c, c->req.p.status, refusal_code(c->req.p.status), c->req.p.reason);
            break;
        }
        if (c->body_limit == 0 && c->req.p.head_len > 0) {
            /* Each route takes the body its fields need: a larger one is
             * refused now, before it is read (and a chunked one as it
             * grows, by the parser). */
            size_t small = ROUTE_BODY_SMALL < max_body ? ROUTE_BODY_SMALL : max_body;
            c->body_limit = !c->req.p.chunked && c->req.p.content_length <= (int64_t)small
                                ? small /* every route takes that much: no look-up */
                                : server_body_limit(c->loop, c->in + c->req.p.method_off,
                                                    c->in + c->req.p.target_off);
            if (c->req.p.content_length > (int64_t)c->body_limit ||
                (r == HTTPPARSE_DONE && c->req.p.body_len > c->body_limit)) {
                conn_refuse(c, 413, "body_too_large", "request body too large for this route");
                break;
            }
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
        c->loop->dispatch(c->loop, &c->req); /* may answer at once, then the loop goes on */
        if (c->takeover) {
            hand_over(c);
            return;
        }
    }
    c->in_process = false;
    if (c->busy)
        return;
    bool drained = out_drained(c);
    if (c->fd >= 0 && drained && c->close_after && c->linger && !c->peer_eof && !c->lingering) {
        conn_linger(c);
        return;
    }
    if (c->lingering)
        return;
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
    if (c->lingering) {
        char discard[16384];
        ssize_t n = recv(fd, discard, sizeof discard, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            conn_free(c); /* the client closed: done */
        return;
    }
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
        conn_break(c); /* the client is gone: conn_process frees it */
    if (!c->busy && (c->fd < 0 || out_drained(c)))
        conn_process(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_conn *c = arg;
    c->timer_armed = false;
    if (c->lingering) { /* the client kept sending: enough */
        conn_free(c);
        return;
    }
    /* A request begun and not finished in time gets 408; an idle
     * keep-alive connection, or one whose client stopped reading, just
     * closes. */
    if (c->in_len > 0 && out_drained(c) && !c->req_done)
        conn_refuse(c, 408, "request_timeout", "request not received in time");
    conn_break(c);
    conn_process(c);
}

#define BUSY_BODY \
    "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server has as many connections as it serves " \
    "(max_connections); retry later\"}}"
#define BUSY_REPLY \
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n" \
    "Connection: close\r\nContent-Length: "

/* A connection beyond max_connections: a 503 at once, without reading a
 * request, and closed. A client learns at once to go elsewhere or retry,
 * and the descriptors other connections and the stores need stay free.
 * What the client already sent is read first, so that closing sends FIN,
 * not a reset that could discard the answer. Best effort: a socket that
 * cannot take the answer now is just closed. */
static void refuse_busy(struct loop *l, int fd)
{
    static const char body[] = BUSY_BODY;
    char reply[512], drain[4096];
    int64_t skipped;
    metric_add(l->d->m_refused, 1); /* counted before the client can see the answer */
    if (log_every_due(&l->refused_log, 1000, &skipped))
        log_warn("connection refused: max_connections reached", "loop=%d max_connections=%d repeats=%lld",
                 l->index, l->d->max_connections, (long long)skipped);
    int n = snprintf(reply, sizeof reply, "%s%zu\r\n\r\n%s", BUSY_REPLY, sizeof body - 1, body);
    if (send(fd, reply, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN)
        log_debug("busy answer not sent", "err=\"%s\"", strerror(errno));
    for (int i = 0; i < 16 && recv(fd, drain, sizeof drain, MSG_DONTWAIT) > 0; i++)
        ;
    close(fd);
}

void httpconn_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)lev;
    (void)sa;
    (void)salen;
    struct loop *l = arg;
    /* Loops check and count apart: all of them at once can let in one
     * each past the limit, which the reserve of descriptors covers. */
    if (atomic_load(&l->d->connections) >= l->d->max_connections) {
        refuse_busy(l, fd);
        return;
    }
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
    atomic_fetch_add(&l->d->connections, 1); /* conn_free takes it off */
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
    assert(c->busy && !c->req_done); /* one answer per request */
    c->busy = false;
    c->req_done = true;
    if (!c->in_process)
        conn_process(c);
}

void httpconn_take_over(struct http_req *req, httpconn_takeover_fn fn, void *arg)
{
    struct http_conn *c = req->conn;
    assert(c && c->busy && c->in_process && out_drained(c));
    c->busy = false;
    c->takeover = fn;
    c->takeover_arg = arg;
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
    return req->conn ? req->conn->fd < 0 : req->owner->gone(req);
}

void http_req_abandon(struct http_req *req)
{
    if (req->conn)
        conn_request_over(req->conn);
    else
        req->owner->abandon(req);
}

#define BUSY_OUT_BODY \
    "{\"error\":{\"code\":\"overloaded\",\"message\":\"the server holds as many unsent answers as it may " \
    "(max_output_bytes); retry shortly\"}}"

int httpconn_send(struct http_req *req, const char *request_id, int code, const char *content_type,
                  const char *body, size_t len)
{
    struct http_conn *c = req->conn;
    if (c == NULL) { /* the owner bounds its own output */
        req->owner->answer(req, code, body, len);
        return code;
    }
    struct dispatcher *d = c->loop->d;
    /* Memory follows clients that do not read: a large answer that would
     * take the unsent output of all connections over max_output_bytes is
     * replaced by a 503. (A client that stops reading is closed after
     * io_timeout; meanwhile its answer waits here.) */
    if (len > HTTP_OUT_SMALL && atomic_load(&d->out_bytes) + (long long)len > d->cfg->max_output_bytes) {
        log_warn("answer refused: too much unsent output", "request_id=%s bytes=%zu", request_id, len);
        http_req_add_header(req, "Retry-After", "1");
        code = 503;
        content_type = "application/json";
        body = BUSY_OUT_BODY;
        len = sizeof BUSY_OUT_BODY - 1;
    }
    bool keep = req->p.keep_alive && !c->peer_eof && !atomic_load(&d->draining);
    conn_respond(c, code, request_id, content_type, body, len, keep, strcmp(req->p.method, "HEAD") == 0,
                 req->extra, req->extra_len);
    conn_request_over(c);
    return code;
}


void httpconn_break_all(struct loop *l)
{
    struct http_conn *c;
    LIST_FOREACH(c, &l->conns, link)
        conn_break(c);
}

void httpconn_free_all(struct loop *l)
{
    while (!LIST_EMPTY(&l->conns))
        conn_free(LIST_FIRST(&l->conns));
}
