/* OTLP export bodies (clients/otlp.c), read back field by field: the
 * protobuf one by a wire-format reader written here from the protobuf
 * encoding rules and opentelemetry-proto's field numbers, the JSON one
 * with cJSON. A batch of 512 spans makes every nested length need more
 * than one varint byte (the outer ones three), which a handful of spans
 * in the Jaeger test never does; a value that is not UTF-8 must come out
 * as UTF-8 (Go's protobuf decoders refuse the whole request otherwise). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "otlp.h"
#include "util.h"

#define NSPANS 512

static void make_spans(struct trace_span *s, size_t n)
{
    memset(s, 0, n * sizeof *s);
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 16; k++)
            s[i].ctx.trace_id[k] = (uint8_t)(i * 7 + k + 1);
        for (int k = 0; k < 8; k++)
            s[i].ctx.span_id[k] = (uint8_t)(i * 3 + k + 1);
        if (i % 3) /* every third a root */
            for (int k = 0; k < 8; k++)
                s[i].parent[k] = (uint8_t)(i + k + 1);
        s[i].ctx.valid = true;
        s[i].ctx.flags = 1;
        s[i].name = i % 2 ? "message_create" : "persister";
        s[i].kind = (enum trace_kind)(1 + i % 5);
        s[i].start_ns = 1764900000000000000 + (int64_t)i * 1000;
        s[i].end_ns = s[i].start_ns + 12345 + (int64_t)i;
        s[i].error = i % 4 == 0;
        s[i].nattrs = (int)(i % (TRACE_ATTRS + 1));
        for (int a = 0; a < s[i].nattrs; a++) {
            s[i].attr_key[a] = a % 2 ? "job.type" : "request_id";
            snprintf(s[i].attr_val[a], sizeof s[i].attr_val[a], "v%zu-%d", i, a);
        }
    }
    /* Not UTF-8: a lone continuation byte, and a character cut short. */
    s[5].nattrs = 2;
    s[5].attr_key[1] = "request_id";
    memcpy(s[5].attr_val[1], "bad\x80id\xc3", 8);
}

/* -- a protobuf wire reader ------------------------------------------- */

struct pb {
    const uint8_t *p, *end;
};

static uint64_t rd_varint(struct pb *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        assert_true(r->p < r->end);
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return v;
    }
    fail_msg("varint over 10 bytes");
    return 0;
}

enum { VARINT = 0, I64 = 1, LEN = 2 };

/* The next field: its number, and for a LEN field its body (the reader
 * moves past it); for VARINT and I64 *v. want: the wire type the field
 * must have. */
static unsigned rd_field(struct pb *r, struct pb *body, uint64_t *v, unsigned want)
{
    uint64_t tag = rd_varint(r);
    assert_int_equal(tag & 7, want);
    switch (tag & 7) {
    case 0:
        *v = rd_varint(r);
        break;
    case 1:
        assert_true(r->end - r->p >= 8);
        *v = 0;
        for (int i = 0; i < 8; i++)
            *v |= (uint64_t)r->p[i] << (8 * i);
        r->p += 8;
        break;
    case 2: {
        uint64_t len = rd_varint(r);
        assert_true(len <= (uint64_t)(r->end - r->p)); /* every length inside its parent */
        body->p = r->p;
        body->end = r->p + len;
        r->p += len;
        break;
    }
    default:
        fail_msg("wire type %u", (unsigned)(tag & 7));
    }
    return (unsigned)(tag >> 3);
}

static char *rd_string(const struct pb *b)
{
    size_t len = (size_t)(b->end - b->p);
    assert_true(json_utf8_valid((const char *)b->p, len));
    char *s = malloc(len + 1);
    memcpy(s, b->p, len);
    s[len] = '\0';
    return s;
}

/* A KeyValue with a string value, into key and val (freed by the caller). */
static void rd_kv(struct pb kv, char **key, char **val)
{
    *key = *val = NULL;
    struct pb f;
    uint64_t v;
    while (kv.p < kv.end) {
        unsigned n = rd_field(&kv, &f, &v, LEN);
        if (n == 1) {
            *key = rd_string(&f);
        } else {
            assert_int_equal(n, 2);
            struct pb s;
            assert_int_equal(rd_field(&f, &s, &v, LEN), 1); /* AnyValue.string_value */
            *val = rd_string(&s);
            assert_true(f.p == f.end);
        }
    }
    assert_non_null(*key);
    assert_non_null(*val);
}

