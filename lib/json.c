/* json.c - see json.h. */
#include "json.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "strbuf.h"

bool json_utf8_valid(const char *buf, size_t len)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

size_t json_utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* One pass over the raw text before cJSON sees it: nesting depth, raw NUL
 * bytes, and "\u0000" escapes (which cJSON would turn into a truncation). */
static bool prescan(const char *buf, size_t len, char *errbuf, size_t errlen)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (c == '\0') {
            sb_errf(errbuf, errlen, "NUL byte in body at offset %zu", i);
            return false;
        }
        if (in_str) {
            if ((unsigned char)c < 0x20) {
                sb_errf(errbuf, errlen, "control character in a JSON string at offset %zu (escape it)", i);
                return false;
            }
            if (c == '\\') {
                if (i + 5 < len && buf[i + 1] == 'u' && memcmp(buf + i + 2, "0000", 4) == 0) {
                    sb_errf(errbuf, errlen, "\\u0000 is not allowed in strings");
                    return false;
                }
                i++;
            } else if (c == '"') {
                in_str = false;
            }
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > JSON_MAX_DEPTH) {
                sb_errf(errbuf, errlen, "JSON nested deeper than %d levels", JSON_MAX_DEPTH);
                return false;
            }
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return true;
}

cJSON *json_parse_strict(const char *buf, size_t len, char *errbuf, size_t errlen)
{
    if (len == 0) {
        sb_errf(errbuf, errlen, "empty body; a JSON document is required");
        return NULL;
    }
    if (!json_utf8_valid(buf, len)) {
        sb_errf(errbuf, errlen, "body is not valid UTF-8");
        return NULL;
    }
    if (!prescan(buf, len, errbuf, errlen))
        return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
    if (root == NULL) {
        size_t off = end ? (size_t)(end - buf) : 0;
        if (off > len)
            off = len;
        sb_errf(errbuf, errlen, "malformed JSON near offset %zu", off);
        return NULL;
    }
    /* Only whitespace may follow the document. */
    for (size_t i = (size_t)(end - buf); i < len; i++) {
        if (buf[i] != ' ' && buf[i] != '\n' && buf[i] != '\r' && buf[i] != '\t') {
            cJSON_Delete(root);
            sb_errf(errbuf, errlen, "trailing data after JSON at offset %zu", i);
            return NULL;
        }
    }
    return root;
}

cJSON *json_parse_strict_prefix(const char *buf, size_t len, const char **end)
{
    const char *e = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &e, false);
    char ignore[8];
    if (root == NULL || e == NULL || !prescan(buf, (size_t)(e - buf), ignore, sizeof ignore)) {
        cJSON_Delete(root);
        return NULL;
    }
    *end = e;
    return root;
}

static const char *kind_name(enum json_kind k)
{
    switch (k) {
    case JSON_K_STRING: return "a string";
    case JSON_K_TOKEN: return "a token of letters, digits, '-' and '_'";
    case JSON_K_INT: return "an integer";
    case JSON_K_BOOL: return "a boolean";
    case JSON_K_OBJECT: return "an object";
    case JSON_K_ARRAY: return "an array";
    case JSON_K_BYTES: return "a string";
    case JSON_K_DIGITS: return "a string or a non-negative integer";
    }
    return "?";
}

/* n (characters, bytes or digits: unit) within the field's bounds. */
static bool length_ok(const struct json_field *f, int64_t n, const char *unit, char *errbuf, size_t errlen)
{
    if (n >= f->min && n <= f->max)
        return true;
    sb_errf(errbuf, errlen, "field '%s' must be %lld to %lld %s long", f->name, (long long)f->min,
            (long long)f->max, unit);
    return false;
}

