/* chat_api.c - chats, messages and search over HTTP.
 *
 * Writes that create chats and messages never touch MySQL on the request
 * path: the number comes from Redis (numbers.c), the job goes to Kafka, and
 * 201 is sent from Kafka's delivery report. Every GET runs on the MySQL
 * pool (chat_req.h) and answers from its completion.
 *
 * Existence: an application or chat counts as existing when the Redis cache
 * marks it (set when it was created or allocated) or, on a cache miss, when
 * MySQL has it; a miss that MySQL confirms is marked again, so a Redis that
 * lost its data heals as requests arrive. */
#include "chat_api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_req.h"
#include "envelope.h"
#include "httpconn.h"
#include "log.h"
#include "numbers.h"
#include "search.h"

#define SEARCH_MAX_CHARS 200

/* ---- creating chats and messages: Redis number, Kafka job, 201 -------- */

static void start_create(struct chat_req *r);

static void reply_result(struct chat_req *r)
{
    if (r->result == NULL) { /* a create's {"number": N}: written, not printed from a tree */
        char n[SB_I64_STR], body[sizeof "{\"number\":}" + SB_I64_STR];
        sb_i64_to_str(r->created, n);
        size_t len = sb_join(body, sizeof body, "{\"number\":", n, "}", (char *)NULL);
        http_pending_reply_text(r->p, r->status, body, len);
        chat_req_free(r);
        return;
    }
    cJSON *body = r->result;
    r->result = NULL;
    chat_req_reply(r, r->status, body);
}

static void on_confirmed(void *arg, enum numbers_result res, int64_t unused)
{
    (void)unused;
    struct chat_req *r = arg;
    /* Kafka has the job, so the 201 is true either way; without the mark,
     * reads find it once the persister has written it. */
    if (res != NUMBERS_OK)
        log_warn("created, but not marked in the cache (Redis unavailable)", "request_id=%s",
                 r->p->request_id);
    reply_result(r);
}

static void job_delivered(void *arg, rd_kafka_resp_err_t err)
{
    struct chat_req *r = arg;
    r->st = err ? DB_TRANSIENT : DB_OK;
    if (err)
        snprintf(r->err, sizeof r->err, "%s", rd_kafka_err2name(err));
    if (r->st != DB_OK) {
        log_warn("enqueue failed", "request_id=%s err=\"%s\"", r->p->request_id, r->err);
        chat_req_error(r, 503, "queue_unavailable", "the job queue did not accept the job; retry later");
        return;
    }
    if (r->created) /* a chat or message exists from now on: marked before the 201 */
        numbers_confirm(r->loop, r->token, r->chat ? r->chat : r->created, r->chat ? r->created : 0,
                        on_confirmed, r);
    else
        reply_result(r);
}

/* Enqueues the job; the reply (r->status, r->result) goes out on Kafka's ack. */
static void enqueue(struct chat_req *r, const char *type, int64_t number)
{
    char err[ERRBUF_LEN];
    /* The payload as text (message_fields, chat_create_fields): one per
     * create, so no tree to build, check and print. */
    struct strbuf b = {0};
    strbuf_append_lit(&b, "{\"application_token\":");
    json_append_string(&b, r->token);
    if (r->chat) {
        strbuf_append_lit(&b, ",\"chat_number\":");
        strbuf_append_i64(&b, r->chat);
    }
    strbuf_append_lit(&b, ",\"number\":");
    strbuf_append_i64(&b, number);
    if (r->chat) {
        strbuf_append_lit(&b, ",\"body\":");
        json_append_string(&b, r->text);
    }
    strbuf_append_lit(&b, "}");
    char *job = strbuf_failed(&b) ? NULL
                                  : envelope_encode_text(type, r->token, r->p->request_id, sb_now_ms(), b.p,
                                                         b.len, err, sizeof err);
    if (strbuf_failed(&b))
        snprintf(err, sizeof err, "out of memory");
    strbuf_free(&b);
    if (job == NULL) {
        chat_req_error(r, 500, "internal", "%s", err);
        return;
    }
    const struct job_type *jt = envelope_job_type(type);
    if (!http_enqueue(&r->eq, r->loop, &r->p->req->span.ctx, jt->topic, r->token, TOKEN_LEN, job, job_delivered, r, err,
                      sizeof err)) {
        log_warn("enqueue refused", "request_id=%s err=\"%s\"", r->p->request_id, err);
        chat_req_error(r, 503, "queue_unavailable", "the job queue is full or unavailable; retry later");
    }
    free(job);
}

