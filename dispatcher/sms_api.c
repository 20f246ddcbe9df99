/* sms_api.c - POST /sms/send/one, POST /sms/send/many, GET /sms/requests/{id}.
 *
 * An SMS is an sms-channel notification whose two numbers must be assigned
 * (the phonebook's find path) and whose idempotencyKey is required. send/one
 * answers {"sent":true} once the job is in Kafka, and the same for a repeat
 * of the key with the same content. send/many accepts each item the same
 * way, records the request (its item count and the items refused up
 * front) under a tracking id, and answers with both; GET
 * /sms/requests/{trackingId} then reports how its items are doing. */
#include "sms_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpconn.h"
#include "log.h"
#include "notestore.h"
#include "notify_api.h"
#include "phone.h"
#include "threadpool.h"


static const struct json_field wrapper_fields[] = {
    {"sms", JSON_K_OBJECT, true, 0, 0},
};

static const struct json_field sms_fields[] = {
    {"idempotencyKey", JSON_K_BYTES, true, 1, NOTE_IDEM_MAX},
    {"fromPhoneNumber", JSON_K_STRING, true, 1, PHONE_MAX},
    {"toPhoneNumber", JSON_K_STRING, true, 1, PHONE_MAX},
    {"content", JSON_K_STRING, true, 1, SMS_CONTENT_MAX},
};

/* Checks the object inside {"sms": ...} and makes its accept; NULL and
 * errbuf (a 400's message) if it is refused, or *oom on a memory failure.
 * The wrapper was checked by the caller. */
static struct accept *sms_item(struct loop *l, const char *request_id, const struct trace_ctx *trace, const cJSON *sms,
                               bool *oom, char *errbuf, size_t errlen)
{
    *oom = false;
    if (!json_check_object(sms, sms_fields, SB_ARRAY_LEN(sms_fields), errbuf, errlen))
        return NULL;
    struct note_msg m = {
        .channel = CH_SMS,
        .to = json_str(sms, "toPhoneNumber", ""),
        .from = json_str(sms, "fromPhoneNumber", ""),
        .title = "",
        .body = json_str(sms, "content", ""),
    };
    if (!note_idem_check(json_str(sms, "idempotencyKey", ""), "idempotencyKey", errbuf, errlen))
        return NULL;
    if (!phone_valid(m.from)) {
        sb_errf(errbuf, errlen, "fromPhoneNumber must be E.164, like +14155550123");
        return NULL;
    }
    if (!phone_valid(m.to)) {
        sb_errf(errbuf, errlen, "toPhoneNumber must be E.164, like +14155550123");
        return NULL;
    }
    struct accept *a = accept_new(l, request_id, trace, &m, json_str(sms, "idempotencyKey", ""));
    if (a == NULL) {
        *oom = true;
        sb_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    a->check_numbers = true;
    a->from_field = "fromPhoneNumber";
    a->to_field = "toPhoneNumber";
    return a;
}

/* ---- send/one ------------------------------------------------------------- */

static void sent_one(struct accept *a)
{
    struct http_pending *p = a->owner;
    if (a->outcome == ACCEPT_REFUSED) {
        if (a->status == 409)
            http_req_add_header(p->req, "Retry-After", "1");
        http_pending_error(p, a->status, a->code, a->message);
    } else {
        /* The body stays the seed's {"sent": true}; what the text costs
         * goes in headers. */
        char segs[24];
        snprintf(segs, sizeof segs, "%lld", (long long)a->segs.segments);
        http_req_add_header(p->req, "X-SMS-Encoding", segments_encoding(&a->segs));
        http_req_add_header(p->req, "X-SMS-Segments", segs);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "sent", true);
        http_pending_reply(p, 200, o);
        cJSON_Delete(o);
    }
    accept_free(a);
}

void sms_send_one(struct http_ctx *ctx)
{
    char err[ERRBUF_LEN];
    bool oom;
    cJSON *body = http_body_json(ctx, wrapper_fields, SB_ARRAY_LEN(wrapper_fields), false);
    if (body == NULL)
        return;
    struct accept *a = sms_item(ctx->loop, ctx->request_id, &ctx->req->span.ctx, cJSON_GetObjectItemCaseSensitive(body, "sms"),
                                &oom, err, sizeof err);
    cJSON_Delete(body);
    if (a == NULL) {
        http_reply_error(ctx, oom ? 503 : 400, oom ? "overloaded" : "invalid_field", "%s", err);
        return;
    }
    if ((a->owner = http_pending_new(ctx)) == NULL) {
        accept_free(a);
        return;
    }
    a->done = sent_one;
    accept_start(a);
}

/* ---- send/many ------------------------------------------------------------ */

