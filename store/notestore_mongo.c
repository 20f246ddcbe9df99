/* notestore_mongo.c - the notification store in MongoDB (mongo-c-driver).
 *
 * Collections and indexes are in schema/mongo/indexes.json; they are made
 * (createIndexes, idempotent) on the first claim of each connection, so a
 * fresh database works. ensure_indexes() spells the same specs in BSON;
 * the contract test (test_indexes_as_declared) fails if the two differ.
 * The unique index on idempotency_key is partial ($exists), because most
 * notifications have no key (on a server without partial indexes,
 * FerretDB, a plain unique one: see ensure_indexes). A duplicate key is the server's error 11000,
 * which claim turns into "already recorded". */
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notestore.h"

#define MONGO_DUPLICATE_KEY 11000
#define MONGO_NOT_IMPLEMENTED 238 /* a command option the server lacks */
#define MONGO_DEFAULT_DB "switchboard"

struct gstore {
    struct notestore base;
    mongoc_client_t *client;
    mongoc_collection_t *notes, *requests;
    bool indexed;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void mongo_init(void)
{
    mongoc_init();
}

/* The server is away or the connection broke: worth retrying later. */
static enum db_status classify(const bson_error_t *e, char *errbuf, size_t errlen)
{
    sb_errf(errbuf, errlen, "mongodb: %s", e->message);
    if (e->domain == MONGOC_ERROR_STREAM || e->domain == MONGOC_ERROR_SERVER_SELECTION ||
        e->domain == MONGOC_ERROR_CLIENT || e->domain == MONGOC_ERROR_PROTOCOL)
        return DB_TRANSIENT;
    return DB_FATAL;
}

/* createIndexes for one index of the notifications (spec, which this
 * frees). One per command:
 * FerretDB 1.24 fails (the connection drops) when a command lists two
 * indexes that both exist already. */
static bool create_index(struct gstore *g, bson_t *spec, bson_error_t *e)
{
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8("notifications"), "indexes", "[", BCON_DOCUMENT(spec), "]");
    bson_t reply;
    bool ok = mongoc_collection_command_simple(g->notes, cmd, NULL, &reply, e);
    bson_destroy(cmd);
    bson_destroy(&reply);
    bson_destroy(spec);
    return ok;
}

/* The unique index on the key. partial: it covers only the documents that
 * have a key. */
static bson_t *key_index(bool partial)
{
    bson_t *spec = BCON_NEW("name", BCON_UTF8("uk_idempotency_key"), "key", "{", "idempotency_key",
                            BCON_INT32(1), "}", "unique", BCON_BOOL(true));
    if (partial)
        BCON_APPEND(spec, "partialFilterExpression", "{", "idempotency_key", "{", "$exists", BCON_BOOL(true),
                    "}", "}");
    return spec;
}

static enum db_status ensure_indexes(struct gstore *g, char *errbuf, size_t errlen)
{
    if (g->indexed)
        return DB_OK;
    bson_error_t e;
    bool ok = create_index(g, key_index(true), &e);
    if (!ok && e.code == MONGO_NOT_IMPLEMENTED) {
        /* FerretDB (1.x) has no partial indexes. There a document without
         * the field is NULL to its SQL backend's unique index, and NULLs
         * never collide: a plain unique index does what the partial one
         * does here (test_no_key_no_collision holds it on every server). */
        ok = create_index(g, key_index(false), &e);
    }
    ok = ok && create_index(g, BCON_NEW("name", BCON_UTF8("ix_tracking"), "key", "{", "tracking_id",
                                        BCON_INT32(1), "status", BCON_INT32(1), "}"), &e);
    /* The scheduler's: the scheduled sends whose time has come. */
    ok = ok && create_index(g, BCON_NEW("name", BCON_UTF8("ix_due"), "key", "{", "status", BCON_INT32(1),
                                        "send_at_ms", BCON_INT32(1), "}"), &e);
    /* The webhook thread's: the messages whose webhook has events due. */
    ok = ok && create_index(g, BCON_NEW("name", BCON_UTF8("ix_webhook"), "key", "{", "webhook_next_ms",
                                        BCON_INT32(1), "}"), &e);
    /* "failed" meant "waiting for a retry" before the status machine (now
     * "retrying"); those records have no history. MySQL's migration 009
     * does the same. */
    bson_t *old = BCON_NEW("status", BCON_UTF8("failed"), "history", "{", "$exists", BCON_BOOL(false), "}");
    bson_t *set = BCON_NEW("$set", "{", "status", BCON_UTF8("retrying"), "}");
    ok = ok && mongoc_collection_update_many(g->notes, old, set, NULL, NULL, &e);
    bson_destroy(old);
    bson_destroy(set);
    if (!ok)
        return classify(&e, errbuf, errlen);
    g->indexed = true;
    return DB_OK;
}

