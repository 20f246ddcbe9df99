/* readiness.c - see readiness.h. */
#include "readiness.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "notestore.h"
#include "search_es.h"
#include "threadpool.h"

static const char *const dep_names[DEP_COUNT] = {"kafka", "mysql", "mongodb", "elasticsearch"};

struct probe {
    bool on;      /* configured, so probed */
    bool running; /* a pool probe: one ping in its pool at a time */
    struct dep_state state;
    struct metric *up;
};

struct readiness {
    struct dispatcher *d;
    pthread_t thread;
    atomic_int stop; /* read by the probe thread */
    bool stopped;    /* the probe thread is joined */
    pthread_mutex_t lock;
    struct probe probes[DEP_COUNT];
};

const char *readiness_name(enum readiness_dep dep)
{
    return dep_names[dep];
}

bool readiness_required(enum readiness_dep dep)
{
    return dep == DEP_KAFKA || dep == DEP_MYSQL;
}

static void set_state(struct readiness *r, enum readiness_dep dep, bool ok, const char *err)
{
    struct probe *p = &r->probes[dep];
    pthread_mutex_lock(&r->lock);
    bool changed = p->state.ok != ok;
    if (changed)
        p->state.since_ms = sb_now_ms();
    p->state.ok = ok;
    snprintf(p->state.error, sizeof p->state.error, "%s", ok ? "" : err);
    pthread_mutex_unlock(&r->lock);
    metric_set(p->up, ok);
    if (changed) {
        if (ok)
            log_info("dependency up", "dependency=%s", dep_names[dep]);
        else
            log_warn("dependency down", "dependency=%s err=\"%s\"", dep_names[dep], err);
    }
}

static void pool_probe_free_slot(struct readiness *r, enum readiness_dep dep)
{
    pthread_mutex_lock(&r->lock);
    r->probes[dep].running = false;
    pthread_mutex_unlock(&r->lock);
}

/* Run on a pool thread with that thread's connection. */
static void mysql_probe_work(void *ctx, void *arg)
{
    char err[ERRBUF_LEN] = "";
    bool ok = db_ping(ctx, err, sizeof err) == DB_OK;
    set_state(arg, DEP_MYSQL, ok, err);
    pool_probe_free_slot(arg, DEP_MYSQL);
}

static void mongo_probe_work(void *ctx, void *arg)
{
    char err[ERRBUF_LEN] = "";
    bool ok = notestore_ping(ctx, err, sizeof err) == DB_OK;
    set_state(arg, DEP_MONGODB, ok, err);
    pool_probe_free_slot(arg, DEP_MONGODB);
}

/* Queues a ping in the dependency's pool unless the last one is still
 * there: a pool busy with requests answers it when a thread frees up, and
 * a dependency that hangs does not fill the pool with pings. */
static void pool_probe(struct readiness *r, enum readiness_dep dep, struct threadpool *pool,
                       threadpool_work_fn work)
{
    pthread_mutex_lock(&r->lock);
    bool start = !r->probes[dep].running;
    r->probes[dep].running = true;
    pthread_mutex_unlock(&r->lock);
    if (start && !threadpool_submit(pool, work, NULL, NULL, r))
        pool_probe_free_slot(r, dep); /* stopping, or out of memory: next time */
}

static void *probe_main(void *arg)
{
    struct readiness *r = arg;
    const struct sb_config *cfg = r->d->cfg;
    /* A probe that does not answer within this much counts as down. */
    int timeout = (int)(cfg->readiness_interval_ms < 2000 ? cfg->readiness_interval_ms : 2000);
    while (!atomic_load(&r->stop)) {
        char err[ERRBUF_LEN] = "";
        pool_probe(r, DEP_MYSQL, r->d->dbpool, mysql_probe_work);
        if (r->probes[DEP_MONGODB].on)
            pool_probe(r, DEP_MONGODB, r->d->notepool, mongo_probe_work);
        bool ok = kafka_producer_check(r->d->producer, timeout, err, sizeof err);
        set_state(r, DEP_KAFKA, ok, err);
        if (r->probes[DEP_ELASTICSEARCH].on) {
            ok = es_ping(cfg->es_url, timeout, err, sizeof err) == DB_OK;
            set_state(r, DEP_ELASTICSEARCH, ok, err);
        }
        sb_sleep_ms_unless(cfg->readiness_interval_ms, &r->stop);
    }
    return NULL;
}

struct readiness *readiness_new(struct dispatcher *d, char *errbuf, size_t errlen)
{
    struct readiness *r = calloc(1, sizeof *r);
    if (r == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    r->d = d;
    pthread_mutex_init(&r->lock, NULL);
    r->probes[DEP_KAFKA].on = true;
    r->probes[DEP_MYSQL].on = true;
    r->probes[DEP_MONGODB].on = d->cfg->mongo_uri && *d->cfg->mongo_uri;
    r->probes[DEP_ELASTICSEARCH].on = d->cfg->es_url && *d->cfg->es_url;
    for (int i = 0; i < DEP_COUNT; i++) {
        struct probe *p = &r->probes[i];
        if (!p->on)
            continue;
        /* Unknown until the first probe answers: report it down. */
        snprintf(p->state.error, sizeof p->state.error, "not probed yet");
        char label[64];
        snprintf(label, sizeof label, "dependency=\"%s\"", dep_names[i]);
        p->up = metrics_gauge("switchboard_dependency_up", label,
                              "1 if the dependency answered its last probe");
    }
    int rc = pthread_create(&r->thread, NULL, probe_main, r);
    if (rc != 0) {
        sb_errf(errbuf, errlen, "cannot start the probe thread: %s", strerror(rc));
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
    }
    return r;
}

void readiness_stop(struct readiness *r)
{
    if (r == NULL || r->stopped)
        return;
    atomic_store(&r->stop, 1);
    pthread_join(r->thread, NULL);
    r->stopped = true;
}

void readiness_free(struct readiness *r)
{
    if (r == NULL)
        return;
    readiness_stop(r);
    /* A probe may have sat in a pool, and a request's completion (/readyz,
     * the overview) may read the state until the loops' queues are run:
     * the pools are stopped and the loops destroyed before this is
     * called, so nobody touches r afterwards. */
    pthread_mutex_destroy(&r->lock);
    free(r);
}

bool readiness_get(struct readiness *r, enum readiness_dep dep, struct dep_state *out)
{
    if (!r->probes[dep].on)
        return false;
    pthread_mutex_lock(&r->lock);
    *out = r->probes[dep].state;
    pthread_mutex_unlock(&r->lock);
    return true;
}
