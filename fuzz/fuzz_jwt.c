/* Fuzz target: access tokens and JWKS documents (dispatcher/jwt.c), both
 * from outside: a client sends any bytes as a bearer token, a provider
 * (or whoever answers at its address) any JWKS. Neither may crash or
 * leak; a token made by the fuzzer never passes (the keys are made here,
 * at start, and never seen by it: a token that verified would be a
 * forgery); a status is always one of the enum's. Input starting with '{'
 * is read as a JWKS, anything else as a token. */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "jwtmint.h"

static struct jwt_keyset *keys;

/* The provider's keys: an RSA and a P-256 one, kids "r" and "e" (the
 * seeds name them), made once per process. */
static void make_keys(void)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char rj[2048], ej[512], doc[3000], err[256];
    if (!jwtmint_jwk(rsa, "r", "", rj, sizeof rj) || !jwtmint_jwk(ec, "e", "", ej, sizeof ej))
        abort();
    snprintf(doc, sizeof doc, "{\"keys\":[%s,%s]}", rj, ej);
    size_t skipped;
    keys = jwt_keyset_parse(doc, strlen(doc), &skipped, err, sizeof err);
    if (keys == NULL || jwt_keyset_count(keys) != 2)
        abort();
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (keys == NULL)
        make_keys();
    if (size > 3 * JWT_MAX_LEN)
        return 0;
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (size && s[0] == '{') {
        size_t skipped;
        char err[256];
        struct jwt_keyset *ks = jwt_keyset_parse(s, size, &skipped, err, sizeof err);
        if (ks) {
            (void)jwt_keyset_equal(ks, keys);
            jwt_keyset_unref(ks);
        } else if (err[0] == '\0') {
            abort(); /* a refusal says why */
        }
    } else {
        static const struct jwt_policy p = {.issuer = "http://idp/", .audience = "switchboard",
                                            .scope_claim = "scp", .admin_scope = "switchboard:admin",
                                            .read_scope = "switchboard:read", .leeway_s = 30};
        struct jwt_grant g;
        (void)jwt_shaped(s);
        enum jwt_status st = jwt_verify(s, keys, &p, 1800000000, &g);
        if (st == JWT_OK || st > JWT_AUDIENCE || jwt_status_text(st) == NULL)
            abort(); /* nothing the fuzzer makes is signed by our keys */
    }
    free(s);
    return 0;
}
