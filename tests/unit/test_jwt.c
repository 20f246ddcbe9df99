/* JWT access tokens (dispatcher/jwt.c): keys made here with OpenSSL, put
 * in a JWKS document as a provider publishes them, tokens signed here.
 * A good RS256 and ES256 token pass, with their scopes; every hostile
 * case fails with its own status: expired, not yet valid (each with the
 * leeway), another issuer or audience, "none", HS256 keyed with the
 * public key, an EC key's kid on an RS256 token, a tampered payload or
 * signature, an unknown kid, a token over the limit, keys the set must
 * skip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt.h"
#include "jwtmint.h"

static EVP_PKEY *rsa, *ec, *rsa_small;
static const int64_t NOW = 1800000000;

/* The public JWK of k, as a provider's JWKS lists it. */
static void jwk(EVP_PKEY *k, const char *kid, const char *extra, char *out, size_t cap)
{
    assert_true(jwtmint_jwk(k, kid, extra, out, cap));
}

/* header.payload.signature, signed with k (RS256 or ES256 by its type),
 * or with alg "none" (k NULL) or HS256 keyed by hmac_key. */
static char *token(const char *header, const char *payload, EVP_PKEY *k, const char *hmac_key)
{
    static char out[3 * JWT_MAX_LEN];
    assert_true(jwtmint_token(header, payload, k, hmac_key, out, sizeof out));
    return out;
}

static char *claims(int64_t exp, int64_t nbf, const char *iss, const char *aud, const char *scope)
{
    static char out[2048];
    snprintf(out, sizeof out,
             "{\"iss\":\"%s\",\"sub\":\"svc-1\",\"aud\":%s,\"exp\":%lld,\"nbf\":%lld,\"iat\":%lld,%s}", iss, aud,
             (long long)exp, (long long)nbf, (long long)nbf, scope);
    return out;
}

static const struct jwt_policy policy = {.issuer = "http://idp.test/",
                                         .audience = "switchboard",
                                         .scope_claim = "scp",
                                         .admin_scope = "switchboard:admin",
                                         .read_scope = "switchboard:read",
                                         .leeway_s = 30};

#define GOOD claims(NOW + 600, NOW - 10, "http://idp.test/", "[\"other\",\"switchboard\"]", "\"scp\":[\"switchboard:admin\"]")

static struct jwt_keyset *keyset(void)
{
    char a[4096], b[4096], c[4096], d[4096], doc[20000];
    jwk(rsa, "r1", "", a, sizeof a);
    jwk(ec, "e1", ",\"alg\":\"ES256\"", b, sizeof b);
    jwk(rsa_small, "small", "", c, sizeof c); /* skipped: 1024 bits */
    jwk(rsa, "enc", "", d, sizeof d); /* skipped: made a key for encryption below */
    memcpy(strstr(d, "\"sig\""), "\"enc\"", 5);
    snprintf(doc, sizeof doc,
             "{\"keys\":[%s,%s,%s,%s,{\"kty\":\"oct\",\"kid\":\"h\",\"k\":\"c2VjcmV0\"},"
             "{\"kty\":\"RSA\",\"kid\":\"r512\",\"alg\":\"RS512\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
             a, b, c, d);
    size_t skipped = 99;
    char err[256];
    struct jwt_keyset *ks = jwt_keyset_parse(doc, strlen(doc), &skipped, err, sizeof err);
    assert_non_null(ks);
    assert_int_equal(jwt_keyset_count(ks), 2);
    assert_int_equal(skipped, 4);
    return ks;
}

static int setup(void **state)
{
    (void)state;
    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return rsa && ec && rsa_small ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa_small);
    EVP_PKEY_free(ec);
    return 0;
}

static enum jwt_status check(struct jwt_keyset *ks, const char *t, int64_t now, struct jwt_grant *g)
{
    return jwt_verify(t, ks, &policy, now, g);
}

