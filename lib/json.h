/* json.h - strict JSON input: well-formed UTF-8, bounded nesting, no NULs,
 * declared fields only, each of the declared type and size.
 *
 * cJSON alone accepts invalid UTF-8, silently truncates strings at "\u0000"
 * and keeps duplicate keys; every byte from a client or another producer
 * goes through json_parse_strict first, then json_check_object. */
#ifndef SB_JSON_H
#define SB_JSON_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "util.h"

#define JSON_MAX_DEPTH 32
/* The largest integer a JSON number is taken as exactly (2^53 - 1). */
#define JSON_INT_EXACT_MAX 9007199254740991.0

struct strbuf;

/* JSON_K_TOKEN: a string of base64url characters [A-Za-z0-9_-] only.
 * JSON_K_BYTES: a string whose bounds count UTF-8 bytes, for values kept
 * in fixed buffers or keys (idempotency keys, recipients): what passes is
 * stored whole, never cut inside a character.
 * JSON_K_DIGITS: a string, or a non-negative integer standing for its
 * decimal digits (an area code sent as 613 or "613"); read it with
 * json_digits. */
enum json_kind {
    JSON_K_STRING,
    JSON_K_TOKEN,
    JSON_K_INT,
    JSON_K_BOOL,
    JSON_K_OBJECT,
    JSON_K_ARRAY,
    JSON_K_BYTES,
    JSON_K_DIGITS
};

struct json_field {
    const char *name;
    enum json_kind kind;
    bool required;
    int64_t min; /* strings: code points (JSON_K_BYTES: bytes); ints: value; arrays: items */
    int64_t max;
};

/* True if buf[0..len) is valid UTF-8 (no overlongs, no surrogates). */
bool json_utf8_valid(const char *buf, size_t len);
/* Length of the valid UTF-8 character at p (NUL-terminated), 0 if p
 * does not start one (or is at the NUL). */
size_t json_utf8_seq(const char *p);
/* Drops an incomplete UTF-8 character at the end of s (a string cut by
 * a fixed buffer), so that a cut falls between characters. */
void json_utf8_trim(char *s);
/* Number of code points in a valid UTF-8 string. */
size_t json_utf8_len(const char *s);

/* Parses buf (len bytes, need not be NUL-terminated). */
cJSON *json_parse_strict(const char *buf, size_t len, char *errbuf, size_t errlen);

/* The first JSON document of buf (after any whitespace), with *end set
 * just past it; NULL if it does not parse or breaks the nesting or NUL
 * rules. For bodies of several documents; the caller checks the UTF-8 of
 * the whole body first. */
cJSON *json_parse_strict_prefix(const char *buf, size_t len, const char **end);

/* Checks obj is an object holding exactly the declared fields (no unknown,
 * no duplicates), required ones present, each of its kind and bounds. The
 * message names the offending field. */
bool json_check_object(const cJSON *obj, const struct json_field *fields, size_t nfields,
                       char *errbuf, size_t errlen) SB_NODISCARD;

/* Compact JSON text of item (malloc'd; NULL when out of memory or item
 * is invalid): the same text as cJSON_PrintUnformatted, written without
 * its per-number sprintf and sscanf, which cost the dispatcher ~4 % of its
 * CPU on message create (envelope and reply). */
char *json_print(const cJSON *item);
/* The same text appended to b (false: item is invalid). */
bool json_append(struct strbuf *b, const cJSON *item);
/* s (NULL: "") as a JSON string, escaped as cJSON escapes it. */
void json_append_string(struct strbuf *b, const char *s);

/* The API's error body, {"error":{"code","message"}} (every HTTP answer
 * that is an error, from the dispatcher and the workers' status port). */
cJSON *json_error_body(const char *code, const char *message);

/* item is a number holding an integer exactly (|v| <= JSON_INT_EXACT_MAX:
 * beyond, the value may already be rounded); *out gets it. */
bool json_exact_int(const cJSON *item, int64_t *out);

/* Typed getters for fields already checked; defaults when absent. */
const char *json_str(const cJSON *obj, const char *name, const char *def);
int64_t json_i64(const cJSON *obj, const char *name, int64_t def);
/* A JSON_K_DIGITS field as text into out (cap bytes): the string, or the
 * integer's digits; def when absent. */
const char *json_digits(const cJSON *obj, const char *name, char *out, size_t cap, const char *def);

#endif
