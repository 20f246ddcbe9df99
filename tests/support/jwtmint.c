/* jwtmint.c - see jwtmint.h. */
#include "jwtmint.h"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jwtmint_b64url(const unsigned char *in, size_t len, char *out)
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

bool jwtmint_param(EVP_PKEY *k, const char *name, size_t pad, char *out)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    if (!EVP_PKEY_get_bn_param(k, name, &bn))
        return false;
    int n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
    BN_free(bn);
    if (n <= 0)
        return false;
    jwtmint_b64url(buf, (size_t)n, out);
    return true;
}

bool jwtmint_jwk(EVP_PKEY *k, const char *kid, const char *extra, char *out, size_t cap)
{
    char a[1400], b[1400];
    int n;
    if (EVP_PKEY_is_a(k, "RSA")) {
        if (!jwtmint_param(k, OSSL_PKEY_PARAM_RSA_N, 0, a) || !jwtmint_param(k, OSSL_PKEY_PARAM_RSA_E, 0, b))
            return false;
        n = snprintf(out, cap, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"%s}", kid, a,
                     b, extra);
    } else {
        if (!jwtmint_param(k, OSSL_PKEY_PARAM_EC_PUB_X, 32, a) || !jwtmint_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32, b))
            return false;
        n = snprintf(out, cap, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"%s}", kid,
                     a, b, extra);
    }
    return n > 0 && (size_t)n < cap;
}

/* The signature of signing (JWS's raw form: ECDSA as r || s, RFC 7518 3.4). */
static bool sign(const char *signing, EVP_PKEY *k, const char *hmac_key, unsigned char sig[1024], size_t *siglen)
{
    *siglen = 0;
    if (hmac_key) {
        unsigned int l = 0;
        if (!HMAC(EVP_sha256(), hmac_key, (int)strlen(hmac_key), (const unsigned char *)signing, strlen(signing),
                  sig, &l))
            return false;
        *siglen = l;
        return true;
    }
    if (k == NULL)
        return true; /* alg none */
    unsigned char der[1024];
    size_t dl = sizeof der;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    bool ok = mc && EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, k) == 1 &&
              EVP_DigestSign(mc, der, &dl, (const unsigned char *)signing, strlen(signing)) == 1;
    EVP_MD_CTX_free(mc);
    if (!ok)
        return false;
    if (!EVP_PKEY_is_a(k, "EC")) {
        memcpy(sig, der, dl);
        *siglen = dl;
        return true;
    }
    const unsigned char *d = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &d, (long)dl);
    if (es == NULL)
        return false;
    BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
    ECDSA_SIG_free(es);
    *siglen = 64;
    return true;
}

bool jwtmint_token(const char *header, const char *payload, EVP_PKEY *k, const char *hmac_key, char *out,
                   size_t cap)
{
    size_t hl = strlen(header), pl = strlen(payload);
    char *signing = malloc(4 * (hl + pl) / 3 + 16);
    unsigned char sig[1024];
    char s[1400];
    size_t siglen;
    bool ok = signing != NULL;
    if (ok) {
        jwtmint_b64url((const unsigned char *)header, hl, signing);
        size_t at = strlen(signing);
        signing[at++] = '.';
        jwtmint_b64url((const unsigned char *)payload, pl, signing + at);
        ok = sign(signing, k, hmac_key, sig, &siglen);
    }
    if (ok) {
        jwtmint_b64url(sig, siglen, s);
        int n = snprintf(out, cap, "%s.%s", signing, s);
        ok = n > 0 && (size_t)n < cap;
    }
    free(signing);
    return ok;
}
