/* suppress_api.c - see suppress_api.h. */
#include "suppress_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "suppress.h"
#include "threadpool.h"

enum supp_op { SUPP_LIST, SUPP_ADD, SUPP_REMOVE };

struct supp_req {
    struct http_pending *p;
    enum supp_op op;
    enum note_channel channel;
    char address[NOTE_TO_MAX + 1], scope[NOTE_TO_MAX + 1], reason[SUPPRESS_REASON_MAX + 1];
    bool has_address, existed, found;
    int limit;
    cJSON *list;
    struct suppression before;
    char actor[40];
    enum db_status st;
    char err[ERRBUF_LEN];
};

static void supp_expire(void *arg)
{
    struct supp_req *r = arg;
    r->st = DB_TRANSIENT;
    snprintf(r->err, sizeof r->err, "the database pool was busy");
}

static void supp_work(void *ctx, void *arg)
{
    struct supp_req *r = arg;
    switch (r->op) {
    case SUPP_LIST:
        r->st = suppress_list(ctx, r->has_address ? r->address : NULL, r->limit, r->list, r->err, sizeof r->err);
        break;
    case SUPP_ADD: /* the entry as it was, then (if new) added */
        r->st = suppress_find(ctx, r->channel, r->address, r->scope, &r->existed, &r->before, r->err, sizeof r->err);
        r->existed = r->existed && strcmp(r->before.scope, r->scope) == 0;
        if (r->st == DB_OK && !r->existed)
            r->st = suppress_add(ctx, r->channel, r->address, r->scope, r->reason, sb_now_ms(), r->err,
                                 sizeof r->err);
        break;
    case SUPP_REMOVE:
        r->st = suppress_remove(ctx, r->channel, r->address, r->scope, &r->found, r->err, sizeof r->err);
        break;
    }
}

static void supp_done(void *arg)
{
    struct supp_req *r = arg;
    if (r->st != DB_OK) {
        log_warn("suppression list unavailable", "err=\"%s\"", r->err);
        http_pending_error(r->p, 503, "database_unavailable", "the suppression list is unavailable; retry later");
    } else if (r->op == SUPP_LIST) {
        http_pending_reply(r->p, 200, r->list);
    } else if (r->op == SUPP_REMOVE && !r->found) {
        http_pending_errorf(r->p, 404, "not_found", "%s %s is not suppressed for %s", note_channel_name(r->channel),
                            r->address, r->scope);
    } else if (r->op == SUPP_REMOVE) {
        log_info("suppression removed", "by=%s channel=%s address=%s scope=%s", r->actor,
                 note_channel_name(r->channel), r->address, r->scope);
        http_pending_reply_text(r->p, 204, "", 0);
    } else {
        if (!r->existed)
            log_info("suppression added", "by=%s channel=%s address=%s scope=%s reason=\"%s\"", r->actor,
                     note_channel_name(r->channel), r->address, r->scope, r->reason);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "channel", note_channel_name(r->channel));
        cJSON_AddStringToObject(o, "address", r->address);
        cJSON_AddStringToObject(o, "scope", r->scope);
        cJSON_AddStringToObject(o, "reason", r->existed ? r->before.reason : r->reason);
        http_pending_reply(r->p, r->existed ? 200 : 201, o);
        cJSON_Delete(o);
    }
    cJSON_Delete(r->list);
    free(r);
}

static void submit(struct http_ctx *ctx, struct supp_req *r)
{
    if ((r->p = http_pending_new(ctx)) == NULL) {
        cJSON_Delete(r->list);
        free(r);
        return;
    }
    snprintf(r->actor, sizeof r->actor, "%s", ctx->principal);
    if (!http_pool_submit(r->p, ctx->loop->d->dbpool, threadpool_tenant(ctx->principal), supp_work, supp_expire,
                          supp_done, r)) {
        cJSON_Delete(r->list);
        free(r);
    }
}

/* Checks channel, address and scope as a send would check them; false
 * with why. */
