/* notify_api.c - see notify_api.h. */
#include "notify_api.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "httpconn.h"
#include "log.h"
#include "notestore.h"
#include "suppress.h"
#include "webhook.h"
#include "phonebook_api.h"
#include "threadpool.h"

#define IDEM_PREFIX "sb:idem:"
#define NOTE_PREFIX "sb:note:" /* accepted, maybe not in the store yet */

/* Claims the key for this request unless someone holds it: "NEW", else
 * the holder's "state|fingerprint|id" ("GONE" if it expired meanwhile). */
static const char claim_lua[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 'NEW' end\n"
    "return redis.call('GET', KEYS[1]) or 'GONE'\n";
/* Releases the key only if this request still holds it. */
static const char release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

struct accept *accept_new(struct loop *l, const char *request_id, const struct trace_ctx *trace,
                          const struct note_msg *m, const char *idem)
{
    struct accept *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->loop = l;
    a->trace = *trace;
    a->channel = m->channel;
    a->to = dup_str(m->to);
    a->from = dup_str(m->from);
    a->title = dup_str(m->title);
    a->body = dup_str(m->body);
    if (!a->to || !a->from || !a->title || !a->body || !sb_random_id(a->id)) {
        accept_free(a);
        return NULL;
    }
    snprintf(a->request_id, sizeof a->request_id, "%s", request_id);
    assert(idem == NULL || strlen(idem) <= NOTE_IDEM_STORED_MAX); /* validated: kept whole */
    snprintf(a->idem, sizeof a->idem, "%s", idem ? idem : "");
    note_fingerprint(m, a->fingerprint);
    if (m->channel == CH_SMS)
        segments_count(m->body, &a->segs);
    a->from_field = "from";
    a->to_field = "to";
    return a;
}

void accept_free(struct accept *a)
{
    if (a == NULL)
        return;
    free(a->to);
    free(a->from);
    free(a->title);
    free(a->body);
    free(a);
}

static void finish(struct accept *a, enum accept_outcome o, int status, const char *code,
                   const char *fmt, ...) SB_PRINTF(5, 6);
static void finish(struct accept *a, enum accept_outcome o, int status, const char *code,
                   const char *fmt, ...)
{
    a->outcome = o;
    a->status = status;
    snprintf(a->code, sizeof a->code, "%s", code ? code : "");
    a->message[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(a->message, sizeof a->message, fmt, ap);
        va_end(ap);
    }
    a->done(a);
}

#define IDEM_KEY_CAP (sizeof IDEM_PREFIX + NOTE_IDEM_STORED_MAX)

static void idem_key(const struct accept *a, char out[IDEM_KEY_CAP])
{
    snprintf(out, IDEM_KEY_CAP, IDEM_PREFIX "%s", a->idem);
}

static void idem_value(const struct accept *a, const char *state, char *out, size_t cap)
{
    snprintf(out, cap, "%s|%s|%s", state, a->fingerprint, a->id);
}

static void release_key(struct accept *a)
{
    if (!*a->idem)
        return;
    char key[IDEM_KEY_CAP], val[80];
    idem_key(a, key);
    idem_value(a, "pending", val, sizeof val);
    const char *argv[] = {"EVAL", release_lua, "1", key, val};
    if (!redis_client_command_argv(a->loop->redis, NULL, NULL, 5, argv, NULL))
        log_warn("idempotency key not released (expires by itself)", "key=\"%s\"", a->idem);
}

/* ---- 3. enqueue --------------------------------------------------------- */

static void delivered(void *arg, rd_kafka_resp_err_t err)
{
    struct accept *a = arg;
    if (err)
        log_warn("enqueue failed", "request_id=%s err=%s", a->request_id, rd_kafka_err2name(err));
    if (err) {
        release_key(a);
        finish(a, ACCEPT_REFUSED, 503, "queue_unavailable",
               "the job queue did not accept the notification; retry later");
        return;
    }
    /* Known as accepted until the notifier records it (GET answers
     * "queued" meanwhile), and the key now answers repeats at once. */
    char key[IDEM_KEY_CAP], val[80], ttl[24], note_key[64];
    snprintf(ttl, sizeof ttl, "%lld", (long long)a->loop->d->cfg->idempotency_ttl_s);
    snprintf(note_key, sizeof note_key, NOTE_PREFIX "%s", a->id);
    char created[24];
    snprintf(created, sizeof created, "%lld", (long long)sb_now_ms());
    const char *nargv[] = {"SET", note_key, created, "EX", ttl};
    bool ok = redis_client_command_argv(a->loop->redis, NULL, NULL, 5, nargv, NULL);
    if (*a->idem) {
        idem_key(a, key);
        idem_value(a, "done", val, sizeof val);
        const char *argv[] = {"SET", key, val, "XX", "EX", ttl};
        ok = redis_client_command_argv(a->loop->redis, NULL, NULL, 6, argv, NULL) && ok;
    }
    if (!ok) /* the store still has it; a repeat meanwhile gets 409 until the key expires */
        log_warn("accepted notification not marked in Redis", "id=%s", a->id);
    finish(a, ACCEPT_QUEUED, 0, NULL, NULL);
}

static void enqueue(struct accept *a)
{
    char err[ERRBUF_LEN];
    struct note_msg m = {a->channel, a->to, a->from, a->title, a->body};
    cJSON *payload = note_job_payload(a->id, &m, a->idem, a->tracking_id, a->item);
    if (payload && a->send_at > 0)
        cJSON_AddNumberToObject(payload, "send_at", (double)a->send_at);
    if (payload && *a->callback) {
        cJSON_AddStringToObject(payload, "status_callback", a->callback);
        cJSON_AddStringToObject(payload, "webhook_key", a->webhook_key);
    }
    char *job = payload ? envelope_encode("notify.send", a->id, a->request_id, sb_now_ms(), payload,
                                          err, sizeof err)
                        : NULL;
    if (job == NULL) {
        release_key(a);
        finish(a, ACCEPT_REFUSED, 500, "internal", "cannot encode the job");
        return;
    }
    if (!http_enqueue(&a->eq, a->loop, &a->trace, "notify.requests", a->id, strlen(a->id), job, delivered, a, err,
                      sizeof err)) {
        log_warn("enqueue refused", "request_id=%s err=\"%s\"", a->request_id, err);
        release_key(a);
        finish(a, ACCEPT_REFUSED, 503, "queue_unavailable",
               "the job queue is full or unavailable; retry later");
    }
    free(job);
}

/* ---- 2. idempotency key --------------------------------------------------- */

static void on_claim(redisAsyncContext *ac, void *rep, void *priv)
{
    (void)ac;
    struct accept *a = priv;
    redisReply *r = rep;
    if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_error("idempotency script failed", "err=\"%s\"", r->str);
        finish(a, ACCEPT_REFUSED, 503, "cache_unavailable",
               "the idempotency store is unavailable; retry later");
        return;
    }
    if (strcmp(r->str, "NEW") == 0) {
        enqueue(a);
        return;
    }
    char state[16] = "", fp[NOTE_FP_LEN + 1] = "", holder[33] = "";
    if (sscanf(r->str, "%15[a-z]|%16[0-9a-f]|%32[0-9a-f]", state, fp, holder) != 3) {
        finish(a, ACCEPT_REFUSED, 409, "in_progress",
               "a request with idempotencyKey %s is being processed; retry shortly", a->idem);
        return;
    }
    if (strcmp(fp, a->fingerprint) != 0) {
        finish(a, ACCEPT_REFUSED, 422, "idempotency_mismatch",
               "idempotencyKey %s was used before with different content", a->idem);
    } else if (strcmp(state, "done") == 0) {
        snprintf(a->id, sizeof a->id, "%s", holder); /* the first request's notification */
        finish(a, ACCEPT_REPEAT, 0, NULL, NULL);
    } else {
        finish(a, ACCEPT_REFUSED, 409, "in_progress",
               "a request with idempotencyKey %s is being processed; retry shortly", a->idem);
    }
}

