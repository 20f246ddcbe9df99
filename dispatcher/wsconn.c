/* wsconn.c - see wsconn.h. */
#include "wsconn.h"

#include <assert.h>
#include <stddef.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "access.h"
#include "httpconn.h"
#include "jwt.h"
#include "log.h"
#include "strbuf.h"
#include "wscmd.h"

/* Frames waiting for the socket: wslay writes into the connection's
 * output (send_cb) until this much is there, and the output goes out
 * with one send() per turn, however many frames it holds. */
#define WS_OUT_CHUNK ((size_t)64 << 10)
/* After a close went out, how long the client has to answer it. */
#define WS_CLOSE_WAIT_MS 2000
/* Replies at ws_max_reply_bytes that the client takes none of for this
 * long: it does not read them (close 1008). */
#define WS_STALL_MS 2000
/* A reply or backlog buffer grown past this is given back once empty. */
#define WS_KEEP_BYTES ((size_t)64 << 10)

struct ws_cmd;

struct ws_conn {
    struct loop *loop;
    int fd;
    struct event *rev, *wev, *timer, *flush;
    wslay_event_context_ptr ctx;
    struct strbuf out; /* bytes for the socket: the 101, then frames */
    size_t out_off;
    char *left; /* bytes the client sent with the upgrade request, read first */
    size_t left_len, left_off;
    bool echo;      /* GET /ws/echo: messages come back as they came */
    bool reading;   /* rev added */
    bool writing;   /* wev added */
    bool paused;    /* ws_max_inflight commands without a reply: the socket is not read */
    bool draining;  /* SIGTERM: no new commands; 1001 once every reply is out */
    bool closing;   /* a close is queued: replies are dropped, the timer frees */
    bool sock_failed; /* recv saw the peer's end or an error */
    bool cut;         /* send_cb took less than wslay gave: a frame is half out */
    bool flush_armed; /* on_flush is due this turn: event_active (a locked call) once */
    bool rx_short;    /* this pump's last recv filled less than asked: the socket is empty */
    int64_t stall_ms; /* since when replies sit at ws_max_reply_bytes untaken (0: they do not) */
    int inflight;   /* commands without a reply */
    int64_t last_rx_ms; /* the client's last bytes */
    long long queued;   /* reply bytes counted in loop->ws_queued */
    struct access_grant grant;
    struct strbuf replies; /* reply lines for the next message */
    /* Lines received but not yet run: the rest of a message that reached
     * ws_max_inflight, and messages wslay had read before (at most one
     * message and one read: wslay reads 4 KiB at a time). */
    struct strbuf backlog;
    size_t backlog_off;
    LIST_HEAD(, ws_cmd) cmds;
    LIST_ENTRY(ws_conn) link;
};

/* A command in flight: a request of its route, whose answer comes back
 * through ws_owner. */
struct ws_cmd {
    struct http_req req;
    struct ws_conn *w; /* NULL once the connection is gone */
    struct loop *loop;
    LIST_ENTRY(ws_cmd) link;
    struct wscmd c;
    struct ws_cmd *next_spare;
};

/* Freed commands are kept for the next ones, up to this many a loop: a
 * command is 3 KiB, and an allocation that large makes glibc's malloc
 * consolidate its small free chunks every time (~10 % of the dispatcher's
 * CPU under WebSocket load, perf). */
#define WS_SPARE_MAX 1024

static struct ws_cmd *cmd_alloc(struct loop *l)
{
    struct ws_cmd *c = l->ws_spare;
    if (c == NULL && (c = malloc(sizeof *c)) == NULL)
        return NULL;
    if (c == l->ws_spare) {
        l->ws_spare = c->next_spare;
        l->ws_nspare--;
    }
    c->req.span.ctx.valid = false; /* WebSocket commands are not traced */
    return c;
}

static void pump(struct ws_conn *w, bool readable);
static void run_backlog(struct ws_conn *w);

