/* numbers.c - see numbers.h. */
#include "numbers.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "log.h"

/* Every script starts with this: sb:intact holds the run_id of the Redis
 * that has been keeping the cache. When it differs (a restart) or is gone
 * (FLUSHALL, or a fresh Redis), the cache has lost entries: the moment is
 * recorded in sb:loss_at, and for GRACE_S seconds after it "not in the
 * cache" is uncertain - a chat or message allocated before the loss may
 * still be on its way to MySQL. Returns true inside that window.
 * (These two keys sit outside the {token} hash slots: single Redis only.) */
#define LOSS_CHECK_LUA \
    "local function uncertain()\n" \
    "  local now = tonumber(redis.call('TIME')[1])\n" \
    "  if redis.call('GET', 'sb:intact') ~= ARGV[1] then\n" \
    "    redis.call('SET', 'sb:intact', ARGV[1]) redis.call('SET', 'sb:loss_at', now)\n" \
    "  end\n" \
    "  return now - tonumber(redis.call('GET', 'sb:loss_at') or '0') < " GRACE_S_STR "\n" \
    "end\n"
#define GRACE_S_STR "60"

/* KEYS: parent, seq, ceil, epoch, bits, parent scope's epoch and floor.
 * ARGV: run_id, parent bit or "" (parent is the application key).
 * Returns {number, numbers left in the block}, or -1 (needs a block), -2
 * (parent unknown) or -3 (parent not in the cache, but it may have been
 * allocated just before a loss: the loss was recent, and the parent's scope
 * was not rebuilt since or the parent's number is at or below the scope's
 * floor). The loss check runs only for an unknown parent, the one answer it
 * changes: an allocation from a known parent skips its TIME and two GETs.
 * The first check after a loss then records it; the window of doubt starts
 * no earlier than the loss, so it is never shorter than GRACE_S. */
static const char alloc_lua[] = LOSS_CHECK_LUA
    "local known\n"
    "if ARGV[2] == '' then known = redis.call('EXISTS', KEYS[1])\n"
    "else known = redis.call('GETBIT', KEYS[1], ARGV[2]) end\n"
    "if known == 0 then\n"
    "  if ARGV[2] ~= '' and uncertain() and (redis.call('GET', KEYS[6]) ~= ARGV[1] or\n"
    "      tonumber(ARGV[2]) <= tonumber(redis.call('GET', KEYS[7]) or '0')) then return -3 end\n"
    "  return -2\n"
    "end\n"
    "if redis.call('GET', KEYS[4]) ~= ARGV[1] then return -1 end\n"
    "local seq = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "local ceil = tonumber(redis.call('GET', KEYS[3]) or '0')\n"
    "if seq >= ceil then return -1 end\n"
    "seq = redis.call('INCR', KEYS[2])\n"
    "return {seq, ceil - seq}\n";

/* KEYS: key, its scope's epoch and floor. ARGV: run_id, bit or "".
 * 1 known, 0 not, -3 uncertain (as for the parent in alloc_lua). */
static const char known_lua[] = LOSS_CHECK_LUA
    "local fresh = uncertain()\n"
    "local known\n"
    "if ARGV[2] == '' then known = redis.call('EXISTS', KEYS[1])\n"
    "else known = redis.call('GETBIT', KEYS[1], ARGV[2]) end\n"
    "if known == 1 then return 1 end\n"
    "if ARGV[2] ~= '' and fresh and (redis.call('GET', KEYS[2]) ~= ARGV[1] or\n"
    "    tonumber(ARGV[2]) <= tonumber(redis.call('GET', KEYS[3]) or '0')) then return -3 end\n"
    "return 0\n";

/* KEYS: seq, ceil, epoch, floor. ARGV: lo, hi, run_id. Installs block
 * (lo, hi]: fresh after a loss or restart (the floor remembers that numbers
 * up to lo were issued before the cache was rebuilt); appended when
 * contiguous; after a lost block, jumped to once the current one is used
 * up; else stale. */
static const char install_lua[] =
    "local lo, hi = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local seq = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local ceil = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "if redis.call('GET', KEYS[3]) ~= ARGV[3] or ceil == 0 then\n"
    "  redis.call('SET', KEYS[1], lo) redis.call('SET', KEYS[2], hi)\n"
    "  redis.call('SET', KEYS[3], ARGV[3]) redis.call('SET', KEYS[4], lo) return 1\n"
    "end\n"
    "if lo == ceil then redis.call('SET', KEYS[2], hi) return 1 end\n"
    "if lo > ceil and seq >= ceil then\n"
    "  redis.call('SET', KEYS[1], lo) redis.call('SET', KEYS[2], hi) return 1\n"
    "end\n"
    "return 0\n";