static void claim_key(struct accept *a)
{
    if (!*a->idem) {
        enqueue(a);
        return;
    }
    char key[IDEM_KEY_CAP], val[80], ttl[24];
    idem_key(a, key);
    idem_value(a, "pending", val, sizeof val);
    snprintf(ttl, sizeof ttl, "%lld", (long long)a->loop->d->cfg->idempotency_ttl_s);
    const char *argv[] = {"EVAL", claim_lua, "1", key, val, ttl};
    if (!redis_client_command_argv(a->loop->redis, on_claim, a, 6, argv, NULL))
        finish(a, ACCEPT_REFUSED, 503, "cache_unavailable",
               "the idempotency store is unavailable; retry later");
}

/* ---- 1b. suppression ------------------------------------------------------ */

/* The recipient's suppressions, asked of MySQL on a pool thread: nothing
 * goes to someone who opted out or whose address bounced (suppress.h). A
 * MySQL that cannot answer refuses the send (503) rather than risk it. */
struct supp_check {
    struct accept *a;
    bool found;
    struct suppression s;
    enum db_status st;
    char err[ERRBUF_LEN];
};

static void supp_expire(void *arg)
{
    struct supp_check *c = arg;
    c->st = DB_TRANSIENT;
    snprintf(c->err, sizeof c->err, "the database pool was busy past pool_wait_ms");
}

