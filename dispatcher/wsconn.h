/* wsconn.h - WebSocket connections (RFC 6455) on the dispatcher's loops.
 *
 * A GET that asks for an upgrade is checked by its route (wsconn_upgrade),
 * answered 101, and its socket taken over from the HTTP connection
 * (httpconn_take_over); framing, masking, UTF-8 of text messages, ping and
 * close replies are wslay's (libwslay). A connection reads and writes
 * through libevent on its loop, like an HTTP one, and counts against
 * max_connections.
 *
 * In progress (issue 24): the one endpoint today is GET /ws/echo, which
 * echoes every message back, for protocol conformance tests; it exists
 * only when ws_echo_max_message_bytes is above 0. */
#ifndef SB_WSCONN_H
#define SB_WSCONN_H

#include "server.h"

/* GET /ws/echo (routes.c). */
void ws_echo(struct http_ctx *ctx);

/* Loop teardown: closes (1001) and frees the loop's WebSocket connections. */
void wsconn_free_all(struct loop *l);

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 4.2.2);
 * false if the key is not 16 bytes in base64. */
bool ws_accept_key(const char *key, char out[29]);

#endif