/* KEYS: lock. ARGV: owner. Deletes the lock only if still ours. */
static const char unlock_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

#define LOCK_MS 5000
#define RETRY_MS 2

/* Longest key: the message scope's "...:floor" or "...:epoch". */
#define KEY_LEN (sizeof("sb:{" "}:m:-9223372036854775808:floor") + TOKEN_LEN)
#define SCOPE_LEN (sizeof("m::-9223372036854775808") + TOKEN_LEN)

struct alloc_op {
    struct loop *loop;
    /* Order of arrival on the loop. An allocation that finds its scope's
     * block used up waits in loop->num_wait behind the one that refills
     * it, in this order (see numbers_next). */
    uint64_t seq;
    bool waiting; /* in loop->num_wait */
    bool refilling; /* in loop->num_wait, and the one refilling its scope */
    TAILQ_ENTRY(alloc_op) wait_link;
    char token[TOKEN_LEN + 1];
    int64_t chat;
    numbers_cb cb;
    void *arg;
    int64_t deadline_ms;
    char owner[33]; /* of the refill lock: set when taking it */
    char keys[9][KEY_LEN]; /* parent, seq, ceil, epoch, bits, lock, floor,
                              parent scope's epoch and floor */
    char parent_bit[24];
    char scope[SCOPE_LEN];
    int64_t lo, hi;
    /* A refill ahead of need: nobody waits for a number from it. */
    bool ahead;
    bool failed;
    char err[ERRBUF_LEN];
};

/* Runs for every number: keys are joined from their parts, not formatted
 * (snprintf was a few per cent of the dispatcher's CPU). */
static void set_keys(struct alloc_op *op)
{
    static const char *const names[] = {":seq", ":ceil", ":epoch", ":bits", ":lock", ":floor"};
    char pre[KEY_LEN], base[KEY_LEN], chat[SB_I64_STR];
    size_t n;
    sb_join(pre, sizeof pre, "sb:{", op->token, "}", (char *)NULL);
    if (op->chat == 0) {
        n = sb_join(base, sizeof base, pre, ":c", (char *)NULL);
        sb_join(op->keys[0], sizeof op->keys[0], pre, ":app", (char *)NULL);
        op->parent_bit[0] = '\0';
        sb_join(op->scope, sizeof op->scope, "c:", op->token, (char *)NULL);
        memcpy(op->keys[7], op->keys[0], sizeof op->keys[0]); /* unused */
        memcpy(op->keys[8], op->keys[0], sizeof op->keys[0]);
    } else {
        sb_i64_to_str(op->chat, chat);
        n = sb_join(base, sizeof base, pre, ":m:", chat, (char *)NULL);
        sb_join(op->keys[0], sizeof op->keys[0], pre, ":c:bits", (char *)NULL);
        memcpy(op->parent_bit, chat, sizeof chat);
        sb_join(op->scope, sizeof op->scope, "m:", op->token, ":", chat, (char *)NULL);
        sb_join(op->keys[7], sizeof op->keys[7], pre, ":c:epoch", (char *)NULL);
        sb_join(op->keys[8], sizeof op->keys[8], pre, ":c:floor", (char *)NULL);
    }
    assert(n + sizeof ":floor" <= sizeof base); /* KEY_LEN fits the longest */
    (void)n;
    for (size_t i = 0; i < SB_ARRAY_LEN(names); i++)
        sb_join(op->keys[i + 1], sizeof op->keys[i + 1], base, names[i], (char *)NULL);
}

static void step_alloc(struct alloc_op *op);

/* The first allocation waiting on op's scope, or NULL. */
static struct alloc_op *scope_waiter(const struct alloc_op *op)
{
    struct alloc_op *w;
    TAILQ_FOREACH(w, &op->loop->num_wait, wait_link)
        if (w->chat == op->chat && strcmp(w->scope, op->scope) == 0)
            return w;
    return NULL;
}

/* Into the loop's waiting line, in the order the allocations arrived. */
static void wait_in_line(struct alloc_op *op)
{
    struct alloc_op *w;
    TAILQ_FOREACH_REVERSE(w, &op->loop->num_wait, alloc_op_q, wait_link)
        if (w->seq < op->seq)
            break;
    if (w)
        TAILQ_INSERT_AFTER(&op->loop->num_wait, w, op, wait_link);
    else
        TAILQ_INSERT_HEAD(&op->loop->num_wait, op, wait_link);
    op->waiting = true;
}