struct batch {
    struct http_pending *p;
    struct loop *loop;
    char tracking_id[33];
    int64_t total;
    size_t pending; /* accepts not finished, +1 while they are being started */
    cJSON *errors;  /* [{"index","reason"}] */
    struct segments *segs; /* per item; segments 0 = not accepted */
    enum db_status st;
    char err[ERRBUF_LEN];
};

static void batch_free(struct batch *b)
{
    if (b == NULL)
        return;
    cJSON_Delete(b->errors);
    free(b->segs);
    free(b);
}

static void batch_error(struct batch *b, int64_t index, const char *reason)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "index", (double)index);
    cJSON_AddStringToObject(e, "reason", reason);
    cJSON_AddItemToArray(b->errors, e);
}

static void track_work(void *ctx, void *arg)
{
    struct batch *b = arg;
    b->st = notestore_track_put(ctx, b->tracking_id, b->total, b->errors, sb_now_ms(), b->err,
                                sizeof b->err);
}

static void track_done(void *arg)
{
    struct batch *b = arg;
    if (b->st != DB_OK) {
        log_warn("send-many not recorded", "tracking_id=%s err=\"%s\"", b->tracking_id, b->err);
        http_pending_error(b->p, 503, "store_unavailable",
                           "the items were accepted but the request could not be recorded; send it "
                           "again (the idempotency keys keep items from going out twice)");
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "trackingId", b->tracking_id);
        cJSON_AddItemReferenceToObject(o, "errors", b->errors);
        /* What the accepted items cost, each and in all (a repeat of an
         * accepted one counts: it is the same message). */
        cJSON *items = cJSON_AddArrayToObject(o, "items");
        int64_t total = 0;
        for (int64_t i = 0; i < b->total && items; i++) {
            if (b->segs[i].segments == 0)
                continue;
            cJSON *it = cJSON_CreateObject();
            cJSON_AddNumberToObject(it, "index", (double)i);
            cJSON_AddStringToObject(it, "encoding", segments_encoding(&b->segs[i]));
            cJSON_AddNumberToObject(it, "segments", (double)b->segs[i].segments);
            cJSON_AddItemToArray(items, it);
            total += b->segs[i].segments;
        }
        cJSON_AddNumberToObject(o, "segments", (double)total);
        http_pending_reply(b->p, 202, o);
        cJSON_Delete(o);
    }
    batch_free(b);
}

static void batch_release(struct batch *b)
{
    if (--b->pending > 0)
        return;
    if (!threadpool_submit(b->loop->d->notepool, track_work, track_done, b->loop->q, b)) {
        b->st = DB_TRANSIENT;
        snprintf(b->err, sizeof b->err, "cannot queue the store request");
        track_done(b);
    }
}