bool ws_accept_key(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char raw[32], src[24 + sizeof guid - 1], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    /* 16 bytes in base64: 22 characters and "==" */
    if (strlen(key) != 24 || EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18 || key[22] != '=' ||
        key[23] != '=')
        return false;
    memcpy(src, key, 24);
    memcpy(src + 24, guid, sizeof guid - 1);
    if (!EVP_Digest(src, sizeof src, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return false;
    return EVP_EncodeBlock((unsigned char *)out, md, 20) == 28;
}

/* Reply bytes the connection holds: lines not yet in a message, messages
 * wslay has queued, output not yet taken by the socket. */
static size_t held_bytes(const struct ws_conn *w)
{
    return w->replies.len + wslay_event_get_queued_msg_length(w->ctx) + (w->out.len - w->out_off);
}

static void count_held(struct ws_conn *w, long long now)
{
    loop_count(&w->loop->ws_queued, now - w->queued);
    w->queued = now;
}

static void ws_free(struct ws_conn *w)
{
    struct dispatcher *d = w->loop->d;
    LIST_REMOVE(w, link);
    atomic_fetch_sub(&d->connections, 1);
    atomic_fetch_sub(&d->ws_open, 1);
    count_held(w, 0);
    struct ws_cmd *c;
    LIST_FOREACH(c, &w->cmds, link)
        c->w = NULL; /* their handlers finish, and find nobody to answer */
    if (w->ctx)
        wslay_event_context_free(w->ctx);
    if (w->rev)
        event_free(w->rev);
    if (w->wev)
        event_free(w->wev);
    if (w->timer)
        event_free(w->timer);
    if (w->flush)
        event_free(w->flush);
    close(w->fd);
    strbuf_free(&w->out);
    strbuf_free(&w->replies);
    strbuf_free(&w->backlog);
    free(w->left);
    free(w);
}

/* Queues a close (code, reason) once; the connection stops reading and is
 * freed when the client answers, or after WS_CLOSE_WAIT_MS. */
static void ws_close(struct ws_conn *w, uint16_t code, const char *reason)
{
    if (w->closing)
        return;
    w->closing = true;
    w->paused = true;
    if (code == WSLAY_CODE_POLICY_VIOLATION || code == WSLAY_CODE_INTERNAL_SERVER_ERROR)
        log_info("websocket closed", "code=%u reason=\"%s\" in_flight=%d", (unsigned)code, reason, w->inflight);
    else
        log_debug("websocket closed", "code=%u reason=\"%s\"", (unsigned)code, reason);
    strbuf_free(&w->replies);
    wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, strlen(reason));
    struct timeval tv = sb_timeval_ms(WS_CLOSE_WAIT_MS);
    event_add(w->timer, &tv);
}

/* wslay's input: the bytes that came with the upgrade request, then the
 * socket. It must always say why it returns -1 (wslay keeps the last). */
static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *arg)
{
    (void)flags;
    struct ws_conn *w = arg;
    if (w->paused && !w->closing) { /* at the limit of commands: TCP holds the rest */
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (w->left_off < w->left_len) {
        size_t n = w->left_len - w->left_off < len ? w->left_len - w->left_off : len;
        memcpy(buf, w->left + w->left_off, n);
        w->left_off += n;
        return (ssize_t)n;
    }
    /* wslay reads until EAGAIN; after a short read that recv would almost
     * always be one: the loop tells if bytes came since (level-triggered). */
    if (w->rx_short) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    ssize_t n;
    do
        n = recv(w->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        w->rx_short = (size_t)n < len;
        w->last_rx_ms = sb_mono_ms();
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        w->sock_failed = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE); /* closed or broken */
    }
    return -1;
}

/* wslay's output goes into w->out (see WS_OUT_CHUNK). */
static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *arg)
{
    (void)flags;
    struct ws_conn *w = arg;
    size_t room = w->out.len - w->out_off < WS_OUT_CHUNK ? WS_OUT_CHUNK - (w->out.len - w->out_off) : 0;
    w->cut = room < len;
    if (room == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < room ? len : room;
    strbuf_append(&w->out, (const char *)data, n);
    if (strbuf_failed(&w->out)) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)n;
}

