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
 * is never delivered beside its original (plan_batch). A sender that is
 * free takes the next group and delivers its jobs one after the other, so
 * a slow delivery holds up only its own group, not a share of the batch
 * dealt out in advance; the next batch starts when every sender is done.
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

#include "backoff.h"
#include "channels.h"
#include "log.h"
#include "notestore.h"
#include "threadpool.h"

struct bucket {
    double tokens;
    int64_t rate; /* per second; 0 = no limit */
    int64_t last_ms;
};

struct notifier;

/* One sender: its provider handles, its backoff and how its part of the
 * batch went; the store is the connection of the pool thread it runs on. */
struct sender {
    struct worker *w;
    struct notifier *nf;
    struct channels *channels;
    struct backoff backoff;
    enum db_status st;
    char err[ERRBUF_LEN];
};

struct notifier {
    struct threadpool *pool; /* one store connection per sender */
    struct sender *senders;
    size_t nsenders;
    pthread_mutex_t lock; /* the buckets, running, next_group, failed */
    pthread_cond_t idle;  /* running fell to 0 */
    size_t running;       /* senders at work on this batch */
    /* This batch: group g is grouped[start[g] .. start[g + 1]), in log order. */
    struct job **grouped;
    size_t *start;
    size_t ngroups;
    size_t next_group; /* the next one a free sender takes */
    bool failed;       /* a sender failed or stopped: take no more groups */
    struct bucket buckets[CH_COUNT];
    struct metric *m_sent, *m_failed, *m_dead, *m_dupes;
};

