/* statusport.c - see statusport.h. */
#include "statusport.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "net.h"

#define STATUS_IO_TIMEOUT_S 5
#define STATUS_STOP_CHECK_MS 100
#define SCRAPES_MAX 16 /* /metrics requests waiting at once */
#define SCRAPES_FLUSH_MS 100 /* to send the answers left when stopping */

/* /metrics is rendered on a thread of its own (the scraper): a source's
 * metrics may wait on a broker for seconds (the worker's lag), and
 * /healthz must not wait behind that. The loop queues scrapes; the
 * scraper takes all queued ones, renders once for them, hands the text
 * back and wakes the loop through a pipe; the loop answers them. All under
 * mu; the requests themselves are touched only on the loop. */
struct scrapes {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct evhttp_request *queued[SCRAPES_MAX], *rendering[SCRAPES_MAX];
    size_t nqueued, nrendering;
    char *text; /* the rendering's answer once done; NULL if it failed */
    size_t len;
    bool done, stop;
    pthread_t thread;
    bool inited, running;
    int wake[2];
    struct event *woken;
};

struct statusport {
    struct statusport_source src;
    struct event_base *base;
    struct evhttp *http;
    struct net_accept_guard *guard; /* out of descriptors: rest, do not spin */
    struct event *tick;
    pthread_t thread;
    bool running;
    atomic_bool stop;
    struct scrapes sc;
};

static void reply(struct evhttp_request *req, int code, const char *type, const char *body, size_t len)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    if (evbuffer_add(out, body, len) != 0)
        code = 500;
    evhttp_send_reply(req, code, NULL, NULL);
}

static void reply_json(struct evhttp_request *req, int code, cJSON *body)
{
    char *text = json_print(body);
    cJSON_Delete(body);
    if (text == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    reply(req, code, "application/json", text, strlen(text));
    free(text);
}

static void reply_error(struct evhttp_request *req, int code, const char *errcode, const char *msg)
{
    reply_json(req, code, json_error_body(errcode, msg));
}

void statusport_add_age(cJSON *body, const char *field, const struct metric *gauge)
{
    int64_t at = metric_value(gauge);
    if (at > 0)
        cJSON_AddNumberToObject(body, field, (double)(sb_now_ms() / 1000 - at));
    else
        cJSON_AddNullToObject(body, field);
}

static void serve_health(struct statusport *s, struct evhttp_request *req)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "status", "ok");
    if (s->src.health)
        s->src.health(s->src.arg, body);
    reply_json(req, 200, body);
}

/* The registry's text and the source's; NULL when out of memory. */
static char *render_metrics(struct statusport *s, size_t *len)
{
    size_t n;
    char *text = metrics_render(&n);
    struct strbuf b = {0};
    strbuf_append(&b, text ? text : "", text ? n : 0);
    free(text);
    if (s->src.metrics)
        s->src.metrics(s->src.arg, &b);
    *len = b.len;
    return strbuf_take(&b);
}

static void *scraper_run(void *arg)
{
    struct statusport *s = arg;
    struct scrapes *sc = &s->sc;
    pthread_mutex_lock(&sc->mu);
    for (;;) {
        /* One rendering at a time: the loop collects the last first. */
        while (!sc->stop && (sc->nqueued == 0 || sc->nrendering > 0))
            pthread_cond_wait(&sc->cv, &sc->mu);
        if (sc->stop)
            break;
        memcpy(sc->rendering, sc->queued, sc->nqueued * sizeof *sc->queued);
        sc->nrendering = sc->nqueued;
        sc->nqueued = 0;
        pthread_mutex_unlock(&sc->mu);
        size_t len = 0;
        char *text = render_metrics(s, &len);
        pthread_mutex_lock(&sc->mu);
        sc->text = text;
        sc->len = len;
        sc->done = true;
        /* A full pipe already holds a wake-up: nothing is lost. */
        ssize_t w = write(sc->wake[1], "x", 1);
        (void)w;
    }
    pthread_mutex_unlock(&sc->mu);
    return NULL;
}