static void supp_work(void *ctx, void *arg)
{
    struct supp_check *c = arg;
    c->st = suppress_find(ctx, c->a->channel, c->a->to, c->a->from, &c->found, &c->s, c->err, sizeof c->err);
}

static void supp_done(void *arg)
{
    struct supp_check *c = arg;
    struct accept *a = c->a;
    if (c->st != DB_OK) {
        log_warn("suppression not checked", "err=\"%s\"", c->err);
        finish(a, ACCEPT_REFUSED, 503, "database_unavailable", "cannot check the suppression list now; retry later");
    } else if (c->found) {
        char t[32];
        note_iso_time(c->s.created_ms, t);
        finish(a, ACCEPT_REFUSED, 422, "suppressed", "%s %s is suppressed for %s (%s, since %s)", a->to_field,
               a->to, strcmp(c->s.scope, SUPPRESS_SCOPE_ALL) == 0 ? "every sender" : c->s.scope, c->s.reason, t);
    } else {
        claim_key(a);
    }
    free(c);
}

static void check_suppressed(struct accept *a)
{
    if (a->channel != CH_SMS && a->channel != CH_EMAIL) {
        claim_key(a);
        return;
    }
    struct supp_check *c = calloc(1, sizeof *c);
    if (c == NULL) {
        finish(a, ACCEPT_REFUSED, 503, "overloaded", "out of memory");
        return;
    }
    c->a = a;
    /* One tenant for every send's lookup: a burst of them (a large
     * send-many) waits its turn behind other requests' queries, bounded by
     * the pool's queue and pool_wait_ms like any of them. */
    const struct sb_config *cfg = a->loop->d->cfg;
    if (threadpool_submit_for(a->loop->d->dbpool, threadpool_tenant("suppression"), sb_mono_ms() + cfg->pool_wait_ms,
                              supp_work, supp_expire, supp_done, a->loop->q, c) != TP_OK) {
        free(c);
        finish(a, ACCEPT_REFUSED, 503, "overloaded", "the database pool is full; retry later");
    }
}

/* ---- 1. phone numbers ---------------------------------------------------- */

struct check {
    struct accept *a;
    const char *field;
    const char *phone;
};

static void checked(void *arg, bool ok, bool exists)
{
    struct check *c = arg;
    struct accept *a = c->a;
    if (!ok && !a->check_failed) {
        a->check_failed = true;
        a->unknown[0] = '\0';
    } else if (ok && !exists && !a->check_failed && !*a->unknown) {
        snprintf(a->unknown, sizeof a->unknown, "%s %s", c->field, c->phone);
    }
    free(c);
    if (--a->checks_left > 0)
        return;
    if (a->check_failed)
        finish(a, ACCEPT_REFUSED, 503, "database_unavailable",
               "cannot look the phone numbers up now; retry later");
    else if (*a->unknown)
        finish(a, ACCEPT_REFUSED, 404, "unknown_number", "%s is not an assigned phone number",
               a->unknown);
    else
        check_suppressed(a);
}

