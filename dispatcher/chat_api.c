/* chat_api.c - applications, chats, messages and search over HTTP.
 *
 * Writes that create chats and messages never touch MySQL on the request
 * path: the number comes from Redis (numbers.c), the job goes to Kafka, and
 * 201 is sent from Kafka's delivery report. Application create/rename and
 * every GET run on the MySQL pool and answer from its completion.
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

#include "envelope.h"
#include "log.h"
#include "numbers.h"
#include "search.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define SEARCH_MAX_CHARS 200

enum chat_step { STEP_NONE, STEP_CHECK_CHAT_CACHE };

struct chat_req {
    struct http_pending *p;
    struct loop *loop;
    char token[TOKEN_LEN + 1];
    int64_t chat, msg;
    int64_t after, limit, offset;
    char *text; /* name, message body or search text */
    /* filled by pool work */
    enum db_status st;
    char err[ERRBUF_LEN];
    bool app_exists, chat_exists, found;
    bool uncertain;  /* the cache lost data recently (numbers.h) */
    int64_t ceiling; /* MySQL number ceiling of the scope that issued it */
    int status;
    cJSON *result;
    const char *errcode;
    char errmsg[200];
    bool retried;
};

/* ---- small helpers ---------------------------------------------------- */

static bool token_valid(const char *t)
{
    return sb_token_valid(t, TOKEN_LEN, TOKEN_LEN);
}

static bool make_token(char out[TOKEN_LEN + 1])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[16];
    if (!sb_random_bytes(raw, sizeof raw))
        return false;
    /* base64url of 128 bits without padding: 21 full sextets + 2 bits. */
    uint32_t acc = 0;
    int bits = 0, n = 0;
    for (size_t i = 0; i < sizeof raw; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            out[n++] = alphabet[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    out[n++] = alphabet[(acc << (6 - bits)) & 63];
    out[n] = '\0';
    return n == TOKEN_LEN;
}

static struct chat_req *req_new(struct http_ctx *ctx)
{
    struct chat_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        http_reply_error(ctx, 503, "overloaded", "out of memory");
        return NULL;
    }
    r->p = http_pending_new(ctx);
    if (r->p == NULL) {
        free(r);
        return NULL;
    }
    r->loop = ctx->loop;
    r->limit = PAGE_DEFAULT;
    return r;
}

static void req_free(struct chat_req *r)
{
    cJSON_Delete(r->result);
    free(r->text);
    free(r);
}

#define req_error(r, status, code, ...)                            \
    do {                                                           \
        http_pending_errorf((r)->p, status, code, __VA_ARGS__);    \
        req_free(r);                                               \
    } while (0)

/* Allocated just before Redis lost data, maybe still on its way to MySQL:
 * ask the client to come back instead of denying it exists. */
static void req_retry(struct chat_req *r, const char *what, int64_t n)
{
    http_req_add_header(r->p->req, "Retry-After", "1");
    req_error(r, 503, "not_confirmed", "%s %lld is not confirmed yet (the cache was lost a moment "
              "ago); retry shortly", what, (long long)n);
}

static void req_reply(struct chat_req *r, int status, cJSON *body)
{
    http_pending_reply(r->p, status, body);
    cJSON_Delete(body);
    req_free(r);
}

/* Sends what the pool work left in r: a result, or an error. */
static void req_finish(void *arg)
{
    struct chat_req *r = arg;
    if (r->st == DB_TRANSIENT) {
        log_warn("database unavailable", "request_id=%s err=\"%s\"", r->p->request_id, r->err);
        req_error(r, 503, "database_unavailable", "the database is unavailable; retry later");
    } else if (r->st == DB_FATAL) {
        log_error("database error", "request_id=%s err=\"%s\"", r->p->request_id, r->err);
        req_error(r, 500, "internal", "database error");
    } else if (r->result) {
        cJSON *body = r->result;
        r->result = NULL;
        req_reply(r, r->status ? r->status : 200, body);
    } else {
        req_error(r, r->status, r->errcode, "%s", r->errmsg);
    }
}

