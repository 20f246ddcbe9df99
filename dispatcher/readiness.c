/* readiness.c - see readiness.h. */
#include "readiness.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct readiness {
    struct dispatcher *d;
    pthread_t thread;
    volatile int stop;
    pthread_mutex_t lock;
    struct dep_state kafka, mysql;
    bool mysql_probe_running; /* one ping in the pool at a time */
    struct metric *kafka_up, *mysql_up;
};

static void set_state(struct readiness *r, struct dep_state *s, struct metric *gauge,
                      const char *name, bool ok, const char *err)
{
    pthread_mutex_lock(&r->lock);
    bool changed = s->ok != ok;
    if (changed)
        s->since_ms = sb_now_ms();
    s->ok = ok;
    snprintf(s->error, sizeof s->error, "%s", ok ? "" : err);
    pthread_mutex_unlock(&r->lock);
    metric_set(gauge, ok);
    if (changed) {
        if (ok)
            log_info("dependency up", "dependency=%s", name);
        else
            log_warn("dependency down", "dependency=%s err=\"%s\"", name, err);
    }
}

/* Runs on a pool thread with that thread's connection. */
static void mysql_probe_work(void *ctx, void *arg)
{
    struct readiness *r = arg;
    char err[ERRBUF_LEN] = "";
    bool ok = db_ping(ctx, err, sizeof err) == DB_OK;
    set_state(r, &r->mysql, r->mysql_up, "mysql", ok, err);
    pthread_mutex_lock(&r->lock);
    r->mysql_probe_running = false;
    pthread_mutex_unlock(&r->lock);
}

static void *probe_main(void *arg)
{
    struct readiness *r = arg;
    while (!r->stop) {
        pthread_mutex_lock(&r->lock);
        bool start = !r->mysql_probe_running;
        r->mysql_probe_running = true;
        pthread_mutex_unlock(&r->lock);
        if (start && !threadpool_submit(r->d->dbpool, mysql_probe_work, NULL, NULL, r)) {
            pthread_mutex_lock(&r->lock);
            r->mysql_probe_running = false;
            pthread_mutex_unlock(&r->lock);
        }
        char err[ERRBUF_LEN] = "";
        int timeout = (int)(r->d->cfg->readiness_interval_ms < 2000 ? r->d->cfg->readiness_interval_ms : 2000);
        bool ok = kafka_producer_check(r->d->producer, timeout, err, sizeof err);
        set_state(r, &r->kafka, r->kafka_up, "kafka", ok, err);
        sb_sleep_ms_unless(r->d->cfg->readiness_interval_ms, &r->stop);
    }
    return NULL;
}

struct readiness *readiness_new(struct dispatcher *d)
{
    struct readiness *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->d = d;
    pthread_mutex_init(&r->lock, NULL);
    /* Unknown until the first probe answers: report not ready. */
    snprintf(r->kafka.error, sizeof r->kafka.error, "not probed yet");
    snprintf(r->mysql.error, sizeof r->mysql.error, "not probed yet");
    r->kafka_up = metrics_gauge("switchboard_dependency_up", "dependency=\"kafka\"",
                                "1 if the dependency answered its last probe");
    r->mysql_up = metrics_gauge("switchboard_dependency_up", "dependency=\"mysql\"",
                                "1 if the dependency answered its last probe");
    if (pthread_create(&r->thread, NULL, probe_main, r) != 0) {
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
    }
    return r;
}

void readiness_free(struct readiness *r)
{
    if (r == NULL)
        return;
    r->stop = 1;
    pthread_join(r->thread, NULL);
    /* A probe may have sat in the MySQL pool; the pool is stopped (its
     * jobs finished) before this is called, so nobody touches r
     * afterwards. */
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void snapshot(struct readiness *r, const struct dep_state *s, struct dep_state *out)
{
    pthread_mutex_lock(&r->lock);
    *out = *s;
    pthread_mutex_unlock(&r->lock);
}

void readiness_kafka(struct readiness *r, struct dep_state *out)
{
    snapshot(r, &r->kafka, out);
}

void readiness_mysql(struct readiness *r, struct dep_state *out)
{
    snapshot(r, &r->mysql, out);
}
