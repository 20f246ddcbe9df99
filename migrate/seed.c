/* seed.c - `switchboard-migrate seed`: users and free phone numbers.
 *
 * Users 1..N (no number yet) and M free numbers spread round-robin over the
 * area codes: +1 <area code> <2000000 + k>, k counting per area code. Rows
 * go in with multi-row INSERT IGNORE, a few thousand per statement, so a
 * million users take seconds and re-running the seed changes nothing. It
 * then drops Redis' "pool loaded" marker so dispatchers reload the pools of
 * free numbers from MySQL. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "redis.h"
#include "seed.h"
#include "strbuf.h"

#define ROWS_PER_INSERT 5000

static void progress(bool tty, const char *what, int64_t done, int64_t total)
{
    if (tty)
        fprintf(stderr, "\rseeding %s: %lld / %lld", what, (long long)done, (long long)total);
}

/* Runs one multi-row INSERT (taking over sql) and shows the progress. */
static bool run_chunk(struct db *db, struct strbuf *sql, bool tty, const char *what, int64_t done,
                      int64_t total, char *errbuf, size_t errlen)
{
    char *text = strbuf_take(sql);
    if (text == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return false;
    }
    enum db_status st = db_exec(db, text, errbuf, errlen);
    free(text);
    if (st != DB_OK)
        return false;
    progress(tty, what, done, total);
    return true;
}

static bool seed_users(struct db *db, int64_t n, bool tty, char *errbuf, size_t errlen)
{
    for (int64_t start = 1; start <= n; start += ROWS_PER_INSERT) {
        int64_t end = start + ROWS_PER_INSERT - 1 < n ? start + ROWS_PER_INSERT - 1 : n;
        struct strbuf sql = {0};
        strbuf_appendf(&sql, "INSERT IGNORE INTO users (user_id) VALUES ");
        for (int64_t id = start; id <= end; id++)
            strbuf_appendf(&sql, "%s(%lld)", id > start ? "," : "", (long long)id);
        if (!run_chunk(db, &sql, tty, "users", end, n, errbuf, errlen))
            return false;
    }
    if (tty && n)
        fputc('\n', stderr);
    return true;
}

/* Parses "212,415" into codes; false if any is not three digits 2-9xx. */
static bool parse_codes(const char *list, char codes[][4], int max, int *count)
{
    *count = 0;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n != 3 || *count == max || !area_code_valid_n(p, n))
            return false;
        memcpy(codes[*count], p, 3);
        codes[(*count)++][3] = '\0';
        p += n;
        if (*p == ',')
            p++;
    }
    return *count > 0;
}

static bool seed_numbers(struct db *db, int64_t m, const char *list, bool tty, char *errbuf,
                         size_t errlen)
{
    char codes[64][4];
    int k;
    if (!parse_codes(list, codes, 64, &k)) {
        sb_errf(errbuf, errlen, "area codes must be 3 digits, the first 2-9, comma-separated (got '%s')",
                list);
        return false;
    }
    for (int64_t start = 0; start < m; start += ROWS_PER_INSERT) {
        int64_t end = start + ROWS_PER_INSERT < m ? start + ROWS_PER_INSERT : m;
        struct strbuf sql = {0};
        strbuf_appendf(&sql, "INSERT IGNORE INTO numbers (phone_number, area_code) VALUES ");
        for (int64_t i = start; i < end; i++) {
            const char *ac = codes[i % k];
            strbuf_appendf(&sql, "%s('+1%s%07lld','%s')", i > start ? "," : "", ac,
                           (long long)(2000000 + i / k), ac);
        }
        if (!run_chunk(db, &sql, tty, "numbers", end, m, errbuf, errlen))
            return false;
    }
    if (tty && m)
        fputc('\n', stderr);
    return true;
}

/* Tells dispatchers to reload the pools (best effort: without Redis they
 * load them anyway when they find no pool). */
static void invalidate_pools(const char *redis_url)
{
    struct redis_url u;
    char err[ERRBUF_LEN];
    if (!redis_parse_url(redis_url, &u, err, sizeof err)) {
        log_warn("cannot reset the Redis pools", "err=\"%s\"", err);
        return;
    }
    redisContext *c = redis_sync_connect(&u, err, sizeof err);
    /* One step, so that a rebuild running now either sees both or neither
     * (see PB_POOL_GEN_KEY). */
    redisReply *r = c ? redisCommand(c, "EVAL %s 2 %s %s",
                                     "redis.call('INCR', KEYS[1]) return redis.call('DEL', KEYS[2])",
                                     PB_POOL_GEN_KEY, PB_POOL_LOADED_KEY)
                      : NULL;
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        log_warn("cannot reset the Redis pools; dispatchers reload them when Redis has none",
                 "err=\"%s\"", c ? c->errstr : err);
    else
        log_info("Redis pools will be reloaded from MySQL", "%s", "");
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
}

bool seed_run(const struct sb_config *cfg, struct db *db, char *errbuf, size_t errlen)
{
    bool tty = isatty(STDERR_FILENO);
    int64_t t0 = sb_mono_ms();
    if (!seed_users(db, cfg->seed_users, tty, errbuf, errlen) ||
        !seed_numbers(db, cfg->seed_numbers, cfg->seed_area_codes, tty, errbuf, errlen))
        return false;
    log_info("seeded", "users=%lld numbers=%lld area_codes=%s ms=%lld", (long long)cfg->seed_users,
             (long long)cfg->seed_numbers, cfg->seed_area_codes, (long long)(sb_mono_ms() - t0));
    invalidate_pools(cfg->redis_url);
    return true;
}
