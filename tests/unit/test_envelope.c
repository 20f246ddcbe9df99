/* Job envelope: encode/decode round trip, validation, and agreement with
 * the JSON Schemas in schema/topics/ that other producers read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

static bool decode(const char *s, struct envelope *env, char *err)
{
    return envelope_decode(env, s, strlen(s), err, ERRBUF_LEN);
}

static void test_round_trip(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddStringToObject(payload, "note", "hi");
    char *text = envelope_encode("system.ping", "k1", "r1", 1700000000123, payload, err, sizeof err);
    assert_non_null(text);
    assert_string_equal(text, "{\"type\":\"system.ping\",\"version\":1,\"key\":\"k1\",\"request_id\":"
                              "\"r1\",\"created_at\":1700000000123,\"payload\":{\"note\":\"hi\"}}");
    struct envelope env;
    assert_true(decode(text, &env, err));
    assert_string_equal(env.type, "system.ping");
    assert_string_equal(env.key, "k1");
    assert_string_equal(env.request_id, "r1");
    assert_int_equal(env.version, 1);
    assert_int_equal(env.created_at, 1700000000123);
    assert_string_equal(json_str(env.payload, "note", ""), "hi");
    assert_string_equal(env.job->topic, "chat.commands");
    envelope_clear(&env);
    free(text);
}

/* A payload given as text goes in as it is: the same envelope as from
 * the tree, and it decodes to the same job. */
static void test_encode_text(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    const char *payload = "{\"application_token\":\"abcdefghijklmnopqrstuv\",\"chat_number\":3,"
                          "\"number\":7,\"body\":\"h\\u00e9 \\\"x\\\"\"}";
    char *text = envelope_encode_text("message.create", "abcdefghijklmnopqrstuv", "r1", 5, payload,
                                      strlen(payload), err, sizeof err);
    assert_non_null(text);
    cJSON *tree = cJSON_Parse(payload);
    char *from_tree = envelope_encode("message.create", "abcdefghijklmnopqrstuv", "r1", 5, tree, err,
                                      sizeof err);
    assert_non_null(from_tree);
    struct envelope a, b;
    assert_true(decode(text, &a, err));
    assert_true(decode(from_tree, &b, err));
    assert_true(cJSON_Compare(a.root, b.root, true));
    assert_string_equal(json_str(a.payload, "body", ""), "h\xc3\xa9 \"x\"");
    envelope_clear(&a);
    envelope_clear(&b);
    free(text);
    free(from_tree);
    assert_null(envelope_encode_text("no.such", "k", "r", 1, "{}", 2, err, sizeof err));
}

static void test_encode_rejects(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    assert_null(envelope_encode("no.such", "k", "r", 1, cJSON_CreateObject(), err, sizeof err));
    cJSON *bad = cJSON_CreateObject();
    cJSON_AddNumberToObject(bad, "note", 1);
    assert_null(envelope_encode("system.ping", "k", "r", 1, bad, err, sizeof err));
}

static void test_decode_rejects(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    struct envelope env;
    assert_false(decode("not json", &env, err));
    assert_false(decode("{\"type\":\"system.ping\"}", &env, err));
    assert_non_null(strstr(err, "missing field"));
    assert_false(decode("{\"type\":\"x.y\",\"version\":1,\"key\":\"k\",\"request_id\":\"r\","
                        "\"created_at\":1,\"payload\":{}}", &env, err));
    assert_non_null(strstr(err, "unknown job type"));
    assert_false(decode("{\"type\":\"system.ping\",\"version\":2,\"key\":\"k\",\"request_id\":\"r\","
                        "\"created_at\":1,\"payload\":{}}", &env, err));
    assert_non_null(strstr(err, "version"));
    assert_false(decode("{\"type\":\"system.ping\",\"version\":1,\"key\":\"k\",\"request_id\":\"r\","
                        "\"created_at\":1,\"payload\":{\"bogus\":1}}", &env, err));
    assert_non_null(strstr(err, "payload: unknown field 'bogus'"));
    assert_false(decode("{\"type\":\"system.ping\",\"version\":1,\"key\":\"\",\"request_id\":\"r\","
                        "\"created_at\":1,\"payload\":{}}", &env, err));
    assert_false(decode("{\"type\":\"system.ping\",\"version\":1,\"key\":\"k\",\"request_id\":\"r\","
                        "\"created_at\":-5,\"payload\":{}}", &env, err));
    assert_true(decode("{\"type\":\"system.ping\",\"version\":1,\"key\":\"k\",\"request_id\":\"r\","
                       "\"created_at\":5,\"payload\":{}}", &env, err));
    envelope_clear(&env);
}

/* Every job type the code knows is described in its topic's schema file,
 * with the same version and payload fields, and the file lists no job the
 * code would refuse. */
static void test_schemas_match_code(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    size_t described = 0;
    const char *topics[] = {"chat.commands", "phonebook.commands", "notify.requests", "notify.retry"};
    for (size_t t = 0; t < sizeof topics / sizeof topics[0]; t++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/schema/topics/%s.json", SB_SOURCE_DIR, topics[t]);
        char *text = sb_read_file(path, NULL, err, sizeof err);
        assert_non_null(text);
        cJSON *doc = cJSON_Parse(text);
        assert_non_null(doc);
        const cJSON *job;
        cJSON_ArrayForEach(job, cJSON_GetObjectItem(doc, "oneOf")) {
            const char *title = cJSON_GetObjectItem(job, "title")->valuestring;
            const struct job_type *jt = envelope_job_type(title);
            assert_non_null(jt);
            assert_string_equal(jt->topic, topics[t]);
            const cJSON *props = cJSON_GetObjectItem(job, "properties");
            assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(props, "version"), "const")->valueint,
                             jt->version);
            const cJSON *pprops = cJSON_GetObjectItem(cJSON_GetObjectItem(props, "payload"), "properties");
            assert_int_equal(cJSON_GetArraySize(pprops), (int)jt->nfields);
            for (size_t i = 0; i < jt->nfields; i++)
                assert_non_null(cJSON_GetObjectItem(pprops, jt->fields[i].name));
            described++;
        }
        cJSON_Delete(doc);
        free(text);
    }
    assert_int_equal(described, envelope_job_type_count());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_encode_text),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_schemas_match_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
