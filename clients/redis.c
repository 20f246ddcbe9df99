/* redis.c - see redis.h. */
#include "redis.h"

#include <assert.h>
#include <hiredis/adapters/libevent.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "log.h"

#define REDIS_PING_MS 1000
#define REDIS_STALE_MS 3000

struct redis_client {
    struct event_base *base;
    struct redis_url url;
    redisAsyncContext *ac; /* NULL while disconnected */
    bool connected;
    bool closing;
    char run_id[48]; /* this server's INFO run_id; "" until known */
    /* Read by other threads (/readyz asks about every loop's client):
     * usable = connected with a known run_id. */
    atomic_bool usable;
    _Atomic int64_t last_pong_ms;
    struct backoff backoff;
    struct event *reconnect_ev;
    struct event *ping_ev;
};

bool redis_parse_url(const char *url, struct redis_url *out, char *errbuf, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0) {
        sb_errf(errbuf, errlen, "Redis URL must start with redis:// (got '%s')", url);
        return false;
    }
    p += 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t n = (size_t)(at - pw);
        if (n >= sizeof out->password)
            goto bad;
        memcpy(out->password, pw, n);
        p = at + 1;
    }
    if (!sb_parse_host_port(&p, out->host, sizeof out->host, &out->port))
        goto bad;
    if (*p == '/' && p[1]) {
        int64_t db;
        if (!sb_parse_i64(p + 1, 0, 1000, &db))
            goto bad;
        out->db = (int)db;
    } else if (*p && strcmp(p, "/") != 0) {
        goto bad;
    }
    return true;
bad:
    sb_errf(errbuf, errlen, "cannot parse Redis URL (want redis://[:password@]host:port[/db])");
    return false;
}

