/* notifier.c - the notifier role: delivers notify.send jobs.
 *
 * For each job (senders take a batch's jobs group by group, below):
 *   1. check it (channel, recipient) - a bad one is dead-lettered and, if
 *      its id is usable, recorded as dead;
 *   2. claim its record in the store. The record's id makes redelivery
 *      harmless (a sent notification is not sent again, a dead one is only
 *      dead-lettered again); the
 *      unique idempotency key makes a second notification with the same key
 *      a no-op, or a dead letter if its content differs;
 *   3. wait for the channel's token bucket (a provider's rate limit);
 *   4. mark it sending, deliver it, and record the outcome: sent; or, for a
 *      passing failure, failed + a copy on notify.retry carrying the attempt
 *      count and the time before which it must not run; or, after
 *      notify_max_attempts or a permanent refusal, dead + dead letter.
 *
 * A batch's jobs are delivered by notify_concurrency senders at once (a
 * provider answers in tens to hundreds of milliseconds; one at a time, a
 * process would deliver a few per second). Each sender has its own store
 * connection and provider handles. The batch is cut into groups in log
 * order: jobs naming the same notification id are one group, so a repeat
 * is never delivered beside its original (noteplan.h). A sender that is
 * free takes the next group and delivers its jobs one after the other, so
 * a slow delivery holds up only its own group, not a share of the batch
 * dealt out in advance. Once every group has been taken, a delivery still
 * running after notify_straggler_ms is detached (detach): the next batch
 * starts without waiting for it, on the senders that are free. The job is
 * pinned: its partition's later jobs are delivered as usual, but the
 * partition's committed offset stays at it until it is over, so a crash
 * meanwhile fetches it again (and the later ones, which find themselves
 * done). A job of a later batch with the id or key of a detached delivery
 * is held (rewound, and fetched again once that is over), so that one
 * notification is never delivered twice at once; and partitions are given
 * up in a rebalance only once no detached delivery runs
 * (notifier_revoked), or their next owner could find a record "sending"
 * and deliver it again.
 *
 * A job on notify.retry whose time has not come is deferred: the worker
 * rewinds and pauses that retry partition until then. notify.requests is
 * never held up by a waiting retry. Retries of one partition run in the
 * order they failed; backoff jitter means one may wait behind another for
 * up to half its own delay.
 *
 * Delivery is at least once: a crash between the provider's acceptance and
 * the "sent" record repeats that one notification (the Idempotency-Key
 * header lets providers that support it drop the repeat). */
#include "notifier.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "channels.h"
#include "deadletter.h"
#include "log.h"
#include "noteplan.h"
#include "notestore.h"
#include "suppress.h"
#include "webhooks.h"
#include "threadpool.h"

/* A held partition resumes at the latest this long after the most the
 * delivery it waits for may take (notify_timeout_ms); normally
 * notifier_turn releases it as soon as that delivery is over. Resumed
 * early, its job is held again. */
#define HOLD_SLACK_MS 2000

struct bucket {
    double tokens;
    int64_t rate; /* per second; 0 = no limit */
    int64_t last_ms;
};

struct notifier;

/* One sender: its provider handles and its backoff; the store is the
 * connection of the pool thread it runs on. The rest is guarded by
 * nf->lock. */
struct sender {
    struct worker *w;
    struct notifier *nf;
    struct channels *channels;
    struct db *db; /* MySQL: the suppression list (its own connection) */
    struct backoff backoff;
    bool busy;        /* sender_work queued or running */
    bool detached;    /* its job in hand outlasted its batch (detach) */
    struct job *orig; /* the batch's job in hand; NULL between jobs */
    size_t at, end;   /* the job in hand's place in grouped, its group's end */
    uint64_t id, key; /* the job in hand's hashes (job_hashes) */
    int64_t began_ms; /* when it took the job in hand (monotonic) */
    uint64_t tag;     /* detached: its pin and hold tag */
    /* Detached: a copy of the job's source, for its dead letter. */
    char src_topic[128];
    struct deadletter_src src;
    char err[ERRBUF_LEN];
};

/* A detached delivery that is over: its pin, and whether it was handled. */
struct finished {
    uint64_t tag;
    bool handled;
};

struct notifier {
    struct worker *w;
    struct threadpool *pool; /* one store connection per sender */
    pthread_t scheduler;     /* releases scheduled sends when their time comes */
    struct webhooks *webhooks; /* each message's statusCallback (webhooks.h) */
    bool scheduler_started;
    atomic_int scheduler_stop;
    struct sender *senders;
    size_t nsenders;
    pthread_mutex_t lock;    /* the buckets and everything below */
    pthread_cond_t changed;  /* a sender finished a job, or its work */
    size_t running;          /* senders at work on this batch */
    /* This batch: group g is grouped[start[g] .. start[g + 1]), in log order. */
    struct job **grouped;
    size_t *start;
    size_t ngroups;
    size_t next_group; /* the next one a free sender takes */
    bool failed;       /* a sender failed or stopped: take no more groups */
    char err[ERRBUF_LEN]; /* the first failure's */
    uint64_t tags;     /* detachments so far: the last tag given */
    size_t ndetached;  /* detached senders still delivering */
    /* Detached deliveries over, for notifier_turn to unpin. A sender ends at
     * most two between turns (one detached in the batch before, one in
     * this one), so 2 * nsenders entries are enough; were they not, a pin
     * would stay until the partition is revoked, which only means that its
     * next owner fetches the job again. */
    struct finished *finished;
    size_t nfinished;
    struct plan_busy *busy; /* nsenders: busy_detached's snapshot */
    struct bucket buckets[CH_COUNT];
    struct metric *m_sent, *m_failed, *m_dead, *m_dupes, *m_detached;
};

