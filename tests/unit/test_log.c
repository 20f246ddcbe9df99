/* Log lines: every value from the caller is escaped, so no value can end
 * the line or pose as another field (logfmt), and JSON lines stay valid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "log.h"

/* Runs one log_warn with stderr sent to a file; returns what it wrote. */
static char *capture(const char *format, const char *value, long long n)
{
    char path[] = "/tmp/sb_test_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    assert_true(log_setup("info", format, "test"));
    log_warn("probe", "key=%s quoted=\"%s\" n=%lld size=%zu", value, value, n, (size_t)7);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    static char buf[8192];
    ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
    assert_true(got > 0);
    buf[got] = '\0';
    close(fd);
    unlink(path);
    return buf;
}

static void test_logfmt_escapes_values(void **state)
{
    (void)state;
    const char *hostile = "k1\nts=2026-01-01T00:00:00.000Z level=error msg=\"forged\" x=\"y\\";
    char *line = capture("logfmt", hostile, -42);
    /* One line: the newline inside the value is escaped. */
    assert_non_null(strchr(line, '\n'));
    assert_string_equal(strchr(line, '\n'), "\n");
    assert_null(strstr(line, "\nts="));
    assert_non_null(strstr(line, "key=\"k1\\nts=2026-01-01T00:00:00.000Z level=error msg=\\\"forged\\\" x=\\\"y\\\\\""));
    assert_non_null(strstr(line, "quoted=\"k1\\nts="));
    assert_non_null(strstr(line, " n=-42 size=7\n"));
    /* Plain values stay as they are; bytes that are not UTF-8 are escaped. */
    line = capture("logfmt", "plain-value_1", 1);
    assert_non_null(strstr(line, "key=plain-value_1 quoted=\"plain-value_1\" n=1"));
    line = capture("logfmt", "caf\xc3\xa9 \xff", 1);
    assert_non_null(strstr(line, "key=\"caf\xc3\xa9 \\xff\""));
    line = capture("logfmt", "", 1);
    assert_non_null(strstr(line, "key=\"\" quoted=\"\" n=1"));
}

static void test_json_lines_stay_valid(void **state)
{
    (void)state;
    char *line = capture("json", "a\"b\n\xff\x01", 5);
    char err[ERRBUF_LEN];
    size_t len = strlen(line);
    assert_int_equal(line[len - 1], '\n');
    cJSON *o = json_parse_strict(line, len, err, sizeof err);
    assert_non_null(o);
    const char *kv = json_str(o, "kv", NULL);
    assert_non_null(kv);
    assert_non_null(strstr(kv, "key=\"a\\\"b\\n\\xff\\x01\""));
    cJSON_Delete(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logfmt_escapes_values),
        cmocka_unit_test(test_json_lines_stay_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