redisContext *redis_sync_connect(const struct redis_url *url, char *errbuf, size_t errlen)
{
    struct timeval tv = {.tv_sec = 2};
    redisContext *c = redisConnectWithTimeout(url->host, url->port, tv);
    if (c == NULL || c->err) {
        sb_errf(errbuf, errlen, "redis %s:%d: %s", url->host, url->port, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    const char *cmds[2] = {NULL, NULL};
    char auth[160], sel[32];
    if (*url->password) {
        snprintf(auth, sizeof auth, "AUTH %s", url->password);
        cmds[0] = auth;
    }
    if (url->db) {
        snprintf(sel, sizeof sel, "SELECT %d", url->db);
        cmds[1] = sel;
    }
    for (int i = 0; i < 2; i++) {
        if (cmds[i] == NULL)
            continue;
        redisReply *r = redisCommand(c, cmds[i]);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            sb_errf(errbuf, errlen, "redis setup command failed");
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

static void redis_schedule_reconnect(struct redis_client *rc)
{
    if (rc->closing)
        return;
    int64_t ms = backoff_next(&rc->backoff);
    struct timeval tv = sb_timeval_ms(ms);
    evtimer_add(rc->reconnect_ev, &tv);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_client *rc = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        log_warn("redis connect failed", "host=%s port=%d err=\"%s\"", rc->url.host,
                 rc->url.port, ac->errstr);
        rc->ac = NULL;
        redis_schedule_reconnect(rc);
        return;
    }
    rc->connected = true;
    rc->last_pong_ms = sb_mono_ms();
    backoff_reset(&rc->backoff);
    log_info("redis connected", "host=%s port=%d", rc->url.host, rc->url.port);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_client *rc = ac->data;
    rc->ac = NULL;
    rc->connected = false;
    atomic_store(&rc->usable, false);
    if (!rc->closing) {
        log_warn("redis disconnected", "host=%s port=%d err=\"%s\"", rc->url.host, rc->url.port,
                 status == REDIS_OK ? "closed" : ac->errstr);
        redis_schedule_reconnect(rc);
    }
}

static void on_reply_ignored(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    (void)priv;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_error("redis setup command failed", "err=\"%s\"", reply->str);
}

static void on_pong(redisAsyncContext *ac, void *r, void *priv)
{
    (void)priv;
    struct redis_client *rc = ac->data;
    redisReply *reply = r;
    if (reply && reply->type != REDIS_REPLY_ERROR)
        rc->last_pong_ms = sb_mono_ms();
}

static void on_info(redisAsyncContext *ac, void *r, void *priv);

static void redis_dial(struct redis_client *rc)
{
    redisAsyncContext *ac = redisAsyncConnect(rc->url.host, rc->url.port);
    if (ac == NULL || ac->err) {
        log_warn("redis connect failed", "host=%s port=%d err=\"%s\"", rc->url.host,
                 rc->url.port, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        redis_schedule_reconnect(rc);
        return;
    }
    ac->data = rc;
    rc->ac = ac;
    redisLibeventAttach(ac, rc->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Commands queued before the connect completes are sent once it does. */
    if (*rc->url.password)
        redisAsyncCommand(ac, on_reply_ignored, NULL, "AUTH %s", rc->url.password);
    if (rc->url.db)
        redisAsyncCommand(ac, on_reply_ignored, NULL, "SELECT %d", rc->url.db);
    rc->run_id[0] = '\0';
    atomic_store(&rc->usable, false);
    redisAsyncCommand(ac, on_info, NULL, "INFO server");
}

/* A restarted Redis has a new run_id: number allocation uses it to tell
 * that counters may have been rolled back (AOF loses the last second). */
static void on_info(redisAsyncContext *ac, void *r, void *priv)
{
    (void)priv;
    struct redis_client *rc = ac->data;
    redisReply *reply = r;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING)
        return;
    const char *p = strstr(reply->str, "run_id:");
    if (p == NULL)
        return;
    p += 7;
    size_t n = strcspn(p, "\r\n");
    if (n == 0 || n >= sizeof rc->run_id)
        return;
    memcpy(rc->run_id, p, n);
    rc->run_id[n] = '\0';
    atomic_store(&rc->usable, rc->connected);
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_dial(arg);
}

static void on_ping_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct redis_client *rc = arg;
    if (rc->ac && rc->connected)
        redisAsyncCommand(rc->ac, on_pong, NULL, "PING");
}

struct redis_client *redis_client_new(struct event_base *base, const struct redis_url *url)
{
    struct redis_client *rc = calloc(1, sizeof *rc);
    if (rc == NULL)
        return NULL;
    rc->base = base;
    rc->url = *url;
    backoff_init(&rc->backoff, 100, 2000);
    rc->reconnect_ev = evtimer_new(base, on_reconnect_timer, rc);
    rc->ping_ev = event_new(base, -1, EV_PERSIST, on_ping_timer, rc);
    if (rc->reconnect_ev == NULL || rc->ping_ev == NULL) {
        redis_client_free(rc);
        return NULL;
    }
    struct timeval tv = sb_timeval_ms(REDIS_PING_MS);
    event_add(rc->ping_ev, &tv);
    redis_dial(rc);
    return rc;
}

void redis_client_free(struct redis_client *rc)
{
    if (rc == NULL)
        return;
    rc->closing = true;
    if (rc->ac)
        redisAsyncFree(rc->ac); /* runs pending callbacks with NULL replies */
    if (rc->reconnect_ev)
        event_free(rc->reconnect_ev);
    if (rc->ping_ev)
        event_free(rc->ping_ev);
    free(rc);
}

bool redis_client_ready(const struct redis_client *rc)
{
    return atomic_load(&rc->usable) && sb_mono_ms() - atomic_load(&rc->last_pong_ms) < REDIS_STALE_MS;
}

const char *redis_client_run_id(const struct redis_client *rc)
{
    return rc->connected ? rc->run_id : "";
}

/* hiredis appends each command to its output buffer, which starts empty
 * after every write and grows by reallocation (a chain of them per turn
 * of the loop under load, ~6 % of the dispatcher's CPU): room for a
 * turn's commands is made at once. */
#define REDIS_OBUF_ROOM 16384

static void make_room(redisAsyncContext *ac)
{
    if (sdsavail(ac->c.obuf) < 2048) {
        sds grown = sdsMakeRoomFor(ac->c.obuf, REDIS_OBUF_ROOM);
        if (grown)
            ac->c.obuf = grown;
    }
}

/* argv (lens NULL: NUL-terminated strings) in Redis's protocol, as
 * hiredis would write it, but without its allocations and format strings
 * (every request sends a few: hiredis's formatting was ~3 % of the
 * dispatcher's CPU). */
static bool send_argv(redisAsyncContext *ac, redisCallbackFn *cb, void *priv, int argc,
                      const char **argv, const size_t *lens)
{
    char stack[2048];
    size_t need = 1 + SB_I64_STR + 2;
    for (int i = 0; i < argc; i++)
        need += 1 + SB_I64_STR + 2 + (lens ? lens[i] : strlen(argv[i])) + 2;
    char *buf = need <= sizeof stack ? stack : malloc(need);
    if (buf == NULL)
        return false;
    char *p = buf;
    *p++ = '*';
    p += sb_i64_to_str(argc, p);
    *p++ = '\r';
    *p++ = '\n';
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        *p++ = '$';
        p += sb_i64_to_str((int64_t)n, p);
        *p++ = '\r';
        *p++ = '\n';
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    assert((size_t)(p - buf) <= need);
    make_room(ac);
    bool ok = redisAsyncFormattedCommand(ac, cb, priv, buf, (size_t)(p - buf)) == REDIS_OK;
    if (buf != stack)
        free(buf);
    return ok;
}

bool redis_client_command(struct redis_client *rc, redisCallbackFn *cb, void *priv,
                          const char *fmt, ...)
{
    if (rc->ac == NULL || !rc->connected || !rc->run_id[0])
        return false;
    va_list ap;
    va_start(ap, fmt);
    make_room(rc->ac);
    int rv = redisvAsyncCommand(rc->ac, cb, priv, fmt, ap);
    va_end(ap);
    return rv == REDIS_OK;
}

/* ---- EVAL as EVALSHA ------------------------------------------------------
 *
 * Scripts are sent by digest: EVAL makes Redis hash the whole script on
 * every call (and the socket carry it), EVALSHA only looks the digest up.
 * The digest of each script (static text, so its address identifies it) is
 * computed once. A server that does not know the script yet (first use,
 * restart, SCRIPT FLUSH) answers NOSCRIPT; the command is then sent once
 * more as the EVAL it was, which also loads the script. */

#define SCRIPT_CACHE 32

/* Filled once each, never changed: a reader that sees script (acquire)
 * sees its sha. Only adding takes the lock. */
static struct {
    _Atomic(const char *) script;
    char sha[41];
} script_shas[SCRIPT_CACHE];
static pthread_mutex_t script_lock = PTHREAD_MUTEX_INITIALIZER;

/* The digest of script into out; false if the cache is full (send EVAL).
 * Runs for every script a request runs: no lock once the digest is
 * known (the lock was ~2 % of the dispatcher's CPU). */
static bool script_sha(const char *script, char out[41])
{
    for (int i = 0; i < SCRIPT_CACHE; i++) {
        const char *s = atomic_load_explicit(&script_shas[i].script, memory_order_acquire);
        if (s == script) {
            memcpy(out, script_shas[i].sha, 41);
            return true;
        }
        if (s == NULL)
            break;
    }
    bool found = false;
    pthread_mutex_lock(&script_lock);
    for (int i = 0; i < SCRIPT_CACHE && !found; i++) {
        const char *s = atomic_load_explicit(&script_shas[i].script, memory_order_relaxed);
        if (s == script) {
            found = true;
        } else if (s == NULL) {
            unsigned char d[SHA_DIGEST_LENGTH];
            SHA1((const unsigned char *)script, strlen(script), d);
            for (int k = 0; k < SHA_DIGEST_LENGTH; k++)
                snprintf(script_shas[i].sha + 2 * k, 3, "%02x", d[k]);
            atomic_store_explicit(&script_shas[i].script, script, memory_order_release);
            found = true;
        }
        if (found)
            memcpy(out, script_shas[i].sha, 41);
    }
    pthread_mutex_unlock(&script_lock);
    return found;
}

/* The command as the caller gave it (EVAL), kept to send again: one
 * allocation holds it all (argv, lens and the arguments' bytes). */
struct evalsha {
    redisCallbackFn *cb;
    void *priv;
    int argc;
    const char **argv; /* [0] "EVAL", [1] the caller's static script, then copies */
    size_t *lens;
};

static void on_evalsha(redisAsyncContext *ac, void *rep, void *priv)
{
    struct evalsha *e = priv;
    redisReply *r = rep;
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        if (!send_argv(ac, e->cb, e->priv, e->argc, e->argv, e->lens) && e->cb)
            e->cb(ac, NULL, e->priv);
    } else if (e->cb) {
        e->cb(ac, rep, e->priv);
    }
    free(e);
}

static bool send_evalsha(struct redis_client *rc, redisCallbackFn *cb, void *priv, int argc,
                         const char **argv, const size_t *argvlen, const char *sha)
{
    size_t bytes = 0;
    for (int i = 2; i < argc; i++)
        bytes += (argvlen ? argvlen[i] : strlen(argv[i])) + 1;
    struct evalsha *e = malloc(sizeof *e + (size_t)argc * (sizeof *e->argv + sizeof *e->lens) + bytes);
    if (e == NULL)
        return false;
    e->cb = cb;
    e->priv = priv;
    e->argc = argc;
    e->argv = (const char **)(e + 1);
    e->lens = (size_t *)(e->argv + argc);
    char *w = (char *)(e->lens + argc);
    for (int i = 0; i < argc; i++) {
        e->lens[i] = argvlen ? argvlen[i] : strlen(argv[i]);
        if (i < 2) {
            e->argv[i] = argv[i]; /* "EVAL" and the static script */
            continue;
        }
        memcpy(w, argv[i], e->lens[i]);
        w[e->lens[i]] = '\0';
        e->argv[i] = w;
        w += e->lens[i] + 1;
    }
    /* Sent as EVALSHA <digest>: the command is formatted at once, so
     * the first two slots are swapped for the send and restored. */
    const char *verb = e->argv[0], *script = e->argv[1];
    size_t script_len = e->lens[1];
    e->argv[0] = "EVALSHA";
    e->lens[0] = 7;
    e->argv[1] = sha;
    e->lens[1] = 40;
    bool ok = send_argv(rc->ac, on_evalsha, e, argc, e->argv, e->lens);
    e->argv[0] = verb;
    e->lens[0] = strlen(verb);
    e->argv[1] = script;
    e->lens[1] = script_len;
    if (!ok)
        free(e);
    return ok;
}

bool redis_client_command_argv(struct redis_client *rc, redisCallbackFn *cb, void *priv,
                               int argc, const char **argv, const size_t *argvlen)
{
    if (rc->ac == NULL || !rc->connected || !rc->run_id[0])
        return false;
    char sha[41];
    if (argc >= 3 && strcmp(argv[0], "EVAL") == 0 && script_sha(argv[1], sha))
        return send_evalsha(rc, cb, priv, argc, argv, argvlen, sha);
    return send_argv(rc->ac, cb, priv, argc, argv, argvlen);
}
