/* jwt.c - see jwt.h. */
#include "jwt.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

struct jwt_key {
    char kid[128];
    enum jwt_alg alg;
    EVP_PKEY *pkey;
};

struct jwt_keyset {
    atomic_int refs;
    size_t n;
    struct jwt_key keys[];
};

/* base64url's alphabet: value + 1 (0: not base64url). */
static const unsigned char b64_val[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64,
};

/* base64url without padding (RFC 7515 section 2) into out (cap bytes);
 * the decoded length, or -1 if s is not canonical base64url (the bits
 * left over at the end must be zero: one value, one encoding) or does not
 * fit. */
static long b64url_decode(const char *s, size_t len, unsigned char *out, size_t cap)
{
    if (len % 4 == 1)
        return -1;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_val[(unsigned char)s[i]] - 1;
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return -1;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1))
        return -1;
    return (long)n;
}

/* A base64url member of a JWK, decoded into a new buffer (*len). */
static unsigned char *jwk_bytes(const cJSON *jwk, const char *name, size_t *len)
{
    const char *s = json_str(jwk, name, NULL);
    if (s == NULL)
        return NULL;
    size_t slen = strlen(s), cap = slen * 3 / 4 + 3;
    unsigned char *b = malloc(cap);
    long n = b ? b64url_decode(s, slen, b, cap) : -1;
    if (n <= 0) {
        free(b);
        return NULL;
    }
    *len = (size_t)n;
    return b;
}

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    if (params == NULL || pc == NULL || EVP_PKEY_fromdata_init(pc) <= 0 ||
        EVP_PKEY_fromdata(pc, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *rsa_key(const cJSON *jwk)
{
    size_t nlen = 0, elen = 0;
    unsigned char *n = jwk_bytes(jwk, "n", &nlen), *e = jwk_bytes(jwk, "e", &elen);
    BIGNUM *bn = n ? BN_bin2bn(n, (int)nlen, NULL) : NULL, *be = e ? BN_bin2bn(e, (int)elen, NULL) : NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pkey = pkey_from_params("RSA", bld);
    /* A short modulus is forgeable; providers use 2048 bits or more. */
    if (pkey && EVP_PKEY_get_bits(pkey) < 2048) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    free(n);
    free(e);
    return pkey;
}

static EVP_PKEY *ec_key(const cJSON *jwk)
{
    size_t xlen = 0, ylen = 0;
    unsigned char *x = jwk_bytes(jwk, "x", &xlen), *y = jwk_bytes(jwk, "y", &ylen);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    unsigned char pub[65];
    if (x && y && xlen == 32 && ylen == 32 && bld) {
        pub[0] = 0x04; /* uncompressed point */
        memcpy(pub + 1, x, 32);
        memcpy(pub + 33, y, 32);
        if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub))
            pkey = pkey_from_params("EC", bld);
    }
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return pkey;
}

/* The key of one JWK, or false to skip it. */
static bool parse_jwk(const cJSON *jwk, struct jwt_key *k)
{
    const char *kty = json_str(jwk, "kty", ""), *kid = json_str(jwk, "kid", NULL);
    const char *use = json_str(jwk, "use", "sig"), *alg = json_str(jwk, "alg", NULL);
    if (kid == NULL)
        kid = ""; /* a kid-less key serves tokens without a kid (when it is the only one of its kind) */
    if (strlen(kid) >= sizeof k->kid || strcmp(use, "sig") != 0)
        return false;
    if (strcmp(kty, "RSA") == 0 && (alg == NULL || strcmp(alg, "RS256") == 0)) {
        k->alg = JWT_RS256;
        k->pkey = rsa_key(jwk);
    } else if (strcmp(kty, "EC") == 0 && strcmp(json_str(jwk, "crv", ""), "P-256") == 0 &&
               (alg == NULL || strcmp(alg, "ES256") == 0)) {
        k->alg = JWT_ES256;
        k->pkey = ec_key(jwk);
    } else {
        return false;
    }
    snprintf(k->kid, sizeof k->kid, "%s", kid);
    return k->pkey != NULL;
}

struct jwt_keyset *jwt_keyset_parse(const char *json, size_t len, size_t *skipped, char *errbuf,
                                    size_t errlen)
{
    *skipped = 0;
    cJSON *doc = json_parse_strict(json, len, errbuf, errlen);
    if (doc == NULL)
        return NULL;
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(doc, "keys");
    if (!cJSON_IsArray(keys)) {
        cJSON_Delete(doc);
        sb_errf(errbuf, errlen, "not a JWKS: no \"keys\" array");
        return NULL;
    }
    size_t max = (size_t)cJSON_GetArraySize(keys);
    struct jwt_keyset *ks = calloc(1, sizeof *ks + max * sizeof ks->keys[0]);
    if (ks == NULL) {
        cJSON_Delete(doc);
        sb_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&ks->refs, 1);
    const cJSON *jwk;
    cJSON_ArrayForEach(jwk, keys)
    {
        if (cJSON_IsObject(jwk) && parse_jwk(jwk, &ks->keys[ks->n]))
            ks->n++;
        else
            ++*skipped;
    }
    cJSON_Delete(doc);
    return ks;
}

