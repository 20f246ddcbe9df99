/* worker.c - see worker.h. */
#include "worker.h"

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "deadletter.h"
#include "log.h"

#define KNOW_TIMEOUT_MS 2000

static bool role_acts_on(const struct role *r, const char *type)
{
    for (size_t i = 0; i < r->ntypes; i++)
        if (strcmp(r->types[i], type) == 0)
            return true;
    return false;
}

static pthread_mutex_t dead_causes_lock = PTHREAD_MUTEX_INITIALIZER;

/* FNV-1a: which label sets were made is all it tells apart. */
static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
    return h;
}

/* The counter of topic's dead letters of reason's cause. */
static struct metric *dead_metric(struct worker *w, const char *topic, const char *reason)
{
    char cause[KAFKA_DLQ_CAUSE_MAX + 1];
    kafka_dlq_cause(reason, cause);
    for (char *c = cause; *c; c++) /* a label value: no quote, backslash or line break to escape */
        if (*c == '"' || *c == '\\' || *c == '\n')
            *c = '\'';
    uint64_t h = fnv1a(fnv1a(UINT64_C(14695981039346656037), topic) * 31, cause);
    /* The notifier's senders dead-letter too, each on its own thread. */
    pthread_mutex_lock(&dead_causes_lock);
    size_t i = 0;
    while (i < w->n_dead_causes && w->dead_causes[i] != h)
        i++;
    if (i == w->n_dead_causes) {
        if (w->n_dead_causes >= WORKER_DEAD_CAUSES)
            strcpy(cause, "other");
        else
            w->dead_causes[w->n_dead_causes++] = h;
    }
    pthread_mutex_unlock(&dead_causes_lock);
    char labels[METRICS_LABELS_MAX];
    int n = snprintf(labels, sizeof labels, "role=\"%s\",topic=\"%s\",cause=\"%s\"", w->role->name, topic,
                     cause);
    if (n < 0 || (size_t)n >= sizeof labels) /* a topic name near Kafka's limit: counted by role only */
        return NULL;
    return metrics_counter("switchboard_dead_letters_total", labels,
                           "jobs dead-lettered, by source topic and cause (the reason's words before ':', "
                           "numbers as N)");
}

bool worker_dead_letter(struct worker *w, const struct deadletter_src *src, const char *reason)
{
    char err[ERRBUF_LEN];
    if (!deadletter_send(w->producer, src, w->group, reason, err, sizeof err)) {
        log_warn("dead letter not delivered, will retry", "topic=%s partition=%d offset=%lld err=\"%s\"",
                 src->topic, (int)src->partition, (long long)src->offset, err);
        return false;
    }
    log_warn("job dead-lettered", "topic=%s partition=%d offset=%lld reason=\"%s\"", src->topic,
             (int)src->partition, (long long)src->offset, reason);
    metric_add(w->m_dead, 1);
    struct metric *by_cause = dead_metric(w, src->topic, reason);
    if (by_cause)
        metric_add(by_cause, 1);
    return true;
}

/* A batch: the fetched messages and their decoded jobs. */
struct batch {
    rd_kafka_message_t **msgs;
    struct job *jobs;
    size_t n;
};

/* The job's span: its name is the role's, its parent the producer's. */
static void start_job_span(struct worker *w, struct job *j)
{
    char tp[TRACEPARENT_LEN + 8];
    struct trace_ctx parent;
    bool given = kafka_header(j->msg, "traceparent", tp, sizeof tp) && trace_parse(tp, &parent);
    trace_span_start(&j->span, given ? &parent : NULL, w->role->name, TRACE_CONSUMER);
    trace_span_attr(&j->span, "messaging.destination.name", rd_kafka_topic_name(j->msg->rkt));
    trace_span_attr_i64(&j->span, "messaging.kafka.offset", j->msg->offset);
    trace_span_attr_i64(&j->span, "messaging.kafka.partition", j->msg->partition);
    if (j->valid)
        trace_span_attr(&j->span, "job.type", j->env.type);
    trace_id_hex(&j->span.ctx, j->trace_id);
}

