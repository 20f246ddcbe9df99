/* worker.c - see worker.h. */
#include "worker.h"

#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "deadletter.h"
#include "log.h"

static bool role_acts_on(const struct role *r, const char *type)
{
    for (size_t i = 0; i < r->ntypes; i++)
        if (strcmp(r->types[i], type) == 0)
            return true;
    return false;
}

static void job_describe(const struct job *j, char *out, size_t cap)
{
    snprintf(out, cap, "topic=%s partition=%d offset=%lld", rd_kafka_topic_name(j->msg->rkt),
             (int)j->msg->partition, (long long)j->msg->offset);
}

/* Handles the batch; DB_TRANSIENT means "rewind and retry later". */
static enum db_status process_batch(struct worker *w, struct job *jobs, size_t n)
{
    char err[ERRBUF_LEN];
    struct job **act = calloc(n, sizeof *act);
    if (act == NULL)
        return DB_TRANSIENT;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct job *j = &jobs[i];
        j->valid = envelope_decode(&j->env, j->msg->payload, j->msg->len, j->reason,
                                   sizeof j->reason);
        j->dead = !j->valid && w->role->owns_topics;
        if (j->valid && role_acts_on(w->role, j->env.type))
            act[k++] = j;
    }
    enum db_status st = k ? w->role->handle(w, act, k, err, sizeof err) : DB_OK;
    if (st == DB_FATAL) {
        /* One job poisons the transaction: apply them one by one so only
         * that job goes to the dead-letter topic. */
        log_warn("batch failed, isolating the bad job", "jobs=%zu err=\"%s\"", k, err);
        st = DB_OK;
        for (size_t i = 0; i < k && st != DB_TRANSIENT; i++) {
            st = w->role->handle(w, &act[i], 1, err, sizeof err);
            if (st == DB_FATAL) {
                act[i]->dead = true;
                snprintf(act[i]->reason, sizeof act[i]->reason, "%s", err);
                st = DB_OK;
            }
        }
    }
    free(act);
    if (st == DB_TRANSIENT) {
        log_warn("batch deferred", "role=%s jobs=%zu err=\"%s\"", w->role->name, n, err);
        return DB_TRANSIENT;
    }
    for (size_t i = 0; i < n; i++) {
        if (!jobs[i].dead)
            continue;
        char where[200];
        job_describe(&jobs[i], where, sizeof where);
        if (!deadletter_send(w->producer, jobs[i].msg, w->group, jobs[i].reason, err,
                             sizeof err)) {
            log_warn("dead letter not delivered, will retry", "%s err=\"%s\"", where, err);
            return DB_TRANSIENT;
        }
        log_warn("job dead-lettered", "%s reason=\"%s\"", where, jobs[i].reason);
        metric_add(w->m_dead, 1);
    }
    return DB_OK;
}

int worker_run(struct worker *w)
{
    size_t max = (size_t)w->cfg->batch_size;
    rd_kafka_message_t **msgs = calloc(max, sizeof *msgs);
    struct job *jobs = calloc(max, sizeof *jobs);
    if (msgs == NULL || jobs == NULL) {
        free(msgs);
        free(jobs);
        log_error("out of memory", "batch_size=%zu", max);
        return 1;
    }
    struct backoff b;
    backoff_init(&b, w->cfg->retry_base_ms, w->cfg->retry_cap_ms);
    char err[ERRBUF_LEN];
    int64_t next_tick = 0;
    while (!*w->stop) {
        if (w->role->tick && sb_mono_ms() >= next_tick) {
            w->role->tick(w);
            next_tick = sb_mono_ms() + 1000;
        }
        size_t n = kafka_consumer_poll_batch(w->consumer, msgs, max, (size_t)w->cfg->batch_max_bytes,
                                             (int)w->cfg->batch_wait_ms);
        if (n == 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            memset(&jobs[i], 0, sizeof jobs[i]);
            jobs[i].msg = msgs[i];
        }
        enum db_status st = process_batch(w, jobs, n);
        if (st == DB_OK && !kafka_consumer_store(w->consumer, msgs, n, err, sizeof err)) {
            log_warn("offset store failed", "err=\"%s\"", err);
            st = DB_TRANSIENT;
        }
        if (st == DB_OK) {
            backoff_reset(&b);
            metric_add(w->m_processed, (int64_t)n);
            metric_add(w->m_batches, 1);
            log_debug("batch done", "role=%s jobs=%zu", w->role->name, n);
        } else {
            /* Nothing of this batch is acknowledged: fetch it again after
             * a pause, rather than spin or crash while a dependency is away. */
            if (!kafka_consumer_rewind(w->consumer, msgs, n, err, sizeof err))
                log_warn("rewind failed", "err=\"%s\"", err);
            int64_t delay = backoff_next(&b);
            metric_add(w->m_retries, 1);
            log_info("retrying batch", "role=%s jobs=%zu delay_ms=%lld attempt=%u",
                     w->role->name, n, (long long)delay, b.attempt);
            sb_sleep_ms_unless(delay, w->stop);
        }
        for (size_t i = 0; i < n; i++) {
            envelope_clear(&jobs[i].env);
            rd_kafka_message_destroy(msgs[i]);
        }
    }
    free(msgs);
    free(jobs);
    return 0;
}