static cJSON *number_body(int64_t n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "number", (double)n);
    return o;
}

/* Pool: is the parent (application, or chat) in MySQL? Also reads the
 * ceiling of the scope that issues its number (of the message if r->msg,
 * else of the chat). */
static void parent_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    char scope[64];
    if (r->msg)
        snprintf(scope, sizeof scope, "m:%s:%lld", r->token, (long long)r->chat);
    else
        snprintf(scope, sizeof scope, "c:%s", r->token);
    char *sql = db_sqlf(ctx, r->err, sizeof r->err,
                        "SELECT (SELECT COUNT(*) FROM applications WHERE token = %s),"
                        " (SELECT COUNT(*) FROM chats WHERE application_token = %s AND number = %lld),"
                        " (SELECT ceiling FROM number_blocks WHERE scope = %s)",
                        r->token, r->token, (long long)r->chat, scope);
    MYSQL_RES *res;
    r->st = sql ? db_query(ctx, sql, &res, r->err, sizeof r->err) : DB_TRANSIENT;
    free(sql);
    if (r->st != DB_OK)
        return;
    MYSQL_ROW row = mysql_fetch_row(res);
    r->app_exists = row && atoi(row[0]) > 0;
    r->chat_exists = row && atoi(row[1]) > 0;
    r->ceiling = row && row[2] ? strtoll(row[2], NULL, 10) : 0;
    mysql_free_result(res);
}

static void parent_done(void *arg)
{
    struct chat_req *r = arg;
    if (r->st != DB_OK) {
        chat_req_finish(r);
        return;
    }
    bool exists = r->chat ? r->chat_exists : r->app_exists;
    if (!exists && r->uncertain && r->chat && r->app_exists && r->chat <= r->ceiling) {
        chat_req_retry(r, "chat", r->chat);
        return;
    }
    if (!exists) {
        chat_req_not_found(r, r->chat && r->app_exists ? "chat" : "application");
        chat_req_finish(r);
        return;
    }
    /* Known after all (the cache lost it): mark it and allocate again. */
    numbers_mark(r->loop, r->token, r->chat, 0);
    r->retried = true;
    start_create(r);
}

static void on_number(void *arg, enum numbers_result res, int64_t number)
{
    struct chat_req *r = arg;
    trace_span_attr_i64(&r->redis_span, "number", number);
    trace_span_end(&r->redis_span, res == NUMBERS_UNAVAILABLE);
    if (res == NUMBERS_UNAVAILABLE) {
        chat_req_error(r, 503, "numbers_unavailable", "cannot allocate a number now; retry later");
        return;
    }
    if (res == NUMBERS_UNKNOWN_PARENT || res == NUMBERS_UNCERTAIN) {
        r->uncertain = res == NUMBERS_UNCERTAIN;
        if (r->retried) { /* marked a moment ago and gone again: Redis is flapping */
            chat_req_error(r, 503, "numbers_unavailable", "cannot allocate a number now; retry later");
            return;
        }
        chat_req_submit(r, parent_work, parent_done);
        return;
    }
    r->status = 201;
    r->created = number; /* the answer: {"number": N} (reply_result) */
    enqueue(r, r->chat ? "message.create" : "chat.create", number);
}

static void start_create(struct chat_req *r)
{
    trace_span_start(&r->redis_span, &r->p->req->span.ctx, "redis.numbers_next", TRACE_CLIENT);
    numbers_next(r->loop, r->token, r->chat, on_number, r);
}

void chat_create_chat(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1];
    if (!chat_path_ids(ctx, token, NULL, NULL))
        return;
    cJSON *body = http_body_json(ctx, NULL, 0, true); /* no fields: {} or nothing */
    if (body == NULL)
        return;
    cJSON_Delete(body);
    struct chat_req *r = chat_req_new(ctx);
    if (r == NULL)
        return;
    memcpy(r->token, token, sizeof token);
    start_create(r);
}

static const struct json_field message_body_fields[] = {
    {"body", JSON_K_STRING, true, 1, MESSAGE_BODY_MAX},
};

