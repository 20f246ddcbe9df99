/* access.c - see access.h. */
#include "access.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "httpconn.h"
#include "jwks.h"
#include "log.h"

#define MAX_KEYS 64
#define DIGEST_LEN 32

static unsigned char key_digests[MAX_KEYS][DIGEST_LEN];
static bool key_read_only[MAX_KEYS]; /* ops_read_key_hashes: GET routes of class ACCESS_READ only */
static size_t nkeys;
static int64_t rate_rps, rate_burst;

/* Refills a bucket by the time passed, takes a token if there is one:
 * 0 = allowed, else milliseconds until a token is there. Redis's clock,
 * so every dispatcher process sees the same time. */
static const char bucket_lua[] =
    "local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now\n"
    "tokens = math.min(burst, tokens + (now - ts) * rate / 1000)\n"
    "if tokens < 1 then return math.ceil((1 - tokens) * 1000 / rate) end\n"
    "redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'ts', now)\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)\n"
    "return 0\n";

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Appends the digests of a comma-separated list (option name) to the
 * table, each marked read_only or not. */
static bool parse_digests(const char *list, const char *name, bool read_only, char *errbuf, size_t errlen)
{
    size_t entry = 0;
    for (const char *p = list; p && *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        if (*p == '\0')
            break;
        entry++;
        if (nkeys == MAX_KEYS) {
            sb_errf(errbuf, errlen, "%s: at most %d keys in all", name, MAX_KEYS);
            return false;
        }
        for (int i = 0; i < DIGEST_LEN; i++) {
            int hi = hexval(p[2 * i]), lo = hi < 0 ? -1 : hexval(p[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                sb_errf(errbuf, errlen, "%s: entry %zu is not a SHA-256 hex digest (64 hex characters)", name,
                        entry);
                return false;
            }
            key_digests[nkeys][i] = (unsigned char)(hi << 4 | lo);
        }
        p += 2 * DIGEST_LEN;
        if (*p != '\0' && *p != ',' && *p != ' ') {
            sb_errf(errbuf, errlen, "%s: entry %zu is longer than a SHA-256 digest", name, entry);
            return false;
        }
        key_read_only[nkeys++] = read_only;
    }
    return true;
}

bool access_init(const struct sb_config *cfg, char *errbuf, size_t errlen)
{
    nkeys = 0;
    rate_rps = cfg->rate_limit_rps;
    rate_burst = cfg->rate_limit_burst > 0 ? cfg->rate_limit_burst : 2 * cfg->rate_limit_rps;
    return parse_digests(cfg->api_key_hashes, "api_key_hashes", false, errbuf, errlen) &&
           parse_digests(cfg->ops_read_key_hashes, "ops_read_key_hashes", true, errbuf, errlen);
}

size_t access_key_count(void)
{
    return nkeys;
}

size_t access_admin_key_count(void)
{
    size_t n = 0;
    for (size_t i = 0; i < nkeys; i++)
        n += !key_read_only[i];
    return n;
}

/* What the presented key may do: 0 nothing, 1 read (a read-only key), 2
 * everything (an admin key). Every digest is compared in full, so the
 * time taken does not tell which one was close. */
static int key_level(const char *key, unsigned char digest[DIGEST_LEN])
{
    unsigned int len = 0;
    if (!EVP_Digest(key, strlen(key), digest, &len, EVP_sha256(), NULL) || len != DIGEST_LEN)
        return 0;
    int level = 0;
    for (size_t i = 0; i < nkeys; i++) {
        int match = CRYPTO_memcmp(digest, key_digests[i], DIGEST_LEN) == 0;
        int l = match * (key_read_only[i] ? 1 : 2);
        level = l > level ? l : level;
    }
    return level;
}

bool access_key_principal(const char *key, char *principal, size_t cap)
{
    unsigned char digest[DIGEST_LEN];
    int level = key_level(key, digest);
    if (level == 0)
        return false;
    snprintf(principal, cap, "%c:%02x%02x%02x%02x%02x%02x%02x%02x", level == 2 ? 'k' : 'r', digest[0],
             digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]);
    return true;
}