static void req_not_found(struct chat_req *r, const char *what)
{
    r->status = 404;
    r->errcode = "not_found";
    if (strcmp(what, "application") == 0)
        snprintf(r->errmsg, sizeof r->errmsg, "no application with token %s", r->token);
    else if (strcmp(what, "chat") == 0)
        snprintf(r->errmsg, sizeof r->errmsg, "application %s has no chat %lld", r->token,
                 (long long)r->chat);
    else
        snprintf(r->errmsg, sizeof r->errmsg, "chat %lld has no message %lld",
                 (long long)r->chat, (long long)r->msg);
}

static void submit(struct chat_req *r, threadpool_work_fn work, loopq_fn done)
{
    if (!threadpool_submit(r->loop->d->dbpool, work, done, r->loop->q, r))
        req_error(r, 503, "overloaded", "cannot queue the database request");
}

/* Reads {token}, {chat}, {msg} path parameters; answers 404/400 itself. */
static bool path_ids(struct http_ctx *ctx, char *token, int64_t *chat, int64_t *msg)
{
    if (!token_valid(ctx->params[0])) {
        http_reply_error(ctx, 404, "not_found", "no application with token %.64s", ctx->params[0]);
        return false;
    }
    memcpy(token, ctx->params[0], TOKEN_LEN + 1);
    const char *names[] = {"chat", "message"};
    int64_t *outs[] = {chat, msg};
    for (int i = 0; i < 2 && outs[i]; i++) {
        if (!sb_parse_i64(ctx->params[i + 1], 1, NUMBER_MAX, outs[i])) {
            http_reply_error(ctx, 400, "invalid_number", "%s number must be an integer from 1 to %lld",
                             names[i], (long long)NUMBER_MAX);
            return false;
        }
    }
    return true;
}

/* ?limit= (1..100) and ?after= (an integer, unless after_token). */
static bool page_params(struct http_ctx *ctx, int64_t *limit, int64_t *after, char *after_token)
{
    char v[64];
    *limit = PAGE_DEFAULT;
    if (http_query_param(ctx, "limit", v, sizeof v) && !sb_parse_i64(v, 1, PAGE_MAX, limit)) {
        http_reply_error(ctx, 400, "invalid_parameter", "limit must be an integer from 1 to %d", PAGE_MAX);
        return false;
    }
    if (after)
        *after = 0;
    if (after_token)
        after_token[0] = '\0';
    if (!http_query_param(ctx, "after", v, sizeof v))
        return true;
    if (after_token) {
        if (!token_valid(v)) {
            http_reply_error(ctx, 400, "invalid_parameter", "after must be an application token");
            return false;
        }
        memcpy(after_token, v, TOKEN_LEN + 1);
    } else if (!sb_parse_i64(v, 0, NUMBER_MAX, after)) {
        http_reply_error(ctx, 400, "invalid_parameter", "after must be an integer from 0 to %lld",
                         (long long)NUMBER_MAX);
        return false;
    }
    return true;
}

static cJSON *app_json(MYSQL_ROW row)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", row[1]);
    cJSON_AddStringToObject(o, "token", row[0]);
    cJSON_AddNumberToObject(o, "chats_count", strtod(row[2], NULL));
    return o;
}

/* Runs sql and calls each(row) for every row; false on error (r->st set). */
static bool query_rows(struct chat_req *r, struct db *db, const char *sql,
                       void (*each)(struct chat_req *r, MYSQL_ROW row))
{
    MYSQL_RES *res;
    r->st = db_query(db, sql, &res, r->err, sizeof r->err);
    if (r->st != DB_OK)
        return false;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL)
        each(r, row);
    mysql_free_result(res);
    return true;
}

/* ---- applications ------------------------------------------------------ */

static const struct json_field app_fields[] = {
    {"name", JSON_K_STRING, true, 1, 255},
};