static void good_tokens(void **state)
{
    (void)state;
    struct jwt_keyset *ks = keyset();
    struct jwt_grant g;
    const char *t = token("{\"alg\":\"RS256\",\"kid\":\"r1\",\"typ\":\"at+jwt\"}", GOOD, rsa, NULL);
    assert_true(jwt_shaped(t));
    assert_int_equal(check(ks, t, NOW, &g), JWT_OK);
    assert_int_equal(g.level, 2);
    assert_int_equal(g.exp, NOW + 600);
    assert_int_equal(strlen(g.subject), 16);
    char first[17];
    memcpy(first, g.subject, sizeof first);

    t = token("{\"alg\":\"ES256\",\"kid\":\"e1\"}",
              claims(NOW + 600, NOW, "http://idp.test/", "\"switchboard\"", "\"scp\":\"openid switchboard:read\""), ec,
              NULL);
    assert_int_equal(check(ks, t, NOW, &g), JWT_OK);
    assert_int_equal(g.level, 1);                /* a string of scopes, read only */
    assert_string_equal(g.subject, first);       /* same iss and sub: same principal */

    t = token("{\"alg\":\"RS256\",\"kid\":\"r1\"}",
              claims(NOW + 600, NOW, "http://idp.test/", "\"switchboard\"", "\"scp\":\"switchboard:administrator\""),
              rsa, NULL);
    assert_int_equal(check(ks, t, NOW, &g), JWT_OK);
    assert_int_equal(g.level, 0); /* a scope is a whole word */
    jwt_keyset_unref(ks);
}

static void times_and_names(void **state)
{
    (void)state;
    struct jwt_keyset *ks = keyset();
    struct jwt_grant g;
    const char *h = "{\"alg\":\"RS256\",\"kid\":\"r1\"}", *aud = "\"switchboard\"", *sc = "\"x\":1";
    /* exp: within the leeway still good, past it expired */
    assert_int_equal(check(ks, token(h, claims(NOW - 20, NOW - 100, "http://idp.test/", aud, sc), rsa, NULL), NOW, &g),
                     JWT_OK);
    assert_int_equal(check(ks, token(h, claims(NOW - 31, NOW - 100, "http://idp.test/", aud, sc), rsa, NULL), NOW, &g),
                     JWT_EXPIRED);
    /* nbf likewise */
    assert_int_equal(check(ks, token(h, claims(NOW + 600, NOW + 25, "http://idp.test/", aud, sc), rsa, NULL), NOW, &g),
                     JWT_OK);
    assert_int_equal(check(ks, token(h, claims(NOW + 600, NOW + 60, "http://idp.test/", aud, sc), rsa, NULL), NOW, &g),
                     JWT_NOT_YET_VALID);
    assert_int_equal(
        check(ks, token(h, claims(NOW + 600, NOW, "http://idp.test", aud, sc), rsa, NULL), NOW, &g), JWT_ISSUER);
    assert_int_equal(check(ks, token(h, claims(NOW + 600, NOW, "http://idp.test/", "[\"other\"]", sc), rsa, NULL), NOW, &g),
                     JWT_AUDIENCE);
    assert_int_equal(check(ks, token(h, claims(NOW + 600, NOW, "http://idp.test/", "\"switchboard2\"", sc), rsa, NULL),
                           NOW, &g),
                     JWT_AUDIENCE);
    /* on exp + leeway exactly: expired (RFC 7519: on or after) */
    assert_int_equal(check(ks, token(h, claims(NOW - 30, NOW - 100, "http://idp.test/", aud, sc), rsa, NULL), NOW, &g),
                     JWT_EXPIRED);
    /* an nbf that is not a number, no subject */
    assert_int_equal(check(ks, token(h, "{\"iss\":\"http://idp.test/\",\"aud\":\"switchboard\",\"sub\":\"s\","
                                        "\"exp\":1800000600,\"nbf\":\"1900000000\"}", rsa, NULL), NOW, &g),
                     JWT_MALFORMED);
    assert_int_equal(check(ks, token(h, "{\"iss\":\"http://idp.test/\",\"aud\":\"switchboard\",\"exp\":1800000600}",
                                     rsa, NULL), NOW, &g),
                     JWT_MALFORMED);
    /* no exp at all */
    assert_int_equal(check(ks, token(h, "{\"iss\":\"http://idp.test/\",\"aud\":\"switchboard\"}", rsa, NULL), NOW, &g),
                     JWT_MALFORMED);
    jwt_keyset_unref(ks);
}