static void check_span(struct pb sp, const struct trace_span *want)
{
    struct pb f;
    uint64_t v;
    int attrs = 0;
    bool parent = false, status = false, name = false;
    uint64_t kind = 0, start = 0, end = 0;
    while (sp.p < sp.end) {
        /* The wire type each Span field must have: kind a varint, the
         * times fixed64, the rest length-delimited. */
        unsigned wire = (sp.p[0] >> 3) == 6 ? VARINT : (sp.p[0] >> 3) == 7 || (sp.p[0] >> 3) == 8 ? I64 : LEN;
        unsigned n = rd_field(&sp, &f, &v, wire);
        switch (n) {
        case 1:
            assert_int_equal(f.end - f.p, 16);
            assert_memory_equal(f.p, want->ctx.trace_id, 16);
            break;
        case 2:
            assert_int_equal(f.end - f.p, 8);
            assert_memory_equal(f.p, want->ctx.span_id, 8);
            break;
        case 4:
            assert_int_equal(f.end - f.p, 8);
            assert_memory_equal(f.p, want->parent, 8);
            parent = true;
            break;
        case 5: {
            char *s = rd_string(&f);
            assert_string_equal(s, want->name);
            free(s);
            name = true;
            break;
        }
        case 6: kind = v; break;
        case 7: start = v; break;
        case 8: end = v; break;
        case 9: {
            char *key, *val;
            rd_kv(f, &key, &val);
            assert_string_equal(key, want->attr_key[attrs]);
            if (json_utf8_valid(want->attr_val[attrs], strlen(want->attr_val[attrs])))
                assert_string_equal(val, want->attr_val[attrs]);
            else
                assert_string_equal(val, "bad\xef\xbf\xbdid\xef\xbf\xbd");
            attrs++;
            free(key);
            free(val);
            break;
        }
        case 15: {
            struct pb c;
            assert_int_equal(rd_field(&f, &c, &v, VARINT), 3);
            assert_int_equal(v, 2); /* ERROR */
            status = true;
            break;
        }
        default:
            fail_msg("span field %u", n);
        }
    }
    assert_true(name);
    assert_int_equal(parent, !!(want->parent[0] | want->parent[1])); /* roots have none */
    assert_int_equal(kind, want->kind);
    assert_int_equal(start, (uint64_t)want->start_ns);
    assert_int_equal(end, (uint64_t)want->end_ns);
    assert_int_equal(attrs, want->nattrs);
    assert_int_equal(status, want->error);
}

static void protobuf_reads_back(void **state)
{
    (void)state;
    static struct trace_span spans[NSPANS];
    make_spans(spans, NSPANS);
    struct strbuf b = {0};
    const struct otlp_resource res = {.service = "switchboard-test", .host = "h\xff", .pid = "42"};
    otlp_encode(&b, OTLP_PROTOBUF, &res, spans, NSPANS);
    assert_false(strbuf_failed(&b));
    assert_true(b.len > 3 * 16384); /* the outer lengths take three varint bytes */

    struct pb req = {(const uint8_t *)b.p, (const uint8_t *)b.p + b.len}, rs, f, ss, g;
    uint64_t v;
    assert_int_equal(rd_field(&req, &rs, &v, LEN), 1); /* one ResourceSpans, the whole body */
    assert_true(req.p == req.end);

    assert_int_equal(rd_field(&rs, &f, &v, LEN), 1); /* Resource */
    const char *want_keys[] = {"service.name", "host.name", "process.pid"};
    const char *want_vals[] = {"switchboard-test", "h\xef\xbf\xbd", "42"};
    for (int i = 0; i < 3; i++) {
        struct pb kv;
        char *key, *val;
        assert_int_equal(rd_field(&f, &kv, &v, LEN), 1);
        rd_kv(kv, &key, &val);
        assert_string_equal(key, want_keys[i]);
        assert_string_equal(val, want_vals[i]);
        free(key);
        free(val);
    }
    assert_true(f.p == f.end);

    assert_int_equal(rd_field(&rs, &ss, &v, LEN), 2); /* ScopeSpans */
    assert_true(rs.p == rs.end);
    assert_int_equal(rd_field(&ss, &f, &v, LEN), 1); /* InstrumentationScope */
    assert_int_equal(rd_field(&f, &g, &v, LEN), 1);
    char *scope = rd_string(&g);
    assert_string_equal(scope, "switchboard");
    free(scope);
    size_t n = 0;
    while (ss.p < ss.end) {
        assert_int_equal(rd_field(&ss, &f, &v, LEN), 2);
        assert_true(n < NSPANS);
        check_span(f, &spans[n++]);
    }
    assert_int_equal(n, NSPANS);
    strbuf_free(&b);
}

