/* wscmd.c - see wscmd.h. */
#include "wscmd.h"

#include <assert.h>
#include <limits.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpconn.h"
#include "json.h"

/* A command, the route it runs (by metrics name and method) and how many
 * of token, chat and message its path takes. */
struct op {
    const char *name;
    const char *route;
    const char *method;
    int nparams;
    const char *path; /* the path: ~ stands for the next parameter */
};

static const struct op ops[] = {
    {"chat.create", "chat_create", "POST", 1, "/api/v1/applications/~/chats"},
    {"message.create", "message_create", "POST", 2, "/api/v1/applications/~/chats/~/messages"},
    {"message.update", "message_update", "PUT", 3, "/api/v1/applications/~/chats/~/messages/~"},
    {"sms.send", "sms_send_one", "POST", 0, "/sms/send/one"},
    {"notification.send", "notify_create", "POST", 0, "/v1/messages"},
};


static const struct route *op_routes[SB_ARRAY_LEN(ops)];
static pthread_once_t op_routes_once = PTHREAD_ONCE_INIT;

/* Each op's route, looked up once (a scan of the table per command was
 * 2 % of the dispatcher's CPU under WebSocket load). */
static void find_op_routes(void)
{
    for (size_t k = 0; k < SB_ARRAY_LEN(ops); k++)
        for (size_t i = 0; i < dispatcher_nroutes && op_routes[k] == NULL; i++)
            if (strcmp(dispatcher_routes[i].name, ops[k].route) == 0 &&
                strcmp(dispatcher_routes[i].method, ops[k].method) == 0)
                op_routes[k] = &dispatcher_routes[i];
}

void wscmd_clear(struct wscmd *cmd)
{
    free(cmd->body);
    cmd->body = NULL;
    cJSON_Delete(cmd->json);
    cmd->json = NULL;
}

/* The id, kept as the JSON text the reply echoes. */
static bool read_id(const cJSON *v, struct wscmd *cmd, char *errbuf, size_t errlen)
{
    if (cJSON_IsString(v) && strlen(v->valuestring) <= WSCMD_ID_MAX) {
        struct strbuf b = {0};
        json_append_string(&b, v->valuestring);
        bool ok = !strbuf_failed(&b) && b.len < sizeof cmd->id;
        if (ok)
            memcpy(cmd->id, b.p, b.len + 1);
        strbuf_free(&b);
        return ok || sb_errf(errbuf, errlen, "%s", "out of memory");
    }
    int64_t n;
    if (json_exact_int(v, &n)) {
        sb_i64_to_str(n, cmd->id);
        return true;
    }
    return sb_errf(errbuf, errlen, "id must be a string of at most %d bytes or an integer", WSCMD_ID_MAX);
}

/* chat or message: an integer, as the path's decimal segment (the route
 * checks its range, as for a path: 400 invalid_number). */
static bool read_number(const cJSON *v, const char *name, char *out, char *errbuf, size_t errlen)
{
    int64_t n;
    if (!json_exact_int(v, &n))
        return sb_errf(errbuf, errlen, "%s must be an integer", name);
    sb_i64_to_str(n, out); /* at most 16 digits: no printf per command */
    return true;
}

/* Fills the path parameters op needs from the command's fields. */
static bool read_params(const struct op *o, const cJSON *const field[3], const char *token,
                        struct wscmd *cmd, char *errbuf, size_t errlen)
{
    static const char *const names[] = {"token", "chat", "message"};
    for (int i = 0; i < 3; i++) {
        const cJSON *v = field[i];
        if (i >= o->nparams) {
            if (v)
                return sb_errf(errbuf, errlen, "%s takes no %s", o->name, names[i]);
            continue;
        }
        if (i > 0) {
            if (v == NULL)
                return sb_errf(errbuf, errlen, "%s needs %s", o->name, names[i]);
            if (!read_number(v, names[i], cmd->params[i], errbuf, errlen))
                return false;
            continue;
        }
        if (v && (!cJSON_IsString(v) || strlen(v->valuestring) >= ROUTE_PARAM_MAX))
            return sb_errf(errbuf, errlen, "token must be a string of fewer than %d bytes", ROUTE_PARAM_MAX);
        if (v == NULL && *token == '\0')
            return sb_errf(errbuf, errlen, "%s needs token", o->name);
        const char *t = v ? v->valuestring : token;
        memcpy(cmd->params[0], t, strlen(t) + 1); /* shorter than ROUTE_PARAM_MAX: checked above */
    }
    cmd->nparams = o->nparams;
    /* The path, for messages and logs. It fits: the token is shorter than
     * ROUTE_PARAM_MAX, the numbers have at most 16 digits, and the rest of
     * the longest path is 40 bytes. */
    char *w = cmd->path;
    int k = 0;
    for (const char *p = o->path; *p; p++) {
        if (*p != '~') {
            *w++ = *p;
            continue;
        }
        size_t n = strlen(cmd->params[k]);
        memcpy(w, cmd->params[k++], n);
        w += n;
    }
    *w = '\0';
    assert(w < cmd->path + sizeof cmd->path);
    return true;
}