static void hostile(void **state)
{
    (void)state;
    struct jwt_keyset *ks = keyset();
    struct jwt_grant g;
    assert_int_equal(check(ks, token("{\"alg\":\"none\",\"kid\":\"r1\"}", GOOD, NULL, NULL), NOW, &g), JWT_ALG);
    /* HS256 keyed with the RSA key's public modulus, the classic confusion */
    char pub[1400];
    assert_true(jwtmint_param(rsa, OSSL_PKEY_PARAM_RSA_N, 0, pub));
    assert_int_equal(check(ks, token("{\"alg\":\"HS256\",\"kid\":\"r1\"}", GOOD, NULL, pub), NOW, &g), JWT_ALG);
    /* an RS256 token naming the EC key, and an ES256 one naming the RSA key */
    assert_int_equal(check(ks, token("{\"alg\":\"RS256\",\"kid\":\"e1\"}", GOOD, rsa, NULL), NOW, &g), JWT_ALG);
    assert_int_equal(check(ks, token("{\"alg\":\"ES256\",\"kid\":\"r1\"}", GOOD, ec, NULL), NOW, &g), JWT_ALG);
    /* a critical extension we do not know */
    assert_int_equal(check(ks, token("{\"alg\":\"RS256\",\"kid\":\"r1\",\"crit\":[\"x\"]}", GOOD, rsa, NULL), NOW, &g),
                     JWT_ALG);
    assert_int_equal(check(ks, token("{\"alg\":\"RS256\",\"kid\":\"r9\"}", GOOD, rsa, NULL), NOW, &g), JWT_UNKNOWN_KID);
    /* no kid: the provider's one key of that algorithm, else refused */
    assert_int_equal(check(ks, token("{\"alg\":\"RS256\"}", GOOD, rsa, NULL), NOW, &g), JWT_OK);
    assert_int_equal(check(ks, token("{\"alg\":\"RS256\"}", GOOD, rsa_small, NULL), NOW, &g), JWT_SIGNATURE);
    assert_int_equal(check(ks, token("{\"alg\":\"RS256\",\"kid\":\"small\"}", GOOD, rsa_small, NULL), NOW, &g),
                     JWT_UNKNOWN_KID);

    /* tampered: the payload swapped for another, the signature's last
     * character changed */
    char t[3 * JWT_MAX_LEN], other[3 * JWT_MAX_LEN];
    snprintf(t, sizeof t, "%s", token("{\"alg\":\"RS256\",\"kid\":\"r1\"}", GOOD, rsa, NULL));
    snprintf(other, sizeof other, "%s",
             token("{\"alg\":\"RS256\",\"kid\":\"r1\"}",
                   claims(NOW + 600, NOW, "http://idp.test/", "\"switchboard\"", "\"scp\":\"switchboard:read\""), rsa,
                   NULL));
    char *d1 = strchr(t, '.'), *d2 = strrchr(t, '.'), *o1 = strchr(other, '.'), *o2 = strrchr(other, '.');
    char mixed[3 * JWT_MAX_LEN];
    snprintf(mixed, sizeof mixed, "%.*s%.*s%s", (int)(d1 - t), t, (int)(o2 - o1), o1, d2);
    assert_int_equal(check(ks, mixed, NOW, &g), JWT_SIGNATURE);
    assert_int_equal(check(ks, t, NOW, &g), JWT_OK);
    t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(check(ks, t, NOW, &g), JWT_SIGNATURE);
    snprintf(t, sizeof t, "%s", token("{\"alg\":\"ES256\",\"kid\":\"e1\"}", GOOD, ec, NULL));
    t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(check(ks, t, NOW, &g), JWT_SIGNATURE);

    /* a second encoding of the same signature (bits past its end set):
     * refused, so one token has one form */
    snprintf(t, sizeof t, "%s", token("{\"alg\":\"ES256\",\"kid\":\"e1\"}", GOOD, ec, NULL));
    assert_int_equal(check(ks, t, NOW, &g), JWT_OK);
    char *last = t + strlen(t) - 1; /* 64 bytes: 86 characters, the last holds 4 bits and 2 spare */
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    *last = alpha[(strchr(alpha, *last) - alpha) | 1];
    assert_int_equal(check(ks, t, NOW, &g), JWT_MALFORMED);

    /* shapes */
    assert_int_equal(check(ks, "abc.def", NOW, &g), JWT_MALFORMED);
    assert_int_equal(check(ks, "a.b.c.d", NOW, &g), JWT_MALFORMED);
    assert_int_equal(check(ks, "!!!.b.c", NOW, &g), JWT_MALFORMED);
    assert_false(jwt_shaped("a key with spaces"));
    assert_false(jwt_shaped("a.b"));
    /* over the limit: refused unread, however well signed */
    char big[JWT_MAX_LEN + 200];
    snprintf(big, sizeof big, "{\"iss\":\"http://idp.test/\",\"aud\":\"switchboard\",\"exp\":%lld,\"pad\":\"%0*d\"}",
             (long long)NOW + 600, JWT_MAX_LEN - 80, 0);
    assert_int_equal(check(ks, token("{\"alg\":\"RS256\",\"kid\":\"r1\"}", big, rsa, NULL), NOW, &g), JWT_MALFORMED);
    jwt_keyset_unref(ks);
}