static void iter_str(const bson_t *doc, const char *key, char *out, size_t cap)
{
    bson_iter_t it;
    *out = '\0';
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(out, cap, "%s", bson_iter_utf8(&it, NULL));
}

static int64_t iter_i64(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return 0;
}

static void note_from_doc(const bson_t *doc, struct note *n)
{
    char buf[16];
    memset(n, 0, sizeof *n);
    iter_str(doc, "_id", n->id, sizeof n->id);
    iter_str(doc, "channel", buf, sizeof buf);
    if (!note_channel_parse(buf, &n->channel))
        n->channel = CH_SMS;
    iter_str(doc, "recipient", n->to, sizeof n->to);
    iter_str(doc, "idempotency_key", n->idem, sizeof n->idem);
    iter_str(doc, "fingerprint", n->fingerprint, sizeof n->fingerprint);
    iter_str(doc, "tracking_id", n->tracking_id, sizeof n->tracking_id);
    n->item = iter_i64(doc, "item");
    iter_str(doc, "status", buf, sizeof buf);
    if (!note_status_parse(buf, &n->status))
        n->status = NOTE_QUEUED;
    n->attempts = iter_i64(doc, "attempts");
    iter_str(doc, "last_error", n->last_error, sizeof n->last_error);
    n->created_ms = iter_i64(doc, "created_ms");
    n->updated_ms = iter_i64(doc, "updated_ms");
    iter_str(doc, "redrive_of", n->redrive_of, sizeof n->redrive_of);
    iter_str(doc, "provider_id", n->provider_id, sizeof n->provider_id);
    iter_str(doc, "callback_url", n->callback_url, sizeof n->callback_url);
    iter_str(doc, "webhook_key", n->webhook_key, sizeof n->webhook_key);
    n->webhook_sent = iter_i64(doc, "webhook_sent");
    n->webhook_attempts = iter_i64(doc, "webhook_attempts");
}

/* How a cursor's reads went, and the cursor gone. */
static enum db_status cursor_end(mongoc_cursor_t *c, char *errbuf, size_t errlen)
{
    bson_error_t e;
    enum db_status st = mongoc_cursor_error(c, &e) ? classify(&e, errbuf, errlen) : DB_OK;
    mongoc_cursor_destroy(c);
    return st;
}

/* The first document filter matches in coll, into n. */
static enum db_status find_one(mongoc_collection_t *coll, const bson_t *filter, struct note *n,
                               bson_t **copy, bool *found, char *errbuf, size_t errlen)
{
    const bson_t *doc;
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    *found = mongoc_cursor_next(c, &doc);
    if (*found && n)
        note_from_doc(doc, n);
    if (*found && copy)
        *copy = bson_copy(doc);
    enum db_status st = cursor_end(c, errbuf, errlen);
    bson_destroy(opts);
    return st;
}

/* A history entry: {status, at_ms, detail}. */
static void append_event(bson_t *e, const struct note *n, int64_t at_ms)
{
    BSON_APPEND_UTF8(e, "status", note_status_name(n->status));
    BSON_APPEND_INT64(e, "at_ms", at_ms);
    BSON_APPEND_UTF8(e, "detail", note_event_detail(n));
}