/* Runs head + the quoted application name (r->text) + tail on db. */
static void exec_with_name(struct chat_req *r, struct db *db, const char *head, const char *tail)
{
    MYSQL *conn = db_conn(db, r->err, sizeof r->err);
    if (conn == NULL) {
        r->st = DB_TRANSIENT;
        return;
    }
    struct strbuf sql = {0};
    strbuf_append(&sql, head, strlen(head));
    db_quote(&sql, conn, r->text);
    strbuf_append(&sql, tail, strlen(tail));
    char *text = strbuf_take(&sql);
    r->st = text ? db_exec_autocommit(db, text, r->err, sizeof r->err) : DB_TRANSIENT;
    free(text);
}

static void create_app_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    char head[100];
    snprintf(head, sizeof head, "INSERT INTO applications (token, name) VALUES ('%s', ", r->token);
    exec_with_name(r, ctx, head, ")");
    if (r->st != DB_OK)
        return;
    r->status = 201;
    r->result = cJSON_CreateObject();
    cJSON_AddStringToObject(r->result, "name", r->text);
    cJSON_AddStringToObject(r->result, "token", r->token);
    cJSON_AddNumberToObject(r->result, "chats_count", 0);
}

static void create_app_done(void *arg)
{
    struct chat_req *r = arg;
    if (r->st == DB_OK)
        numbers_mark(r->loop, r->token, 0, 0);
    req_finish(r);
}

void chat_create_app(struct http_ctx *ctx)
{
    cJSON *body = http_body_json(ctx, app_fields, SB_ARRAY_LEN(app_fields), false);
    if (body == NULL)
        return;
    char token[TOKEN_LEN + 1];
    if (!make_token(token)) {
        cJSON_Delete(body);
        http_reply_error(ctx, 503, "internal", "no randomness available");
        return;
    }
    struct chat_req *r = req_new(ctx);
    if (r) {
        memcpy(r->token, token, sizeof token);
        r->text = strdup(json_str(body, "name", ""));
        submit(r, create_app_work, create_app_done);
    }
    cJSON_Delete(body);
}

static void add_app_row(struct chat_req *r, MYSQL_ROW row)
{
    cJSON_AddItemToArray(r->result, app_json(row));
    r->found = true;
}

static void list_apps_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    char sql[400];
    if (r->text) { /* after=<token>: continue behind that application */
        snprintf(sql, sizeof sql, "SELECT token, name, chats_count FROM applications"
                 " WHERE id > (SELECT id FROM applications WHERE token = '%s')"
                 " ORDER BY id LIMIT %lld", r->text, (long long)r->limit);
    } else {
        snprintf(sql, sizeof sql, "SELECT token, name, chats_count FROM applications"
                 " ORDER BY id LIMIT %lld", (long long)r->limit);
    }
    r->result = cJSON_CreateArray();
    query_rows(r, ctx, sql, add_app_row);
}

void chat_list_apps(struct http_ctx *ctx)
{
    char after[TOKEN_LEN + 1];
    int64_t limit;
    if (!page_params(ctx, &limit, NULL, after))
        return;
    struct chat_req *r = req_new(ctx);
    if (r == NULL)
        return;
    r->limit = limit;
    r->text = *after ? strdup(after) : NULL;
    submit(r, list_apps_work, req_finish);
}

static void get_app_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT token, name, chats_count FROM applications WHERE token = '%s'",
             r->token);
    r->result = cJSON_CreateArray();
    if (query_rows(r, ctx, sql, add_app_row) && !r->found)
        req_not_found(r, "application");
    cJSON *first = r->found ? cJSON_DetachItemFromArray(r->result, 0) : NULL;
    cJSON_Delete(r->result);
    r->result = first;
}

void chat_get_app(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1];
    if (!path_ids(ctx, token, NULL, NULL))
        return;
    struct chat_req *r = req_new(ctx);
    if (r == NULL)
        return;
    memcpy(r->token, token, sizeof token);
    submit(r, get_app_work, req_finish);
}

static void rename_app_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    char tail[64];
    snprintf(tail, sizeof tail, " WHERE token = '%s'", r->token);
    exec_with_name(r, ctx, "UPDATE applications SET name = ", tail);
    if (r->st == DB_OK)
        get_app_work(ctx, arg);
}

