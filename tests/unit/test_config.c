/* Config table: defaults, file < env < flag precedence, bounds, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static FILE *devnull(void)
{
    return fopen("/dev/null", "w");
}

static void clear_env(void)
{
    unsetenv("SB_CONFIG");
    unsetenv("SB_THREADS");
    unsetenv("SB_LISTEN");
    unsetenv("MYSQL_URL");
}

static void test_defaults(void **state)
{
    (void)state;
    clear_env();
    struct sb_config c;
    char err[256];
    char *argv[] = {"prog", NULL};
    FILE *out = devnull();
    assert_int_equal(config_load(&c, SCOPE_DISPATCHER, "prog", "", 1, argv, out, err, sizeof err), CONFIG_OK);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_int_equal(c.threads, 0);
    assert_int_equal(c.max_body_bytes, 1048576);
    config_free(&c);
    fclose(out);
}

static void test_precedence(void **state)
{
    (void)state;
    clear_env();
    char path[] = "/tmp/sbcfgXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# comment\nthreads = 3\nlisten = 127.0.0.1:1111\nmax_body_bytes=1000\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);

    struct sb_config c;
    char err[256];
    FILE *out = devnull();
    /* file only */
    char *argv1[] = {"prog", "--config", path, NULL};
    assert_int_equal(config_load(&c, SCOPE_DISPATCHER, "prog", "", 3, argv1, out, err, sizeof err), CONFIG_OK);
    assert_int_equal(c.threads, 3);
    assert_string_equal(c.listen, "127.0.0.1:1111");
    assert_int_equal(c.max_body_bytes, 1000);
    config_free(&c);
    /* env beats file */
    setenv("SB_THREADS", "5", 1);
    assert_int_equal(config_load(&c, SCOPE_DISPATCHER, "prog", "", 3, argv1, out, err, sizeof err), CONFIG_OK);
    assert_int_equal(c.threads, 5);
    assert_string_equal(c.listen, "127.0.0.1:1111");
    config_free(&c);
    /* flag beats env, both spellings */
    char *argv2[] = {"prog", "--config", path, "--threads", "7", "--listen=127.0.0.1:2222", NULL};
    assert_int_equal(config_load(&c, SCOPE_DISPATCHER, "prog", "", 6, argv2, out, err, sizeof err), CONFIG_OK);
    assert_int_equal(c.threads, 7);
    assert_string_equal(c.listen, "127.0.0.1:2222");
    config_free(&c);
    unsetenv("SB_THREADS");
    unlink(path);
    fclose(out);
}

static void test_errors(void **state)
{
    (void)state;
    clear_env();
    struct sb_config c;
    char err[256];
    FILE *out = devnull();
    char *bad_range[] = {"prog", "--threads", "9999", NULL};
    assert_int_equal(config_load(&c, SCOPE_DISPATCHER, "prog", "", 3, bad_range, out, err, sizeof err), CONFIG_ERROR);
    assert_non_null(strstr(err, "threads"));
    char *not_int[] = {"prog", "--threads", "2x", NULL};
    assert_int_equal(config_load(&c, SCOPE_DISPATCHER, "prog", "", 3, not_int, out, err, sizeof err), CONFIG_ERROR);
    char *unknown[] = {"prog", "--nope", "1", NULL};
    assert_int_equal(config_load(&c, SCOPE_DISPATCHER, "prog", "", 3, unknown, out, err, sizeof err), CONFIG_ERROR);
    assert_non_null(strstr(err, "--nope"));
    /* a setting of another program is unknown here */
    char *other_scope[] = {"prog", "--role", "persister", NULL};
    assert_int_equal(config_load(&c, SCOPE_DISPATCHER, "prog", "", 3, other_scope, out, err, sizeof err), CONFIG_ERROR);
    char *missing_value[] = {"prog", "--threads", NULL};
    assert_int_equal(config_load(&c, SCOPE_DISPATCHER, "prog", "", 2, missing_value, out, err, sizeof err), CONFIG_ERROR);
    setenv("SB_THREADS", "-1", 1);
    char *plain[] = {"prog", NULL};
    assert_int_equal(config_load(&c, SCOPE_DISPATCHER, "prog", "", 1, plain, out, err, sizeof err), CONFIG_ERROR);
    assert_non_null(strstr(err, "SB_THREADS"));
    unsetenv("SB_THREADS");
    fclose(out);
}

