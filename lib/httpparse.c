/* httpparse.c - see httpparse.h. */
#include "httpparse.h"

#include <string.h>
#include <strings.h>

/* Longest chunk-size line (size, extensions) and trailer section taken. */
#define CHUNK_LINE_MAX 1024
#define TRAILERS_MAX 4096

void httpparse_reset(struct httpparse_req *r)
{
    /* Only the progress and result fields need clearing; the header table
     * is rewritten by the next head. */
    memset(r, 0, offsetof(struct httpparse_req, headers));
    r->method = r->target = NULL;
    r->body = NULL;
    r->body_len = r->total_len = 0;
    r->status = 0;
    r->reason = NULL;
}

static enum httpparse_result bad(struct httpparse_req *r, int status, const char *reason)
{
    r->status = status;
    r->reason = reason;
    return HTTPPARSE_BAD;
}

/* RFC 9110 5.6.2 token characters. */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar, SP and HTAB; obs-text (0x80-0xff) is allowed as opaque. */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* A hex digit's value, or -1. */
static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The end of the line starting at pos: the index of its LF, or -1 if none
 * before limit. *content_end excludes a CR before the LF. */
static long line_end(const char *buf, size_t pos, size_t limit, size_t *content_end)
{
    const char *lf = memchr(buf + pos, '\n', limit - pos);
    *content_end = limit;
    if (lf == NULL)
        return -1;
    size_t e = (size_t)(lf - buf);
    *content_end = (e > pos && buf[e - 1] == '\r') ? e - 1 : e;
    return (long)e;
}

bool httpparse_list_has(const char *v, const char *tok)
{
    size_t n = strlen(tok);
    while (v && *v) {
        while (*v == ',' || is_ows(*v))
            v++;
        size_t len = strcspn(v, ",");
        size_t l = len;
        while (l > 0 && is_ows(v[l - 1]))
            l--;
        if (l == n && strncasecmp(v, tok, n) == 0)
            return true;
        v += len;
    }
    return false;
}

static enum httpparse_result parse_request_line(struct httpparse_req *r, char *buf, size_t s, size_t e)
{
    size_t i = s;
    while (i < e && is_tchar((unsigned char)buf[i]))
        i++;
    if (i == s || i - s > 20 || i >= e || buf[i] != ' ')
        return bad(r, 400, "malformed request line");
    buf[i] = '\0';
    r->method_off = (uint32_t)s;
    size_t t = ++i;
    while (i < e && (unsigned char)buf[i] > 0x20 && (unsigned char)buf[i] < 0x7f)
        i++;
    if (i == t || i >= e || buf[i] != ' ')
        return bad(r, 400, "malformed request target");
    buf[i] = '\0';
    r->target_off = (uint32_t)t;
    i++;
    if (e - i != 8 || memcmp(buf + i, "HTTP/", 5) != 0 || buf[i + 6] != '.' ||
        buf[i + 5] < '0' || buf[i + 5] > '9' || buf[i + 7] < '0' || buf[i + 7] > '9')
        return bad(r, 400, "malformed HTTP version");
    if (buf[i + 5] != '1')
        return bad(r, 400, "unsupported HTTP version (HTTP/1.0 and HTTP/1.1 are served)");
    r->minor_version = buf[i + 7] - '0';
    return HTTPPARSE_DONE;
}

/* One header line [s, e): name, value, and what it means for framing. */
static enum httpparse_result parse_header(struct httpparse_req *r, char *buf, size_t s, size_t e,
                                          bool *conn_close, bool *conn_keep)
{
    if (is_ows(buf[s]))
        return bad(r, 400, "obsolete header line folding is not accepted");
    size_t i = s;
    while (i < e && is_tchar((unsigned char)buf[i]))
        i++;
    if (i == s || i >= e || buf[i] != ':')
        return bad(r, 400, "malformed header field");
    if (r->nheaders == HTTPPARSE_MAX_HEADERS)
        return bad(r, 431, "too many header fields");
    buf[i++] = '\0';
    while (i < e && is_ows(buf[i]))
        i++;
    size_t v = i, ve = e;
    while (ve > v && is_ows(buf[ve - 1]))
        ve--;
    for (size_t k = v; k < ve; k++)
        if (!is_value_char((unsigned char)buf[k]))
            return bad(r, 400, "header field value holds a control character");
    buf[ve] = '\0';
    struct httpparse_header *h = &r->headers[r->nheaders++];
    h->name_off = (uint32_t)s;
    h->value_off = (uint32_t)v;
    const char *name = buf + s, *value = buf + v;

    if (strcasecmp(name, "Content-Length") == 0) {
        size_t n = ve - v;
        int64_t cl = 0;
        if (n == 0 || n > 18 || strspn(value, "0123456789") != n)
            return bad(r, 400, "Content-Length must be a decimal number");
        for (size_t k = 0; k < n; k++)
            cl = cl * 10 + (value[k] - '0');
        if (r->content_length >= 0 && r->content_length != cl)
            return bad(r, 400, "conflicting Content-Length values");
        r->content_length = cl;
    } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
        if (r->chunked || strcasecmp(value, "chunked") != 0)
            return bad(r, 501, "only Transfer-Encoding: chunked is supported");
        r->chunked = true;
    } else if (strcasecmp(name, "Connection") == 0) {
        *conn_close |= httpparse_list_has(value, "close");
        *conn_keep |= httpparse_list_has(value, "keep-alive");
    } else if (strcasecmp(name, "Expect") == 0) {
        if (strcasecmp(value, "100-continue") != 0)
            return bad(r, 417, "only Expect: 100-continue is supported");
        r->expect_continue = true;
    }
    return HTTPPARSE_DONE;
}