size_t jwt_keyset_count(const struct jwt_keyset *ks)
{
    return ks->n;
}

bool jwt_keyset_equal(const struct jwt_keyset *a, const struct jwt_keyset *b)
{
    if (a == NULL || b == NULL || a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->keys[i].kid, b->keys[i].kid) != 0 || a->keys[i].alg != b->keys[i].alg ||
            EVP_PKEY_eq(a->keys[i].pkey, b->keys[i].pkey) != 1)
            return false;
    return true;
}

struct jwt_keyset *jwt_keyset_ref(struct jwt_keyset *ks)
{
    atomic_fetch_add(&ks->refs, 1);
    return ks;
}

void jwt_keyset_unref(struct jwt_keyset *ks)
{
    if (ks == NULL || atomic_fetch_sub(&ks->refs, 1) != 1)
        return;
    for (size_t i = 0; i < ks->n; i++)
        EVP_PKEY_free(ks->keys[i].pkey);
    free(ks);
}

bool jwt_shaped(const char *token)
{
    int dots = 0;
    for (const char *p = token; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                   *p == '-' || *p == '_'))
            return false;
    }
    return dots == 2;
}

static bool verify_sig(const struct jwt_key *k, const char *signed_part, size_t signed_len,
                       const unsigned char *sig, size_t siglen)
{
    unsigned char der[80];
    if (k->alg == JWT_ES256) {
        /* JWS carries r || s (RFC 7518 3.4); EVP wants DER. */
        if (siglen != 64)
            return false;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return false;
        }
        unsigned char *p = der;
        int n = i2d_ECDSA_SIG(es, NULL) <= (int)sizeof der ? i2d_ECDSA_SIG(es, &p) : -1;
        ECDSA_SIG_free(es);
        if (n <= 0)
            return false;
        sig = der;
        siglen = (size_t)n;
    }
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    bool ok = mc && EVP_DigestVerifyInit(mc, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
              EVP_DigestVerify(mc, sig, siglen, (const unsigned char *)signed_part, signed_len) == 1;
    EVP_MD_CTX_free(mc);
    return ok;
}

/* A part of the token decoded and parsed as a JSON object. */
static cJSON *part_json(const char *s, size_t len)
{
    unsigned char buf[JWT_MAX_LEN];
    long n = b64url_decode(s, len, buf, sizeof buf);
    if (n <= 0)
        return NULL;
    char err[8];
    cJSON *o = json_parse_strict((const char *)buf, (size_t)n, err, sizeof err);
    if (o && !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        o = NULL;
    }
    return o;
}

/* The scope claim holds scope s: a space-separated string (RFC 8693 and
 * 9068's "scope") or an array of strings (as "scp" often is). */
static bool has_scope(const cJSON *claim, const char *s)
{
    if (s == NULL || s[0] == '\0')
        return false;
    size_t slen = strlen(s);
    if (cJSON_IsString(claim)) {
        for (const char *p = claim->valuestring; *p;) {
            while (*p == ' ')
                p++;
            size_t n = strcspn(p, " ");
            if (n == slen && memcmp(p, s, n) == 0)
                return true;
            p += n;
        }
        return false;
    }
    const cJSON *e, *list = cJSON_IsArray(claim) ? claim : NULL;
    cJSON_ArrayForEach(e, list)
    {
        if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0)
            return true;
    }
    return false;
}

static bool has_audience(const cJSON *aud, const char *want)
{
    if (cJSON_IsString(aud))
        return strcmp(aud->valuestring, want) == 0;
    const cJSON *e, *list = cJSON_IsArray(aud) ? aud : NULL;
    cJSON_ArrayForEach(e, list)
    {
        if (cJSON_IsString(e) && strcmp(e->valuestring, want) == 0)
            return true;
    }
    return false;
}

/* A NumericDate claim (seconds, maybe with a fraction): 1 read, 0
 * absent, -1 present but not a number we can take. */
static int numeric_date(const cJSON *claims, const char *name, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
    if (v == NULL)
        return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e15)
        return -1;
    *out = (int64_t)floor(v->valuedouble);
    return 1;
}