/* Frees what notifier_prepare made; curl says whether libcurl started. */
static void notifier_free(struct notifier *nf, bool curl)
{
    if (nf && nf->scheduler_started) {
        atomic_store(&nf->scheduler_stop, 1);
        pthread_join(nf->scheduler, NULL);
    }
    if (nf)
        webhooks_stop(nf->webhooks);
    if (nf) {
        threadpool_free(nf->pool); /* joins the senders' threads */
        for (size_t i = 0; nf->senders && i < nf->nsenders; i++) {
            channels_free(nf->senders[i].channels);
            db_free(nf->senders[i].db);
        }
        free(nf->senders);
        free(nf->finished);
        free(nf->busy);
        pthread_cond_destroy(&nf->changed);
        pthread_mutex_destroy(&nf->lock);
        free(nf);
    }
    if (curl)
        curl_global_cleanup();
}

/* The kafka channel's topics (notify_topics), looked up ahead. */
static void know_event_topics(struct worker *w)
{
    char list[1024];
    const char *topics[64];
    size_t n = 0;
    snprintf(list, sizeof list, "%s", w->cfg->notify_topics);
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t && n < SB_ARRAY_LEN(topics); t = strtok_r(NULL, ",", &save))
        topics[n++] = t;
    worker_know_topics(w, topics, n);
}

/* ---- scheduled sends ------------------------------------------------------ */

#define RELEASE_POLL_MS 1000
#define RELEASE_BATCH 100
/* A send a scheduler marked queued this long ago and that is queued still
 * may never have gone out (it stopped between the mark and the produce):
 * produced again. The notifier sends a repeat once. */
#define RELEASE_STALE_MS 60000

/* One due send: marked queued (unless cancelled meanwhile), then its job
 * produced to notify.requests, keyed by its id as any notification. */
static void release_one(struct notifier *nf, struct notestore *store, const struct note_due *d)
{
    char err[ERRBUF_LEN];
    struct note cur;
    bool found = false, applied = false;
    if (notestore_get(store, d->id, &cur, &found, err, sizeof err) != DB_OK || !found ||
        (cur.status != NOTE_SCHEDULED && cur.status != NOTE_QUEUED))
        return;
    cur.status = NOTE_QUEUED;
    cur.attempts = -1;
    cur.updated_ms = sb_now_ms();
    if (notestore_update(store, &cur, &applied, err, sizeof err) != DB_OK || !applied)
        return; /* cancelled, or the store is away: the next poll sees */
    if (kafka_produce_sync(nf->w->producer, "notify.requests", d->id, strlen(d->id), d->job, strlen(d->job), NULL,
                           err, sizeof err))
        log_info(d->claimed ? "scheduled notification released again" : "scheduled notification released",
                 "id=%s", d->id);
    else
        log_warn("scheduled notification not released; again later", "id=%s err=\"%s\"", d->id, err);
}

/* A thread of its own: every RELEASE_POLL_MS, the scheduled sends whose time
 * has come, from the store (so they survive a restart of every process;
 * several notifiers may release the same one, which is then sent once). */
static void *scheduler_main(void *arg)
{
    struct notifier *nf = arg;
    mysql_thread_init(); /* the MySQL store's client library, on this thread */
    char err[ERRBUF_LEN];
    struct notestore *store = notestore_new(nf->w->cfg, err, sizeof err);
    struct note_due due[RELEASE_BATCH];
    bool warned = false;
    while (store && !atomic_load(&nf->scheduler_stop)) {
        size_t n = 0;
        int64_t now = sb_now_ms();
        if (notestore_due(store, now, now - RELEASE_STALE_MS, due, RELEASE_BATCH, &n, err, sizeof err) != DB_OK) {
            if (!warned)
                log_warn("scheduled sends not looked up; again later", "err=\"%s\"", err);
            warned = true;
        } else {
            warned = false;
        }
        for (size_t i = 0; i < n; i++) {
            if (!atomic_load(&nf->scheduler_stop))
                release_one(nf, store, &due[i]);
            free(due[i].job);
        }
        sb_sleep_ms_unless(n == RELEASE_BATCH ? 0 : RELEASE_POLL_MS, &nf->scheduler_stop);
    }
    if (store == NULL)
        log_error("no scheduler: cannot make a notification store", "err=\"%s\"", err);
    notestore_free(store);
    mysql_thread_end();
    return NULL;
}

