/* phonebook_api.c - find, reserve and assign phone numbers.
 *
 * Redis holds the live state: a set of free numbers per area code
 * (pb:pool:<ac>), each reservation (pb:res:<ref>: area code, numbers,
 * expiry) indexed by expiry time (pb:expiry), idempotency keys
 * (pb:idem:<key>) and the numbers assigned so far (pb:assigned). Each
 * operation is one Lua script, so two clients can never take the same
 * number. MySQL is the durable record: reserve marks the rows RESERVED
 * before answering; assign is applied by the phonebook worker from the
 * phonebook.assign job, answered once Kafka has it. The phonebook worker
 * also returns expired reservations to the pool.
 *
 * When Redis has no pool (first start, FLUSHALL, a restart without data)
 * it is rebuilt from MySQL (pbpool.c) before reserving goes on. */
#include "phonebook_api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "findcache.h"
#include "log.h"
#include "pbpool.h"
#include "phone.h"

#define RESERVE_COUNT 5

static struct metric *m_find_db; /* MySQL lookups made by /phonebook/find */

void pb_init(void)
{
    m_find_db = metrics_counter("switchboard_find_db_lookups_total", "",
                                "MySQL lookups made by /phonebook/find (cache and Redis missed)");
}

/* KEYS: pool, expiry, loaded marker, idempotency key (or "").
 * ARGV: ref, now_ms, ttl_ms, area code.
 * -> {-1} no pool loaded, {0} none free, {1|2, ref, numbers...}: 1 new,
 *    2 the live reservation made earlier with the same idempotency key. */
static const char reserve_lua[] =
    "if redis.call('EXISTS', KEYS[3]) == 0 then return {-1} end\n"
    "if KEYS[4] ~= '' then\n"
    "  local old = redis.call('GET', KEYS[4])\n"
    "  if old then\n"
    "    local nums = redis.call('HGET', 'pb:res:' .. old, 'numbers')\n"
    "    if nums then\n"
    "      local out = {2, old}\n"
    "      for n in string.gmatch(nums, '[^,]+') do out[#out + 1] = n end\n"
    "      return out\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local nums = redis.call('SPOP', KEYS[1], 5)\n"
    "if #nums == 0 then return {0} end\n"
    "local exp = tonumber(ARGV[2]) + tonumber(ARGV[3])\n"
    "redis.call('HSET', 'pb:res:' .. ARGV[1], 'ac', ARGV[4], 'numbers', table.concat(nums, ','),\n"
    "           'expires', exp)\n"
    "redis.call('ZADD', KEYS[2], exp, ARGV[1])\n"
    "if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[3]) end\n"
    "local out = {1, ARGV[1]}\n"
    "for _, n in ipairs(nums) do out[#out + 1] = n end\n"
    "return out\n";

/* KEYS: expiry, idempotency key (or ""). ARGV: ref. Undoes a reservation
 * whose MySQL write failed: numbers back to the pool. */
static const char unreserve_lua[] =
    "local key = 'pb:res:' .. ARGV[1]\n"
    "local ac, nums = redis.call('HGET', key, 'ac'), redis.call('HGET', key, 'numbers')\n"
    "if not nums then return 0 end\n"
    "for n in string.gmatch(nums, '[^,]+') do redis.call('SADD', 'pb:pool:' .. ac, n) end\n"
    "redis.call('DEL', key) redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "if KEYS[2] ~= '' then redis.call('DEL', KEYS[2]) end\n"
    "return 1\n";

/* KEYS: expiry, assigned. ARGV: ref, phone, now_ms.
 * -> 1 taken (the other numbers are back in the pool), -1 no such
 * reservation, -2 expired, -3 the number is not in it. */
static const char assign_lua[] =
    "local key = 'pb:res:' .. ARGV[1]\n"
    "local nums = redis.call('HGET', key, 'numbers')\n"
    "if not nums then return -1 end\n"
    "if tonumber(redis.call('HGET', key, 'expires')) <= tonumber(ARGV[3]) then return -2 end\n"
    "local found = false\n"
    "for n in string.gmatch(nums, '[^,]+') do if n == ARGV[2] then found = true end end\n"
    "if not found then return -3 end\n"
    "local ac = redis.call('HGET', key, 'ac')\n"
    "for n in string.gmatch(nums, '[^,]+') do\n"
    "  if n ~= ARGV[2] then redis.call('SADD', 'pb:pool:' .. ac, n) end\n"
    "end\n"
    "redis.call('DEL', key) redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('SADD', KEYS[2], ARGV[2])\n"
    "return 1\n";

