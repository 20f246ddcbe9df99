/* switchboard-loadgen - open-loop HTTP load at a fixed rate (for scripts/bench).
 *
 *   switchboard-loadgen URL RATE SECONDS [CONNECTIONS] [BODY]
 *
 * Sends RATE requests per second for SECONDS over CONNECTIONS keep-alive
 * connections (POST with BODY if given, else GET) and prints one JSON line:
 * sent, answered by status class, achieved rate, latency p50/p90/p99/max.
 * Latency is measured from the moment a request was due, not sent, so a
 * server that falls behind shows it (no coordinated omission): when every
 * connection is busy the request waits in a queue and its wait counts.
 * It stops by itself after SECONDS plus at most 10 s for the stragglers. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct conn;

struct gen {
    struct event_base *base;
    struct evhttp_uri *uri;
    const char *body;
    int64_t rate, duration_ms, start_us;
    int64_t due, sent, done, c2xx, c4xx, c5xx, cerr;
    int64_t *lat_us; /* one per request */
    int64_t cap;
    int64_t *queue; /* due times (us) of requests waiting for a connection */
    int64_t qhead, qtail;
    struct conn *conns;
    int nconns;
    struct event *tick;
    bool stopping;
};

struct conn {
    struct gen *g;
    struct evhttp_connection *evcon;
    bool busy;
    int64_t due_us;
};

static void send_on(struct conn *c, int64_t due_us);

static void on_done(struct evhttp_request *req, void *arg)
{
    struct conn *c = arg;
    struct gen *g = c->g;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code >= 200 && code < 300)
        g->c2xx++;
    else if (code >= 400 && code < 500)
        g->c4xx++;
    else if (code >= 500)
        g->c5xx++;
    else
        g->cerr++;
    if (g->done < g->cap)
        g->lat_us[g->done] = sb_mono_us() - c->due_us;
    g->done++;
    c->busy = false;
    if (g->qhead < g->qtail)
        send_on(c, g->queue[g->qhead++]);
    if (g->stopping && g->done == g->sent)
        event_base_loopbreak(g->base);
}

static void send_on(struct conn *c, int64_t due_us)
{
    struct gen *g = c->g;
    struct evhttp_request *req = evhttp_request_new(on_done, c);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", evhttp_uri_get_host(g->uri));
    char path[1024];
    const char *q = evhttp_uri_get_query(g->uri);
    snprintf(path, sizeof path, "%s%s%s", evhttp_uri_get_path(g->uri), q ? "?" : "", q ? q : "");
    enum evhttp_cmd_type cmd = EVHTTP_REQ_GET;
    if (g->body) {
        cmd = EVHTTP_REQ_POST;
        evhttp_add_header(h, "Content-Type", "application/json");
        evbuffer_add(evhttp_request_get_output_buffer(req), g->body, strlen(g->body));
    }
    c->busy = true;
    c->due_us = due_us;
    g->sent++;
    if (evhttp_make_request(c->evcon, req, cmd, path) != 0) {
        c->busy = false;
        g->cerr++;
        g->done++;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gen *g = arg;
    int64_t now = sb_mono_us();
    int64_t elapsed = now - g->start_us;
    /* Request i is due at i / rate: by now, those with i <= rate * elapsed. */
    int64_t should = elapsed >= g->duration_ms * 1000 ? g->rate * g->duration_ms / 1000
                                                      : g->rate * elapsed / 1000000 + 1;
    for (; g->due < should && g->due < g->cap; g->due++) {
        int64_t due_us = g->start_us + g->due * 1000000 / g->rate;
        struct conn *idle = NULL;
        for (int i = 0; i < g->nconns && !idle; i++)
            if (!g->conns[i].busy)
                idle = &g->conns[i];
        if (idle)
            send_on(idle, due_us);
        else
            g->queue[g->qtail++] = due_us;
    }
    if (elapsed >= g->duration_ms * 1000 && !g->stopping) {
        g->stopping = true;
        event_del(g->tick);
        /* drop what is still queued: it was never sent */
        g->qtail = g->qhead;
        struct timeval grace = {.tv_sec = 10};
        event_base_loopexit(g->base, &grace);
        if (g->done == g->sent)
            event_base_loopbreak(g->base);
    }
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s URL RATE SECONDS [CONNECTIONS] [BODY]\n", argv[0]);
        return 2;
    }
    struct gen g = {0};
    int64_t secs, conns = 32;
    if (!sb_parse_i64(argv[2], 1, 1000000, &g.rate) || !sb_parse_i64(argv[3], 1, 3600, &secs) ||
        (argc > 4 && !sb_parse_i64(argv[4], 1, 4096, &conns))) {
        fprintf(stderr, "bad RATE, SECONDS or CONNECTIONS\n");
        return 2;
    }
    g.body = argc > 5 ? argv[5] : NULL;
    g.duration_ms = secs * 1000;
    g.cap = g.rate * secs;
    g.lat_us = calloc((size_t)g.cap, sizeof *g.lat_us);
    g.queue = calloc((size_t)g.cap, sizeof *g.queue);
    g.uri = evhttp_uri_parse(argv[1]);
    /* libevent's default clock is CLOCK_MONOTONIC_COARSE (a few ms per
     * tick): precise timers, or the schedule itself adds milliseconds. */
    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    g.base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!g.lat_us || !g.queue || !g.uri || !g.base || !evhttp_uri_get_host(g.uri)) {
        fprintf(stderr, "cannot start (bad URL or out of memory)\n");
        return 2;
    }
    g.nconns = (int)conns;
    g.conns = calloc((size_t)conns, sizeof *g.conns);
    int port = evhttp_uri_get_port(g.uri);
    for (int i = 0; i < g.nconns; i++) {
        g.conns[i].g = &g;
        g.conns[i].evcon = evhttp_connection_base_new(g.base, NULL, evhttp_uri_get_host(g.uri),
                                                      (unsigned short)(port > 0 ? port : 80));
        evhttp_connection_set_timeout(g.conns[i].evcon, 10);
    }
    g.tick = event_new(g.base, -1, EV_PERSIST, on_tick, &g);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 1000};
    event_add(g.tick, &tv);
    g.start_us = sb_mono_us();
    event_base_dispatch(g.base);
    double took = (double)(sb_mono_us() - g.start_us) / 1e6;

    int64_t n = g.done < g.cap ? g.done : g.cap;
    qsort(g.lat_us, (size_t)n, sizeof *g.lat_us, cmp64);
#define PCT(p) (n ? (double)g.lat_us[(int64_t)((double)(n - 1) * (p))] / 1000.0 : 0.0)
    printf("{\"target_rate\":%lld,\"seconds\":%lld,\"sent\":%lld,\"answered\":%lld,\"2xx\":%lld,"
           "\"4xx\":%lld,\"5xx\":%lld,\"errors\":%lld,\"rate\":%.1f,\"p50_ms\":%.3f,"
           "\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
           (long long)g.rate, (long long)secs, (long long)g.sent, (long long)g.done,
           (long long)g.c2xx, (long long)g.c4xx, (long long)g.c5xx, (long long)g.cerr,
           (double)g.c2xx / (took > secs ? took : (double)secs), PCT(0.5), PCT(0.9), PCT(0.99),
           n ? (double)g.lat_us[n - 1] / 1000.0 : 0.0);
    return 0;
}