/* Ends the spans of a batch's jobs with its outcome. */
static void end_job_spans(struct job *jobs, size_t n, enum db_status st)
{
    for (size_t i = 0; i < n; i++) {
        struct job *j = &jobs[i];
        if (!j->span.ctx.valid)
            continue;
        trace_span_attr(&j->span, "job.outcome",
                        st != DB_OK ? "retried" : j->defer_until_ms ? "deferred" : j->dead ? "dead-lettered" : "done");
        trace_span_end(&j->span, st != DB_OK || j->dead);
    }
}

/* Polls a batch and decodes its jobs (decoding is a third of a worker's
 * CPU, so it is the part worth doing ahead). */
static void batch_fetch(struct worker *w, struct batch *b)
{
    b->n = kafka_consumer_poll_batch(w->consumer, b->msgs, (size_t)w->cfg->batch_size,
                                     (size_t)w->cfg->batch_max_bytes, (int)w->cfg->batch_wait_ms);
    for (size_t i = 0; i < b->n; i++) {
        struct job *j = &b->jobs[i];
        memset(j, 0, sizeof *j);
        j->msg = b->msgs[i];
        j->valid = envelope_decode(&j->env, j->msg->payload, j->msg->len, j->reason,
                                   sizeof j->reason);
        j->dead = !j->valid && w->role->owns_topics;
        if (trace_on())
            start_job_span(w, j);
    }
}

static void batch_release(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        envelope_clear(&b->jobs[i].env);
        rd_kafka_message_destroy(b->jobs[i].msg);
    }
    b->n = 0;
}

/* The prefetch helper: one standing thread that, while the role writes the
 * current batch, releases the batch before it and fetches and decodes the
 * next one into the same place, so the decoded jobs are allocated and freed
 * on one thread. It replaced a thread created per batch, whose jobs the
 * main thread freed: persisting 200k jobs went from 118k to 128k rows/s
 * (bench/README.md). malloc and free are still a large share of the
 * persister: a batch's cJSON trees are more than glibc's per-thread cache
 * holds. */
struct helper {
    struct worker *w;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct batch *work; /* to release, then fetch into; NULL when idle */
    bool quit;
};

static void *helper_main(void *arg)
{
    struct helper *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->work == NULL && !h->quit)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->work == NULL)
            break; /* quit, and nothing handed over */
        struct batch *b = h->work;
        pthread_mutex_unlock(&h->mu);
        batch_release(b);
        batch_fetch(h->w, b);
        pthread_mutex_lock(&h->mu);
        h->work = NULL;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static bool helper_start(struct helper *h, struct worker *w)
{
    memset(h, 0, sizeof *h);
    h->w = w;
    if (pthread_mutex_init(&h->mu, NULL) != 0)
        return false;
    if (pthread_cond_init(&h->cv, NULL) != 0) {
        pthread_mutex_destroy(&h->mu);
        return false;
    }
    if (pthread_create(&h->thread, NULL, helper_main, h) != 0) {
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        return false;
    }
    return true;
}

