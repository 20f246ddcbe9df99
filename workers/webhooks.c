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
#define WEBHOOK_BATCH 50

struct webhooks {
    struct worker *w;
    pthread_t thread;
    atomic_int stop;
    struct notestore *store;
    CURL *http;
};

static size_t discard(char *p, size_t size, size_t n, void *u)
{
    (void)p;
    (void)u;
    return size * n;
}

/* POSTs one event; true on a 2xx. */
static bool post_event(struct webhooks *h, const struct note *n, const cJSON *event, int64_t sequence, char *why,
                       size_t cap)
{
    char t[32];
    note_iso_time((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(event, "at")), t);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", n->id);
    cJSON_AddStringToObject(o, "channel", note_channel_name(n->channel));
    cJSON_AddStringToObject(o, "to", n->to);
    cJSON_AddNumberToObject(o, "sequence", (double)sequence);
    cJSON_AddStringToObject(o, "status", json_str(event, "status", ""));
    cJSON_AddStringToObject(o, "at", t);
    if (cJSON_GetObjectItem(event, "detail"))
        cJSON_AddStringToObject(o, "detail", json_str(event, "detail", ""));
    char *body = json_print(o);
    cJSON_Delete(o);
    char secret[WEBHOOK_SECRET_LEN + 1], sig[160], hdr[200], idem[128];
    bool ok = body && webhook_key_secret(h->w->cfg->webhook_signing_secret, n->webhook_key, secret) &&
              webhook_signature(secret, sb_now_ms() / 1000, body, strlen(body), sig, sizeof sig);
    if (!ok) {
        snprintf(why, cap, "out of memory");
        free(body);
        return false;
    }
    snprintf(hdr, sizeof hdr, "X-Switchboard-Signature: %s", sig);
    snprintf(idem, sizeof idem, "X-Switchboard-Event: %s/%lld", n->id, (long long)sequence);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = hdrs ? curl_slist_append(hdrs, hdr) : NULL;
    hdrs = hdrs ? curl_slist_append(hdrs, idem) : NULL;
    curl_easy_reset(h->http);
    curl_easy_setopt(h->http, CURLOPT_URL, n->callback_url);
    curl_easy_setopt(h->http, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h->http, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h->http, CURLOPT_TIMEOUT_MS, (long)h->w->cfg->notify_timeout_ms);
    curl_easy_setopt(h->http, CURLOPT_CONNECTTIMEOUT_MS, (long)h->w->cfg->notify_timeout_ms);
    curl_easy_setopt(h->http, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->http, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h->http, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = hdrs ? curl_easy_perform(h->http) : CURLE_OUT_OF_MEMORY;
    long code = 0;
    curl_easy_getinfo(h->http, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hdrs);
    free(body);
    if (rc != CURLE_OK)
        snprintf(why, cap, "%s", curl_easy_strerror(rc));
    else if (code < 200 || code >= 300)
        snprintf(why, cap, "answered HTTP %ld", code);
    return rc == CURLE_OK && code >= 200 && code < 300;
}

/* One message: its undelivered events, in order, until one fails. */
static void deliver(struct webhooks *h, const char *id)
{
    char err[ERRBUF_LEN];
    struct note n;
    bool found = false;
    cJSON *history = cJSON_CreateArray();
    if (history == NULL || notestore_get(h->store, id, &n, &found, err, sizeof err) != DB_OK || !found ||
        notestore_history(h->store, id, history, err, sizeof err) != DB_OK) {
        cJSON_Delete(history);
        return; /* the store is away (or it is gone): the next poll sees */
    }
    int64_t sent = n.webhook_sent, total = cJSON_GetArraySize(history);
    char why[ERRBUF_LEN] = "";
    bool failed = false;
    if (!*n.callback_url)
        sent = total; /* none to deliver to (it cannot have been due) */
    while (sent < total && !atomic_load(&h->stop)) {
        if (!post_event(h, &n, cJSON_GetArrayItem(history, (int)sent), sent + 1, why, sizeof why)) {
            failed = true;
            break;
        }
        sent++;
    }
    cJSON_Delete(history);
    int64_t now = sb_now_ms(), attempts = failed ? n.webhook_attempts + 1 : 0, retry_at = 0;
    if (failed) {
        struct backoff b;
        backoff_init(&b, h->w->cfg->notify_backoff_ms, h->w->cfg->webhook_backoff_cap_ms);
        b.attempt = (unsigned)(attempts > 30 ? 30 : attempts - 1);
        retry_at = now + backoff_next(&b);
        log_warn("webhook not delivered; again later", "id=%s event=%lld attempt=%lld err=\"%s\"", id,
                 (long long)sent + 1, (long long)attempts, why);
    }
    if (notestore_webhook_progress(h->store, id, sent, attempts, retry_at, now, err, sizeof err) != DB_OK)
        log_warn("webhook progress not recorded (events go again)", "id=%s err=\"%s\"", id, err);
}

static void *webhooks_main(void *arg)
{
    struct webhooks *h = arg;
    mysql_thread_init(); /* the MySQL store's client library, on this thread */
    char err[ERRBUF_LEN];
    h->store = notestore_new(h->w->cfg, err, sizeof err);
    if (h->store == NULL)
        log_error("no webhook deliveries: cannot make a notification store", "err=\"%s\"", err);
    char ids[WEBHOOK_BATCH][NOTE_ID_MAX + 1];
    bool warned = false;
    while (h->store && !atomic_load(&h->stop)) {
        size_t n = 0;
        if (notestore_webhooks_due(h->store, sb_now_ms(), ids, WEBHOOK_BATCH, &n, err, sizeof err) != DB_OK) {
            if (!warned)
                log_warn("webhooks not looked up; again later", "err=\"%s\"", err);
            warned = true;
        } else {
            warned = false;
        }
        for (size_t i = 0; i < n && !atomic_load(&h->stop); i++)
            deliver(h, ids[i]);
        sb_sleep_ms_unless(n == WEBHOOK_BATCH ? 0 : WEBHOOK_POLL_MS, &h->stop);
    }
    notestore_free(h->store);
    mysql_thread_end();
    return NULL;
}

struct webhooks *webhooks_start(struct worker *w, char *errbuf, size_t errlen)
{
    struct webhooks *h = calloc(1, sizeof *h);
    if (h == NULL || (h->http = curl_easy_init()) == NULL) {
        free(h);
        sb_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    h->w = w;
    int rc = pthread_create(&h->thread, NULL, webhooks_main, h);
    if (rc != 0) {
        curl_easy_cleanup(h->http);
        free(h);
        sb_errf(errbuf, errlen, "cannot start the webhook thread: %s", strerror(rc));
        return NULL;
    }
    return h;
}

void webhooks_stop(struct webhooks *h)
{
    if (h == NULL)
        return;
    atomic_store(&h->stop, 1);
    pthread_join(h->thread, NULL);
    curl_easy_cleanup(h->http);
    free(h);
}