static void test_print_masks_password(void **state)
{
    (void)state;
    clear_env();
    setenv("MYSQL_URL", "mysql://u:s3cret@db:3306/x", 1);
    struct sb_config c;
    char err[256];
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    char *argv[] = {"prog", "--print-config", NULL};
    assert_int_equal(config_load(&c, SCOPE_DISPATCHER, "prog", "", 2, argv, out, err, sizeof err), CONFIG_EXIT);
    fclose(out);
    assert_non_null(strstr(buf, "mysql_url = mysql://u:***@db:3306/x"));
    assert_null(strstr(buf, "s3cret"));
    assert_non_null(strstr(buf, "listen = 127.0.0.1:8080"));
    assert_null(strstr(buf, "role ="));
    free(buf);
    config_free(&c);
    unsetenv("MYSQL_URL");
}

static void test_help_lists_settings(void **state)
{
    (void)state;
    clear_env();
    struct sb_config c;
    char err[256];
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    char *argv[] = {"prog", "--help", NULL};
    assert_int_equal(config_load(&c, SCOPE_WORKER, "prog", "--role ROLE", 2, argv, out, err, sizeof err), CONFIG_EXIT);
    fclose(out);
    assert_non_null(strstr(buf, "--role"));
    assert_non_null(strstr(buf, "SB_BATCH_SIZE"));
    assert_null(strstr(buf, "--listen"));
    free(buf);
    config_free(&c);
}

static void test_positional_args(void **state)
{
    (void)state;
    clear_env();
    struct sb_config c;
    char err[256];
    FILE *out = devnull();
    char *argv[] = {"prog", "status", "--log-level", "warn", NULL};
    assert_int_equal(config_load(&c, SCOPE_MIGRATE, "prog", "", 4, argv, out, err, sizeof err), CONFIG_OK);
    assert_int_equal(c.nargs, 1);
    assert_string_equal(c.args[0], "status");
    assert_string_equal(c.log_level, "warn");
    config_free(&c);
    fclose(out);
}

/* Integers are read strictly: no '+', no space, no leading zero. */
static void test_parse_i64_strict(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_true(sb_parse_i64("1", 1, 100, &v) && v == 1);
    assert_true(sb_parse_i64("0", 0, 100, &v) && v == 0);
    assert_true(sb_parse_i64("-5", -10, 10, &v) && v == -5);
    const char *bad[] = {"+1", "01", " 1", "1 ", "-1", "1e3", "", "0x10", "-0", "00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(sb_parse_i64(bad[i], bad[i][0] == '-' && bad[i][1] == '0' ? -10 : 0, 100, &v));
    assert_false(sb_parse_i64("101", 0, 100, &v));
    assert_false(sb_parse_i64("99999999999999999999", 0, INT64_MAX, &v));
}

/* The key builders of the create path: joined and printed without a
 * format string, cut safely when the buffer is short. */
static void test_join_and_i64_to_str(void **state)
{
    (void)state;
    char buf[16], n[SB_I64_STR];
    assert_int_equal(sb_join(buf, sizeof buf, "sb:{", "abc", "}:c", (char *)NULL), 10);
    assert_string_equal(buf, "sb:{abc}:c");
    assert_int_equal(sb_join(buf, sizeof buf, (char *)NULL), 0);
    assert_string_equal(buf, "");
    assert_int_equal(sb_join(buf, 8, "0123", "45678", "9", (char *)NULL), 10); /* >= cap: cut */
    assert_string_equal(buf, "0123456");
    assert_int_equal(sb_join(buf, 5, "0123", "4", (char *)NULL), 5);
    assert_string_equal(buf, "0123");
    assert_int_equal(sb_i64_to_str(0, n), 1);
    assert_string_equal(n, "0");
    assert_int_equal(sb_i64_to_str(-42, n), 3);
    assert_string_equal(n, "-42");
    assert_int_equal(sb_i64_to_str(INT64_MIN, n), 20);
    assert_string_equal(n, "-9223372036854775808");
    assert_int_equal(sb_i64_to_str(INT64_MAX, n), 19);
    assert_string_equal(n, "9223372036854775807");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_print_masks_password),
        cmocka_unit_test(test_help_lists_settings),
        cmocka_unit_test(test_positional_args),
        cmocka_unit_test(test_parse_i64_strict),
        cmocka_unit_test(test_join_and_i64_to_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
