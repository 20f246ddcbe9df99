/* redis.h - an async Redis client on a libevent loop that reconnects.
 *
 * Wraps hiredis' async API and its libevent adapter. One client per event
 * loop (hiredis contexts are not thread-safe). When the connection drops,
 * commands fail fast (the caller answers 503) while a timer redials with
 * backoff; a PING every second tells /readyz whether the server answers. */
#ifndef SB_REDIS_H
#define SB_REDIS_H

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "util.h"

struct redis_url {
    char host[128];
    int port;
    int db;
    char password[128];
};

bool redis_parse_url(const char *url, struct redis_url *out, char *errbuf, size_t errlen) SB_NODISCARD;

/* A blocking connection (workers, tools, pool threads) with AUTH/SELECT
 * done and a 2 s timeout; NULL and errbuf on failure. */
redisContext *redis_sync_connect(const struct redis_url *url, char *errbuf, size_t errlen);

struct redis_client;
/* Starts dialling at once (and again with backoff while Redis is away);
 * NULL only when out of memory. */
struct redis_client *redis_client_new(struct event_base *base, const struct redis_url *url);
void redis_client_free(struct redis_client *rc);
/* Connected, its run_id known, and answered a PING recently. Safe to ask
 * from any thread. */
bool redis_client_ready(const struct redis_client *rc);
/* The server's run_id (changes when Redis restarts); "" while unknown.
 * Commands are refused until it is known. */
const char *redis_client_run_id(const struct redis_client *rc);
/* Sends a command; false if not connected (cb is then never called). */
bool redis_client_command(struct redis_client *rc, redisCallbackFn *cb, void *priv,
                          const char *fmt, ...) SB_NODISCARD;
bool redis_client_command_argv(struct redis_client *rc, redisCallbackFn *cb, void *priv,
                               int argc, const char **argv, const size_t *argvlen) SB_NODISCARD;

#endif