bool notifier_prepare(struct worker *w)
{
    char err[ERRBUF_LEN] = "out of memory";
    size_t n = (size_t)w->cfg->notify_concurrency;
    struct notifier *nf = calloc(1, sizeof *nf);
    bool curl = false;
    if (nf == NULL)
        goto fail;
    nf->lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    /* Waited on with a deadline (the next straggler check): monotonic. */
    if (!sb_cond_init_mono(&nf->changed)) {
        sb_errf(err, sizeof err, "cannot make a condition variable");
        free(nf);
        nf = NULL;
        goto fail;
    }
    if ((nf->senders = calloc(n, sizeof *nf->senders)) == NULL ||
        (nf->finished = calloc(2 * n, sizeof *nf->finished)) == NULL ||
        (nf->busy = calloc(n, sizeof *nf->busy)) == NULL)
        goto fail;
    nf->nsenders = n;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        sb_errf(err, sizeof err, "libcurl did not start");
        goto fail;
    }
    curl = true;
    /* A store that cannot be made (a malformed MONGO_URI) stops the start
     * here rather than failing every delivery later. It does not dial. */
    struct notestore *probe = notestore_new(w->cfg, err, sizeof err);
    if (probe == NULL)
        goto fail;
    const char *kind = notestore_kind(probe);
    notestore_free(probe);
    if ((nf->pool = notestore_pool_new(w->cfg, n, err, sizeof err)) == NULL)
        goto fail;
    struct db_url url;
    if (!db_parse_url(w->cfg->mysql_url, &url, err, sizeof err))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        struct sender *s = &nf->senders[i];
        s->w = w;
        s->nf = nf;
        backoff_init(&s->backoff, w->cfg->notify_backoff_ms, w->cfg->notify_backoff_cap_ms);
        if ((s->channels = channels_new(w->cfg, w->producer)) == NULL || (s->db = db_new(&url)) == NULL) {
            sb_errf(err, sizeof err, "out of memory");
            goto fail;
        }
    }
    know_event_topics(w);
    const int64_t rates[CH_COUNT] = {w->cfg->rate_email, w->cfg->rate_sms, w->cfg->rate_push,
                                     w->cfg->rate_kafka};
    for (int i = 0; i < CH_COUNT; i++) {
        nf->buckets[i].rate = rates[i];
        nf->buckets[i].tokens = (double)rates[i]; /* a second's burst */
        nf->buckets[i].last_ms = sb_mono_ms();
    }
    nf->m_sent = metrics_counter("switchboard_notifications_total", "outcome=\"sent\"",
                                 "notification attempts by outcome");
    nf->m_failed = metrics_counter("switchboard_notifications_total", "outcome=\"retry\"", NULL);
    nf->m_dead = metrics_counter("switchboard_notifications_total", "outcome=\"dead\"", NULL);
    nf->m_dupes = metrics_counter("switchboard_notifications_total", "outcome=\"duplicate\"", NULL);
    nf->m_detached = metrics_counter("switchboard_notifier_detached_total", "",
                                     "deliveries that outlasted their batch (notify_straggler_ms)");
    nf->w = w;
    int rc = pthread_create(&nf->scheduler, NULL, scheduler_main, nf);
    if (rc != 0) {
        sb_errf(err, sizeof err, "cannot start the scheduler: %s", strerror(rc));
        goto fail;
    }
    nf->scheduler_started = true;
    if ((nf->webhooks = webhooks_start(w, err, sizeof err)) == NULL)
        goto fail;
    log_info("notifier ready", "store=%s senders=%zu", kind, n);
    w->state = nf;
    return true;
fail:
    log_error("cannot start the notifier", "err=\"%s\"", err);
    notifier_free(nf, curl);
    return false;
}

void notifier_finish(struct worker *w)
{
    struct notifier *nf = w->state;
    if (nf) {
        threadpool_stop(nf->pool); /* the deliveries still running end */
        notifier_turn(w);          /* and their offsets are stored */
    }
    notifier_free(w->state, w->state != NULL);
    w->state = NULL;
}

/* Waits for a token of the channel's bucket (shared by the senders); false
 * if stopping first. */
static bool bucket_take(struct notifier *nf, enum note_channel ch, const atomic_int *stop)
{
    struct bucket *b = &nf->buckets[ch];
    if (b->rate <= 0)
        return true;
    for (;;) {
        pthread_mutex_lock(&nf->lock);
        int64_t now = sb_mono_ms();
        b->tokens += (double)(now - b->last_ms) * (double)b->rate / 1000.0;
        if (b->tokens > (double)b->rate)
            b->tokens = (double)b->rate;
        b->last_ms = now;
        bool got = b->tokens >= 1.0;
        int64_t wait = 0;
        if (got)
            b->tokens -= 1.0;
        else
            wait = (int64_t)((1.0 - b->tokens) * 1000.0 / (double)b->rate) + 1;
        pthread_mutex_unlock(&nf->lock);
        if (got)
            return true;
        sb_sleep_ms_unless(wait, stop);
        if (atomic_load(stop))
            return false;
    }
}

static void job_dead(struct job *j, const char *fmt, const char *detail)
{
    j->dead = true;
    snprintf(j->reason, sizeof j->reason, fmt, detail);
}