struct pb_req {
    struct http_pending *p;
    struct loop *loop;
    char area[4];
    char idem[65];
    char ref[65];
    char phone[PHONE_MAX + 1];
    int64_t user_id;
    char numbers[RESERVE_COUNT][PHONE_MAX + 1];
    int nnumbers;
    bool fresh;   /* a new reservation, not an idempotent repeat */
    bool rebuilt; /* the pool was rebuilt once for this request */
    /* pool results */
    enum db_status st;
    char err[ERRBUF_LEN];
    bool user_exists;
    char user_phone[PHONE_MAX + 1];
    bool exists;
};

static struct pb_req *pb_new(struct http_ctx *ctx)
{
    struct pb_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        http_reply_error(ctx, 503, "overloaded", "out of memory");
        return NULL;
    }
    if ((r->p = http_pending_new(ctx)) == NULL) {
        free(r);
        return NULL;
    }
    r->loop = ctx->loop;
    return r;
}

#define pb_error(r, status, code, ...)                             \
    do {                                                           \
        http_pending_errorf((r)->p, status, code, __VA_ARGS__);    \
        free(r);                                                   \
    } while (0)

static void pb_reply(struct pb_req *r, int status, cJSON *body)
{
    http_pending_reply(r->p, status, body);
    cJSON_Delete(body);
    free(r);
}

static bool submit(struct pb_req *r, threadpool_work_fn work, loopq_fn done)
{
    if (threadpool_submit(r->loop->d->dbpool, work, done, r->loop->q, r))
        return true;
    pb_error(r, 503, "overloaded", "cannot queue the database request");
    return false;
}

static void db_failed(struct pb_req *r)
{
    log_warn("database unavailable", "request_id=%s err=\"%s\"", r->p->request_id, r->err);
    pb_error(r, 503, "database_unavailable", "the database is unavailable; retry later");
}

/* ---- reserve ----------------------------------------------------------- */

static const struct json_field reserve_fields[] = {
    {"areaCode", JSON_K_STRING, true, 1, 8},
    {"idempotencyKey", JSON_K_TOKEN, false, 1, 64},
};

static void start_reserve(struct pb_req *r);

static cJSON *reservation_body(const struct pb_req *r)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "refId", r->ref);
    cJSON *arr = cJSON_AddArrayToObject(body, "phoneNumbers");
    for (int i = 0; i < r->nnumbers; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(r->numbers[i]));
    return body;
}

static void unreserve(struct pb_req *r)
{
    char idem[100] = "";
    if (*r->idem)
        snprintf(idem, sizeof idem, "pb:idem:%s", r->idem);
    const char *argv[] = {"EVAL", unreserve_lua, "2", PB_EXPIRY_KEY, idem, r->ref};
    if (!redis_client_command_argv(r->loop->redis, NULL, NULL, 6, argv, NULL))
        log_warn("cannot return reserved numbers to the pool; they return when the reservation expires",
                 "ref=%s", r->ref);
}

/* Pool: the reserved rows become RESERVED under this reservation. */
static void mark_reserved_work(void *ctx, void *arg)
{
    struct pb_req *r = arg;
    struct strbuf sql = {0};
    strbuf_appendf(&sql, "UPDATE numbers SET status = 'RESERVED', ref_id = '%s', reserved_at = NOW(3)"
                         " WHERE status <> 'ASSIGNED' AND phone_number IN (", r->ref);
    for (int i = 0; i < r->nnumbers; i++)
        strbuf_appendf(&sql, "%s'%s'", i ? "," : "", r->numbers[i]);
    strbuf_append(&sql, ")", 1);
    char *text = strbuf_take(&sql);
    r->st = text ? db_exec_autocommit(ctx, text, r->err, sizeof r->err) : DB_TRANSIENT;
    free(text);
}

static void mark_reserved_done(void *arg)
{
    struct pb_req *r = arg;
    if (r->st != DB_OK) {
        unreserve(r);
        db_failed(r);
        return;
    }
    pb_reply(r, 200, reservation_body(r));
}

static void rebuild_done(void *arg, bool ok)
{
    struct pb_req *r = arg;
    if (!ok) {
        pb_error(r, 503, "pool_unavailable", "the pool of free numbers is being rebuilt; retry shortly");
        return;
    }
    r->rebuilt = true;
    start_reserve(r);
}

