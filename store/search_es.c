/* search_es.c - see search_es.h. */
#include "search_es.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "search.h"

/* One easy handle per thread keeps connections to Elasticsearch alive;
 * the key's destructor cleans it up when a pool thread ends. */
static pthread_key_t curl_key;
static pthread_once_t curl_key_once = PTHREAD_ONCE_INIT;

static void curl_key_free(void *handle)
{
    curl_easy_cleanup(handle);
}

static void curl_key_make(void)
{
    if (pthread_key_create(&curl_key, curl_key_free) != 0)
        abort(); /* only at start-up, out of keys: nothing sensible to do */
}

static CURL *thread_curl(void)
{
    pthread_once(&curl_key_once, curl_key_make);
    CURL *c = pthread_getspecific(curl_key);
    if (c == NULL && (c = curl_easy_init()) != NULL && pthread_setspecific(curl_key, c) != 0) {
        curl_easy_cleanup(c);
        c = NULL;
    }
    return c;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    strbuf_append(arg, data, size * nmemb);
    return size * nmemb;
}

/* Sends one request; *status is the HTTP status, body the response text. */
static enum db_status es_call_within(const char *method, const char *url, const char *path,
                                     const char *content_type, const char *data, size_t len,
                                     long timeout_ms, long *status, struct strbuf *body,
                                     char *errbuf, size_t errlen)
{
    CURL *c = thread_curl();
    if (c == NULL) {
        sb_errf(errbuf, errlen, "curl_easy_init failed");
        return DB_TRANSIENT;
    }
    char full[1024];
    snprintf(full, sizeof full, "%s%s", url, path);
    struct curl_slist *hdrs = NULL;
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    hdrs = curl_slist_append(hdrs, ct);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 2000 ? timeout_ms : 2000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    if (data) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK) {
        sb_errf(errbuf, errlen, "elasticsearch %s %s: %s", method, path, curl_easy_strerror(rc));
        return DB_TRANSIENT;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (body->failed) {
        sb_errf(errbuf, errlen, "out of memory reading elasticsearch reply");
        return DB_TRANSIENT;
    }
    if (*status == 429 || *status >= 500) {
        sb_errf(errbuf, errlen, "elasticsearch %s %s: HTTP %ld", method, path, *status);
        return DB_TRANSIENT;
    }
    return DB_OK;
}

/* es_call_within with the timeout of reads and writes. */
static enum db_status es_call(const char *method, const char *url, const char *path,
                              const char *content_type, const char *data, size_t len,
                              long *status, struct strbuf *body, char *errbuf, size_t errlen)
{
    return es_call_within(method, url, path, content_type, data, len, 10000L, status, body,
                          errbuf, errlen);
}

enum db_status es_ping(const char *url, int timeout_ms, char *errbuf, size_t errlen)
{
    long status = 0;
    struct strbuf body = {0};
    enum db_status st = es_call_within("GET", url, "/", "application/json", NULL, 0,
                                       (long)timeout_ms, &status, &body, errbuf, errlen);
    strbuf_free(&body);
    if (st == DB_OK && status != 200) {
        sb_errf(errbuf, errlen, "elasticsearch GET /: HTTP %ld", status);
        st = DB_TRANSIENT;
    }
    return st;
}

enum db_status es_ensure_index(const char *url, const char *index, const char *mapping_path,
                               char *errbuf, size_t errlen)
{
    size_t len;
    char *mapping = sb_read_file(mapping_path, &len, errbuf, errlen);
    if (mapping == NULL)
        return DB_FATAL;
    char path[300];
    snprintf(path, sizeof path, "/%s", index);
    long status = 0;
    struct strbuf body = {0};
    enum db_status st = es_call("PUT", url, path, "application/json", mapping, len, &status,
                                &body, errbuf, errlen);
    free(mapping);
    if (st == DB_OK && status >= 400 &&
        !(status == 400 && body.p && strstr(body.p, "resource_already_exists_exception"))) {
        sb_errf(errbuf, errlen, "create index %s: HTTP %ld %.200s", index, status,
                body.p ? body.p : "");
        st = DB_FATAL;
    }
    strbuf_free(&body);
    return st;
}

enum db_status es_search(const char *url, const char *index, const char *token, int64_t chat,
                         const char *text, int64_t limit, int64_t offset, cJSON **out,
                         char *errbuf, size_t errlen)
{
    cJSON *q = cJSON_CreateObject();
    cJSON_AddNumberToObject(q, "from", (double)offset);
    cJSON_AddNumberToObject(q, "size", (double)limit);
    cJSON *bool_q = cJSON_AddObjectToObject(cJSON_AddObjectToObject(q, "query"), "bool");
    cJSON *filter = cJSON_AddArrayToObject(bool_q, "filter");
    cJSON *t1 = cJSON_CreateObject();
    cJSON_AddStringToObject(cJSON_AddObjectToObject(t1, "term"), "application_token", token);
    cJSON_AddItemToArray(filter, t1);
    cJSON *t2 = cJSON_CreateObject();
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(t2, "term"), "chat_number", (double)chat);
    cJSON_AddItemToArray(filter, t2);
    cJSON *must = cJSON_AddArrayToObject(bool_q, "must");
    cJSON *m = cJSON_CreateObject();
    cJSON *mb = cJSON_AddObjectToObject(cJSON_AddObjectToObject(m, "match"), "body");
    cJSON_AddStringToObject(mb, "query", text);
    cJSON_AddStringToObject(mb, "operator", "and");
    cJSON_AddItemToArray(must, m);
    cJSON *sort = cJSON_AddArrayToObject(q, "sort");
    cJSON_AddItemToArray(sort, cJSON_CreateString("_score"));
    cJSON *byn = cJSON_CreateObject();
    cJSON_AddStringToObject(byn, "number", "asc");
    cJSON_AddItemToArray(sort, byn);
    char *req = json_print(q);
    cJSON_Delete(q);
    if (req == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return DB_TRANSIENT;
    }
    char path[300];
    snprintf(path, sizeof path, "/%s/_search", index);
    long status = 0;
    struct strbuf body = {0};
    enum db_status st = es_call("POST", url, path, "application/json", req, strlen(req), &status,
                                &body, errbuf, errlen);
    free(req);
    cJSON *resp = NULL;
    if (st == DB_OK && status != 200) {
        sb_errf(errbuf, errlen, "search: HTTP %ld %.200s", status, body.p ? body.p : "");
        st = DB_FATAL;
    }
    if (st == DB_OK && (resp = cJSON_Parse(body.p ? body.p : "")) == NULL) {
        sb_errf(errbuf, errlen, "search: unreadable reply");
        st = DB_FATAL;
    }
    if (st == DB_OK) {
        *out = cJSON_CreateArray();
        const cJSON *hit;
        cJSON_ArrayForEach(hit, cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "hits"), "hits")) {
            const cJSON *src = cJSON_GetObjectItem(hit, "_source");
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "number", (double)json_i64(src, "number", 0));
            cJSON_AddStringToObject(o, "body", json_str(src, "body", ""));
            cJSON_AddItemToArray(*out, o);
        }
    }
    cJSON_Delete(resp);
    strbuf_free(&body);
    return st;
}

