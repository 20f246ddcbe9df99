/* dispatcher.h - the dispatcher's life: start every part, serve, drain.
 *
 * main.c reads the configuration and waits for a signal; everything else
 * is here so that tests can link it. */
#ifndef SB_DISPATCHER_H
#define SB_DISPATCHER_H

#include "server.h"

/* Starts the pools, the loops and their threads, and opens the port. On
 * false, err says why and the process should exit (what was started is not
 * torn down: the caller exits). */
bool dispatcher_start(struct dispatcher *d, const struct sb_config *cfg, char *err, size_t errlen);

/* Stops accepting, waits (up to shutdown_timeout_ms) for requests in
 * flight, stops the loops and frees everything dispatcher_start made. */
void dispatcher_stop(struct dispatcher *d);

#endif
