/* ops_api.h - operations routes: health, readiness, metrics, pipeline ping. */
#ifndef SB_OPS_API_H
#define SB_OPS_API_H

#include "server.h"

void ops_healthz(struct http_ctx *ctx);
void ops_readyz(struct http_ctx *ctx);
void ops_metrics(struct http_ctx *ctx);
void ops_ping(struct http_ctx *ctx);
void ops_overview(struct http_ctx *ctx);

#endif
