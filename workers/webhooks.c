/* webhooks.c - see webhooks.h. */
#include "webhooks.h"

#include <curl/curl.h>
#include <mysql.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "log.h"
#include "notestore.h"
#include "webhook.h"

#define WEBHOOK_POLL_MS 500
/* Messages whose events are on their way at once: a receiver that hangs
 * holds one of them until notify_timeout_ms, never the others. */
#define WEBHOOK_SLOTS 32

/* One message in flight: its record, its history, the event being POSTed. */
struct slot {
    bool busy;
    CURL *http;
    struct curl_slist *hdrs;
    char *body;
    struct note n;
    cJSON *history;
    int64_t sent, total;
};

struct webhooks {
    struct worker *w;
    pthread_t thread;
    bool started;
    atomic_int stop;
    struct notestore *store;
    CURLM *multi;
    struct slot slots[WEBHOOK_SLOTS];
};

static size_t discard(char *p, size_t size, size_t n, void *u)
{
    (void)p;
    (void)u;
    return size * n;
}

/* Starts the POST of the slot's next event; false (why) if it cannot. */
static bool post_next(struct webhooks *h, struct slot *s, char *why, size_t cap)
{
    const cJSON *event = cJSON_GetArrayItem(s->history, (int)s->sent);
    char t[32];
    note_iso_time((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(event, "at")), t);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", s->n.id);
    cJSON_AddStringToObject(o, "channel", note_channel_name(s->n.channel));
    cJSON_AddStringToObject(o, "to", s->n.to);
    cJSON_AddNumberToObject(o, "sequence", (double)s->sent + 1);
    cJSON_AddStringToObject(o, "status", json_str(event, "status", ""));
    cJSON_AddStringToObject(o, "at", t);
    if (cJSON_GetObjectItem(event, "detail"))
        cJSON_AddStringToObject(o, "detail", json_str(event, "detail", ""));
    free(s->body);
    s->body = json_print(o);
    cJSON_Delete(o);
    char secret[WEBHOOK_SECRET_LEN + 1], sig[160], hdr[200], idem[128];
    if (s->body == NULL || !webhook_key_secret(h->w->cfg->webhook_signing_secret, s->n.webhook_key, secret) ||
        !webhook_signature(secret, sb_now_ms() / 1000, s->body, strlen(s->body), sig, sizeof sig)) {
        snprintf(why, cap, "out of memory");
        return false;
    }
    snprintf(hdr, sizeof hdr, "X-Switchboard-Signature: %s", sig);
    snprintf(idem, sizeof idem, "X-Switchboard-Event: %s/%lld", s->n.id, (long long)s->sent + 1);
    curl_slist_free_all(s->hdrs);
    s->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    s->hdrs = s->hdrs ? curl_slist_append(s->hdrs, hdr) : NULL;
    s->hdrs = s->hdrs ? curl_slist_append(s->hdrs, idem) : NULL;
    if (s->hdrs == NULL) {
        snprintf(why, cap, "out of memory");
        return false;
    }
    curl_easy_reset(s->http);
    curl_easy_setopt(s->http, CURLOPT_URL, s->n.callback_url);
    curl_easy_setopt(s->http, CURLOPT_HTTPHEADER, s->hdrs);
    curl_easy_setopt(s->http, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->http, CURLOPT_TIMEOUT_MS, (long)h->w->cfg->notify_timeout_ms);
    curl_easy_setopt(s->http, CURLOPT_CONNECTTIMEOUT_MS, (long)h->w->cfg->notify_timeout_ms);
    curl_easy_setopt(s->http, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->http, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(s->http, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(s->http, CURLOPT_PRIVATE, s);
    if (curl_multi_add_handle(h->multi, s->http) != CURLM_OK) {
        snprintf(why, cap, "cannot start the request");
        return false;
    }
    return true;
}

/* The slot's message is done for now: its progress recorded (a failure:
 * tried again after a backoff, its later events behind it). */
static void release(struct webhooks *h, struct slot *s, bool failed, const char *why)
{
    char err[ERRBUF_LEN];
    int64_t now = sb_now_ms(), attempts = failed ? s->n.webhook_attempts + 1 : 0, retry_at = 0;
    if (failed) {
        struct backoff b;
        backoff_init(&b, h->w->cfg->notify_backoff_ms, h->w->cfg->webhook_backoff_cap_ms);
        b.attempt = (unsigned)(attempts > 30 ? 30 : attempts - 1);
        retry_at = now + backoff_next(&b);
        log_warn("webhook not delivered; again later", "id=%s event=%lld attempt=%lld err=\"%s\"", s->n.id,
                 (long long)s->sent + 1, (long long)attempts, why);
    }
    if (notestore_webhook_progress(h->store, s->n.id, s->sent, attempts, retry_at, now, err, sizeof err) != DB_OK)
        log_warn("webhook progress not recorded (events go again)", "id=%s err=\"%s\"", s->n.id, err);
    cJSON_Delete(s->history);
    s->history = NULL;
    s->busy = false;
}

/* Takes a due message into a free slot: its record and history, then its
 * first undelivered event on its way. */
static void take(struct webhooks *h, struct slot *s, const char *id)
{
    char err[ERRBUF_LEN], why[ERRBUF_LEN];
    bool found = false;
    s->history = cJSON_CreateArray();
    if (s->history == NULL || notestore_get(h->store, id, &s->n, &found, err, sizeof err) != DB_OK || !found ||
        notestore_history(h->store, id, s->history, err, sizeof err) != DB_OK) {
        cJSON_Delete(s->history);
        s->history = NULL;
        return; /* the store is away (or it is gone): the next poll sees */
    }
    s->busy = true;
    s->sent = s->n.webhook_sent;
    s->total = cJSON_GetArraySize(s->history);
    if (!*s->n.callback_url)
        s->sent = s->total; /* none to deliver to (it cannot have been due) */
    if (s->sent >= s->total)
        release(h, s, false, "");
    else if (!post_next(h, s, why, sizeof why))
        release(h, s, true, why);
}

/* A POST is over: the next event of that message, or its release. */
static void answered(struct webhooks *h, CURL *e, CURLcode rc)
{
    struct slot *s = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(h->multi, e);
    char why[ERRBUF_LEN] = "";
    if (rc != CURLE_OK)
        snprintf(why, sizeof why, "%s", curl_easy_strerror(rc));
    else if (code < 200 || code >= 300)
        snprintf(why, sizeof why, "answered HTTP %ld", code);
    if (*why) {
        release(h, s, true, why);
        return;
    }
    s->sent++;
    s->n.webhook_attempts = 0;
    if (s->sent >= s->total || atomic_load(&h->stop))
        release(h, s, false, "");
    else if (!post_next(h, s, why, sizeof why))
        release(h, s, true, why);
}

static bool in_flight(const struct webhooks *h, const char *id)
{
    for (int i = 0; i < WEBHOOK_SLOTS; i++)
        if (h->slots[i].busy && strcmp(h->slots[i].n.id, id) == 0)
            return true;
    return false;
}

static void *webhooks_main(void *arg)
{
    struct webhooks *h = arg;
    mysql_thread_init(); /* the MySQL store's client library, on this thread */
    char err[ERRBUF_LEN];
    h->store = notestore_new(h->w->cfg, err, sizeof err);
    if (h->store == NULL)
        log_error("no webhook deliveries: cannot make a notification store", "err=\"%s\"", err);
    char ids[WEBHOOK_SLOTS][NOTE_ID_MAX + 1];
    bool warned = false;
    int64_t next_poll = 0;
    while (h->store && !atomic_load(&h->stop)) {
        /* Due messages into the free slots, each message in one at most
         * (its events one after the other). */
        int free_slots = 0;
        for (int i = 0; i < WEBHOOK_SLOTS; i++)
            free_slots += !h->slots[i].busy;
        if (free_slots > 0 && sb_mono_ms() >= next_poll) {
            size_t n = 0;
            if (notestore_webhooks_due(h->store, sb_now_ms(), ids, WEBHOOK_SLOTS, &n, err, sizeof err) != DB_OK) {
                if (!warned)
                    log_warn("webhooks not looked up; again later", "err=\"%s\"", err);
                warned = true;
            } else {
                warned = false;
            }
            for (size_t k = 0; k < n; k++) {
                if (in_flight(h, ids[k]))
                    continue;
                for (int i = 0; i < WEBHOOK_SLOTS; i++)
                    if (!h->slots[i].busy) {
                        take(h, &h->slots[i], ids[k]);
                        break;
                    }
            }
            next_poll = sb_mono_ms() + WEBHOOK_POLL_MS;
        }
        int running = 0, left = 0;
        curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        while ((m = curl_multi_info_read(h->multi, &left)) != NULL)
            if (m->msg == CURLMSG_DONE)
                answered(h, m->easy_handle, m->data.result);
        curl_multi_poll(h->multi, NULL, 0, running ? 100 : WEBHOOK_POLL_MS, NULL);
    }
    /* Stopping: what is in flight is left; its events go again (at least once). */
    for (int i = 0; i < WEBHOOK_SLOTS; i++)
        if (h->slots[i].busy) {
            curl_multi_remove_handle(h->multi, h->slots[i].http);
            cJSON_Delete(h->slots[i].history);
            h->slots[i].busy = false;
        }
    notestore_free(h->store);
    mysql_thread_end();
    return NULL;
}

struct webhooks *webhooks_start(struct worker *w, char *errbuf, size_t errlen)
{
    struct webhooks *h = calloc(1, sizeof *h);
    bool ok = h && (h->multi = curl_multi_init()) != NULL;
    for (int i = 0; ok && i < WEBHOOK_SLOTS; i++)
        ok = (h->slots[i].http = curl_easy_init()) != NULL;
    if (!ok) {
        sb_errf(errbuf, errlen, "out of memory");
        webhooks_stop(h);
        return NULL;
    }
    h->w = w;
    int rc = pthread_create(&h->thread, NULL, webhooks_main, h);
    if (rc != 0) {
        sb_errf(errbuf, errlen, "cannot start the webhook thread: %s", strerror(rc));
        webhooks_stop(h);
        return NULL;
    }
    h->started = true;
    return h;
}

void webhooks_stop(struct webhooks *h)
{
    if (h == NULL)
        return;
    if (h->started) {
        atomic_store(&h->stop, 1);
        curl_multi_wakeup(h->multi);
        pthread_join(h->thread, NULL);
    }
    for (int i = 0; i < WEBHOOK_SLOTS; i++) {
        if (h->slots[i].http)
            curl_easy_cleanup(h->slots[i].http);
        curl_slist_free_all(h->slots[i].hdrs);
        free(h->slots[i].body);
    }
    if (h->multi)
        curl_multi_cleanup(h->multi);
    free(h);
}