static void same_keys(void **state)
{
    (void)state;
    struct jwt_keyset *a = keyset(), *b = keyset();
    assert_true(jwt_keyset_equal(a, b)); /* fetched again, unchanged */
    char one[4096], doc[9000], err[256];
    jwk(rsa, "r1", "", one, sizeof one);
    snprintf(doc, sizeof doc, "{\"keys\":[%s]}", one);
    size_t skipped;
    struct jwt_keyset *c = jwt_keyset_parse(doc, strlen(doc), &skipped, err, sizeof err);
    assert_false(jwt_keyset_equal(a, c)); /* a key fewer */
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    jwk(other, "r1", "", one, sizeof one); /* the same kid, another key */
    char ec1[4096];
    jwk(ec, "e1", ",\"alg\":\"ES256\"", ec1, sizeof ec1);
    snprintf(doc, sizeof doc, "{\"keys\":[%s,%s]}", one, ec1);
    struct jwt_keyset *d = jwt_keyset_parse(doc, strlen(doc), &skipped, err, sizeof err);
    assert_int_equal(jwt_keyset_count(d), 2);
    assert_false(jwt_keyset_equal(a, d));
    assert_false(jwt_keyset_equal(a, NULL));
    EVP_PKEY_free(other);
    jwt_keyset_unref(a);
    jwt_keyset_unref(b);
    jwt_keyset_unref(c);
    jwt_keyset_unref(d);
}

static void not_a_jwks(void **state)
{
    (void)state;
    size_t skipped;
    char err[256];
    assert_null(jwt_keyset_parse("{\"keys\":{}}", 11, &skipped, err, sizeof err));
    assert_non_null(strstr(err, "keys"));
    assert_null(jwt_keyset_parse("<html>", 6, &skipped, err, sizeof err));
    struct jwt_keyset *ks = jwt_keyset_parse("{\"keys\":[]}", 11, &skipped, err, sizeof err);
    assert_non_null(ks);
    assert_int_equal(jwt_keyset_count(ks), 0);
    jwt_keyset_unref(ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_tokens),
        cmocka_unit_test(times_and_names),
        cmocka_unit_test(hostile),
        cmocka_unit_test(same_keys),
        cmocka_unit_test(not_a_jwks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
