/* switchboard-jwtbench N - CPU per full check of an access token
 * (dispatcher/jwt.c: decode, signature, claims) with RS256 and ES256,
 * keys and tokens made here. Prints one JSON object: microseconds of
 * process CPU per check of each. The dispatcher pays this once per token
 * per key set (access.c keeps checked tokens); scripts/bench's row jwt
 * measures what a request with a checked token costs end to end. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt.h"
#include "jwtmint.h"

/* A token like a provider's (about 1 KB of claims), signed by k. */
static void make_token(EVP_PKEY *k, const char *alg, const char *kid, char *out, size_t cap)
{
    char header[128], claims[1024];
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}", alg, kid);
    snprintf(claims, sizeof claims,
             "{\"aud\":[\"switchboard\"],\"client_id\":\"bench-client\",\"exp\":%lld,\"ext\":{},\"iat\":%lld,"
             "\"iss\":\"http://127.0.0.1:4444/\",\"jti\":\"3f1e8a52-7c1d-4b8e-9d1a-0c5b2f7e6a91\",\"nbf\":%lld,"
             "\"scp\":[\"switchboard:admin\",\"switchboard:read\"],\"sub\":\"bench-client\"}",
             (long long)time(NULL) + 3600, (long long)time(NULL), (long long)time(NULL));
    if (!jwtmint_token(header, claims, k, NULL, out, cap))
        exit(1);
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
    char rj[2048], ej[512], doc[3000];
    if (!jwtmint_jwk(rsa, "r", "", rj, sizeof rj) || !jwtmint_jwk(ec, "e", "", ej, sizeof ej))
        return 1;
    snprintf(doc, sizeof doc, "{\"keys\":[%s,%s]}", rj, ej);
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
    char rs[4096], es[4096];
    make_token(rsa, "RS256", "r", rs, sizeof rs);
    make_token(ec, "ES256", "e", es, sizeof es);
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
