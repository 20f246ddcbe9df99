/* channels.c - see channels.h. One curl handle per channel, reused, so
 * connections to a provider stay open between notifications. */
#include "channels.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "strbuf.h"

#define DEFAULT_EMAIL_FROM "switchboard@localhost"

struct channels {
    const struct sb_config *cfg;
    struct kafka_producer *producer;
    CURL *http[CH_COUNT];
    /* The provider call's traceparent while one is made ("" untraced):
     * one sender per channels, so no lock. */
    char traceparent[TRACEPARENT_LEN + 1];
};

struct channels *channels_new(const struct sb_config *cfg, struct kafka_producer *producer)
{
    struct channels *c = calloc(1, sizeof *c);
    if (c) {
        c->cfg = cfg;
        c->producer = producer;
    }
    return c;
}

void channels_free(struct channels *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < CH_COUNT; i++)
        if (c->http[i])
            curl_easy_cleanup(c->http[i]);
    free(c);
}

static CURL *handle(struct channels *c, enum note_channel ch)
{
    if (c->http[ch] == NULL)
        c->http[ch] = curl_easy_init();
    else
        curl_easy_reset(c->http[ch]);
    CURL *h = c->http[ch];
    if (h) {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->cfg->notify_timeout_ms);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->cfg->notify_timeout_ms);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    }
    return h;
}

static size_t discard(char *p, size_t size, size_t n, void *u)
{
    (void)p;
    (void)u;
    return size * n;
}

/* A provider's answer, kept up to ANSWER_MAX bytes (a JSON object naming
 * the message is a few hundred). */
#define ANSWER_MAX 8192
static size_t keep(char *p, size_t size, size_t n, void *u)
{
    struct strbuf *b = u;
    if (b->len + size * n <= ANSWER_MAX)
        strbuf_append(b, p, size * n);
    return size * n;
}

/* What an HTTP status means for another attempt. */
static enum send_result classify_http(long code, char *errbuf, size_t errlen)
{
    if (code >= 200 && code < 300)
        return SEND_OK;
    sb_errf(errbuf, errlen, "provider answered HTTP %ld", code);
    if (code == 408 || code == 425 || code == 429 || code >= 500)
        return SEND_RETRY;
    return SEND_PERMANENT;
}

/* answer: where the provider's answer goes (NULL: nowhere). */
static enum send_result post(struct channels *c, enum note_channel ch, const char *url,
                             const char *id, const char *content_type, const char *body,
                             struct strbuf *answer, char *errbuf, size_t errlen)
{
    CURL *h = handle(c, ch);
    if (h == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return SEND_RETRY;
    }
    char hdr_type[96], hdr_idem[128];
    snprintf(hdr_type, sizeof hdr_type, "Content-Type: %s", content_type);
    snprintf(hdr_idem, sizeof hdr_idem, "Idempotency-Key: %s", id);
    struct curl_slist *hdrs = curl_slist_append(NULL, hdr_type);
    struct curl_slist *more = hdrs ? curl_slist_append(hdrs, hdr_idem) : NULL;
    if (more && c->traceparent[0]) {
        char hdr_tp[16 + TRACEPARENT_LEN];
        snprintf(hdr_tp, sizeof hdr_tp, "traceparent: %s", c->traceparent);
        more = curl_slist_append(more, hdr_tp); /* NULL: hdrs is still the whole list, freed below */
    }
    if (more == NULL) {
        curl_slist_free_all(hdrs);
        sb_errf(errbuf, errlen, "out of memory");
        return SEND_RETRY;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, more);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, answer ? keep : discard);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, answer);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(more);
    if (rc != CURLE_OK) {
        sb_errf(errbuf, errlen, "%s", curl_easy_strerror(rc));
        return SEND_RETRY;
    }
    return classify_http(code, errbuf, errlen);
}

static char *form_value(CURL *h, struct strbuf *b, const char *name, const char *v, bool first)
{
    char *e = curl_easy_escape(h, v, 0);
    if (e == NULL) {
        b->failed = true;
        return NULL;
    }
    strbuf_appendf(b, "%s%s=%s", first ? "" : "&", name, e);
    curl_free(e);
    return b->p;
}

