/* phonebook.c - the phonebook role.
 *
 * phonebook.assign: one transaction per job locks the number's and the
 * user's rows, then either assigns (number ASSIGNED to the user, the user's
 * phone_number set, the reservation's other numbers back to AVAILABLE) or
 * finds it already done (a replay: nothing changes), or finds a conflict -
 * the number held by another user, or the user holding another number.
 * A conflict is dead-lettered with its reason and the cache corrected: a
 * number nobody holds leaves pb:held and returns to its pool, and the
 * user's claim on it (pb:user:<id>) goes; an assigned number is held as C
 * and leaves its pool (it is there when another producer assigned it
 * without a reservation). An assignment written is held as C: from then on
 * every dispatcher loop may remember it.
 *
 * The tick returns expired reservations: Redis first (one Lua script per
 * batch of expired reservations puts their numbers back in the pool), then
 * MySQL (their rows back to AVAILABLE, and any RESERVED row older than the
 * TTL, e.g. one whose reservation died with a Redis data loss). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "phone.h"
#include "phonebook.h"

#define SWEEP_BATCH 100

static redisContext *worker_redis(struct worker *w, char *errbuf, size_t errlen)
{
    if (w->redis && !w->redis->err)
        return w->redis;
    if (w->redis)
        redisFree(w->redis);
    struct redis_url url;
    w->redis = redis_parse_url(w->cfg->redis_url, &url, errbuf, errlen)
                   ? redis_sync_connect(&url, errbuf, errlen)
                   : NULL;
    return w->redis;
}

/* Brings the cache in line with MySQL for one number: a number nobody
 * holds must not look assigned and must be reservable; a held one must
 * look assigned and must not be in its pool. (An assignment from another
 * producer, without a reservation, leaves the number in its pool: it was
 * then handed out again by a later reservation.) */
static void set_cache(struct worker *w, const char *phone, bool held, long long refused_user)
{
    char err[ERRBUF_LEN];
    redisContext *c = worker_redis(w, err, sizeof err);
    if (c == NULL) {
        log_warn("cannot correct the phonebook cache", "phone=%s err=\"%s\"", phone, err);
        return;
    }
    redisReply *r = held ? redisCommand(c, "HSET %s %s C", PB_HELD_KEY, phone)
                         : redisCommand(c, "HDEL %s %s", PB_HELD_KEY, phone);
    if (r)
        freeReplyObject(r);
    if (refused_user) { /* the user may be given a number again */
        char claim[48];
        snprintf(claim, sizeof claim, PB_USER_KEY_PREFIX "%lld", refused_user);
        r = redisCommand(c, "EVAL %s 1 %s %s",
                         "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1",
                         claim, phone);
        if (r)
            freeReplyObject(r);
    }
    /* The pool key is built first: hiredis's formatter takes %s only
     * whole (a "%.3s" made the command fail, silently). */
    char pool[PB_POOL_KEY_LEN];
    phone_pool_key(phone, pool);
    r = redisCommand(c, held ? "SREM %s %s" : "SADD %s %s", pool, phone);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        log_warn("cannot correct the phonebook pool", "phone=%s err=\"%s\"", phone,
                 r ? r->str : c->errstr);
    if (r)
        freeReplyObject(r);
}

/* Reads one row of one column (NULL column -> ""); *found false if none. */
static enum db_status one_value(struct db *db, const char *sql, char *out, size_t cap, bool *found,
                                char *errbuf, size_t errlen)
{
    MYSQL_RES *res;
    enum db_status st = db_query(db, sql, &res, errbuf, errlen);
    if (st != DB_OK)
        return st;
    MYSQL_ROW row = mysql_fetch_row(res);
    *found = row != NULL;
    snprintf(out, cap, "%s", row && row[0] ? row[0] : "");
    mysql_free_result(res);
    return DB_OK;
}

static enum db_status assign_one(struct worker *w, struct job *j, char *errbuf, size_t errlen)
{
    const cJSON *p = j->env.payload;
    const char *phone = json_str(p, "phone_number", "");
    const char *ref = json_str(p, "ref_id", "");
    long long user = (long long)json_i64(p, "user_id", 0);
    if (!phone_valid(phone)) {
        j->dead = true;
        snprintf(j->reason, sizeof j->reason, "phone_number '%s' is not E.164", phone);
        return DB_OK;
    }
    enum db_status st = db_exec(w->db, "BEGIN", errbuf, errlen);
    if (st != DB_OK)
        return st;
    char holder[32], user_phone[32];
    bool number_found, user_found;
    char *sql = db_sqlf(w->db, errbuf, errlen, "SELECT IF(status = 'ASSIGNED', user_id, '') FROM numbers"
                        " WHERE phone_number = %s FOR UPDATE", phone);
    st = sql ? one_value(w->db, sql, holder, sizeof holder, &number_found, errbuf, errlen) : DB_TRANSIENT;
    free(sql);
    if (st == DB_OK) {
        char q[120];
        snprintf(q, sizeof q, "SELECT phone_number FROM users WHERE user_id = %lld FOR UPDATE", user);
        st = one_value(w->db, q, user_phone, sizeof user_phone, &user_found, errbuf, errlen);
    }
    if (st != DB_OK)
        goto rollback;