/* Request line and header fields, [start, end) ending in an empty line. */
static enum httpparse_result parse_head(struct httpparse_req *r, char *buf, size_t start, size_t end,
                                        size_t max_body)
{
    size_t ce;
    long lf = line_end(buf, start, end, &ce);
    if (memchr(buf + start, '\r', ce - start) != NULL)
        return bad(r, 400, "bare CR in the request line");
    enum httpparse_result res = parse_request_line(r, buf, start, ce);
    if (res != HTTPPARSE_DONE)
        return res;
    r->content_length = -1;
    bool conn_close = false, conn_keep = false;
    for (size_t pos = (size_t)lf + 1;;) {
        lf = line_end(buf, pos, end, &ce);
        if (ce == pos) /* the empty line */
            break;
        if (memchr(buf + pos, '\r', ce - pos) != NULL)
            return bad(r, 400, "bare CR in a header line");
        res = parse_header(r, buf, pos, ce, &conn_close, &conn_keep);
        if (res != HTTPPARSE_DONE)
            return res;
        pos = (size_t)lf + 1;
    }
    if (r->chunked && r->content_length >= 0)
        return bad(r, 400, "both Content-Length and Transfer-Encoding are given");
    if (r->chunked && r->minor_version == 0)
        return bad(r, 400, "chunked transfer coding needs HTTP/1.1");
    if (r->content_length > (int64_t)max_body)
        return bad(r, 413, "request body too large");
    r->keep_alive = r->minor_version >= 1 ? !conn_close : conn_keep && !conn_close;
    r->head_len = end;
    r->chunk_raw = end;
    return HTTPPARSE_DONE;
}

/* The head starting at s is longer than max_head: 414 if its first line
 * alone is (decided on the first max_head bytes only, so the answer does
 * not depend on how much input has arrived), else 431. */
static enum httpparse_result head_too_large(struct httpparse_req *r, const char *buf, size_t s,
                                            size_t max_head)
{
    return memchr(buf + s, '\n', max_head) ? bad(r, 431, "request header fields too large")
                                           : bad(r, 414, "request line too long");
}

/* Finds the end of the head: the first empty line. */
static enum httpparse_result find_head(struct httpparse_req *r, const char *buf, size_t len,
                                       size_t max_head, size_t *start, size_t *end)
{
    /* RFC 9112 2.2: empty lines before a request line are ignored. */
    size_t s = 0;
    while (s < len && (buf[s] == '\r' || buf[s] == '\n'))
        s++;
    size_t pos = r->scanned > s ? r->scanned : s;
    while (pos < len) {
        const char *lf = memchr(buf + pos, '\n', len - pos);
        if (lf == NULL) {
            pos = len;
            break;
        }
        size_t i = (size_t)(lf - buf);
        if (i + 1 < len && buf[i + 1] == '\n') {
            *end = i + 2;
        } else if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            *end = i + 3;
        } else if (i + 1 >= len || (buf[i + 1] == '\r' && i + 2 >= len)) {
            pos = i; /* look at this LF again with more input */
            break;
        } else {
            pos = i + 1;
            continue;
        }
        if (*end - s > max_head)
            return head_too_large(r, buf, s, max_head);
        *start = s;
        return HTTPPARSE_DONE;
    }
    r->scanned = pos;
    if (len - s > max_head)
        return head_too_large(r, buf, s, max_head);
    return HTTPPARSE_MORE;
}

/* The chunk-size line at pos: its size and where its data starts. */
static enum httpparse_result chunk_line(struct httpparse_req *r, const char *buf, size_t pos,
                                        size_t len, uint64_t *size, size_t *data)
{
    size_t limit = len - pos > CHUNK_LINE_MAX ? pos + CHUNK_LINE_MAX : len;
    size_t ce;
    long lf = line_end(buf, pos, limit, &ce);
    if (lf < 0)
        return limit < len ? bad(r, 400, "chunk size line too long") : HTTPPARSE_MORE;
    size_t i = pos;
    uint64_t n = 0;
    for (; i < ce; i++) {
        int d = hex_value(buf[i]);
        if (d < 0)
            break;
        if (i - pos == 15)
            return bad(r, 413, "chunk too large");
        n = n * 16 + (uint64_t)d;
    }
    if (i == pos)
        return bad(r, 400, "malformed chunk size");
    while (i < ce && is_ows(buf[i]))
        i++;
    if (i < ce && buf[i] != ';')
        return bad(r, 400, "malformed chunk size");
    for (; i < ce; i++) /* chunk extensions: ignored, but no control characters */
        if (!is_value_char((unsigned char)buf[i]))
            return bad(r, 400, "malformed chunk extension");
    *size = n;
    *data = (size_t)lf + 1;
    return HTTPPARSE_DONE;
}

