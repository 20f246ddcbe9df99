/* Notifications: channel rules, fingerprints, the job payload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "notify.h"

static bool check(enum note_channel ch, const char *to, const char *from, const char *title,
                  const char *body, char *err)
{
    struct note_msg m = {ch, to, from, title, body};
    return note_msg_check(&m, "events,audit", err, ERRBUF_LEN);
}

static void test_channel_rules(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    assert_true(check(CH_EMAIL, "ada@example.com", "", "Hi", "x", err));
    assert_true(check(CH_EMAIL, "ada@example.com", "ops@example.com", "", "", err));
    assert_false(check(CH_EMAIL, "ada.example.com", "", "", "x", err));
    assert_non_null(strstr(err, "to must be an email address"));
    assert_false(check(CH_EMAIL, "a@b@c", "", "", "x", err));
    assert_false(check(CH_EMAIL, "ada@example.com>\r\nRCPT TO:<x@y", "", "", "x", err));
    assert_false(check(CH_EMAIL, "ada@example.com", "not an address", "", "x", err));
    assert_non_null(strstr(err, "from"));
    /* A subject is one line: no header injection. */
    assert_false(check(CH_EMAIL, "ada@example.com", "", "Hi\r\nBcc: x@y", "x", err));
    assert_non_null(strstr(err, "title"));
    assert_true(check(CH_SMS, "+14155550123", "+12125550000", "", "hi", err));
    assert_false(check(CH_SMS, "4155550123", "", "", "hi", err));
    assert_false(check(CH_SMS, "+14155550123", "+1212", "", "hi", err));
    assert_false(check(CH_SMS, "+14155550123", "", "", "", err));
    assert_true(check(CH_PUSH, "device-1", "", "", "{}", err));
    assert_false(check(CH_PUSH, "device 1", "", "", "{}", err));
    assert_true(check(CH_KAFKA, "audit", "", "", "x", err));
    assert_false(check(CH_KAFKA, "audi", "", "", "x", err));
    assert_false(check(CH_KAFKA, "chat.commands", "", "", "x", err));
    assert_non_null(strstr(err, "events,audit"));
}

static void test_names(void **state)
{
    (void)state;
    enum note_channel c;
    enum note_status s;
    for (int i = 0; i < CH_COUNT; i++) {
        assert_true(note_channel_parse(note_channel_name((enum note_channel)i), &c));
        assert_int_equal(c, i);
    }
    for (int i = 0; i < NOTE_STATUS_COUNT; i++) {
        assert_true(note_status_parse(note_status_name((enum note_status)i), &s));
        assert_int_equal(s, i);
    }
    assert_false(note_channel_parse("fax", &c));
    assert_false(note_status_parse("lost", &s));
}

/* Same content, same fingerprint; any field moved or changed, another. */
static void test_fingerprint(void **state)
{
    (void)state;
    char a[NOTE_FP_LEN + 1], b[NOTE_FP_LEN + 1];
    struct note_msg m = {CH_SMS, "+14155550123", "+12125550000", "", "hello"};
    note_fingerprint(&m, a);
    note_fingerprint(&m, b);
    assert_int_equal(strlen(a), NOTE_FP_LEN);
    assert_string_equal(a, b);
    struct note_msg variants[] = {
        {CH_PUSH, "+14155550123", "+12125550000", "", "hello"},
        {CH_SMS, "+14155550124", "+12125550000", "", "hello"},
        {CH_SMS, "+14155550123", "+12125550000", "", "hello!"},
        {CH_SMS, "+14155550123", "+12125550000", "h", "ello"}, /* moved across fields */
        {CH_SMS, "+14155550123", "", "+12125550000", "hello"},
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        note_fingerprint(&variants[i], b);
        assert_string_not_equal(a, b);
    }
}

/* The payload the dispatcher builds is a valid notify.send job. */
static void test_job_payload_decodes(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    struct note_msg m = {CH_EMAIL, "ada@example.com", "", "Grüße", "body"};
    cJSON *p = note_job_payload("0123456789abcdef0123456789abcdef", &m, "key-1", "fedcba9876543210", 4);
    assert_non_null(p);
    char *text = envelope_encode("notify.send", "0123456789abcdef0123456789abcdef", "r1", 1, p, err,
                                 sizeof err);
    assert_non_null(text);
    struct envelope env;
    assert_true(envelope_decode(&env, text, strlen(text), err, sizeof err));
    assert_string_equal(json_str(env.payload, "channel", ""), "email");
    assert_string_equal(json_str(env.payload, "idempotency_key", ""), "key-1");
    assert_int_equal(json_i64(env.payload, "item", -1), 4);
    assert_null(cJSON_GetObjectItem(env.payload, "from")); /* empty: left out */
    envelope_clear(&env);
    free(text);
}