/* Parses {"body"} for message create/update; NULL after answering 400. */
static char *message_body(struct http_ctx *ctx)
{
    cJSON *body = http_body_json(ctx, message_body_fields, SB_ARRAY_LEN(message_body_fields), false);
    if (body == NULL)
        return NULL;
    char *text = strdup(json_str(body, "body", ""));
    if (text == NULL)
        http_reply_error(ctx, 503, "overloaded", "out of memory");
    cJSON_Delete(body);
    return text;
}

/* Path ids and {"body"} of a message request, in a new chat_req (NULL
 * after answering the error). with_msg: the path names a message too. */
static struct chat_req *message_req(struct http_ctx *ctx, bool with_msg)
{
    char token[TOKEN_LEN + 1];
    int64_t chat, msg = 0;
    if (!chat_path_ids(ctx, token, &chat, with_msg ? &msg : NULL))
        return NULL;
    char *text = message_body(ctx);
    if (text == NULL)
        return NULL;
    struct chat_req *r = chat_req_new(ctx);
    if (r == NULL) {
        free(text);
        return NULL;
    }
    memcpy(r->token, token, sizeof token);
    r->chat = chat;
    r->msg = msg;
    r->text = text;
    return r;
}

void chat_create_message(struct http_ctx *ctx)
{
    struct chat_req *r = message_req(ctx, false);
    if (r)
        start_create(r);
}

/* ---- updating a message ------------------------------------------------ */

static void enqueue_update(struct chat_req *r)
{
    r->status = 200;
    r->result = number_body(r->msg);
    cJSON_AddStringToObject(r->result, "body", r->text);
    enqueue(r, "message.update", r->msg);
}

static void message_exists_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    parent_work(ctx, arg);
    if (r->st != DB_OK || !r->chat_exists)
        return;
    char *sql = db_sqlf(ctx, r->err, sizeof r->err, "SELECT 1 FROM messages WHERE application_token = %s"
                        " AND chat_number = %lld AND number = %lld", r->token, (long long)r->chat,
                        (long long)r->msg);
    r->st = sql ? db_exists(ctx, sql, &r->found, r->err, sizeof r->err) : DB_TRANSIENT;
    free(sql);
}

static void message_exists_done(void *arg)
{
    struct chat_req *r = arg;
    if (r->st != DB_OK) {
        chat_req_finish(r);
    } else if (!r->found && r->uncertain && r->chat_exists && r->msg <= r->ceiling) {
        chat_req_retry(r, "message", r->msg);
    } else if (!r->found) {
        chat_req_not_found(r, !r->app_exists ? "application" : !r->chat_exists ? "chat" : "message");
        chat_req_finish(r);
    } else {
        numbers_mark(r->loop, r->token, r->chat, r->msg);
        enqueue_update(r);
    }
}

static void on_message_known(void *arg, enum numbers_result res, int64_t known)
{
    struct chat_req *r = arg;
    if (res == NUMBERS_OK && known) {
        enqueue_update(r);
        return;
    }
    /* not in the cache (or Redis away): MySQL decides */
    r->uncertain = res == NUMBERS_UNCERTAIN;
    chat_req_submit(r, message_exists_work, message_exists_done);
}

void chat_update_message(struct http_ctx *ctx)
{
    struct chat_req *r = message_req(ctx, true);
    if (r)
        numbers_known(r->loop, r->token, r->chat, r->msg, on_message_known, r);
}

/* ---- reading chats and messages --------------------------------------- */

/* After a read found no chat row: an allocated chat not persisted yet
 * still exists (empty); otherwise 404. */
static void on_chat_known(void *arg, enum numbers_result res, int64_t known)
{
    struct chat_req *r = arg;
    if (res == NUMBERS_OK && known) {
        cJSON_Delete(r->result);
        r->result = NULL;
        if (r->msg) {
            chat_req_not_found(r, "message"); /* its chat is not even persisted yet */
        } else if (r->limit == 0) {
            r->result = number_body(r->chat); /* GET one chat */
            cJSON_AddNumberToObject(r->result, "messages_count", 0);
        } else {
            r->result = cJSON_CreateArray(); /* a list or search of an empty chat */
        }
        r->status = r->result ? 200 : 404;
    } else if (res == NUMBERS_UNCERTAIN && !r->msg && r->chat <= r->ceiling) {
        chat_req_retry(r, "chat", r->chat);
        return;
    } else {
        cJSON_Delete(r->result);
        r->result = NULL;
        chat_req_not_found(r, r->app_exists ? "chat" : "application");
    }
    chat_req_finish(r);
}