enum { F_ID, F_OP, F_TOKEN, F_CHAT, F_MESSAGE, F_BODY, F_N };

/* The field a member name (n bytes) is, or F_N. */
static int field_index(const char *s, size_t n)
{
    switch (n) {
    case 2: return memcmp(s, "id", 2) == 0 ? F_ID : memcmp(s, "op", 2) == 0 ? F_OP : F_N;
    case 4: return memcmp(s, "chat", 4) == 0 ? F_CHAT : memcmp(s, "body", 4) == 0 ? F_BODY : F_N;
    case 5: return memcmp(s, "token", 5) == 0 ? F_TOKEN : F_N;
    case 7: return memcmp(s, "message", 7) == 0 ? F_MESSAGE : F_N;
    default: return F_N;
    }
}

/* The command from its fields (unknown: the first member of another name,
 * or NULL). *body (field[F_BODY], standalone: no parent) is taken into
 * cmd->json when the line is within parsed_max; else printed into
 * cmd->body and left to the caller. */
static bool read_fields(const cJSON *const field[F_N], const cJSON *unknown, cJSON **body, size_t len,
                        size_t parsed_max, const char *token, struct wscmd *cmd, char *errbuf, size_t errlen)
{
    if (field[F_ID] == NULL)
        return sb_errf(errbuf, errlen, "%s", "a command needs an id");
    if (!read_id(field[F_ID], cmd, errbuf, errlen)) /* first: an error echoes it */
        return false;
    if (unknown)
        return sb_errf(errbuf, errlen, "unknown field '%.64s' (a command has id, op, token, chat, "
                       "message, body)", unknown->string);
    const cJSON *op = field[F_OP];
    const struct op *o = NULL;
    for (size_t i = 0; cJSON_IsString(op) && i < SB_ARRAY_LEN(ops) && o == NULL; i++)
        if (strcmp(op->valuestring, ops[i].name) == 0)
            o = &ops[i];
    if (o == NULL) {
        int n = snprintf(errbuf, errlen, "op must be one of");
        for (size_t i = 0; i < SB_ARRAY_LEN(ops) && n > 0 && (size_t)n < errlen; i++)
            n += snprintf(errbuf + n, errlen - (size_t)n, "%s %s", i ? "," : "", ops[i].name);
        return false;
    }
    cmd->op = o->name;
    pthread_once(&op_routes_once, find_op_routes);
    cmd->route = op_routes[o - ops];
    assert(cmd->route != NULL); /* every op names a route of the table */
    if (!read_params(o, &field[F_TOKEN], token, cmd, errbuf, errlen))
        return false;
    if (*body && !cJSON_IsObject(*body))
        return sb_errf(errbuf, errlen, "%s", "body must be an object (the route's request body)");
    if (*body && len <= parsed_max) { /* the body is shorter than its line */
        cmd->json = *body;
        *body = NULL;
        cmd->body_len = len;
    } else if (*body) {
        cmd->body = json_print(*body);
        if (cmd->body == NULL)
            return sb_errf(errbuf, errlen, "%s", "out of memory");
        cmd->body_len = strlen(cmd->body);
    }
    return true;
}

/* The general way: the fields of a parsed line. One pass over the members
 * (each lookup would be another): the first of a name counts, as for
 * cJSON's lookups. */
static bool parse_fields(cJSON *obj, size_t len, size_t parsed_max, const char *token, struct wscmd *cmd,
                         char *errbuf, size_t errlen)
{
    const cJSON *field[F_N] = {0}, *unknown = NULL;
    cJSON *f, *body = NULL;
    cJSON_ArrayForEach(f, obj) {
        int i = field_index(f->string, strlen(f->string));
        if (i == F_N && unknown == NULL)
            unknown = f;
        else if (i < F_N && field[i] == NULL)
            field[i] = i == F_BODY ? (body = f) : f;
    }
    if (body)
        cJSON_DetachItemViaPointer(obj, body);
    bool ok = read_fields(field, unknown, &body, len, parsed_max, token, cmd, errbuf, errlen);
    cJSON_Delete(body); /* not taken */
    return ok;
}