void chat_rename_app(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1];
    if (!path_ids(ctx, token, NULL, NULL))
        return;
    cJSON *body = http_body_json(ctx, app_fields, SB_ARRAY_LEN(app_fields), false);
    if (body == NULL)
        return;
    struct chat_req *r = req_new(ctx);
    if (r) {
        memcpy(r->token, token, sizeof token);
        r->text = strdup(json_str(body, "name", ""));
        submit(r, rename_app_work, req_finish);
    }
    cJSON_Delete(body);
}

/* ---- creating chats and messages: Redis number, Kafka job, 201 -------- */

static void start_create(struct chat_req *r);

static void job_delivered_on_loop(void *arg)
{
    struct chat_req *r = arg;
    if (r->st != DB_OK) {
        log_warn("enqueue failed", "request_id=%s err=\"%s\"", r->p->request_id, r->err);
        req_error(r, 503, "queue_unavailable", "the job queue did not accept the job; retry later");
        return;
    }
    cJSON *body = r->result;
    r->result = NULL;
    req_reply(r, r->status, body);
}

static void job_delivered(void *opaque, rd_kafka_resp_err_t err)
{
    struct chat_req *r = opaque;
    r->st = err ? DB_TRANSIENT : DB_OK;
    if (err)
        snprintf(r->err, sizeof r->err, "%s", rd_kafka_err2name(err));
    if (!loopq_post(r->loop->q, job_delivered_on_loop, r))
        log_error("cannot hand delivery report to loop (out of memory)", "request_id=%s",
                  r->p->request_id);
}

/* Enqueues the job; the reply (r->status, r->result) goes out on Kafka's ack. */
static void enqueue(struct chat_req *r, const char *type, cJSON *payload)
{
    char err[ERRBUF_LEN];
    char *job = envelope_encode(type, r->token, r->p->request_id, sb_now_ms(), payload, err,
                                sizeof err);
    if (job == NULL) {
        req_error(r, 500, "internal", "%s", err);
        return;
    }
    const struct job_type *jt = envelope_job_type(type);
    if (!kafka_produce(r->loop->d->producer, jt->topic, r->token, TOKEN_LEN, job, strlen(job),
                       NULL, job_delivered, r, err, sizeof err)) {
        log_warn("enqueue refused", "request_id=%s err=\"%s\"", r->p->request_id, err);
        req_error(r, 503, "queue_unavailable", "the job queue is full or unavailable; retry later");
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
    char sql[500], scope[64];
    if (r->msg)
        snprintf(scope, sizeof scope, "m:%s:%lld", r->token, (long long)r->chat);
    else
        snprintf(scope, sizeof scope, "c:%s", r->token);
    snprintf(sql, sizeof sql, "SELECT (SELECT COUNT(*) FROM applications WHERE token = '%s'),"
             " (SELECT COUNT(*) FROM chats WHERE application_token = '%s' AND number = %lld),"
             " (SELECT ceiling FROM number_blocks WHERE scope = '%s')",
             r->token, r->token, (long long)r->chat, scope);
    MYSQL_RES *res;
    r->st = db_query(ctx, sql, &res, r->err, sizeof r->err);
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
        req_finish(r);
        return;
    }
    bool exists = r->chat ? r->chat_exists : r->app_exists;
    if (!exists && r->uncertain && r->chat && r->app_exists && r->chat <= r->ceiling) {
        req_retry(r, "chat", r->chat);
        return;
    }
    if (!exists) {
        req_not_found(r, r->chat && r->app_exists ? "chat" : "application");
        req_finish(r);
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
    if (res == NUMBERS_UNAVAILABLE) {
        req_error(r, 503, "numbers_unavailable", "cannot allocate a number now; retry later");
        return;
    }
    if (res == NUMBERS_UNKNOWN_PARENT || res == NUMBERS_UNCERTAIN) {
        r->uncertain = res == NUMBERS_UNCERTAIN;
        if (r->retried) { /* marked a moment ago and gone again: Redis is flapping */
            req_error(r, 503, "numbers_unavailable", "cannot allocate a number now; retry later");
            return;
        }
        submit(r, parent_work, parent_done);
        return;
    }
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddStringToObject(payload, "application_token", r->token);
    if (r->chat) {
        cJSON_AddNumberToObject(payload, "chat_number", (double)r->chat);
        cJSON_AddNumberToObject(payload, "number", (double)number);
        cJSON_AddStringToObject(payload, "body", r->text);
    } else {
        cJSON_AddNumberToObject(payload, "number", (double)number);
    }
    r->status = 201;
    r->result = number_body(number);
    enqueue(r, r->chat ? "message.create" : "chat.create", payload);
}

static void start_create(struct chat_req *r)
{
    numbers_next(r->loop, r->token, r->chat, on_number, r);
}

void chat_create_chat(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1];
    if (!path_ids(ctx, token, NULL, NULL))
        return;
    cJSON *body = http_body_json(ctx, NULL, 0, true); /* no fields: {} or nothing */
    if (body == NULL)
        return;
    cJSON_Delete(body);
    struct chat_req *r = req_new(ctx);
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
    if (!path_ids(ctx, token, &chat, with_msg ? &msg : NULL))
        return NULL;
    char *text = message_body(ctx);
    if (text == NULL)
        return NULL;
    struct chat_req *r = req_new(ctx);
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
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddStringToObject(payload, "application_token", r->token);
    cJSON_AddNumberToObject(payload, "chat_number", (double)r->chat);
    cJSON_AddNumberToObject(payload, "number", (double)r->msg);
    cJSON_AddStringToObject(payload, "body", r->text);
    r->status = 200;
    r->result = number_body(r->msg);
    cJSON_AddStringToObject(r->result, "body", r->text);
    enqueue(r, "message.update", payload);
}