/* Frees what notifier_prepare made; curl says whether libcurl started. */
static void notifier_free(struct notifier *nf, bool curl)
{
    if (nf) {
        threadpool_free(nf->pool); /* joins the senders' threads */
        for (size_t i = 0; nf->senders && i < nf->nsenders; i++)
            channels_free(nf->senders[i].channels);
        free(nf->senders);
        pthread_cond_destroy(&nf->idle);
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

bool notifier_prepare(struct worker *w)
{
    char err[ERRBUF_LEN] = "out of memory";
    size_t n = (size_t)w->cfg->notify_concurrency;
    struct notifier *nf = calloc(1, sizeof *nf);
    bool curl = false;
    if (nf == NULL)
        goto fail;
    nf->lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    nf->idle = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
    if ((nf->senders = calloc(n, sizeof *nf->senders)) == NULL)
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
    for (size_t i = 0; i < n; i++) {
        struct sender *s = &nf->senders[i];
        s->w = w;
        s->nf = nf;
        backoff_init(&s->backoff, w->cfg->notify_backoff_ms, w->cfg->notify_backoff_cap_ms);
        if ((s->channels = channels_new(w->cfg, w->producer)) == NULL) {
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
    notifier_free(w->state, w->state != NULL);
    w->state = NULL;
}

/* Waits for a token of the channel's bucket (shared by the senders); false
 * if stopping first. */
static bool bucket_take(struct notifier *nf, enum note_channel ch, volatile int *stop)
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
        if (*stop)
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
    bool ok = kafka_produce_sync(w->producer, "notify.retry", j->env.key, strlen(j->env.key), text,
                                 strlen(text), NULL, errbuf, errlen);
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

/* Runs on a sender's thread, with that thread's store. */
static enum db_status handle_one(struct sender *s, struct notestore *store, struct job *j,
                                 char *errbuf, size_t errlen)
{
    struct worker *w = s->w;
    struct notifier *nf = s->nf;
    const cJSON *p = j->env.payload;
    struct note_msg m;
    struct note n = {0}, existing;
    char why[ERRBUF_LEN];
    snprintf(n.id, sizeof n.id, "%s", json_str(p, "id", ""));
    snprintf(n.idem, sizeof n.idem, "%s", json_str(p, "idempotency_key", ""));
    snprintf(n.tracking_id, sizeof n.tracking_id, "%s", json_str(p, "tracking_id", ""));
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
        job_dead(j, "invalid notification: %.200s", why);
        return DB_OK;
    }

    bool created = false;
    n.status = NOTE_QUEUED;
    enum db_status st = notestore_claim(store, &n, &created, &existing, errbuf, errlen);
    if (st != DB_OK)
        return st;
    if (!created && strcmp(existing.id, n.id) != 0) {
        /* Another notification holds the key: a repeat, or a reuse. */
        metric_add(nf->m_dupes, 1);
        bool same = strcmp(existing.fingerprint, n.fingerprint) == 0;
        log_info("idempotency key seen before", "id=%s key=\"%s\" holder=%s same_content=%d",
                 n.id, n.idem, existing.id, same);
        if (*n.tracking_id) { /* its send-many request must still add up */
            n.idem[0] = '\0';
            n.status = NOTE_DEAD;
            snprintf(n.last_error, sizeof n.last_error,
                     "not sent: idempotency key already used by notification %s", existing.id);
            if ((st = notestore_claim(store, &n, &created, &existing, errbuf, errlen)) != DB_OK)
                return st;
        }
        if (!same)
            job_dead(j, "idempotency key reused with different content (held by %s)", existing.id);
        return DB_OK;
    }
    if (!created) {
        /* Redelivered after it was settled. A dead one is dead-lettered
         * again: its batch may have been rewound (another sender's store
         * error) before the first dead letter went out, and a repeated dead
         * letter is better than a lost one. */
        if (existing.status == NOTE_DEAD)
            job_dead(j, "dead before this delivery of the job: %.200s", existing.last_error);
        if (existing.status == NOTE_SENT || existing.status == NOTE_DEAD)
            return DB_OK;
        /* An older copy than the retry its last failure put on
         * notify.retry (a rewound batch, or a producer sending the job
         * again): that retry owns the notification. Delivering it now
         * would skip the backoff and spend an attempt. */
        if (existing.status == NOTE_FAILED && json_i64(p, "attempt", 0) < existing.attempts) {
            log_info("older copy of a notification waiting for its retry; skipped", "id=%s attempts=%lld",
                     n.id, (long long)existing.attempts);
            return DB_OK;
        }
        n = existing;
    }
    int64_t attempts = json_i64(p, "attempt", 0);
    if (existing.attempts > attempts && !created)
        attempts = existing.attempts;

    if (!bucket_take(nf, m.channel, w->stop)) {
        sb_errf(errbuf, errlen, "stopping");
        return DB_TRANSIENT; /* unacknowledged: the next owner sends it */
    }
    n.status = NOTE_SENDING;
    n.attempts = ++attempts;
    n.updated_ms = sb_now_ms();
    if ((st = notestore_update(store, &n, errbuf, errlen)) != DB_OK)
        return st;
    enum send_result r = channels_send(s->channels, n.id, &m, why, sizeof why);
    n.updated_ms = sb_now_ms();
    if (r == SEND_OK) {
        n.status = NOTE_SENT;
        n.last_error[0] = '\0';
        metric_add(nf->m_sent, 1);
        log_info("notification sent", "id=%s channel=%s attempt=%lld", n.id,
                 note_channel_name(m.channel), (long long)attempts);
    } else {
        snprintf(n.last_error, sizeof n.last_error, "%s", why);
        if (r == SEND_RETRY && attempts < w->cfg->notify_max_attempts) {
            s->backoff.attempt = (unsigned)(attempts - 1);
            int64_t due = sb_now_ms() + backoff_next(&s->backoff);
            if (!schedule_retry(w, j, attempts, due, errbuf, errlen))
                return DB_TRANSIENT;
            n.status = NOTE_FAILED;
            metric_add(nf->m_failed, 1);
            log_warn("notification failed, will retry", "id=%s channel=%s attempt=%lld err=\"%s\"",
                     n.id, note_channel_name(m.channel), (long long)attempts, why);
        } else {
            n.status = NOTE_DEAD;
            metric_add(nf->m_dead, 1);
            snprintf(j->reason, sizeof j->reason, "%s after %lld attempt%s: %.200s",
                     r == SEND_RETRY ? "gave up" : "refused", (long long)attempts,
                     attempts == 1 ? "" : "s", why);
            j->dead = true;
        }
    }
    return notestore_update(store, &n, errbuf, errlen);
}

/* The next group for a free sender, or SIZE_MAX when none is left (or the
 * batch failed, so that the work is not done twice). */
static size_t take_group(struct notifier *nf)
{
    pthread_mutex_lock(&nf->lock);
    size_t g = nf->failed || nf->next_group >= nf->ngroups ? SIZE_MAX : nf->next_group++;
    pthread_mutex_unlock(&nf->lock);
    return g;
}

static void sender_work(void *ctx, void *arg)
{
    struct sender *s = arg;
    struct notifier *nf = s->nf;
    size_t g;
    while (s->st == DB_OK && (g = take_group(nf)) != SIZE_MAX) {
        for (size_t i = nf->start[g]; i < nf->start[g + 1] && s->st == DB_OK; i++) {
            if (*s->w->stop) {
                /* Stop between notifications: the batch is not acknowledged,
                 * and the next owner skips the ones recorded sent here. */
                snprintf(s->err, sizeof s->err, "stopping");
                s->st = DB_TRANSIENT;
                break;
            }
            enum db_status st = handle_one(s, ctx, nf->grouped[i], s->err, sizeof s->err);
            if (st == DB_FATAL) {
                job_dead(nf->grouped[i], "store refused the record: %.200s", s->err);
                st = DB_OK;
            }
            s->st = st;
        }
    }
    pthread_mutex_lock(&nf->lock);
    if (s->st != DB_OK)
        nf->failed = true;
    if (--nf->running == 0)
        pthread_cond_signal(&nf->idle);
    pthread_mutex_unlock(&nf->lock);
}

/* FNV-1a: jobs with equal ids or keys must meet; a collision only puts two
 * jobs in one group. */
static uint64_t str_hash(const char *str)
{
    uint64_t h = 14695981039346656037u;
    for (; *str; str++)
        h = (h ^ (unsigned char)*str) * 1099511628211u;
    return h;
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

/* The batch's plan, in log order: a retry that is not due yet, and every
 * later job of its partition, is deferred; every other job joins the group
 * of an earlier job with the same id if there is one, else of one with the
 * same idempotency key, else starts a group. The id comes first: a repeat
 * of a notification finds its record "mine" and would deliver it again
 * beside the original, so every job with one id must be in one group. Two
 * jobs sharing only a key usually meet too; if they do not (each also
 * matched another job), the store's unique key lets one through, as
 * between processes. */
struct plan {
    uint64_t id, key; /* hashes; key 0 = none */
    size_t group;     /* SIZE_MAX: deferred */
};

/* The group of the first job before i with i's id (by_key: key), or
 * SIZE_MAX. */
static size_t plan_join(const struct plan *plan, size_t i, bool by_key)
{
    for (size_t k = 0; k < i; k++)
        if (plan[k].group != SIZE_MAX &&
            (by_key ? plan[k].key == plan[i].key : plan[k].id == plan[i].id))
            return plan[k].group;
    return SIZE_MAX;
}

/* Fills plan[0..n); returns the number of groups. */
static size_t plan_batch(struct worker *w, struct job **jobs, size_t n, struct plan *plan)
{
    int64_t now = sb_now_ms();
    size_t ngroups = 0;
    for (size_t i = 0; i < n; i++) {
        struct job *j = jobs[i];
        plan[i].group = SIZE_MAX;
        for (size_t k = 0; k < i && !j->defer_until_ms; k++)
            if (jobs[k]->defer_until_ms && jobs[k]->msg->partition == j->msg->partition &&
                jobs[k]->msg->rkt == j->msg->rkt)
                j->defer_until_ms = jobs[k]->defer_until_ms;
        int64_t due = j->defer_until_ms ? 0 : job_due(w, j);
        if (due > now)
            j->defer_until_ms = due;
        if (j->defer_until_ms)
            continue;
        const char *key = json_str(j->env.payload, "idempotency_key", "");
        plan[i].id = str_hash(json_str(j->env.payload, "id", ""));
        plan[i].key = *key ? str_hash(key) | 1 : 0;
        plan[i].group = plan_join(plan, i, false);
        if (plan[i].group == SIZE_MAX && plan[i].key)
            plan[i].group = plan_join(plan, i, true);
        if (plan[i].group == SIZE_MAX)
            plan[i].group = ngroups++;
    }
    return ngroups;
}

enum db_status notifier_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                               size_t errlen)
{
    struct notifier *nf = w->state;
    enum db_status st = DB_OK;
    struct plan *plan = calloc(n, sizeof *plan);
    struct job **grouped = calloc(n, sizeof *grouped);
    size_t *start = calloc(n + 1, sizeof *start), *fill = calloc(n + 1, sizeof *fill);
    if (plan == NULL || grouped == NULL || start == NULL || fill == NULL) {
        sb_errf(errbuf, errlen, "out of memory planning a batch of %zu jobs", n);
        st = DB_TRANSIENT;
        goto done;
    }
    size_t ngroups = plan_batch(w, jobs, n, plan);
    /* Jobs by group, each group in log order (a counting sort). */
    for (size_t i = 0; i < n; i++)
        if (plan[i].group != SIZE_MAX)
            start[plan[i].group + 1]++;
    for (size_t g = 0; g < ngroups; g++)
        fill[g] = start[g + 1] += start[g];
    for (size_t i = n; i-- > 0;)
        if (plan[i].group != SIZE_MAX)
            grouped[--fill[plan[i].group]] = jobs[i];
    pthread_mutex_lock(&nf->lock);
    nf->grouped = grouped;
    nf->start = start;
    nf->ngroups = ngroups;
    nf->next_group = 0;
    nf->failed = false;
    pthread_mutex_unlock(&nf->lock);
    for (size_t k = 0; k < nf->nsenders; k++) {
        struct sender *s = &nf->senders[k];
        s->st = DB_OK;
        s->err[0] = '\0';
        if (k >= ngroups)
            continue; /* more senders than groups */
        pthread_mutex_lock(&nf->lock);
        nf->running++;
        pthread_mutex_unlock(&nf->lock);
        if (!threadpool_submit(nf->pool, sender_work, NULL, NULL, s)) {
            pthread_mutex_lock(&nf->lock);
            nf->running--;
            pthread_mutex_unlock(&nf->lock);
            s->st = DB_TRANSIENT;
            snprintf(s->err, sizeof s->err, "cannot start a sender (out of memory)");
        }
    }
    pthread_mutex_lock(&nf->lock);
    while (nf->running > 0)
        pthread_cond_wait(&nf->idle, &nf->lock);
    nf->grouped = NULL;
    nf->start = NULL;
    pthread_mutex_unlock(&nf->lock);
    /* A group nobody took (every sender failed, or none could start) is
     * not done: the first error says why, and the batch is rewound. */
    for (size_t k = 0; k < nf->nsenders && st == DB_OK; k++)
        if ((st = nf->senders[k].st) != DB_OK)
            sb_errf(errbuf, errlen, "%s", nf->senders[k].err);
done:
    free(plan);
    free(grouped);
    free(start);
    free(fill);
    return st;
}
