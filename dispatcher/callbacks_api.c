/* callbacks_api.c - see callbacks_api.h. */
#include "callbacks_api.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <strings.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "notestore.h"
#include "notify_api.h"
#include "phone.h"
#include "suppress.h"
#include "strbuf.h"
#include "threadpool.h"
#include "webhook.h"

#define CB_MAX_PARAMS 64

static int cmp_pair(const void *x, const void *y)
{
    const char *const *a = x, *const *b = y;
    int c = strcmp(a[0], b[0]);
    return c ? c : strcmp(a[1], b[1]);
}

bool callbacks_twilio_signature(const char *token, const char *url, const char *const (*params)[2], size_t n,
                                char *out, size_t cap)
{
    const char *(*sorted)[2] = n ? malloc(n * sizeof *sorted) : NULL;
    if (n && sorted == NULL)
        return false;
    if (n) {
        memcpy(sorted, params, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_pair);
    }
    struct strbuf data = {0};
    strbuf_append(&data, url, strlen(url));
    for (size_t i = 0; i < n; i++) {
        strbuf_append(&data, sorted[i][0], strlen(sorted[i][0]));
        strbuf_append(&data, sorted[i][1], strlen(sorted[i][1]));
    }
    free(sorted);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    bool ok = !strbuf_failed(&data) &&
              HMAC(EVP_sha1(), token, (int)strlen(token), (const unsigned char *)(data.p ? data.p : ""), data.len,
                   mac, &maclen) != NULL &&
              cap >= 4 * ((maclen + 2) / 3) + 1; /* base64 and its NUL: 29 for SHA-1 */
    if (ok)
        EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
    strbuf_free(&data);
    return ok;
}

/* The password of a URL's user:pass@ (the account's auth token), into out;
 * false if it has none. */
static bool url_password(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    if (p == NULL)
        return false;
    p += 3;
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    const char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
    if (colon == NULL || (size_t)(at - colon - 1) >= cap || at == colon + 1)
        return false;
    memcpy(out, colon + 1, (size_t)(at - colon - 1));
    out[at - colon - 1] = '\0';
    return true;
}

/* MessageStatus -> our status; false for one that moves nothing (queued,
 * accepted, sending, scheduled, canceled, receiving, received: the
 * provider's own steps before it sends, or inbound). */
static bool status_of(const char *s, enum note_status *out)
{
    if (strcmp(s, "sent") == 0)
        *out = NOTE_SENT;
    else if (strcmp(s, "delivered") == 0 || strcmp(s, "read") == 0)
        *out = NOTE_DELIVERED;
    else if (strcmp(s, "undelivered") == 0)
        *out = NOTE_UNDELIVERED;
    else if (strcmp(s, "failed") == 0)
        *out = NOTE_FAILED;
    else
        return false;
    return true;
}

struct cb_req {
    struct http_pending *p;
    char id[NOTE_ID_MAX + 1];
    char sid[NOTE_PROVIDER_ID_MAX + 1];
    char error_code[32];
    enum note_status status;
    bool found, applied, mismatch, expired;
    enum db_status st;
    char err[ERRBUF_LEN];
};

static void cb_expire(void *arg)
{
    struct cb_req *r = arg;
    r->expired = true;
}

/* On a store thread: the record, then the move (the store refuses a step
 * back, so a late or repeated callback changes nothing). */
static void cb_work(void *ctx, void *arg)
{
    struct cb_req *r = arg;
    struct note n;
    r->st = notestore_get(ctx, r->id, &n, &r->found, r->err, sizeof r->err);
    if (r->st != DB_OK || !r->found)
        return;
    if (*n.provider_id && strcmp(n.provider_id, r->sid) != 0) {
        r->mismatch = true; /* another message's callback, or a forged path */
        return;
    }
    n.status = r->status;
    n.attempts = -1; /* the notifier's to count */
    n.updated_ms = sb_now_ms();
    snprintf(n.provider_id, sizeof n.provider_id, "%s", r->sid);
    n.redrive_of[0] = '\0';
    if (r->status == NOTE_UNDELIVERED || r->status == NOTE_FAILED)
        snprintf(n.last_error, sizeof n.last_error, "provider: %s%s%s", r->status == NOTE_FAILED ? "failed" : "undelivered",
                 *r->error_code ? ", error " : "", r->error_code);
    r->st = notestore_update(ctx, &n, &r->applied, r->err, sizeof r->err);
}