static void message_exists_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    parent_work(ctx, arg);
    if (r->st != DB_OK || !r->chat_exists)
        return;
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT 1 FROM messages WHERE application_token = '%s'"
             " AND chat_number = %lld AND number = %lld", r->token, (long long)r->chat,
             (long long)r->msg);
    r->st = db_exists(ctx, sql, &r->found, r->err, sizeof r->err);
}

static void message_exists_done(void *arg)
{
    struct chat_req *r = arg;
    if (r->st != DB_OK) {
        req_finish(r);
    } else if (!r->found && r->uncertain && r->chat_exists && r->msg <= r->ceiling) {
        req_retry(r, "message", r->msg);
    } else if (!r->found) {
        req_not_found(r, !r->app_exists ? "application" : !r->chat_exists ? "chat" : "message");
        req_finish(r);
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
    submit(r, message_exists_work, message_exists_done);
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
            req_not_found(r, "message"); /* its chat is not even persisted yet */
        } else if (r->limit == 0) {
            r->result = number_body(r->chat); /* GET one chat */
            cJSON_AddNumberToObject(r->result, "messages_count", 0);
        } else {
            r->result = cJSON_CreateArray(); /* a list or search of an empty chat */
        }
        r->status = r->result ? 200 : 404;
    } else if (res == NUMBERS_UNCERTAIN && !r->msg && r->chat <= r->ceiling) {
        req_retry(r, "chat", r->chat);
        return;
    } else {
        cJSON_Delete(r->result);
        r->result = NULL;
        req_not_found(r, r->app_exists ? "chat" : "application");
    }
    req_finish(r);
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
        req_not_found(r, "application");
    }
    req_finish(r);
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
    char sql[300];
    if (chat) /* one chat */
        snprintf(sql, sizeof sql, "SELECT number, messages_count FROM chats"
                 " WHERE application_token = '%s' AND number = %lld", r->token, (long long)chat);
    else
        snprintf(sql, sizeof sql, "SELECT number, messages_count FROM chats"
                 " WHERE application_token = '%s' AND number > %lld ORDER BY number LIMIT %lld",
                 r->token, (long long)r->after, (long long)r->limit);
    r->result = cJSON_CreateArray();
    if (!query_rows(r, ctx, sql, add_chat_row) || !chat)
        return;
    r->chat_exists = r->found;
    cJSON *first = r->found ? cJSON_DetachItemFromArray(r->result, 0) : NULL;
    cJSON_Delete(r->result);
    r->result = first;
}