static enum db_status g_claim(struct notestore *s, const struct note *n, bool *created,
                              struct note *existing, char *errbuf, size_t errlen)
{
    struct gstore *g = (struct gstore *)s;
    enum db_status st = ensure_indexes(g, errbuf, errlen);
    if (st != DB_OK)
        return st;
    bson_t *doc = BCON_NEW("_id", BCON_UTF8(n->id), "channel", BCON_UTF8(note_channel_name(n->channel)),
                           "recipient", BCON_UTF8(n->to), "fingerprint", BCON_UTF8(n->fingerprint),
                           "status", BCON_UTF8(note_status_name(n->status)), "attempts",
                           BCON_INT64(n->attempts), "last_error", BCON_UTF8(n->last_error),
                           "created_ms", BCON_INT64(n->created_ms), "updated_ms",
                           BCON_INT64(n->updated_ms));
    if (*n->idem)
        BSON_APPEND_UTF8(doc, "idempotency_key", n->idem);
    if (*n->tracking_id) {
        BSON_APPEND_UTF8(doc, "tracking_id", n->tracking_id);
        BSON_APPEND_INT64(doc, "item", n->item);
    }
    if (*n->callback_url) { /* its own webhook: the first event goes out at once */
        BSON_APPEND_UTF8(doc, "callback_url", n->callback_url);
        BSON_APPEND_UTF8(doc, "webhook_key", n->webhook_key);
        BSON_APPEND_INT64(doc, "webhook_next_ms", n->created_ms);
    }
    if (n->send_at_ms > 0) { /* a scheduled send, and the job to produce then */
        BSON_APPEND_INT64(doc, "send_at_ms", n->send_at_ms);
        BSON_APPEND_UTF8(doc, "job", n->job ? n->job : "");
    }
    /* The history starts with it. */
    bson_t history, first;
    BSON_APPEND_ARRAY_BEGIN(doc, "history", &history);
    BSON_APPEND_DOCUMENT_BEGIN(&history, "0", &first);
    append_event(&first, n, n->created_ms);
    bson_append_document_end(&history, &first);
    bson_append_array_end(doc, &history);
    bson_error_t e;
    *created = mongoc_collection_insert_one(g->notes, doc, NULL, NULL, &e);
    bson_destroy(doc);
    if (*created)
        return DB_OK;
    if (e.code != MONGO_DUPLICATE_KEY)
        return classify(&e, errbuf, errlen);
    /* Held by this id (a redelivery) or by this key (a repeat). */
    bson_t *filter = *n->idem ? BCON_NEW("$or", "[", "{", "_id", BCON_UTF8(n->id), "}", "{",
                                         "idempotency_key", BCON_UTF8(n->idem), "}", "]")
                              : BCON_NEW("_id", BCON_UTF8(n->id));
    bool found = false;
    st = find_one(g->notes, filter, existing, NULL, &found, errbuf, errlen);
    bson_destroy(filter);
    if (st == DB_OK && !found) {
        sb_errf(errbuf, errlen, "notification %s: duplicate key, but no record holds it", n->id);
        st = DB_TRANSIENT; /* it was deleted meanwhile; try again */
    }
    return st;
}

/* The $set of an update: attempts (unless < 0), last_error, updated_ms,
 * and redrive_of and provider_id when given ("" leaves the one recorded). */
static void append_set(bson_t *update, const struct note *n, bool with_status)
{
    bson_t set;
    BSON_APPEND_DOCUMENT_BEGIN(update, "$set", &set);
    if (with_status)
        BSON_APPEND_UTF8(&set, "status", note_status_name(n->status));
    if (n->attempts >= 0)
        BSON_APPEND_INT64(&set, "attempts", n->attempts);
    BSON_APPEND_UTF8(&set, "last_error", n->last_error);
    BSON_APPEND_INT64(&set, "updated_ms", n->updated_ms);
    if (*n->redrive_of)
        BSON_APPEND_UTF8(&set, "redrive_of", n->redrive_of);
    if (*n->provider_id)
        BSON_APPEND_UTF8(&set, "provider_id", n->provider_id);
    bson_append_document_end(update, &set);
}