void accept_start(struct accept *a)
{
    if (!a->check_numbers) {
        check_suppressed(a);
        return;
    }
    const char *fields[2] = {a->from_field, a->to_field};
    const char *phones[2] = {a->from, a->to};
    a->checks_left = 2;
    for (int i = 0; i < 2; i++) {
        struct check *c = malloc(sizeof *c);
        if (c == NULL) {
            a->check_failed = true;
            if (--a->checks_left == 0)
                finish(a, ACCEPT_REFUSED, 503, "overloaded", "out of memory");
            continue;
        }
        *c = (struct check){a, fields[i], phones[i]};
        pb_lookup(a->loop, phones[i], checked, c);
    }
}

/* ---- POST /v1/messages ---------------------------------------------------- */

static const struct json_field create_fields[] = {
    {"channel", JSON_K_STRING, true, 1, 8},
    {"to", JSON_K_BYTES, true, 1, NOTE_TO_MAX},
    {"from", JSON_K_BYTES, false, 0, NOTE_TO_MAX},
    {"title", JSON_K_STRING, false, 0, NOTE_TITLE_MAX},
    {"payload", JSON_K_STRING, true, 0, NOTE_BODY_MAX},
    {"idempotencyKey", JSON_K_BYTES, false, 1, NOTE_IDEM_MAX},
    {"sendAt", JSON_K_STRING, false, 20, 40},
    {"statusCallback", JSON_K_BYTES, false, 8, NOTE_CALLBACK_MAX},
};

/* An http(s) URL with nothing in it that could split a request line. */
static bool callback_valid(const char *u)
{
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return false;
    for (const unsigned char *c = (const unsigned char *)u; *c; c++)
        if (*c <= ' ' || *c == 0x7f)
            return false;
    return u[strncmp(u, "https://", 8) == 0 ? 8 : 7] != '\0';
}

static void created(struct accept *a)
{
    struct http_pending *p = a->owner;
    if (a->outcome == ACCEPT_REFUSED) {
        http_pending_error(p, a->status, a->code, a->message);
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", a->id);
        cJSON_AddStringToObject(o, "status", a->send_at > 0 ? "scheduled" : "queued");
        if (a->send_at > 0) {
            char t[32];
            note_iso_time(a->send_at, t);
            cJSON_AddStringToObject(o, "sendAt", t);
        }
        if (a->channel == CH_SMS) { /* what the text costs, known at acceptance */
            cJSON_AddStringToObject(o, "encoding", segments_encoding(&a->segs));
            cJSON_AddNumberToObject(o, "segments", (double)a->segs.segments);
        }
        http_pending_reply(p, 202, o);
        cJSON_Delete(o);
    }
    accept_free(a);
}

void notify_create(struct http_ctx *ctx)
{
    char err[ERRBUF_LEN];
    cJSON *body = http_body_json(ctx, create_fields, SB_ARRAY_LEN(create_fields), false);
    if (body == NULL)
        return;
    struct note_msg m = {
        .to = json_str(body, "to", ""),
        .from = json_str(body, "from", ""),
        .title = json_str(body, "title", ""),
        .body = json_str(body, "payload", ""),
    };
    const char *send_at_text = json_str(body, "sendAt", NULL);
    int64_t send_at = 0, now = sb_now_ms(), max_ms = ctx->loop->d->cfg->notify_schedule_max_s * 1000;
    if (!note_channel_parse(json_str(body, "channel", ""), &m.channel)) {
        http_reply_error(ctx, 400, "invalid_field", "channel must be email, sms, push or kafka");
    } else if (json_str(body, "statusCallback", NULL) && !callback_valid(json_str(body, "statusCallback", ""))) {
        http_reply_error(ctx, 400, "invalid_field", "%s", "statusCallback must be an http:// or https:// URL");
    } else if (json_str(body, "statusCallback", NULL) && !*ctx->loop->d->cfg->webhook_signing_secret) {
        http_reply_error(ctx, 400, "invalid_field", "%s",
                         "statusCallback is not available here: webhook_signing_secret is not configured");
    } else if (send_at_text && (!note_parse_time(send_at_text, &send_at) || send_at <= now ||
                                send_at > now + max_ms)) {
        http_reply_error(ctx, 400, "invalid_field",
                         "sendAt must be an RFC 3339 time (2026-12-24T09:00:00Z) after now and at most %lld "
                         "seconds ahead (notify_schedule_max_s)",
                         (long long)ctx->loop->d->cfg->notify_schedule_max_s);
    } else if (!note_msg_check(&m, ctx->loop->d->cfg->notify_topics, err, sizeof err) ||
               !note_idem_check(json_str(body, "idempotencyKey", ""), "idempotencyKey", err, sizeof err)) {
        http_reply_error(ctx, 400, "invalid_field", "%s", err);
    } else {
        struct accept *a = accept_new(ctx->loop, ctx->request_id, &ctx->req->span.ctx, &m, json_str(body, "idempotencyKey", ""));
        struct http_pending *p = a ? http_pending_new(ctx) : NULL;
        if (a == NULL)
            http_reply_error(ctx, 503, "overloaded", "out of memory");
        if (p == NULL) {
            accept_free(a);
        } else {
            a->owner = p;
            a->done = created;
            a->send_at = send_at;
            snprintf(a->callback, sizeof a->callback, "%s", json_str(body, "statusCallback", ""));
            snprintf(a->webhook_key, sizeof a->webhook_key, "%s", ctx->principal);
            if (send_at > 0) { /* the same key with another time is another request */
                char mixed[64];
                snprintf(mixed, sizeof mixed, "%s@%lld", a->fingerprint, (long long)send_at);
                struct note_msg fm = {a->channel, mixed, "", "", ""};
                note_fingerprint(&fm, a->fingerprint);
            }
            accept_start(a);
        }
    }
    cJSON_Delete(body);
}

