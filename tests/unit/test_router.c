/* Route matching (dispatcher/router.c) over the dispatcher's real route
 * table (routes.c): every route is reachable, literal segments win over a
 * parameter, one trailing slash is the same route, a wrong method is a 405
 * with the methods that would do, and request targets split as RFC 9112
 * says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "router.h"
#include "server.h"


struct found {
    const struct route *r;
    char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX];
    int np;
    bool known;
    char allow[64];
};

static struct found find(const char *method, const char *path)
{
    struct found f;
    memset(&f, 0, sizeof f);
    f.r = router_find(dispatcher_routes, dispatcher_nroutes, method, path, f.params, &f.np, &f.known,
                      f.allow, sizeof f.allow);
    return f;
}

static const char *name_of(const char *method, const char *path)
{
    struct found f = find(method, path);
    return f.r ? f.r->name : "(none)";
}

/* A concrete path for each route's pattern ({x} -> "7") finds that very
 * route: no route is shadowed by an earlier one of the same method. */
static void test_every_route_reachable(void **state)
{
    (void)state;
    for (size_t i = 0; i < dispatcher_nroutes; i++) {
        const struct route *r = &dispatcher_routes[i];
        char path[512] = "";
        for (const char *p = r->path; *p;) {
            if (*p == '{') {
                strcat(path, "7");
                p = strchr(p, '}') + 1;
            } else {
                strncat(path, p, 1);
                p++;
            }
        }
        struct found f = find(r->method, path);
        if (f.r == NULL || strcmp(f.r->name, r->name) != 0 || strcmp(f.r->path, r->path) != 0)
            fail_msg("%s %s found %s", r->method, path, f.r ? f.r->path : "nothing");
        int braces = 0;
        for (const char *p = r->path; *p; p++)
            braces += *p == '{';
        assert_int_equal(f.np, braces);
    }
}

static void test_seed_paths(void **state)
{
    (void)state;
    const char *app = "/api/v1/applications/abcDEF012_-";
    char p[256];
    assert_string_equal(name_of("POST", "/api/v1/applications"), "app_create");
    assert_string_equal(name_of("GET", "/api/v1/applications/"), "app_list");
    assert_string_equal(name_of("PUT", app), "app_update");
    snprintf(p, sizeof p, "%s/chats/3/messages/search", app);
    assert_string_equal(name_of("GET", p), "message_search");
    assert_string_equal(name_of("POST", p), "message_search");
    snprintf(p, sizeof p, "%s/chats/3/messages/41", app);
    struct found f = find("GET", p);
    assert_non_null(f.r);
    assert_string_equal(f.r->name, "message_get");
    assert_int_equal(f.np, 3);
    assert_string_equal(f.params[0], "abcDEF012_-");
    assert_string_equal(f.params[1], "3");
    assert_string_equal(f.params[2], "41");
    assert_string_equal(name_of("GET", "/phonebook/find/6135550100"), "phonebook_find");
    assert_string_equal(name_of("POST", "/sms/send/many"), "sms_send_many");
}

static void test_trailing_slash_and_segments(void **state)
{
    (void)state;
    assert_string_equal(name_of("GET", "/healthz/"), "healthz");
    assert_string_equal(name_of("GET", "/healthz//"), "(none)");
    assert_string_equal(name_of("GET", "/"), "(none)");
    /* An empty segment captures nothing. */
    assert_string_equal(name_of("GET", "/api/v1/applications//chats"), "(none)");
    assert_string_equal(name_of("GET", "/phonebook/find/"), "(none)");
    /* A longer path is another route, or none. */
    assert_string_equal(name_of("GET", "/healthz/x"), "(none)");
    assert_string_equal(name_of("GET", "/healthzz"), "(none)");
    /* A segment too long to capture does not match (a 404, not a cut). */
    char p[300] = "/phonebook/find/";
    memset(p + strlen(p), '1', ROUTE_PARAM_MAX);
    assert_string_equal(name_of("GET", p), "(none)");
    p[strlen("/phonebook/find/") + ROUTE_PARAM_MAX - 1] = '\0';
    assert_string_equal(name_of("GET", p), "phonebook_find");
}

static void test_methods(void **state)
{
    (void)state;
    assert_string_equal(name_of("HEAD", "/healthz"), "healthz");
    struct found f = find("PATCH", "/api/v1/applications/tok");
    assert_null(f.r);
    assert_true(f.known);
    assert_string_equal(f.allow, "GET, HEAD, PUT");
    f = find("DELETE", "/nowhere");
    assert_null(f.r);
    assert_false(f.known);
    f = find("GET", "/sms/send/one");
    assert_null(f.r);
    assert_true(f.known);
    assert_string_equal(f.allow, "POST");
}

static void test_split_target(void **state)
{
    (void)state;
    const char *path;
    char *query;
    char t1[] = "/a/b?limit=5#frag";
    assert_true(router_split_target(t1, &path, &query));
    assert_string_equal(path, "/a/b");
    assert_string_equal(query, "limit=5");
    char t2[] = "http://host:8080/x%20y";
    assert_true(router_split_target(t2, &path, &query));
    assert_string_equal(path, "/x y");
    assert_null(query);
    char t3[] = "https://host";
    assert_true(router_split_target(t3, &path, &query));
    assert_string_equal(path, "/");
    char t4[] = "a/b";
    assert_false(router_split_target(t4, &path, &query));
    char t5[] = "/a%00b"; /* a NUL would cut the path short */
    assert_false(router_split_target(t5, &path, &query));
    char t7[] = "/a%zz"; /* not an escape: kept as it is */
    assert_true(router_split_target(t7, &path, &query));
    assert_string_equal(path, "/a%zz");
    char t6[] = "/a#x?y";
    assert_true(router_split_target(t6, &path, &query));
    assert_string_equal(path, "/a");
    assert_null(query);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_reachable),
        cmocka_unit_test(test_seed_paths),
        cmocka_unit_test(test_trailing_slash_and_segments),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_split_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