static void cb_done(void *arg)
{
    struct cb_req *r = arg;
    if (r->expired) {
        http_pending_busy(r->p);
    } else if (r->st != DB_OK) {
        log_warn("status callback not recorded", "id=%s err=\"%s\"", r->id, r->err);
        http_pending_error(r->p, 503, "store_unavailable", "the notification store is unavailable; retry later");
    } else if (!r->found) {
        http_pending_errorf(r->p, 404, "not_found", "no notification %s", r->id);
    } else if (r->mismatch) {
        http_pending_errorf(r->p, 409, "conflict", "notification %s went out as another message, not %s", r->id,
                            r->sid);
    } else {
        log_info("status callback", "id=%s sid=%s status=%s applied=%d", r->id, r->sid, note_status_name(r->status),
                 r->applied);
        http_pending_reply_text(r->p, 204, "", 0);
    }
    free(r);
}

/* A Twilio webhook's form, parsed into q, and whether its signature is
 * true for url_path (after sms_callback_url); false after answering
 * 400/403/404/413/415 itself. The caller clears q and frees *text. */
static bool twilio_request(struct http_ctx *ctx, const char *url_path, struct evkeyvalq *q, char **text)
{
    const struct sb_config *cfg = ctx->loop->d->cfg;
    char token[256];
    TAILQ_INIT(q);
    *text = NULL;
    if (*cfg->sms_auth_token)
        snprintf(token, sizeof token, "%s", cfg->sms_auth_token);
    if (!*cfg->sms_callback_url || (!*cfg->sms_auth_token && !url_password(cfg->sms_url, token, sizeof token))) {
        http_reply_error(ctx, 404, "not_found", "%s",
                         "the SMS provider's webhooks are not configured (sms_callback_url, and sms_url with the "
                         "account's user:token@)");
        return false;
    }
    size_t len;
    const char *body = http_body_raw(ctx, &len, "application/x-www-form-urlencoded");
    if (body == NULL)
        return false;
    if ((*text = strndup(body, len)) == NULL || evhttp_parse_query_str(*text, q) != 0) {
        http_reply_error(ctx, 400, "bad_form", "%s", "the body is not a form (application/x-www-form-urlencoded)");
        return false;
    }
    const char *params[CB_MAX_PARAMS][2];
    size_t n = 0;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, q, next) {
        if (n == CB_MAX_PARAMS) {
            http_reply_error(ctx, 400, "bad_form", "more than %d form parameters", CB_MAX_PARAMS);
            return false;
        }
        params[n][0] = kv->key;
        params[n][1] = kv->value;
        n++;
    }
    /* The URL the provider called: ours as it knows it, and this path. */
    char url[2048], want[64];
    snprintf(url, sizeof url, "%s%s%s%s", cfg->sms_callback_url, url_path, ctx->query ? "?" : "",
             ctx->query ? ctx->query : "");
    const char *got = http_req_header(ctx->req, "X-Twilio-Signature");
    if (got == NULL || !callbacks_twilio_signature(token, url, (const char *const (*)[2])params, n, want, sizeof want) ||
        strlen(got) != strlen(want) || CRYPTO_memcmp(got, want, strlen(want)) != 0) {
        log_warn("provider webhook refused: signature", "path=%s", url_path);
        http_reply_error(ctx, 403, "forbidden", "%s", "X-Twilio-Signature is missing or does not match");
        return false;
    }
    return true;
}

void callbacks_sms(struct http_ctx *ctx)
{
    struct evkeyvalq q;
    char *text, path[128];
    snprintf(path, sizeof path, "/v1/callbacks/sms/%.64s", ctx->params[0]);
    if (strlen(ctx->params[0]) > NOTE_ID_MAX) {
        http_reply_error(ctx, 404, "not_found", "%s", "no such notification");
        return;
    }
    if (!twilio_request(ctx, path, &q, &text)) {
        evhttp_clear_headers(&q);
        free(text);
        return;
    }
    const char *sid = evhttp_find_header(&q, "MessageSid"), *status = evhttp_find_header(&q, "MessageStatus");
    const char *code = evhttp_find_header(&q, "ErrorCode");
    enum note_status st = NOTE_QUEUED;
    if (!notify_id_valid(ctx->params[0]) || sid == NULL || !*sid || strlen(sid) > NOTE_PROVIDER_ID_MAX ||
        status == NULL || (code && strlen(code) > 16)) {
        http_reply_error(ctx, 400, "invalid_field", "%s",
                         "a status callback names its message (MessageSid, at most 64 characters) and its "
                         "MessageStatus");
    } else if (!status_of(status, &st)) {
        http_reply_raw(ctx, 204, "application/json", "", 0); /* a step of the provider's own */
    } else {
        struct cb_req *r = calloc(1, sizeof *r);
        if (r == NULL || (r->p = http_pending_new(ctx)) == NULL) {
            if (r == NULL)
                http_reply_error(ctx, 503, "overloaded", "out of memory");
            free(r);
        } else {
            snprintf(r->id, sizeof r->id, "%.64s", ctx->params[0]); /* checked: at most 64 */
            snprintf(r->sid, sizeof r->sid, "%s", sid);
            snprintf(r->error_code, sizeof r->error_code, "%s", code ? code : "");
            r->status = st;
            if (!http_pool_submit(r->p, ctx->loop->d->notepool, threadpool_tenant("sms-callbacks"), cb_work,
                                  cb_expire, cb_done, r))
                free(r);
        }
    }
    evhttp_clear_headers(&q);
    free(text);
}