static void read_done(void *arg)
{
    struct chat_req *r = arg;
    if (r->st == DB_OK && r->app_exists && !r->chat_exists && r->chat) {
        numbers_known(r->loop, r->token, r->chat, 0, on_chat_known, r);
        return;
    }
    if (r->st == DB_OK && !r->app_exists) {
        cJSON_Delete(r->result);
        r->result = NULL;
        chat_req_not_found(r, "application");
    }
    chat_req_finish(r);
}

/* A read of one item answers the item, not a list of one (NULL if none). */
static void keep_first_row(struct chat_req *r)
{
    cJSON *first = r->found ? cJSON_DetachItemFromArray(r->result, 0) : NULL;
    cJSON_Delete(r->result);
    r->result = first;
}

static void add_chat_row(struct chat_req *r, MYSQL_ROW row)
{
    cJSON *o = number_body(strtoll(row[0], NULL, 10));
    cJSON_AddNumberToObject(o, "messages_count", strtod(row[1], NULL));
    cJSON_AddItemToArray(r->result, o);
    r->found = true;
}

static void list_chats_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    int64_t chat = r->chat;
    r->chat = 0;
    parent_work(ctx, arg);
    r->chat = chat;
    if (r->st != DB_OK || !r->app_exists)
        return;
    char *sql;
    if (chat) /* one chat */
        sql = db_sqlf(ctx, r->err, sizeof r->err, "SELECT number, messages_count FROM chats"
                      " WHERE application_token = %s AND number = %lld", r->token, (long long)chat);
    else
        sql = db_sqlf(ctx, r->err, sizeof r->err, "SELECT number, messages_count FROM chats"
                      " WHERE application_token = %s AND number > %lld ORDER BY number LIMIT %lld",
                      r->token, (long long)r->after, (long long)r->limit);
    r->result = cJSON_CreateArray();
    if (!chat_req_query_rows(r, ctx, sql, add_chat_row) || !chat)
        return;
    r->chat_exists = r->found;
    keep_first_row(r);
}

/* Path ids of a read (with_chat, with_msg: the path names a chat, a message
 * too) and, for a list, its page, in a new chat_req; NULL after answering
 * the error. limit stays 0 for a single item (list_chats_work's "one chat"). */
static struct chat_req *read_req(struct http_ctx *ctx, bool with_chat, bool with_msg, bool paged)
{
    char token[TOKEN_LEN + 1];
    int64_t chat = 0, msg = 0, limit = 0, after = 0;
    if (!chat_path_ids(ctx, token, with_chat ? &chat : NULL, with_msg ? &msg : NULL) ||
        (paged && !chat_page_params(ctx, &limit, &after, NULL)))
        return NULL;
    struct chat_req *r = chat_req_new(ctx);
    if (r == NULL)
        return NULL;
    memcpy(r->token, token, sizeof token);
    r->chat = chat;
    r->msg = msg;
    r->limit = limit;
    r->after = after;
    return r;
}

void chat_list_chats(struct http_ctx *ctx)
{
    struct chat_req *r = read_req(ctx, false, false, true);
    if (r)
        chat_req_submit(r, list_chats_work, read_done);
}

void chat_get_chat(struct http_ctx *ctx)
{
    struct chat_req *r = read_req(ctx, true, false, false);
    if (r)
        chat_req_submit(r, list_chats_work, read_done);
}

static void add_message_row(struct chat_req *r, MYSQL_ROW row)
{
    cJSON *o = number_body(strtoll(row[0], NULL, 10));
    cJSON_AddStringToObject(o, "body", row[1]);
    cJSON_AddItemToArray(r->result, o);
    r->found = true;
    r->built += strlen(row[1]) + 32;
}

