/* phonebook_api.h - the phonebook routes (see phonebook_api.c). */
#ifndef SB_PHONEBOOK_API_H
#define SB_PHONEBOOK_API_H

#include "server.h"

/* Registers the phonebook metrics (once, at start-up). */
void pb_init(void);
void pb_find(struct http_ctx *ctx);
void pb_reserve(struct http_ctx *ctx);
void pb_assign(struct http_ctx *ctx);

#endif
