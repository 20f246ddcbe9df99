/* console.c - see console.h. */
#include "console.h"

#include <stddef.h>

/* console_page.c, generated from web/console.html (cmake/embed.cmake). */
extern const char console_page[];
extern const size_t console_page_len;

void console_page_get(struct http_ctx *ctx)
{
    /* Its own script and styles only, talking to this server alone. */
    http_req_add_header(ctx->req, "Content-Security-Policy",
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                        "connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'");
    http_req_add_header(ctx->req, "Cache-Control", "no-store");
    http_reply_raw(ctx, 200, "text/html; charset=utf-8", console_page, console_page_len);
}