void chat_list_chats(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1];
    int64_t limit, after;
    if (!path_ids(ctx, token, NULL, NULL) || !page_params(ctx, &limit, &after, NULL))
        return;
    struct chat_req *r = req_new(ctx);
    if (r == NULL)
        return;
    memcpy(r->token, token, sizeof token);
    r->limit = limit;
    r->after = after;
    submit(r, list_chats_work, read_done);
}

void chat_get_chat(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1];
    int64_t chat;
    if (!path_ids(ctx, token, &chat, NULL))
        return;
    struct chat_req *r = req_new(ctx);
    if (r == NULL)
        return;
    memcpy(r->token, token, sizeof token);
    r->chat = chat;
    r->limit = 0; /* marks "one chat" for on_chat_known */
    submit(r, list_chats_work, read_done);
}

static void add_message_row(struct chat_req *r, MYSQL_ROW row)
{
    cJSON *o = number_body(strtoll(row[0], NULL, 10));
    cJSON_AddStringToObject(o, "body", row[1]);
    cJSON_AddItemToArray(r->result, o);
    r->found = true;
}

static void list_messages_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    parent_work(ctx, arg);
    if (r->st != DB_OK || !r->chat_exists)
        return;
    char sql[300];
    if (r->msg)
        snprintf(sql, sizeof sql, "SELECT number, body FROM messages WHERE application_token = '%s'"
                 " AND chat_number = %lld AND number = %lld", r->token, (long long)r->chat,
                 (long long)r->msg);
    else
        snprintf(sql, sizeof sql, "SELECT number, body FROM messages WHERE application_token = '%s'"
                 " AND chat_number = %lld AND number > %lld ORDER BY number LIMIT %lld", r->token,
                 (long long)r->chat, (long long)r->after, (long long)r->limit);
    r->result = cJSON_CreateArray();
    if (!query_rows(r, ctx, sql, add_message_row) || !r->msg)
        return;
    cJSON *first = r->found ? cJSON_DetachItemFromArray(r->result, 0) : NULL;
    cJSON_Delete(r->result);
    r->result = first;
    if (!r->found)
        req_not_found(r, "message");
}

void chat_list_messages(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1];
    int64_t chat, limit, after;
    if (!path_ids(ctx, token, &chat, NULL) || !page_params(ctx, &limit, &after, NULL))
        return;
    struct chat_req *r = req_new(ctx);
    if (r == NULL)
        return;
    memcpy(r->token, token, sizeof token);
    r->chat = chat;
    r->limit = limit;
    r->after = after;
    submit(r, list_messages_work, read_done);
}

void chat_get_message(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1];
    int64_t chat, msg;
    if (!path_ids(ctx, token, &chat, &msg))
        return;
    struct chat_req *r = req_new(ctx);
    if (r == NULL)
        return;
    memcpy(r->token, token, sizeof token);
    r->chat = chat;
    r->msg = msg;
    submit(r, list_messages_work, read_done);
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
}

void chat_search_messages(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1], v[32];
    int64_t chat, limit, page = 1;
    if (!path_ids(ctx, token, &chat, NULL) || !page_params(ctx, &limit, NULL, NULL))
        return;
    if (http_query_param(ctx, "page", v, sizeof v) && !sb_parse_i64(v, 1, 1000, &page)) {
        http_reply_error(ctx, 400, "invalid_parameter", "page must be an integer from 1 to 1000");
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
        if (text == NULL) {
            http_reply_error(ctx, 503, "overloaded", "out of memory");
            return;
        }
    }
    struct chat_req *r = req_new(ctx);
    if (r == NULL) {
        free(text);
        return;
    }
    memcpy(r->token, token, sizeof token);
    r->chat = chat;
    r->limit = limit;
    r->offset = (page - 1) * limit;
    r->text = text;
    submit(r, search_work, read_done);
}