enum db_status es_bulk_index(const char *url, const char *index, struct es_doc *docs, size_t n,
                             char *errbuf, size_t errlen)
{
    struct strbuf req = {0};
    for (size_t i = 0; i < n; i++) {
        cJSON *action = cJSON_CreateObject();
        cJSON *meta = cJSON_AddObjectToObject(action, "index");
        char id[96];
        snprintf(id, sizeof id, "%s:%lld:%lld", docs[i].token, (long long)docs[i].chat,
                 (long long)docs[i].number);
        cJSON_AddStringToObject(meta, "_index", index);
        cJSON_AddStringToObject(meta, "_id", id);
        cJSON_AddNumberToObject(meta, "version", (double)docs[i].version);
        cJSON_AddStringToObject(meta, "version_type", "external");
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "application_token", docs[i].token);
        cJSON_AddNumberToObject(doc, "chat_number", (double)docs[i].chat);
        cJSON_AddNumberToObject(doc, "number", (double)docs[i].number);
        cJSON_AddStringToObject(doc, "body", docs[i].body);
        char *a = json_print(action), *d = json_print(doc);
        if (a && d)
            strbuf_appendf(&req, "%s\n%s\n", a, d);
        else
            req.failed = true;
        free(a);
        free(d);
        cJSON_Delete(action);
        cJSON_Delete(doc);
        docs[i].status = DB_TRANSIENT;
        docs[i].error[0] = '\0';
    }
    size_t len = req.len;
    char *text = strbuf_take(&req);
    if (text == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return DB_TRANSIENT;
    }
    long status = 0;
    struct strbuf body = {0};
    enum db_status st = es_call("POST", url, "/_bulk", "application/x-ndjson", text, len, &status,
                                &body, errbuf, errlen);
    free(text);
    cJSON *resp = NULL;
    if (st == DB_OK && status != 200) {
        sb_errf(errbuf, errlen, "bulk: HTTP %ld %.200s", status, body.p ? body.p : "");
        st = DB_TRANSIENT; /* the request as a whole was refused: retry it */
    }
    if (st == DB_OK && (resp = cJSON_Parse(body.p ? body.p : "")) == NULL) {
        sb_errf(errbuf, errlen, "bulk: unreadable reply");
        st = DB_TRANSIENT;
    }
    const cJSON *items = resp ? cJSON_GetObjectItem(resp, "items") : NULL;
    if (st == DB_OK && cJSON_GetArraySize(items) != (int)n) {
        sb_errf(errbuf, errlen, "bulk: %d results for %zu documents", cJSON_GetArraySize(items), n);
        st = DB_TRANSIENT;
    }
    for (size_t i = 0; st == DB_OK && i < n; i++) {
        const cJSON *item = cJSON_GetObjectItem(cJSON_GetArrayItem(items, (int)i), "index");
        int64_t s = json_i64(item, "status", 0);
        const cJSON *err = cJSON_GetObjectItem(item, "error");
        const char *reason = json_str(err, "reason", json_str(err, "type", "unknown error"));
        if ((s >= 200 && s < 300) || s == 409) {
            docs[i].status = DB_OK; /* 409: a newer version is already indexed */
        } else if (s == 429 || s >= 500 || s == 0) {
            docs[i].status = DB_TRANSIENT;
            snprintf(docs[i].error, sizeof docs[i].error, "HTTP %lld: %s", (long long)s, reason);
        } else {
            docs[i].status = DB_FATAL;
            snprintf(docs[i].error, sizeof docs[i].error, "HTTP %lld: %s", (long long)s, reason);
        }
    }
    cJSON_Delete(resp);
    strbuf_free(&body);
    return st;
}

enum db_status es_refresh(const char *url, const char *index, char *errbuf, size_t errlen)
{
    char path[300];
    snprintf(path, sizeof path, "/%s/_refresh", index);
    long status = 0;
    struct strbuf body = {0};
    enum db_status st = es_call("POST", url, path, "application/json", "", 0, &status, &body,
                                errbuf, errlen);
    strbuf_free(&body);
    if (st == DB_OK && status >= 400) {
        sb_errf(errbuf, errlen, "refresh: HTTP %ld", status);
        st = DB_FATAL;
    }
    return st;
}
