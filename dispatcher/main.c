/* switchboard-dispatcher - the HTTP front of switchboard.
 *
 * Start-up: config, Kafka producer, MySQL pool, one listening socket, N
 * event-loop threads, readiness probes. The main thread then only waits for
 * SIGTERM/SIGINT and runs the drain: stop accepting, let in-flight requests
 * get their Kafka verdict (bounded by shutdown_timeout_ms), flush the
 * producer, stop the loops. */
#include <event2/thread.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "log.h"
#include "notestore.h"
#include "pbpool.h"
#include "phonebook_api.h"
#include "readiness.h"
#include "server.h"

/* Longest wait at start for every loop's Redis connection. */
#define REDIS_WAIT_MS 5000

extern struct route dispatcher_routes[];
extern const size_t dispatcher_nroutes;

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

static void stop_accepting_cb(void *arg)
{
    loop_stop_accepting(arg);
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

int main(int argc, char **argv)
{
    /* Large answers (a page of long messages) are their own mappings, so
     * their memory goes back to the system when they are sent: glibc's
     * moving threshold would otherwise grow to their size and keep them in
     * the heap, and the RSS a burst of slow readers raised would stay. */
    mallopt(M_MMAP_THRESHOLD, 256 << 10);
    struct sb_config cfg;
    char err[ERRBUF_LEN];
    switch (config_load(&cfg, SCOPE_DISPATCHER, "switchboard-dispatcher", "[options]", argc, argv,
                        stdout, err, sizeof err)) {
    case CONFIG_EXIT: config_free(&cfg); return 0;
    case CONFIG_ERROR: fprintf(stderr, "switchboard-dispatcher: %s\n", err); return 2;
    case CONFIG_OK: break;
    }
    if (!log_setup(cfg.log_level, cfg.log_format, "dispatcher"))
        die("bad log_level or log_format", "level=%s format=%s", cfg.log_level, cfg.log_format);

    /* Signals go to the main thread only (sigwait below); the loops and
     * library threads inherit the blocked mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (evthread_use_pthreads() != 0)
        die("libevent has no pthreads support", "%s", "");
    if (mysql_library_init(0, NULL, NULL) != 0)
        die("cannot initialise the MySQL client library", "%s", "");

    struct dispatcher d = {.cfg = &cfg};
    if (!redis_parse_url(cfg.redis_url, &d.redis_url, err, sizeof err) ||
        !db_parse_url(cfg.mysql_url, &d.db_url, err, sizeof err))
        die("bad configuration", "err=\"%s\"", err);
    d.producer = kafka_producer_new(cfg.kafka_brokers, cfg.kafka_conf, cfg.request_timeout_ms, err,
                                    sizeof err);
    if (d.producer == NULL)
        die("cannot create Kafka producer", "err=\"%s\"", err);
    d.dbpool = db_pool_new(&d.db_url, (size_t)cfg.mysql_pool_size, err, sizeof err);
    if (d.dbpool == NULL)
        die("cannot start MySQL pool", "err=\"%s\"", err);
    threadpool_set_limits(d.dbpool, (size_t)cfg.pool_queue_max);
    d.notepool = notestore_pool_new(&cfg, (size_t)cfg.store_pool_size, err, sizeof err);
    if (d.notepool == NULL)
        die("cannot start the notification store pool", "err=\"%s\"", err);
    threadpool_set_limits(d.notepool, (size_t)cfg.pool_queue_max);
    if (!access_init(&cfg, err, sizeof err))
        die("bad configuration", "err=\"%s\"", err);
    if (access_key_count() == 0)
        log_warn("no admin API keys configured: admin routes answer 401", "setting=%s",
                 "api_key_hashes");
    register_route_metrics();
    uint64_t fd_limit;
    d.max_connections = server_max_connections(cfg.max_connections, &fd_limit);
    d.m_refused = metrics_counter("switchboard_http_connections_refused_total", "",
                                  "connections answered 503 and closed at max_connections");
    if ((uint64_t)d.max_connections + SERVER_FD_RESERVE > fd_limit)
        log_warn("max_connections is above what the open file limit leaves for clients: past it, accept() "
                 "fails and connections wait", "max_connections=%d fd_limit=%llu reserve=%d",
                 d.max_connections, (unsigned long long)fd_limit, SERVER_FD_RESERVE);
    pb_init();
    /* Before any loop runs: /readyz reads the probes' state. Made after
     * the port opened, a /readyz arriving at once found none (UBSan:
     * member access within a null pointer, in CI's up/down test). */
    d.readiness = readiness_new(&d);
    if (d.readiness == NULL)
        die("cannot start readiness probes", "%s", "");

    int listen_fd;
    if (!server_listen(cfg.listen, &listen_fd, err, sizeof err))
        die("cannot listen", "err=\"%s\"", err);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nloops = cfg.threads > 0 ? (int)cfg.threads : (cores > 0 ? (int)cores : 1);
    struct loop *loops = calloc((size_t)nloops, sizeof *loops);
    pthread_t *threads = calloc((size_t)nloops, sizeof *threads);
    if (loops == NULL || threads == NULL)
        die("out of memory", "%s", "");
    d.loops = loops;
    for (int i = 0; i < nloops; i++) {
        if (!loop_init(&loops[i], &d, i, listen_fd, err, sizeof err))
            die("cannot start event loop", "err=\"%s\"", err);
        /* Delivery reports are served on the first loop: its requests'
         * callbacks run there directly, the others' are posted on. */
        if (i == 0 && !kafka_producer_serve_on(d.producer, loops[0].base, err, sizeof err))
            die("cannot serve Kafka delivery reports", "err=\"%s\"", err);
        if (pthread_create(&threads[i], NULL, loop_main, &loops[i]) != 0)
            die("cannot start loop thread", "%s", "");
    }
    atomic_store(&d.nloops, nloops); /* /readyz may look at every loop now */
    /* Every loop needs its own Redis connection to serve: after a restart
     * under load, requests accepted before that would all answer 503. Wait
     * for them (bounded: a Redis that is down must not keep the dispatcher,
     * its /healthz and /readyz, off the network), then open the port. */
    int64_t redis_deadline = sb_mono_ms() + REDIS_WAIT_MS;
    bool redis_up = false;
    while (!redis_up && sb_mono_ms() < redis_deadline) {
        redis_up = true;
        for (int i = 0; i < nloops; i++)
            redis_up = redis_up && redis_client_ready(loops[i].redis);
        if (!redis_up)
            sb_sleep_ms_unless(10, NULL);
    }
    if (!redis_up)
        log_warn("opening without Redis on every loop: those requests answer 503 until it connects",
                 "waited_ms=%d", REDIS_WAIT_MS);
    if (!server_open(listen_fd, err, sizeof err))
        die("cannot listen", "err=\"%s\"", err);
    for (int i = 0; i < nloops; i++)
        if (!loopq_post(loops[i].q, start_accepting_cb, &loops[i]))
            die("cannot start a loop's listener", "loop=%d", i);
    /* Load the phone number pools now if Redis has none, so the first
     * reserve does not wait for it. */
    pbpool_rebuild(&loops[0], pools_ready, NULL);
    log_info("dispatcher listening", "listen=%s loops=%d pid=%d fd_limit=%llu max_connections=%d", cfg.listen,
             nloops, (int)getpid(), (unsigned long long)fd_limit, d.max_connections);

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("draining", "signal=%d inflight=%d", sig, atomic_load(&d.inflight));
    atomic_store(&d.draining, true);
    for (int i = 0; i < nloops; i++)
        if (!loopq_post(loops[i].q, stop_accepting_cb, &loops[i]))
            log_error("cannot stop a loop's listener", "loop=%d", i);
    close(listen_fd);

    int64_t deadline = sb_mono_ms() + cfg.shutdown_timeout_ms;
    while (atomic_load(&d.inflight) > 0 && sb_mono_ms() < deadline)
        sb_sleep_ms_unless(10, NULL);
    int left = atomic_load(&d.inflight);
    if (left > 0)
        log_warn("shutdown timeout with requests in flight", "inflight=%d", left);

    /* The loops stop first: a keep-alive client can still send requests
     * while the dispatcher drains, and their handlers use the readiness
     * state and the pools, which were freed under them before. */
    for (int i = 0; i < nloops; i++)
        event_base_loopexit(loops[i].base, NULL);
    for (int i = 0; i < nloops; i++)
        pthread_join(threads[i], NULL);
    /* The pools finish their jobs (a readiness probe among them), whose
     * completions land in the loops' queues, run by loop_destroy; a submit
     * from one of those, or from the probe thread until it is joined,
     * fails (503) rather than reach freed memory. Late delivery reports
     * land in the queues likewise. */
    threadpool_stop(d.dbpool);
    threadpool_stop(d.notepool);
    readiness_free(d.readiness);
    kafka_producer_free(d.producer, 2000);
    for (int i = 0; i < nloops; i++)
        loop_destroy(&loops[i]);
    threadpool_free(d.dbpool);
    threadpool_free(d.notepool);
    free(loops);
    free(threads);
    mysql_library_end();
    log_info("dispatcher stopped", "%s", "");
    config_free(&cfg);
    libevent_global_shutdown();
    return 0;
}