/* Runs one update_one; *matched: whether its filter matched a record. */
static enum db_status update_matched(struct gstore *g, const bson_t *filter, const bson_t *update, bool *matched,
                                     char *errbuf, size_t errlen)
{
    bson_error_t e;
    bson_t reply;
    bson_iter_t it;
    bool ok = mongoc_collection_update_one(g->notes, filter, update, NULL, &reply, &e);
    *matched = ok && bson_iter_init_find(&it, &reply, "matchedCount") && BSON_ITER_HOLDS_NUMBER(&it) &&
               bson_iter_as_int64(&it) > 0;
    bson_destroy(&reply);
    return ok ? DB_OK : classify(&e, errbuf, errlen);
}

/* The move, from a status that may move to n's, with its history entry
 * (one atomic update of the one document); or else the same status
 * written again. */
static enum db_status g_update(struct notestore *s, const struct note *n, bool *applied, char *errbuf,
                               size_t errlen)
{
    struct gstore *g = (struct gstore *)s;
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(n->id));
    bson_t in, from;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "status", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &from);
    int k = 0;
    for (int i = 0; i < NOTE_STATUS_COUNT; i++)
        if ((enum note_status)i != n->status && note_status_may_move((enum note_status)i, n->status)) {
            char key[16];
            const char *kp;
            bson_uint32_to_string((uint32_t)k++, &kp, key, sizeof key);
            BSON_APPEND_UTF8(&from, kp, note_status_name((enum note_status)i));
        }
    bson_append_array_end(&in, &from);
    bson_append_document_end(filter, &in);
    bson_t *update = bson_new(), push, event;
    append_set(update, n, true);
    BSON_APPEND_DOCUMENT_BEGIN(update, "$push", &push);
    BSON_APPEND_DOCUMENT_BEGIN(&push, "history", &event);
    append_event(&event, n, n->updated_ms);
    bson_append_document_end(&push, &event);
    bson_append_document_end(update, &push);
    enum db_status st = update_matched(g, filter, update, applied, errbuf, errlen);
    bson_destroy(filter);
    bson_destroy(update);
    if (st == DB_OK && *applied) { /* a move is an event for the message's webhook, if it has one: due now */
        bool had;
        filter = BCON_NEW("_id", BCON_UTF8(n->id), "callback_url", "{", "$exists", BCON_BOOL(true), "}");
        update = BCON_NEW("$min", "{", "webhook_next_ms", BCON_INT64(n->updated_ms), "}");
        st = update_matched(g, filter, update, &had, errbuf, errlen);
        bson_destroy(filter);
        bson_destroy(update);
    }
    if (st != DB_OK || *applied)
        return st;
    filter = BCON_NEW("_id", BCON_UTF8(n->id), "status", BCON_UTF8(note_status_name(n->status)));
    update = bson_new();
    append_set(update, n, false);
    st = update_matched(g, filter, update, applied, errbuf, errlen);
    bson_destroy(filter);
    bson_destroy(update);
    return st;
}

static enum db_status g_due(struct notestore *s, int64_t now_ms, int64_t stale_ms, struct note_due *out,
                            size_t max, size_t *n, char *errbuf, size_t errlen)
{
    struct gstore *g = (struct gstore *)s;
    bson_t *filter = BCON_NEW("$or", "[", "{", "status", BCON_UTF8("scheduled"), "send_at_ms", "{", "$lte",
                              BCON_INT64(now_ms), "}", "}", "{", "status", BCON_UTF8("queued"), "send_at_ms", "{",
                              "$gt", BCON_INT64(0), "}", "updated_ms", "{", "$lt", BCON_INT64(stale_ms), "}", "}",
                              "]");
    bson_t *opts = BCON_NEW("limit", BCON_INT64((int64_t)max), "sort", "{", "send_at_ms", BCON_INT32(1), "}",
                            "projection", "{", "status", BCON_INT32(1), "job", BCON_INT32(1), "}");
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(g->notes, filter, opts, NULL);
    const bson_t *doc;
    while (*n < max && mongoc_cursor_next(c, &doc)) {
        char status[16];
        bson_iter_t it;
        uint32_t len = 0;
        const char *text = bson_iter_init_find(&it, doc, "job") && BSON_ITER_HOLDS_UTF8(&it)
                               ? bson_iter_utf8(&it, &len) : NULL;
        char *job = text ? strndup(text, len) : NULL;
        if (job == NULL)
            continue;
        iter_str(doc, "_id", out[*n].id, sizeof out[*n].id);
        iter_str(doc, "status", status, sizeof status);
        out[*n].claimed = strcmp(status, "queued") == 0;
        out[*n].job = job;
        (*n)++;
    }
    enum db_status st = cursor_end(c, errbuf, errlen);
    bson_destroy(filter);
    bson_destroy(opts);
    return st;
}

