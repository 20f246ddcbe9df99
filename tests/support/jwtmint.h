/* jwtmint.h - what an OpenID provider makes, for the JWT unit test, the
 * fuzzer and the benchmark (tests/unit/test_jwt.c, fuzz/fuzz_jwt.c,
 * bench/jwtbench.c): a key's public JWK, and tokens signed with a key.
 * OpenSSL only; never linked into a program that serves. */
#ifndef SB_JWTMINT_H
#define SB_JWTMINT_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

/* base64url without padding; out holds 4 * len / 3 + 4 bytes. */
void jwtmint_b64url(const unsigned char *in, size_t len, char *out);
/* A key's big-number parameter (OSSL_PKEY_PARAM_*) in base64url, padded
 * to pad bytes (EC coordinates) or as short as it is (0: RSA's n and e);
 * out holds 1400 bytes. */
bool jwtmint_param(EVP_PKEY *k, const char *name, size_t pad, char *out);
/* The public JWK of k (RSA, or EC P-256) as a provider's JWKS lists it,
 * extra ("" or ",\"alg\":\"ES256\"", ...) appended to its members. */
bool jwtmint_jwk(EVP_PKEY *k, const char *kid, const char *extra, char *out, size_t cap);
/* header.payload.signature of the two JSON texts: signed with k (RS256 or
 * ES256 by its type), or HS256 keyed by hmac_key, or unsigned (both
 * NULL: alg "none"). False if it does not fit in cap or OpenSSL failed. */
bool jwtmint_token(const char *header, const char *payload, EVP_PKEY *k, const char *hmac_key, char *out,
                   size_t cap);

#endif
