/* Contract tests of the Elasticsearch adapter (store/search_es.c).
 *
 * Run against ES_URL by tests/integration/test_es_contract.py: a real
 * OpenSearch node it starts (or the server its ES_URL names, such as the
 * compose stack's Elasticsearch), and the fake in tests/fakes/fake_es.py
 * with SB_FAKE_ES=1, which enables the cases that need the fake's fault
 * injection (429, a forced item error); everything else is documented
 * Elasticsearch behaviour and must hold on every server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search_es.h"

static const char *url;
static char index_name[64];
static bool fake;
#define TOKEN "AAAAAAAAAAAAAAAAAAAAAA"

static int64_t numbers_of(cJSON *arr, int64_t *out, int max)
{
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (n < max)
            out[n++] = (int64_t)cJSON_GetObjectItem(it, "number")->valuedouble;
    }
    return n;
}

static cJSON *search(int64_t chat, const char *q, int64_t limit, int64_t offset)
{
    char err[ERRBUF_LEN];
    cJSON *out = NULL;
    assert_int_equal(es_search(url, index_name, TOKEN, chat, q, limit, offset, &out, err, sizeof err), DB_OK);
    return out;
}

static void refresh(void)
{
    char err[ERRBUF_LEN];
    assert_int_equal(es_refresh(url, index_name, err, sizeof err), DB_OK);
}

static size_t discard(char *d, size_t s, size_t n, void *u)
{
    (void)d;
    (void)u;
    return s * n;
}

static void post_fake(const char *path, const char *json)
{
    char full[512];
    snprintf(full, sizeof full, "%s%s", url, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void test_index_created_once(void **state)
{
    (void)state;
    char err[ERRBUF_LEN], path[1024];
    snprintf(path, sizeof path, "%s/schema/elasticsearch/messages.json", SB_SOURCE_DIR);
    assert_int_equal(es_ensure_index(url, index_name, path, err, sizeof err), DB_OK);
    /* Already there: still fine. */
    assert_int_equal(es_ensure_index(url, index_name, path, err, sizeof err), DB_OK);
}

static void test_bulk_and_partial_search(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    struct es_doc docs[] = {
        {TOKEN, 1, 1, 10, "Hello there", 0, ""},
        {TOKEN, 1, 2, 11, "well HELLO again", 0, ""},
        {TOKEN, 1, 3, 12, "nothing to see", 0, ""},
        {TOKEN, 1, 4, 13, "hello", 0, ""},
        {TOKEN, 2, 1, 14, "hello from another chat", 0, ""},
    };
    assert_int_equal(es_bulk_index(url, index_name, docs, 5, err, sizeof err), DB_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(docs[i].status, DB_OK);
    refresh();
    int64_t got[10];
    cJSON *r = search(1, "ELL", 10, 0);
    int n = (int)numbers_of(r, got, 10);
    cJSON_Delete(r);
    assert_int_equal(n, 3); /* partial, case-insensitive, chat 1 only */
    bool seen[5] = {0};
    for (int i = 0; i < n; i++)
        seen[got[i]] = true;
    assert_true(seen[1] && seen[2] && seen[4]);
    r = search(1, "hello", 10, 0);
    n = (int)numbers_of(r, got, 10);
    cJSON_Delete(r);
    assert_int_equal(n, 3);
    assert_int_equal(got[0], 4); /* the body that is just "hello" ranks first */
    r = search(1, "zzz", 10, 0);
    assert_int_equal(cJSON_GetArraySize(r), 0);
    cJSON_Delete(r);
    /* from/size paginate the same ranking */
    r = search(1, "hello", 2, 1);
    int64_t page[10];
    assert_int_equal(numbers_of(r, page, 10), 2);
    assert_int_equal(page[0], got[1]);
    assert_int_equal(page[1], got[2]);
    cJSON_Delete(r);
}

static void test_versions_keep_newest(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    struct es_doc upd = {TOKEN, 1, 3, 20, "now it says hello", 0, ""};
    assert_int_equal(es_bulk_index(url, index_name, &upd, 1, err, sizeof err), DB_OK);
    assert_int_equal(upd.status, DB_OK);
    /* A replay of the older create: refused by version (409), reported OK. */
    struct es_doc stale = {TOKEN, 1, 3, 12, "nothing to see", 0, ""};
    assert_int_equal(es_bulk_index(url, index_name, &stale, 1, err, sizeof err), DB_OK);
    assert_int_equal(stale.status, DB_OK);
    refresh();
    cJSON *r = search(1, "says", 10, 0);
    assert_int_equal(cJSON_GetArraySize(r), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(r, 0), "body")->valuestring,
                        "now it says hello");
    cJSON_Delete(r);
}