/* Sends w->out: 1 all of it went, 0 the socket is full, -1 it failed. */
static int flush_out(struct ws_conn *w)
{
    while (w->out_off < w->out.len) {
        ssize_t n = send(w->fd, w->out.p + w->out_off, w->out.len - w->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0)
            return -1;
        w->out_off += (size_t)n;
        w->stall_ms = 0; /* the client takes its replies */
    }
    w->out.len = w->out_off = 0;
    return 1;
}

/* The reply lines gathered since the last turn go out as one message. */
static void flush_replies(struct ws_conn *w)
{
    if (w->replies.len == 0 || w->closing)
        return;
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)w->replies.p, w->replies.len};
    if (wslay_event_queue_msg(w->ctx, &m) != 0)
        ws_close(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, "cannot queue replies");
    w->replies.len = 0;
    if (w->replies.cap > WS_KEEP_BYTES) /* wslay has its copy */
        strbuf_free(&w->replies);
}

/* Replies past ws_max_reply_bytes: no more lines run and the socket is
 * not read until the client takes some (the echo has no replies). */
static bool replies_full(const struct ws_conn *w)
{
    return !w->echo && held_bytes(w) >= (size_t)w->loop->d->cfg->ws_max_reply_bytes;
}

/* Lines wait to run: reading waits for them (the backlog's bound). */
static bool backlogged(const struct ws_conn *w)
{
    return w->backlog_off < w->backlog.len;
}

static bool may_read(const struct ws_conn *w)
{
    /* closing: only the answer to the close is awaited */
    return w->closing || (!w->paused && !backlogged(w) && !replies_full(w));
}

/* May the connection run its next line? Draining, each is refused (503). */
static bool may_run(const struct ws_conn *w)
{
    return !w->closing && (!w->paused || w->draining) && !replies_full(w);
}

/* Draining, once every reply has left wslay's queue (a queued close goes
 * before queued messages): time for the 1001. */
static bool drain_done(const struct ws_conn *w)
{
    return w->draining && !w->closing && w->inflight == 0 && w->replies.len == 0 &&
           !backlogged(w) && !wslay_event_want_write(w->ctx);
}

/* Frames from wslay into the output, and the output to the socket, as
 * long as the socket takes it; -1 if it failed. */
static int send_all(struct ws_conn *w)
{
    for (;;) {
        if (wslay_event_want_write(w->ctx) && wslay_event_send(w->ctx) != 0)
            return -1;
        int f = flush_out(w);
        if (f < 0)
            return -1;
        if (f == 0 || !wslay_event_want_write(w->ctx))
            return 0;
    }
}

static void set_event(struct event *ev, bool *on, bool want)
{
    if (want && !*on && event_add(ev, NULL) == 0)
        *on = true;
    else if (!want && *on) {
        event_del(ev);
        *on = false;
    }
}

/* A frame header wslay's frame layer refused (a fragmented or oversized
 * control frame, a length not in its shortest form): wslay then queues a
 * close without a status and fails. The client is told 1002 instead, when
 * nothing else waits to go out; the 4 bytes are a complete server close frame
 * (FIN and opcode 8, length 2, code 1002). False: wslay's close goes. */
static bool send_protocol_error(struct ws_conn *w)
{
    static const char close_1002[] = {(char)0x88, 0x02, 0x03, (char)0xEA};
    if (w->out_off < w->out.len || w->cut || wslay_event_get_queued_msg_count(w->ctx) > 1 || w->closing ||
        wslay_event_get_close_sent(w->ctx) || wslay_event_get_close_received(w->ctx))
        return false; /* more than wslay's close is waiting, or a close was exchanged already */
    strbuf_append(&w->out, close_1002, sizeof close_1002);
    (void)flush_out(w);
    return true;
}

/* Reads and writes what wslay wants; frees the connection when both
 * sides are done or the socket failed. */
/* on_flush runs once this turn, after the other ready events: replies of
 * one turn go out in one frame. event_active takes the base's lock, so a
 * turn that answers many commands calls it once. */
static void arm_flush(struct ws_conn *w)
{
    if (!w->flush_armed) {
        w->flush_armed = true;
        event_active(w->flush, 0, 0);
    }
}

