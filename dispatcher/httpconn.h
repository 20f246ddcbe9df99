/* httpconn.h - the dispatcher's HTTP/1.1 connections (inside server.c's
 * loops; handlers see only server.h).
 *
 * A connection keeps its read interest for its whole life, parses its
 * input in place (httpparse.h) and serves one request at a time, in order:
 * pipelined requests wait in its input. A whole request goes to
 * server_dispatch(); its answer is written with one send(), and write
 * interest is added only when a send comes back short. A request must
 * arrive whole within HTTPCONN_IO_TIMEOUT_S of the connection's opening or
 * its previous answer (else 408). Input the server cannot take as HTTP is
 * answered with a JSON error and the connection closed. */
#ifndef SB_HTTPCONN_H
#define SB_HTTPCONN_H

#include <cjson/cJSON.h>
#include <event2/util.h>
#include <stddef.h>

#include "httpparse.h"
#include "server.h"
#include "log.h"
#include "trace.h"

#define HTTPCONN_IO_TIMEOUT_S 10 /* from accept or the last reply to a whole request */
#define HTTPCONN_EXTRA_HEADERS 256 /* headers a handler adds (Allow, Retry-After, ...) */

struct http_req;
/* Where the answer to a request that came some other way than an HTTP
 * connection goes (a WebSocket command, wsconn.c): answer takes the
 * status and JSON body (and ends the request), gone tells whether anyone
 * still waits for it, abandon ends it unanswered. */
struct http_req_owner {
    void (*answer)(struct http_req *req, int code, const char *body, size_t len);
    bool (*gone)(const struct http_req *req);
    void (*abandon)(struct http_req *req);
};

/* The request a connection is serving; its strings point into the
 * connection's input, which does not move until the answer. */
struct http_req {
    struct http_conn *conn;            /* NULL: owner's */
    const struct http_req_owner *owner; /* when conn is NULL */
    /* The body, parsed already (a WebSocket command's, whose size is
     * within the route's limit): http_body_json takes it. */
    cJSON *json;
    struct httpparse_req p;
    size_t extra_len;
    char extra[HTTPCONN_EXTRA_HEADERS];
    /* The request's span (server.c): its context is the parent of the
     * request's Redis calls and produces; not valid when untraced. */
    struct trace_span span;
};

/* The lines this thread logs from now on carry req's trace id (none when
 * it is untraced): called where a request's work resumes on its loop. */
static inline void http_req_log_trace(const struct http_req *req)
{
    char tid[33];
    trace_id_hex(&req->span.ctx, tid);
    log_set_trace(tid);
}

/* Answer to send when even an error body cannot be built. */
#define HTTP_OOM_BODY "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}"

/* evconnlistener callback (arg: the struct loop): serves a new connection. */
void httpconn_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
                     void *arg);
/* Sends the answer to req (keep-alive unless the client or a drain ends
 * it) and goes on with the connection's input. Returns the status sent:
 * code, or 503 when a large answer did not fit max_output_bytes. */
int httpconn_send(struct http_req *req, const char *request_id, int code, const char *content_type,
                  const char *body, size_t len);
/* A handler that takes the connection's socket over (a WebSocket
 * upgrade), called synchronously from its route: once the handler
 * returns, fn gets the socket and the bytes the client sent after the
 * request (copy them: they go with the HTTP connection), and the HTTP side
 * forgets the socket. Nothing may have been answered. */
typedef void (*httpconn_takeover_fn)(struct loop *l, int fd, const char *left, size_t len, void *arg);
void httpconn_take_over(struct http_req *req, httpconn_takeover_fn fn, void *arg);
/* Loop teardown: close every socket (requests with a handler stay), then,
 * once nothing can call back into them, free the connections. */
void httpconn_break_all(struct loop *l);
void httpconn_free_all(struct loop *l);

/* A new request id (for a request that brought none we keep). */
void http_mint_request_id(char out[33]);

/* Defined by server.c: routes a whole request (answers it, now or later). */
void server_dispatch(struct loop *l, struct http_req *req);

#endif
