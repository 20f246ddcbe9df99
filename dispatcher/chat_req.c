/* chat_req.c - see chat_req.h. */
#include "chat_req.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "log.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX 100

static bool token_valid(const char *t)
{
    return sb_token_valid(t, TOKEN_LEN, TOKEN_LEN);
}

struct chat_req *chat_req_new(struct http_ctx *ctx)
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
    r->tenant = threadpool_tenant(ctx->principal);
    return r;
}

bool chat_req_hold(struct chat_req *r, size_t bytes)
{
    struct dispatcher *d = r->loop->d;
    /* Until it is written out an answer lives three times: its cJSON tree,
     * its text, and the connection's copy of it. */
    bytes *= 3;
    long long held = atomic_fetch_add(&d->out_reserved, (long long)bytes) + atomic_load(&d->out_bytes);
    r->reserve = bytes;
    r->reserved = true;
    if (held + (long long)bytes <= d->cfg->max_output_bytes || bytes <= HTTP_OUT_SMALL)
        return true;
    cJSON_Delete(r->result);
    r->result = NULL;
    r->status = 503;
    r->errcode = "overloaded";
    r->retry_after = true;
    snprintf(r->errmsg, sizeof r->errmsg,
             "the server holds as many large answers as it may (max_output_bytes); retry shortly");
    return false;
}

void chat_req_free(struct chat_req *r)
{
    if (r->reserved)
        atomic_fetch_sub(&r->loop->d->out_reserved, (long long)r->reserve);
    cJSON_Delete(r->result);
    free(r->text);
    free(r);
}

void chat_req_retry(struct chat_req *r, const char *what, int64_t n)
{
    http_req_add_header(r->p->req, "Retry-After", "1");
    chat_req_error(r, 503, "not_confirmed",
                   "%s %lld is not confirmed yet (the cache was lost a moment ago); retry shortly", what, (long long)n);
}

void chat_req_reply(struct chat_req *r, int status, cJSON *body)
{
    http_pending_reply(r->p, status, body);
    cJSON_Delete(body);
    chat_req_free(r);
}

void chat_req_finish(void *arg)
{
    struct chat_req *r = arg;
    if (r->expired) {
        http_pending_busy(r->p);
        chat_req_free(r);
    } else if (r->st == DB_TRANSIENT) {
        log_warn("database unavailable", "request_id=%s err=\"%s\"", r->p->request_id, r->err);
        chat_req_error(r, 503, "database_unavailable", "the database is unavailable; retry later");
    } else if (r->st == DB_FATAL) {
        log_error("database error", "request_id=%s err=\"%s\"", r->p->request_id, r->err);
        chat_req_error(r, 500, "internal", "database error");
    } else if (r->result) {
        cJSON *body = r->result;
        r->result = NULL;
        chat_req_reply(r, r->status ? r->status : 200, body);
    } else {
        if (r->retry_after)
            http_req_add_header(r->p->req, "Retry-After", "1");
        chat_req_error(r, r->status, r->errcode, "%s", r->errmsg);
    }
}

void chat_req_not_found(struct chat_req *r, const char *what)
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

static void chat_req_expire(void *arg)
{
    struct chat_req *r = arg;
    r->expired = true;
    r->st = DB_TRANSIENT;
    snprintf(r->err, sizeof r->err, "waited past its deadline for a database thread");
}

void chat_req_submit(struct chat_req *r, threadpool_work_fn work, loopq_fn done)
{
    if (!http_pool_submit(r->p, r->loop->d->dbpool, r->tenant, work, chat_req_expire, done, r))
        chat_req_free(r);
}

bool chat_path_ids(struct http_ctx *ctx, char *token, int64_t *chat, int64_t *msg)
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

bool chat_page_params(struct http_ctx *ctx, int64_t *limit, int64_t *after, char *after_token)
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
    } else if (after == NULL || !sb_parse_i64(v, 0, NUMBER_MAX, after)) { /* NULL: not this route's */
        http_reply_error(ctx, 400, "invalid_parameter", "after must be an integer from 0 to %lld",
                         (long long)NUMBER_MAX);
        return false;
    }
    return true;
}

bool chat_req_query_rows(struct chat_req *r, struct db *db, char *sql,
                         void (*each)(struct chat_req *r, MYSQL_ROW row))
{
    MYSQL_RES *res;
    r->st = sql ? db_query(db, sql, &res, r->err, sizeof r->err) : DB_TRANSIENT;
    free(sql);
    if (r->st != DB_OK)
        return false;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL)
        each(r, row);
    mysql_free_result(res);
    return true;
}