/* text NULL: the rendering failed (or never came); fail_code then. */
static void answer_scrapes(struct evhttp_request **reqs, size_t n, const char *text, size_t len,
                           int fail_code)
{
    for (size_t i = 0; i < n; i++) {
        if (text)
            reply(reqs[i], 200, "text/plain; version=0.0.4", text, len);
        else
            evhttp_send_error(reqs[i], fail_code, NULL);
    }
}

/* On the loop: the scraper is done; answer what it rendered for. */
static void on_scraped(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct scrapes *sc = arg;
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    pthread_mutex_lock(&sc->mu);
    if (!sc->done) {
        pthread_mutex_unlock(&sc->mu);
        return;
    }
    struct evhttp_request *reqs[SCRAPES_MAX];
    size_t n = sc->nrendering, len = sc->len;
    char *text = sc->text;
    memcpy(reqs, sc->rendering, n * sizeof *reqs);
    sc->nrendering = 0;
    sc->text = NULL;
    sc->done = false;
    pthread_cond_signal(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    answer_scrapes(reqs, n, text, len, 500);
    free(text);
}

static void serve_metrics(struct statusport *s, struct evhttp_request *req)
{
    struct scrapes *sc = &s->sc;
    pthread_mutex_lock(&sc->mu);
    bool stopping = sc->stop, queued = !stopping && sc->nqueued < SCRAPES_MAX;
    if (queued) {
        sc->queued[sc->nqueued++] = req;
        pthread_cond_signal(&sc->cv);
    }
    pthread_mutex_unlock(&sc->mu);
    if (stopping)
        reply_error(req, 503, "stopping", "the process is stopping");
    else if (!queued)
        reply_error(req, 503, "busy", "too many /metrics requests at once; retry");
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct statusport *s = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    bool health = path && strcmp(path, "/healthz") == 0;
    bool metrics = path && strcmp(path, "/metrics") == 0;
    if (!health && !metrics) {
        reply_error(req, 404, "not_found", "this port serves GET /healthz and GET /metrics only");
    } else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_error(req, 405, "method_not_allowed", "only GET (or HEAD) is allowed here");
    } else if (health) {
        serve_health(s, req);
    } else {
        serve_metrics(s, req);
    }
}

