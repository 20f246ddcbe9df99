/* wsconn.c - see wsconn.h. */
#include "wsconn.h"

#include <assert.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "httpconn.h"

#define WS_IDLE_S 60 /* closed (1001) after this long without a frame from the client */

struct ws_conn {
    struct loop *loop;
    int fd;
    struct event *rev, *wev, *timer;
    wslay_event_context_ptr ctx;
    char *pre; /* what goes out before any frame: the 101, then nothing */
    size_t pre_len, pre_off;
    char *left; /* bytes the client sent with the upgrade request, read first */
    size_t left_len, left_off;
    bool writing; /* wev added */
    LIST_ENTRY(ws_conn) link;
};

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

static void ws_free(struct ws_conn *w)
{
    LIST_REMOVE(w, link);
    atomic_fetch_sub(&w->loop->d->connections, 1);
    if (w->ctx)
        wslay_event_context_free(w->ctx);
    if (w->rev)
        event_free(w->rev);
    if (w->wev)
        event_free(w->wev);
    if (w->timer)
        event_free(w->timer);
    close(w->fd);
    free(w->pre);
    free(w->left);
    free(w);
}

/* wslay's input: the bytes that came with the upgrade request, then the
 * socket. It must always say why it returns -1 (wslay keeps the last). */
static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *arg)
{
    (void)flags;
    struct ws_conn *w = arg;
    if (w->left_off < w->left_len) {
        size_t n = w->left_len - w->left_off < len ? w->left_len - w->left_off : len;
        memcpy(buf, w->left + w->left_off, n);
        w->left_off += n;
        return (ssize_t)n;
    }
    ssize_t n;
    do
        n = recv(w->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE); /* closed or broken */
    return -1;
}