static void pump(struct ws_conn *w, bool readable)
{
    int rv = 0;
    if (readable && may_read(w) && wslay_event_want_read(w->ctx)) {
        w->rx_short = false;
        rv = wslay_event_recv(w->ctx);
        if (rv == WSLAY_ERR_NOMEM) {
            rv = 0; /* wslay's close goes out */
        } else if (rv != 0 && !w->sock_failed) {
            if (send_protocol_error(w)) {
                ws_free(w);
                return;
            }
            rv = 0; /* wslay's close (no status) goes out, then the connection ends */
        }
    }
    /* Lines, their replies, frames to the socket; again while lines wait
     * and the client takes the replies as fast as they come. */
    for (int round = 0; rv == 0 && round < 8; round++) {
        if (backlogged(w) && may_run(w))
            run_backlog(w);
        flush_replies(w);
        rv = send_all(w);
        if (rv == 0 && drain_done(w)) { /* SIGTERM: the last reply went, the 1001 follows */
            ws_close(w, WSLAY_CODE_GOING_AWAY, "shutting down");
            rv = send_all(w);
        }
        if (!backlogged(w) || !may_run(w))
            break;
        if (round == 7) /* more lines: next turn, after the other connections */
            arm_flush(w);
    }
    bool more = w->out_off < w->out.len || wslay_event_want_write(w->ctx);
    if (rv != 0 || (!wslay_event_want_read(w->ctx) && !more)) {
        ws_free(w);
        return;
    }
    /* Replies at the limit stop the reading (replies_full); a client that
     * then takes none of them for WS_STALL_MS does not read them, and is
     * closed: memory per connection stays bounded. */
    if (replies_full(w) && !w->closing) {
        int64_t now = sb_mono_ms();
        if (w->stall_ms == 0) {
            w->stall_ms = now;
            struct timeval tv = sb_timeval_ms(WS_STALL_MS);
            event_add(w->timer, &tv);
        } else if (now - w->stall_ms >= WS_STALL_MS) {
            ws_close(w, WSLAY_CODE_POLICY_VIOLATION, "replies not read");
            more = true;
        }
    }
    if (!backlogged(w) && w->backlog.cap > WS_KEEP_BYTES)
        strbuf_free(&w->backlog);
    count_held(w, (long long)held_bytes(w));
    set_event(w->wev, &w->writing, more);
    set_event(w->rev, &w->reading, may_read(w) && wslay_event_want_read(w->ctx));
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg, true);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg, false);
}

/* Replies arrived during the loop's turn: one message for all of them. */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ws_conn *w = arg;
    w->flush_armed = false;
    /* wslay holds no whole frame between pumps (it parses until it needs
     * bytes): the socket's own are the loop's to report. Only the bytes
     * that came with the upgrade, held while paused, need reading here. */
    pump(w, w->left_off < w->left_len);
}

/* Pings a quiet client; closes one quiet past ws_idle_timeout_ms (a
 * half-open connection answers no ping); frees one that did not answer
 * its close. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ws_conn *w = arg;
    const struct sb_config *cfg = w->loop->d->cfg;
    if (w->closing) {
        ws_free(w);
        return;
    }
    int64_t now = sb_mono_ms();
    if (w->paused || backlogged(w) || replies_full(w)) /* our back-pressure, not the client's silence */
        w->last_rx_ms = now;
    int64_t quiet = now - w->last_rx_ms, next = cfg->ws_ping_interval_ms;
    if (w->stall_ms && replies_full(w) && now - w->stall_ms >= WS_STALL_MS) {
        ws_close(w, WSLAY_CODE_POLICY_VIOLATION, "replies not read");
    } else if (quiet >= cfg->ws_idle_timeout_ms) {
        ws_close(w, WSLAY_CODE_GOING_AWAY, "idle");
    } else {
        if (quiet >= cfg->ws_ping_interval_ms) { /* then again after as long */
            struct wslay_event_msg ping = {WSLAY_PING, NULL, 0};
            (void)wslay_event_queue_msg(w->ctx, &ping);
        } else { /* when the silence reaches the interval */
            next = cfg->ws_ping_interval_ms - quiet;
        }
        if (w->stall_ms && WS_STALL_MS - (now - w->stall_ms) < next)
            next = WS_STALL_MS - (now - w->stall_ms) + 1;
        if (cfg->ws_idle_timeout_ms - quiet < next)
            next = cfg->ws_idle_timeout_ms - quiet;
        struct timeval tv = sb_timeval_ms(next);
        event_add(w->timer, &tv);
    }
    pump(w, false);
}

