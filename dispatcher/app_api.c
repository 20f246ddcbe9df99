/* app_api.c - applications over HTTP: create, list, get, rename.
 *
 * All four run on the MySQL pool and answer from its completion. An
 * application's token is its credential (access.h), 128 random bits. */
#include "app_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_req.h"
#include "envelope.h"
#include "numbers.h"
#include "strbuf.h"

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

static cJSON *app_json(MYSQL_ROW row)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", row[1]);
    cJSON_AddStringToObject(o, "token", row[0]);
    cJSON_AddNumberToObject(o, "chats_count", strtod(row[2], NULL));
    return o;
}

static const struct json_field app_fields[] = {
    {"name", JSON_K_STRING, true, 1, 255},
};

/* Runs sql (from db_sqlf; NULL: its error is in r->err) and frees it. */
static void exec_sql(struct chat_req *r, struct db *db, char *sql)
{
    r->st = sql ? db_exec_autocommit(db, sql, r->err, sizeof r->err) : DB_TRANSIENT;
    free(sql);
}

/* Runs work for the application token with the body's name (create,
 * rename); answers itself if it cannot. */
static void submit_named(struct http_ctx *ctx, const char *token, const cJSON *body,
                         threadpool_work_fn work, loopq_fn done)
{
    struct chat_req *r = chat_req_new(ctx);
    if (r == NULL)
        return;
    memcpy(r->token, token, TOKEN_LEN + 1);
    r->text = strdup(json_str(body, "name", ""));
    if (r->text == NULL) {
        chat_req_error(r, 503, "overloaded", "out of memory");
        return;
    }
    chat_req_submit(r, work, done);
}

static void create_app_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    exec_sql(r, ctx, db_sqlf(ctx, r->err, sizeof r->err,
                             "INSERT INTO applications (token, name) VALUES (%s, %s)", r->token, r->text));
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
    chat_req_finish(r);
}

void app_create(struct http_ctx *ctx)
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
    submit_named(ctx, token, body, create_app_work, create_app_done);
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
    char *sql;
    if (r->text) { /* after=<token>: continue behind that application */
        sql = db_sqlf(ctx, r->err, sizeof r->err, "SELECT token, name, chats_count FROM applications"
                      " WHERE id > (SELECT id FROM applications WHERE token = %s)"
                      " ORDER BY id LIMIT %lld", r->text, (long long)r->limit);
    } else {
        sql = db_sqlf(ctx, r->err, sizeof r->err, "SELECT token, name, chats_count FROM applications"
                      " ORDER BY id LIMIT %lld", (long long)r->limit);
    }
    r->result = cJSON_CreateArray();
    chat_req_query_rows(r, ctx, sql, add_app_row);
}

void app_list(struct http_ctx *ctx)
{
    char after[TOKEN_LEN + 1];
    int64_t limit;
    if (!chat_page_params(ctx, &limit, NULL, after))
        return;
    struct chat_req *r = chat_req_new(ctx);
    if (r == NULL)
        return;
    r->limit = limit;
    if (*after && (r->text = strdup(after)) == NULL) {
        chat_req_error(r, 503, "overloaded", "out of memory");
        return;
    }
    chat_req_submit(r, list_apps_work, chat_req_finish);
}

static void get_app_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    char *sql = db_sqlf(ctx, r->err, sizeof r->err,
                        "SELECT token, name, chats_count FROM applications WHERE token = %s", r->token);
    r->result = cJSON_CreateArray();
    if (chat_req_query_rows(r, ctx, sql, add_app_row) && !r->found)
        chat_req_not_found(r, "application");
    cJSON *first = r->found ? cJSON_DetachItemFromArray(r->result, 0) : NULL;
    cJSON_Delete(r->result);
    r->result = first;
}

void app_get(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1];
    if (!chat_path_ids(ctx, token, NULL, NULL))
        return;
    struct chat_req *r = chat_req_new(ctx);
    if (r == NULL)
        return;
    memcpy(r->token, token, sizeof token);
    chat_req_submit(r, get_app_work, chat_req_finish);
}

static void rename_app_work(void *ctx, void *arg)
{
    struct chat_req *r = arg;
    exec_sql(r, ctx, db_sqlf(ctx, r->err, sizeof r->err, "UPDATE applications SET name = %s WHERE token = %s",
                             r->text, r->token));
    if (r->st != DB_OK)
        return;
    get_app_work(ctx, arg);
    /* The answer is the name this request wrote: the row read back may
     * already hold a concurrent rename's. */
    if (r->result)
        cJSON_ReplaceItemInObjectCaseSensitive(r->result, "name", cJSON_CreateString(r->text));
}

void app_rename(struct http_ctx *ctx)
{
    char token[TOKEN_LEN + 1];
    if (!chat_path_ids(ctx, token, NULL, NULL))
        return;
    cJSON *body = http_body_json(ctx, app_fields, SB_ARRAY_LEN(app_fields), false);
    if (body == NULL)
        return;
    submit_named(ctx, token, body, rename_app_work, chat_req_finish);
    cJSON_Delete(body);
}

