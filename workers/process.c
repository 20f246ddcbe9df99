/* process.c - one worker process of one role: its clients (MySQL, Kafka
 * consumer and producer), its status port, the role's run (worker_run) and
 * the orderly close (see process.h). */
#include "process.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deadletter.h"
#include "log.h"
#include "statusport.h"
#include "trace.h"

#define STATUS_MAX_PARTITIONS 1024
#define STATUS_LAG_TIMEOUT_MS 2000 /* the committed offsets' round trip */

/* Status port (statusport.h), on its thread: the role, and the seconds
 * since the last committed batch. */
static void status_health(void *arg, cJSON *body)
{
    const struct worker *w = arg;
    cJSON_AddStringToObject(body, "role", w->role->name);
    statusport_add_age(body, "seconds_since_batch", w->m_last_batch);
}

/* The consumer group's lag per assigned partition. */
static void status_metrics(void *arg, struct strbuf *b)
{
    const struct worker *w = arg;
    struct kafka_lag *lag = calloc(STATUS_MAX_PARTITIONS, sizeof *lag);
    size_t n = lag ? kafka_consumer_lag(w->consumer, lag, STATUS_MAX_PARTITIONS, STATUS_LAG_TIMEOUT_MS)
                   : 0;
    strbuf_appendf(b, "# HELP switchboard_worker_lag jobs in an assigned partition past the "
                      "group's committed offset\n"
                      "# TYPE switchboard_worker_lag gauge\n");
    for (size_t i = 0; i < n; i++)
        if (lag[i].lag >= 0) /* unknown: nothing committed or fetched there yet */
            strbuf_appendf(b, "switchboard_worker_lag{role=\"%s\",topic=\"%s\",partition=\"%d\"} %lld\n",
                           w->role->name, lag[i].topic, (int)lag[i].partition, (long long)lag[i].lag);
    free(lag);
}

int worker_process_run(const struct sb_config *cfg, const struct role *role, const char *prog,
                       const atomic_int *stop)
{
    char err[ERRBUF_LEN];
    struct db_url url;
    if (!db_parse_url(cfg->mysql_url, &url, err, sizeof err))
        die("bad configuration", "err=\"%s\"", err);
    char group[96];
    snprintf(group, sizeof group, "switchboard-%s", role->name);
    struct worker w = {.cfg = cfg, .role = role, .group = group, .stop = stop};
    char service[64];
    snprintf(service, sizeof service, "switchboard-%s", role->name);
    if (!trace_setup(service, cfg, err, sizeof err))
        die("bad configuration", "err=\"%s\"", err);
    char labels[96];
    snprintf(labels, sizeof labels, "role=\"%s\"", role->name);
    w.m_processed = metrics_counter("switchboard_worker_jobs_total", labels, "jobs consumed");
    w.m_dead = metrics_counter("switchboard_worker_dead_letters_total", labels, "jobs dead-lettered");
    w.m_retries = metrics_counter("switchboard_worker_batch_retries_total", labels, "batches rewound");
    w.m_batches = metrics_counter("switchboard_worker_batches_total", labels, "batches committed");
    w.m_last_batch = metrics_gauge("switchboard_worker_last_batch_timestamp_seconds", labels,
                                   "when the last batch was committed (unix seconds)");
    w.db = db_new(&url);
    /* A generous delivery timeout: a dead letter must get through, and the
     * loop retries the whole batch if it does not. */
    w.producer = kafka_producer_new(cfg->kafka_brokers, cfg->kafka_conf, 30000, err, sizeof err);
    if (w.db == NULL || w.producer == NULL)
        die("cannot start", "err=\"%s\"", err);
    w.consumer = kafka_consumer_new(cfg->kafka_brokers, cfg->kafka_conf, group, role->topics,
                                    role->ntopics, cfg->kafka_session_timeout_ms, err, sizeof err);
    if (w.consumer == NULL)
        die("cannot create Kafka consumer", "err=\"%s\"", err);
    /* Dead letters go to <topic>.dlq; the notifier also produces to its
     * own notify.retry. */
    char dlq[ROLE_MAX_TOPICS][KAFKA_DLQ_NAME_MAX];
    const char *produced[2 * ROLE_MAX_TOPICS];
    size_t nproduced = 0;
    for (size_t i = 0; i < role->ntopics && i < ROLE_MAX_TOPICS; i++) {
        kafka_dlq_name(role->topics[i], dlq[i]);
        produced[nproduced++] = role->topics[i];
        produced[nproduced++] = dlq[i];
    }
    worker_know_topics(&w, produced, nproduced);
    struct statusport *status = NULL;
    const struct statusport_source src = {prog, status_health, status_metrics, &w};
    if (*cfg->status_listen && (status = statusport_new(cfg->status_listen, &src, err, sizeof err)) == NULL)
        die("cannot serve status_listen", "err=\"%s\"", err);
    log_info("worker started", "role=%s group=%s pid=%d", role->name, group, (int)getpid());

    int rc = 1;
    if (role->prepare == NULL || role->prepare(&w))
        rc = worker_run(&w);
    if (role->finish)
        role->finish(&w);

    log_info("worker stopping", "role=%s", role->name);
    statusport_free(status);
    kafka_consumer_free(w.consumer);
    kafka_producer_free(w.producer, (int)cfg->shutdown_timeout_ms);
    db_free(w.db);
    if (w.redis)
        redisFree(w.redis);
    trace_shutdown(); /* the last spans, after the role's last jobs ended */
    return rc;
}