/* ---- commands ------------------------------------------------------------ */

static void cmd_free(struct ws_cmd *c)
{
    struct ws_conn *w = c->w;
    if (w) {
        LIST_REMOVE(c, link);
        w->inflight--;
        if (w->paused && !w->closing && !w->draining && w->inflight < w->loop->d->cfg->ws_max_inflight)
            w->paused = false;
        arm_flush(w);
    }
    struct loop *l = c->loop;
    loop_count(&l->ws_commands, -1);
    cJSON_Delete(c->req.json); /* not taken: the route answered before reading its body */
    wscmd_clear(&c->c);
    if (l->ws_nspare >= 0 && l->ws_nspare < WS_SPARE_MAX) {
        c->next_spare = l->ws_spare;
        l->ws_spare = c;
        l->ws_nspare++;
    } else {
        free(c);
    }
}

static void cmd_answer(struct http_req *req, int code, const char *body, size_t len)
{
    struct ws_cmd *c = (struct ws_cmd *)req;
    /* A route that asks for a retry later says so with Retry-After (429,
     * 503, 409 in_progress): over HTTP a header, here "temporary". */
    bool retry = memmem(req->extra, req->extra_len, "Retry-After:", 12) != NULL;
    if (c->w && !c->w->closing)
        wscmd_reply(&c->w->replies, c->c.id, code, body, len, retry);
    cmd_free(c);
}

static bool cmd_gone(const struct http_req *req)
{
    const struct ws_cmd *c = (const struct ws_cmd *)req;
    return c->w == NULL || c->w->closing;
}

static void cmd_abandon(struct http_req *req)
{
    cmd_free((struct ws_cmd *)req);
}

static const struct http_req_owner ws_owner = {cmd_answer, cmd_gone, cmd_abandon};

/* One line of a message: a command, run as a request of its route with
 * the connection's grant (the reply comes through ws_owner, now or once
 * Kafka took the job). */
static void run_line(struct ws_conn *w, const char *line, size_t len)
{
    char err[ERRBUF_LEN];
    struct loop *l = w->loop;
    struct ws_cmd *c = cmd_alloc(l);
    if (c == NULL) {
        wscmd_reply_error(&w->replies, "null", 503, "overloaded", "out of memory");
        return;
    }
    /* The least body limit of any route, within max_body_bytes. */
    size_t cap = (size_t)l->d->cfg->max_body_bytes, parsed_max = cap < ROUTE_BODY_SMALL ? cap : ROUTE_BODY_SMALL;
    if (!wscmd_parse(line, len, parsed_max, w->grant.app, &c->c, err, sizeof err)) {
        wscmd_reply_error(&w->replies, c->c.id, 400, "bad_command", err);
        free(c);
        return;
    }
    if (w->draining) { /* a backlog line: read before SIGTERM, run after it */
        wscmd_reply_error(&w->replies, c->c.id, 503, "shutting_down",
                          "the server is shutting down; send it again on a new connection");
        wscmd_clear(&c->c);
        free(c);
        return;
    }
    /* The request: every field but the parser's header table and the
     * reply's extra headers, which nheaders and extra_len say are empty. */
    memset(&c->req, 0, offsetof(struct http_req, p) + offsetof(struct httpparse_req, headers));
    memset(&c->req.p.method, 0, sizeof c->req.p - offsetof(struct httpparse_req, method));
    c->req.extra_len = 0;
    c->w = w;
    c->loop = l;
    c->req.owner = &ws_owner;
    c->req.p.method = c->c.route->method;
    c->req.p.target = c->c.path;
    c->req.p.minor_version = 1;
    c->req.p.keep_alive = true;
    c->req.p.content_length = (int64_t)c->c.body_len;
    c->req.p.body = c->c.body;
    c->req.p.body_len = c->c.body_len;
    c->req.json = c->c.json; /* the route takes it (or cmd_free drops it) */
    c->c.json = NULL;
    LIST_INSERT_HEAD(&w->cmds, c, link);
    if (++w->inflight >= l->d->cfg->ws_max_inflight)
        w->paused = true; /* TCP pushes back until replies go out */
    loop_count(&l->ws_commands, 1);
    struct http_ctx ctx = {.loop = l, .req = &c->req, .path = c->c.path, .start_us = sb_mono_us(),
                           .route = c->c.route, .nparams = c->c.nparams};
    memcpy(ctx.params, c->c.params, sizeof ctx.params);
    http_mint_request_id(ctx.request_id);
    access_dispatch_as(&ctx, &w->grant); /* may answer, and free c, before it returns */
}