static enum jwt_status check_claims(const cJSON *c, const struct jwt_policy *p, int64_t now, struct jwt_grant *g)
{
    int64_t exp = 0, nbf = 0;
    if (numeric_date(c, "exp", &exp) != 1)
        return JWT_MALFORMED; /* an access token without an end is not one we take */
    int has_nbf = numeric_date(c, "nbf", &nbf);
    if (has_nbf < 0)
        return JWT_MALFORMED;
    if (now >= exp + p->leeway_s) /* RFC 7519 4.1.4: on or after exp, refused */
        return JWT_EXPIRED;
    if (has_nbf && now + p->leeway_s < nbf)
        return JWT_NOT_YET_VALID;
    const char *iss = json_str(c, "iss", NULL);
    if (iss == NULL || strcmp(iss, p->issuer) != 0)
        return JWT_ISSUER;
    if (!has_audience(cJSON_GetObjectItemCaseSensitive(c, "aud"), p->audience))
        return JWT_AUDIENCE;
    const cJSON *scope = cJSON_GetObjectItemCaseSensitive(c, p->scope_claim);
    g->level = has_scope(scope, p->admin_scope) ? 2 : has_scope(scope, p->read_scope) ? 1 : 0;
    g->exp = exp;
    const char *sub = json_str(c, "sub", json_str(c, "client_id", NULL));
    if (sub == NULL || sub[0] == '\0')
        return JWT_MALFORMED; /* no one to account it to (rate limit, webhook secret) */
    unsigned char d[32];
    unsigned int dlen = 0;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    bool ok = mc && EVP_DigestInit_ex(mc, EVP_sha256(), NULL) && EVP_DigestUpdate(mc, iss, strlen(iss)) &&
              EVP_DigestUpdate(mc, " ", 1) && EVP_DigestUpdate(mc, sub, strlen(sub)) &&
              EVP_DigestFinal_ex(mc, d, &dlen);
    EVP_MD_CTX_free(mc);
    if (!ok)
        memset(d, 0, sizeof d);
    for (int i = 0; i < 8; i++)
        snprintf(g->subject + 2 * i, 3, "%02x", d[i]);
    return JWT_OK;
}

enum jwt_status jwt_verify(const char *token, const struct jwt_keyset *ks, const struct jwt_policy *p,
                           int64_t now_s, struct jwt_grant *g)
{
    memset(g, 0, sizeof *g);
    size_t len = strnlen(token, JWT_MAX_LEN + 1);
    const char *dot1 = len <= JWT_MAX_LEN ? memchr(token, '.', len) : NULL;
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return JWT_MALFORMED;
    cJSON *header = part_json(token, (size_t)(dot1 - token));
    if (header == NULL)
        return JWT_MALFORMED;
    const char *alg = json_str(header, "alg", ""), *kid = json_str(header, "kid", NULL);
    enum jwt_status st = JWT_OK;
    enum jwt_alg want = strcmp(alg, "RS256") == 0 ? JWT_RS256 : strcmp(alg, "ES256") == 0 ? JWT_ES256 : 0;
    /* "crit" names extensions we would have to understand (RFC 7515 4.1.11). */
    if (want == 0 || cJSON_GetObjectItemCaseSensitive(header, "crit") != NULL)
        st = JWT_ALG;
    const struct jwt_key *k = NULL;
    if (st == JWT_OK && kid) {
        for (size_t i = 0; i < ks->n && k == NULL; i++)
            if (strcmp(ks->keys[i].kid, kid) == 0)
                k = &ks->keys[i];
        if (k == NULL)
            st = JWT_UNKNOWN_KID;
    } else if (st == JWT_OK) {
        /* No kid (RFC 7515 allows it): the one key of the token's
         * algorithm, if the provider has exactly one; never a fetch. */
        size_t n = 0;
        for (size_t i = 0; i < ks->n; i++)
            if (ks->keys[i].alg == want && n++ == 0)
                k = &ks->keys[i];
        if (n != 1)
            st = JWT_MALFORMED;
    }
    if (st == JWT_OK && k->alg != want)
        st = JWT_ALG; /* the key pins the algorithm, not the token */
    cJSON_Delete(header);
    if (st != JWT_OK)
        return st;
    unsigned char sig[600];
    long siglen = b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), sig, sizeof sig);
    if (siglen <= 0)
        return JWT_MALFORMED;
    if (!verify_sig(k, token, (size_t)(dot2 - token), sig, (size_t)siglen))
        return JWT_SIGNATURE;
    cJSON *claims = part_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (claims == NULL)
        return JWT_MALFORMED;
    st = check_claims(claims, p, now_s, g);
    cJSON_Delete(claims);
    return st;
}

const char *jwt_status_text(enum jwt_status s)
{
    switch (s) {
    case JWT_OK:
        return "the token is valid";
    case JWT_MALFORMED:
        return "the token is not a well-formed signed JWT with exp and sub, naming its key";
    case JWT_ALG:
        return "the token's algorithm is not the one its key is for (RS256 or ES256)";
    case JWT_UNKNOWN_KID:
        return "the token was signed by a key the provider does not publish";
    case JWT_SIGNATURE:
        return "the token's signature does not verify";
    case JWT_EXPIRED:
        return "the token expired";
    case JWT_NOT_YET_VALID:
        return "the token is not valid yet (nbf)";
    case JWT_ISSUER:
        return "the token is from another issuer";
    case JWT_AUDIENCE:
        return "the token is not meant for this service (aud)";
    }
    return "the token is not valid";
}
