/* jwks.c - see jwks.h. */
#include "jwks.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "log.h"
#include "metrics.h"
#include "strbuf.h"

#define JWKS_MAX_BYTES (1 << 20)
#define JWKS_TIMEOUT_MS 5000
#define JWKS_DEFAULT_AGE_S 300
#define JWKS_MAX_AGE_S 86400
#define JWKS_BACKOFF_MIN_MS 1000
#define JWKS_BACKOFF_MAX_MS 60000

static struct {
    bool enabled, allow_http;
    struct jwt_policy policy;
    char *issuer, *jwks_url; /* jwks_url: configured, else found by discovery */
    int64_t refresh_min_ms;
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    struct jwt_keyset *keys;
    atomic_ullong generation; /* written under mu, read without it */
    bool stop, wanted;
    int64_t last_fetch_ms; /* monotonic, 0 = never */
    uint64_t started;      /* fetches begun */
    atomic_ullong fetches; /* fetches finished, good or bad */
    struct metric *m_ok, *m_failed, *m_keys;
} j = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct fetched {
    struct strbuf body;
    int64_t max_age_s; /* -1: none said */
    bool too_big;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct fetched *f = arg;
    if (f->body.len + size * n > JWKS_MAX_BYTES) {
        f->too_big = true;
        return 0;
    }
    strbuf_append(&f->body, p, size * n);
    return strbuf_failed(&f->body) ? 0 : size * n;
}

/* Cache-Control: max-age=N (no-cache and no-store: as soon as allowed). */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct fetched *f = arg;
    size_t len = size * n;
    if (len > 14 && strncasecmp(p, "Cache-Control:", 14) == 0) {
        char v[256];
        size_t vl = len - 14 < sizeof v - 1 ? len - 14 : sizeof v - 1;
        memcpy(v, p + 14, vl);
        v[vl] = '\0';
        const char *m = strstr(v, "max-age=");
        if (m)
            f->max_age_s = strtoll(m + 8, NULL, 10);
        else if (strstr(v, "no-cache") || strstr(v, "no-store"))
            f->max_age_s = 0;
    }
    return len;
}

/* GETs url into f->body (NUL-terminated); false and errbuf otherwise. */
static bool http_get(CURL *c, const char *url, struct fetched *f, char *errbuf, size_t errlen)
{
    f->body.len = 0;
    f->max_age_s = -1;
    f->too_big = false;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)JWKS_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "switchboard-dispatcher");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK)
        return sb_errf(errbuf, errlen, "%s: %s", url, f->too_big ? "answer over 1 MB" : curl_easy_strerror(rc));
    if (status != 200)
        return sb_errf(errbuf, errlen, "%s answered %ld", url, status);
    strbuf_append(&f->body, "", 1); /* NUL, for the parser; len counts it */
    return !strbuf_failed(&f->body) || sb_errf(errbuf, errlen, "out of memory");
}

/* The keys decide who may act as admin: they come over TLS, or over
 * plain HTTP from this machine (a provider beside the dispatcher, as in
 * the tests), or from anywhere when jwt_allow_http says the network is
 * trusted. */
static bool url_allowed(const char *url)
{
    if (strncmp(url, "https://", 8) == 0)
        return true;
    if (strncmp(url, "http://", 7) != 0)
        return false;
    if (j.allow_http)
        return true;
    const char *host = url + 7;
    size_t n = strcspn(host, ":/?#");
    return (n == 9 && strncmp(host, "localhost", 9) == 0) || strncmp(host, "127.", 4) == 0 ||
           strncmp(host, "[::1]", 5) == 0;
}

/* The JWKS URL from the issuer's discovery document. */
static bool discover(CURL *c, struct fetched *f, char *errbuf, size_t errlen)
{
    char url[1024];
    size_t il = strlen(j.issuer);
    snprintf(url, sizeof url, "%.*s/.well-known/openid-configuration",
             (int)(il && j.issuer[il - 1] == '/' ? il - 1 : il), j.issuer);
    if (!http_get(c, url, f, errbuf, errlen))
        return false;
    cJSON *doc = json_parse_strict(f->body.p, f->body.len - 1, errbuf, errlen);
    if (doc == NULL)
        return false;
    const char *iss = json_str(doc, "issuer", ""), *uri = json_str(doc, "jwks_uri", NULL);
    bool ok = false;
    /* OpenID Connect Discovery 4.3: the document must name the issuer we
     * asked, or its keys may be another's. */
    if (strcmp(iss, j.issuer) != 0)
        sb_errf(errbuf, errlen, "%s names issuer \"%.200s\", not jwt_issuer", url, iss);
    else if (uri == NULL || !url_allowed(uri))
        sb_errf(errbuf, errlen, "%s has no https jwks_uri (plain http: loopback only, unless jwt_allow_http)", url);
    else if ((j.jwks_url = strdup(uri)) == NULL)
        sb_errf(errbuf, errlen, "out of memory");
    else
        ok = true;
    cJSON_Delete(doc);
    return ok;
}