/* The trailer section after the last chunk, from pos: its end. */
static enum httpparse_result trailers(struct httpparse_req *r, const char *buf, size_t pos, size_t len,
                                      size_t *end)
{
    for (size_t start = pos;;) {
        size_t limit = len - start > TRAILERS_MAX ? start + TRAILERS_MAX : len, ce;
        long lf = line_end(buf, pos, limit, &ce);
        if (lf < 0)
            return limit < len ? bad(r, 431, "chunked trailer section too large") : HTTPPARSE_MORE;
        if (memchr(buf + pos, '\r', ce - pos) != NULL || memchr(buf + pos, '\0', ce - pos) != NULL)
            return bad(r, 400, "malformed trailer field");
        if (ce == pos) {
            *end = (size_t)lf + 1;
            return HTTPPARSE_DONE;
        }
        pos = (size_t)lf + 1;
    }
}

/* The chunks after chunk_raw; on DONE the body is decoded in place. */
static enum httpparse_result chunked_body(struct httpparse_req *r, char *buf, size_t len, size_t max_body)
{
    for (;;) {
        uint64_t size;
        size_t data;
        enum httpparse_result res = chunk_line(r, buf, r->chunk_raw, len, &size, &data);
        if (res != HTTPPARSE_DONE)
            return res;
        if (size == 0) {
            size_t end;
            res = trailers(r, buf, data, len, &end);
            if (res != HTTPPARSE_DONE)
                return res;
            r->total_len = end;
            break;
        }
        if (size > max_body - r->chunk_body)
            return bad(r, 413, "request body too large");
        if (len - data < size + 1)
            return HTTPPARSE_MORE;
        size_t after = data + (size_t)size;
        if (buf[after] == '\r') {
            if (len - after < 2)
                return HTTPPARSE_MORE;
            after++;
        }
        if (buf[after] != '\n')
            return bad(r, 400, "chunk data not followed by CRLF");
        r->chunk_raw = after + 1;
        r->chunk_body += (size_t)size;
    }
    /* Every chunk is known to be well formed: move the data together. */
    size_t w = r->head_len;
    for (size_t pos = r->head_len;;) {
        uint64_t size;
        size_t data;
        (void)chunk_line(r, buf, pos, len, &size, &data);
        if (size == 0)
            break;
        memmove(buf + w, buf + data, (size_t)size);
        w += (size_t)size;
        pos = data + (size_t)size + (buf[data + size] == '\r' ? 2 : 1);
    }
    r->body_len = w - r->head_len;
    return HTTPPARSE_DONE;
}

enum httpparse_result httpparse_feed(struct httpparse_req *r, char *buf, size_t len, size_t max_head,
                                     size_t max_body)
{
    enum httpparse_result res;
    if (r->head_len == 0) {
        size_t start = 0, end = 0;
        res = find_head(r, buf, len, max_head, &start, &end);
        if (res != HTTPPARSE_DONE)
            return res;
        res = parse_head(r, buf, start, end, max_body);
        if (res != HTTPPARSE_DONE)
            return res;
    }
    if (r->chunked) {
        if (len - r->head_len > HTTPPARSE_MAX_INPUT(0, max_body))
            return bad(r, 413, "request body too large");
        res = chunked_body(r, buf, len, max_body);
        if (res != HTTPPARSE_DONE)
            return res;
    } else {
        size_t cl = r->content_length > 0 ? (size_t)r->content_length : 0;
        if (len - r->head_len < cl)
            return HTTPPARSE_MORE;
        r->body_len = cl;
        r->total_len = r->head_len + cl;
    }
    r->body = buf + r->head_len;
    r->method = buf + r->method_off;
    r->target = buf + r->target_off;
    for (size_t i = 0; i < r->nheaders; i++) {
        r->headers[i].name = buf + r->headers[i].name_off;
        r->headers[i].value = buf + r->headers[i].value_off;
    }
    return HTTPPARSE_DONE;
}

const char *httpparse_header(const struct httpparse_req *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

bool httpparse_path_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        int hi, lo;
        if (*r == '%' && (hi = hex_value(r[1])) >= 0 && (lo = hex_value(r[2])) >= 0) {
            if (hi == 0 && lo == 0)
                return false;
            *w++ = (char)(hi << 4 | lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return true;
}
