/* switchboard-jwtbench N - CPU per full check of an access token
 * (dispatcher/jwt.c: decode, signature, claims) with RS256 and ES256,
 * keys and tokens made here. Prints one JSON object: microseconds of
 * process CPU per check of each. The dispatcher pays this once per token
 * per key set (access.c keeps checked tokens); scripts/bench's row jwt
 * measures what a request with a checked token costs end to end. */
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt.h"

static void b64url(const unsigned char *in, size_t len, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (i + 1 < len)
            out[o++] = a[v >> 6 & 63];
        if (i + 2 < len)
            out[o++] = a[v & 63];
    }
    out[o] = '\0';
}

static void param_b64(EVP_PKEY *k, const char *name, size_t pad, char *out)
{
    BIGNUM *bn = NULL;
    unsigned char buf[600];
    if (!EVP_PKEY_get_bn_param(k, name, &bn))
        exit(1);
    int n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
    b64url(buf, (size_t)n, out);
    BN_free(bn);
}

/* A token like a provider's (about 1 KB of claims), signed by k. */
static void make_token(EVP_PKEY *k, const char *alg, const char *kid, char *out)
{
    char header[128], claims[1024], h[256], c[2048], signing[2400], s[1024];
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}", alg, kid);
    snprintf(claims, sizeof claims,
             "{\"aud\":[\"switchboard\"],\"client_id\":\"bench-client\",\"exp\":%lld,\"ext\":{},\"iat\":%lld,"
             "\"iss\":\"http://127.0.0.1:4444/\",\"jti\":\"3f1e8a52-7c1d-4b8e-9d1a-0c5b2f7e6a91\",\"nbf\":%lld,"
             "\"scp\":[\"switchboard:admin\",\"switchboard:read\"],\"sub\":\"bench-client\"}",
             (long long)time(NULL) + 3600, (long long)time(NULL), (long long)time(NULL));
    b64url((unsigned char *)header, strlen(header), h);
    b64url((unsigned char *)claims, strlen(claims), c);
    snprintf(signing, sizeof signing, "%s.%s", h, c);
    unsigned char der[600], sig[600];
    size_t dl = sizeof der, sl;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    if (EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, k) != 1 ||
        EVP_DigestSign(mc, der, &dl, (unsigned char *)signing, strlen(signing)) != 1)
        exit(1);
    EVP_MD_CTX_free(mc);
    if (strcmp(alg, "ES256") == 0) {
        const unsigned char *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);
        BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
        ECDSA_SIG_free(es);
        sl = 64;
    } else {
        memcpy(sig, der, dl);
        sl = dl;
    }
    b64url(sig, sl, s);
    sprintf(out, "%s.%s", signing, s);
}

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000;
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char rn[600], re[16], ex[64], ey[64], doc[2048];
    param_b64(rsa, OSSL_PKEY_PARAM_RSA_N, 0, rn);
    param_b64(rsa, OSSL_PKEY_PARAM_RSA_E, 0, re);
    param_b64(ec, OSSL_PKEY_PARAM_EC_PUB_X, 32, ex);
    param_b64(ec, OSSL_PKEY_PARAM_EC_PUB_Y, 32, ey);
    snprintf(doc, sizeof doc,
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r\",\"n\":\"%s\",\"e\":\"%s\"},"
             "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"e\",\"x\":\"%s\",\"y\":\"%s\"}]}",
             rn, re, ex, ey);
    size_t skipped;
    char err[256];
    struct jwt_keyset *ks = jwt_keyset_parse(doc, strlen(doc), &skipped, err, sizeof err);
    if (ks == NULL || jwt_keyset_count(ks) != 2) {
        fprintf(stderr, "jwtbench: %s\n", ks ? "keys skipped" : err);
        return 1;
    }
    const struct jwt_policy p = {.issuer = "http://127.0.0.1:4444/", .audience = "switchboard",
                                 .scope_claim = "scp", .admin_scope = "switchboard:admin",
                                 .read_scope = "switchboard:read", .leeway_s = 30};
    char rs[2400 + 1024], es[2400 + 1024];
    make_token(rsa, "RS256", "r", rs);
    make_token(ec, "ES256", "e", es);
    const char *names[] = {"rs256_us", "es256_us"};
    const char *tokens[] = {rs, es};
    printf("{\"checks\":%ld,\"token_bytes\":%zu", n, strlen(rs));
    for (int t = 0; t < 2; t++) {
        struct jwt_grant g;
        double t0 = cpu_us();
        for (long i = 0; i < n; i++)
            if (jwt_verify(tokens[t], ks, &p, (int64_t)time(NULL), &g) != JWT_OK || g.level != 2) {
                fprintf(stderr, "jwtbench: %s did not verify\n", names[t]);
                return 1;
            }
        printf(",\"%s\":%.2f", names[t], (cpu_us() - t0) / (double)n);
    }
    printf("}\n");
    jwt_keyset_unref(ks);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    return 0;
}