/* Writes what is pending before the frames (the 101); true once none is. */
static bool send_pre(struct ws_conn *w)
{
    while (w->pre_off < w->pre_len) {
        ssize_t n = send(w->fd, w->pre + w->pre_off, w->pre_len - w->pre_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        w->pre_off += (size_t)n;
    }
    return true;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *arg)
{
    (void)flags;
    struct ws_conn *w = arg;
    ssize_t n = -1;
    errno = EAGAIN;
    if (send_pre(w)) {
        do
            n = send(w->fd, data, len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
    }
    if (n >= 0)
        return n;
    wslay_event_set_error(ctx, errno == EAGAIN || errno == EWOULDBLOCK ? WSLAY_ERR_WOULDBLOCK
                                                                       : WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

/* The echo: every text or binary message goes back as it came. wslay
 * answers pings and closes itself (and has checked the text's UTF-8). */
static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *m, void *arg)
{
    (void)arg;
    if (m->opcode != WSLAY_TEXT_FRAME && m->opcode != WSLAY_BINARY_FRAME)
        return;
    struct wslay_event_msg out = {m->opcode, m->msg, m->msg_length};
    if (wslay_event_queue_msg(ctx, &out) != 0)
        wslay_event_queue_close(ctx, WSLAY_CODE_INTERNAL_SERVER_ERROR, NULL, 0);
}

/* Reads and writes what wslay wants; frees the connection when both
 * sides are done or the socket failed. */
static void pump(struct ws_conn *w, bool readable)
{
    int rv = 0;
    if (readable && wslay_event_want_read(w->ctx)) {
        struct timeval idle = {WS_IDLE_S, 0};
        event_add(w->timer, &idle);
        rv = wslay_event_recv(w->ctx);
    }
    /* After a protocol error wslay has queued its close: one send for it. */
    if (!send_pre(w) && errno != EAGAIN && errno != EWOULDBLOCK)
        rv = -1;
    else if (wslay_event_want_write(w->ctx) && wslay_event_send(w->ctx) != 0)
        rv = -1;
    bool more = w->pre_off < w->pre_len || wslay_event_want_write(w->ctx);
    if (rv != 0 || (!wslay_event_want_read(w->ctx) && !more)) {
        ws_free(w);
        return;
    }
    if (more && !w->writing && event_add(w->wev, NULL) == 0)
        w->writing = true;
    else if (!more && w->writing) {
        event_del(w->wev);
        w->writing = false;
    }
    if (!wslay_event_want_read(w->ctx))
        event_del(w->rev); /* a close was received or sent: only writing is left */
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

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ws_conn *w = arg;
    wslay_event_queue_close(w->ctx, WSLAY_CODE_GOING_AWAY, (const uint8_t *)"idle", 4);
    pump(w, false);
}

struct upgrade {
    char reply[256];
    int64_t max_message;
};

/* httpconn_take_over's callback: the socket is ours now. */
static void take_over(struct loop *l, int fd, const char *left, size_t len, void *arg)
{
    struct upgrade *u = arg;
    static const struct wslay_event_callbacks cbs = {recv_cb, send_cb, NULL, NULL, NULL, NULL, on_msg};
    struct ws_conn *w = calloc(1, sizeof *w);
    if (w == NULL || (w->pre = strdup(u->reply)) == NULL || (len && (w->left = malloc(len)) == NULL)) {
        if (w)
            free(w->pre);
        free(w);
        free(u);
        close(fd);
        return;
    }
    w->loop = l;
    w->fd = fd;
    w->pre_len = strlen(w->pre);
    if (len)
        memcpy(w->left, left, len);
    w->left_len = len;
    LIST_INSERT_HEAD(&l->ws, w, link);
    atomic_fetch_add(&l->d->connections, 1);
    w->rev = event_new(l->base, fd, EV_READ | EV_PERSIST, on_readable, w);
    w->wev = event_new(l->base, fd, EV_WRITE | EV_PERSIST, on_writable, w);
    w->timer = evtimer_new(l->base, on_idle, w);
    bool ok = w->rev && w->wev && w->timer && wslay_event_context_server_init(&w->ctx, &cbs, w) == 0 &&
              event_add(w->rev, NULL) == 0;
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

void ws_echo(struct http_ctx *ctx)
{
    int64_t max = ctx->loop->d->cfg->ws_echo_max_message_bytes;
    if (max <= 0) {
        http_reply_error(ctx, 404, "not_found", "no route for GET %s (ws_echo_max_message_bytes is 0)", ctx->path);
        return;
    }
    const char *upgrade = http_req_header(ctx->req, "Upgrade");
    const char *conn = http_req_header(ctx->req, "Connection");
    const char *version = http_req_header(ctx->req, "Sec-WebSocket-Version");
    const char *key = http_req_header(ctx->req, "Sec-WebSocket-Key");
    char accept[29];
    if (strcmp(ctx->req->p.method, "GET") != 0 || ctx->req->p.minor_version < 1 || ctx->req->p.body_len > 0 ||
        !httpparse_list_has(upgrade, "websocket") || !httpparse_list_has(conn, "upgrade")) {
        http_req_add_header(ctx->req, "Upgrade", "websocket");
        http_reply_error(ctx, 426, "upgrade_required", "this route is a WebSocket: an HTTP/1.1 GET with "
                         "Upgrade: websocket and Connection: Upgrade");
        return;
    }
    if (version == NULL || strcmp(version, "13") != 0) {
        http_req_add_header(ctx->req, "Sec-WebSocket-Version", "13");
        http_reply_error(ctx, 426, "upgrade_required", "Sec-WebSocket-Version must be 13");
        return;
    }
    if (key == NULL || !ws_accept_key(key, accept)) {
        http_reply_error(ctx, 400, "bad_request", "Sec-WebSocket-Key must be 16 bytes in base64");
        return;
    }
    struct upgrade *u = malloc(sizeof *u);
    if (u == NULL) {
        http_reply_error(ctx, 503, "overloaded", "out of memory");
        return;
    }
    u->max_message = max;
    snprintf(u->reply, sizeof u->reply,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
    httpconn_take_over(ctx->req, take_over, u);
}

void wsconn_free_all(struct loop *l)
{
    while (!LIST_EMPTY(&l->ws)) {
        struct ws_conn *w = LIST_FIRST(&l->ws);
        /* Best effort: the loop has stopped, so one send of the close. */
        wslay_event_queue_close(w->ctx, WSLAY_CODE_GOING_AWAY, (const uint8_t *)"shutting down", 13);
        if (send_pre(w))
            (void)wslay_event_send(w->ctx);
        ws_free(w);
    }
}
