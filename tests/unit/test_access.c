/* Access (dispatcher/access.c): admin key digests are parsed strictly; a
 * key is accepted only if its SHA-256 is configured, and its principal
 * names the digest, never the key; the token bucket, run in a real Redis
 * (redis-server started here on a private socket), gives the burst, then
 * refuses with the wait until the next token, keeps principals apart,
 * refills at the rate and expires idle buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access.h"

/* Well-formed digests, for the parser's cases. */
#define D1 "0bd9ecec2cffc1bd5e4d3d3ef89fe2b9de55aca36de8dfd2e9e8bba6f87ed5be"
#define D2 "b5a8c20c8aeb3fa4c0ba4bf0fdd5ae9c1f5d7f3da5b9f6a01ef4f4bd4e4a1b71"

static bool init_with_read(const char *hashes, const char *read_hashes, char *err, size_t errlen)
{
    struct sb_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.api_key_hashes = (char *)hashes;
    cfg.ops_read_key_hashes = (char *)read_hashes;
    cfg.rate_limit_rps = 10;
    return access_init(&cfg, err, errlen);
}

static bool init_with(const char *hashes, char *err, size_t errlen)
{
    return init_with_read(hashes, "", err, errlen);
}

static void digest_hex(const char *key, char out[65])
{
    /* From sha256sum, not from the EVP calls access.c makes: a wrong
     * digest there must fail here. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | sha256sum", key);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, 65, f));
    pclose(f);
}

static void test_key_digests(void **state)
{
    (void)state;
    char err[256], d1[65], d2[65], list[200];
    digest_hex("secret-one", d1);
    digest_hex("secret-two", d2);
    snprintf(list, sizeof list, " %s, %s ", d1, d2);
    assert_true(init_with(list, err, sizeof err));
    assert_int_equal(access_key_count(), 2);
    char principal[40];
    assert_true(access_key_principal("secret-two", principal, sizeof principal));
    char want[40];
    snprintf(want, sizeof want, "k:%.16s", d2);
    assert_string_equal(principal, want);
    assert_null(strstr(principal, "secret"));
    assert_true(access_key_principal("secret-one", principal, sizeof principal)); /* not only the last */
    assert_false(access_key_principal("secret-three", principal, sizeof principal));
    assert_false(access_key_principal("secret-one ", principal, sizeof principal));
    assert_false(access_key_principal("", principal, sizeof principal));

    /* Malformed lists are refused, and say which entry. */
    assert_false(init_with(D1 "," D2 "0", err, sizeof err));
    assert_non_null(strstr(err, "entry 2"));
    assert_false(init_with("zz" D1, err, sizeof err));
    assert_non_null(strstr(err, "not a SHA-256"));
    assert_false(init_with("abcd", err, sizeof err));
    char many[65 * 70] = "";
    for (int i = 0; i < 65; i++)
        strcat(strcat(many, D1), ",");
    assert_false(init_with(many, err, sizeof err));
    assert_non_null(strstr(err, "at most"));
    /* No keys: nothing is accepted. */
    assert_true(init_with("", err, sizeof err));
    assert_int_equal(access_key_count(), 0);
    assert_false(access_key_principal("secret-one", principal, sizeof principal));
}

/* Read-only keys (ops_read_key_hashes): accepted, with an "r:" principal
 * that access_read_only tells apart; a key in both lists is an admin key;
 * a malformed read list is refused by its own name. */