bool access_read_only(const char *principal)
{
    return principal[0] == 'r';
}

const char *access_bucket_script(void)
{
    return bucket_lua;
}

static void unauthorized(struct http_ctx *ctx, const char *fmt, const char *detail)
{
    http_req_add_header(ctx->req, "WWW-Authenticate", "Bearer realm=\"switchboard\"");
    http_reply_error(ctx, 401, "unauthorized", fmt, detail);
}

/* RFC 6750 3.1: a credential that was presented and failed says why in
 * the challenge too. The description is one of our own fixed texts (no
 * quote or backslash in them), never the token. */
static void invalid_token(struct http_ctx *ctx, const char *why)
{
    char h[320];
    snprintf(h, sizeof h, "Bearer realm=\"switchboard\", error=\"invalid_token\", error_description=\"%s\"", why);
    http_req_add_header(ctx->req, "WWW-Authenticate", h);
    http_reply_error(ctx, 401, "invalid_token", "%s", why);
}

/* A read-only key may use only routes of class ACCESS_READ (an allowlist:
 * a class added later is closed to it until said otherwise); false after
 * answering 403. */
static bool may_write(struct http_ctx *ctx, const char *principal)
{
    if (ctx->route->access == ACCESS_READ || !access_read_only(principal))
        return true;
    http_reply_error(ctx, 403, "forbidden", "%s",
                     "this API key is read-only (ops_read_key_hashes): it may read the ops API and look "
                     "notifications up, nothing else");
    return false;
}

enum auth { AUTH_DENIED, AUTH_OK, AUTH_PARKED };

/* Tokens this loop checked, by SHA-256 of the token: a full check costs
 * 20 us (RS256) to 63 us (ES256) of CPU (bench/jwtbench.c), a client sends the same
 * token for minutes. An entry holds while its key set is the current one
 * (a new set, as after a rotation, checks every token again) and until
 * the token's exp; one per slot, the newest wins. Thread-local: each loop
 * has its own, no lock. */
#define SEEN_SLOTS 256
struct seen_token {
    unsigned char digest[DIGEST_LEN];
    uint64_t generation; /* 0: empty */
    int64_t exp;
    struct jwt_grant grant;
};
static _Thread_local struct seen_token seen[SEEN_SLOTS];

/* Requests whose token named a key not yet fetched wait for the fetch
 * that jwks_refresh asked for (a provider that rotated its keys), polled
 * on their loop, then are checked once more. That fetch comes at most
 * jwt_refresh_min_s after the last, so tokens with made-up key ids cannot
 * make the dispatcher hammer the provider; and at most KID_WAITERS wait
 * at once per process (the rest are refused at once), so they cannot
 * pile up either. */
#define KID_POLL_MS 20
#define KID_FETCH_MS 12000 /* one in progress, then ours; each times out after 5 s */
#define KID_WAITERS 256
static atomic_int kid_waiters;
struct kid_wait {
    struct http_ctx ctx; /* a copy, as while waiting for the rate limit */
    struct event *ev;
    uint64_t target; /* the fetch to wait for (jwks_refresh) */
    int64_t deadline_ms;
};
static void dispatch(struct http_ctx *ctx, const struct access_grant *g, bool may_wait);

static void kid_wait_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct kid_wait *w = arg;
    if (!http_req_gone(w->ctx.req) && jwks_fetches() < w->target && sb_mono_ms() < w->deadline_ms) {
        struct timeval tv = sb_timeval_ms(KID_POLL_MS);
        evtimer_add(w->ev, &tv);
        return;
    }
    atomic_fetch_sub(&w->ctx.loop->d->inflight, 1);
    atomic_fetch_sub(&kid_waiters, 1);
    if (http_req_gone(w->ctx.req))
        http_req_abandon(w->ctx.req);
    else {
        http_req_log_trace(w->ctx.req);
        dispatch(&w->ctx, NULL, false);
        log_set_trace(NULL);
    }
    event_free(w->ev);
    free(w);
}