/* ---- GET /v1/messages/{id} ------------------------------------------------ */

struct get_req {
    struct http_pending *p;
    struct loop *loop;
    char id[NOTE_ID_MAX + 1];
    char idem[NOTE_IDEM_STORED_MAX + 1]; /* by idempotency key: the key, else "" */
    uint64_t tenant; /* of the pool queue */
    struct note note;
    cJSON *history; /* found: its history (notestore_history) */
    bool found, expired;
    enum db_status st;
    char err[ERRBUF_LEN];
};

static void get_free(struct get_req *g)
{
    if (g)
        cJSON_Delete(g->history);
    free(g);
}

static void get_expire(void *arg)
{
    struct get_req *g = arg;
    g->expired = true;
    g->st = DB_TRANSIENT;
}

static void get_work(void *ctx, void *arg)
{
    struct get_req *g = arg;
    g->st = *g->idem ? notestore_find_idem(ctx, g->idem, &g->note, &g->found, g->err, sizeof g->err)
                     : notestore_get(ctx, g->id, &g->note, &g->found, g->err, sizeof g->err);
    if (g->st == DB_OK && g->found && (g->history = cJSON_CreateArray()) != NULL)
        g->st = notestore_history(ctx, g->note.id, g->history, g->err, sizeof g->err);
}

static void on_accepted_marker(redisAsyncContext *ac, void *rep, void *priv)
{
    (void)ac;
    struct get_req *g = priv;
    redisReply *r = rep;
    if (r && r->type == REDIS_REPLY_STRING) {
        /* Accepted, not yet picked up by the notifier. */
        struct note n = {0};
        snprintf(n.id, sizeof n.id, "%s", g->id);
        n.status = NOTE_QUEUED;
        n.created_ms = n.updated_ms = strtoll(r->str, NULL, 10);
        cJSON *o = note_to_json(&n);
        cJSON_DeleteItemFromObject(o, "channel");
        cJSON_DeleteItemFromObject(o, "to");
        http_pending_reply(g->p, 200, o);
        cJSON_Delete(o);
    } else if (r == NULL) {
        http_pending_error(g->p, 503, "cache_unavailable", "cannot look the notification up now");
    } else {
        http_pending_errorf(g->p, 404, "not_found", "no notification %s", g->id);
    }
    get_free(g);
}

static void get_done(void *arg);

/* Not in the store by that key: an accepted request whose notification
 * the notifier had not recorded yet holds the key in Redis
 * ("done|<fingerprint>|<id>"); it is then looked up as GET by that id
 * would (the store again, which may have it by now or without its key,
 * then the accepted marker). "pending" is a request not yet
 * acknowledged: not found. */