/* The job again on notify.retry, with its attempt count and due time. */
static bool schedule_retry(struct worker *w, struct job *j, int64_t attempts, int64_t due,
                           char *errbuf, size_t errlen)
{
    cJSON *payload = cJSON_Duplicate(j->env.payload, 1);
    if (payload == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return false;
    }
    cJSON_DeleteItemFromObject(payload, "attempt");
    cJSON_DeleteItemFromObject(payload, "not_before");
    cJSON_AddNumberToObject(payload, "attempt", (double)attempts);
    cJSON_AddNumberToObject(payload, "not_before", (double)due);
    char *text = envelope_encode("notify.send", j->env.key, j->env.request_id, j->env.created_at,
                                 payload, errbuf, errlen);
    if (text == NULL)
        return false;
    /* The retry continues the job's trace: its job span is the parent. */
    rd_kafka_headers_t *h = NULL;
    if (j->span.ctx.valid && (h = rd_kafka_headers_new(1)) != NULL) {
        char tp[TRACEPARENT_LEN + 1];
        trace_format(&j->span.ctx, tp);
        rd_kafka_header_add(h, "traceparent", -1, tp, TRACEPARENT_LEN);
    }
    bool ok = kafka_produce_sync(w->producer, "notify.retry", j->env.key, strlen(j->env.key), text,
                                 strlen(text), h, errbuf, errlen);
    free(text);
    return ok;
}

/* The notification a job asks for, into m (borrowed strings); false, with
 * why, if it is not a valid one. */
static bool job_message(const struct worker *w, const cJSON *p, struct note_msg *m, char *why,
                        size_t cap)
{
    *m = (struct note_msg){
        .to = json_str(p, "to", ""),
        .from = json_str(p, "from", ""),
        .title = json_str(p, "title", ""),
        .body = json_str(p, "body", ""),
    };
    if (!note_channel_parse(json_str(p, "channel", ""), &m->channel)) {
        snprintf(why, cap, "channel must be email, sms, push or kafka");
        return false;
    }
    return note_msg_check(m, w->cfg->notify_topics, why, cap);
}

/* The job's idempotency key is held by another notification (existing):
 * a repeat, or a reuse with other content (dead-lettered). */
static enum db_status key_taken(struct notifier *nf, struct notestore *store, struct job *j, struct note *n,
                                struct note *existing, char *errbuf, size_t errlen)
{
    metric_add(nf->m_dupes, 1);
    bool same = strcmp(existing->fingerprint, n->fingerprint) == 0;
    log_info("idempotency key seen before", "id=%s key=\"%s\" holder=%s same_content=%d",
             n->id, n->idem, existing->id, same);
    if (*n->tracking_id) { /* its send-many request must still add up */
        n->idem[0] = '\0';
        n->status = NOTE_DEAD;
        snprintf(n->last_error, sizeof n->last_error,
                 "not sent: idempotency key already used by notification %s", existing->id);
        bool created;
        enum db_status st = notestore_claim(store, n, &created, existing, errbuf, errlen);
        if (st != DB_OK)
            return st;
    }
    if (!same)
        job_dead(j, "idempotency key reused with different content (held by %s)", existing->id);
    return DB_OK;
}

/* Sets n's outcome after a delivery attempt (n->attempts made): sent; or
 * failed, with the retry scheduled; or dead. False if the retry could not
 * be scheduled (the batch is rewound). */
static bool settle(struct sender *s, struct job *j, struct note *n, enum note_channel ch,
                   enum send_result r, const char *why, char *errbuf, size_t errlen)
{
    struct worker *w = s->w;
    struct notifier *nf = s->nf;
    int64_t attempts = n->attempts;
    n->updated_ms = sb_now_ms();
    if (r == SEND_OK) {
        n->status = NOTE_SENT;
        n->last_error[0] = '\0';
        metric_add(nf->m_sent, 1);
        log_info("notification sent", "id=%s channel=%s attempt=%lld", n->id, note_channel_name(ch),
                 (long long)attempts);
        return true;
    }
    snprintf(n->last_error, sizeof n->last_error, "%s", why);
    if (r == SEND_RETRY && attempts < w->cfg->notify_max_attempts) {
        s->backoff.attempt = (unsigned)(attempts - 1);
        int64_t due = sb_now_ms() + backoff_next(&s->backoff);
        if (!schedule_retry(w, j, attempts, due, errbuf, errlen))
            return false;
        n->status = NOTE_RETRYING;
        metric_add(nf->m_failed, 1);
        log_warn("notification failed, will retry", "id=%s channel=%s attempt=%lld err=\"%s\"", n->id,
                 note_channel_name(ch), (long long)attempts, why);
        return true;
    }
    n->status = NOTE_DEAD;
    metric_add(nf->m_dead, 1);
    snprintf(j->reason, sizeof j->reason, "%s after %lld attempt%s: %.200s",
             r == SEND_RETRY ? "gave up" : "refused", (long long)attempts, attempts == 1 ? "" : "s", why);
    j->dead = true;
    return true;
}