/* ---- POST /v1/inbound/sms ---------------------------------------------------- */

enum keyword { KW_NONE, KW_STOP, KW_START, KW_HELP };

/* The opt-out keywords carriers and Twilio honour, as a whole message in
 * any case, spaces around it ignored. */
static enum keyword keyword_of(const char *body, char *word, size_t cap)
{
    while (*body == ' ' || *body == '\t' || *body == '\r' || *body == '\n')
        body++;
    size_t n = 0;
    while (body[n] && body[n] != ' ' && body[n] != '\t' && body[n] != '\r' && body[n] != '\n' && n + 1 < cap) {
        word[n] = (char)(body[n] >= 'a' && body[n] <= 'z' ? body[n] - 32 : body[n]);
        n++;
    }
    word[n] = '\0';
    for (const char *rest = body + n; *rest; rest++)
        if (*rest != ' ' && *rest != '\t' && *rest != '\r' && *rest != '\n')
            return KW_NONE; /* more than one word: a message, not a keyword */
    static const char *const stop[] = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"};
    for (size_t i = 0; i < sizeof stop / sizeof *stop; i++)
        if (strcmp(word, stop[i]) == 0)
            return KW_STOP;
    if (strcmp(word, "START") == 0 || strcmp(word, "UNSTOP") == 0)
        return KW_START;
    if (strcmp(word, "HELP") == 0 || strcmp(word, "INFO") == 0)
        return KW_HELP;
    return KW_NONE;
}

struct inbound_req {
    struct http_pending *p;
    enum keyword kw;
    char from[NOTE_TO_MAX + 1], to[NOTE_TO_MAX + 1], word[16], sid[NOTE_PROVIDER_ID_MAX + 1];
    bool again; /* this MessageSid was acted on before */
    enum db_status st;
    char err[ERRBUF_LEN];
};

static void inbound_expire(void *arg)
{
    struct inbound_req *r = arg;
    r->st = DB_TRANSIENT;
    snprintf(r->err, sizeof r->err, "the database pool was busy");
}

static void inbound_work(void *ctx, void *arg)
{
    struct inbound_req *r = arg;
    bool removed;
    /* Once per text: a repeat (a retry, or a replay) changes nothing. */
    char *sql = db_sqlf(ctx, r->err, sizeof r->err,
                        "INSERT IGNORE INTO inbound_sms (message_sid, received_ms) VALUES (%s, %lld)", r->sid,
                        (long long)sb_now_ms());
    uint64_t inserted = 0;
    r->st = sql ? db_exec_count(ctx, sql, &inserted, r->err, sizeof r->err) : DB_TRANSIENT;
    free(sql);
    if (r->st != DB_OK || (r->again = inserted == 0))
        return;
    if (r->kw == KW_STOP)
        r->st = suppress_add(ctx, CH_SMS, r->from, r->to, r->word, sb_now_ms(), r->err, sizeof r->err);
    else
        r->st = suppress_remove(ctx, CH_SMS, r->from, r->to, &removed, r->err, sizeof r->err);
}

/* TwiML: the reply the provider texts back (none: an empty Response),
 * the text XML-escaped (a help text may hold "&"). */