static void test_read_only_keys(void **state)
{
    (void)state;
    char err[256], d1[65], d2[65], d3[65], admin[200], read[200];
    digest_hex("secret-one", d1);
    digest_hex("secret-two", d2);
    digest_hex("secret-three", d3);
    snprintf(admin, sizeof admin, "%s,%s", d1, d3);
    snprintf(read, sizeof read, "%s,%s", d2, d3);
    assert_true(init_with_read(admin, read, err, sizeof err));
    assert_int_equal(access_key_count(), 4);
    char principal[40], want[40];
    assert_true(access_key_principal("secret-two", principal, sizeof principal));
    snprintf(want, sizeof want, "r:%.16s", d2);
    assert_string_equal(principal, want);
    assert_true(access_read_only(principal));
    assert_true(access_key_principal("secret-one", principal, sizeof principal));
    assert_false(access_read_only(principal));
    assert_true(access_key_principal("secret-three", principal, sizeof principal)); /* in both */
    assert_false(access_read_only(principal));
    assert_false(access_key_principal("secret-four", principal, sizeof principal));
    assert_false(init_with_read(D1, "nope", err, sizeof err));
    assert_non_null(strstr(err, "ops_read_key_hashes: entry 1"));
    /* Only read keys: still one list, nothing admin. */
    assert_true(init_with_read("", d2, err, sizeof err));
    assert_true(access_key_principal("secret-two", principal, sizeof principal));
    assert_true(access_read_only(principal));
    assert_false(access_key_principal("secret-one", principal, sizeof principal));
}

struct redis {
    pid_t pid;
    char dir[64];
    char sock[96];
    redisContext *c;
};

static int redis_up(void **state)
{
    static struct redis r;
    snprintf(r.dir, sizeof r.dir, "/tmp/sb-test-access-XXXXXX");
    if (mkdtemp(r.dir) == NULL)
        return -1;
    snprintf(r.sock, sizeof r.sock, "%s/redis.sock", r.dir);
    r.pid = fork();
    if (r.pid == 0) {
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", r.sock, "--save", "",
               "--appendonly", "no", "--dir", r.dir, "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && r.c == NULL; i++) { /* up to 5 s */
        redisContext *c = redisConnectUnix(r.sock);
        if (c && !c->err)
            r.c = c;
        else {
            redisFree(c);
            usleep(10000);
        }
    }
    if (r.c == NULL) {
        fprintf(stderr, "redis-server did not start (scripts/setup installs it)\n");
        return -1;
    }
    *state = &r;
    return 0;
}

static int redis_down(void **state)
{
    struct redis *r = *state;
    redisFree(r->c);
    kill(r->pid, SIGTERM);
    waitpid(r->pid, NULL, 0);
    unlink(r->sock);
    rmdir(r->dir);
    return 0;
}

/* One EVAL of the bucket: 0, or the milliseconds until a token. */
static long long take(struct redis *r, const char *key, const char *rate, const char *burst)
{
    redisReply *rep = redisCommand(r->c, "EVAL %s 1 %s %s %s", access_bucket_script(), key, rate, burst);
    assert_non_null(rep);
    if (rep->type != REDIS_REPLY_INTEGER)
        fail_msg("bucket answered %d: %s", rep->type, rep->str ? rep->str : "");
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

static void test_bucket(void **state)
{
    struct redis *r = *state;
    /* 10 per second, a burst of 3. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(take(r, "sb:rl:t:a", "10", "3"), 0);
    long long wait = take(r, "sb:rl:t:a", "10", "3");
    assert_in_range(wait, 1, 101); /* a token every 100 ms */
    /* Another principal has its own bucket. */
    assert_int_equal(take(r, "sb:rl:t:b", "10", "3"), 0);
    /* The bucket refills at the rate: after the wait, one more. */
    usleep((useconds_t)(wait + 5) * 1000);
    assert_int_equal(take(r, "sb:rl:t:a", "10", "3"), 0);
    assert_true(take(r, "sb:rl:t:a", "10", "3") > 0);
    /* An idle bucket expires once it would be full again, plus a second. */
    redisReply *rep = redisCommand(r->c, "PTTL sb:rl:t:a");
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    assert_in_range(rep->integer, 1, 3 * 1000 / 10 + 1000);
    freeReplyObject(rep);
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_key_digests),
        cmocka_unit_test(test_read_only_keys),
    };
    const struct CMUnitTest with_redis[] = {
        cmocka_unit_test(test_bucket),
    };
    int failed = cmocka_run_group_tests(plain, NULL, NULL);
    return failed + cmocka_run_group_tests(with_redis, redis_up, redis_down);
}
