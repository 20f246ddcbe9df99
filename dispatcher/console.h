/* console.h - the operator console: one page (web/console.html, compiled
 * in) that draws the operator API (GET /ops/v1/...) with the admin key the
 * operator types in; it holds no data itself.
 *
 *   GET /ops/console */
#ifndef SB_CONSOLE_H
#define SB_CONSOLE_H

#include "server.h"

void console_page_get(struct http_ctx *ctx);

#endif