static void twiml(struct http_pending *p, const char *message)
{
    struct strbuf x = {0};
    strbuf_appendf(&x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    if (message) {
        strbuf_appendf(&x, "<Response><Message>");
        for (const char *c = message; *c; c++) {
            const char *e = *c == '&' ? "&amp;" : *c == '<' ? "&lt;" : *c == '>' ? "&gt;" : NULL;
            if (e)
                strbuf_append(&x, e, strlen(e));
            else
                strbuf_append(&x, c, 1);
        }
        strbuf_appendf(&x, "</Message></Response>");
    } else {
        strbuf_appendf(&x, "<Response/>");
    }
    if (strbuf_failed(&x))
        http_pending_error(p, 503, "overloaded", "out of memory");
    else
        http_pending_reply_typed(p, 200, "text/xml", x.p, x.len);
    strbuf_free(&x);
}

static void inbound_done(void *arg)
{
    struct inbound_req *r = arg;
    if (r->st != DB_OK) {
        /* The provider retries a webhook that fails: the opt-out is not lost. */
        log_warn("inbound keyword not recorded", "from=%s to=%s err=\"%s\"", r->from, r->to, r->err);
        http_pending_error(r->p, 503, "database_unavailable", "cannot record it now; retry later");
    } else {
        log_info(r->again ? "inbound text seen before; nothing changed" : r->kw == KW_STOP ? "opted out" : "opted in",
                 "from=%s to=%s keyword=%s sid=%s", r->from, r->to, r->word, r->sid);
        twiml(r->p, r->kw == KW_STOP ? "You are unsubscribed and will get no more messages from this number. "
                                       "Reply START to subscribe again."
                                     : "You are subscribed again. Reply STOP to unsubscribe, HELP for help.");
    }
    free(r);
}

void callbacks_inbound_sms(struct http_ctx *ctx)
{
    struct evkeyvalq q;
    char *text;
    if (!twilio_request(ctx, "/v1/inbound/sms", &q, &text)) {
        evhttp_clear_headers(&q);
        free(text);
        return;
    }
    const char *from = evhttp_find_header(&q, "From"), *to = evhttp_find_header(&q, "To");
    const char *body = evhttp_find_header(&q, "Body"), *sid = evhttp_find_header(&q, "MessageSid");
    char word[16];
    enum keyword kw = body ? keyword_of(body, word, sizeof word) : KW_NONE;
    if (from == NULL || to == NULL || !phone_valid(from) || !phone_valid(to) || sid == NULL || !*sid ||
        strlen(sid) > NOTE_PROVIDER_ID_MAX) {
        http_reply_error(ctx, 400, "invalid_field", "%s",
                         "an inbound SMS names From and To as E.164 numbers, and its MessageSid");
    } else if (kw == KW_NONE || kw == KW_HELP) {
        struct http_pending *p = http_pending_new(ctx);
        if (p)
            twiml(p, kw == KW_HELP ? ctx->loop->d->cfg->sms_help_text : NULL);
    } else {
        struct inbound_req *r = calloc(1, sizeof *r);
        if (r == NULL || (r->p = http_pending_new(ctx)) == NULL) {
            if (r == NULL)
                http_reply_error(ctx, 503, "overloaded", "out of memory");
            free(r);
        } else {
            r->kw = kw;
            snprintf(r->from, sizeof r->from, "%s", from);
            snprintf(r->to, sizeof r->to, "%s", to);
            snprintf(r->word, sizeof r->word, "%s", word);
            snprintf(r->sid, sizeof r->sid, "%s", sid);
            if (!http_pool_submit(r->p, ctx->loop->d->dbpool, threadpool_tenant("sms-inbound"), inbound_work,
                                  inbound_expire, inbound_done, r))
                free(r);
        }
    }
    evhttp_clear_headers(&q);
    free(text);
}

/* ---- POST /v1/callbacks/email ------------------------------------------------ */

/* Feedback older or newer than this is refused: a captured request cannot
 * be played again later. */
#define FEEDBACK_SKEW_S 300
#define FEEDBACK_MAX_RECIPIENTS 50

struct feedback_req {
    struct http_pending *p;
    struct loop *loop;
    char kind[16];                   /* Bounce, Complaint, Delivery */
    char note[NOTE_ID_MAX + 1];      /* the notification it is about, "" = none of ours */
    char detail[NOTE_ERROR_MAX + 1]; /* a bounce's diagnostic */
    bool permanent;                  /* a hard bounce */
    char (*recipients)[NOTE_TO_MAX + 1];
    size_t nrecipients;
    bool found, applied, expired;
    enum db_status st;
    char err[ERRBUF_LEN];
};

static void feedback_free(struct feedback_req *r)
{
    free(r->recipients);
    free(r);
}

static void feedback_expire(void *arg)
{
    struct feedback_req *r = arg;
    r->expired = true;
}

/* Step 2, on a store thread: the notification's status. */
static void feedback_note_work(void *ctx, void *arg)
{
    struct feedback_req *r = arg;
    struct note n;
    r->st = notestore_get(ctx, r->note, &n, &r->found, r->err, sizeof r->err);
    if (r->st != DB_OK || !r->found)
        return;
    n.status = strcmp(r->kind, "Delivery") == 0 ? NOTE_DELIVERED : NOTE_UNDELIVERED;
    n.attempts = -1;
    n.updated_ms = sb_now_ms();
    n.redrive_of[0] = n.provider_id[0] = '\0';
    if (n.status == NOTE_UNDELIVERED)
        snprintf(n.last_error, sizeof n.last_error, "bounced: %.240s", r->detail);
    r->st = notestore_update(ctx, &n, &r->applied, r->err, sizeof r->err);
}

static void feedback_done(void *arg)
{
    struct feedback_req *r = arg;
    if (r->expired) {
        http_pending_busy(r->p);
    } else if (r->st != DB_OK) {
        /* The feed sends it again: nothing is lost. */
        log_warn("email feedback not recorded", "kind=%s note=%s err=\"%s\"", r->kind, r->note, r->err);
        http_pending_error(r->p, 503, "store_unavailable", "cannot record the feedback now; retry later");
    } else {
        log_info("email feedback", "kind=%s note=%s recipients=%zu permanent=%d applied=%d", r->kind, r->note,
                 r->nrecipients, r->permanent, r->applied);
        http_pending_reply_text(r->p, 204, "", 0);
    }
    feedback_free(r);
}

/* Step 1, on a MySQL thread: a hard bounce or a complaint suppresses
 * each recipient for every sender. */
static void feedback_suppress_work(void *ctx, void *arg)
{
    struct feedback_req *r = arg;
    char reason[SUPPRESS_REASON_MAX + 1];
    snprintf(reason, sizeof reason, "%s%s%.200s", strcmp(r->kind, "Complaint") == 0 ? "complaint" : "bounce",
             *r->detail ? ": " : "", r->detail);
    for (size_t i = 0; i < r->nrecipients && r->st == DB_OK; i++)
        r->st = suppress_add(ctx, CH_EMAIL, r->recipients[i], SUPPRESS_SCOPE_ALL, reason, sb_now_ms(), r->err,
                             sizeof r->err);
}

static void feedback_suppressed(void *arg)
{
    struct feedback_req *r = arg;
    bool moves = strcmp(r->kind, "Delivery") == 0 || (strcmp(r->kind, "Bounce") == 0 && r->permanent);
    if (r->expired || r->st != DB_OK || !*r->note || !moves) {
        feedback_done(r);
        return;
    }
    if (!http_pool_submit(r->p, r->loop->d->notepool, threadpool_tenant("email-feedback"), feedback_note_work,
                          feedback_expire, feedback_done, r))
        feedback_free(r); /* answered 503 */
}

/* The notification a message id names: "<id@switchboard>", as the
 * notifier sets Message-ID. */
static void note_of(const char *message_id, char out[NOTE_ID_MAX + 1])
{
    out[0] = '\0';
    const char *s = message_id ? message_id : "";
    s += *s == '<';
    const char *at = strstr(s, "@switchboard");
    if (at && (size_t)(at - s) <= NOTE_ID_MAX) {
        memcpy(out, s, (size_t)(at - s));
        out[at - s] = '\0';
        if (!notify_id_valid(out))
            out[0] = '\0';
    }
}

/* Adds the addresses of array (of strings, or of objects with
 * emailAddress) to r; false if one is not a string or there are too many. */
static bool add_recipients(struct feedback_req *r, const cJSON *array)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, array)
    {
        const char *a = cJSON_IsString(it) ? it->valuestring : json_str(it, "emailAddress", NULL);
        if (a == NULL || strlen(a) > NOTE_TO_MAX || r->nrecipients == FEEDBACK_MAX_RECIPIENTS)
            return false;
        snprintf(r->recipients[r->nrecipients++], NOTE_TO_MAX + 1, "%s", a);
    }
    return true;
}