/* Runs on a sender's thread, with that thread's store. */
static enum db_status handle_one(struct sender *s, struct notestore *store, struct job *j,
                                 char *errbuf, size_t errlen)
{
    struct worker *w = s->w;
    struct notifier *nf = s->nf;
    const cJSON *p = j->env.payload;
    struct note_msg m;
    struct note n = {0}, existing;
    char why[ERRBUF_LEN], redrive_of[NOTE_REDRIVE_MAX + 1];
    /* Read here, while the message is the batch's (a detached delivery
     * outlives it). */
    bool redriven = j->msg && kafka_header(j->msg, KAFKA_REDRIVE_HEADER, redrive_of, sizeof redrive_of);
    snprintf(n.id, sizeof n.id, "%s", json_str(p, "id", ""));
    snprintf(n.idem, sizeof n.idem, "%s", json_str(p, "idempotency_key", ""));
    snprintf(n.tracking_id, sizeof n.tracking_id, "%s", json_str(p, "tracking_id", ""));
    snprintf(n.callback_url, sizeof n.callback_url, "%s", json_str(p, "status_callback", ""));
    snprintf(n.webhook_key, sizeof n.webhook_key, "%s", json_str(p, "webhook_key", ""));
    n.item = json_i64(p, "item", 0);
    n.created_ms = j->env.created_at;
    n.updated_ms = sb_now_ms();
    bool checked = job_message(w, p, &m, why, sizeof why);
    n.channel = m.channel;
    snprintf(n.to, sizeof n.to, "%s", m.to);
    note_fingerprint(&m, n.fingerprint);
    if (!checked) {
        /* Recorded as dead (without its key, which a valid request may
         * want), so GET /v1/messages/{id} tells the producer why. */
        n.status = NOTE_DEAD;
        n.idem[0] = '\0';
        snprintf(n.last_error, sizeof n.last_error, "%s", why);
        bool created;
        enum db_status st = notestore_claim(store, &n, &created, &existing, errbuf, errlen);
        if (st == DB_TRANSIENT)
            return st;
        if (st == DB_OK && !created && strcmp(existing.id, n.id) == 0 && !note_status_terminal(existing.status)) {
            /* Recorded before, valid then (a scheduled send released after
             * the rules changed): dead now, or its scheduler would release
             * it again and again. */
            existing.status = NOTE_DEAD;
            existing.attempts = -1;
            existing.updated_ms = sb_now_ms();
            snprintf(existing.last_error, sizeof existing.last_error, "%s", why);
            bool applied;
            if ((st = notestore_update(store, &existing, &applied, errbuf, errlen)) == DB_TRANSIENT)
                return st;
        }
        job_dead(j, "invalid notification: %.200s", why);
        return DB_OK;
    }

    bool created = false;
    /* A scheduled send whose time has not come: recorded as scheduled,
     * with the job, for the scheduler to produce again then (scheduler
     * below); nothing goes now. */
    int64_t send_at = json_i64(p, "send_at", 0);
    bool later = send_at > sb_now_ms();
    char *job_text = later && j->msg ? strndup(j->msg->payload, j->msg->len) : NULL;
    if (later && job_text == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return DB_TRANSIENT;
    }
    n.status = later ? NOTE_SCHEDULED : NOTE_QUEUED;
    n.send_at_ms = later ? send_at : 0;
    n.job = job_text;
    enum db_status st = notestore_claim(store, &n, &created, &existing, errbuf, errlen);
    n.job = NULL;
    free(job_text);
    if (st != DB_OK)
        return st;
    if (!created && strcmp(existing.id, n.id) != 0)
        return key_taken(nf, store, j, &n, &existing, errbuf, errlen);
    if (later && (created || existing.status == NOTE_SCHEDULED)) {
        if (created)
            log_info("notification scheduled", "id=%s send_at=%lld", n.id, (long long)send_at);
        return DB_OK;
    }
    if (!created && existing.status == NOTE_SCHEDULED) {
        /* Its time has come and this copy is the one to send (a scheduler
         * produced it before it could mark it queued). */
        existing.status = NOTE_QUEUED;
        existing.updated_ms = sb_now_ms();
        bool moved;
        if ((st = notestore_update(store, &existing, &moved, errbuf, errlen)) != DB_OK)
            return st;
        if (!moved) /* cancelled meanwhile */
            return DB_OK;
    }
    if (!created && existing.status == NOTE_DEAD && redriven && strcmp(existing.redrive_of, redrive_of) != 0) {
        /* An operator sent its dead letter back (KAFKA_REDRIVE_HEADER): it
         * is queued again and delivered from its first attempt. Once sent,
         * another copy of the same redrive finds it sent, a no-op; once dead
         * again, that copy finds this redrive recorded (redrive_of) and
         * takes it as dead, like any copy of a settled job. */
        log_info("dead notification redriven: queued again", "id=%s letter=%s", existing.id, redrive_of);
        existing.status = NOTE_QUEUED;
        existing.attempts = 0;
        existing.last_error[0] = '\0';
        existing.updated_ms = sb_now_ms();
        snprintf(existing.redrive_of, sizeof existing.redrive_of, "%s", redrive_of);
        bool applied;
        if ((st = notestore_update(store, &existing, &applied, errbuf, errlen)) != DB_OK)
            return st;
        if (!applied) /* no longer dead: another copy of the redrive took it */
            return DB_OK;
        n = existing;
        created = true; /* from here on as a new one: no attempts carried over */
    }
    if (!created) {
        /* Redelivered after it was settled. A dead one is dead-lettered
         * again: its batch may have been rewound (another sender's store
         * error) before the first dead letter went out, and a repeated dead
         * letter is better than a lost one. */
        if (existing.status == NOTE_DEAD)
            job_dead(j, "dead before this delivery of the job: %.200s", existing.last_error);
        if (existing.status == NOTE_SENT || note_status_terminal(existing.status))
            return DB_OK;
        /* An older copy than the retry its last failure put on
         * notify.retry (a rewound batch, or a producer sending the job
         * again): that retry owns the notification. Delivering it now
         * would skip the backoff and spend an attempt. */
        if (existing.status == NOTE_RETRYING && (redriven ? 0 : json_i64(p, "attempt", 0)) < existing.attempts) {
            log_info("older copy of a notification waiting for its retry; skipped", "id=%s attempts=%lld",
                     n.id, (long long)existing.attempts);
            return DB_OK;
        }
        n = existing;
    }
    int64_t attempts = redriven ? 0 : json_i64(p, "attempt", 0);
    if (existing.attempts > attempts && !created)
        attempts = existing.attempts;

    /* Nothing goes to someone who opted out or whose address bounced, from
     * whichever producer the job came (the API refuses it already). Not a
     * failure to retry or redrive: dead, saying why. A MySQL that cannot
     * answer holds the job (unacknowledged) rather than risk it. */
    bool suppressed = false;
    struct suppression sup;
    if ((st = suppress_find(s->db, m.channel, m.to, m.from, &suppressed, &sup, errbuf, errlen)) != DB_OK)
        return st;
    if (suppressed) {
        n.status = NOTE_DEAD;
        n.updated_ms = sb_now_ms();
        snprintf(n.last_error, sizeof n.last_error, "suppressed: %.64s opted out of %.64s (%.64s)", m.to,
                 strcmp(sup.scope, SUPPRESS_SCOPE_ALL) == 0 ? "every sender" : sup.scope, sup.reason);
        log_info("notification suppressed; not sent", "id=%s to=%s reason=\"%s\"", n.id, m.to, sup.reason);
        bool applied;
        return notestore_update(store, &n, &applied, errbuf, errlen);
    }

    if (!bucket_take(nf, m.channel, w->stop)) {
        sb_errf(errbuf, errlen, "stopping");
        return DB_TRANSIENT; /* unacknowledged: the next owner sends it */
    }
    n.status = NOTE_SENDING;
    n.attempts = ++attempts;
    n.updated_ms = sb_now_ms();
    bool applied;
    if ((st = notestore_update(store, &n, &applied, errbuf, errlen)) != DB_OK)
        return st;
    if (!applied) { /* settled meanwhile (cancelled, or another copy got it through): not sent again */
        log_info("notification settled before this attempt; not sent", "id=%s", n.id);
        return DB_OK;
    }
    enum send_result r = channels_send(s->channels, n.id, &m, &j->span.ctx, n.provider_id, why, sizeof why);
    if (!settle(s, j, &n, m.channel, r, why, errbuf, errlen))
        return DB_TRANSIENT;
    /* Not applied: the provider's callback said more already (delivered
     * before our "sent"); the record keeps it. */
    st = notestore_update(store, &n, &applied, errbuf, errlen);
    if (st == DB_OK && !applied)
        log_info("the provider's word came first; kept", "id=%s would_be=%s", n.id, note_status_name(n.status));
    return st;
}

