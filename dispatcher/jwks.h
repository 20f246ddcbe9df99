/* jwks.h - the OpenID provider's signing keys, kept fresh by a thread.
 *
 * When jwt_issuer is set, a thread of its own (never an event loop)
 * fetches the provider's JWKS: from jwt_jwks_url, or from the jwks_uri of
 * the issuer's discovery document (<issuer>/.well-known/openid-configuration,
 * whose issuer must match). It fetches again when the answer's
 * Cache-Control max-age runs out (5 minutes without one; between
 * jwt_refresh_min_s and a day), after a failure with backoff (1 s to a
 * minute, the old keys still used), and when a token names a key it does
 * not know: at most once per jwt_refresh_min_s, so tokens with made-up key
 * ids cannot make it hammer the provider.
 *
 * Loops take the current key set with jwks_get (a reference, released
 * with jwt_keyset_unref); each new set has a new generation, which is how
 * access.c knows its cache of checked tokens is stale. */
#ifndef SB_JWKS_H
#define SB_JWKS_H

#include "config.h"
#include "jwt.h"

/* Starts the thread if cfg->jwt_issuer is set; false (and errbuf) if the
 * JWT settings are incomplete or the thread cannot start. Call once, from
 * the main thread, before the loops serve. */
bool jwks_start(const struct sb_config *cfg, char *errbuf, size_t errlen) SB_NODISCARD;
void jwks_stop(void);
/* JWT access tokens are accepted (jwt_issuer set). */
bool jwks_enabled(void);
const struct jwt_policy *jwks_policy(void);
/* The current keys, referenced, and their generation; NULL before the
 * first fetch succeeded. */
struct jwt_keyset *jwks_get(uint64_t *generation);
/* The current set's generation, without a lock (0: none yet). */
uint64_t jwks_generation(void);
/* Fetches finished so far, good or bad (a waiter watches it move). */
uint64_t jwks_fetches(void);
/* Asks for a fetch (a token named an unknown key): it begins at once, or
 * jwt_refresh_min_s after the last one. Returns the number the fetch that
 * sees the provider as it is now will have: once jwks_fetches() reaches
 * it, the key set is as fresh as it gets. */
uint64_t jwks_refresh(void);
int64_t jwks_refresh_min_ms(void);

#endif