static void json_reads_back(void **state)
{
    (void)state;
    static struct trace_span spans[NSPANS];
    make_spans(spans, NSPANS);
    struct strbuf b = {0};
    const struct otlp_resource res = {.service = "switchboard-test", .host = "h", .pid = "42"};
    otlp_encode(&b, OTLP_JSON, &res, spans, NSPANS);
    assert_false(strbuf_failed(&b));
    assert_true(json_utf8_valid(b.p, b.len));
    cJSON *doc = cJSON_Parse(b.p);
    assert_non_null(doc);
    cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "resourceSpans"), 0);
    cJSON *attrs = cJSON_GetObjectItem(cJSON_GetObjectItem(rs, "resource"), "attributes");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(attrs, 0), "value"),
                                            "stringValue")->valuestring,
                        "switchboard-test");
    cJSON *list = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0), "spans");
    assert_int_equal(cJSON_GetArraySize(list), NSPANS);
    for (int i = 0; i < NSPANS; i++) {
        const struct trace_span *w = &spans[i];
        cJSON *s = cJSON_GetArrayItem(list, i);
        char hex[33];
        sb_hex(w->ctx.trace_id, 16, hex);
        assert_string_equal(cJSON_GetObjectItem(s, "traceId")->valuestring, hex);
        sb_hex(w->ctx.span_id, 8, hex);
        assert_string_equal(cJSON_GetObjectItem(s, "spanId")->valuestring, hex);
        cJSON *parent = cJSON_GetObjectItem(s, "parentSpanId");
        if (i % 3) {
            sb_hex(w->parent, 8, hex);
            assert_string_equal(parent->valuestring, hex);
        } else {
            assert_null(parent);
        }
        assert_string_equal(cJSON_GetObjectItem(s, "name")->valuestring, w->name);
        assert_int_equal(cJSON_GetObjectItem(s, "kind")->valueint, w->kind);
        char ns[24];
        snprintf(ns, sizeof ns, "%lld", (long long)w->start_ns);
        assert_string_equal(cJSON_GetObjectItem(s, "startTimeUnixNano")->valuestring, ns);
        snprintf(ns, sizeof ns, "%lld", (long long)w->end_ns);
        assert_string_equal(cJSON_GetObjectItem(s, "endTimeUnixNano")->valuestring, ns);
        cJSON *sattrs = cJSON_GetObjectItem(s, "attributes");
        assert_int_equal(cJSON_GetArraySize(sattrs), w->nattrs);
        for (int a = 0; a < w->nattrs; a++) {
            cJSON *kv = cJSON_GetArrayItem(sattrs, a);
            assert_string_equal(cJSON_GetObjectItem(kv, "key")->valuestring, w->attr_key[a]);
            const char *val = cJSON_GetObjectItem(cJSON_GetObjectItem(kv, "value"), "stringValue")->valuestring;
            if (json_utf8_valid(w->attr_val[a], strlen(w->attr_val[a])))
                assert_string_equal(val, w->attr_val[a]);
            else
                assert_string_equal(val, "bad\xef\xbf\xbdid\xef\xbf\xbd");
        }
        assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "status"), "code")->valueint,
                         w->error ? 2 : 0);
    }
    cJSON_Delete(doc);
    strbuf_free(&b);
}

static void formats(void **state)
{
    (void)state;
    enum otlp_format f;
    assert_true(otlp_format_parse("http/protobuf", &f));
    assert_int_equal(f, OTLP_PROTOBUF);
    assert_string_equal(otlp_content_type(f), "application/x-protobuf");
    assert_true(otlp_format_parse("http/json", &f));
    assert_int_equal(f, OTLP_JSON);
    assert_string_equal(otlp_content_type(f), "application/json");
    assert_true(otlp_format_parse(NULL, &f)); /* unset: the default */
    assert_int_equal(f, OTLP_PROTOBUF);
    assert_true(otlp_format_parse("", &f));
    assert_int_equal(f, OTLP_PROTOBUF);
    assert_false(otlp_format_parse("grpc", &f));
    assert_false(otlp_format_parse("HTTP/JSON", &f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(protobuf_reads_back),
        cmocka_unit_test(json_reads_back),
        cmocka_unit_test(formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
