/* jwt.h - OAuth2 access tokens: JSON Web Tokens (RFC 7519) in JWS compact
 * form, checked against the public keys of an OpenID provider (a JWKS,
 * RFC 7517).
 *
 * Pure: no I/O and no clock of its own (jwks.c fetches the keys, access.c
 * asks). Only RS256 and ES256 are accepted, and each key pins its
 * algorithm: an RSA key verifies RS256 only, a P-256 key ES256 only, so a
 * token cannot choose "none", an HMAC keyed with a public key, or another
 * key's algorithm. OpenSSL 3's EVP interface does the cryptography
 * (libjwt 1.10 has no JWKS and no claim checks; OpenSSL is already linked
 * for the key digests and TLS, so no new library is needed). */
#ifndef SB_JWT_H
#define SB_JWT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Longer tokens are refused unread (a provider's access token is 1-2 KB). */
#define JWT_MAX_LEN 8192

enum jwt_alg { JWT_RS256 = 1, JWT_ES256 = 2 };

/* The keys of one JWKS document, immutable once parsed, shared by the
 * loops through a reference count (jwks.c swaps in a new set). */
struct jwt_keyset;

/* Parses a JWKS document. Keys it cannot use (another algorithm or curve,
 * encryption keys, RSA under 2048 bits, no kid) are skipped; *skipped
 * counts them. NULL (and errbuf) if the document is not a JWKS. */
struct jwt_keyset *jwt_keyset_parse(const char *json, size_t len, size_t *skipped, char *errbuf,
                                    size_t errlen);
size_t jwt_keyset_count(const struct jwt_keyset *ks);
/* The same keys (kids, algorithms and key material) in the same order. */
bool jwt_keyset_equal(const struct jwt_keyset *a, const struct jwt_keyset *b);
struct jwt_keyset *jwt_keyset_ref(struct jwt_keyset *ks);
void jwt_keyset_unref(struct jwt_keyset *ks);

/* What a token must say. */
struct jwt_policy {
    const char *issuer;      /* iss, exactly */
    const char *audience;    /* one of aud */
    const char *scope_claim; /* a space-separated string or an array of strings */
    const char *admin_scope; /* in scope_claim: may do what an admin key may */
    const char *read_scope;  /* in scope_claim: may do what a read-only key may */
    int64_t leeway_s;        /* for exp and nbf: clocks differ */
};

enum jwt_status {
    JWT_OK,
    JWT_MALFORMED,   /* not three base64url parts of JSON, or too long */
    JWT_ALG,         /* an algorithm other than the key's */
    JWT_UNKNOWN_KID, /* no key of that kid in the set */
    JWT_SIGNATURE,
    JWT_EXPIRED,
    JWT_NOT_YET_VALID,
    JWT_ISSUER,
    JWT_AUDIENCE,
};

/* What a good token may do. */
struct jwt_grant {
    int level;        /* 0 no scope of ours, 1 read, 2 admin */
    int64_t exp;      /* seconds since the epoch */
    char subject[17]; /* 16 hex characters of SHA-256(iss " " sub): the rate-limit principal */
};

/* Checks a token at time now_s: JWT_OK fills g. A status other than OK
 * says what is wrong in words fit for a client (jwt_status_text); the
 * token itself is never copied into them. */
enum jwt_status jwt_verify(const char *token, const struct jwt_keyset *ks, const struct jwt_policy *p,
                           int64_t now_s, struct jwt_grant *g);
const char *jwt_status_text(enum jwt_status s);
/* Shaped like a JWS (three dot-separated base64url parts): worth verifying. */
bool jwt_shaped(const char *token);

#endif