static bool park_for_keys(struct http_ctx *ctx)
{
    if (atomic_fetch_add(&kid_waiters, 1) >= KID_WAITERS) {
        atomic_fetch_sub(&kid_waiters, 1);
        return false;
    }
    struct kid_wait *w = malloc(sizeof *w);
    if (w == NULL) {
        atomic_fetch_sub(&kid_waiters, 1);
        return false;
    }
    w->ctx = *ctx;
    w->target = jwks_refresh();
    w->deadline_ms = sb_mono_ms() + jwks_refresh_min_ms() + KID_FETCH_MS;
    w->ev = evtimer_new(ctx->loop->base, kid_wait_cb, w);
    struct timeval tv = sb_timeval_ms(KID_POLL_MS);
    if (w->ev == NULL || evtimer_add(w->ev, &tv) != 0) {
        if (w->ev)
            event_free(w->ev);
        free(w);
        atomic_fetch_sub(&kid_waiters, 1);
        return false;
    }
    atomic_fetch_add(&ctx->loop->d->inflight, 1);
    return true;
}

/* Checks an access token, from this loop's cache when it can. JWT_OK
 * fills *g. *keys_missing: no key set was ever fetched, so none could be
 * checked. */
static enum jwt_status token_grant(const char *token, struct jwt_grant *g, bool *keys_missing)
{
    *keys_missing = false;
    unsigned char d[DIGEST_LEN];
    unsigned int dlen = 0;
    if (strlen(token) > JWT_MAX_LEN || !EVP_Digest(token, strlen(token), d, &dlen, EVP_sha256(), NULL))
        return JWT_MALFORMED;
    int64_t now = sb_now_ms() / 1000;
    uint64_t gen = jwks_generation();
    struct seen_token *e = &seen[d[0]];
    if (gen != 0 && e->generation == gen && memcmp(e->digest, d, DIGEST_LEN) == 0 &&
        now < e->exp + jwks_policy()->leeway_s) {
        *g = e->grant;
        return JWT_OK;
    }
    struct jwt_keyset *ks = jwks_get(&gen);
    if (ks == NULL) {
        *keys_missing = true;
        return JWT_UNKNOWN_KID;
    }
    enum jwt_status st = jwt_verify(token, ks, jwks_policy(), now, g);
    jwt_keyset_unref(ks);
    if (st == JWT_OK) {
        memcpy(e->digest, d, DIGEST_LEN);
        e->generation = gen;
        e->exp = g->exp;
        e->grant = *g;
    }
    return st;
}

/* The bearer credential is a JWT access token: its principal ("k:j." or
 * "r:j." and 16 hex characters of its subject), or an answer given. */
static enum auth token_auth(struct http_ctx *ctx, const char *token, char *principal, size_t cap, bool may_wait)
{
    static _Thread_local struct log_every refused_log;
    struct jwt_grant g;
    bool keys_missing;
    enum jwt_status st = token_grant(token, &g, &keys_missing);
    if (keys_missing) {
        /* Never fetched: the provider has been away since we started. */
        (void)jwks_refresh();
        http_req_add_header(ctx->req, "Retry-After", "1");
        http_reply_error(ctx, 503, "keys_unavailable", "%s",
                         "the token provider's keys could not be fetched yet; retry shortly");
        return AUTH_DENIED;
    }
    if (st == JWT_UNKNOWN_KID && may_wait && park_for_keys(ctx))
        return AUTH_PARKED;
    if (st != JWT_OK) {
        int64_t skipped;
        if (log_every_due(&refused_log, 1000, &skipped))
            log_info("access token refused", "request_id=%s reason=\"%s\" refused_before=%lld", ctx->request_id,
                     jwt_status_text(st), (long long)skipped);
        invalid_token(ctx, jwt_status_text(st));
        return AUTH_DENIED;
    }
    const struct jwt_policy *p = jwks_policy();
    if (g.level == 0 || (g.level == 1 && ctx->route->access != ACCESS_READ)) {
        /* The least scope that would do: read's for a read route (when
         * there is one), else admin's. */
        const char *need = g.level == 0 && ctx->route->access == ACCESS_READ && p->read_scope[0] ? p->read_scope
                                                                                                 : p->admin_scope;
        char h[320];
        snprintf(h, sizeof h, "Bearer realm=\"switchboard\", error=\"insufficient_scope\", scope=\"%s\"", need);
        http_req_add_header(ctx->req, "WWW-Authenticate", h);
        http_reply_error(ctx, 403, "insufficient_scope", "the token's %s does not hold %s", p->scope_claim, need);
        return AUTH_DENIED;
    }
    snprintf(principal, cap, "%c:j.%s", g.level == 2 ? 'k' : 'r', g.subject);
    return AUTH_OK;
}

