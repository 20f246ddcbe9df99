/* httpparse.h - the dispatcher's HTTP/1.1 request parser (RFC 9112).
 *
 * No allocation and no I/O: it looks at the unread input of one connection
 * and says whether a whole request is there (DONE), more bytes are needed
 * (MORE), or the request is bad (BAD, with the status to answer). The
 * caller keeps calling with the same struct while the buffer grows; the
 * head is parsed once, and a chunked body is walked chunk by chunk across
 * calls, so input that trickles in costs linear time, not quadratic.
 *
 * Positions are kept as offsets while the request is incomplete (the
 * caller may move its buffer to grow it); DONE turns them into pointers
 * into the buffer, which stay valid while the caller does not move it.
 * DONE NUL-terminates the method, target and header names and values in
 * place and decodes a chunked body in place; the body itself is not
 * NUL-terminated (pipelined input may follow it). */
#ifndef SB_HTTPPARSE_H
#define SB_HTTPPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTPPARSE_MAX_HEADERS 64

/* The most input one request may take: its head, and a chunked body's
 * data with its framing (a client's small chunks cost framing bytes; four
 * times the body is plenty for any real client, and bounds the rest). */
#define HTTPPARSE_MAX_INPUT(max_head, max_body) ((size_t)(max_head) + 4 * (size_t)(max_body) + 8192)

enum httpparse_result {
    HTTPPARSE_DONE, /* a whole request; total_len bytes of input are its */
    HTTPPARSE_MORE, /* incomplete: call again when more input arrived */
    HTTPPARSE_BAD,  /* answer `status` with `reason` and close */
};

struct httpparse_header {
    const char *name, *value; /* after DONE */
    uint32_t name_off, value_off;
};

struct httpparse_req {
    /* Progress between calls (httpparse_reset() zeroes it). */
    size_t scanned;    /* input searched for the end of the head */
    size_t head_len;   /* 0 until the head has been parsed */
    size_t chunk_raw;  /* chunked: input offset of the next chunk's size line */
    size_t chunk_body; /* chunked: body bytes in the chunks before it */

    /* Known once head_len > 0: */
    uint32_t method_off, target_off;
    int minor_version;      /* HTTP/1.x */
    int64_t content_length; /* -1: none */
    bool chunked, keep_alive, expect_continue;
    size_t nheaders;
    struct httpparse_header headers[HTTPPARSE_MAX_HEADERS];

    /* After DONE: */
    const char *method, *target;
    char *body;
    size_t body_len;
    size_t total_len; /* input bytes of this request, head and body */

    /* After BAD: */
    int status;
    const char *reason;
};

void httpparse_reset(struct httpparse_req *r);

/* Parses buf[0..len): the connection's unread input, starting at a
 * request. max_head bounds the request line and headers, max_body the
 * (decoded) body. */
enum httpparse_result httpparse_feed(struct httpparse_req *r, char *buf, size_t len, size_t max_head,
                                     size_t max_body);

/* A request header's value (the first of that name, matched without
 * regard to case), or NULL; only after DONE. */
const char *httpparse_header(const struct httpparse_req *r, const char *name);

/* Decodes %XX escapes of a path in place ('+' stays: this is a path, not
 * a form); false for an encoded NUL, which no path can hold. An escape
 * that is not two hex digits is kept as it is. */
bool httpparse_path_decode(char *s);

/* Does the comma-separated list v (a header's value, or NULL) hold token
 * tok, without regard to case? (Connection: keep-alive, Upgrade) */
bool httpparse_list_has(const char *v, const char *tok);

#endif