static enum send_result send_sms(struct channels *c, const char *id, const struct note_msg *m,
                                 char provider_id[NOTE_PROVIDER_ID_MAX + 1], char *errbuf, size_t errlen)
{
    CURL *h = handle(c, CH_SMS);
    if (h == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return SEND_RETRY;
    }
    struct strbuf form = {0};
    form_value(h, &form, "To", m->to, true);
    if (*m->from)
        form_value(h, &form, "From", m->from, false);
    form_value(h, &form, "Body", m->body, false);
    if (*c->cfg->sms_callback_url) { /* where the provider tells how the message is doing */
        char cb[1024];
        snprintf(cb, sizeof cb, "%s/v1/callbacks/sms/%s", c->cfg->sms_callback_url, id);
        form_value(h, &form, "StatusCallback", cb, false);
    }
    enum send_result r = SEND_RETRY;
    struct strbuf answer = {0};
    if (strbuf_failed(&form))
        sb_errf(errbuf, errlen, "out of memory");
    else
        r = post(c, CH_SMS, c->cfg->sms_url, id, "application/x-www-form-urlencoded", form.p, &answer, errbuf,
                 errlen);
    if (r == SEND_OK && !strbuf_failed(&answer)) { /* Twilio's answer names the message "sid" */
        cJSON *o = cJSON_ParseWithLength(answer.p ? answer.p : "", answer.len);
        const char *sid = json_str(o, "sid", "");
        if (strlen(sid) <= NOTE_PROVIDER_ID_MAX)
            snprintf(provider_id, NOTE_PROVIDER_ID_MAX + 1, "%s", sid);
        cJSON_Delete(o);
    }
    strbuf_free(&answer);
    strbuf_free(&form);
    return r;
}

static enum send_result send_push(struct channels *c, const char *id, const struct note_msg *m,
                                  char *errbuf, size_t errlen)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "to", m->to);
    if (*m->title)
        cJSON_AddStringToObject(o, "title", m->title);
    cJSON_AddStringToObject(o, "body", m->body);
    char *text = json_print(o);
    cJSON_Delete(o);
    if (text == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return SEND_RETRY;
    }
    enum send_result r = post(c, CH_PUSH, c->cfg->push_url, id, "application/json", text, NULL, errbuf,
                              errlen);
    free(text);
    return r;
}

/* ---- email ------------------------------------------------------------ */

static void base64(struct strbuf *b, const unsigned char *s, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        char out[4] = {tbl[v >> 18 & 63], tbl[v >> 12 & 63], i + 1 < n ? tbl[v >> 6 & 63] : '=',
                       i + 2 < n ? tbl[v & 63] : '='};
        strbuf_append(b, out, 4);
    }
}

static bool ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* The message as SMTP DATA: headers (a non-ASCII subject RFC 2047
 * encoded), then the body with every line ending in CRLF. libcurl does
 * the dot-stuffing. */
static char *email_text(const char *id, const struct note_msg *m, const char *from)
{
    struct strbuf b = {0};
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    /* X-Switchboard-Notification names it in the provider's feedback:
     * Amazon SES replaces a Message-ID with its own. */
    strbuf_appendf(&b, "X-Switchboard-Notification: %s\r\n", id);
    strbuf_appendf(&b, "Date: %s\r\nFrom: <%s>\r\nTo: <%s>\r\nMessage-ID: <%s@switchboard>\r\n",
                   date, from, m->to, id);
    if (ascii(m->title)) {
        strbuf_appendf(&b, "Subject: %s\r\n", m->title);
    } else {
        strbuf_appendf(&b, "Subject: =?UTF-8?B?");
        base64(&b, (const unsigned char *)m->title, strlen(m->title));
        strbuf_appendf(&b, "?=\r\n");
    }
    strbuf_appendf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: 8bit\r\n\r\n");
    for (const char *p = m->body; *p; p++) {
        if (*p == '\r' && p[1] == '\n')
            continue;
        if (*p == '\n')
            strbuf_append(&b, "\r\n", 2);
        else
            strbuf_append(&b, p, 1);
    }
    strbuf_append(&b, "\r\n", 2);
    return strbuf_failed(&b) ? (strbuf_free(&b), NULL) : strbuf_take(&b);
}

struct upload {
    const char *p;
    size_t left;
};

static size_t read_upload(char *buf, size_t size, size_t n, void *u)
{
    struct upload *up = u;
    size_t k = size * n < up->left ? size * n : up->left;
    memcpy(buf, up->p, k);
    up->p += k;
    up->left -= k;
    return k;
}

