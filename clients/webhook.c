/* webhook.c - see webhook.h. */
#include "webhook.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool hmac_hex(const char *key, const void *data, size_t len, char out[WEBHOOK_SECRET_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (HMAC(EVP_sha256(), key, (int)strlen(key), data, len, mac, &maclen) == NULL || maclen != 32)
        return false;
    for (unsigned i = 0; i < maclen; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    return true;
}

bool webhook_key_secret(const char *signing_secret, const char *principal, char out[WEBHOOK_SECRET_LEN + 1])
{
    return hmac_hex(signing_secret, principal, strlen(principal), out);
}

bool webhook_signature(const char *secret, long long t, const char *body, size_t len, char *out, size_t cap)
{
    char ts[24], mac[WEBHOOK_SECRET_LEN + 1];
    int n = snprintf(ts, sizeof ts, "%lld.", t);
    char *data = malloc((size_t)n + len);
    if (data == NULL)
        return false;
    memcpy(data, ts, (size_t)n);
    memcpy(data + n, body, len);
    bool ok = hmac_hex(secret, data, (size_t)n + len, mac);
    free(data);
    return ok && snprintf(out, cap, "t=%lld,v1=%s", t, mac) < (int)cap;
}