static void list_messages_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    parent_work(ctx, arg);
    if (r->st != DB_OK || !r->chat_exists)
        return;
    char *sql;
    if (r->msg)
        sql = db_sqlf(ctx, r->err, sizeof r->err, "SELECT number, body FROM messages WHERE application_token = %s"
                      " AND chat_number = %lld AND number = %lld", r->token, (long long)r->chat,
                      (long long)r->msg);
    else
        sql = db_sqlf(ctx, r->err, sizeof r->err, "SELECT number, body FROM messages WHERE application_token = %s"
                      " AND chat_number = %lld AND number > %lld ORDER BY number LIMIT %lld", r->token,
                      (long long)r->chat, (long long)r->after, (long long)r->limit);
    r->result = cJSON_CreateArray();
    if (!chat_req_query_rows(r, ctx, sql, add_message_row) || !chat_req_hold(r, r->built) || !r->msg)
        return;
    keep_first_row(r);
    if (!r->found)
        chat_req_not_found(r, "message");
}

void chat_list_messages(struct http_ctx *ctx)
{
    struct chat_req *r = read_req(ctx, true, false, true);
    if (r)
        chat_req_submit(r, list_messages_work, read_done);
}

void chat_get_message(struct http_ctx *ctx)
{
    struct chat_req *r = read_req(ctx, true, true, false);
    if (r)
        chat_req_submit(r, list_messages_work, read_done);
}

/* ---- search ----------------------------------------------------------- */

static const struct json_field search_fields[] = {
    {"body", JSON_K_STRING, true, 1, SEARCH_MAX_CHARS},
};

static void search_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    parent_work(ctx, arg);
    if (r->st != DB_OK || !r->chat_exists)
        return;
    r->st = search_messages(r->loop->d->cfg, ctx, r->token, r->chat, r->text, r->limit,
                            r->offset, &r->result, r->err, sizeof r->err);
    if (r->st == DB_OK && r->result) {
        const cJSON *it;
        cJSON_ArrayForEach(it, r->result)
            r->built += strlen(json_str(it, "body", "")) + 32;
        (void)chat_req_hold(r, r->built);
    }
    if (r->st == DB_TRANSIENT && strncmp(r->err, SEARCH_TOO_SLOW, strlen(SEARCH_TOO_SLOW)) == 0) {
        r->st = DB_OK; /* answered as such, not as a database outage */
        r->status = 503;
        r->errcode = "search_too_slow";
        snprintf(r->errmsg, sizeof r->errmsg, "the search took over %d s and was stopped; search for more "
                 "specific text", SEARCH_MAX_SECONDS);
    }
}

void chat_search_messages(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1], v[32];
    int64_t chat, limit, page = 1;
    if (!chat_path_ids(ctx, token, &chat, NULL) || !chat_page_params(ctx, &limit, NULL, NULL))
        return;
    if ((http_query_param(ctx, "page", v, sizeof v) && !sb_parse_i64(v, 1, SEARCH_MAX_WINDOW, &page)) ||
        page * limit > SEARCH_MAX_WINDOW) {
        http_reply_error(ctx, 400, "invalid_parameter",
                         "search results go %d deep: page x limit must be at most %d", SEARCH_MAX_WINDOW,
                         SEARCH_MAX_WINDOW);
        return;
    }
    char *text = NULL;
    if (strcmp(ctx->route->method, "GET") == 0) {
        char q[4 * SEARCH_MAX_CHARS + 1];
        if (!http_query_param(ctx, "q", q, sizeof q) || !*q ||
            !json_utf8_valid(q, strlen(q)) || json_utf8_len(q) > SEARCH_MAX_CHARS) {
            http_reply_error(ctx, 400, "invalid_parameter",
                             "q must be UTF-8 text of 1 to %d characters", SEARCH_MAX_CHARS);
            return;
        }
        text = strdup(q);
    } else {
        cJSON *body = http_body_json(ctx, search_fields, SB_ARRAY_LEN(search_fields), false);
        if (body == NULL)
            return;
        text = strdup(json_str(body, "body", ""));
        cJSON_Delete(body);
    }
    if (text == NULL) {
        http_reply_error(ctx, 503, "overloaded", "out of memory");
        return;
    }
    struct chat_req *r = chat_req_new(ctx);
    if (r == NULL) {
        free(text);
        return;
    }
    memcpy(r->token, token, sizeof token);
    r->chat = chat;
    r->limit = limit;
    r->offset = (page - 1) * limit;
    r->text = text;
    chat_req_submit(r, search_work, read_done);
}