static enum db_status g_webhooks_due(struct notestore *s, int64_t now_ms, char (*ids)[NOTE_ID_MAX + 1], size_t max,
                                     size_t *n, char *errbuf, size_t errlen)
{
    struct gstore *g = (struct gstore *)s;
    bson_t *filter = BCON_NEW("webhook_next_ms", "{", "$lte", BCON_INT64(now_ms), "}");
    bson_t *opts = BCON_NEW("limit", BCON_INT64((int64_t)max), "sort", "{", "webhook_next_ms", BCON_INT32(1), "}",
                            "projection", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(g->notes, filter, opts, NULL);
    const bson_t *doc;
    while (*n < max && mongoc_cursor_next(c, &doc))
        iter_str(doc, "_id", ids[(*n)++], NOTE_ID_MAX + 1);
    enum db_status st = cursor_end(c, errbuf, errlen);
    bson_destroy(filter);
    bson_destroy(opts);
    return st;
}

static enum db_status g_webhook_progress(struct notestore *s, const char *id, int64_t sent, int64_t attempts,
                                         int64_t retry_at_ms, int64_t now_ms, char *errbuf, size_t errlen)
{
    struct gstore *g = (struct gstore *)s;
    bool matched = false;
    enum db_status st;
    if (retry_at_ms > 0) {
        bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
        bson_t *update = BCON_NEW("$set", "{", "webhook_sent", BCON_INT64(sent), "webhook_attempts",
                                  BCON_INT64(attempts), "webhook_next_ms", BCON_INT64(retry_at_ms), "}");
        st = update_matched(g, filter, update, &matched, errbuf, errlen);
        bson_destroy(filter);
        bson_destroy(update);
        return st;
    }
    /* Done with what it had: not due again unless the history grew since
     * (a move that came while these went out). */
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id), "history", "{", "$size", BCON_INT64(sent), "}");
    bson_t *update = BCON_NEW("$set", "{", "webhook_sent", BCON_INT64(sent), "webhook_attempts", BCON_INT64(0), "}",
                              "$unset", "{", "webhook_next_ms", BCON_UTF8(""), "}");
    st = update_matched(g, filter, update, &matched, errbuf, errlen);
    bson_destroy(filter);
    bson_destroy(update);
    if (st != DB_OK || matched)
        return st;
    filter = BCON_NEW("_id", BCON_UTF8(id));
    update = BCON_NEW("$set", "{", "webhook_sent", BCON_INT64(sent), "webhook_attempts", BCON_INT64(0),
                      "webhook_next_ms", BCON_INT64(now_ms), "}");
    st = update_matched(g, filter, update, &matched, errbuf, errlen);
    bson_destroy(filter);
    bson_destroy(update);
    return st;
}

static enum db_status g_history(struct notestore *s, const char *id, cJSON *out, char *errbuf, size_t errlen)
{
    struct gstore *g = (struct gstore *)s;
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    bson_t *copy = NULL;
    bool found = false;
    enum db_status st = find_one(g->notes, filter, NULL, &copy, &found, errbuf, errlen);
    bson_destroy(filter);
    bson_iter_t it, arr, f;
    if (st == DB_OK && found && bson_iter_init_find(&it, copy, "history") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr)) {
        while (bson_iter_next(&arr)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &f))
                continue;
            cJSON *e = cJSON_CreateObject();
            while (bson_iter_next(&f)) {
                const char *k = bson_iter_key(&f);
                if (strcmp(k, "status") == 0 && BSON_ITER_HOLDS_UTF8(&f))
                    cJSON_AddStringToObject(e, "status", bson_iter_utf8(&f, NULL));
                else if (strcmp(k, "at_ms") == 0 && BSON_ITER_HOLDS_NUMBER(&f))
                    cJSON_AddNumberToObject(e, "at", (double)bson_iter_as_int64(&f));
                else if (strcmp(k, "detail") == 0 && BSON_ITER_HOLDS_UTF8(&f) && *bson_iter_utf8(&f, NULL))
                    cJSON_AddStringToObject(e, "detail", bson_iter_utf8(&f, NULL));
            }
            cJSON_AddItemToArray(out, e);
        }
    }
    if (copy)
        bson_destroy(copy);
    return st;
}