static void on_reserve(redisAsyncContext *ac, void *rep, void *priv)
{
    (void)ac;
    struct pb_req *r = priv;
    redisReply *reply = rep;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_error("reserve script failed", "err=\"%s\"", reply->str);
        pb_error(r, 503, "cache_unavailable", "the reservation store is unavailable; retry later");
        return;
    }
    long long code = reply->element[0]->integer;
    if (code == -1) {
        if (r->rebuilt)
            pb_error(r, 503, "pool_unavailable", "the pool of free numbers is being rebuilt; retry shortly");
        else
            pbpool_rebuild(r->loop, rebuild_done, r);
        return;
    }
    if (code == 0) {
        pb_error(r, 409, "no_free_numbers", "no free numbers left in area code %s", r->area);
        return;
    }
    snprintf(r->ref, sizeof r->ref, "%s", reply->element[1]->str);
    r->nnumbers = 0;
    for (size_t i = 2; i < reply->elements && r->nnumbers < RESERVE_COUNT; i++)
        snprintf(r->numbers[r->nnumbers++], PHONE_MAX + 1, "%s", reply->element[i]->str);
    r->fresh = code == 1;
    if (!r->fresh) { /* the same reservation again: already recorded */
        pb_reply(r, 200, reservation_body(r));
        return;
    }
    submit(r, mark_reserved_work, mark_reserved_done);
}

static void start_reserve(struct pb_req *r)
{
    char pool[PB_POOL_KEY_LEN], idem[100] = "", now[24], ttl[24];
    area_pool_key(r->area, pool);
    if (*r->idem)
        snprintf(idem, sizeof idem, "pb:idem:%s", r->idem);
    snprintf(now, sizeof now, "%lld", (long long)sb_now_ms());
    snprintf(ttl, sizeof ttl, "%lld", (long long)r->loop->d->cfg->reservation_ttl_s * 1000);
    const char *argv[] = {"EVAL", reserve_lua, "4", pool, PB_EXPIRY_KEY, PB_POOL_LOADED_KEY,
                          idem, r->ref, now, ttl, r->area};
    if (!redis_client_command_argv(r->loop->redis, on_reserve, r, 11, argv, NULL))
        pb_error(r, 503, "cache_unavailable", "the reservation store is unavailable; retry later");
}

void pb_reserve(struct http_ctx *ctx)
{
    cJSON *body = http_body_json(ctx, reserve_fields, SB_ARRAY_LEN(reserve_fields), false);
    if (body == NULL)
        return;
    const char *area = json_str(body, "areaCode", "");
    if (!area_code_valid(area)) {
        http_reply_error(ctx, 400, "invalid_field",
                         "areaCode must be three digits, the first 2-9 (got '%.8s')", area);
        cJSON_Delete(body);
        return;
    }
    struct pb_req *r = pb_new(ctx);
    if (r) {
        snprintf(r->area, sizeof r->area, "%s", area);
        snprintf(r->idem, sizeof r->idem, "%s", json_str(body, "idempotencyKey", ""));
        char id[33];
        if (!sb_random_id(id)) {
            cJSON_Delete(body);
            pb_error(r, 503, "internal", "no randomness available");
            return;
        }
        memcpy(r->ref, id, sizeof id);
        start_reserve(r);
    }
    cJSON_Delete(body);
}

/* ---- assign ------------------------------------------------------------ */

static const struct json_field assign_fields[] = {
    {"userId", JSON_K_INT, true, 1, INT64_C(1) << 53},
    {"refId", JSON_K_TOKEN, true, 1, 64},
    {"phoneNumber", JSON_K_STRING, true, 1, PHONE_MAX},
};

static void user_work(void *ctx, void *arg)
{
    struct pb_req *r = arg;
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT phone_number FROM users WHERE user_id = %lld",
             (long long)r->user_id);
    MYSQL_RES *res;
    r->st = db_query(ctx, sql, &res, r->err, sizeof r->err);
    if (r->st != DB_OK)
        return;
    MYSQL_ROW row = mysql_fetch_row(res);
    r->user_exists = row != NULL;
    snprintf(r->user_phone, sizeof r->user_phone, "%s", row && row[0] ? row[0] : "");
    mysql_free_result(res);
}

static cJSON *assigned_body(void)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "assigned", true);
    return o;
}

static void assign_undo(struct pb_req *r)
{
    /* The reservation is spent; put the number back so it is not lost. */
    char pool[PB_POOL_KEY_LEN];
    phone_pool_key(r->phone, pool);
    if (!redis_client_command(r->loop->redis, NULL, NULL, "SREM %s %s", PB_ASSIGNED_KEY, r->phone) ||
        !redis_client_command(r->loop->redis, NULL, NULL, "SADD %s %s", pool, r->phone))
        log_warn("cannot return an unassigned number to the pool", "phone=%s", r->phone);
}

