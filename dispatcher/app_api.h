/* app_api.h - the application routes: create, list, get, rename. */
#ifndef SB_APP_API_H
#define SB_APP_API_H

#include "server.h"

void app_create(struct http_ctx *ctx);
void app_list(struct http_ctx *ctx);
void app_get(struct http_ctx *ctx);
void app_rename(struct http_ctx *ctx);

#endif