static enum db_status g_get(struct notestore *s, bool by_idem, const char *value, struct note *out, bool *found,
                            char *errbuf, size_t errlen)
{
    struct gstore *g = (struct gstore *)s;
    bson_t *filter = BCON_NEW(by_idem ? "idempotency_key" : "_id", BCON_UTF8(value));
    enum db_status st = find_one(g->notes, filter, out, NULL, found, errbuf, errlen);
    bson_destroy(filter);
    return st;
}

static enum db_status g_track_put(struct notestore *s, const char *tracking_id, int64_t total,
                                  const cJSON *errors, int64_t created_ms, char *errbuf,
                                  size_t errlen)
{
    struct gstore *g = (struct gstore *)s;
    bson_t *doc = BCON_NEW("_id", BCON_UTF8(tracking_id), "total", BCON_INT64(total), "created_ms",
                           BCON_INT64(created_ms));
    bson_t arr;
    BSON_APPEND_ARRAY_BEGIN(doc, "errors", &arr);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, errors)
    {
        char k[16];
        const char *key;
        bson_uint32_to_string((uint32_t)i++, &key, k, sizeof k);
        bson_t item;
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &item);
        BSON_APPEND_INT64(&item, "index", (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "index")));
        const char *reason = cJSON_GetStringValue(cJSON_GetObjectItem(it, "reason"));
        BSON_APPEND_UTF8(&item, "reason", reason ? reason : "");
        bson_append_document_end(&arr, &item);
    }
    bson_append_array_end(doc, &arr);
    bson_error_t e;
    bool ok = mongoc_collection_insert_one(g->requests, doc, NULL, NULL, &e);
    bson_destroy(doc);
    if (ok || e.code == MONGO_DUPLICATE_KEY) /* recorded before: no change */
        return DB_OK;
    return classify(&e, errbuf, errlen);
}

static void errors_from_doc(const bson_t *doc, cJSON *out)
{
    bson_iter_t it, arr;
    if (!bson_iter_init_find(&it, doc, "errors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr))
        return;
    while (bson_iter_next(&arr)) {
        bson_iter_t f;
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &f))
            continue;
        cJSON *e = cJSON_CreateObject();
        while (bson_iter_next(&f)) {
            if (strcmp(bson_iter_key(&f), "index") == 0 && BSON_ITER_HOLDS_NUMBER(&f))
                cJSON_AddNumberToObject(e, "index", (double)bson_iter_as_int64(&f));
            else if (strcmp(bson_iter_key(&f), "reason") == 0 && BSON_ITER_HOLDS_UTF8(&f))
                cJSON_AddStringToObject(e, "reason", bson_iter_utf8(&f, NULL));
        }
        cJSON_AddItemToArray(out, e);
    }
}

