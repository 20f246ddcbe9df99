/* Twilio's request signature (dispatcher/callbacks_api.c): base64
 * HMAC-SHA1 over the URL and each parameter's name and value sorted by
 * name, checked against the openssl command line computing the same over
 * the string built here by hand (not by the code under test); the order
 * the parameters come in does not matter, and each of token, URL, name and
 * value changes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "callbacks_api.h"
#include "webhook.h"

static void openssl_signature(const char *token, const char *data, char out[64])
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | openssl dgst -sha1 -hmac '%s' -binary | base64", data, token);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, 64, f));
    pclose(f);
    out[strcspn(out, "\n")] = '\0';
}

static void test_signature(void **state)
{
    (void)state;
    const char *url = "https://api.example.com/v1/callbacks/sms/abc123";
    const char *params[][2] = {{"MessageStatus", "delivered"}, {"AccountSid", "ACtest"},
                               {"MessageSid", "SM0123"}, {"ErrorCode", "30003"}};
    char got[64], want[64];
    assert_true(callbacks_twilio_signature("s3cret", url, params, 4, got, sizeof got));
    openssl_signature("s3cret", "https://api.example.com/v1/callbacks/sms/abc123"
                                "AccountSidACtestErrorCode30003MessageSidSM0123MessageStatusdelivered", want);
    assert_string_equal(got, want);
    assert_int_equal(strlen(got), 28);

    /* Any order in, the same signature. */
    const char *shuffled[][2] = {{"ErrorCode", "30003"}, {"MessageSid", "SM0123"},
                                 {"AccountSid", "ACtest"}, {"MessageStatus", "delivered"}};
    char again[64];
    assert_true(callbacks_twilio_signature("s3cret", url, shuffled, 4, again, sizeof again));
    assert_string_equal(again, got);

    /* Each input counts. */
    char other[64];
    assert_true(callbacks_twilio_signature("s3creT", url, params, 4, other, sizeof other));
    assert_string_not_equal(other, got);
    assert_true(callbacks_twilio_signature("s3cret", "https://api.example.com/v1/callbacks/sms/abc124", params, 4,
                                           other, sizeof other));
    assert_string_not_equal(other, got);
    const char *changed[][2] = {{"MessageStatus", "failed"}, {"AccountSid", "ACtest"},
                                {"MessageSid", "SM0123"}, {"ErrorCode", "30003"}};
    assert_true(callbacks_twilio_signature("s3cret", url, changed, 4, other, sizeof other));
    assert_string_not_equal(other, got);
    /* No parameters: the URL alone. */
    assert_true(callbacks_twilio_signature("s3cret", url, NULL, 0, other, sizeof other));
    openssl_signature("s3cret", url, want);
    assert_string_equal(other, want);
    /* Too little room for the answer. */
    assert_false(callbacks_twilio_signature("s3cret", url, params, 4, other, 28));
}

/* The email feed's and our webhooks' (webhook.h): t=<t>,v1=<hex
 * HMAC-SHA256 of "<t>.<body>" under the secret>. */
static void test_timestamped_signature(void **state)
{
    (void)state;
    const char *body = "{\"notificationType\":\"Bounce\"}";
    char got[160], want[80], other[160];
    assert_true(webhook_signature("topsecret", 1764900000, body, strlen(body), got, sizeof got));
    FILE *f = popen("printf '%s' '1764900000.{\"notificationType\":\"Bounce\"}' | "
                    "openssl dgst -sha256 -hmac topsecret | sed 's/.*= //'", "r");
    assert_non_null(f);
    assert_non_null(fgets(want, sizeof want, f));
    pclose(f);
    want[strcspn(want, "\n")] = '\0';
    char expect[160];
    snprintf(expect, sizeof expect, "t=1764900000,v1=%s", want);
    assert_string_equal(got, expect);
    assert_true(webhook_signature("topsecret", 1764900001, body, strlen(body), other, sizeof other));
    assert_string_not_equal(other + 13, got + 13); /* the time is signed: no replay with another one */
    assert_false(webhook_signature("topsecret", 1764900000, body, strlen(body), other, 40)); /* no room */
    /* A key's secret: HMAC-SHA256 of its principal, hex. */
    char secret[65];
    assert_true(webhook_key_secret("signing", "k:0011223344556677", secret));
    f = popen("printf '%s' 'k:0011223344556677' | openssl dgst -sha256 -hmac signing | sed 's/.*= //'", "r");
    assert_non_null(f);
    assert_non_null(fgets(want, sizeof want, f));
    pclose(f);
    want[strcspn(want, "\n")] = '\0';
    assert_string_equal(secret, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_timestamped_signature),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