static void item_done(struct accept *a)
{
    struct batch *b = a->owner;
    char reason[400];
    if (a->outcome != ACCEPT_REFUSED)
        b->segs[a->item] = a->segs;
    if (a->outcome == ACCEPT_REFUSED) {
        batch_error(b, a->item, a->message);
    } else if (a->outcome == ACCEPT_REPEAT) {
        snprintf(reason, sizeof reason, "not sent again: idempotencyKey %s was accepted before as %s",
                 a->idem, a->id);
        batch_error(b, a->item, reason);
    }
    accept_free(a);
    batch_release(b);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The items: a JSON array, or JSON documents one after another separated
 * by any whitespace (NDJSON is the case of one per line; the phonebook
 * seed puts two on one line). A document that does not parse is kept as a
 * string naming its line, so that its item's index reports it, and the
 * parse goes on at the next line. */
static cJSON *parse_items(const char *data, size_t len, char *errbuf, size_t errlen)
{
    size_t i = 0, line = 1;
    while (i < len && is_ws(data[i]))
        line += data[i++] == '\n';
    if (i < len && data[i] == '[') {
        cJSON *arr = json_parse_strict(data, len, errbuf, errlen);
        if (arr && !cJSON_IsArray(arr)) {
            cJSON_Delete(arr);
            sb_errf(errbuf, errlen, "expected a JSON array, or JSON objects separated by whitespace");
            return NULL;
        }
        return arr;
    }
    /* The checks json_parse_strict makes, once for the whole body. */
    if (!json_utf8_valid(data, len)) {
        sb_errf(errbuf, errlen, "body is not valid UTF-8");
        return NULL;
    }
    if (memchr(data, '\0', len) != NULL) {
        sb_errf(errbuf, errlen, "NUL byte in body");
        return NULL;
    }
    cJSON *arr = cJSON_CreateArray();
    while (arr && i < len) {
        const char *end = NULL;
        cJSON *item = json_parse_strict_prefix(data + i, len - i, &end);
        if (item == NULL) {
            char msg[96];
            snprintf(msg, sizeof msg, "line %zu: malformed JSON", line);
            item = cJSON_CreateRaw(msg); /* no parsed item is raw */
            const char *nl = memchr(data + i, '\n', len - i);
            end = nl ? nl : data + len;
        }
        if (item && !cJSON_IsObject(item) && !cJSON_IsRaw(item)) {
            /* JSON, but not an SMS: the body is not what this route takes. */
            int nth = cJSON_GetArraySize(arr) + 1;
            cJSON_Delete(item);
            cJSON_Delete(arr);
            sb_errf(errbuf, errlen, "document %d is not a JSON object: send a JSON array, or JSON objects "
                    "separated by whitespace", nth);
            return NULL;
        }
        if (item == NULL || !cJSON_AddItemToArray(arr, item)) {
            cJSON_Delete(item);
            cJSON_Delete(arr);
            arr = NULL;
            break;
        }
        for (const char *q = data + i; q < end; q++)
            line += *q == '\n';
        i = (size_t)(end - data);
        while (i < len && is_ws(data[i]))
            line += data[i++] == '\n';
    }
    if (arr == NULL)
        sb_errf(errbuf, errlen, "out of memory");
    return arr;
}

static int cmp_by_key(const void *x, const void *y)
{
    const struct accept *a = *(struct accept *const *)x, *b = *(struct accept *const *)y;
    int c = strcmp(a->idem, b->idem);
    return c ? c : (a->item > b->item) - (a->item < b->item);
}

/* Items of one request that share an idempotency key are the parts of one
 * message (a long SMS cut into pieces, as the phonebook seed sends it):
 * part k is stored under "<key>#<k>", in the order of the items, so each
 * part goes out once and the same request sent again sends none twice.
 * Clients cannot write '#' in a key, so a part never meets a client's key.
 * false when out of memory. */
static bool number_parts(struct accept **acc, int64_t n)
{
    struct accept **by = malloc((size_t)n * sizeof *by);
    if (by == NULL)
        return false;
    size_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (acc[i] != NULL)
            by[m++] = acc[i];
    qsort(by, m, sizeof *by, cmp_by_key);
    for (size_t i = 0, j; i < m; i = j) {
        for (j = i + 1; j < m && strcmp(by[j]->idem, by[i]->idem) == 0;)
            j++;
        if (j - i < 2)
            continue;
        char key[NOTE_IDEM_STORED_MAX + 1]; /* a client's key: at most NOTE_IDEM_MAX */
        memcpy(key, by[i]->idem, sizeof key);
        for (size_t k = i; k < j; k++)
            note_idem_part(key, (int64_t)(k - i + 1), by[k]->idem);
    }
    free(by);
    return true;
}

void sms_send_many(struct http_ctx *ctx)
{
    char err[ERRBUF_LEN];
    size_t len;
    const char *data = http_body_raw(ctx, &len, "application/x-ndjson");
    if (data == NULL)
        return;
    cJSON *items = parse_items(data, len, err, sizeof err);
    if (items == NULL) {
        http_reply_error(ctx, 400, "bad_json", "%s", err);
        return;
    }
    int64_t n = cJSON_GetArraySize(items);
    if (n == 0 || n > ctx->loop->d->cfg->sms_many_max) {
        http_reply_error(ctx, 400, "invalid_field", "send between 1 and %lld SMS in one request (got %lld)",
                         (long long)ctx->loop->d->cfg->sms_many_max, (long long)n);
        cJSON_Delete(items);
        return;
    }
    struct batch *b = calloc(1, sizeof *b);
    struct accept **acc = calloc((size_t)n, sizeof *acc);
    bool ready = b && acc && (b->segs = calloc((size_t)n, sizeof *b->segs)) != NULL &&
                 (b->errors = cJSON_CreateArray()) != NULL && sb_random_id(b->tracking_id);
    if (!ready)
        http_reply_error(ctx, 503, "overloaded", "out of memory");
    if (!ready || (b->p = http_pending_new(ctx)) == NULL) { /* http_pending_new answered */
        batch_free(b);
        free(acc);
        cJSON_Delete(items);
        return;
    }
    b->loop = ctx->loop;
    b->total = n;
    int64_t i = 0, valid = 0;
    char first_err[ERRBUF_LEN] = "";
    const cJSON *item;
    cJSON_ArrayForEach(item, items)
    {
        bool oom = false;
        if (cJSON_IsRaw(item)) /* a document that did not parse */
            snprintf(err, sizeof err, "%s", item->valuestring);
        else if (json_check_object(item, wrapper_fields, SB_ARRAY_LEN(wrapper_fields), err, sizeof err))
            acc[i] = sms_item(ctx->loop, ctx->request_id, &ctx->req->span.ctx, cJSON_GetObjectItemCaseSensitive(item, "sms"),
                              &oom, err, sizeof err);
        if (acc[i] == NULL)
            batch_error(b, i, err);
        else
            acc[i]->item = i;
        if (acc[i] == NULL && i == 0)
            snprintf(first_err, sizeof first_err, "%s", err);
        valid += acc[i] != NULL;
        i++;
    }
    cJSON_Delete(items);
    if (valid == 0) { /* nothing in it is an SMS: the request is bad, not its items */
        http_pending_errorf(b->p, 400, "invalid_field", "no item is a valid SMS (item 0: %s)", first_err);
        batch_free(b);
        free(acc);
        return;
    }
    if (!number_parts(acc, n)) {
        for (i = 0; i < n; i++)
            accept_free(acc[i]);
        free(acc);
        http_pending_error(b->p, 503, "overloaded", "out of memory");
        batch_free(b);
        return;
    }
    /* Counted before any starts: an item may finish inside accept_start. */
    b->pending = 1;
    for (i = 0; i < n; i++)
        b->pending += acc[i] != NULL;
    for (i = 0; i < n; i++) {
        if (acc[i] == NULL)
            continue;
        snprintf(acc[i]->tracking_id, sizeof acc[i]->tracking_id, "%s", b->tracking_id);
        acc[i]->item = i;
        acc[i]->owner = b;
        acc[i]->done = item_done;
        accept_start(acc[i]);
    }
    free(acc);
    batch_release(b);
}

/* ---- GET /sms/requests/{trackingId} -------------------------------------- */

struct track_req {
    struct http_pending *p;
    char id[NOTE_ID_MAX + 1];
    struct note_tracking t;
    bool found, expired;
    enum db_status st;
    char err[ERRBUF_LEN];
};

static void track_get_expire(void *arg)
{
    struct track_req *r = arg;
    r->expired = true;
    r->st = DB_TRANSIENT;
}

static void track_get_work(void *ctx, void *arg)
{
    struct track_req *r = arg;
    r->st = notestore_track_get(ctx, r->id, &r->t, &r->found, r->err, sizeof r->err);
}

static void track_get_done(void *arg)
{
    struct track_req *r = arg;
    if (notify_store_failed(r->p, r->expired, r->st, r->err)) {
        /* answered */
    } else if (!r->found) {
        http_pending_errorf(r->p, 404, "not_found", "no SMS request %s", r->id);
    } else {
        /* Sent: the provider took it (what its callbacks said since does
         * not make it less sent); failed: refused up front, given up, or
         * cancelled. */
        int64_t sent = r->t.counts[NOTE_SENT] + r->t.counts[NOTE_DELIVERED] + r->t.counts[NOTE_UNDELIVERED] +
                       r->t.counts[NOTE_FAILED];
        int64_t failed = r->t.rejected + r->t.counts[NOTE_DEAD] + r->t.counts[NOTE_CANCELLED];
        int64_t pending = r->t.total - sent - failed;
        char t[32];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "trackingId", r->id);
        cJSON_AddStringToObject(o, "status", pending > 0 ? "IN_PROGRESS" : "DONE");
        cJSON_AddNumberToObject(o, "total", (double)r->t.total);
        cJSON_AddNumberToObject(o, "sent", (double)sent);
        cJSON_AddNumberToObject(o, "failed", (double)failed);
        cJSON_AddNumberToObject(o, "pending", (double)(pending > 0 ? pending : 0));
        cJSON_AddItemToObject(o, "errors", r->t.errors);
        r->t.errors = NULL;
        note_iso_time(r->t.created_ms, t);
        cJSON_AddStringToObject(o, "createdAt", t);
        http_pending_reply(r->p, 200, o);
        cJSON_Delete(o);
    }
    cJSON_Delete(r->t.errors);
    free(r);
}

void sms_request_get(struct http_ctx *ctx)
{
    if (!notify_id_valid(ctx->params[0])) {
        http_reply_error(ctx, 400, "invalid_id", "a tracking id is 8 to 64 characters [A-Za-z0-9_-]");
        return;
    }
    struct track_req *r = calloc(1, sizeof *r);
    if (r == NULL || (r->p = http_pending_new(ctx)) == NULL) {
        if (r == NULL)
            http_reply_error(ctx, 503, "overloaded", "out of memory");
        free(r);
        return;
    }
    snprintf(r->id, sizeof r->id, "%.64s", ctx->params[0]);
    if (!http_pool_submit(r->p, ctx->loop->d->notepool, threadpool_tenant(ctx->principal), track_get_work,
                          track_get_expire, track_get_done, r))
        free(r);
}
