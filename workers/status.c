/* status.c - see status.h. */
#include "status.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
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
#include "strbuf.h"
#include "worker.h"

#define STATUS_MAX_PARTITIONS 1024
#define STATUS_IO_TIMEOUT_S 5
#define STATUS_STOP_CHECK_MS 100
#define STATUS_LAG_TIMEOUT_MS 2000 /* the committed offsets' round trip */

struct status {
    struct worker *w;
    struct event_base *base;
    struct evhttp *http;
    struct event *tick;
    pthread_t thread;
    bool running;
    atomic_bool stop;
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

static void serve_health(struct status *s, struct evhttp_request *req)
{
    int64_t last = metric_value(s->w->m_last_batch);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "status", "ok");
    cJSON_AddStringToObject(body, "role", s->w->role->name);
    if (last > 0)
        cJSON_AddNumberToObject(body, "seconds_since_batch", (double)(sb_now_ms() / 1000 - last));
    else
        cJSON_AddNullToObject(body, "seconds_since_batch");
    reply_json(req, 200, body);
}

static void serve_metrics(struct status *s, struct evhttp_request *req)
{
    size_t len;
    char *text = metrics_render(&len);
    struct strbuf b = {0};
    strbuf_append(&b, text ? text : "", text ? len : 0);
    free(text);
    struct kafka_lag *lag = calloc(STATUS_MAX_PARTITIONS, sizeof *lag);
    size_t n = lag ? kafka_consumer_lag(s->w->consumer, lag, STATUS_MAX_PARTITIONS, STATUS_LAG_TIMEOUT_MS)
                   : 0;
    strbuf_appendf(&b, "# HELP switchboard_worker_lag jobs in an assigned partition past the "
                       "group's committed offset\n"
                       "# TYPE switchboard_worker_lag gauge\n");
    for (size_t i = 0; i < n; i++)
        if (lag[i].lag >= 0) /* unknown: nothing committed or fetched there yet */
            strbuf_appendf(&b, "switchboard_worker_lag{role=\"%s\",topic=\"%s\",partition=\"%d\"} %lld\n",
                           s->w->role->name, lag[i].topic, (int)lag[i].partition,
                           (long long)lag[i].lag);
    free(lag);
    if (strbuf_failed(&b)) {
        strbuf_free(&b);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    reply(req, 200, "text/plain; version=0.0.4", b.p, b.len);
    strbuf_free(&b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct status *s = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    bool health = path && strcmp(path, "/healthz") == 0;
    bool metrics = path && strcmp(path, "/metrics") == 0;
    if (!health && !metrics) {
        reply_error(req, 404, "not_found", "a worker serves GET /healthz and GET /metrics only");
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
    struct status *s = arg;
    if (atomic_load(&s->stop))
        event_base_loopbreak(s->base);
}

static void *run(void *arg)
{
    struct status *s = arg;
    event_base_dispatch(s->base);
    return NULL;
}

struct status *status_new(struct worker *w, char *errbuf, size_t errlen)
{
    int fd = -1;
    struct status *s = calloc(1, sizeof *s);
    if (s == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    s->w = w;
    atomic_init(&s->stop, false);
    if (!net_bind(w->cfg->status_listen, 0, &fd, errbuf, errlen))
        goto fail;
    if (listen(fd, 64) != 0) {
        sb_errf(errbuf, errlen, "listen %s: %s", w->cfg->status_listen, strerror(errno));
        goto fail;
    }
    int port = net_port(fd);
    s->base = event_base_new();
    s->http = s->base ? evhttp_new(s->base) : NULL;
    if (s->http == NULL)
        goto no_server;
    /* The socket is the evhttp's from here (it closes it, also when this
     * fails part way). */
    bool served = evhttp_accept_socket_with_handle(s->http, fd) != NULL;
    fd = -1;
    if (!served)
        goto no_server;
    evhttp_set_timeout(s->http, STATUS_IO_TIMEOUT_S);
    evhttp_set_max_body_size(s->http, 4096);
    evhttp_set_gencb(s->http, on_request, s);
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
    log_info("status endpoint listening", "role=%s addr=%s port=%d", w->role->name,
             w->cfg->status_listen, port);
    return s;
no_server:
    sb_errf(errbuf, errlen, "cannot serve %s", w->cfg->status_listen);
fail:
    if (fd >= 0)
        close(fd);
    status_free(s);
    return NULL;
}

void status_free(struct status *s)
{
    if (s == NULL)
        return;
    if (s->running) {
        atomic_store(&s->stop, true);
        pthread_join(s->thread, NULL);
    }
    if (s->tick)
        event_free(s->tick);
    if (s->http)
        evhttp_free(s->http);
    if (s->base)
        event_base_free(s->base);
    free(s);
}
