/* switchboard-wsload - message creates over WebSocket connections to GET /ws
 * (for scripts/bench).
 *
 *   switchboard-wsload HOST:PORT KEY TOKENS RATE SECONDS CONNECTIONS WINDOW [BATCH]
 *
 * Opens CONNECTIONS WebSockets (the admin KEY in Authorization); the
 * connection i creates messages in chat 1 of the application
 * TOKENS[i % n] (TOKENS: comma-separated). RATE 0: closed loop, each
 * connection keeps WINDOW commands without a reply, BATCH (default 1)
 * commands a message. RATE > 0: open loop, RATE commands a second spread over the
 * connections whatever their replies, latency counted from the moment a
 * command was due. Prints one JSON line like switchboard-loadgen's: sent,
 * answered (201 or not), rate, latency per acknowledgement p50/p90/p99/max.
 * Stops by itself after SECONDS plus at most 10 s for the stragglers. */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "util.h"

struct gen;

struct conn {
    struct gen *g;
    int fd;
    const char *token;
    struct event *rev, *wev;
    wslay_event_context_ptr ctx;
    char hs[1024]; /* the 101's head while it arrives */
    size_t hs_len;
    bool open, writing;
    int64_t inflight;
    uint64_t rnd;
};

struct gen {
    struct event_base *base;
    int64_t rate, window, batch, duration_ms, start_us;
    int64_t due, sent, done, ok, other, failed;
    int64_t *sent_us; /* due time of command id */
    int64_t *lat_us;
    int64_t cap;
    struct conn *conns;
    int nconns, opened;
    struct event *tick;
    bool stopping;
};

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *arg)
{
    (void)flags;
    struct conn *c = arg;
    ssize_t n = recv(c->fd, buf, len, 0);
    if (n > 0)
        return n;
    wslay_event_set_error(ctx, n < 0 && errno == EAGAIN ? WSLAY_ERR_WOULDBLOCK : WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *arg)
{
    (void)flags;
    struct conn *c = arg;
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    wslay_event_set_error(ctx, errno == EAGAIN ? WSLAY_ERR_WOULDBLOCK : WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *arg)
{
    (void)ctx;
    struct conn *c = arg;
    for (size_t i = 0; i < len; i++) {
        c->rnd = c->rnd * 6364136223846793005ULL + 1442695040888963407ULL;
        buf[i] = (uint8_t)(c->rnd >> 56);
    }
    return 0;
}

static void pump(struct conn *c)
{
    if ((wslay_event_want_read(c->ctx) && wslay_event_recv(c->ctx) != 0) ||
        (wslay_event_want_write(c->ctx) && wslay_event_send(c->ctx) != 0) ||
        (!wslay_event_want_read(c->ctx) && !wslay_event_want_write(c->ctx))) {
        if (c->open)
            c->g->failed++;
        c->open = false;
        event_del(c->rev);
        event_del(c->wev);
        return;
    }
    bool want = wslay_event_want_write(c->ctx);
    if (want && !c->writing)
        event_add(c->wev, NULL);
    else if (!want && c->writing)
        event_del(c->wev);
    c->writing = want;
}

/* k commands in one message (a line each), due at due_us. */
static void send_cmds(struct conn *c, int k, int64_t due_us)
{
    struct gen *g = c->g;
    char text[256 * 64];
    size_t len = 0;
    int n = 0;
    for (; n < k && n < 64 && g->sent < g->cap && len + 256 + strlen(c->token) < sizeof text; n++) {
        int64_t id = g->sent++;
        g->sent_us[id] = due_us;
        len += (size_t)snprintf(text + len, sizeof text - len,
                                "%s{\"id\":%lld,\"op\":\"message.create\",\"token\":\"%s\",\"chat\":1,"
                                "\"body\":{\"body\":\"hello from wsload\"}}", n ? "\n" : "", (long long)id,
                                c->token);
    }
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    if (n && wslay_event_queue_msg(c->ctx, &m) == 0)
        c->inflight += n;
}

static void send_cmd(struct conn *c, int64_t due_us)
{
    send_cmds(c, 1, due_us);
}

/* Closed loop: the connection's window filled, BATCH commands a message. */
static void fill_window(struct conn *c)
{
    while (c->g->window - c->inflight >= c->g->batch && c->g->sent < c->g->cap)
        send_cmds(c, (int)c->g->batch, sb_mono_us());
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *m, void *arg)
{
    (void)ctx;
    struct conn *c = arg;
    struct gen *g = c->g;
    if (m->opcode != WSLAY_TEXT_FRAME)
        return;
    int64_t now = sb_mono_us();
    const char *p = (const char *)m->msg, *end = p + m->msg_length;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        long long id;
        int status;
        if (sscanf(p, "{\"id\":%lld,\"status\":%d", &id, &status) == 2 && id >= 0 && id < g->sent) {
            g->lat_us[g->done++] = now - g->sent_us[id];
            if (status == 201)
                g->ok++;
            else
                g->other++;
            c->inflight--;
        }
        p = nl ? nl + 1 : end;
    }
    if (g->rate == 0 && !g->stopping)
        fill_window(c);
}

/* The 101 arrives; then frames. */
static bool handshake(struct conn *c)
{
    ssize_t n = recv(c->fd, c->hs + c->hs_len, sizeof c->hs - 1 - c->hs_len, 0);
    if (n <= 0)
        return n < 0 && errno == EAGAIN;
    c->hs_len += (size_t)n;
    c->hs[c->hs_len] = '\0';
    char *end = strstr(c->hs, "\r\n\r\n");
    if (end == NULL)
        return c->hs_len < sizeof c->hs - 1;
    if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0 || end + 4 != c->hs + c->hs_len) {
        fprintf(stderr, "upgrade refused: %.200s\n", c->hs);
        return false;
    }
    c->open = true;
    c->g->opened++;
    return true;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (!c->open) {
        if (!handshake(c)) {
            c->g->failed++;
            event_del(c->rev);
        }
        return;
    }
    pump(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gen *g = arg;
    int64_t now = sb_mono_us(), elapsed = now - g->start_us;
    if (elapsed >= g->duration_ms * 1000) {
        g->stopping = true;
        if (g->done >= g->sent || elapsed >= (g->duration_ms + 10000) * 1000)
            event_base_loopbreak(g->base);
        return;
    }
    if (g->opened < g->nconns) {
        g->start_us = now; /* the clock starts once every connection is open */
        return;
    }
    if (g->rate == 0) {
        if (g->sent == 0)
            for (int i = 0; i < g->nconns; i++) {
                fill_window(&g->conns[i]);
                pump(&g->conns[i]);
            }
        return;
    }
    /* Command i is due at i / rate: by now, those with i <= rate * elapsed. */
    int64_t want = elapsed * g->rate / 1000000 + 1;
    for (; g->due < want; g->due++) {
        struct conn *c = &g->conns[g->due % g->nconns];
        send_cmd(c, g->start_us + g->due * 1000000 / g->rate);
    }
    /* Only those with something to send: a recv() on each of them every
     * millisecond took the cores from the server. */
    for (int i = 0; i < g->nconns; i++)
        if (g->conns[i].open && wslay_event_want_write(g->conns[i].ctx))
            pump(&g->conns[i]);
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static bool connect_one(struct gen *g, struct conn *c, int port, const char *key)
{
    static const struct wslay_event_callbacks cbs = {recv_cb, send_cb, genmask_cb, NULL, NULL, NULL, on_msg};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(0x7f000001)};
    c->g = g;
    c->rnd = (uint64_t)(uintptr_t)c ^ (uint64_t)sb_mono_us();
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        return false;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Authorization: Bearer %s\r\n\r\n", key);
    if (n <= 0 || (size_t)n >= sizeof req || send(c->fd, req, (size_t)n, 0) != n ||
        evutil_make_socket_nonblocking(c->fd) != 0 || wslay_event_context_client_init(&c->ctx, &cbs, c) != 0)
        return false;
    c->rev = event_new(g->base, c->fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(g->base, c->fd, EV_WRITE | EV_PERSIST, on_write, c);
    return c->rev && c->wev && event_add(c->rev, NULL) == 0;
}

int main(int argc, char **argv)
{
    if (argc != 8 && argc != 9) {
        fprintf(stderr, "usage: %s HOST:PORT KEY TOKENS RATE SECONDS CONNECTIONS WINDOW [BATCH]\n", argv[0]);
        return 2;
    }
    const char *colon = strrchr(argv[1], ':');
    int port = colon ? atoi(colon + 1) : 0;
    struct gen g = {.rate = atoll(argv[4]), .duration_ms = atoll(argv[5]) * 1000, .nconns = atoi(argv[6]),
                    .window = atoll(argv[7]), .batch = argc == 9 ? atoll(argv[8]) : 1};
    if (port <= 0 || g.rate < 0 || g.duration_ms <= 0 || g.nconns <= 0 || g.window <= 0 || g.batch <= 0 ||
        g.batch > 64 || g.batch > g.window) {
        fprintf(stderr, "bad HOST:PORT, RATE, SECONDS, CONNECTIONS, WINDOW or BATCH (1..64, at most WINDOW)\n");
        return 2;
    }
    char *tokens = strdup(argv[3]);
    const char *list[1024];
    int ntok = 0;
    for (char *save = NULL, *t = strtok_r(tokens, ",", &save); t && ntok < 1024; t = strtok_r(NULL, ",", &save))
        list[ntok++] = t;
    g.cap = 2000000 + (g.rate ? g.rate : 200000) * (g.duration_ms / 1000 + 10);
    g.sent_us = malloc((size_t)g.cap * sizeof *g.sent_us);
    g.lat_us = malloc((size_t)g.cap * sizeof *g.lat_us);
    g.conns = calloc((size_t)g.nconns, sizeof *g.conns);
    /* Precise timers, as switchboard-loadgen's: libevent's default clock
     * is CLOCK_MONOTONIC_COARSE, whose ticks would add milliseconds. */
    struct event_config *ec = event_config_new();
    if (ec)
        event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    g.base = ec ? event_base_new_with_config(ec) : NULL;
    if (ec)
        event_config_free(ec);
    if (ntok == 0 || !g.sent_us || !g.lat_us || !g.conns || !g.base) {
        fprintf(stderr, "cannot start (no tokens or out of memory)\n");
        return 1;
    }
    for (int i = 0; i < g.nconns; i++) {
        g.conns[i].token = list[i % ntok];
        if (!connect_one(&g, &g.conns[i], port, argv[2])) {
            fprintf(stderr, "cannot connect: %s\n", strerror(errno));
            return 1;
        }
    }
    g.start_us = sb_mono_us();
    struct timeval tv = {0, 1000};
    g.tick = event_new(g.base, -1, EV_PERSIST, on_tick, &g);
    event_add(g.tick, &tv);
    event_base_dispatch(g.base);
    double secs = (double)g.duration_ms / 1000.0;
    int64_t n = g.done;
    qsort(g.lat_us, (size_t)n, sizeof *g.lat_us, cmp64);
#define PCT(p) (n ? (double)g.lat_us[(int64_t)((double)(n - 1) * (p))] / 1000.0 : 0.0)
    printf("{\"target_rate\":%lld,\"seconds\":%g,\"connections\":%d,\"window\":%lld,\"batch\":%lld,\"sent\":%lld,"
           "\"answered\":%lld,\"2xx\":%lld,\"other\":%lld,\"failed_connections\":%lld,\"rate\":%.1f,"
           "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
           (long long)g.rate, secs, g.nconns, (long long)g.window, (long long)g.batch, (long long)g.sent, (long long)g.done,
           (long long)g.ok, (long long)g.other, (long long)g.failed, (double)g.ok / secs, PCT(0.5), PCT(0.9),
           PCT(0.99), n ? (double)g.lat_us[n - 1] / 1000.0 : 0.0);
    return g.failed || g.other ? 1 : 0;
}