static void finish(struct alloc_op *op, enum numbers_result r, int64_t number);

/* op's scope has numbers again: the allocations that waited for it ask
 * Redis now, in their order, on the loop's one Redis connection, which
 * answers in that order. If op could not refill it (failed: MySQL or
 * Redis away, or its time ran out), they fail with it, at once: each
 * trying again in turn would answer the last of them only after as many
 * timeouts as there are before it. */
static void release_scope(struct alloc_op *op, bool failed)
{
    struct alloc_op *w, *next;
    for (w = TAILQ_FIRST(&op->loop->num_wait); w; w = next) {
        next = TAILQ_NEXT(w, wait_link);
        if (w->chat == op->chat && strcmp(w->scope, op->scope) == 0 && !w->refilling) {
            TAILQ_REMOVE(&op->loop->num_wait, w, wait_link);
            w->waiting = false;
            if (failed)
                finish(w, NUMBERS_UNAVAILABLE, 0);
            else
                step_alloc(w);
        }
    }
}

static void finish(struct alloc_op *op, enum numbers_result r, int64_t number)
{
    if (op->refilling) {
        TAILQ_REMOVE(&op->loop->num_wait, op, wait_link);
        op->waiting = op->refilling = false;
        release_scope(op, r == NUMBERS_UNAVAILABLE);
    }
    assert(!op->waiting);
    if (!op->ahead)
        op->cb(op->arg, r, number);
    free(op);
}

static void unavailable(struct alloc_op *op, const char *where)
{
    if (op->ahead) /* nobody waits: the block is refilled when it runs out */
        log_info("refill ahead failed", "scope=%s at=%s err=\"%s\"", op->scope, where, op->err);
    else
        log_warn("number allocation failed", "scope=%s at=%s err=\"%s\"", op->scope, where,
                 op->err);
    finish(op, NUMBERS_UNAVAILABLE, 0);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    step_alloc(arg);
}

static void retry_later(struct alloc_op *op)
{
    if (sb_mono_ms() > op->deadline_ms) {
        log_warn("number allocation timed out waiting for a block", "scope=%s", op->scope);
        finish(op, NUMBERS_UNAVAILABLE, 0);
        return;
    }
    struct timeval tv = {.tv_sec = 0, .tv_usec = RETRY_MS * 1000};
    if (event_base_once(op->loop->base, -1, EV_TIMEOUT, on_retry_timer, op, &tv) != 0)
        unavailable(op, "retry_later");
}

static void unlock(struct alloc_op *op)
{
    const char *argv[] = {"EVAL", unlock_lua, "1", op->keys[5], op->owner};
    if (!redis_client_command_argv(op->loop->redis, NULL, NULL, 5, argv, NULL))
        log_debug("refill unlock not sent (it expires by itself)", "scope=%s", op->scope);
}

static void on_install(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct alloc_op *op = priv;
    redisReply *reply = r;
    unlock(op);
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        unavailable(op, "on_install");
        return;
    }
    if (reply->integer == 0)
        log_info("stale number block discarded", "scope=%s lo=%lld hi=%lld", op->scope,
                 (long long)op->lo, (long long)op->hi);
    if (op->ahead)
        finish(op, NUMBERS_OK, 0);
    else
        step_alloc(op);
}

/* Pool thread: raise the durable ceiling by one block. */
static void reserve_work(void *ctx, void *arg)
{
    struct alloc_op *op = arg;
    struct db *db = ctx;
    int64_t block = op->loop->d->cfg->number_block;
    char *sql = db_sqlf(db, op->err, sizeof op->err,
                        "INSERT INTO number_blocks (scope, ceiling) VALUES (%s, LAST_INSERT_ID(%lld))"
                        " ON DUPLICATE KEY UPDATE ceiling = LAST_INSERT_ID(ceiling + %lld)",
                        op->scope, (long long)block, (long long)block);
    op->failed = sql == NULL || db_exec_autocommit(db, sql, op->err, sizeof op->err) != DB_OK;
    free(sql);
    if (!op->failed) {
        op->hi = (int64_t)mysql_insert_id(db_conn(db, op->err, sizeof op->err));
        op->lo = op->hi - block;
    }
}