static size_t run_lines(struct ws_conn *w, const char *text, size_t size);

/* A whole message from the client. wslay answers pings and closes itself
 * (and has checked the UTF-8 of text). */
static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *m, void *arg)
{
    struct ws_conn *w = arg;
    if ((m->opcode != WSLAY_TEXT_FRAME && m->opcode != WSLAY_BINARY_FRAME) || w->closing)
        return;
    if (w->echo) {
        struct wslay_event_msg out = {m->opcode, m->msg, m->msg_length};
        if (wslay_event_queue_msg(ctx, &out) != 0)
            ws_close(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, "cannot queue the echo");
        return;
    }
    if (m->opcode == WSLAY_BINARY_FRAME) {
        ws_close(w, WSLAY_CODE_UNSUPPORTED_DATA, "commands are text: JSON, one per line");
        return;
    }
    const char *p = (const char *)m->msg;
    size_t used = 0;
    if (!backlogged(w) && may_run(w))
        used = run_lines(w, p, m->msg_length);
    if (used < m->msg_length) { /* at ws_max_inflight: the rest waits for replies */
        strbuf_append(&w->backlog, p + used, m->msg_length - used);
        strbuf_append_lit(&w->backlog, "\n"); /* a message's last line ends with it */
        if (strbuf_failed(&w->backlog))
            ws_close(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory");
    }
    arm_flush(w);
}

/* Runs the lines of text (len bytes) until the connection has
 * ws_max_inflight commands without a reply (while draining, every line:
 * each is refused); returns the bytes used. */
static size_t run_lines(struct ws_conn *w, const char *text, size_t size)
{
    const char *p = text, *end = text + size;
    while (p < end && may_run(w)) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        size_t len = (size_t)(e - p);
        if (len && p[len - 1] == '\r')
            len--;
        size_t blank = 0;
        while (blank < len && (p[blank] == ' ' || p[blank] == '\t'))
            blank++;
        if (blank < len)
            run_line(w, p, len);
        p = nl ? nl + 1 : end;
    }
    return (size_t)(p - text);
}

static void run_backlog(struct ws_conn *w)
{
    w->backlog_off += run_lines(w, w->backlog.p + w->backlog_off, w->backlog.len - w->backlog_off);
    if (w->backlog_off == w->backlog.len)
        w->backlog.len = w->backlog_off = 0;
}

/* ---- the upgrade ---------------------------------------------------------- */

struct upgrade {
    char reply[320];
    bool echo;
    int64_t max_message;
    struct access_grant grant;
};