/* The loop has no other wake-up: it looks at the stop flag now and then. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct statusport *s = arg;
    if (atomic_load(&s->stop))
        event_base_loopbreak(s->base);
}

static void *run(void *arg)
{
    struct statusport *s = arg;
    event_base_dispatch(s->base);
    return NULL;
}

/* The scraper's lock, wake-up pipe and thread (after the loop's base). */
static bool scrapes_start(struct statusport *s, char *errbuf, size_t errlen)
{
    struct scrapes *sc = &s->sc;
    if (pthread_mutex_init(&sc->mu, NULL) != 0 || pthread_cond_init(&sc->cv, NULL) != 0) {
        sb_errf(errbuf, errlen, "cannot set up the metrics thread's lock");
        return false;
    }
    sc->inited = true;
    if (pipe2(sc->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        sb_errf(errbuf, errlen, "pipe: %s", strerror(errno));
        return false;
    }
    sc->woken = event_new(s->base, sc->wake[0], EV_READ | EV_PERSIST, on_scraped, sc);
    if (sc->woken == NULL || event_add(sc->woken, NULL) != 0 ||
        pthread_create(&sc->thread, NULL, scraper_run, s) != 0) {
        sb_errf(errbuf, errlen, "cannot start the metrics thread");
        return false;
    }
    sc->running = true;
    return true;
}

/* Stops the scraper (waiting out a rendering under way) and answers the
 * scrapes left (the rendering's text, else 503); the loop has stopped, so
 * this thread owns them. The loop then runs a moment more to send them. */
static void scrapes_stop(struct statusport *s)
{
    struct scrapes *sc = &s->sc;
    if (sc->running) {
        pthread_mutex_lock(&sc->mu);
        sc->stop = true;
        pthread_cond_broadcast(&sc->cv);
        pthread_mutex_unlock(&sc->mu);
        pthread_join(sc->thread, NULL);
        sc->running = false;
    }
    size_t left = sc->nqueued + sc->nrendering;
    answer_scrapes(sc->queued, sc->nqueued, NULL, 0, 503);
    answer_scrapes(sc->rendering, sc->nrendering, sc->done ? sc->text : NULL, sc->len, 503);
    sc->nqueued = sc->nrendering = 0;
    sc->done = false;
    free(sc->text);
    sc->text = NULL;
    if (left > 0 && s->base) {
        if (s->tick)
            event_del(s->tick);
        struct timeval flush = {0, SCRAPES_FLUSH_MS * 1000};
        event_base_loopexit(s->base, &flush);
        event_base_dispatch(s->base);
    }
    if (sc->woken)
        event_free(sc->woken);
    for (int i = 0; i < 2; i++)
        if (sc->wake[i] >= 0)
            close(sc->wake[i]);
    if (sc->inited) {
        pthread_mutex_destroy(&sc->mu);
        pthread_cond_destroy(&sc->cv);
    }
}

struct statusport *statusport_new(const char *addr, const struct statusport_source *src, char *errbuf,
                                  size_t errlen)
{
    int fd = -1;
    struct statusport *s = calloc(1, sizeof *s);
    if (s == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    s->src = *src;
    s->sc.wake[0] = s->sc.wake[1] = -1;
    atomic_init(&s->stop, false);
    if (!net_bind(addr, 0, &fd, errbuf, errlen))
        goto fail;
    if (listen(fd, 64) != 0) {
        sb_errf(errbuf, errlen, "listen %s: %s", addr, strerror(errno));
        goto fail;
    }
    int port = net_port(fd);
    s->base = event_base_new();
    s->http = s->base ? evhttp_new(s->base) : NULL;
    if (s->http == NULL)
        goto no_server;
    /* The socket is the evhttp's from here (it closes it, also when this
     * fails part way). */
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(s->http, fd);
    fd = -1;
    if (bound == NULL ||
        (s->guard = net_accept_guard_new(evhttp_bound_socket_get_listener(bound), "status")) == NULL)
        goto no_server;
    evhttp_set_timeout(s->http, STATUS_IO_TIMEOUT_S);
    evhttp_set_max_body_size(s->http, 4096);
    evhttp_set_gencb(s->http, on_request, s);
    if (!scrapes_start(s, errbuf, errlen))
        goto fail;
    struct timeval every = {0, STATUS_STOP_CHECK_MS * 1000};
    s->tick = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    if (s->tick == NULL || event_add(s->tick, &every) != 0) {
        sb_errf(errbuf, errlen, "cannot start the status loop");
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        sb_errf(errbuf, errlen, "cannot start the status thread");
        goto fail;
    }
    s->running = true;
    log_info("status endpoint listening", "process=%s addr=%s port=%d", src->name, addr, port);
    return s;
no_server:
    sb_errf(errbuf, errlen, "cannot serve %s", addr);
fail:
    if (fd >= 0)
        close(fd);
    statusport_free(s);
    return NULL;
}

void statusport_free(struct statusport *s)
{
    if (s == NULL)
        return;
    if (s->running) {
        atomic_store(&s->stop, true);
        pthread_join(s->thread, NULL);
    }
    scrapes_stop(s);
    if (s->tick)
        event_free(s->tick);
    net_accept_guard_free(s->guard);
    if (s->http)
        evhttp_free(s->http);
    if (s->base)
        event_base_free(s->base);
    free(s);
}