    char mine[32];
    snprintf(mine, sizeof mine, "%lld", user);
    const char *conflict = NULL;
    char why[200];
    if (!number_found) {
        snprintf(why, sizeof why, "unknown phone number %s", phone);
        conflict = why;
    } else if (!user_found) {
        snprintf(why, sizeof why, "unknown user %lld", user);
        conflict = why;
    } else if (*holder && strcmp(holder, mine) == 0 && strcmp(user_phone, phone) == 0) {
        st = db_exec(w->db, "COMMIT", errbuf, errlen); /* already done: a replay */
        if (st == DB_OK)
            set_cache(w, phone, true, 0);
        return st;
    } else if (*holder) {
        snprintf(why, sizeof why, "conflict: %s is already assigned to user %s", phone, holder);
        conflict = why;
    } else if (*user_phone) {
        snprintf(why, sizeof why, "conflict: user %lld already has phone number %s", user, user_phone);
        conflict = why;
    }
    if (conflict) {
        st = db_exec(w->db, "ROLLBACK", errbuf, errlen);
        j->dead = true;
        snprintf(j->reason, sizeof j->reason, "%s", conflict);
        if (number_found)
            set_cache(w, phone, *holder != '\0', user);
        return st == DB_OK ? DB_OK : DB_TRANSIENT;
    }
    char *upd = db_sqlf(w->db, errbuf, errlen,
                        "UPDATE numbers SET status = 'ASSIGNED', user_id = %lld, ref_id = %s"
                        " WHERE phone_number = %s;"
                        "UPDATE users SET phone_number = %s WHERE user_id = %lld;"
                        "UPDATE numbers SET status = 'AVAILABLE', ref_id = NULL, reserved_at = NULL"
                        " WHERE ref_id = %s AND status = 'RESERVED' AND phone_number <> %s;"
                        "COMMIT",
                        user, ref, phone, phone, user, ref, phone);
    st = upd ? db_exec(w->db, upd, errbuf, errlen) : DB_TRANSIENT;
    free(upd);
    if (st == DB_OK) {
        set_cache(w, phone, true, 0);
        return DB_OK;
    }
rollback:
    if (st == DB_FATAL) {
        char ignore[ERRBUF_LEN];
        if (db_exec(w->db, "ROLLBACK", ignore, sizeof ignore) != DB_OK)
            return DB_TRANSIENT;
    }
    return st;
}

enum db_status phonebook_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                                size_t errlen)
{
    /* One transaction per job: an assignment stands or falls alone. */
    for (size_t i = 0; i < n; i++) {
        enum db_status st = assign_one(w, jobs[i], errbuf, errlen);
        if (st != DB_OK)
            return st; /* transient: the batch is redone; done jobs are replays */
        if (jobs[i]->dead)
            log_warn("assignment refused", "request_id=%s reason=\"%s\"", jobs[i]->env.request_id,
                     jobs[i]->reason);
    }
    return DB_OK;
}

/* KEYS: expiry. ARGV: now_ms, limit. Returns the refs it released. */
static const char sweep_lua[] =
    "local refs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])\n"
    "for _, ref in ipairs(refs) do\n"
    "  local key = 'pb:res:' .. ref\n"
    "  local ac, nums = redis.call('HGET', key, 'ac'), redis.call('HGET', key, 'numbers')\n"
    "  if nums then\n"
    "    for n in string.gmatch(nums, '[^,]+') do redis.call('SADD', 'pb:pool:' .. ac, n) end\n"
    "  end\n"
    "  redis.call('DEL', key) redis.call('ZREM', KEYS[1], ref)\n"
    "end\n"
    "return refs\n";

void phonebook_tick(struct worker *w)
{
    char err[ERRBUF_LEN];
    redisContext *c = worker_redis(w, err, sizeof err);
    if (c == NULL) {
        log_warn("expiry sweep skipped: Redis unavailable", "err=\"%s\"", err);
        return;
    }
    char now[24], limit[16];
    snprintf(now, sizeof now, "%lld", (long long)sb_now_ms());
    snprintf(limit, sizeof limit, "%d", SWEEP_BATCH);
    redisReply *r = redisCommand(c, "EVAL %s 1 %s %s %s", sweep_lua, PB_EXPIRY_KEY, now, limit);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        log_warn("expiry sweep failed", "err=\"%s\"", r && r->str ? r->str : c->errstr);
        if (r)
            freeReplyObject(r);
        return;
    }
    struct strbuf sql = {0};
    MYSQL *conn = r->elements ? db_conn(w->db, err, sizeof err) : NULL;
    if (conn) { /* without one, the statement below frees the rows a TTL later */
        strbuf_appendf(&sql, "UPDATE numbers SET status = 'AVAILABLE', ref_id = NULL, reserved_at = NULL"
                             " WHERE status = 'RESERVED' AND ref_id IN (");
        for (size_t i = 0; i < r->elements; i++) {
            if (i)
                strbuf_append_lit(&sql, ",");
            db_quote(&sql, conn, r->element[i]->str);
        }
        strbuf_appendf(&sql, ");");
    }
    if (r->elements)
        log_info("reservations expired", "count=%zu", r->elements);
    /* Also rows whose reservation Redis lost (their numbers are back in
     * the pool since the pool was rebuilt). */
    strbuf_appendf(&sql, "UPDATE numbers SET status = 'AVAILABLE', ref_id = NULL, reserved_at = NULL"
                         " WHERE status = 'RESERVED' AND reserved_at < NOW(3) - INTERVAL %lld SECOND",
                   (long long)w->cfg->reservation_ttl_s);
    freeReplyObject(r);
    char *text = strbuf_take(&sql);
    if (text && db_exec(w->db, text, err, sizeof err) != DB_OK)
        log_warn("expiry sweep: MySQL not updated yet (retried next tick)", "err=\"%s\"", err);
    free(text);
}
