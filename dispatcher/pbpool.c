/* pbpool.c - see pbpool.h. */
#include "pbpool.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "phone.h"

#define LOCK_KEY "pb:rebuild"
#define WAIT_MS 15000
#define SADD_BATCH 500
#define LOAD_TRIES 3
#define LOCK_TTL_MS 60000
#define LOCK_CHECK_DRAINS 20 /* SADD round trips (10,000 numbers) between looks at the lock */

/* Marks the pools loaded: 1; 0 if numbers were added since gen was read;
 * -1 if the lock is no longer ours. */
static const char mark_loaded_lua[] =
    "if redis.call('GET', KEYS[3]) ~= ARGV[2] then return -1 end "
    "if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end "
    "redis.call('SET', KEYS[2], '1') return 1";

static const char lost_lock[] = "lost the rebuild lock (it expired, or Redis lost its data); stopped";

/* Keeps the lock ours for another LOCK_TTL_MS: 1, or 0 if it is not ours. */
static const char hold_lock_lua[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1";

struct names {
    char **v;
    size_t n, cap;
};

static bool names_add(struct names *s, const char *x, size_t len)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        char **v = realloc(s->v, cap * sizeof *v);
        if (v == NULL)
            return false;
        s->v = v;
        s->cap = cap;
    }
    if ((s->v[s->n] = strndup(x, len)) == NULL)
        return false;
    s->n++;
    return true;
}

static void names_free(struct names *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool names_has(const struct names *s, const char *x)
{
    return s->n && bsearch(&x, s->v, s->n, sizeof *s->v, cmp_name) != NULL;
}

static redisReply *cmd(redisContext *c, char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        sb_errf(errbuf, errlen, "redis: %s", r ? r->str : c->errstr);
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Numbers Redis must not hand out: in live reservations, or assigned. */
static bool taken_numbers(redisContext *c, struct names *taken, char *errbuf, size_t errlen)
{
    redisReply *refs = cmd(c, errbuf, errlen, "ZRANGE %s 0 -1", PB_EXPIRY_KEY);
    if (refs == NULL)
        return false;
    bool ok = true;
    for (size_t i = 0; ok && i < refs->elements; i++) {
        redisReply *nums = cmd(c, errbuf, errlen, "HGET pb:res:%s numbers", refs->element[i]->str);
        if (nums == NULL) {
            ok = false;
            break;
        }
        for (const char *p = nums->str; ok && p && *p;) {
            size_t n = strcspn(p, ",");
            ok = names_add(taken, p, n);
            p += n + (p[n] == ',');
        }
        freeReplyObject(nums);
    }
    freeReplyObject(refs);
    redisReply *assigned = ok ? cmd(c, errbuf, errlen, "HKEYS %s", PB_HELD_KEY) : NULL;
    if (assigned == NULL)
        return false;
    for (size_t i = 0; ok && i < assigned->elements; i++)
        ok = names_add(taken, assigned->element[i]->str, assigned->element[i]->len);
    freeReplyObject(assigned);
    if (taken->n > 1)
        qsort(taken->v, taken->n, sizeof *taken->v, cmp_name);
    return ok;
}

static bool drain(redisContext *c, size_t *pending, char *errbuf, size_t errlen)
{
    for (; *pending > 0; (*pending)--) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            sb_errf(errbuf, errlen, "redis: %s", c->errstr);
            return false;
        }
        freeReplyObject(r);
    }
    return true;
}

/* Extends the rebuild lock; false (and why) if it is not ours any more:
 * it expired, or Redis lost its data, and another rebuild may have begun.
 * Going on beside it could put numbers its reserves took back into a pool. */
static bool hold_lock(redisContext *c, const char *owner, char *errbuf, size_t errlen)
{
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", LOCK_TTL_MS);
    redisReply *r = cmd(c, errbuf, errlen, "EVAL %s 1 %s %s %s", hold_lock_lua, LOCK_KEY, owner, ttl);
    if (r == NULL)
        return false;
    bool held = r->integer == 1;
    freeReplyObject(r);
    if (!held)
        sb_errf(errbuf, errlen, "%s", lost_lock);
    return held;
}

static bool load_pools(redisContext *c, struct db *db, const char *owner, char *errbuf, size_t errlen)
{
    bool ok = false;
    struct names taken = {0};
    MYSQL_RES *codes = NULL, *rows = NULL;
    if (!taken_numbers(c, &taken, errbuf, errlen))
        goto done;
    /* Checked before the first change to the pools, and as they fill. */
    if (db_query(db, "SELECT DISTINCT area_code FROM numbers", &codes, errbuf, errlen) != DB_OK ||
        !hold_lock(c, owner, errbuf, errlen))
        goto done;
    MYSQL_ROW row;
    char pool[PB_POOL_KEY_LEN];
    while ((row = mysql_fetch_row(codes)) != NULL) {
        area_pool_key(row[0], pool);
        redisReply *r = cmd(c, errbuf, errlen, "DEL %s", pool);
        if (r == NULL)
            goto done;
        freeReplyObject(r);
    }
    if (db_query(db, "SELECT area_code, phone_number FROM numbers WHERE status <> 'ASSIGNED'", &rows,
                 errbuf, errlen) != DB_OK)
        goto done;
    size_t pending = 0, loaded = 0, drains = 0;
    while ((row = mysql_fetch_row(rows)) != NULL) {
        if (names_has(&taken, row[1]))
            continue;
        area_pool_key(row[0], pool);
        redisAppendCommand(c, "SADD %s %s", pool, row[1]);
        loaded++;
        /* Pipelined: one round trip per SADD_BATCH numbers; the lock is
         * looked at between round trips, with no reply outstanding. */
        if (++pending < SADD_BATCH)
            continue;
        if (!drain(c, &pending, errbuf, errlen) ||
            (++drains % LOCK_CHECK_DRAINS == 0 && !hold_lock(c, owner, errbuf, errlen)))
            goto done;
    }
    if (!drain(c, &pending, errbuf, errlen))
        goto done;
    log_info("phone number pools rebuilt from MySQL", "numbers=%zu held=%zu", loaded, taken.n);
    ok = true;
done:
    if (codes)
        mysql_free_result(codes);
    if (rows)
        mysql_free_result(rows);
    names_free(&taken);
    return ok;
}

