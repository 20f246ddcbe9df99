/* kafka_conf: any librdkafka property reaches the clients over the
 * defaults, a comma can be escaped, the properties switchboard relies on
 * are refused, and secrets never show: not in --print-config's list, not
 * in the error for a bad value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kafka.h"

static char value[1024];

static const char *get(rd_kafka_conf_t *conf, const char *key)
{
    size_t n = sizeof value;
    if (rd_kafka_conf_get(conf, key, value, &n) != RD_KAFKA_CONF_OK)
        return NULL;
    return value;
}

static void test_applied_over_defaults(void **state)
{
    (void)state;
    char err[ERRBUF_LEN] = "";
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "socket.timeout.ms", "60000", err, sizeof err), RD_KAFKA_CONF_OK);
    assert_true(kafka_conf_apply(conf,
                                 " security.protocol=SASL_SSL, sasl.mechanisms = PLAIN ,"
                                 "sasl.username=app,socket.timeout.ms=3000,,debug=broker\\,topic,",
                                 err, sizeof err));
    assert_string_equal(get(conf, "security.protocol"), "sasl_ssl");
    assert_string_equal(get(conf, "sasl.mechanisms"), "PLAIN");
    assert_string_equal(get(conf, "sasl.username"), "app");
    assert_string_equal(get(conf, "socket.timeout.ms"), "3000"); /* the later value wins */
    assert_string_equal(get(conf, "debug"), "broker,topic");
    assert_true(kafka_conf_apply(conf, "", err, sizeof err));
    assert_true(kafka_conf_apply(conf, NULL, err, sizeof err));
    rd_kafka_conf_destroy(conf);
}

static void test_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "bootstrap.servers=h:1", "group.id=other", "enable.auto.offset.store=true",
        "enable.auto.commit=false", "acks=1", "enable.idempotence=false", "message.timeout.ms=1",
        "auto.offset.reset=latest", "acks", "=1", "no.such.property=1", "socket.timeout.ms=soon",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[ERRBUF_LEN] = "";
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (kafka_conf_apply(conf, bad[i], err, sizeof err))
            fail_msg("accepted %s", bad[i]);
        assert_true(strstr(err, "kafka") != NULL);
        rd_kafka_conf_destroy(conf);
    }
}

static void test_secrets_masked(void **state)
{
    (void)state;
    char out[256];
    sb_mask_kv_list("sasl.username=app,sasl.password=hunter2,ssl.key.password=x\\,y,debug=all", out,
                    sizeof out);
    assert_string_equal(out, "sasl.username=app,sasl.password=***,ssl.key.password=***,debug=all");
    sb_mask_kv_list("sasl.oauthbearer.config=principal=x secret=y", out, sizeof out);
    assert_string_equal(out, "sasl.oauthbearer.config=***");
    sb_mask_kv_list("", out, sizeof out);
    assert_string_equal(out, "");
    /* Cut only between items: never half a secret. */
    sb_mask_kv_list("a=1,sasl.password=verylongsecret", out, 12);
    assert_string_equal(out, "a=1");
    /* A typo instead of '=': the item is not echoed, it may hold a secret. */
    {
        char e2[ERRBUF_LEN] = "";
        rd_kafka_conf_t *c2 = rd_kafka_conf_new();
        assert_false(kafka_conf_apply(c2, "sasl.username=a,sasl.password:hunter2", e2, sizeof e2));
        assert_null(strstr(e2, "hunter2"));
        assert_non_null(strstr(e2, "item 2"));
        rd_kafka_conf_destroy(c2);
    }
    /* An inline PEM is long: no limit on an item's length. */
    {
        static char pem[20000];
        memset(pem, 'A', sizeof pem - 1);
        memcpy(pem, "ssl.ca.pem=", 11);
        char e3[ERRBUF_LEN] = "";
        rd_kafka_conf_t *c3 = rd_kafka_conf_new();
        assert_true(kafka_conf_apply(c3, pem, e3, sizeof e3));
        rd_kafka_conf_destroy(c3);
    }
    /* An invalid value of a secret property: the error does not quote it. */
    char err[ERRBUF_LEN] = "";
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_false(kafka_conf_apply(conf, "ssl.key.password.nonexistent=hunter2", err, sizeof err));
    assert_null(strstr(err, "hunter2"));
    rd_kafka_conf_destroy(conf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_applied_over_defaults),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_secrets_masked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
