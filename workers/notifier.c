/* notifier.c - the notifier role: delivers notify.send jobs.
 *
 * For each job, in log order:
 *   1. check it (channel, recipient) - a bad one is dead-lettered and, if
 *      its id is usable, recorded as dead;
 *   2. claim its record in the store. The record's id makes redelivery
 *      harmless (a sent or dead notification is not touched again); the
 *      unique idempotency key makes a second notification with the same key
 *      a no-op, or a dead letter if its content differs;
 *   3. wait for the channel's token bucket (a provider's rate limit);
 *   4. mark it sending, deliver it, and record the outcome: sent; or, for a
 *      passing failure, failed + a copy on notify.retry carrying the attempt
 *      count and the time before which it must not run; or, after
 *      notify_max_attempts or a permanent refusal, dead + dead letter.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "channels.h"
#include "log.h"
#include "notestore.h"

struct bucket {
    double tokens;
    int64_t rate; /* per second; 0 = no limit */
    int64_t last_ms;
};

struct notifier {
    struct notestore *store;
    struct channels *channels;
    struct bucket buckets[CH_COUNT];
    struct backoff backoff;
    struct metric *m_sent, *m_failed, *m_dead, *m_dupes;
};

bool notifier_prepare(struct worker *w)
{
    char err[ERRBUF_LEN];
    struct notifier *nf = calloc(1, sizeof *nf);
    if (nf == NULL || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(nf);
        log_error("cannot start the notifier", "err=\"out of memory\"");
        return false;
    }
    if ((nf->store = notestore_new(w->cfg, err, sizeof err)) == NULL ||
        (nf->channels = channels_new(w->cfg, w->producer)) == NULL) {
        log_error("cannot start the notifier", "err=\"%s\"", err);
        notestore_free(nf->store);
        free(nf);
        return false;
    }
    const int64_t rates[CH_COUNT] = {w->cfg->rate_email, w->cfg->rate_sms, w->cfg->rate_push,
                                     w->cfg->rate_kafka};
    for (int i = 0; i < CH_COUNT; i++) {
        nf->buckets[i].rate = rates[i];
        nf->buckets[i].tokens = (double)rates[i]; /* a second's burst */
        nf->buckets[i].last_ms = sb_mono_ms();
    }
    backoff_init(&nf->backoff, w->cfg->notify_backoff_ms, w->cfg->notify_backoff_cap_ms);
    nf->m_sent = metrics_counter("switchboard_notifications_total", "outcome=\"sent\"",
                                 "notification attempts by outcome");
    nf->m_failed = metrics_counter("switchboard_notifications_total", "outcome=\"retry\"", NULL);
    nf->m_dead = metrics_counter("switchboard_notifications_total", "outcome=\"dead\"", NULL);
    nf->m_dupes = metrics_counter("switchboard_notifications_total", "outcome=\"duplicate\"", NULL);
    log_info("notifier ready", "store=%s", notestore_kind(nf->store));
    w->state = nf;
    return true;
}

void notifier_finish(struct worker *w)
{
    struct notifier *nf = w->state;
    if (nf == NULL)
        return;
    channels_free(nf->channels);
    notestore_free(nf->store);
    free(nf);
    w->state = NULL;
    curl_global_cleanup();
}

