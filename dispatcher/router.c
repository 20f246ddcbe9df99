/* router.c - route matching (see router.h). */
#include "router.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "httpparse.h"
#include "server.h"

bool router_split_target(char *target, const char **path, char **query)
{
    *query = NULL;
    *path = "/";
    if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
        target = strchr(strstr(target, "//") + 2, '/');
        if (target == NULL)
            return true;
    }
    target[strcspn(target, "#")] = '\0';
    char *qm = strchr(target, '?');
    if (qm) {
        *qm = '\0';
        *query = qm + 1;
    }
    *path = target;
    return target[0] == '/' && httpparse_path_decode(target);
}

/* Length of the path segment at s (strcspn's general set costs ~1 % of
 * the dispatcher's CPU here: every request tries the routes in turn). */
static size_t seg_len(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0' && s[n] != '/')
        n++;
    return n;
}

bool router_match(const char *pattern, const char *path, char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX],
                  int *nparams)
{
    int np = 0;
    const char *p = pattern, *q = path;
    while (*p && *q) {
        if (*p != '/' || *q != '/')
            return false;
        p++;
        q++;
        size_t pl = seg_len(p), ql = seg_len(q);
        if (pl > 2 && p[0] == '{' && p[pl - 1] == '}') {
            if (ql == 0 || ql >= ROUTE_PARAM_MAX || np == ROUTE_MAX_PARAMS)
                return false;
            memcpy(params[np], q, ql);
            params[np][ql] = '\0';
            np++;
        } else if (pl != ql || memcmp(p, q, pl) != 0) {
            return false;
        }
        p += pl;
        q += ql;
    }
    /* One trailing slash is the same route ("/applications/" as the chat
     * seed lists applications); the root "/" matches only itself. */
    if (*p || (*q && !(q[0] == '/' && q[1] == '\0' && q != path)))
        return false;
    *nparams = np;
    return true;
}

const struct route *router_find(const struct route *routes, size_t nroutes, const char *method,
                                const char *path, char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX],
                                int *nparams, bool *path_known, char *allow, size_t allowcap)
{
    /* HEAD is GET without the body (the connection leaves it out). */
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    *path_known = false;
    if (allow && allowcap)
        allow[0] = '\0';
    for (size_t i = 0; i < nroutes; i++) {
        const struct route *r = &routes[i];
        if (!router_match(r->path, path, params, nparams))
            continue;
        *path_known = true;
        if (strcmp(r->method, m) == 0)
            return r;
        if (allow && allowcap) {
            size_t n = strlen(allow);
            snprintf(allow + n, allowcap - n, "%s%s%s", n ? ", " : "", r->method,
                     strcmp(r->method, "GET") == 0 ? ", HEAD" : "");
        }
    }
    return NULL;
}