static void assign_on_loop(void *arg)
{
    struct pb_req *r = arg;
    if (r->st != DB_OK) {
        log_warn("enqueue failed", "request_id=%s err=\"%s\"", r->p->request_id, r->err);
        assign_undo(r);
        pb_error(r, 503, "queue_unavailable",
                 "the job queue did not accept the assignment; reserve again and retry");
        return;
    }
    pb_reply(r, 200, assigned_body());
}

static void assign_delivered(void *opaque, rd_kafka_resp_err_t err)
{
    struct pb_req *r = opaque;
    r->st = err ? DB_TRANSIENT : DB_OK;
    if (err)
        snprintf(r->err, sizeof r->err, "%s", rd_kafka_err2name(err));
    if (!loopq_post(r->loop->q, assign_on_loop, r))
        log_error("cannot hand delivery report to loop (out of memory)", "request_id=%s",
                  r->p->request_id);
}

static void enqueue_assign(struct pb_req *r)
{
    char err[ERRBUF_LEN];
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddNumberToObject(payload, "user_id", (double)r->user_id);
    cJSON_AddStringToObject(payload, "phone_number", r->phone);
    cJSON_AddStringToObject(payload, "ref_id", r->ref);
    char *job = envelope_encode("phonebook.assign", r->phone, r->p->request_id, sb_now_ms(),
                                payload, err, sizeof err);
    if (job == NULL) {
        assign_undo(r);
        pb_error(r, 500, "internal", "%s", err);
        return;
    }
    if (!kafka_produce(r->loop->d->producer, "phonebook.commands", r->phone, strlen(r->phone), job,
                       strlen(job), NULL, assign_delivered, r, err, sizeof err)) {
        log_warn("enqueue refused", "request_id=%s err=\"%s\"", r->p->request_id, err);
        assign_undo(r);
        pb_error(r, 503, "queue_unavailable", "the job queue is full or unavailable; retry later");
    }
    free(job);
}

static void on_assign(redisAsyncContext *ac, void *rep, void *priv)
{
    (void)ac;
    struct pb_req *r = priv;
    redisReply *reply = rep;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_error("assign script failed", "err=\"%s\"", reply->str);
        pb_error(r, 503, "cache_unavailable", "the reservation store is unavailable; retry later");
        return;
    }
    switch (reply->integer) {
    case 1:
        enqueue_assign(r);
        break;
    case -1:
        pb_error(r, 404, "unknown_reservation", "no reservation %s (unknown, already used, or expired)", r->ref);
        break;
    case -2:
        pb_error(r, 409, "reservation_expired", "reservation %s has expired; reserve again", r->ref);
        break;
    default:
        pb_error(r, 409, "not_reserved", "%s is not one of the numbers of reservation %s", r->phone, r->ref);
    }
}

static void user_done(void *arg)
{
    struct pb_req *r = arg;
    if (r->st != DB_OK) {
        db_failed(r);
    } else if (!r->user_exists) {
        pb_error(r, 404, "unknown_user", "no user %lld", (long long)r->user_id);
    } else if (strcmp(r->user_phone, r->phone) == 0) {
        pb_reply(r, 200, assigned_body()); /* done before: the same answer */
    } else if (*r->user_phone) {
        pb_error(r, 409, "user_has_number", "user %lld already has phone number %s",
                 (long long)r->user_id, r->user_phone);
    } else {
        char now[24];
        snprintf(now, sizeof now, "%lld", (long long)sb_now_ms());
        const char *argv[] = {"EVAL", assign_lua, "2", PB_EXPIRY_KEY, PB_ASSIGNED_KEY,
                              r->ref, r->phone, now};
        if (!redis_client_command_argv(r->loop->redis, on_assign, r, 8, argv, NULL))
            pb_error(r, 503, "cache_unavailable", "the reservation store is unavailable; retry later");
    }
}

void pb_assign(struct http_ctx *ctx)
{
    cJSON *body = http_body_json(ctx, assign_fields, SB_ARRAY_LEN(assign_fields), false);
    if (body == NULL)
        return;
    const char *phone = json_str(body, "phoneNumber", "");
    if (!phone_valid(phone)) {
        http_reply_error(ctx, 400, "invalid_field", "phoneNumber must be E.164, like +14155550123");
        cJSON_Delete(body);
        return;
    }
    struct pb_req *r = pb_new(ctx);
    if (r) {
        r->user_id = json_i64(body, "userId", 0);
        snprintf(r->ref, sizeof r->ref, "%s", json_str(body, "refId", ""));
        snprintf(r->phone, sizeof r->phone, "%s", phone);
        submit(r, user_work, user_done);
    }
    cJSON_Delete(body);
}

