/* URLs of the stores: mysql:// and redis:// parse into their parts, with
 * defaults for what is left out, and anything malformed is refused with a
 * reason (a typo in a URL must stop a process at start, not dial nonsense). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "db.h"
#include "redis.h"

static void test_mysql_full_and_defaults(void **state)
{
    (void)state;
    struct db_url u;
    char err[ERRBUF_LEN];
    assert_true(db_parse_url("mysql://app:s3:cr@t@db.example:3307/switchboard", &u, err, sizeof err));
    assert_string_equal(u.user, "app");
    assert_string_equal(u.pass, "s3:cr@t"); /* up to the last '@', colons and all */
    assert_string_equal(u.host, "db.example");
    assert_int_equal(u.port, 3307);
    assert_string_equal(u.name, "switchboard");

    assert_true(db_parse_url("mysql://127.0.0.1/x", &u, err, sizeof err));
    assert_string_equal(u.user, "");
    assert_string_equal(u.pass, "");
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 3306);
    assert_string_equal(u.name, "x");

    assert_true(db_parse_url("mysql://root@localhost:13306", &u, err, sizeof err));
    assert_string_equal(u.user, "root");
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 13306);
    assert_string_equal(u.name, "");
}

static void test_mysql_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "postgres://h/x",        /* another scheme */
        "mysql://",              /* no host */
        "mysql://:3306/x",       /* no host */
        "mysql://h:0/x",         /* port out of range */
        "mysql://h:65536/x",     /* port out of range */
        "mysql://h:/x",          /* empty port */
        "mysql://h:12ab/x",      /* port with junk after it */
        "mysql://h/x/y",         /* a path, not a database name */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct db_url u;
        char err[ERRBUF_LEN] = "";
        if (db_parse_url(bad[i], &u, err, sizeof err))
            fail_msg("accepted %s", bad[i]);
        assert_true(strstr(err, "MySQL URL") != NULL);
    }
    char host[200];
    memset(host, 'h', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    char url[300];
    snprintf(url, sizeof url, "mysql://%s/x", host); /* longer than host[] */
    struct db_url u;
    char err[ERRBUF_LEN];
    assert_false(db_parse_url(url, &u, err, sizeof err));
}

static void test_redis_full_and_defaults(void **state)
{
    (void)state;
    struct redis_url u;
    char err[ERRBUF_LEN];
    assert_true(redis_parse_url("redis://:pw@cache:6380/3", &u, err, sizeof err));
    assert_string_equal(u.password, "pw");
    assert_string_equal(u.host, "cache");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);

    assert_true(redis_parse_url("redis://127.0.0.1", &u, err, sizeof err));
    assert_string_equal(u.password, "");
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);

    assert_true(redis_parse_url("redis://secret@h:1/", &u, err, sizeof err));
    assert_string_equal(u.password, "secret"); /* no colon: all of it is the password */
    assert_int_equal(u.port, 1);
    assert_int_equal(u.db, 0);
}

static void test_redis_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "http://h:6379",         /* another scheme */
        "redis://",              /* no host */
        "redis://:6379",         /* no host */
        "redis://h:70000",       /* port out of range */
        "redis://h:",            /* empty port */
        "redis://h:63x9",        /* port with junk after it */
        "redis://h/1001",        /* db out of range */
        "redis://h/one",         /* db not a number */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct redis_url u;
        char err[ERRBUF_LEN] = "";
        if (redis_parse_url(bad[i], &u, err, sizeof err))
            fail_msg("accepted %s", bad[i]);
        assert_true(strstr(err, "Redis URL") != NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mysql_full_and_defaults),
        cmocka_unit_test(test_mysql_refused),
        cmocka_unit_test(test_redis_full_and_defaults),
        cmocka_unit_test(test_redis_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