/* ---- the plain line, read without a tree --------------------------------
 *
 * Nearly every command is plain: known fields once each, ASCII strings
 * without escapes, integers, a body object. Such a line is read here
 * without a cJSON tree for its fields (a dozen and more allocations a
 * command): each field becomes a cJSON node on the stack, the body is
 * parsed alone, and parse_fields reads them as it reads a parsed line.
 * Anything else (an escape, another kind of value, a duplicate, an error
 * of any kind) goes the general way, which also words the error: this
 * path only ever says yes. fuzz/fuzz_wscmd checks that both agree. */

#define PLAIN_STR_MAX 128 /* longer strings go the general way */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* A string of printable ASCII without escapes at p ('"'): copied into out
 * (cap bytes, NUL-terminated); the byte after its closing quote, or NULL. */
static const char *plain_string(const char *p, const char *end, char *out, size_t cap)
{
    const char *q = ++p;
    while (q < end && *q != '"') {
        if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e || *q == '\\')
            return NULL;
        q++;
    }
    if (q == end || (size_t)(q - p) >= cap)
        return NULL;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
    return q + 1;
}

/* An integer of at most 15 digits without sign games ("-0", leading
 * zeros), fraction or exponent: the byte after it, or NULL. */
static const char *plain_int(const char *p, const char *end, double *out)
{
    bool neg = p < end && *p == '-';
    const char *d = p + neg, *q = d;
    int64_t v = 0;
    while (q < end && *q >= '0' && *q <= '9' && q - d < 16)
        v = v * 10 + (*q++ - '0');
    if (q == d || q - d > 15 || (*d == '0' && (q - d > 1 || neg)) ||
        (q < end && (*q == '.' || *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9'))))
        return NULL;
    *out = neg ? -(double)v : (double)v;
    return q;
}

/* The end of the object at p ('{'), past its '}', or NULL; *depth: its
 * deepest nesting (1 for an object of scalars). Strings are skipped with
 * their escapes; whether the text is JSON is the parser's to say. */
static const char *object_end(const char *p, const char *end, int *depth)
{
    int d = 0;
    *depth = 0;
    for (; p < end; p++) {
        if (*p == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            if (p >= end)
                return NULL;
        } else if (*p == '{' || *p == '[') {
            if (++d > *depth)
                *depth = d;
        } else if ((*p == '}' || *p == ']') && --d == 0) {
            return p + 1;
        }
    }
    return NULL;
}

static void cmd_reset(struct wscmd *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    memcpy(cmd->id, "null", 5);
}

bool wscmd_parse_plain(const char *line, size_t len, size_t parsed_max, const char *token,
                       struct wscmd *cmd)
{
    cJSON node[F_N];
    const cJSON *field[F_N] = {0};
    char val[F_N][PLAIN_STR_MAX];
    cJSON *body = NULL;
    cmd_reset(cmd);
    const char *p = skip_ws(line, line + len), *end = line + len;
    if (p == end || *p++ != '{')
        return false;
    p = skip_ws(p, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            char key[8];
            if (p == end || *p != '"' || !(p = plain_string(p, end, key, sizeof key)))
                goto general;
            int k = field_index(key, strlen(key));
            p = skip_ws(p, end);
            if (k == F_N || field[k] || p == end || *p++ != ':') /* unknown, or a duplicate */
                goto general;
            p = skip_ws(p, end);
            if (k == F_BODY) {
                int depth;
                const char *e = p < end && *p == '{' ? object_end(p, end, &depth) : NULL;
                char why[ERRBUF_LEN];
                if (e == NULL || depth + 1 > JSON_MAX_DEPTH ||
                    (body = json_parse_strict(p, (size_t)(e - p), why, sizeof why)) == NULL)
                    goto general;
                field[k] = body;
                p = e;
            } else if (p < end && *p == '"') {
                if (!(p = plain_string(p, end, val[k], sizeof val[k])))
                    goto general;
                node[k] = (cJSON){.type = cJSON_String, .valuestring = val[k]};
                field[k] = &node[k];
            } else {
                double v;
                if (!(p = plain_int(p, end, &v)))
                    goto general;
                /* valueint as cJSON sets it */
                node[k] = (cJSON){.type = cJSON_Number, .valuedouble = v,
                                  .valueint = v >= INT_MAX ? INT_MAX : v <= (double)INT_MIN ? INT_MIN : (int)v};
                field[k] = &node[k];
            }
            p = skip_ws(p, end);
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                continue;
            }
            if (p == end || *p++ != '}')
                goto general;
            break;
        }
    }
    if (skip_ws(p, end) != end)
        goto general;
    char err[ERRBUF_LEN];
    if (read_fields(field, NULL, &body, len, parsed_max, token, cmd, err, sizeof err)) {
        cJSON_Delete(body); /* printed (a long line) */
        return true;
    }
    wscmd_clear(cmd); /* the general way words the error */
    cmd_reset(cmd);
general:
    cJSON_Delete(body);
    return false;
}

bool wscmd_parse(const char *line, size_t len, size_t parsed_max, const char *token, struct wscmd *cmd,
                 char *errbuf, size_t errlen)
{
    if (wscmd_parse_plain(line, len, parsed_max, token, cmd))
        return true;
    return wscmd_parse_general(line, len, parsed_max, token, cmd, errbuf, errlen);
}

bool wscmd_parse_general(const char *line, size_t len, size_t parsed_max, const char *token,
                         struct wscmd *cmd, char *errbuf, size_t errlen)
{
    cmd_reset(cmd); /* the plain way may have read part of it */
    char why[ERRBUF_LEN];
    cJSON *obj = json_parse_strict(line, len, why, sizeof why);
    if (obj == NULL)
        return sb_errf(errbuf, errlen, "a command must be a JSON object: %s", why);
    bool ok = cJSON_IsObject(obj) ? parse_fields(obj, len, parsed_max, token, cmd, errbuf, errlen)
                                  : sb_errf(errbuf, errlen, "%s", "a command must be a JSON object");
    cJSON_Delete(obj);
    if (!ok)
        wscmd_clear(cmd);
    return ok;
}

bool wscmd_same(const struct wscmd *a, const struct wscmd *b)
{
    if (strcmp(a->id, b->id) != 0 || a->route != b->route || a->op != b->op || a->nparams != b->nparams ||
        strcmp(a->path, b->path) != 0 || a->body_len != b->body_len || !a->json != !b->json ||
        !a->body != !b->body || (a->body && strcmp(a->body, b->body) != 0))
        return false;
    for (int i = 0; i < a->nparams; i++)
        if (strcmp(a->params[i], b->params[i]) != 0)
            return false;
    if (a->json == NULL)
        return true;
    /* As text: cJSON_Compare finds members by name, so it tells two
     * bodies with a name twice apart even when they are the same. */
    char *ta = json_print(a->json), *tb = json_print(b->json);
    bool same = ta && tb && strcmp(ta, tb) == 0;
    free(ta);
    free(tb);
    return same;
}

bool wscmd_temporary(int status)
{
    return status == 408 || status == 429 || status == 502 || status == 503 || status == 504;
}

/* error (an {"error":{...}} body) gains "temporary"; false if it is not one. */
static bool add_temporary(cJSON *body, bool temporary)
{
    cJSON *err = cJSON_GetObjectItemCaseSensitive(body, "error");
    return cJSON_IsObject(err) && cJSON_GetObjectItemCaseSensitive(err, "temporary") == NULL &&
           cJSON_AddBoolToObject(err, "temporary", temporary) != NULL;
}

/* The reply line around a body that is final as it stands. */
static void append_reply(struct strbuf *b, const char *id, int status, const char *body, size_t len)
{
    strbuf_append_lit(b, "{\"id\":");
    strbuf_append(b, id, strlen(id));
    strbuf_append_lit(b, ",\"status\":");
    strbuf_append_i64(b, status);
    strbuf_append_lit(b, ",\"body\":");
    if (len)
        strbuf_append(b, body, len);
    else
        strbuf_append_lit(b, "{}");
    strbuf_append_lit(b, "}\n");
}

void wscmd_reply(struct strbuf *b, const char *id, int status, const char *body, size_t len, bool retry_after)
{
    char *err = NULL;
    if (status >= 400) { /* the route's error body, with "temporary" */
        cJSON *o = cJSON_ParseWithLength(body, len);
        if (add_temporary(o, retry_after || wscmd_temporary(status)))
            err = json_print(o);
        cJSON_Delete(o);
    }
    if (err)
        append_reply(b, id, status, err, strlen(err));
    else
        append_reply(b, id, status, body, len);
    free(err);
}

void wscmd_reply_error(struct strbuf *b, const char *id, int status, const char *code, const char *msg)
{
    cJSON *body = json_error_body(code, msg);
    char *text = body && add_temporary(body, wscmd_temporary(status)) ? json_print(body) : NULL;
    cJSON_Delete(body);
    if (text)
        append_reply(b, id, status, text, strlen(text));
    else
        wscmd_reply(b, id, 500, HTTP_OOM_BODY, sizeof HTTP_OOM_BODY - 1, false);
    free(text);
}
