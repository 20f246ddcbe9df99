/* otlp.c - see otlp.h. */
#include "otlp.h"

#include <stdint.h>
#include <string.h>

#include "json.h"
#include "util.h"

const char *otlp_content_type(enum otlp_format f)
{
    return f == OTLP_JSON ? "application/json" : "application/x-protobuf";
}

bool otlp_format_parse(const char *s, enum otlp_format *out)
{
    if (s == NULL || *s == '\0' || strcmp(s, "http/protobuf") == 0) /* unset: the default */
        *out = OTLP_PROTOBUF;
    else if (strcmp(s, "http/json") == 0)
        *out = OTLP_JSON;
    else
        return false;
    return true;
}

static const uint8_t no_parent[8];

/* -- protobuf ------------------------------------------------------------ */

/* Field numbers of opentelemetry-proto (collector/trace/v1, trace/v1,
 * resource/v1, common/v1) that we write. */
enum {
    REQ_RESOURCE_SPANS = 1,
    RS_RESOURCE = 1, RS_SCOPE_SPANS = 2,
    RESOURCE_ATTRIBUTES = 1,
    SS_SCOPE = 1, SS_SPANS = 2,
    SCOPE_NAME = 1,
    SPAN_TRACE_ID = 1, SPAN_SPAN_ID = 2, SPAN_PARENT_SPAN_ID = 4, SPAN_NAME = 5, SPAN_KIND = 6,
    SPAN_START = 7, SPAN_END = 8, SPAN_ATTRIBUTES = 9, SPAN_STATUS = 15,
    STATUS_CODE = 3,
    KV_KEY = 1, KV_VALUE = 2,
    ANY_STRING = 1,
};
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };

/* A nested message's length is written in front of it once it is known:
 * pb_open leaves room for the longest length we allow, pb_close moves the
 * body back over what the real length did not need. */
#define PB_LEN_ROOM 4 /* a varint of 4 bytes holds up to 256 MiB */

/* v as a protobuf varint into out (room for 10 bytes); its length. */
static size_t varint_put(char *out, uint64_t v)
{
    size_t n = 0;
    do {
        out[n] = (char)(v & 0x7f);
        v >>= 7;
        out[n++] |= v ? (char)0x80 : 0;
    } while (v);
    return n;
}

static void pb_varint(struct strbuf *b, uint64_t v)
{
    char out[10];
    strbuf_append(b, out, varint_put(out, v));
}

static void pb_tag(struct strbuf *b, unsigned field, unsigned wire)
{
    pb_varint(b, (uint64_t)field << 3 | wire);
}

static void pb_bytes(struct strbuf *b, unsigned field, const void *p, size_t len)
{
    pb_tag(b, field, WT_LEN);
    pb_varint(b, len);
    strbuf_append(b, p, len);
}

/* A string field: protobuf's strings must be UTF-8 (Go's decoders refuse
 * the whole request otherwise), and a value may be raw bytes a client
 * sent or one cut at its slot's size: what is not whole UTF-8 becomes
 * U+FFFD, as in our JSON. */
static void pb_string(struct strbuf *b, unsigned field, const char *s)
{
    s = s ? s : "";
    size_t len = strlen(s);
    if (json_utf8_valid(s, len)) {
        pb_bytes(b, field, s, len);
        return;
    }
    struct strbuf clean = {0};
    for (const char *p = s; *p;) {
        size_t k = json_utf8_seq(p);
        if (k > 0) {
            strbuf_append(&clean, p, k);
            p += k;
        } else {
            strbuf_append_lit(&clean, "\xef\xbf\xbd");
            p++;
        }
    }
    if (strbuf_failed(&clean))
        b->failed = true;
    else
        pb_bytes(b, field, clean.p, clean.len);
    strbuf_free(&clean);
}

static void pb_fixed64(struct strbuf *b, unsigned field, uint64_t v)
{
    char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (char)(v >> (8 * i));
    pb_tag(b, field, WT_I64);
    strbuf_append(b, le, 8);
}

static size_t pb_open(struct strbuf *b, unsigned field)
{
    pb_tag(b, field, WT_LEN);
    strbuf_append(b, "\0\0\0\0", PB_LEN_ROOM);
    return b->len;
}

static void pb_close(struct strbuf *b, size_t body)
{
    if (b->failed)
        return;
    size_t len = b->len - body;
    if (len >= (size_t)1 << (7 * PB_LEN_ROOM)) { /* 256 MiB: ten thousand times a batch of 512 */
        b->failed = true;
        return;
    }
    char v[10];
    size_t n = varint_put(v, len); /* at most PB_LEN_ROOM bytes: checked above */
    char *start = b->p + body - PB_LEN_ROOM;
    memcpy(start, v, n);
    memmove(start + n, b->p + body, b->len - body);
    b->len -= PB_LEN_ROOM - n;
    b->p[b->len] = '\0';
}

static void pb_attr(struct strbuf *b, unsigned field, const char *key, const char *val)
{
    size_t kv = pb_open(b, field);
    pb_string(b, KV_KEY, key);
    size_t any = pb_open(b, KV_VALUE);
    pb_string(b, ANY_STRING, val);
    pb_close(b, any);
    pb_close(b, kv);
}