static enum send_result send_email(struct channels *c, const char *id, const struct note_msg *m,
                                   char *errbuf, size_t errlen)
{
    const char *from = *m->from ? m->from : DEFAULT_EMAIL_FROM;
    char *text = email_text(id, m, from);
    CURL *h = handle(c, CH_EMAIL);
    char mail_from[340], rcpt[340];
    snprintf(mail_from, sizeof mail_from, "<%s>", from);
    snprintf(rcpt, sizeof rcpt, "<%s>", m->to);
    struct curl_slist *rcpts = curl_slist_append(NULL, rcpt);
    enum send_result r = SEND_RETRY;
    if (text == NULL || h == NULL || rcpts == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        goto done;
    }
    struct upload up = {text, strlen(text)};
    curl_easy_setopt(h, CURLOPT_URL, c->cfg->smtp_url);
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, mail_from);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpts);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_upload);
    curl_easy_setopt(h, CURLOPT_READDATA, &up);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK) {
        r = SEND_OK;
    } else {
        sb_errf(errbuf, errlen, "smtp: %s (reply %ld)", curl_easy_strerror(rc), code);
        /* 5xx replies are refusals that will not change; 4xx and no
         * reply at all (connection trouble) are worth another try. */
        r = code >= 500 && code < 600 ? SEND_PERMANENT : SEND_RETRY;
    }
done:
    curl_slist_free_all(rcpts);
    free(text);
    return r;
}

static enum send_result send_kafka(struct channels *c, const char *id, const struct note_msg *m,
                                   char *errbuf, size_t errlen)
{
    rd_kafka_headers_t *h = NULL;
    if (c->traceparent[0] && (h = rd_kafka_headers_new(1)) != NULL)
        rd_kafka_header_add(h, "traceparent", -1, c->traceparent, TRACEPARENT_LEN);
    if (!kafka_produce_sync(c->producer, m->to, id, strlen(id), m->body, strlen(m->body), h,
                            errbuf, errlen))
        return SEND_RETRY;
    return SEND_OK;
}

static enum send_result send_on(struct channels *c, const char *id, const struct note_msg *m,
                                char provider_id[NOTE_PROVIDER_ID_MAX + 1], char *errbuf, size_t errlen)
{
    static const char *const setting[CH_COUNT] = {"SB_SMTP_URL", "SB_SMS_URL", "SB_PUSH_URL",
                                                  "SB_NOTIFY_TOPICS"};
    const char *target[CH_COUNT] = {c->cfg->smtp_url, c->cfg->sms_url, c->cfg->push_url,
                                    c->cfg->notify_topics};
    if ((unsigned)m->channel >= CH_COUNT || !*target[m->channel]) {
        sb_errf(errbuf, errlen, "the %s channel is not configured (%s)", note_channel_name(m->channel),
                (unsigned)m->channel < CH_COUNT ? setting[m->channel] : "?");
        return SEND_PERMANENT;
    }
    switch (m->channel) {
    case CH_EMAIL: return send_email(c, id, m, errbuf, errlen);
    case CH_SMS: return send_sms(c, id, m, provider_id, errbuf, errlen);
    case CH_PUSH: return send_push(c, id, m, errbuf, errlen);
    case CH_KAFKA: return send_kafka(c, id, m, errbuf, errlen);
    default: return SEND_PERMANENT;
    }
}

enum send_result channels_send(struct channels *c, const char *id, const struct note_msg *m,
                               const struct trace_ctx *trace, char provider_id[NOTE_PROVIDER_ID_MAX + 1],
                               char *errbuf, size_t errlen)
{
    provider_id[0] = '\0';
    /* The provider call's span; HTTP providers (SMS, push) and the Kafka
     * channel get its traceparent, so their side joins the trace. */
    struct trace_span span;
    trace_span_start(&span, trace, "provider.send", TRACE_CLIENT);
    trace_span_attr(&span, "channel", note_channel_name(m->channel));
    trace_span_attr(&span, "notification.id", id);
    if (span.ctx.valid)
        trace_format(&span.ctx, c->traceparent);
    enum send_result r = send_on(c, id, m, provider_id, errbuf, errlen);
    c->traceparent[0] = '\0';
    trace_span_attr(&span, "outcome", r == SEND_OK ? "sent" : r == SEND_RETRY ? "retry" : "refused");
    trace_span_end(&span, r != SEND_OK);
    return r;
}