void callbacks_email(struct http_ctx *ctx)
{
    const struct sb_config *cfg = ctx->loop->d->cfg;
    if (!*cfg->email_feedback_secret) {
        http_reply_error(ctx, 404, "not_found", "%s", "email feedback is not configured (email_feedback_secret)");
        return;
    }
    size_t len;
    /* SNS posts its messages as text/plain. */
    const char *body = http_body_raw(ctx, &len, "text/plain");
    if (body == NULL)
        return;
    /* X-Feedback-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">,
     * the scheme we sign our own webhooks with (webhook.h). */
    const char *sig = http_req_header(ctx->req, "X-Feedback-Signature");
    char want[160];
    long long ts = 0;
    bool ok = sig && sscanf(sig, "t=%lld,", &ts) == 1 && ts > 0 && llabs(ts - sb_now_ms() / 1000) <= FEEDBACK_SKEW_S &&
              webhook_signature(cfg->email_feedback_secret, ts, body, len, want, sizeof want) &&
              strlen(sig) == strlen(want) && CRYPTO_memcmp(sig, want, strlen(want)) == 0;
    if (!ok) {
        log_warn("email feedback refused: signature", "%s", "");
        http_reply_error(ctx, 403, "forbidden", "%s",
                         "X-Feedback-Signature is missing, does not match, or is more than 5 minutes old");
        return;
    }
    char err[ERRBUF_LEN];
    cJSON *o = json_parse_strict(body, len, err, sizeof err);
    struct feedback_req *r = calloc(1, sizeof *r);
    if (r)
        r->recipients = calloc(FEEDBACK_MAX_RECIPIENTS, sizeof *r->recipients);
    const char *kind = json_str(o, "notificationType", json_str(o, "eventType", ""));
    const cJSON *mail = cJSON_GetObjectItemCaseSensitive(o, "mail");
    const cJSON *bounce = cJSON_GetObjectItemCaseSensitive(o, "bounce");
    const cJSON *complaint = cJSON_GetObjectItemCaseSensitive(o, "complaint");
    const cJSON *delivery = cJSON_GetObjectItemCaseSensitive(o, "delivery");
    bool known = strcmp(kind, "Bounce") == 0 || strcmp(kind, "Complaint") == 0 || strcmp(kind, "Delivery") == 0;
    bool parsed = r && r->recipients && o && known;
    if (parsed) {
        r->loop = ctx->loop;
        snprintf(r->kind, sizeof r->kind, "%s", kind);
        /* The notification: our own header (SES keeps it, in mail.headers
         * when the feed includes headers), else the Message-ID we set
         * (kept by relays other than SES). */
        const cJSON *h;
        cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(mail, "headers"))
        {
            const char *v = json_str(h, "value", "");
            if (strcasecmp(json_str(h, "name", ""), "X-Switchboard-Notification") == 0 && notify_id_valid(v))
                snprintf(r->note, sizeof r->note, "%s", v);
        }
        if (!*r->note)
            note_of(json_str(cJSON_GetObjectItemCaseSensitive(mail, "commonHeaders"), "messageId", NULL), r->note);
        /* Each kind comes with its own object. */
        const cJSON *own = strcmp(kind, "Bounce") == 0 ? bounce : strcmp(kind, "Complaint") == 0 ? complaint : delivery;
        if (!cJSON_IsObject(own)) {
            parsed = false;
        } else if (strcmp(kind, "Bounce") == 0) {
            r->permanent = strcmp(json_str(bounce, "bounceType", ""), "Permanent") == 0;
            const cJSON *rec = cJSON_GetObjectItemCaseSensitive(bounce, "bouncedRecipients");
            snprintf(r->detail, sizeof r->detail, "%s", json_str(cJSON_GetArrayItem(rec, 0), "diagnosticCode", ""));
            /* A soft bounce (mailbox full) suppresses nobody. */
            parsed = !r->permanent || add_recipients(r, rec);
        } else if (strcmp(kind, "Complaint") == 0) {
            parsed = add_recipients(r, cJSON_GetObjectItemCaseSensitive(complaint, "complainedRecipients"));
        }
    }
    cJSON_Delete(o);
    if (!parsed) {
        if (r)
            feedback_free(r);
        http_reply_error(ctx, 400, "invalid_field", "%s",
                         "expected an SES notification: notificationType Bounce, Complaint or Delivery, with "
                         "its bounce, complaint or delivery object and mail.commonHeaders.messageId");
        return;
    }
    if ((r->p = http_pending_new(ctx)) == NULL) {
        feedback_free(r);
        return;
    }
    if (!http_pool_submit(r->p, ctx->loop->d->dbpool, threadpool_tenant("email-feedback"), feedback_suppress_work,
                          feedback_expire, feedback_suppressed, r))
        feedback_free(r);
}