static void pb_span(struct strbuf *b, const struct trace_span *s)
{
    size_t span = pb_open(b, SS_SPANS);
    pb_bytes(b, SPAN_TRACE_ID, s->ctx.trace_id, 16);
    pb_bytes(b, SPAN_SPAN_ID, s->ctx.span_id, 8);
    if (memcmp(s->parent, no_parent, 8) != 0)
        pb_bytes(b, SPAN_PARENT_SPAN_ID, s->parent, 8);
    pb_string(b, SPAN_NAME, s->name);
    pb_tag(b, SPAN_KIND, WT_VARINT);
    pb_varint(b, (uint64_t)s->kind);
    pb_fixed64(b, SPAN_START, (uint64_t)s->start_ns);
    pb_fixed64(b, SPAN_END, (uint64_t)s->end_ns);
    for (int a = 0; a < s->nattrs; a++)
        pb_attr(b, SPAN_ATTRIBUTES, s->attr_key[a], s->attr_val[a]);
    if (s->error) { /* UNSET is the default: an empty status says it */
        size_t st = pb_open(b, SPAN_STATUS);
        pb_tag(b, STATUS_CODE, WT_VARINT);
        pb_varint(b, 2); /* STATUS_CODE_ERROR */
        pb_close(b, st);
    }
    pb_close(b, span);
}

static void encode_protobuf(struct strbuf *b, const struct otlp_resource *r, const struct trace_span *spans,
                            size_t n)
{
    size_t rs = pb_open(b, REQ_RESOURCE_SPANS);
    size_t res = pb_open(b, RS_RESOURCE);
    pb_attr(b, RESOURCE_ATTRIBUTES, "service.name", r->service);
    pb_attr(b, RESOURCE_ATTRIBUTES, "host.name", r->host);
    pb_attr(b, RESOURCE_ATTRIBUTES, "process.pid", r->pid);
    pb_close(b, res);
    size_t ss = pb_open(b, RS_SCOPE_SPANS);
    size_t scope = pb_open(b, SS_SCOPE);
    pb_string(b, SCOPE_NAME, "switchboard");
    pb_close(b, scope);
    for (size_t i = 0; i < n; i++)
        pb_span(b, &spans[i]);
    pb_close(b, ss);
    pb_close(b, rs);
}

/* -- JSON ---------------------------------------------------------------- */

static void json_attr(struct strbuf *b, const char *key, const char *val)
{
    strbuf_append_lit(b, "{\"key\":\"");
    strbuf_append(b, key, strlen(key)); /* our literals: nothing to escape */
    strbuf_append_lit(b, "\",\"value\":{\"stringValue\":");
    json_append_string(b, val);
    strbuf_append_lit(b, "}}");
}

static void json_hex(struct strbuf *b, const uint8_t *id, size_t len)
{
    char h[33];
    sb_hex(id, len, h);
    strbuf_append(b, h, 2 * len);
}

/* No printf per span: the exporter shares the cores with the loops. */
static void encode_json(struct strbuf *b, const struct otlp_resource *r, const struct trace_span *spans, size_t n)
{
    strbuf_append_lit(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    json_attr(b, "service.name", r->service);
    strbuf_append_lit(b, ",");
    json_attr(b, "host.name", r->host);
    strbuf_append_lit(b, ",");
    json_attr(b, "process.pid", r->pid);
    strbuf_append_lit(b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"switchboard\"},\"spans\":[");
    for (size_t i = 0; i < n; i++) {
        const struct trace_span *s = &spans[i];
        strbuf_append_lit(b, "{\"traceId\":\"");
        json_hex(b, s->ctx.trace_id, 16);
        strbuf_append_lit(b, "\",\"spanId\":\"");
        json_hex(b, s->ctx.span_id, 8);
        if (memcmp(s->parent, no_parent, 8) != 0) {
            strbuf_append_lit(b, "\",\"parentSpanId\":\"");
            json_hex(b, s->parent, 8);
        }
        strbuf_append_lit(b, "\",\"name\":");
        json_append_string(b, s->name);
        strbuf_append_lit(b, ",\"kind\":");
        strbuf_append_i64(b, s->kind);
        strbuf_append_lit(b, ",\"startTimeUnixNano\":\"");
        strbuf_append_i64(b, s->start_ns);
        strbuf_append_lit(b, "\",\"endTimeUnixNano\":\"");
        strbuf_append_i64(b, s->end_ns);
        strbuf_append_lit(b, "\",\"attributes\":[");
        for (int a = 0; a < s->nattrs; a++) {
            if (a)
                strbuf_append_lit(b, ",");
            json_attr(b, s->attr_key[a], s->attr_val[a]);
        }
        strbuf_append_lit(b, "],\"status\":{\"code\":");
        strbuf_append(b, s->error ? "2}}" : "0}}", 3); /* STATUS_CODE_ERROR : UNSET */
        if (i + 1 < n)
            strbuf_append_lit(b, ",");
    }
    strbuf_append_lit(b, "]}]}]}");
}

void otlp_encode(struct strbuf *b, enum otlp_format f, const struct otlp_resource *r,
                 const struct trace_span *spans, size_t n)
{
    if (f == OTLP_JSON)
        encode_json(b, r, spans, n);
    else
        encode_protobuf(b, r, spans, n);
}
