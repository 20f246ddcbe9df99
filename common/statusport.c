/* statusport.c - see statusport.h. */
#include "statusport.h"

#include <errno.h>
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

struct statusport {
    struct statusport_source src;
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

static void serve_metrics(struct statusport *s, struct evhttp_request *req)
{
    size_t len;
    char *text = metrics_render(&len);
    struct strbuf b = {0};
    strbuf_append(&b, text ? text : "", text ? len : 0);
    free(text);
    if (s->src.metrics)
        s->src.metrics(s->src.arg, &b);
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
    if (s->tick)
        event_free(s->tick);
    if (s->http)
        evhttp_free(s->http);
    if (s->base)
        event_base_free(s->base);
    free(s);
}
