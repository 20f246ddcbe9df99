/* Fuzz target: job decoding. Any producer may put any bytes on a topic;
 * envelope_decode must refuse what is not a valid job (with a reason, for
 * the dead-letter header) and never crash; a decoded job must encode back
 * and decode again to the same type and key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ERRBUF_LEN];
    struct envelope env;
    if (!envelope_decode(&env, (const char *)data, size, err, sizeof err)) {
        if (err[0] == '\0')
            abort(); /* a refusal always says why */
        return 0;
    }
    char *again = envelope_encode(env.type, env.key, env.request_id, env.created_at,
                                  cJSON_Duplicate(env.payload, 1), err, sizeof err);
    if (again == NULL)
        abort();
    struct envelope env2;
    if (!envelope_decode(&env2, again, strlen(again), err, sizeof err) ||
        strcmp(env.type, env2.type) != 0 || strcmp(env.key, env2.key) != 0)
        abort();
    envelope_clear(&env2);
    free(again);
    envelope_clear(&env);
    return 0;
}