/* Waits for a token of the channel's bucket; false if stopping first. */
static bool bucket_take(struct bucket *b, volatile int *stop)
{
    if (b->rate <= 0)
        return true;
    for (;;) {
        int64_t now = sb_mono_ms();
        b->tokens += (double)(now - b->last_ms) * (double)b->rate / 1000.0;
        if (b->tokens > (double)b->rate)
            b->tokens = (double)b->rate;
        b->last_ms = now;
        if (b->tokens >= 1.0) {
            b->tokens -= 1.0;
            return true;
        }
        int64_t wait = (int64_t)((1.0 - b->tokens) * 1000.0 / (double)b->rate) + 1;
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

static enum db_status handle_one(struct worker *w, struct notifier *nf, struct job *j,
                                 char *errbuf, size_t errlen)
{
    const cJSON *p = j->env.payload;
    struct note_msg m = {
        .to = json_str(p, "to", ""),
        .from = json_str(p, "from", ""),
        .title = json_str(p, "title", ""),
        .body = json_str(p, "body", ""),
    };
    struct note n = {0}, existing;
    char why[ERRBUF_LEN];
    snprintf(n.id, sizeof n.id, "%s", json_str(p, "id", ""));
    snprintf(n.idem, sizeof n.idem, "%s", json_str(p, "idempotency_key", ""));
    snprintf(n.tracking_id, sizeof n.tracking_id, "%s", json_str(p, "tracking_id", ""));
    n.item = json_i64(p, "item", 0);
    n.created_ms = j->env.created_at;
    n.updated_ms = sb_now_ms();
    bool checked = note_channel_parse(json_str(p, "channel", ""), &m.channel);
    if (!checked)
        snprintf(why, sizeof why, "channel must be email, sms, push or kafka");
    else
        checked = note_msg_check(&m, w->cfg->notify_topics, why, sizeof why);
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
        enum db_status st = notestore_claim(nf->store, &n, &created, &existing, errbuf, errlen);
        if (st == DB_TRANSIENT)
            return st;
        job_dead(j, "invalid notification: %.200s", why);
        return DB_OK;
    }
    int64_t not_before = json_i64(p, "not_before", 0);
    if (not_before > sb_now_ms()) {
        j->defer_until_ms = not_before;
        return DB_OK;
    }

    bool created = false;
    n.status = NOTE_QUEUED;
    enum db_status st = notestore_claim(nf->store, &n, &created, &existing, errbuf, errlen);
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
            if ((st = notestore_claim(nf->store, &n, &created, &existing, errbuf, errlen)) != DB_OK)
                return st;
        }
        if (!same)
            job_dead(j, "idempotency key reused with different content (held by %s)", existing.id);
        return DB_OK;
    }
    if (!created) {
        if (existing.status == NOTE_SENT || existing.status == NOTE_DEAD)
            return DB_OK; /* redelivered after it was settled */
        n = existing;
    }
    int64_t attempts = json_i64(p, "attempt", 0);
    if (existing.attempts > attempts && !created)
        attempts = existing.attempts;

    if (!bucket_take(&nf->buckets[m.channel], w->stop)) {
        sb_errf(errbuf, errlen, "stopping");
        return DB_TRANSIENT; /* unacknowledged: the next owner sends it */
    }
    n.status = NOTE_SENDING;
    n.attempts = ++attempts;
    n.updated_ms = sb_now_ms();
    if ((st = notestore_update(nf->store, &n, errbuf, errlen)) != DB_OK)
        return st;
    enum send_result r = channels_send(nf->channels, n.id, &m, why, sizeof why);
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
            nf->backoff.attempt = (unsigned)(attempts - 1);
            int64_t due = sb_now_ms() + backoff_next(&nf->backoff);
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
    return notestore_update(nf->store, &n, errbuf, errlen);
}

enum db_status notifier_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                               size_t errlen)
{
    struct notifier *nf = w->state;
    for (size_t i = 0; i < n; i++) {
        struct job *j = jobs[i];
        /* After a deferred retry, the rest of its partition waits too. */
        int64_t held = 0;
        for (size_t k = 0; k < i; k++)
            if (jobs[k]->defer_until_ms && jobs[k]->msg->partition == j->msg->partition &&
                jobs[k]->msg->rkt == j->msg->rkt)
                held = jobs[k]->defer_until_ms;
        if (held) {
            j->defer_until_ms = held;
            continue;
        }
        enum db_status st = handle_one(w, nf, j, errbuf, errlen);
        if (st == DB_FATAL) {
            job_dead(j, "store refused the record: %s", errbuf);
            st = DB_OK;
        }
        if (st != DB_OK)
            return st;
    }
    return DB_OK;
}