/* After a detached delivery, on its sender's thread: what the batch would
 * have done with the job (a dead letter) is done here. Returns whether the
 * job is handled; if not, its partition is fetched again from it. */
static bool finish_detached(struct sender *s, struct job *job, enum db_status st)
{
    bool handled = st == DB_OK;
    if (handled && job->dead)
        handled = worker_dead_letter(s->w, &s->src, job->reason);
    envelope_clear(&job->env);
    free((void *)s->src.key);
    free((void *)s->src.payload);
    s->src = (struct deadletter_src){0};
    return handled;
}

/* Takes groups of the batch until none is left, or the batch failed, or
 * the job in hand outlasted the batch (detach). A job is handled as a
 * shallow copy, so that a detached one keeps its envelope after its batch
 * is freed. */
static void sender_work(void *ctx, void *arg)
{
    struct sender *s = arg;
    struct notifier *nf = s->nf;
    enum db_status st = DB_OK;
    bool detached = false;
    int64_t took_ms = 0;
    bool handled = false;
    char id[NOTE_ID_MAX + 1] = "";
    pthread_mutex_lock(&nf->lock);
    while (st == DB_OK && !detached && !nf->failed && nf->next_group < nf->ngroups) {
        size_t g = nf->next_group++;
        s->end = nf->start[g + 1];
        for (size_t i = nf->start[g]; i < s->end && st == DB_OK; i++) {
            if (atomic_load(s->w->stop)) {
                /* Stop between notifications: the batch is not acknowledged,
                 * and the next owner skips the ones recorded sent here. */
                snprintf(s->err, sizeof s->err, "stopping");
                st = DB_TRANSIENT;
                break;
            }
            struct job job = *nf->grouped[i];
            s->orig = nf->grouped[i];
            s->at = i;
            plan_job_hashes(&job, &s->id, &s->key);
            s->began_ms = sb_mono_ms();
            if (nf->next_group >= nf->ngroups) /* the batch may be waiting to detach it */
                pthread_cond_broadcast(&nf->changed);
            pthread_mutex_unlock(&nf->lock);
            log_set_trace(job.trace_id);
            st = handle_one(s, ctx, &job, s->err, sizeof s->err);
            if (st == DB_FATAL) {
                job_dead(&job, "store refused the record: %.200s", s->err);
                st = DB_OK;
            }
            log_set_trace(NULL);
            pthread_mutex_lock(&nf->lock);
            s->orig = NULL;
            if ((detached = s->detached)) {
                took_ms = sb_mono_ms() - s->began_ms;
                snprintf(id, sizeof id, "%s", json_str(job.env.payload, "id", ""));
                pthread_mutex_unlock(&nf->lock);
                handled = finish_detached(s, &job, st);
                pthread_mutex_lock(&nf->lock);
                break;
            }
            nf->grouped[i]->dead = job.dead;
            memcpy(nf->grouped[i]->reason, job.reason, sizeof job.reason);
        }
    }
    if (detached) {
        s->detached = false;
        nf->ndetached--;
        if (nf->nfinished < 2 * nf->nsenders)
            nf->finished[nf->nfinished++] = (struct finished){s->tag, handled};
    } else {
        if (st != DB_OK && !nf->failed) {
            nf->failed = true;
            snprintf(nf->err, sizeof nf->err, "%s", s->err);
        }
        nf->running--;
    }
    s->busy = false;
    pthread_cond_broadcast(&nf->changed);
    pthread_mutex_unlock(&nf->lock);
    if (detached)
        log_info("a delivery that outlasted its batch is over", "id=%s took_ms=%lld handled=%d", id,
                 (long long)took_ms, handled);
}