static void test_fake_faults(void **state)
{
    (void)state;
    if (!fake) {
        skip();
        return;
    }
    char err[ERRBUF_LEN];
    /* 429 on the whole request: retry later. */
    post_fake("/_fake/bulk_status", "{\"status\":429,\"count\":1}");
    struct es_doc d = {TOKEN, 3, 1, 30, "x", 0, ""};
    assert_int_equal(es_bulk_index(url, index_name, &d, 1, err, sizeof err), DB_TRANSIENT);
    assert_non_null(strstr(err, "429"));
    assert_int_equal(es_bulk_index(url, index_name, &d, 1, err, sizeof err), DB_OK);
    assert_int_equal(d.status, DB_OK);
    /* One bad item among good ones: only it fails, permanently. */
    post_fake("/_fake/item_error", "{\"id\":\"" TOKEN ":3:2\",\"status\":400,"
              "\"type\":\"document_parsing_exception\",\"reason\":\"bad\"}");
    struct es_doc two[] = {{TOKEN, 3, 2, 31, "bad one", 0, ""}, {TOKEN, 3, 3, 32, "good one", 0, ""}};
    assert_int_equal(es_bulk_index(url, index_name, two, 2, err, sizeof err), DB_OK);
    assert_int_equal(two[0].status, DB_FATAL);
    assert_non_null(strstr(two[0].error, "400"));
    assert_int_equal(two[1].status, DB_OK);
    /* 5xx for an item: retry. */
    post_fake("/_fake/item_error", "{\"id\":\"" TOKEN ":3:4\",\"status\":503,"
              "\"type\":\"unavailable_shards_exception\",\"reason\":\"primary shard is not active\"}");
    struct es_doc d5 = {TOKEN, 3, 4, 33, "y", 0, ""};
    assert_int_equal(es_bulk_index(url, index_name, &d5, 1, err, sizeof err), DB_OK);
    assert_int_equal(d5.status, DB_TRANSIENT);
}

static void test_unreachable_is_transient(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    cJSON *out = NULL;
    assert_int_equal(es_search("http://127.0.0.1:1", index_name, TOKEN, 1, "x", 10, 0, &out, err, sizeof err),
                     DB_TRANSIENT);
    struct es_doc d = {TOKEN, 1, 1, 1, "x", 0, ""};
    assert_int_equal(es_bulk_index("http://127.0.0.1:1", index_name, &d, 1, err, sizeof err), DB_TRANSIENT);
}

int main(void)
{
    url = getenv("ES_URL");
    if (url == NULL || !*url) {
        fprintf(stderr, "ES_URL is not set\n");
        return 1;
    }
    fake = getenv("SB_FAKE_ES") && strcmp(getenv("SB_FAKE_ES"), "1") == 0;
    char id[33];
    if (!sb_random_id(id))
        return 1;
    snprintf(index_name, sizeof index_name, "sbtest-%.12s", id);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_created_once),
        cmocka_unit_test(test_bulk_and_partial_search),
        cmocka_unit_test(test_versions_keep_newest),
        cmocka_unit_test(test_fake_faults),
        cmocka_unit_test(test_unreachable_is_transient),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