static enum db_status g_track_get(struct notestore *s, const char *tracking_id,
                                  struct note_tracking *out, bool *found, char *errbuf,
                                  size_t errlen)
{
    struct gstore *g = (struct gstore *)s;
    bson_t *req = NULL;
    bson_error_t e;
    const bson_t *doc;
    memset(out, 0, sizeof *out);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(tracking_id));
    enum db_status st = find_one(g->requests, filter, NULL, &req, found, errbuf, errlen);
    bson_destroy(filter);
    if (st != DB_OK || !*found)
        return st;
    out->total = iter_i64(req, "total");
    out->created_ms = iter_i64(req, "created_ms");
    out->errors = cJSON_CreateArray();
    errors_from_doc(req, out->errors);
    out->rejected = cJSON_GetArraySize(out->errors);
    bson_destroy(req);
    /* The items: counted here rather than by $group, so the same plain
     * find works on every server version. */
    filter = BCON_NEW("tracking_id", BCON_UTF8(tracking_id));
    bson_t *opts = BCON_NEW("projection", "{", "status", BCON_INT32(1), "item", BCON_INT32(1),
                            "last_error", BCON_INT32(1), "}", "sort", "{", "item", BCON_INT32(1), "}");
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(g->notes, filter, opts, NULL);
    while (mongoc_cursor_next(c, &doc)) {
        struct note n;
        note_from_doc(doc, &n);
        out->counts[n.status]++;
        if (n.status == NOTE_DEAD) {
            cJSON *item = cJSON_CreateObject();
            cJSON_AddNumberToObject(item, "index", (double)n.item);
            cJSON_AddStringToObject(item, "reason", n.last_error);
            cJSON_AddItemToArray(out->errors, item);
        }
    }
    if (mongoc_cursor_error(c, &e))
        st = classify(&e, errbuf, errlen);
    mongoc_cursor_destroy(c);
    bson_destroy(filter);
    bson_destroy(opts);
    if (st != DB_OK) {
        cJSON_Delete(out->errors);
        out->errors = NULL;
    }
    return st;
}

static enum db_status g_ping(struct notestore *s, char *errbuf, size_t errlen)
{
    struct gstore *g = (struct gstore *)s;
    bson_error_t e;
    bson_t reply;
    bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
    bool ok = mongoc_client_command_simple(g->client, "admin", cmd, NULL, &reply, &e);
    bson_destroy(cmd);
    bson_destroy(&reply);
    return ok ? DB_OK : classify(&e, errbuf, errlen);
}

static void g_free(struct notestore *s)
{
    struct gstore *g = (struct gstore *)s;
    if (g->notes)
        mongoc_collection_destroy(g->notes);
    if (g->requests)
        mongoc_collection_destroy(g->requests);
    if (g->client)
        mongoc_client_destroy(g->client);
    free(g);
}

static const struct notestore_ops mongo_ops = {
    "mongodb", g_claim, g_update, g_history, g_webhooks_due, g_webhook_progress, g_due, g_get, g_track_put, g_track_get, g_ping, g_free,
};

struct notestore *notestore_mongo_new(const char *mongo_uri, char *errbuf, size_t errlen)
{
    pthread_once(&init_once, mongo_init);
    bson_error_t e;
    struct gstore *g = calloc(1, sizeof *g);
    mongoc_uri_t *uri = mongoc_uri_new_with_error(mongo_uri, &e);
    if (g == NULL || uri == NULL) {
        sb_errf(errbuf, errlen, "bad MONGO_URI: %s", uri ? "out of memory" : e.message);
        goto fail;
    }
    g->base.ops = &mongo_ops;
    /* The driver's 30 s server selection would hold a request (or a
     * worker) far past its deadline: fail fast and let the caller retry.
     * Its socket timeout (5 minutes) is how long a call waits on a server
     * that stopped answering without closing the connection (a hung host,
     * a partition), with a dispatcher's store thread or a sender stuck in
     * it: every call here is one small document operation, so 10 s. */
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 2000);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 2000);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, 10000);
    if ((g->client = mongoc_client_new_from_uri_with_error(uri, &e)) == NULL) {
        sb_errf(errbuf, errlen, "MONGO_URI: %s", e.message);
        goto fail;
    }
    mongoc_client_set_appname(g->client, "switchboard");
    const char *db = mongoc_uri_get_database(uri);
    if (db == NULL || *db == '\0')
        db = MONGO_DEFAULT_DB;
    g->notes = mongoc_client_get_collection(g->client, db, "notifications");
    g->requests = mongoc_client_get_collection(g->client, db, "sms_requests");
    mongoc_uri_destroy(uri);
    return &g->base;
fail:
    if (uri)
        mongoc_uri_destroy(uri);
    if (g)
        g_free(&g->base);
    return NULL;
}