static void reserve_done(void *arg)
{
    struct alloc_op *op = arg;
    if (op->failed || op->hi <= 0) {
        log_warn("cannot reserve a number block", "scope=%s err=\"%s\"", op->scope, op->err);
        unlock(op);
        unavailable(op, "reserve_done");
        return;
    }
    char lo[SB_I64_STR], hi[SB_I64_STR];
    sb_i64_to_str(op->lo, lo);
    sb_i64_to_str(op->hi, hi);
    const char *argv[] = {"EVAL", install_lua, "4", op->keys[1], op->keys[2], op->keys[3],
                          op->keys[6], lo, hi, redis_client_run_id(op->loop->redis)};
    if (!redis_client_command_argv(op->loop->redis, on_install, op, 10, argv, NULL))
        unavailable(op, "reserve_done");
}

static void on_lock(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct alloc_op *op = priv;
    redisReply *reply = r;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        unavailable(op, "on_lock");
        return;
    }
    if (reply->type == REDIS_REPLY_NIL) { /* someone else refills: wait for it */
        if (op->ahead)
            finish(op, NUMBERS_OK, 0);
        else
            retry_later(op);
        return;
    }
    if (!threadpool_submit(op->loop->d->dbpool, reserve_work, reserve_done, op->loop->q, op)) {
        unlock(op);
        unavailable(op, "on_lock");
    }
}

/* Takes the scope's refill lock under a fresh owner id (only a refill
 * needs one); on_lock reserves a block in MySQL. */
static void refill(struct alloc_op *op)
{
    if (!sb_random_id(op->owner)) {
        unavailable(op, "refill");
        return;
    }
    const char *argv[] = {"SET", op->keys[5], op->owner, "NX", "PX", "5000"};
    if (!redis_client_command_argv(op->loop->redis, on_lock, op, 6, argv, NULL))
        unavailable(op, "refill");
}

/* Half of the block is left: reserve the next one now, so that a busy
 * scope does not stall every block for a MySQL round trip (a chat taking
 * 10k messages a second uses up a 100-number block in 10 ms). The block
 * is appended to the current one when it arrives (install_lua). */
static void refill_ahead(const struct alloc_op *op)
{
    struct alloc_op *a = malloc(sizeof *a);
    if (a == NULL)
        return; /* the refill happens when the block runs out */
    *a = *op;
    a->ahead = true;
    a->waiting = a->refilling = false; /* never in the line */
    refill(a);
}

static void on_alloc(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct alloc_op *op = priv;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER &&
        reply->element[1]->type == REDIS_REPLY_INTEGER) {
        /* Exactly one allocation sees the half-way mark of each block. */
        if (reply->element[1]->integer == op->loop->d->cfg->number_block / 2)
            refill_ahead(op);
        finish(op, NUMBERS_OK, reply->element[0]->integer);
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_error("number script failed", "scope=%s err=\"%s\"", op->scope, reply->str);
        unavailable(op, "on_alloc");
    } else if (reply->integer == -2) {
        finish(op, NUMBERS_UNKNOWN_PARENT, 0);
    } else if (reply->integer == -3) {
        finish(op, NUMBERS_UNCERTAIN, 0);
    } else if (op->refilling || scope_waiter(op) == NULL) {
        /* The block is used up: this allocation refills it, and those
         * that follow wait for it, so none overtakes another. */
        if (!op->refilling) {
            wait_in_line(op);
            op->refilling = true;
        }
        refill(op);
    } else {
        wait_in_line(op); /* another allocation on this loop refills the scope */
    }
}

static void step_alloc(struct alloc_op *op)
{
    const char *argv[] = {"EVAL", alloc_lua, "7", op->keys[0], op->keys[1], op->keys[2],
                          op->keys[3], op->keys[4], op->keys[7], op->keys[8],
                          redis_client_run_id(op->loop->redis), op->parent_bit};
    if (!redis_client_command_argv(op->loop->redis, on_alloc, op, 12, argv, NULL))
        unavailable(op, "step_alloc");
}

void numbers_next(struct loop *l, const char *token, int64_t chat, numbers_cb cb, void *arg)
{
    struct alloc_op *op = calloc(1, sizeof *op);
    if (op == NULL) {
        cb(arg, NUMBERS_UNAVAILABLE, 0);
        return;
    }
    op->loop = l;
    sb_join(op->token, sizeof op->token, token, (char *)NULL);
    op->chat = chat;
    op->cb = cb;
    op->arg = arg;
    op->deadline_ms = sb_mono_ms() + l->d->cfg->request_timeout_ms;
    op->seq = ++l->num_seq;
    set_keys(op);
    if (!TAILQ_EMPTY(&l->num_wait) && scope_waiter(op))
        wait_in_line(op); /* behind those waiting for the scope's block */
    else
        step_alloc(op);
}