/* The job in s's hands has run for notify_straggler_ms and its batch has
 * nothing else left to start: the batch goes on without it. The sender
 * keeps the job's envelope and a copy of its source (for a dead letter),
 * and the job is pinned: its partition's committed offset stays at it
 * until it is over (notifier_turn), while the partition's later jobs go
 * on. The rest of its group (repeats of it) is held: rewound, and fetched
 * again when it is over or, at the latest, at `until`. Returns false,
 * leaving the batch to wait for it, if out of memory. Called with nf->lock
 * held. */
static bool detach(struct notifier *nf, struct sender *s, int64_t until)
{
    const rd_kafka_message_t *m = s->orig->msg;
    void *key = m->key_len ? malloc(m->key_len) : NULL, *payload = m->len ? malloc(m->len) : NULL;
    if ((m->key_len && key == NULL) || (m->len && payload == NULL)) {
        free(key);
        free(payload);
        return false;
    }
    if (key)
        memcpy(key, m->key, m->key_len);
    if (payload)
        memcpy(payload, m->payload, m->len);
    snprintf(s->src_topic, sizeof s->src_topic, "%s", rd_kafka_topic_name(m->rkt));
    s->src = (struct deadletter_src){s->src_topic, m->partition, m->offset, key, m->key_len, payload, m->len, ""};
    if (!kafka_header(m, "traceparent", s->src.traceparent, sizeof s->src.traceparent))
        s->src.traceparent[0] = '\0';
    s->detached = true;
    s->tag = ++nf->tags;
    nf->running--;
    nf->ndetached++;
    metric_add(nf->m_detached, 1);
    log_info("a delivery outlasted its batch; the next batch goes on beside it", "id=%s ms=%lld tag=%llu",
             json_str(s->orig->env.payload, "id", ""), (long long)(sb_mono_ms() - s->began_ms),
             (unsigned long long)s->tag);
    s->orig->env.root = NULL; /* the sender's now */
    s->orig->env.payload = NULL;
    s->orig->pin = s->tag;
    plan_hold_rest(nf->grouped, s->at + 1, s->end, until, s->tag);
    return true;
}

/* When a valid job is due (its not_before), 0 for now or for an invalid job
 * (which a sender records as dead at once). */
static int64_t job_due(const struct worker *w, const struct job *j)
{
    struct note_msg m;
    char why[ERRBUF_LEN];
    if (!job_message(w, j->env.payload, &m, why, sizeof why))
        return 0;
    return json_i64(j->env.payload, "not_before", 0);
}

/* The detached deliveries still running, into nf->busy; returns how
 * many. Called with nf->lock held. */
static size_t busy_detached(struct notifier *nf)
{
    size_t n = 0;
    for (size_t k = 0; k < nf->nsenders; k++) {
        const struct sender *s = &nf->senders[k];
        if (s->detached)
            nf->busy[n++] = (struct plan_busy){s->id, s->key, s->tag};
    }
    return n;
}

/* Until when a job held for a detached delivery waits at the latest (it
 * is released as soon as that delivery is over). */
static int64_t hold_until(const struct worker *w)
{
    return sb_now_ms() + w->cfg->notify_timeout_ms + HOLD_SLACK_MS;
}

/* Fills plan[0..n) (noteplan.h); returns the number of groups, or
 * SIZE_MAX when out of memory. */
static size_t plan_batch(struct worker *w, struct job **jobs, size_t n, struct plan *plan)
{
    struct notifier *nf = w->state;
    int64_t now = sb_now_ms();
    for (size_t i = 0; i < n; i++) {
        int64_t due = job_due(w, jobs[i]);
        if (due > now)
            jobs[i]->defer_until_ms = due;
    }
    pthread_mutex_lock(&nf->lock);
    plan_hold(jobs, n, plan, nf->busy, busy_detached(nf), hold_until(w));
    pthread_mutex_unlock(&nf->lock);
    return plan_groups(jobs, n, plan);
}

/* Has free senders take the groups left: as many as there are groups that
 * no sender is about to take. Called with nf->lock held. */