static void test_iso_time(void **state)
{
    (void)state;
    char t[32];
    note_iso_time(INT64_C(1763817933378), t);
    assert_string_equal(t, "2025-11-22T13:25:33.378Z");
}

/* The status machine: forward moves only, terminal ones stay (but for an
 * operator's redrive of a dead one, and the provider's word on it). */
static void test_status_machine(void **state)
{
    (void)state;
    const enum note_status path[] = {NOTE_SCHEDULED, NOTE_QUEUED, NOTE_SENDING, NOTE_SENT, NOTE_DELIVERED};
    for (size_t i = 0; i + 1 < sizeof path / sizeof *path; i++) {
        assert_true(note_status_may_move(path[i], path[i + 1]));
        assert_false(note_status_may_move(path[i + 1], path[i])); /* never backwards */
    }
    assert_true(note_status_may_move(NOTE_SENDING, NOTE_RETRYING));
    assert_true(note_status_may_move(NOTE_RETRYING, NOTE_SENDING));
    assert_true(note_status_may_move(NOTE_SENDING, NOTE_DELIVERED)); /* the provider before our "sent" */
    assert_false(note_status_may_move(NOTE_DELIVERED, NOTE_SENT));
    assert_false(note_status_may_move(NOTE_DELIVERED, NOTE_FAILED));
    assert_false(note_status_may_move(NOTE_UNDELIVERED, NOTE_DELIVERED));
    assert_true(note_status_may_move(NOTE_SCHEDULED, NOTE_CANCELLED));
    assert_false(note_status_may_move(NOTE_QUEUED, NOTE_CANCELLED)); /* too late */
    assert_false(note_status_may_move(NOTE_CANCELLED, NOTE_QUEUED));
    assert_true(note_status_may_move(NOTE_DEAD, NOTE_QUEUED));     /* a redrive */
    assert_true(note_status_may_move(NOTE_DEAD, NOTE_DELIVERED));  /* it got there after all */
    assert_false(note_status_may_move(NOTE_DEAD, NOTE_SENT));
    assert_false(note_status_may_move(NOTE_QUEUED, NOTE_SCHEDULED));
    for (int i = 0; i < NOTE_STATUS_COUNT; i++)
        assert_true(note_status_may_move((enum note_status)i, (enum note_status)i)); /* written again */
    assert_true(note_status_terminal(NOTE_CANCELLED) && note_status_terminal(NOTE_DEAD));
    assert_false(note_status_terminal(NOTE_SCHEDULED) || note_status_terminal(NOTE_SENT));
}

/* RFC 3339 times, in ms: the expected values from Python's
 * calendar.timegm, not from the code under test. */
static void test_parse_time(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_true(note_parse_time("2026-12-24T09:00:00Z", &ms));
    assert_int_equal(ms, INT64_C(1798102800) * 1000);
    assert_true(note_parse_time("2026-12-24T09:00:00.25z", &ms));
    assert_int_equal(ms, INT64_C(1798102800) * 1000 + 250);
    assert_true(note_parse_time("2026-12-24T10:30:00+01:30", &ms)); /* the same instant, elsewhere */
    assert_int_equal(ms, INT64_C(1798102800) * 1000);
    assert_true(note_parse_time("2024-02-29T23:59:59.123456-00:00", &ms));
    assert_int_equal(ms, INT64_C(1709251199) * 1000 + 123);
    assert_true(note_parse_time("2025-11-22T13:25:33.378Z", &ms)); /* note_iso_time's own */
    assert_int_equal(ms, INT64_C(1763817933378));
    const char *bad[] = {"", "2026-12-24", "2026-12-24T09:00:00", "2026-12-24 09:00:00Z", "2026-13-01T00:00:00Z",
                         "2026-12-24T24:00:00Z", "2026-12-24T09:00:00Zjunk", "2026-12-24T09:00:00.Z",
                         "2026-12-24T09:00:00+1:00", "tomorrow"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(note_parse_time(bad[i], &ms));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_rules),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_job_payload_decodes),
        cmocka_unit_test(test_iso_time),
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_status_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