/* httpconn_take_over's callback: the socket is ours now. */
static void take_over(struct loop *l, int fd, const char *left, size_t len, void *arg)
{
    struct upgrade *u = arg;
    static const struct wslay_event_callbacks cbs = {recv_cb, send_cb, NULL, NULL, NULL, NULL, on_msg};
    struct ws_conn *w = calloc(1, sizeof *w);
    if (w == NULL || (len && (w->left = malloc(len)) == NULL)) {
        free(w);
        free(u);
        close(fd);
        return;
    }
    w->loop = l;
    w->fd = fd;
    w->echo = u->echo;
    w->grant = u->grant;
    w->last_rx_ms = sb_mono_ms();
    strbuf_append(&w->out, u->reply, strlen(u->reply));
    if (len)
        memcpy(w->left, left, len);
    w->left_len = len;
    LIST_INIT(&w->cmds);
    LIST_INSERT_HEAD(&l->ws, w, link);
    atomic_fetch_add(&l->d->connections, 1);
    atomic_fetch_add(&l->d->ws_open, 1);
    w->rev = event_new(l->base, fd, EV_READ | EV_PERSIST, on_readable, w);
    w->wev = event_new(l->base, fd, EV_WRITE | EV_PERSIST, on_writable, w);
    w->timer = evtimer_new(l->base, on_timer, w);
    w->flush = event_new(l->base, -1, 0, on_flush, w);
    int64_t ping = l->d->cfg->ws_ping_interval_ms;
    struct timeval tv = sb_timeval_ms(ping);
    bool ok = w->rev && w->wev && w->timer && w->flush && !strbuf_failed(&w->out) &&
              wslay_event_context_server_init(&w->ctx, &cbs, w) == 0 && event_add(w->timer, &tv) == 0;
    if (ok)
        /* wslay allocates a frame's declared length before reading it:
         * the bound is what keeps a 10-byte header from asking for 2 GiB. */
        wslay_event_config_set_max_recv_msg_length(w->ctx, (uint64_t)u->max_message);
    free(u);
    if (!ok) {
        ws_free(w);
        return;
    }
    pump(w, true); /* the bytes that came with the request, and the 101 */
}

/* The handshake's checks (RFC 6455 4.2.1); false after answering. */
static bool handshake_ok(struct http_ctx *ctx, char accept[29])
{
    const char *upgrade = http_req_header(ctx->req, "Upgrade");
    const char *conn = http_req_header(ctx->req, "Connection");
    const char *version = http_req_header(ctx->req, "Sec-WebSocket-Version");
    const char *key = http_req_header(ctx->req, "Sec-WebSocket-Key");
    if (strcmp(ctx->req->p.method, "GET") != 0 || ctx->req->p.minor_version < 1 || ctx->req->p.body_len > 0 ||
        !httpparse_list_has(upgrade, "websocket") || !httpparse_list_has(conn, "upgrade")) {
        http_req_add_header(ctx->req, "Upgrade", "websocket");
        http_reply_error(ctx, 426, "upgrade_required", "this route is a WebSocket: an HTTP/1.1 GET with "
                         "Upgrade: websocket and Connection: Upgrade");
        return false;
    }
    if (version == NULL || strcmp(version, "13") != 0) {
        http_req_add_header(ctx->req, "Sec-WebSocket-Version", "13");
        http_reply_error(ctx, 426, "upgrade_required", "Sec-WebSocket-Version must be 13");
        return false;
    }
    if (key == NULL || !ws_accept_key(key, accept)) {
        http_reply_error(ctx, 400, "bad_request", "Sec-WebSocket-Key must be 16 bytes in base64");
        return false;
    }
    if (atomic_load(&ctx->loop->d->draining)) {
        http_req_add_header(ctx->req, "Retry-After", "1");
        http_reply_error(ctx, 503, "shutting_down", "the server is shutting down");
        return false;
    }
    return true;
}

/* The handshake checked: its upgrade, to fill in; NULL after answering. */
static struct upgrade *upgrade_new(struct http_ctx *ctx, char accept[29])
{
    if (!handshake_ok(ctx, accept))
        return NULL;
    struct upgrade *u = calloc(1, sizeof *u);
    if (u == NULL)
        http_reply_error(ctx, 503, "overloaded", "out of memory");
    return u;
}

/* Answers 101 and takes the socket over. */
static void upgrade(struct http_ctx *ctx, struct upgrade *u, const char *accept, const char *protocol)
{
    int n = snprintf(u->reply, sizeof u->reply,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n", accept, protocol ? "Sec-WebSocket-Protocol: " : "",
                     protocol ? protocol : "", protocol ? "\r\n" : "");
    assert(n > 0 && (size_t)n < sizeof u->reply);
    (void)n;
    httpconn_take_over(ctx->req, take_over, u);
}