/* Who is asking, for the rate limit: "k:<digest prefix>" for an admin key,
 * "r:<digest prefix>" for a read-only one, "k:j.<subject>" or
 * "r:j.<subject>" for an access token, "t:<token>" for an application;
 * AUTH_DENIED after answering 401 or 403, AUTH_PARKED when it waits for
 * the provider's keys. g: the connection's grant (access_dispatch_as),
 * else the request's Authorization header counts. */
static enum auth authenticate(struct http_ctx *ctx, char *principal, size_t cap, const struct access_grant *g,
                              bool may_wait)
{
    principal[0] = '\0';
    if (ctx->route->access == ACCESS_OPEN)
        return AUTH_OK;
    if (g && g->expires_s && sb_now_ms() / 1000 >= g->expires_s) {
        invalid_token(ctx, jwt_status_text(JWT_EXPIRED)); /* the connection's token: open a new one */
        return AUTH_DENIED;
    }
    if (g && !g->admin[0] && (ctx->route->access != ACCESS_APP || strcmp(ctx->params[0], g->app) != 0)) {
        http_reply_error(ctx, 403, "forbidden", "%s",
                         ctx->route->access == ACCESS_APP
                             ? "this connection was opened with another application's token"
                             : "this connection was opened with an application token: this command "
                               "needs an API key");
        return AUTH_DENIED;
    }
    if (ctx->route->access == ACCESS_APP) {
        /* The token in the path is the credential; an unknown one is the
         * handler's 404. Only well-formed tokens get a bucket. */
        const char *t = ctx->params[0];
        if (sb_token_valid(t, TOKEN_LEN, TOKEN_LEN))
            sb_join(principal, cap, "t:", t, (char *)NULL); /* TOKEN_LEN characters, just checked */
        return AUTH_OK;
    }
    if (g) {
        sb_join(principal, cap, g->admin, (char *)NULL);
        return may_write(ctx, principal) ? AUTH_OK : AUTH_DENIED;
    }
    const char *h = http_req_header(ctx->req, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || h[7] == '\0') {
        unauthorized(ctx, "%s", ctx->route->access == ACCESS_READ
                                    ? "this route needs an API key (admin or read-only) or an access token: "
                                      "Authorization: Bearer <key or token>"
                                    : "this route needs an admin API key or access token: Authorization: Bearer "
                                      "<key or token>");
        return AUTH_DENIED;
    }
    if (nkeys == 0 && !jwks_enabled()) {
        unauthorized(ctx, "%s", "no API keys (api_key_hashes) and no token issuer (jwt_issuer) are configured");
        return AUTH_DENIED;
    }
    if (access_key_principal(h + 7, principal, cap))
        return may_write(ctx, principal) ? AUTH_OK : AUTH_DENIED;
    if (jwks_enabled() && jwt_shaped(h + 7))
        return token_auth(ctx, h + 7, principal, cap, may_wait);
    /* Not a token (or tokens are off): a wrong key, answered as always. */
    unauthorized(ctx, "%s", "the API key is not valid");
    return AUTH_DENIED;
}