static void on_idem_marker(redisAsyncContext *ac, void *rep, void *priv)
{
    (void)ac;
    struct get_req *g = priv;
    redisReply *r = rep;
    const char *id = r && r->type == REDIS_REPLY_STRING && strncmp(r->str, "done|", 5) == 0
                         ? strchr(r->str + 5, '|') : NULL;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        http_pending_error(g->p, 503, "cache_unavailable", "cannot look the notification up now");
    } else if (id == NULL || !notify_id_valid(id + 1)) {
        http_pending_errorf(g->p, 404, "not_found", "no notification has idempotencyKey %s", g->idem);
    } else {
        snprintf(g->id, sizeof g->id, "%s", id + 1);
        g->idem[0] = '\0';
        g->found = false;
        if (!http_pool_submit(g->p, g->loop->d->notepool, g->tenant, get_work, get_expire, get_done, g))
            get_free(g); /* answered 503 */
        return;
    }
    get_free(g);
}

static void get_done(void *arg)
{
    struct get_req *g = arg;
    if (notify_store_failed(g->p, g->expired, g->st, g->err)) {
        get_free(g);
    } else if (g->found) {
        cJSON *o = note_to_json(&g->note);
        cJSON *e;
        cJSON_ArrayForEach(e, g->history) { /* its times as the record's */
            char t[32];
            note_iso_time((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "at")), t);
            cJSON_ReplaceItemInObject(e, "at", cJSON_CreateString(t));
        }
        if (o && g->history) {
            cJSON_AddItemToObject(o, "history", g->history);
            g->history = NULL;
        }
        http_pending_reply(g->p, 200, o);
        cJSON_Delete(o);
        get_free(g);
    } else if (*g->idem) {
        if (!redis_client_command(g->loop->redis, on_idem_marker, g, "GET " IDEM_PREFIX "%s", g->idem))
            on_idem_marker(NULL, NULL, g);
    } else if (!redis_client_command(g->loop->redis, on_accepted_marker, g, "GET " NOTE_PREFIX "%s",
                                     g->id)) {
        on_accepted_marker(NULL, NULL, g);
    }
}

bool notify_store_failed(struct http_pending *p, bool expired, enum db_status st, const char *err)
{
    if (expired) {
        http_pending_busy(p);
    } else if (st != DB_OK) {
        log_warn("notification store unavailable", "err=\"%s\"", err);
        http_pending_error(p, 503, "store_unavailable", "the notification store is unavailable; retry later");
    }
    return expired || st != DB_OK;
}

bool notify_id_valid(const char *id)
{
    return sb_token_valid(id, 8, NOTE_ID_MAX);
}

/* GET /v1/messages/{id} (idem NULL) and GET /v1/messages?idempotencyKey=. */
static void get_start(struct http_ctx *ctx, const char *id, const char *idem)
{
    struct get_req *g = calloc(1, sizeof *g);
    if (g == NULL || (g->p = http_pending_new(ctx)) == NULL) {
        if (g == NULL)
            http_reply_error(ctx, 503, "overloaded", "out of memory");
        get_free(g);
        return;
    }
    g->loop = ctx->loop;
    g->tenant = threadpool_tenant(ctx->principal);
    snprintf(g->id, sizeof g->id, "%s", id ? id : "");
    snprintf(g->idem, sizeof g->idem, "%s", idem ? idem : "");
    if (!http_pool_submit(g->p, ctx->loop->d->notepool, g->tenant, get_work, get_expire, get_done, g))
        get_free(g);
}

void notify_get(struct http_ctx *ctx)
{
    if (!notify_id_valid(ctx->params[0])) {
        http_reply_error(ctx, 400, "invalid_id", "a notification id is 8 to 64 characters [A-Za-z0-9_-]");
        return;
    }
    get_start(ctx, ctx->params[0], NULL);
}

void notify_find(struct http_ctx *ctx)
{
    char key[NOTE_IDEM_STORED_MAX + 1];
    bool ok = http_query_param(ctx, "idempotencyKey", key, sizeof key) && *key && json_utf8_valid(key, strlen(key));
    for (const unsigned char *c = (const unsigned char *)key; ok && *c; c++)
        ok = *c >= 0x20 && *c != 0x7f;
    if (!ok) {
        http_reply_error(ctx, 400, "invalid_parameter", "%s",
                         "idempotencyKey is required: 1 to 136 bytes of UTF-8, no control characters (a "
                         "send-many part's key is <key>#<part>)");
        return;
    }
    get_start(ctx, NULL, key);
}

