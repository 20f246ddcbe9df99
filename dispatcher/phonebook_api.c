/* phonebook_api.c - find, reserve and assign phone numbers.
 *
 * Redis holds the live state: a set of free numbers per area code
 * (pb:pool:<ac>), each reservation (pb:res:<ref>: area code, numbers,
 * expiry) indexed by expiry time (pb:expiry), idempotency keys
 * (pb:idem:<key>), the numbers taken by assignments and their state
 * (pb:held, see phone.h) and each user's number (pb:user:<id>). Each
 * operation is one Lua script, so two clients can never take the same
 * number, nor one user two. MySQL is the durable record: reserve marks the rows RESERVED
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
#include "httpconn.h"
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

/* KEYS: expiry, held, the user's claim. ARGV: ref, phone, now_ms, claim ttl_s.
 * -> 1 taken (the other numbers are back in the pool; the number is held
 * as P and the user claims it), 2 the user was given this very number
 * before (the same answer again), -1 no such reservation, -2 expired, -3
 * the number is not in it, -4 the user has or is being given another
 * number, -5 an assign of this number to the user is in flight. */
static const char assign_lua[] =
    "local claim = redis.call('GET', KEYS[3])\n"
    "if claim and claim ~= ARGV[2] then return -4 end\n"
    "if claim then\n"
    "  local st = redis.call('HGET', KEYS[2], ARGV[2])\n"
    "  if st == 'A' or st == 'C' then return 2 end\n"
    "  if st == 'P' then return -5 end\n"
    "end\n"
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
    "redis.call('HSET', KEYS[2], ARGV[2], 'P')\n"
    "redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[4])\n"
    "return 1\n";

/* KEYS: held. ARGV: phone. Kafka has the assign: P becomes A (the worker
 * may have made it C already: left so). */
static const char assign_acked_lua[] =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == 'P' then redis.call('HSET', KEYS[1], ARGV[1], 'A') end\n"
    "return 1\n";

/* KEYS: held, the user's claim, the number's pool. ARGV: phone. Kafka did
 * not take the assign: the number is free again and the user unclaimed. */
static const char assign_undo_lua[] =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == 'P' then\n"
    "  redis.call('HDEL', KEYS[1], ARGV[1]) redis.call('SADD', KEYS[3], ARGV[1])\n"
    "end\n"
    "if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end\n"
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
    uint64_t tenant;
    bool expired; /* waited past its deadline for a database thread */
    struct http_enqueue eq; /* the assign job's way to Kafka and back */
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
    r->tenant = threadpool_tenant(ctx->principal);
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

static void unreserve(struct pb_req *r);

static void pb_expire(void *arg)
{
    struct pb_req *r = arg;
    r->expired = true;
    r->st = DB_TRANSIENT;
}

static bool submit(struct pb_req *r, threadpool_work_fn work, loopq_fn done)
{
    if (http_pool_submit(r->p, r->loop->d->dbpool, r->tenant, work, pb_expire, done, r))
        return true;
    if (r->fresh) /* a new reservation not recorded: its numbers go back */
        unreserve(r);
    free(r);
    return false;
}

static void db_failed(struct pb_req *r)
{
    if (r->expired) {
        http_pending_busy(r->p);
        free(r);
        return;
    }
    log_warn("database unavailable", "request_id=%s err=\"%s\"", r->p->request_id, r->err);
    pb_error(r, 503, "database_unavailable", "the database is unavailable; retry later");
}

/* ---- reserve ----------------------------------------------------------- */