/* ---- find ----------------------------------------------------------- */

/* One lookup in flight for a number on this loop: Redis's assigned set,
 * then MySQL. Everyone who asks meanwhile waits on it (findcache). */
struct lookup {
    struct loop *loop;
    char phone[PHONE_MAX + 1];
    find_done_fn fn;
    void *arg;
    enum db_status st;
    bool exists;
    char err[ERRBUF_LEN];
};

/* Settles the number's pending entry and tells everyone who waited on it. */
static void resolve_waiters(struct loop *l, const char *phone, bool ok, bool exists)
{
    struct find_waiter *w = findcache_resolve(l->find, phone, exists, ok);
    for (size_t i = 0; w && w[i].fn; i++)
        w[i].fn(w[i].arg, ok, exists);
    free(w);
}

static void lookup_finish(struct lookup *lk, bool ok, bool exists)
{
    if (!ok)
        log_warn("database unavailable", "phone=%s err=\"%s\"", lk->phone, lk->err);
    resolve_waiters(lk->loop, lk->phone, ok, exists);
    lk->fn(lk->arg, ok, exists);
    free(lk);
}

static void lookup_db_work(void *ctx, void *arg)
{
    struct lookup *lk = arg;
    metric_add(m_find_db, 1);
    char sql[120];
    snprintf(sql, sizeof sql, "SELECT 1 FROM users WHERE phone_number = '%s'", lk->phone);
    lk->st = db_exists(ctx, sql, &lk->exists, lk->err, sizeof lk->err);
}

static void lookup_db_done(void *arg)
{
    struct lookup *lk = arg;
    if (lk->st == DB_OK && lk->exists &&
        !redis_client_command(lk->loop->redis, NULL, NULL, "SADD %s %s", PB_ASSIGNED_KEY, lk->phone))
        log_debug("find: cache fill not sent", "phone=%s", lk->phone);
    lookup_finish(lk, lk->st == DB_OK, lk->exists);
}

static void on_lookup_cache(redisAsyncContext *ac, void *rep, void *priv)
{
    (void)ac;
    struct lookup *lk = priv;
    redisReply *reply = rep;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        lookup_finish(lk, true, true);
        return;
    }
    /* Not known to be assigned (or Redis away): MySQL decides. */
    if (!threadpool_submit(lk->loop->d->dbpool, lookup_db_work, lookup_db_done, lk->loop->q, lk)) {
        snprintf(lk->err, sizeof lk->err, "cannot queue the database request");
        lookup_finish(lk, false, false);
    }
}

void pb_lookup(struct loop *l, const char *phone, find_done_fn fn, void *arg)
{
    enum find_state st = findcache_lookup(l->find, phone, fn, arg);
    if (st == FIND_PENDING) /* fn is called when the lookup in flight ends */
        return;
    if (st == FIND_YES || st == FIND_NO) {
        fn(arg, true, st == FIND_YES);
        return;
    }
    struct lookup *lk = calloc(1, sizeof *lk);
    if (lk == NULL) {
        resolve_waiters(l, phone, false, false);
        fn(arg, false, false);
        return;
    }
    lk->loop = l;
    snprintf(lk->phone, sizeof lk->phone, "%.16s", phone); /* callers checked phone_valid */
    lk->fn = fn;
    lk->arg = arg;
    if (!redis_client_command(l->redis, on_lookup_cache, lk, "SISMEMBER %s %s", PB_ASSIGNED_KEY,
                              phone))
        on_lookup_cache(NULL, NULL, lk);
}

static void find_answer(struct http_pending *p, bool exists)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "exists", exists);
    http_pending_reply(p, 200, o);
    cJSON_Delete(o);
}

static void find_done(void *arg, bool ok, bool exists)
{
    if (ok)
        find_answer(arg, exists);
    else
        http_pending_error(arg, 503, "database_unavailable", "cannot look the number up now; retry later");
}

void pb_find(struct http_ctx *ctx)
{
    const char *phone = ctx->params[0];
    if (!phone_valid(phone)) {
        http_reply_error(ctx, 400, "invalid_phone", "phone number must be E.164, like +14155550123");
        return;
    }
    /* The hot path: a cached answer, no allocation. */
    enum find_state cached = findcache_peek(ctx->loop->find, phone);
    if (cached == FIND_YES || cached == FIND_NO) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "exists", cached == FIND_YES);
        http_reply_json(ctx, 200, o);
        cJSON_Delete(o);
        return;
    }
    struct http_pending *p = http_pending_new(ctx);
    if (p)
        pb_lookup(ctx->loop, phone, find_done, p);
}
