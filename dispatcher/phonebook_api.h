/* phonebook_api.h - the phonebook routes (see phonebook_api.c). */
#ifndef SB_PHONEBOOK_API_H
#define SB_PHONEBOOK_API_H

#include "findcache.h"
#include "server.h"

/* Registers the phonebook metrics (once, at start-up). */
void pb_init(void);
void pb_find(struct http_ctx *ctx);
void pb_reserve(struct http_ctx *ctx);
void pb_assign(struct http_ctx *ctx);
/* Is phone (E.164, checked by the caller) assigned to a user? The find
 * path (per-loop cache, single flight, Redis, MySQL) for other routes:
 * fn is called on this loop, perhaps before pb_lookup returns. */
void pb_lookup(struct loop *l, const char *phone, find_done_fn fn, void *arg);

#endif
