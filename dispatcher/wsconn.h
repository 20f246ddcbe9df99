/* wsconn.h - WebSocket connections (RFC 6455) on the dispatcher's loops.
 *
 * A GET that asks for an upgrade is checked by its route, answered 101,
 * and its socket taken over from the HTTP connection (httpconn_take_over);
 * framing, masking, UTF-8 of text messages, ping and close replies are
 * wslay's (libwslay). A connection reads and writes through libevent on
 * its loop, like an HTTP one, and counts against max_connections.
 *
 * GET /ws takes commands (wscmd.h): each runs as a request of its REST
 * route, with the credential given once at the upgrade (access.h's
 * grant), and its reply goes back when the route answers (for a create,
 * once Kafka has the job). Replies that complete in the same turn of the
 * loop share one message, and every frame of a turn goes out in one
 * send().
 *
 * Bounds, per connection: ws_max_inflight commands without a reply (at
 * it no more lines run and the socket is not read, so TCP pushes back;
 * the lines already read wait in a backlog of at most one message and one
 * 4 KiB read), one message of ws_max_message_bytes being received, and
 * ws_max_reply_bytes of replies the client has not taken (at it, the
 * same; none taken for 2 s: close 1008).
 *
 * Liveness: a ping after ws_ping_interval_ms of silence, and after each
 * such interval, close 1001 after
 * ws_idle_timeout_ms; a close that gets no answer frees the connection
 * after 2 s. On SIGTERM (wsconn_drain) a connection reads no more
 * commands, sends the replies of those in flight, then closes with 1001.
 *
 * GET /ws/echo echoes every message back, for protocol conformance tests;
 * it exists only when ws_echo_max_message_bytes is above 0. */
#ifndef SB_WSCONN_H
#define SB_WSCONN_H

#include "server.h"

/* The subprotocol GET /ws answers when a client offers it; a browser
 * offers it with "bearer.<credential>" beside it. */
#define WS_PROTOCOL "switchboard.v1"

/* GET /ws and GET /ws/echo (routes.c). */
void ws_commands(struct http_ctx *ctx);
void ws_echo(struct http_ctx *ctx);

/* SIGTERM, on the loop's thread: no more commands; 1001 after the last reply. */
void wsconn_drain(struct loop *l);
/* Loop teardown: closes (1001) and frees the loop's WebSocket connections;
 * then, once no command can end any more, the commands kept for reuse. */
void wsconn_free_all(struct loop *l);
void wsconn_free_spares(struct loop *l);

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 4.2.2);
 * false if the key is not 16 bytes in base64. */
bool ws_accept_key(const char *key, char out[29]);

#endif