/* ---- POST /v1/messages/{id}/cancel ------------------------------------------ */

struct cancel_req {
    struct http_pending *p;
    char id[NOTE_ID_MAX + 1];
    struct note note;
    bool found, applied, expired;
    enum db_status st;
    char err[ERRBUF_LEN];
};

static void cancel_expire(void *arg)
{
    ((struct cancel_req *)arg)->expired = true;
}

/* The store cancels only a scheduled one (note_status_may_move): once it
 * has gone to the queue, it is too late. */
static void cancel_work(void *ctx, void *arg)
{
    struct cancel_req *r = arg;
    r->st = notestore_get(ctx, r->id, &r->note, &r->found, r->err, sizeof r->err);
    if (r->st != DB_OK || !r->found || r->note.status != NOTE_SCHEDULED)
        return;
    struct note n = r->note;
    n.status = NOTE_CANCELLED;
    n.attempts = -1;
    n.updated_ms = sb_now_ms();
    r->st = notestore_update(ctx, &n, &r->applied, r->err, sizeof r->err);
    if (r->st == DB_OK && r->applied)
        r->note = n;
    else if (r->st == DB_OK) /* it went meanwhile: say as what */
        r->st = notestore_get(ctx, r->id, &r->note, &r->found, r->err, sizeof r->err);
}

static void cancel_done(void *arg)
{
    struct cancel_req *r = arg;
    if (notify_store_failed(r->p, r->expired, r->st, r->err)) {
        /* answered */
    } else if (!r->found) {
        /* Accepted a moment ago, perhaps, and not recorded yet. */
        http_req_add_header(r->p->req, "Retry-After", "1");
        http_pending_errorf(r->p, 404, "not_found", "no notification %s (one accepted just now is recorded "
                            "within moments)", r->id);
    } else if (!r->applied) {
        http_pending_errorf(r->p, 409, "not_cancellable", "notification %s is %s: only a scheduled one can be "
                            "cancelled, before it goes", r->id, note_status_name(r->note.status));
    } else {
        log_info("notification cancelled", "id=%s", r->id);
        cJSON *o = note_to_json(&r->note);
        http_pending_reply(r->p, 200, o);
        cJSON_Delete(o);
    }
    free(r);
}

void notify_cancel(struct http_ctx *ctx)
{
    if (!notify_id_valid(ctx->params[0])) {
        http_reply_error(ctx, 400, "invalid_id", "a notification id is 8 to 64 characters [A-Za-z0-9_-]");
        return;
    }
    struct cancel_req *r = calloc(1, sizeof *r);
    if (r == NULL || (r->p = http_pending_new(ctx)) == NULL) {
        if (r == NULL)
            http_reply_error(ctx, 503, "overloaded", "out of memory");
        free(r);
        return;
    }
    snprintf(r->id, sizeof r->id, "%.64s", ctx->params[0]); /* checked: at most 64 */
    if (!http_pool_submit(r->p, ctx->loop->d->notepool, threadpool_tenant(ctx->principal), cancel_work,
                          cancel_expire, cancel_done, r))
        free(r);
}

/* ---- GET /v1/webhooks/secret ---------------------------------------------------- */

void notify_webhook_secret(struct http_ctx *ctx)
{
    const struct sb_config *cfg = ctx->loop->d->cfg;
    char secret[WEBHOOK_SECRET_LEN + 1];
    if (!*cfg->webhook_signing_secret) {
        http_reply_error(ctx, 404, "not_found", "%s", "webhooks are not configured (webhook_signing_secret)");
        return;
    }
    if (!webhook_key_secret(cfg->webhook_signing_secret, ctx->principal, secret)) {
        http_reply_error(ctx, 503, "overloaded", "%s", "cannot derive the secret now");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "secret", secret);
    cJSON_AddStringToObject(o, "header", "X-Switchboard-Signature");
    cJSON_AddStringToObject(o, "scheme", "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" with secret>");
    http_reply_json(ctx, 200, o);
    cJSON_Delete(o);
}