/* One fetch: the new set, and in *age_s how long it may be kept. */
static struct jwt_keyset *fetch(CURL *c, int64_t *age_s, char *errbuf, size_t errlen)
{
    struct fetched f = {0};
    struct jwt_keyset *ks = NULL;
    size_t skipped = 0;
    if ((j.jwks_url || discover(c, &f, errbuf, errlen)) && http_get(c, j.jwks_url, &f, errbuf, errlen) &&
        (ks = jwt_keyset_parse(f.body.p, f.body.len - 1, &skipped, errbuf, errlen)) != NULL) {
        *age_s = f.max_age_s < 0 ? JWKS_DEFAULT_AGE_S : f.max_age_s;
        log_debug("JWKS fetched", "url=%s keys=%zu skipped=%zu max_age_s=%lld", j.jwks_url,
                  jwt_keyset_count(ks), skipped, (long long)f.max_age_s);
    }
    strbuf_free(&f.body);
    return ks;
}

static void *fetch_main(void *arg)
{
    (void)arg;
    CURL *c = curl_easy_init();
    int64_t next_ms = 0, backoff_ms = JWKS_BACKOFF_MIN_MS;
    pthread_mutex_lock(&j.mu);
    while (!j.stop) {
        int64_t now = sb_mono_ms();
        int64_t wake = next_ms;
        if (j.wanted && j.last_fetch_ms + j.refresh_min_ms < wake)
            wake = j.last_fetch_ms + j.refresh_min_ms;
        if (now < wake) {
            struct timespec ts = sb_mono_deadline(wake);
            pthread_cond_timedwait(&j.cv, &j.mu, &ts);
            continue;
        }
        j.wanted = false;
        j.started++;
        pthread_mutex_unlock(&j.mu);
        char why[512] = "";
        int64_t age_s = 0;
        struct jwt_keyset *ks = c ? fetch(c, &age_s, why, sizeof why) : NULL;
        if (c == NULL)
            snprintf(why, sizeof why, "%s", "cannot make a curl handle");
        pthread_mutex_lock(&j.mu);
        j.last_fetch_ms = sb_mono_ms();
        bool ok = ks != NULL;
        metric_add(ok ? j.m_ok : j.m_failed, 1);
        if (ok && jwt_keyset_equal(ks, j.keys)) {
            /* Nothing changed (a provider that says no-cache is asked every
             * jwt_refresh_min_s): the checked tokens stay checked. */
            jwt_keyset_unref(ks);
        } else if (ok) {
            log_info("the provider's keys are new or changed", "url=%s keys=%zu", j.jwks_url, jwt_keyset_count(ks));
            metric_set(j.m_keys, (int64_t)jwt_keyset_count(ks));
            jwt_keyset_unref(j.keys);
            j.keys = ks;
            atomic_fetch_add(&j.generation, 1);
        }
        if (ok) {
            int64_t min_s = (j.refresh_min_ms + 999) / 1000;
            age_s = age_s < min_s ? min_s : age_s > JWKS_MAX_AGE_S ? JWKS_MAX_AGE_S : age_s;
            next_ms = j.last_fetch_ms + age_s * 1000;
            backoff_ms = JWKS_BACKOFF_MIN_MS;
        } else {
            log_warn("cannot fetch the provider's keys: the old ones stay in use", "error=\"%s\" retry_ms=%lld",
                     why, (long long)backoff_ms);
            next_ms = j.last_fetch_ms + backoff_ms;
            backoff_ms = backoff_ms * 2 > JWKS_BACKOFF_MAX_MS ? JWKS_BACKOFF_MAX_MS : backoff_ms * 2;
        }
        atomic_fetch_add(&j.fetches, 1);
    }
    pthread_mutex_unlock(&j.mu);
    curl_easy_cleanup(c);
    return NULL;
}

static char *dup_or_null(const char *s)
{
    return s && s[0] ? strdup(s) : NULL;
}