void ws_echo(struct http_ctx *ctx)
{
    int64_t max = ctx->loop->d->cfg->ws_echo_max_message_bytes;
    if (max <= 0) {
        http_reply_error(ctx, 404, "not_found", "no route for GET %s (ws_echo_max_message_bytes is 0)", ctx->path);
        return;
    }
    char accept[29];
    struct upgrade *u = upgrade_new(ctx, accept);
    if (u == NULL)
        return;
    u->echo = true;
    u->max_message = max;
    upgrade(ctx, u, accept, NULL);
}

/* The credential: "Authorization: Bearer <c>", or (browsers cannot set
 * headers on a WebSocket) the subprotocol "bearer.<c>" offered beside
 * WS_PROTOCOL. *proto: whether WS_PROTOCOL was offered (then it must be
 * answered). The credential is copied into out. */
static bool credential(const struct http_req *req, char *out, size_t cap, bool *proto)
{
    const char *h = http_req_header(req, "Authorization");
    const char *offered = http_req_header(req, "Sec-WebSocket-Protocol");
    *proto = httpparse_list_has(offered, WS_PROTOCOL);
    out[0] = '\0';
    if (h && strncasecmp(h, "Bearer ", 7) == 0 && h[7]) {
        snprintf(out, cap, "%s", h + 7);
        return strlen(h + 7) < cap;
    }
    for (const char *p = offered; p && *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t,");
        if (n > 7 && strncmp(p, "bearer.", 7) == 0 && n - 7 < cap) {
            memcpy(out, p + 7, n - 7);
            out[n - 7] = '\0';
            return true;
        }
        p += n;
    }
    return false;
}

void ws_commands(struct http_ctx *ctx)
{
    char accept[29], cred[JWT_MAX_LEN + 1]; /* an API key, an application token or an access token */
    bool proto;
    struct upgrade *u = upgrade_new(ctx, accept);
    if (u == NULL)
        return;
    if (!credential(ctx->req, cred, sizeof cred, &proto) || !access_grant_for(cred, &u->grant)) {
        free(u);
        http_req_add_header(ctx->req, "WWW-Authenticate", "Bearer realm=\"switchboard\"");
        http_reply_error(ctx, 401, "unauthorized", "%s", cred[0] ? "the credential is neither an API key, an access "
                         "token nor an application token" : "a WebSocket needs an API key, an access token or an "
                         "application token: "
                         "Authorization: Bearer <credential>, or the subprotocols " WS_PROTOCOL
                         " and bearer.<credential>");
        return;
    }
    u->max_message = ctx->loop->d->cfg->ws_max_message_bytes;
    upgrade(ctx, u, accept, proto ? WS_PROTOCOL : NULL);
}

void wsconn_drain(struct loop *l)
{
    struct ws_conn *w, *next;
    for (w = LIST_FIRST(&l->ws); w; w = next) {
        next = LIST_NEXT(w, link);
        w->draining = true;
        w->paused = true;
        pump(w, false); /* may free w */
    }
}

void wsconn_free_spares(struct loop *l)
{
    while (l->ws_spare) {
        struct ws_cmd *c = l->ws_spare;
        l->ws_spare = c->next_spare;
        free(c);
    }
    l->ws_nspare = -1; /* the loop is going: later ones are freed at once */
}

void wsconn_free_all(struct loop *l)
{
    while (!LIST_EMPTY(&l->ws)) {
        struct ws_conn *w = LIST_FIRST(&l->ws);
        /* Best effort: the loop has stopped, so one send of the replies
         * there are (before the close: wslay sends a queued close first),
         * then one of the close. */
        flush_replies(w);
        (void)send_all(w);
        w->closing = false;
        ws_close(w, WSLAY_CODE_GOING_AWAY, "shutting down");
        (void)send_all(w);
        ws_free(w);
    }
}
