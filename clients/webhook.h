/* webhook.h - how we sign what we POST to a customer's webhook, and each
 * API key's signing secret.
 *
 * A message accepted with a statusCallback URL has each change of its
 * status POSTed there (workers/webhooks.c), with
 *   X-Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
 * keyed with the secret of the API key that sent it: HMAC-SHA256 of the
 * key's principal ("k:" and its digest's first bytes, access.h) under
 * webhook_signing_secret, in hex. The receiver checks the signature and
 * refuses a t far from its clock (a replay). GET /v1/webhooks/secret gives
 * a key its secret. */
#ifndef SB_WEBHOOK_H
#define SB_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

#define WEBHOOK_SECRET_LEN 64 /* hex */

/* The secret of the key whose principal is given (hex, and a NUL). */
bool webhook_key_secret(const char *signing_secret, const char *principal, char out[WEBHOOK_SECRET_LEN + 1]);
/* The header's value for body sent at unix seconds t. */
bool webhook_signature(const char *secret, long long t, const char *body, size_t len, char *out, size_t cap);

#endif