static bool entry_valid(struct supp_req *r, const char *channel, char *why, size_t cap)
{
    if (!note_channel_parse(channel, &r->channel) || (r->channel != CH_SMS && r->channel != CH_EMAIL)) {
        snprintf(why, cap, "channel must be sms or email");
        return false;
    }
    bool all = strcmp(r->scope, SUPPRESS_SCOPE_ALL) == 0;
    if (r->channel == CH_EMAIL && !all) {
        snprintf(why, cap, "an email address is suppressed for every sender: scope must be \"*\"");
        return false;
    }
    /* The body only stands in: an SMS needs one to pass the check. */
    struct note_msg m = {.channel = r->channel, .to = r->address, .from = all ? "" : r->scope, .title = "",
                         .body = "x"};
    if (!note_msg_check(&m, "", why, cap)) /* names to and from: address and scope here */
        return false;
    return true;
}

void suppress_list_get(struct http_ctx *ctx)
{
    struct supp_req *r = calloc(1, sizeof *r);
    char limit[16] = "100";
    if (r == NULL || (r->list = cJSON_CreateArray()) == NULL) {
        free(r);
        http_reply_error(ctx, 503, "overloaded", "out of memory");
        return;
    }
    r->op = SUPP_LIST;
    r->has_address = http_query_param(ctx, "address", r->address, sizeof r->address);
    http_query_param(ctx, "limit", limit, sizeof limit);
    char *end;
    long n = strtol(limit, &end, 10);
    if ((r->has_address && !*r->address) || *end || !*limit || n < 1 || n > 1000) {
        cJSON_Delete(r->list);
        free(r);
        http_reply_error(ctx, 400, "invalid_parameter", "%s", "address names a recipient; limit is 1 to 1000");
        return;
    }
    r->limit = (int)n;
    submit(ctx, r);
}

static const struct json_field add_fields[] = {
    {"channel", JSON_K_STRING, true, 1, 8},
    {"address", JSON_K_BYTES, true, 1, NOTE_TO_MAX},
    {"scope", JSON_K_BYTES, false, 1, NOTE_TO_MAX},
    {"reason", JSON_K_STRING, false, 1, 200},
};

void suppress_add_post(struct http_ctx *ctx)
{
    cJSON *body = http_body_json(ctx, add_fields, SB_ARRAY_LEN(add_fields), false);
    if (body == NULL)
        return;
    struct supp_req *r = calloc(1, sizeof *r);
    char why[ERRBUF_LEN];
    if (r == NULL) {
        cJSON_Delete(body);
        http_reply_error(ctx, 503, "overloaded", "out of memory");
        return;
    }
    r->op = SUPP_ADD;
    snprintf(r->address, sizeof r->address, "%s", json_str(body, "address", ""));
    snprintf(r->scope, sizeof r->scope, "%s", json_str(body, "scope", SUPPRESS_SCOPE_ALL));
    snprintf(r->reason, sizeof r->reason, "%s", json_str(body, "reason", "operator"));
    bool ok = entry_valid(r, json_str(body, "channel", ""), why, sizeof why);
    cJSON_Delete(body);
    if (!ok) {
        free(r);
        http_reply_error(ctx, 400, "invalid_field", "%s", why);
        return;
    }
    submit(ctx, r);
}

void suppress_remove_delete(struct http_ctx *ctx)
{
    struct supp_req *r = calloc(1, sizeof *r);
    char channel[16] = "", why[ERRBUF_LEN];
    if (r == NULL) {
        http_reply_error(ctx, 503, "overloaded", "out of memory");
        return;
    }
    r->op = SUPP_REMOVE;
    snprintf(r->scope, sizeof r->scope, SUPPRESS_SCOPE_ALL);
    http_query_param(ctx, "channel", channel, sizeof channel);
    http_query_param(ctx, "address", r->address, sizeof r->address);
    http_query_param(ctx, "scope", r->scope, sizeof r->scope);
    if (!*r->address || !*r->scope)
        snprintf(why, sizeof why, "channel and address name the entry (scope: \"*\" by default)");
    if (!*r->address || !*r->scope || !entry_valid(r, channel, why, sizeof why)) {
        free(r);
        http_reply_error(ctx, 400, "invalid_parameter", "%s", why);
        return;
    }
    submit(ctx, r);
}
