/* wscmd.h - the WebSocket command protocol (GET /ws): JSON commands in,
 * one reply per command out. No sockets here: wsconn.c carries the
 * messages and runs each command as a request of its REST route.
 *
 * A text message holds one or more commands, one JSON object per line:
 *   {"id": 7, "op": "message.create", "token": "T", "chat": 1, "body": {"body": "hi"}}
 * id (a string of at most WSCMD_ID_MAX bytes, or an integer) is echoed in
 * the reply; op names the command and its route (wscmd_ops); token, chat
 * and message fill the route's path; body is the route's JSON body. The
 * reply is one line:
 *   {"id": 7, "status": 201, "body": {"number": 3}}
 * with the status and body the REST route gives; an error's body is
 * {"error": {"code", "message", "temporary"}}, temporary telling whether
 * the same command may succeed later (429, 503, ...). Several replies may
 * share a message, a line each. schema/websocket.yaml has the whole of it. */
#ifndef SB_WSCMD_H
#define SB_WSCMD_H

#include "router.h"
#include "server.h"
#include "strbuf.h"

#define WSCMD_ID_MAX 64 /* bytes of a string id */
#define WSCMD_ID_JSON (6 * WSCMD_ID_MAX + 3) /* the id as JSON text, escapes and quotes */

/* One command, parsed. */
struct wscmd {
    char id[WSCMD_ID_JSON]; /* JSON text; "null" until read */
    const struct route *route;
    const char *op;
    int nparams; /* the route's path parameters: token, chat, message */
    char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX];
    char path[ROUTE_PARAM_MAX + 96]; /* the REST path, for messages */
    /* The route's body: parsed (json) when the line is within parsed_max
     * (wscmd_parse), so it cannot be over its route's limit; else as text
     * (body, malloc'd), for the route to measure and parse. Both NULL:
     * none. */
    cJSON *json;
    char *body;
    size_t body_len;
};

/* Parses one line. token: the application a connection opened with an
 * application token is bound to ("" for an admin key), the default of a
 * command's "token". parsed_max: the least body limit of any route; a
 * line no longer than that hands its body over parsed (it cannot be over
 * its route's limit). False (errbuf says why; cmd->id as far as it was
 * read) for a command the protocol cannot take: the reply is 400
 * bad_command. */
bool wscmd_parse(const char *line, size_t len, size_t parsed_max, const char *token, struct wscmd *cmd,
                 char *errbuf, size_t errlen) SB_NODISCARD;
/* wscmd_parse is these two: a plain line (known fields once each, ASCII
 * strings without escapes, integers, a body object) read without a tree
 * of its fields, else the general way, through a cJSON tree of the whole
 * line. The plain way says only yes (cmd as the general way fills it) or
 * "not plain" (false, cmd cleared); errors are the general way's. The
 * unit test and fuzz/fuzz_wscmd check the two agree. */
bool wscmd_parse_plain(const char *line, size_t len, size_t parsed_max, const char *token,
                       struct wscmd *cmd) SB_NODISCARD;
bool wscmd_parse_general(const char *line, size_t len, size_t parsed_max, const char *token,
                         struct wscmd *cmd, char *errbuf, size_t errlen) SB_NODISCARD;
void wscmd_clear(struct wscmd *cmd);
/* Do two parsed commands say the same (the plain and the general way)? */
bool wscmd_same(const struct wscmd *a, const struct wscmd *b);

/* Appends the reply line for id: {"id":..,"status":..,"body":..} and a
 * newline; an error body gains "temporary": true when retry_after (the
 * route asked for a retry with Retry-After) or wscmd_temporary(status). */
void wscmd_reply(struct strbuf *b, const char *id, int status, const char *body, size_t len, bool retry_after);
/* An error reply the protocol itself gives (bad_command, shutting_down). */
void wscmd_reply_error(struct strbuf *b, const char *id, int status, const char *code, const char *msg);

/* Is an error of this status worth retrying unchanged? */
bool wscmd_temporary(int status);

#endif