static bool check_field(const cJSON *item, const struct json_field *f, char *errbuf,
                        size_t errlen)
{
    switch (f->kind) {
    case JSON_K_TOKEN:
        if (!cJSON_IsString(item) || !sb_token_valid(item->valuestring, 0, SIZE_MAX))
            break;
        /* the length rules of strings apply too */
        __attribute__((fallthrough));
    case JSON_K_STRING:
        if (!cJSON_IsString(item))
            break;
        return length_ok(f, (int64_t)json_utf8_len(item->valuestring), "characters", errbuf, errlen);
    case JSON_K_BYTES:
        if (!cJSON_IsString(item))
            break;
        return length_ok(f, (int64_t)strlen(item->valuestring), "bytes (UTF-8)", errbuf, errlen);
    case JSON_K_DIGITS: {
        if (cJSON_IsString(item))
            return length_ok(f, (int64_t)json_utf8_len(item->valuestring), "characters", errbuf, errlen);
        if (!cJSON_IsNumber(item))
            break;
        /* An integer: its decimal digits obey the string's bounds. */
        double v = item->valuedouble;
        if (!isfinite(v) || floor(v) != v || v < 0 || v >= 1e15) {
            sb_errf(errbuf, errlen, "field '%s' must be a string or a non-negative integer", f->name);
            return false;
        }
        char digits[24];
        return length_ok(f, snprintf(digits, sizeof digits, "%lld", (long long)v), "digits", errbuf, errlen);
    }
    case JSON_K_INT: {
        if (!cJSON_IsNumber(item))
            break;
        /* Beyond 2^53 a double no longer holds every integer: the value
         * may already be rounded, so it is refused, never changed. */
        int64_t v;
        if (!json_exact_int(item, &v) || v < f->min || v > f->max) {
            sb_errf(errbuf, errlen, "field '%s' must be an integer from %lld to %lld", f->name,
                    (long long)f->min, (long long)f->max);
            return false;
        }
        return true;
    }
    case JSON_K_BOOL:
        if (cJSON_IsBool(item))
            return true;
        break;
    case JSON_K_OBJECT:
        if (cJSON_IsObject(item))
            return true;
        break;
    case JSON_K_ARRAY: {
        if (!cJSON_IsArray(item))
            break;
        int64_t n = cJSON_GetArraySize(item);
        if (n < f->min || n > f->max) {
            sb_errf(errbuf, errlen, "field '%s' must hold %lld to %lld items", f->name,
                    (long long)f->min, (long long)f->max);
            return false;
        }
        return true;
    }
    }
    sb_errf(errbuf, errlen, "field '%s' must be %s", f->name, kind_name(f->kind));
    return false;
}

bool json_check_object(const cJSON *obj, const struct json_field *fields, size_t nfields,
                       char *errbuf, size_t errlen)
{
    if (!cJSON_IsObject(obj)) {
        sb_errf(errbuf, errlen, "a JSON object is required");
        return false;
    }
    /* One pass over the members: each is matched to its field once, and a
     * field matched twice is a duplicate member (every job is checked this
     * way; the pairwise duplicate scan and the lookups of required fields
     * were most of a worker's string comparisons). */
    uint64_t seen = 0;
    if (nfields > 64) {
        sb_errf(errbuf, errlen, "internal: more than 64 fields in one object schema");
        return false;
    }
    for (const cJSON *it = obj->child; it; it = it->next) {
        size_t i = 0;
        while (i < nfields && strcmp(fields[i].name, it->string) != 0)
            i++;
        if (i == nfields) {
            sb_errf(errbuf, errlen, "unknown field '%s'", it->string);
            return false;
        }
        if (seen & (UINT64_C(1) << i)) {
            sb_errf(errbuf, errlen, "duplicate field '%s'", it->string);
            return false;
        }
        seen |= UINT64_C(1) << i;
        if (!check_field(it, &fields[i], errbuf, errlen))
            return false;
    }
    for (size_t i = 0; i < nfields; i++)
        if (fields[i].required && !(seen & (UINT64_C(1) << i))) {
            sb_errf(errbuf, errlen, "missing field '%s'", fields[i].name);
            return false;
        }
    return true;
}

bool json_exact_int(const cJSON *item, int64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double v = item->valuedouble;
    if (!isfinite(v) || floor(v) != v || fabs(v) > JSON_INT_EXACT_MAX)
        return false;
    *out = (int64_t)v; /* after the range check: exact */
    return true;
}

const char *json_str(const cJSON *obj, const char *name, const char *def)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(it) ? it->valuestring : def;
}

int64_t json_i64(const cJSON *obj, const char *name, int64_t def)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(it) ? (int64_t)it->valuedouble : def;
}

const char *json_digits(const cJSON *obj, const char *name, char *out, size_t cap, const char *def)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsString(it))
        return it->valuestring;
    if (!cJSON_IsNumber(it) || cap == 0)
        return def;
    snprintf(out, cap, "%lld", (long long)it->valuedouble);
    return out;
}

/* ---- output ------------------------------------------------------------ */

