/* suppress_api.h - the suppression list for an operator (suppress.h):
 *
 *   GET    /v1/suppressions?address=&limit=   the entries, newest first
 *   POST   /v1/suppressions {"channel", "address", "scope", "reason"}
 *          adds one (scope: our sending number for sms, or "*", the
 *          default: every sender); 201, or 200 when it was there already
 *   DELETE /v1/suppressions?channel=&address=&scope=   removes one (204;
 *          404 when there was none)
 *
 * Inbound STOP/START (callbacks_api.h) and the email feedback add and lift
 * entries themselves. */
#ifndef SB_SUPPRESS_API_H
#define SB_SUPPRESS_API_H

#include "server.h"

void suppress_list_get(struct http_ctx *ctx);
void suppress_add_post(struct http_ctx *ctx);
void suppress_remove_delete(struct http_ctx *ctx);

#endif