bool jwks_start(const struct sb_config *cfg, char *errbuf, size_t errlen)
{
    if (cfg->jwt_issuer[0] == '\0')
        return true;
    if (cfg->jwt_audience[0] == '\0')
        return sb_errf(errbuf, errlen, "jwt_issuer is set but jwt_audience is not: tokens for any "
                                       "service of the provider would pass");
    if (cfg->jwt_admin_scope[0] == '\0' && cfg->jwt_read_scope[0] == '\0')
        return sb_errf(errbuf, errlen, "jwt_admin_scope and jwt_read_scope are both empty: no token could do anything");
    j.allow_http = cfg->jwt_allow_http != 0;
    if (!url_allowed(cfg->jwt_issuer) || (cfg->jwt_jwks_url[0] && !url_allowed(cfg->jwt_jwks_url)))
        return sb_errf(errbuf, errlen, "jwt_issuer and jwt_jwks_url must be https URLs (plain http: loopback only, "
                                       "unless jwt_allow_http = 1)");
    j.issuer = strdup(cfg->jwt_issuer);
    j.jwks_url = dup_or_null(cfg->jwt_jwks_url);
    if (j.issuer == NULL || (cfg->jwt_jwks_url[0] && j.jwks_url == NULL))
        return sb_errf(errbuf, errlen, "out of memory");
    j.policy = (struct jwt_policy){.issuer = cfg->jwt_issuer,
                                   .audience = cfg->jwt_audience,
                                   .scope_claim = cfg->jwt_scope_claim,
                                   .admin_scope = cfg->jwt_admin_scope,
                                   .read_scope = cfg->jwt_read_scope,
                                   .leeway_s = cfg->jwt_leeway_s};
    j.refresh_min_ms = cfg->jwt_refresh_min_s * 1000;
    j.m_ok = metrics_counter("switchboard_jwks_fetches_total", "result=\"ok\"",
                             "fetches of the token provider's keys (JWKS), by result");
    j.m_failed = metrics_counter("switchboard_jwks_fetches_total", "result=\"failed\"",
                                 "fetches of the token provider's keys (JWKS), by result");
    j.m_keys = metrics_gauge("switchboard_jwks_keys", "", "the provider's keys in use (RS256 and ES256 ones)");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return sb_errf(errbuf, errlen, "cannot initialise libcurl");
    /* Waits are timed on the monotonic clock: a wall clock set back must
     * not hold the next fetch. */
    if (!sb_cond_init_mono(&j.cv))
        return sb_errf(errbuf, errlen, "cannot make the JWKS thread's condition variable");
    j.stop = false;
    if (pthread_create(&j.thread, NULL, fetch_main, NULL) != 0)
        return sb_errf(errbuf, errlen, "cannot start the JWKS thread");
    j.running = j.enabled = true;
    return true;
}

void jwks_stop(void)
{
    if (!j.running)
        return;
    pthread_mutex_lock(&j.mu);
    j.stop = true;
    pthread_cond_signal(&j.cv);
    pthread_mutex_unlock(&j.mu);
    pthread_join(j.thread, NULL);
    j.running = false;
    jwt_keyset_unref(j.keys);
    j.keys = NULL;
    free(j.issuer);
    free(j.jwks_url);
    j.issuer = j.jwks_url = NULL;
    curl_global_cleanup();
}

bool jwks_enabled(void)
{
    return j.enabled;
}

const struct jwt_policy *jwks_policy(void)
{
    return &j.policy;
}

struct jwt_keyset *jwks_get(uint64_t *generation)
{
    pthread_mutex_lock(&j.mu);
    struct jwt_keyset *ks = j.keys ? jwt_keyset_ref(j.keys) : NULL;
    *generation = atomic_load(&j.generation);
    pthread_mutex_unlock(&j.mu);
    return ks;
}

uint64_t jwks_generation(void)
{
    return atomic_load(&j.generation);
}

uint64_t jwks_fetches(void)
{
    return atomic_load(&j.fetches);
}

uint64_t jwks_refresh(void)
{
    pthread_mutex_lock(&j.mu);
    if (!j.wanted) {
        j.wanted = true;
        pthread_cond_signal(&j.cv);
    }
    /* The next fetch to begin sees the provider as it is now. */
    uint64_t target = j.started + 1;
    pthread_mutex_unlock(&j.mu);
    return target;
}

int64_t jwks_refresh_min_ms(void)
{
    return j.refresh_min_ms;
}