/* Loads the pools and marks them loaded, again if numbers were seeded
 * while it read them (up to LOAD_TRIES times). Holds the rebuild lock. */
static bool load_and_mark(redisContext *c, struct db *db, const char *owner, char *errbuf,
                          size_t errlen)
{
    for (int i = 0; i < LOAD_TRIES; i++) {
        /* Read before MySQL is: a seed committed after this read bumps it. */
        redisReply *r = cmd(c, errbuf, errlen, "GET %s", PB_POOL_GEN_KEY);
        if (r == NULL)
            return false;
        char gen[32];
        snprintf(gen, sizeof gen, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
        freeReplyObject(r);
        if (!load_pools(c, db, owner, errbuf, errlen))
            return false;
        r = cmd(c, errbuf, errlen, "EVAL %s 3 %s %s %s %s %s", mark_loaded_lua, PB_POOL_GEN_KEY,
                PB_POOL_LOADED_KEY, LOCK_KEY, gen, owner);
        if (r == NULL)
            return false;
        long long marked = r->integer;
        freeReplyObject(r);
        if (marked == 1)
            return true;
        if (marked < 0) {
            sb_errf(errbuf, errlen, "%s", lost_lock);
            return false;
        }
        log_info("numbers were seeded while the pools were rebuilt; rebuilding them again", "try=%d", i + 1);
    }
    sb_errf(errbuf, errlen, "numbers kept being seeded during %d rebuilds of the pools", LOAD_TRIES);
    return false;
}

/* Whether the pools are loaded (*loaded); false on a Redis error. */
static bool pools_loaded(redisContext *c, bool *loaded, char *errbuf, size_t errlen)
{
    redisReply *r = cmd(c, errbuf, errlen, "EXISTS %s", PB_POOL_LOADED_KEY);
    if (r == NULL)
        return false;
    *loaded = r->integer == 1;
    freeReplyObject(r);
    return true;
}

bool pbpool_rebuild_sync(struct db *db, const struct redis_url *url, char *errbuf, size_t errlen)
{
    redisContext *c = redis_sync_connect(url, errbuf, errlen);
    if (c == NULL)
        return false;
    bool ok = false, loaded;
    char owner[33];
    if (!sb_random_id(owner))
        goto done;
    int64_t deadline = sb_mono_ms() + WAIT_MS;
    while (sb_mono_ms() < deadline) {
        if (!pools_loaded(c, &loaded, errbuf, errlen))
            goto done;
        if (loaded) {
            ok = true;
            goto done;
        }
        redisReply *r = cmd(c, errbuf, errlen, "SET %s %s NX PX %d", LOCK_KEY, owner, LOCK_TTL_MS);
        if (r == NULL)
            goto done;
        bool mine = r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (mine) {
            /* Look again now that the lock is ours: another rebuild may
             * have finished and let go of it between the look above and
             * the SET. Rebuilding then would run beside reserves (the
             * pools are open again) and put numbers they just took back
             * into a pool: one number in two reservations. Only the lock's
             * holder sets the flag, so this answer holds until we let go. */
            ok = pools_loaded(c, &loaded, errbuf, errlen) &&
                 (loaded || load_and_mark(c, db, owner, errbuf, errlen));
            r = cmd(c, errbuf, errlen,
                    "EVAL %s 1 %s %s",
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                    LOCK_KEY, owner);
            if (r)
                freeReplyObject(r);
            goto done;
        }
        sb_sleep_ms_unless(50, NULL); /* another dispatcher is loading */
    }
    sb_errf(errbuf, errlen, "timed out waiting for another rebuild of the pools");
done:
    redisFree(c);
    return ok;
}

struct rebuild_op {
    struct loop *loop;
    pbpool_cb cb;
    void *arg;
    bool ok;
};

static void rebuild_work(void *ctx, void *arg)
{
    struct rebuild_op *op = arg;
    char err[ERRBUF_LEN] = "";
    op->ok = pbpool_rebuild_sync(ctx, &op->loop->d->redis_url, err, sizeof err);
    if (!op->ok)
        log_warn("cannot rebuild the phone number pools", "err=\"%s\"", err);
}

static void rebuild_done(void *arg)
{
    struct rebuild_op *op = arg;
    op->cb(op->arg, op->ok);
    free(op);
}

void pbpool_rebuild(struct loop *l, pbpool_cb cb, void *arg)
{
    struct rebuild_op *op = calloc(1, sizeof *op);
    if (op == NULL) {
        cb(arg, false);
        return;
    }
    op->loop = l;
    op->cb = cb;
    op->arg = arg;
    if (!threadpool_submit(l->d->dbpool, rebuild_work, rebuild_done, l->q, op)) {
        free(op);
        cb(arg, false);
    }
}
