/* access.h - who may call a route, and how often.
 *
 * Each route has an access class: open (health, readiness, metrics), admin
 * (application management, phonebook, SMS and notifications, /ops/ping,
 * the dead-letter actions: "Authorization: Bearer <admin API key>"), read
 * (the ops API's reads and the notification and SMS lookups: an admin key
 * or a read-only key from ops_read_key_hashes, for an operator who may
 * look but not act), or app (the chat routes of one
 * application, authorized by the application token in their path). Admin
 * keys are configured as SHA-256 digests only, so the dispatcher never
 * holds a key; a presented key is hashed and compared with every digest in
 * constant time, and is never logged.
 *
 * Every admin key and application token has a token bucket in Redis
 * (rate_limit_rps, rate_limit_burst), shared by all dispatcher processes;
 * an empty bucket answers 429 with Retry-After. If Redis cannot answer, the
 * request goes through: the limit protects the service, it must not become
 * one more way for it to fail. */
#ifndef SB_ACCESS_H
#define SB_ACCESS_H

#include "envelope.h"
#include "server.h"

/* Parses cfg's key digests; false (and errbuf) if one is malformed. */
bool access_init(const struct sb_config *cfg, char *errbuf, size_t errlen) SB_NODISCARD;
/* Number of keys configured, admin and read-only (0: every keyed route
 * answers 401). */
size_t access_key_count(void);
/* Of which admin keys (0: admin routes answer 401 or 403). */
size_t access_admin_key_count(void);
/* The rate-limit principal of a key ("k:" for an admin key, "r:" for a
 * read-only one, then the first 8 bytes of its digest in hex); false if
 * the key is not one configured. */
bool access_key_principal(const char *key, char *principal, size_t cap) SB_NODISCARD;
/* The principal is a read-only key's. */
bool access_read_only(const char *principal);
/* The token bucket, a Lua script run by EVAL with KEYS[1] = the bucket's
 * key, ARGV = rate (per second), burst: 0 when a token was taken, else the
 * milliseconds until one is there. */
const char *access_bucket_script(void);
/* Checks the credentials the route needs, then the rate limit, then runs
 * the route's handler; answers 401 or 429 itself otherwise. */
void access_dispatch(struct http_ctx *ctx);

/* What a client authenticated as once, for a whole connection (a
 * WebSocket): an admin key (admin: its principal), which may use every
 * route, or one application's token (app), which may use only that
 * application's routes. */
struct access_grant {
    char admin[40];
    char app[TOKEN_LEN + 1];
    int64_t expires_s; /* an access token's: its commands answer 401 from then on; 0 = a key's, never */
};
/* The grant a credential gives: an admin key, else anything shaped like
 * an application token (whether that application exists is each
 * command's 404, as over HTTP); false for neither. */
bool access_grant_for(const char *credential, struct access_grant *g) SB_NODISCARD;
/* access_dispatch for a request of a connection holding grant g: the
 * route must be one g allows (else 403), and takes the rate limit of its
 * principal exactly as over HTTP. */
void access_dispatch_as(struct http_ctx *ctx, const struct access_grant *g);

#endif