static void helper_give(struct helper *h, struct batch *b)
{
    pthread_mutex_lock(&h->mu);
    h->work = b;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void helper_wait(struct helper *h)
{
    pthread_mutex_lock(&h->mu);
    while (h->work != NULL)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

static void helper_stop(struct helper *h)
{
    pthread_mutex_lock(&h->mu);
    h->quit = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
}

bool worker_defer_followers(struct job *const *jobs, size_t n)
{
    size_t ndeferred = 0;
    for (size_t i = 0; i < n; i++)
        ndeferred += jobs[i]->defer_until_ms != 0;
    if (ndeferred == 0)
        return true;
    const struct job **first = calloc(ndeferred, sizeof *first); /* per partition */
    if (first == NULL)
        return false;
    size_t nfirst = 0;
    for (size_t i = 0; i < n; i++) {
        struct job *j = jobs[i];
        size_t k = 0;
        while (k < nfirst &&
               !(first[k]->msg->rkt == j->msg->rkt && first[k]->msg->partition == j->msg->partition))
            k++;
        if (k < nfirst) {
            j->defer_until_ms = first[k]->defer_until_ms;
            j->hold = first[k]->hold;
        } else if (j->defer_until_ms) {
            first[nfirst++] = j;
        }
    }
    free(first);
    return true;
}

/* worker_defer_followers over the whole batch, the jobs the role did not
 * look at (another type, or a malformed job) too. */
static bool defer_batch_followers(struct job *jobs, size_t n)
{
    size_t i = 0;
    while (i < n && jobs[i].defer_until_ms == 0)
        i++;
    if (i == n)
        return true;
    struct job **all = calloc(n, sizeof *all);
    if (all == NULL)
        return false;
    for (i = 0; i < n; i++)
        all[i] = &jobs[i];
    bool ok = worker_defer_followers(all, n);
    free(all);
    return ok;
}

/* Handles the batch; DB_TRANSIENT means "rewind and retry later". */
static enum db_status process_batch(struct worker *w, struct job *jobs, size_t n)
{
    char err[ERRBUF_LEN];
    struct job **act = calloc(n, sizeof *act);
    if (act == NULL)
        return DB_TRANSIENT;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (jobs[i].valid && role_acts_on(w->role, jobs[i].env.type))
            act[k++] = &jobs[i];
    int64_t t0 = trace_on() ? trace_now_ns() : 0;
    enum db_status st = k ? w->role->handle(w, act, k, err, sizeof err) : DB_OK;
    /* Each traced job gets the batch's write as a child span: a batch
     * holds jobs of many traces, and each trace shows what its job waited on. */
    for (size_t i = 0; t0 && i < k; i++) {
        struct trace_span bs;
        trace_span_start_at(&bs, &act[i]->span.ctx, "batch", TRACE_INTERNAL, t0);
        trace_span_attr_i64(&bs, "batch.size", (int64_t)k);
        trace_span_end(&bs, st != DB_OK);
    }
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
    if (st != DB_TRANSIENT && !defer_batch_followers(jobs, n)) {
        sb_errf(err, sizeof err, "out of memory deferring jobs");
        st = DB_TRANSIENT;
    }
    if (st == DB_TRANSIENT) {
        log_warn("batch deferred", "role=%s jobs=%zu err=\"%s\"", w->role->name, n, err);
        return DB_TRANSIENT;
    }
    for (size_t i = 0; i < n; i++) {
        if (!jobs[i].dead || jobs[i].defer_until_ms)
            continue; /* a deferred one is dead-lettered when it comes again */
        const struct deadletter_src src = deadletter_src_of(jobs[i].msg);
        log_set_trace(jobs[i].trace_id);
        bool sent = worker_dead_letter(w, &src, jobs[i].reason);
        log_set_trace(NULL);
        if (!sent)
            return DB_TRANSIENT;
    }
    return DB_OK;
}

/* Leaves deferred jobs unacknowledged: rewinds each of their partitions to
 * the first deferred job and pauses it until that job's time. Returns how
 * many of msgs[0..n) (moved to the front) are done and can be stored, or
 * SIZE_MAX if the deferral could not be set up (rewind the whole batch). */
static size_t defer_jobs(struct worker *w, struct job *jobs, rd_kafka_message_t **msgs, size_t n)
{
    char err[ERRBUF_LEN];
    size_t done = 0, ndeferred = 0;
    for (size_t i = 0; i < n; i++)
        ndeferred += jobs[i].defer_until_ms != 0;
    if (ndeferred == 0)
        return n;
    rd_kafka_message_t **deferred = calloc(ndeferred, sizeof *deferred);
    if (deferred == NULL)
        return SIZE_MAX;
    ndeferred = 0;
    for (size_t i = 0; i < n; i++)
        if (jobs[i].defer_until_ms == 0)
            msgs[done++] = jobs[i].msg;
        else
            deferred[ndeferred++] = jobs[i].msg;
    bool rewound = kafka_consumer_rewind(w->consumer, deferred, ndeferred, err, sizeof err);
    free(deferred);
    if (!rewound) {
        log_warn("rewind of deferred jobs failed", "err=\"%s\"", err);
        for (size_t i = 0; i < n; i++) /* msgs as they were, for the caller's rewind */
            msgs[i] = jobs[i].msg;
        return SIZE_MAX;
    }
    for (size_t i = 0; i < n; i++) {
        if (jobs[i].defer_until_ms == 0)
            continue;
        const char *topic = rd_kafka_topic_name(jobs[i].msg->rkt);
        int32_t part = jobs[i].msg->partition;
        struct paused_partition *p = pauses_find(&w->paused, topic, part);
        if (p) {
            pauses_merge(p, jobs[i].defer_until_ms, jobs[i].hold);
        } else if (w->paused.n == WORKER_MAX_PAUSED) {
            /* not paused: fetched again at once, and deferred again */
        } else if (!kafka_consumer_pause(w->consumer, topic, part, true, err, sizeof err)) {
            log_warn("pause failed", "err=\"%s\"", err);
        } else {
            bool added = pauses_add(&w->paused, topic, part, jobs[i].defer_until_ms, jobs[i].hold);
            assert(added);
            (void)added;
        }
    }
    return done;
}

static void resume_due(struct worker *w)
{
    char err[ERRBUF_LEN];
    int64_t now = sb_now_ms();
    struct paused_partition p;
    while (pauses_take_due(&w->paused, now, &p))
        if (!kafka_consumer_pause(w->consumer, p.topic, p.partition, false, err, sizeof err))
            log_warn("resume failed", "err=\"%s\"", err); /* a rebalance resumed it already */
}

/* Pins the batch's pinned jobs and stores the offsets of msgs[0..n), the
 * done ones (reordered): a partition with a pin stores its lowest pin's
 * offset, and its pins remember how far it got (holds.h). */
static bool store_done(struct worker *w, const struct job *jobs, size_t njobs, rd_kafka_message_t **msgs,
                       size_t n, char *errbuf, size_t errlen)
{
    struct pins *ps = &w->pins;
    size_t before = ps->n;
    for (size_t i = 0; i < njobs; i++) {
        const struct job *j = &jobs[i];
        if (!j->pin || j->defer_until_ms)
            continue;
        if (!pins_add(ps, rd_kafka_topic_name(j->msg->rkt), j->msg->partition, j->msg->offset, j->pin)) {
            ps->n = before;
            return sb_errf(errbuf, errlen, "more than %d jobs pinned", WORKER_MAX_PINS);
        }
    }
    if (ps->n == 0)
        return kafka_consumer_store(w->consumer, msgs, n, errbuf, errlen);
    size_t k = n; /* msgs[k..n) are of pinned partitions */
    for (size_t i = 0; i < k;) {
        if (pins_lowest(ps, rd_kafka_topic_name(msgs[i]->rkt), msgs[i]->partition)) {
            rd_kafka_message_t *t = msgs[i];
            msgs[i] = msgs[--k];
            msgs[k] = t;
        } else {
            i++;
        }
    }
    bool ok = kafka_consumer_store(w->consumer, msgs, k, errbuf, errlen);
    for (size_t i = 0; ok && i < ps->n; i++)
        if (pins_lowest(ps, ps->v[i].topic, ps->v[i].partition) == &ps->v[i])
            ok = kafka_consumer_store_at(w->consumer, ps->v[i].topic, ps->v[i].partition,
                                         pins_store_at(&ps->v[i]), errbuf, errlen);
    if (!ok) {
        ps->n = before;
        return false;
    }
    for (size_t i = k; i < n; i++)
        pins_done(ps, rd_kafka_topic_name(msgs[i]->rkt), msgs[i]->partition, msgs[i]->offset);
    return true;
}

void worker_unpin(struct worker *w, uint64_t tag, bool handled)
{
    char err[ERRBUF_LEN];
    struct pin_release r;
    if (!pins_remove(&w->pins, tag, handled, &r))
        return;
    bool ok = r.seek ? kafka_consumer_seek_to(w->consumer, r.topic, r.partition, r.offset, err, sizeof err)
                     : kafka_consumer_store_at(w->consumer, r.topic, r.partition, r.offset, err, sizeof err);
    if (!ok)
        log_warn("the offset past a pinned job was not moved", "topic=%s partition=%d offset=%lld seek=%d err=\"%s\"",
                 r.topic, (int)r.partition, (long long)r.offset, r.seek, err);
}

void worker_release(struct worker *w, uint64_t below)
{
    pauses_release(&w->paused, below);
}

static void on_revoke(void *arg)
{
    struct worker *w = arg;
    w->role->revoked(w);
    w->pins.n = 0; /* the partitions are gone; their next owner starts at the pins */
}

void worker_know_topics(struct worker *w, const char *const *topics, size_t n)
{
    char err[ERRBUF_LEN];
    if (!kafka_producer_know(w->producer, topics, n, KNOW_TIMEOUT_MS, err, sizeof err))
        log_warn("topics not looked up ahead; the first message to each may wait ~1 s", "err=\"%s\"", err);
}

int worker_run(struct worker *w)
{
    size_t max = (size_t)w->cfg->batch_size;
    struct batch cur = {calloc(max, sizeof *cur.msgs), calloc(max, sizeof *cur.jobs), 0};
    struct batch next = {calloc(max, sizeof *next.msgs), calloc(max, sizeof *next.jobs), 0};
    int rc = 1;
    if (!cur.msgs || !cur.jobs || !next.msgs || !next.jobs) {
        log_error("out of memory", "batch_size=%zu", max);
        goto out;
    }
    rc = 0;
    struct backoff b;
    backoff_init(&b, w->cfg->retry_base_ms, w->cfg->retry_cap_ms);
    char err[ERRBUF_LEN];
    int64_t next_tick = 0;
    struct helper helper;
    bool helping = w->role->prefetch && helper_start(&helper, w);
    if (w->role->prefetch && !helping)
        log_warn("no prefetch thread: batches are fetched in turn", "role=%s", w->role->name);
    bool have_next = false; /* next holds a batch fetched ahead */
    if (w->role->revoked)
        kafka_consumer_on_revoke(w->consumer, on_revoke, w);
    while (!atomic_load(w->stop)) {
        if (w->role->tick && sb_mono_ms() >= next_tick) {
            w->role->tick(w);
            next_tick = sb_mono_ms() + 1000;
        }
        if (w->role->turn)
            w->role->turn(w);
        if (w->paused.n)
            resume_due(w);
        if (have_next) { /* fetched while the last batch was handled */
            struct batch t = cur;
            cur = next;
            next = t;
            have_next = false;
        } else {
            batch_release(&cur);
            batch_fetch(w, &cur);
        }
        if (cur.n == 0)
            continue;
        /* While the handler waits on its database, the helper releases
         * the batch handled before and fetches the next one in its place
         * (waited for below, before anything else touches the consumer's
         * positions). */
        if (helping)
            helper_give(&helper, &next);
        size_t n = cur.n;
        enum db_status st = process_batch(w, cur.jobs, n);
        size_t ndone = n;
        if (st == DB_OK && (ndone = defer_jobs(w, cur.jobs, cur.msgs, n)) == SIZE_MAX) {
            ndone = n; /* msgs[0..ndone) are the done ones */
            st = DB_TRANSIENT;
        }
        if (st == DB_OK && !store_done(w, cur.jobs, n, cur.msgs, ndone, err, sizeof err)) {
            log_warn("offset store failed", "err=\"%s\"", err);
            st = DB_TRANSIENT;
        }
        end_job_spans(cur.jobs, n, st);
        if (helping) {
            helper_wait(&helper);
            have_next = next.n > 0;
        }
        if (st == DB_OK) {
            backoff_reset(&b);
            metric_add(w->m_processed, (int64_t)n);
            metric_add(w->m_batches, 1);
            metric_set(w->m_last_batch, sb_now_ms() / 1000);
            log_debug("batch done", "role=%s jobs=%zu", w->role->name, n);
        } else {
            /* Nothing of this batch is acknowledged: fetch it again after
             * a pause, rather than spin or crash while a dependency is away.
             * A prefetched batch goes back too; it is rewound first so that
             * a partition in both ends at this batch's (earlier) offset. */
            if (!kafka_consumer_rewind(w->consumer, next.msgs, next.n, err, sizeof err))
                log_warn("rewind failed", "err=\"%s\"", err);
            batch_release(&next);
            have_next = false;
            if (!kafka_consumer_rewind(w->consumer, cur.msgs, ndone, err, sizeof err))
                log_warn("rewind failed", "err=\"%s\"", err);
            int64_t delay = backoff_next(&b);
            metric_add(w->m_retries, 1);
            log_info("retrying batch", "role=%s jobs=%zu delay_ms=%lld attempt=%u",
                     w->role->name, n, (long long)delay, b.attempt);
            sb_sleep_ms_unless(delay, w->stop);
        }
        /* cur is released when its place is next fetched into. */
    }
    if (helping)
        helper_stop(&helper);
    /* A prefetched batch left at shutdown is not acknowledged: redelivered. */
    batch_release(&cur);
    batch_release(&next);
out:
    free(cur.msgs);
    free(cur.jobs);
    free(next.msgs);
    free(next.jobs);
    return rc;
}