void json_utf8_trim(char *s)
{
    size_t n = strlen(s), start = n;
    /* The last character starts at most 3 bytes before the end. */
    while (start > 0 && n - start < 4 && ((unsigned char)s[start - 1] & 0xc0) == 0x80)
        start--;
    if (start > 0 && (unsigned char)s[start - 1] >= 0xc0) {
        start--;
        if (json_utf8_seq(s + start) != n - start)
            s[start] = '\0';
    }
}

size_t json_utf8_seq(const char *p)
{
    unsigned char c = (unsigned char)p[0];
    if (c < 0x80)
        return c ? 1 : 0;
    size_t need = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    for (size_t i = 1; i < need; i++)
        if (((unsigned char)p[i] & 0xc0) != 0x80)
            return 0; /* also stops at the NUL */
    return need && json_utf8_valid(p, need) ? need : 0;
}

void json_append_string(struct strbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    strbuf_append_lit(b, "\"");
    const char *run = s ? s : "";
    const char *p = run;
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x80) {
            /* Only valid UTF-8 goes out: a byte that does not start a
             * whole sequence (a message cut mid-character, raw request
             * bytes echoed) becomes U+FFFD, so every answer parses. */
            size_t k = json_utf8_seq(p);
            if (k > 0) {
                p += k - 1;
                continue;
            }
            strbuf_append(b, run, (size_t)(p - run));
            strbuf_append_lit(b, "\xef\xbf\xbd");
            run = p + 1;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        char esc[6] = {'\\', (char)c, '0', '0', hex[c >> 4], hex[c & 15]};
        size_t n = 2;
        switch (c) {
        case '"': case '\\': break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: esc[1] = 'u'; n = 6; break;
        }
        strbuf_append(b, run, (size_t)(p - run));
        strbuf_append(b, esc, n);
        run = p + 1;
    }
    strbuf_append(b, run, (size_t)(p - run));
    strbuf_append_lit(b, "\"");
}

/* cJSON's rules: not finite is null; a whole number below 1e15 (where
 * %1.15g would print every digit anyway; -0 excepted, which it prints
 * "-0") is written as an integer without printf; anything else is %1.15g,
 * or %1.17g when 15 digits do not read back as (nearly) the same double. */
static void print_number(struct strbuf *b, double d)
{
    if (!isfinite(d)) {
        strbuf_append_lit(b, "null");
        return;
    }
    if (fabs(d) < 1e15 && d == (double)(int64_t)d && !(d == 0 && signbit(d))) {
        strbuf_append_i64(b, (int64_t)d);
        return;
    }
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%1.15g", d);
    double back = strtod(tmp, NULL);
    double max = fabs(back) > fabs(d) ? fabs(back) : fabs(d);
    if (!(fabs(back - d) <= max * DBL_EPSILON))
        n = snprintf(tmp, sizeof tmp, "%1.17g", d);
    strbuf_append(b, tmp, (size_t)n);
}

static bool print_value(struct strbuf *b, const cJSON *v)
{
    if (cJSON_IsNull(v)) {
        strbuf_append_lit(b, "null");
    } else if (cJSON_IsFalse(v)) {
        strbuf_append_lit(b, "false");
    } else if (cJSON_IsTrue(v)) {
        strbuf_append_lit(b, "true");
    } else if (cJSON_IsNumber(v)) {
        print_number(b, v->valuedouble);
    } else if (cJSON_IsString(v)) {
        json_append_string(b, v->valuestring);
    } else if (cJSON_IsRaw(v)) {
        if (v->valuestring == NULL)
            return false;
        strbuf_append(b, v->valuestring, strlen(v->valuestring));
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool obj = cJSON_IsObject(v);
        strbuf_append(b, obj ? "{" : "[", 1);
        for (const cJSON *c = v->child; c != NULL; c = c->next) {
            if (c != v->child)
                strbuf_append_lit(b, ",");
            if (obj) {
                json_append_string(b, c->string);
                strbuf_append_lit(b, ":");
            }
            if (!print_value(b, c))
                return false;
        }
        strbuf_append(b, obj ? "}" : "]", 1);
    } else {
        return false;
    }
    return true;
}

bool json_append(struct strbuf *b, const cJSON *item)
{
    return item != NULL && print_value(b, item);
}

char *json_print(const cJSON *item)
{
    struct strbuf b = {0};
    if (!json_append(&b, item)) {
        strbuf_free(&b);
        return NULL;
    }
    return strbuf_take(&b); /* NULL if appending ran out of memory */
}

cJSON *json_error_body(const char *code, const char *message)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", message);
    return root;
}