static void start_senders(struct notifier *nf)
{
    size_t waiting = nf->running; /* started, no job in hand yet */
    for (size_t k = 0; k < nf->nsenders; k++)
        if (nf->senders[k].busy && !nf->senders[k].detached && nf->senders[k].orig)
            waiting--;
    for (size_t k = 0; k < nf->nsenders; k++) {
        struct sender *s = &nf->senders[k];
        if (nf->failed || nf->next_group + waiting >= nf->ngroups)
            break;
        if (s->busy)
            continue;
        s->busy = true;
        s->err[0] = '\0';
        nf->running++;
        waiting++;
        if (!threadpool_submit(nf->pool, sender_work, NULL, NULL, s)) {
            s->busy = false;
            nf->running--;
            nf->failed = true;
            snprintf(nf->err, sizeof nf->err, "cannot start a sender (out of memory)");
        }
    }
}

/* Detaches the senders whose job in hand has run for notify_straggler_ms;
 * returns when the next one will have (monotonic ms), INT64_MAX if none.
 * Called with nf->lock held, once every group has been taken. */
static int64_t detach_stragglers(struct worker *w, struct notifier *nf)
{
    int64_t now = sb_mono_ms(), next = INT64_MAX;
    int64_t until = hold_until(w);
    for (size_t k = 0; k < nf->nsenders; k++) {
        struct sender *s = &nf->senders[k];
        if (!s->busy || s->detached || s->orig == NULL)
            continue;
        int64_t at = s->began_ms + w->cfg->notify_straggler_ms;
        if (at <= now) {
            if (!detach(nf, s, until) && now + 100 < next)
                next = now + 100; /* out of memory: try again shortly */
        } else if (at < next) {
            next = at;
        }
    }
    return next;
}

static void wait_change(struct notifier *nf, int64_t until_mono_ms)
{
    if (until_mono_ms == INT64_MAX) {
        pthread_cond_wait(&nf->changed, &nf->lock);
        return;
    }
    struct timespec ts = sb_mono_deadline(until_mono_ms);
    pthread_cond_timedwait(&nf->changed, &nf->lock, &ts);
}

enum db_status notifier_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                               size_t errlen)
{
    struct notifier *nf = w->state;
    enum db_status st = DB_OK;
    struct plan *plan = calloc(n, sizeof *plan);
    struct job **grouped = calloc(n, sizeof *grouped);
    size_t *start = calloc(n + 1, sizeof *start);
    size_t ngroups = plan && grouped && start ? plan_batch(w, jobs, n, plan) : SIZE_MAX;
    if (ngroups == SIZE_MAX || !plan_order(jobs, n, plan, ngroups, grouped, start)) {
        sb_errf(errbuf, errlen, "out of memory planning a batch of %zu jobs", n);
        st = DB_TRANSIENT;
        goto done;
    }
    pthread_mutex_lock(&nf->lock);
    nf->grouped = grouped;
    nf->start = start;
    nf->ngroups = ngroups;
    nf->next_group = 0;
    nf->failed = false;
    nf->err[0] = '\0';
    /* Senders come free as they finish, detached ones too; once every
     * group is taken, a delivery that runs on past notify_straggler_ms is
     * detached rather than waited for. Stopping, or with the batch failed
     * (rewound whole), every delivery is waited for. */
    for (;;) {
        start_senders(nf);
        int64_t next = INT64_MAX;
        if (!nf->failed && nf->next_group >= nf->ngroups && !atomic_load(w->stop))
            next = detach_stragglers(w, nf);
        if (nf->running == 0 && (nf->failed || nf->next_group >= nf->ngroups))
            break;
        wait_change(nf, next);
    }
    nf->grouped = NULL;
    nf->start = NULL;
    if (nf->failed) {
        st = DB_TRANSIENT;
        sb_errf(errbuf, errlen, "%s", nf->err);
    }
    pthread_mutex_unlock(&nf->lock);
done:
    free(plan);
    free(grouped);
    free(start);
    return st;
}

/* Unpins the detached deliveries that are over, and releases the holds
 * that waited for them: every hold below the lowest tag of those still
 * running. */
void notifier_turn(struct worker *w)
{
    struct notifier *nf = w->state;
    struct finished done[2 * WORKER_MAX_PINS];
    pthread_mutex_lock(&nf->lock);
    size_t n = nf->nfinished;
    memcpy(done, nf->finished, n * sizeof *done);
    nf->nfinished = 0;
    uint64_t below = plan_release_below(nf->busy, busy_detached(nf));
    pthread_mutex_unlock(&nf->lock);
    for (size_t i = 0; i < n; i++)
        worker_unpin(w, done[i].tag, done[i].handled);
    worker_release(w, below);
}

void notifier_revoked(struct worker *w)
{
    struct notifier *nf = w->state;
    if (nf == NULL)
        return; /* closing after notifier_finish: nothing runs */
    pthread_mutex_lock(&nf->lock);
    if (nf->ndetached)
        log_info("waiting for deliveries in flight before giving the partitions up", "count=%zu",
                 nf->ndetached);
    while (nf->ndetached)
        pthread_cond_wait(&nf->changed, &nf->lock);
    pthread_mutex_unlock(&nf->lock);
    notifier_turn(w); /* their offsets, before the commit */
}
