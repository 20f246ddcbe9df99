/* router.h - which route a request names.
 *
 * A request target is split into its decoded path and its query; the path
 * is matched against each route's pattern in table order ("/a/{x}/b":
 * {x} captures one non-empty segment; one trailing slash is the same
 * route). The first route whose pattern and method match wins, so a
 * literal segment ("search") is listed before a parameter in the same
 * place. HEAD is GET. Pure functions of their arguments: no loop, no I/O. */
#ifndef SB_ROUTER_H
#define SB_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#define ROUTE_MAX_PARAMS 4
#define ROUTE_PARAM_MAX 128 /* a captured segment is shorter than this */

struct route;

/* Splits a request target, in place, into its decoded path and its query
 * (NULL if none; a fragment is dropped). Origin-form ("/path?query"), and
 * absolute-form ("http://host/path"), which proxies send ("http://host"
 * is the root). False if it is malformed. */
bool router_split_target(char *target, const char **path, char **query);

/* Matches path against one pattern, capturing its {params}. */
bool router_match(const char *pattern, const char *path, char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX],
                  int *nparams);

/* The route for method and path, with its parameters captured, or NULL.
 * On NULL, *path_known says whether another method would have matched, and
 * allow (if not NULL) lists those methods for a 405's Allow header. */
const struct route *router_find(const struct route *routes, size_t nroutes, const char *method,
                                const char *path, char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX],
                                int *nparams, bool *path_known, char *allow, size_t allowcap);

#endif