static const struct json_field reserve_fields[] = {
    {"areaCode", JSON_K_DIGITS, true, 1, 8}, /* 613 or "613", as the phonebook seed sends it */
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
    /* Up to RESERVE_COUNT numbers; the missing ones repeat the first. */
    const char *n[RESERVE_COUNT];
    for (int i = 0; i < RESERVE_COUNT; i++)
        n[i] = r->numbers[i < r->nnumbers ? i : 0];
    char *text = db_sqlf(ctx, r->err, sizeof r->err,
                         "UPDATE numbers SET status = 'RESERVED', ref_id = %s, reserved_at = NOW(3)"
                         " WHERE status <> 'ASSIGNED' AND phone_number IN (%s, %s, %s, %s, %s)",
                         r->ref, n[0], n[1], n[2], n[3], n[4]);
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
    char digits[24];
    const char *area = json_digits(body, "areaCode", digits, sizeof digits, "");
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
    {"userId", JSON_K_INT, true, 1, (INT64_C(1) << 53) - 1},
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

static void user_claim_key(int64_t user, char out[48])
{
    snprintf(out, 48, PB_USER_KEY_PREFIX "%lld", (long long)user);
}

static void assign_undo(struct pb_req *r)
{
    /* The reservation is spent; put the number back so it is not lost. */
    char pool[PB_POOL_KEY_LEN], claim[48];
    phone_pool_key(r->phone, pool);
    user_claim_key(r->user_id, claim);
    const char *argv[] = {"EVAL", assign_undo_lua, "3", PB_HELD_KEY, claim, pool, r->phone};
    if (!redis_client_command_argv(r->loop->redis, NULL, NULL, 7, argv, NULL))
        log_warn("cannot return an unassigned number to the pool", "phone=%s", r->phone);
}

static void on_assign_acked(redisAsyncContext *ac, void *rep, void *priv)
{
    (void)ac;
    struct pb_req *r = priv;
    redisReply *reply = rep;
    /* Kafka has the job, so the answer is true either way; without the
     * mark, find says so once the worker has written MySQL. */
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        log_warn("assigned, but not marked in the cache (Redis unavailable)", "phone=%s", r->phone);
    pb_reply(r, 200, assigned_body());
}

static void assign_delivered(void *arg, rd_kafka_resp_err_t err)
{
    struct pb_req *r = arg;
    r->st = err ? DB_TRANSIENT : DB_OK;
    if (err)
        snprintf(r->err, sizeof r->err, "%s", rd_kafka_err2name(err));
    if (r->st != DB_OK) {
        log_warn("enqueue failed", "request_id=%s err=\"%s\"", r->p->request_id, r->err);
        assign_undo(r);
        pb_error(r, 503, "queue_unavailable",
                 "the job queue did not accept the assignment; reserve again and retry");
        return;
    }
    /* Marked before the answer, so every find after it sees the number. */
    const char *argv[] = {"EVAL", assign_acked_lua, "1", PB_HELD_KEY, r->phone};
    if (!redis_client_command_argv(r->loop->redis, on_assign_acked, r, 5, argv, NULL))
        on_assign_acked(NULL, NULL, r);
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
    if (!http_enqueue(&r->eq, r->loop, &r->p->req->span.ctx, "phonebook.commands", r->phone, strlen(r->phone), job,
                      assign_delivered, r, err, sizeof err)) {
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
    case 2:
        pb_reply(r, 200, assigned_body()); /* done before: the same answer */
        break;
    case -4:
        pb_error(r, 409, "user_has_number", "user %lld already has or is being given another phone number",
                 (long long)r->user_id);
        break;
    case -5:
        http_req_add_header(r->p->req, "Retry-After", "1");
        pb_error(r, 409, "assign_in_progress", "an assignment of %s to user %lld is in progress; retry shortly",
                 r->phone, (long long)r->user_id);
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
        char now[24], claim[48], ttl[24];
        snprintf(now, sizeof now, "%lld", (long long)sb_now_ms());
        snprintf(ttl, sizeof ttl, "%d", PB_USER_CLAIM_TTL_S);
        user_claim_key(r->user_id, claim);
        const char *argv[] = {"EVAL", assign_lua, "3", PB_EXPIRY_KEY, PB_HELD_KEY, claim,
                              r->ref, r->phone, now, ttl};
        if (!redis_client_command_argv(r->loop->redis, on_assign, r, 10, argv, NULL))
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

/* One lookup in flight for a number on this loop: Redis's pb:held, then
 * MySQL. Everyone who asks meanwhile waits on it (findcache). */
struct lookup {
    struct loop *loop;
    char phone[PHONE_MAX + 1];
    find_done_fn fn;
    void *arg;
    enum db_status st;
    bool exists;
    char err[ERRBUF_LEN];
};

/* KEYS: held, the number's "not assigned" key. ARGV: phone.
 * -> "A" / "C" (pb:held), "N" MySQL said no a moment ago (and no assign
 * has taken the number since: pb:held is read first), "" unknown. */
static const char find_lua[] =
    "local s = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if s == 'A' or s == 'C' then return s end\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 'N' end\n"
    "return ''\n";

/* KEYS: held, the "not assigned" key. ARGV: phone, ttl_ms. Remembers a
 * "no" from MySQL for every dispatcher, unless an assign has taken the
 * number meanwhile (the lookup may have read MySQL before it). */
static const char absent_lua[] =
    "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then\n"
    "  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])\n"
    "end\n"
    "return 1\n";

static void absent_key(const char *phone, char out[40])
{
    snprintf(out, 40, PB_ABSENT_KEY_PREFIX "%s", phone);
}

/* A waiter that a "no" reached: the lookup may have read Redis before the
 * waiter's request came, and an assign answered in between must be seen. */
struct recheck {
    find_done_fn fn;
    void *arg;
};

static bool held_says_assigned(const redisReply *reply, bool *confirmed)
{
    bool yes = reply && reply->type == REDIS_REPLY_STRING && reply->len == 1 &&
               (reply->str[0] == 'A' || reply->str[0] == 'C');
    if (confirmed)
        *confirmed = yes && reply->str[0] == 'C';
    return yes;
}

static void on_recheck(redisAsyncContext *ac, void *rep, void *priv)
{
    (void)ac;
    struct recheck *rc = priv;
    rc->fn(rc->arg, true, held_says_assigned(rep, NULL));
    free(rc);
}

/* Settles the number's pending entry and tells everyone who waited on it. */
static void resolve_waiters(struct loop *l, const char *phone, bool ok, bool exists, bool keep)
{
    struct find_waiter *w = findcache_resolve(l->find, phone, ok && exists && keep);
    for (size_t i = 0; w && w[i].fn; i++) {
        struct recheck *rc = ok && !exists ? malloc(sizeof *rc) : NULL;
        if (rc)
            *rc = (struct recheck){w[i].fn, w[i].arg};
        if (rc && redis_client_command(l->redis, on_recheck, rc, "HGET %s %s", PB_HELD_KEY, phone))
            continue;
        free(rc);
        w[i].fn(w[i].arg, ok, exists); /* Redis away: the lookup's own answer */
    }
    free(w);
}

/* keep: MySQL holds the number as assigned, for good. */
static void lookup_finish(struct lookup *lk, bool ok, bool exists, bool keep)
{
    if (!ok)
        log_warn("database unavailable", "phone=%s err=\"%s\"", lk->phone, lk->err);
    resolve_waiters(lk->loop, lk->phone, ok, exists, keep);
    lk->fn(lk->arg, ok, exists);
    free(lk);
}

static void lookup_db_work(void *ctx, void *arg)
{
    struct lookup *lk = arg;
    metric_add(m_find_db, 1);
    char *sql = db_sqlf(ctx, lk->err, sizeof lk->err, "SELECT 1 FROM users WHERE phone_number = %s", lk->phone);
    lk->st = sql ? db_exists(ctx, sql, &lk->exists, lk->err, sizeof lk->err) : DB_TRANSIENT;
    free(sql);
}

static void lookup_db_done(void *arg)
{
    struct lookup *lk = arg;
    bool sent = true;
    int64_t ttl = lk->loop->d->cfg->find_negative_ttl_ms;
    if (lk->st == DB_OK && lk->exists) {
        sent = redis_client_command(lk->loop->redis, NULL, NULL, "HSET %s %s C", PB_HELD_KEY, lk->phone);
    } else if (lk->st == DB_OK && ttl > 0) {
        char key[40], ms[24];
        absent_key(lk->phone, key);
        snprintf(ms, sizeof ms, "%lld", (long long)ttl);
        const char *argv[] = {"EVAL", absent_lua, "2", PB_HELD_KEY, key, lk->phone, ms};
        sent = redis_client_command_argv(lk->loop->redis, NULL, NULL, 7, argv, NULL);
    }
    if (!sent)
        log_debug("find: cache fill not sent", "phone=%s", lk->phone);
    lookup_finish(lk, lk->st == DB_OK, lk->exists, true);
}

static void on_lookup_cache(redisAsyncContext *ac, void *rep, void *priv)
{
    (void)ac;
    struct lookup *lk = priv;
    bool confirmed;
    if (held_says_assigned(rep, &confirmed)) {
        lookup_finish(lk, true, true, confirmed);
        return;
    }
    const redisReply *reply = rep;
    if (reply && reply->type == REDIS_REPLY_STRING && strcmp(reply->str, "N") == 0) {
        lookup_finish(lk, true, false, false);
        return;
    }
    /* Not known to be assigned (or Redis away): MySQL decides. */
    if (!threadpool_submit(lk->loop->d->dbpool, lookup_db_work, lookup_db_done, lk->loop->q, lk)) {
        snprintf(lk->err, sizeof lk->err, "cannot queue the database request");
        lookup_finish(lk, false, false, false);
    }
}

void pb_lookup(struct loop *l, const char *phone, find_done_fn fn, void *arg)
{
    enum find_state st = findcache_lookup(l->find, phone, fn, arg);
    if (st == FIND_PENDING) /* fn is called when the lookup in flight ends */
        return;
    if (st == FIND_YES) {
        fn(arg, true, true);
        return;
    }
    struct lookup *lk = calloc(1, sizeof *lk);
    if (lk == NULL) {
        resolve_waiters(l, phone, false, false, false);
        fn(arg, false, false);
        return;
    }
    lk->loop = l;
    snprintf(lk->phone, sizeof lk->phone, "%.16s", phone); /* callers checked phone_valid */
    lk->fn = fn;
    lk->arg = arg;
    char key[40];
    absent_key(lk->phone, key);
    const char *argv[] = {"EVAL", find_lua, "2", PB_HELD_KEY, key, lk->phone};
    if (!redis_client_command_argv(l->redis, on_lookup_cache, lk, 6, argv, NULL))
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
    if (findcache_peek(ctx->loop->find, phone) == FIND_YES) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "exists", true);
        http_reply_json(ctx, 200, o);
        cJSON_Delete(o);
        return;
    }
    struct http_pending *p = http_pending_new(ctx);
    if (p)
        pb_lookup(ctx->loop, phone, find_done, p);
}