static void run_handler(struct http_ctx *ctx)
{
    log_debug("request", "request_id=%s route=%s path=%s", ctx->request_id, ctx->route->name,
              ctx->path);
    ctx->route->fn(ctx);
}

static void on_bucket(redisAsyncContext *ac, void *rep, void *priv)
{
    (void)ac;
    struct http_ctx *ctx = priv; /* a copy made while it waited */
    redisReply *r = rep;
    atomic_fetch_sub(&ctx->loop->d->inflight, 1);
    if (http_req_gone(ctx->req)) {
        http_req_abandon(ctx->req); /* the client left meanwhile: skip the work */
    } else {
        http_req_log_trace(ctx->req);
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
            char after[24];
            snprintf(after, sizeof after, "%lld", (long long)((r->integer + 999) / 1000));
            http_req_add_header(ctx->req, "Retry-After", after);
            http_reply_error(ctx, 429, "rate_limited",
                             "too many requests for this %s; retry in %lld ms",
                             ctx->route->access == ACCESS_APP ? "application" : "API key",
                             (long long)r->integer);
        } else {
            if (r == NULL || r->type != REDIS_REPLY_INTEGER)
                log_debug("rate limit not checked (Redis)", "request_id=%s", ctx->request_id);
            run_handler(ctx);
        }
        log_set_trace(NULL);
    }
    free(ctx);
}

bool access_grant_for(const char *credential, struct access_grant *g)
{
    memset(g, 0, sizeof *g);
    if (access_key_principal(credential, g->admin, sizeof g->admin))
        return true;
    if (jwks_enabled() && jwt_shaped(credential)) {
        /* A WebSocket is granted once, at its handshake: a token that
         * names a key not fetched yet is refused, not waited for. */
        struct jwt_grant jg;
        bool keys_missing;
        if (token_grant(credential, &jg, &keys_missing) != JWT_OK || jg.level == 0)
            return false;
        snprintf(g->admin, sizeof g->admin, "%c:j.%s", jg.level == 2 ? 'k' : 'r', jg.subject);
        g->expires_s = jg.exp + jwks_policy()->leeway_s; /* each command checks it */
        return true;
    }
    if (!sb_token_valid(credential, TOKEN_LEN, TOKEN_LEN))
        return false;
    memcpy(g->app, credential, TOKEN_LEN);
    return true;
}

void access_dispatch(struct http_ctx *ctx)
{
    access_dispatch_as(ctx, NULL);
}

void access_dispatch_as(struct http_ctx *ctx, const struct access_grant *g)
{
    dispatch(ctx, g, true);
}

static void dispatch(struct http_ctx *ctx, const struct access_grant *g, bool may_wait)
{
    char *principal = ctx->principal;
    if (authenticate(ctx, principal, sizeof ctx->principal, g, may_wait) != AUTH_OK)
        return;
    /* A request waiting for its verdict keeps a copy of its context
     * (ctx->path stays valid: it lives in the connection's input until the
     * reply). */
    struct http_ctx *a = NULL;
    if (*principal && rate_rps > 0 && (a = malloc(sizeof *a)) != NULL) {
        *a = *ctx;
        char key[80], rate[SB_I64_STR], burst[SB_I64_STR]; /* every request: no printf */
        sb_join(key, sizeof key, "sb:rl:", principal, (char *)NULL);
        sb_i64_to_str(rate_rps, rate);
        sb_i64_to_str(rate_burst, burst);
        const char *argv[] = {"EVAL", bucket_lua, "1", key, rate, burst};
        atomic_fetch_add(&ctx->loop->d->inflight, 1);
        if (redis_client_command_argv(ctx->loop->redis, on_bucket, a, 6, argv, NULL))
            return;
        /* Redis away: let it through (see access.h). */
        atomic_fetch_sub(&ctx->loop->d->inflight, 1);
        free(a);
    }
    run_handler(ctx);
}
