/* dispatcher.c - start-up and drain of the dispatcher (see dispatcher.h).
 *
 * Start-up: Kafka producer, MySQL and store pools, access keys, one
 * listening socket, N event-loop threads, readiness probes. The drain:
 * stop accepting, let in-flight requests get their Kafka verdict (bounded
 * by shutdown_timeout_ms), stop the loops, flush the producer. */
#include "dispatcher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "jwks.h"
#include "notestore.h"
#include "pbpool.h"
#include "phonebook_api.h"
#include "readiness.h"
#include "history.h"
#include "wsconn.h"

/* Longest wait at start for every loop's Redis connection. */
#define REDIS_WAIT_MS 5000


static void *loop_main(void *arg)
{
    struct loop *l = arg;
    event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void start_accepting_cb(void *arg)
{
    loop_start_accepting(arg);
}

/* SIGTERM: no new connections; WebSockets finish their commands and
 * close (1001). */
static void stop_accepting_cb(void *arg)
{
    loop_stop_accepting(arg);
    wsconn_drain(arg);
}

static void pools_ready(void *arg, bool ok)
{
    (void)arg;
    if (!ok)
        log_warn("phone number pools not loaded at start; the first reserve retries", "%s", "");
}

static void register_route_metrics(void)
{
    for (size_t i = 0; i < dispatcher_nroutes; i++) {
        struct route *r = &dispatcher_routes[i];
        char labels[128];
        snprintf(labels, sizeof labels, "route=\"%s\"", r->name);
        r->latency = metrics_histogram("switchboard_http_request_seconds", labels,
                                       "time from request read to reply queued");
        const char *const cls[] = {"2xx", "4xx", "5xx"};
        struct metric **slots[] = {&r->c2xx, &r->c4xx, &r->c5xx};
        for (size_t k = 0; k < 3; k++) {
            snprintf(labels, sizeof labels, "route=\"%s\",class=\"%s\"", r->name, cls[k]);
            *slots[k] = metrics_counter("switchboard_http_responses_total", labels,
                                        "HTTP responses by route and status class");
        }
    }
}

/* The service clients and pools every loop shares. */
static bool start_shared(struct dispatcher *d, const struct sb_config *cfg, char *err, size_t errlen)
{
    char why[ERRBUF_LEN];
    if (!redis_parse_url(cfg->redis_url, &d->redis_url, why, sizeof why) ||
        !db_parse_url(cfg->mysql_url, &d->db_url, why, sizeof why))
        return sb_errf(err, errlen, "bad configuration: %s", why);
    d->producer = kafka_producer_new(cfg->kafka_brokers, cfg->kafka_conf, cfg->request_timeout_ms,
                                     why, sizeof why);
    if (d->producer == NULL)
        return sb_errf(err, errlen, "cannot create Kafka producer: %s", why);
    d->dbpool = db_pool_new(&d->db_url, (size_t)cfg->mysql_pool_size, why, sizeof why);
    if (d->dbpool == NULL)
        return sb_errf(err, errlen, "cannot start MySQL pool: %s", why);
    threadpool_set_limits(d->dbpool, (size_t)cfg->pool_queue_max);
    d->notepool = notestore_pool_new(cfg, (size_t)cfg->store_pool_size, why, sizeof why);
    if (d->notepool == NULL)
        return sb_errf(err, errlen, "cannot start the notification store pool: %s", why);
    threadpool_set_limits(d->notepool, (size_t)cfg->pool_queue_max);
    if (!access_init(cfg, why, sizeof why))
        return sb_errf(err, errlen, "bad configuration: %s", why);
    if (!jwks_start(cfg, why, sizeof why))
        return sb_errf(err, errlen, "bad configuration: %s", why);
    if (access_admin_key_count() == 0 && !jwks_enabled())
        log_warn("no admin API keys configured: admin routes answer 401", "setting=%s",
                 "api_key_hashes");
    register_route_metrics();
    d->max_connections = server_max_connections(cfg->max_connections, &d->fd_limit);
    d->m_refused = metrics_counter("switchboard_http_connections_refused_total", "",
                                   "connections answered 503 and closed at max_connections");
    if ((uint64_t)d->max_connections + SERVER_FD_RESERVE > d->fd_limit)
        log_warn("max_connections is above what the open file limit leaves for clients: past it, "
                 "accept() fails and connections wait", "max_connections=%d fd_limit=%llu reserve=%d",
                 d->max_connections, (unsigned long long)d->fd_limit, SERVER_FD_RESERVE);
    pb_init();
    /* Before any loop runs: /readyz reads the probes' state. Made after
     * the port opened, a /readyz arriving at once found none (UBSan:
     * member access within a null pointer, in CI's up/down test). */
    d->readiness = readiness_new(d, why, sizeof why);
    if (d->readiness == NULL)
        return sb_errf(err, errlen, "cannot start readiness probes: %s", why);
    d->history = history_new(d, why, sizeof why);
    if (d->history == NULL)
        return sb_errf(err, errlen, "%s", why);
    return true;
}

/* Every loop needs its own Redis connection to serve: after a restart
 * under load, requests accepted before that would all answer 503. Waits
 * for them, bounded: a Redis that is down must not keep the dispatcher,
 * its /healthz and /readyz, off the network. */
static void wait_for_redis(struct dispatcher *d, int nloops)
{
    int64_t deadline = sb_mono_ms() + REDIS_WAIT_MS;
    bool up = false;
    while (!up && sb_mono_ms() < deadline) {
        up = true;
        for (int i = 0; i < nloops; i++)
            up = up && redis_client_ready(d->loops[i].redis);
        if (!up)
            sb_sleep_ms_unless(10, NULL);
    }
    if (!up)
        log_warn("opening without Redis on every loop: those requests answer 503 until it connects",
                 "waited_ms=%d", REDIS_WAIT_MS);
}

bool dispatcher_start(struct dispatcher *d, const struct sb_config *cfg, char *err, size_t errlen)
{
    d->cfg = cfg;
    d->listen_fd = -1;
    if (!start_shared(d, cfg, err, errlen))
        return false;
    char why[ERRBUF_LEN];
    if (!server_listen(cfg->listen, &d->listen_fd, why, sizeof why))
        return sb_errf(err, errlen, "cannot listen: %s", why);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nloops = cfg->threads > 0 ? (int)cfg->threads : (cores > 0 ? (int)cores : 1);
    d->loops = calloc((size_t)nloops, sizeof *d->loops);
    d->threads = calloc((size_t)nloops, sizeof *d->threads);
    if (d->loops == NULL || d->threads == NULL)
        return sb_errf(err, errlen, "%s", "out of memory");
    for (int i = 0; i < nloops; i++) {
        if (!loop_init(&d->loops[i], d, i, d->listen_fd, why, sizeof why))
            return sb_errf(err, errlen, "cannot start event loop: %s", why);
        /* Delivery reports are served on the first loop: its requests'
         * callbacks run there directly, the others' are posted on. */
        if (i == 0 && !kafka_producer_serve_on(d->producer, d->loops[0].base, why, sizeof why))
            return sb_errf(err, errlen, "cannot serve Kafka delivery reports: %s", why);
        if (pthread_create(&d->threads[i], NULL, loop_main, &d->loops[i]) != 0)
            return sb_errf(err, errlen, "%s", "cannot start loop thread");
    }
    atomic_store(&d->nloops, nloops); /* /readyz may look at every loop now */
    wait_for_redis(d, nloops);
    if (!server_open(d->listen_fd, why, sizeof why))
        return sb_errf(err, errlen, "cannot listen: %s", why);
    for (int i = 0; i < nloops; i++)
        if (!loopq_post(d->loops[i].q, start_accepting_cb, &d->loops[i]))
            return sb_errf(err, errlen, "cannot start loop %d's listener", i);
    /* Load the phone number pools now if Redis has none, so the first
     * reserve does not wait for it. */
    pbpool_rebuild(&d->loops[0], pools_ready, NULL);
    log_info("dispatcher listening", "listen=%s loops=%d pid=%d fd_limit=%llu max_connections=%d",
             cfg->listen, nloops, (int)getpid(), (unsigned long long)d->fd_limit, d->max_connections);
    return true;
}

void dispatcher_stop(struct dispatcher *d)
{
    int nloops = atomic_load(&d->nloops);
    log_info("draining", "inflight=%d", atomic_load(&d->inflight));
    atomic_store(&d->draining, true);
    for (int i = 0; i < nloops; i++)
        if (!loopq_post(d->loops[i].q, stop_accepting_cb, &d->loops[i]))
            log_error("cannot stop a loop's listener", "loop=%d", i);
    close(d->listen_fd);

    int64_t deadline = sb_mono_ms() + d->cfg->shutdown_timeout_ms;
    /* WebSockets close after their last reply; each waits for its
     * client's answer to the close at most 2 s. */
    while ((atomic_load(&d->inflight) > 0 || atomic_load(&d->ws_open) > 0) && sb_mono_ms() < deadline)
        sb_sleep_ms_unless(10, NULL);
    int left = atomic_load(&d->inflight);
    if (left > 0)
        log_warn("shutdown timeout with requests in flight", "inflight=%d", left);

    /* The loops stop first: a keep-alive client can still send requests
     * while the dispatcher drains, and their handlers use the readiness
     * state and the pools, which were freed under them before. */
    for (int i = 0; i < nloops; i++)
        event_base_loopexit(d->loops[i].base, NULL);
    for (int i = 0; i < nloops; i++)
        pthread_join(d->threads[i], NULL);
    /* The pools finish their jobs (a readiness probe among them), whose
     * completions land in the loops' queues, run by loop_destroy; a submit
     * from one of those, or from the probe thread until it is joined,
     * fails (503) rather than reach freed memory. Late delivery reports
     * land in the queues likewise. */
    threadpool_stop(d->dbpool);
    threadpool_stop(d->notepool);
    /* The probe and sampler threads ask Kafka through the producer: joined
     * before it goes. What they recorded is freed only after the loops'
     * queues ran the last completions, which read it (a /readyz or an
     * overview that finished in the pools). */
    readiness_stop(d->readiness);
    history_stop(d->history);
    kafka_producer_free(d->producer, 2000);
    /* A completion run by loop_destroy that asks about every loop's Redis
     * (add_dependencies) must not reach one destroyed before it. */
    atomic_store(&d->nloops, 0);
    for (int i = 0; i < nloops; i++)
        loop_destroy(&d->loops[i]);
    readiness_free(d->readiness);
    history_free(d->history);
    jwks_stop(); /* after the loops: a request waiting for keys asks it */
    threadpool_free(d->dbpool);
    threadpool_free(d->notepool);
    free(d->loops);
    free(d->threads);
}