struct known_op {
    numbers_cb cb;
    void *arg;
};

static void on_known(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct known_op *k = priv;
    redisReply *reply = r;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        k->cb(k->arg, NUMBERS_UNAVAILABLE, 0);
    else if (reply->integer == -3)
        k->cb(k->arg, NUMBERS_UNCERTAIN, 0);
    else
        k->cb(k->arg, NUMBERS_OK, reply->integer ? 1 : 0);
    free(k);
}

/* The key and bit that say "this exists" (app key, chat bit, message bit)
 * and the scope that issued it. */
static void known_key(const char *token, int64_t chat, int64_t msg, char *key, size_t cap,
                      char bit[SB_I64_STR], char *scope, size_t scap)
{
    char n[SB_I64_STR];
    if (chat == 0) {
        sb_join(key, cap, "sb:{", token, "}:app", (char *)NULL);
        sb_join(scope, scap, "sb:{", token, "}:c", (char *)NULL);
        bit[0] = '\0';
    } else if (msg == 0) {
        sb_join(key, cap, "sb:{", token, "}:c:bits", (char *)NULL);
        sb_join(scope, scap, "sb:{", token, "}:c", (char *)NULL);
        sb_i64_to_str(chat, bit);
    } else {
        sb_i64_to_str(chat, n);
        sb_join(key, cap, "sb:{", token, "}:m:", n, ":bits", (char *)NULL);
        sb_join(scope, scap, "sb:{", token, "}:m:", n, (char *)NULL);
        sb_i64_to_str(msg, bit);
    }
}

void numbers_known(struct loop *l, const char *token, int64_t chat, int64_t msg, numbers_cb cb,
                   void *arg)
{
    char key[KEY_LEN], bit[SB_I64_STR], scope[KEY_LEN], epoch[KEY_LEN], floor[KEY_LEN];
    known_key(token, chat, msg, key, sizeof key, bit, scope, sizeof scope);
    sb_join(epoch, sizeof epoch, scope, ":epoch", (char *)NULL);
    sb_join(floor, sizeof floor, scope, ":floor", (char *)NULL);
    struct known_op *k = malloc(sizeof *k);
    if (k == NULL) {
        cb(arg, NUMBERS_UNAVAILABLE, 0);
        return;
    }
    k->cb = cb;
    k->arg = arg;
    const char *argv[] = {"EVAL", known_lua, "3", key, epoch, floor,
                          redis_client_run_id(l->redis), bit};
    if (!redis_client_command_argv(l->redis, on_known, k, 8, argv, NULL)) {
        free(k);
        cb(arg, NUMBERS_UNAVAILABLE, 0);
    }
}

static void on_marked(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct known_op *k = priv;
    redisReply *reply = r;
    k->cb(k->arg, reply && reply->type == REDIS_REPLY_INTEGER ? NUMBERS_OK : NUMBERS_UNAVAILABLE, 0);
    free(k);
}

void numbers_confirm(struct loop *l, const char *token, int64_t chat, int64_t msg, numbers_cb cb,
                     void *arg)
{
    char key[KEY_LEN], bit[SB_I64_STR], scope[KEY_LEN];
    known_key(token, chat, msg, key, sizeof key, bit, scope, sizeof scope);
    assert(*bit); /* chats and messages; applications are marked when made */
    struct known_op *k = malloc(sizeof *k);
    if (k == NULL) {
        cb(arg, NUMBERS_UNAVAILABLE, 0);
        return;
    }
    *k = (struct known_op){cb, arg};
    const char *argv[] = {"SETBIT", key, bit, "1"}; /* argv: no format string parsed per create */
    if (!redis_client_command_argv(l->redis, on_marked, k, 4, argv, NULL)) {
        free(k);
        cb(arg, NUMBERS_UNAVAILABLE, 0);
    }
}

void numbers_mark(struct loop *l, const char *token, int64_t chat, int64_t msg)
{
    char key[KEY_LEN], bit[SB_I64_STR], scope[KEY_LEN];
    known_key(token, chat, msg, key, sizeof key, bit, scope, sizeof scope);
    bool sent = *bit ? redis_client_command(l->redis, NULL, NULL, "SETBIT %s %s 1", key, bit)
                     : redis_client_command(l->redis, NULL, NULL, "SET %s 1", key);
    if (!sent)
        log_debug("cache mark not sent (Redis away)", "key=%s", key);
}
