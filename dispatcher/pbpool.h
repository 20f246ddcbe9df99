/* pbpool.h - rebuilding Redis' pools of free numbers from MySQL.
 *
 * Runs on a pool thread. One dispatcher at a time does the work (a Redis
 * lock, which the rebuild extends as it goes and stops if it is no longer
 * its own: Redis lost its data and another rebuild may have begun); the
 * others wait for the "loaded" marker. Free = AVAILABLE, or
 * RESERVED under a reservation Redis no longer has (reservations live only
 * in Redis); minus the numbers in live reservations and the ones assigned
 * but not persisted yet (pb:held). The marker is set last, so reserve
 * never sees a half-built pool, and only if no seed landed since the
 * rebuild read MySQL (else it rebuilds again; see PB_POOL_GEN_KEY). */
#ifndef SB_PBPOOL_H
#define SB_PBPOOL_H

#include "server.h"

typedef void (*pbpool_cb)(void *arg, bool ok);

/* Calls cb on the loop when the pools are loaded (ok) or could not be. */
void pbpool_rebuild(struct loop *l, pbpool_cb cb, void *arg);

/* The same, blocking, on the calling thread with db (start-up, tools). */
bool pbpool_rebuild_sync(struct db *db, const struct redis_url *url, char *errbuf, size_t errlen);

#endif
