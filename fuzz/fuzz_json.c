/* Fuzz target: request bodies. Every byte a client sends to a JSON route
 * goes through json_parse_strict, then json_check_object against the
 * route's fields; here against the field lists of several routes (picked
 * by the first byte), so strings, integers, tokens, objects and arrays all
 * meet hostile input. Must never crash, leak or read out of bounds, and
 * an accepted document must be one cJSON prints back as valid UTF-8.
 * Every parsed document must also print the same through json_print as
 * through cJSON_PrintUnformatted (json_print is what the services use). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "notify.h"

static const struct json_field message_fields[] = {
    {"body", JSON_K_STRING, true, 1, 10000},
};
static const struct json_field assign_fields[] = {
    {"userId", JSON_K_INT, true, 1, (INT64_C(1) << 53) - 1},
    {"refId", JSON_K_TOKEN, true, 1, 64},
    {"phoneNumber", JSON_K_STRING, true, 9, 16},
};
static const struct json_field notify_fields[] = {
    {"channel", JSON_K_STRING, true, 1, 8},
    {"to", JSON_K_BYTES, true, 1, NOTE_TO_MAX},
    {"flag", JSON_K_BOOL, false, 0, 0},
    {"payload", JSON_K_STRING, true, 0, NOTE_BODY_MAX},
    {"sms", JSON_K_OBJECT, false, 0, 0},
    {"items", JSON_K_ARRAY, false, 0, 5},
};

struct spec {
    const struct json_field *fields;
    size_t n;
};

static const struct spec specs[] = {
    {message_fields, sizeof message_fields / sizeof message_fields[0]},
    {assign_fields, sizeof assign_fields / sizeof assign_fields[0]},
    {notify_fields, sizeof notify_fields / sizeof notify_fields[0]},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const struct spec *sp = &specs[data[0] % 3];
    char err[ERRBUF_LEN];
    cJSON *root = json_parse_strict((const char *)data + 1, size - 1, err, sizeof err);
    if (root == NULL)
        return 0;
    char *mine = json_print(root), *theirs = cJSON_PrintUnformatted(root);
    if (mine == NULL || theirs == NULL || strcmp(mine, theirs) != 0)
        abort();
    free(mine);
    free(theirs);
    if (json_check_object(root, sp->fields, sp->n, err, sizeof err)) {
        char *text = cJSON_PrintUnformatted(root);
        if (text == NULL || !json_utf8_valid(text, strlen(text)))
            abort(); /* accepted input must come back out as valid UTF-8 */
        free(text);
    }
    cJSON_Delete(root);
    return 0;
}
