/* net.h - listening sockets from "host:port" settings. */
#ifndef SB_NET_H
#define SB_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

enum net_bind_flags {
    NET_REUSEPORT = 1 << 0, /* more processes may bind the same port */
    NET_NODELAY = 1 << 1,   /* TCP_NODELAY, inherited by accepted sockets */
};

/* A non-blocking, close-on-exec TCP socket bound to addr ("ipv4:port";
 * port 0 = any free port), not yet listening. */
bool net_bind(const char *addr, unsigned flags, int *fd_out, char *errbuf, size_t errlen) SB_NODISCARD;
/* The port a bound socket has (after binding to port 0); 0 if unknown. */
int net_port(int fd);

/* After an accept() error, a listener rests this long. */
#define NET_ACCEPT_PAUSE_MS 100

/* Has a libevent listener rest NET_ACCEPT_PAUSE_MS after an accept() error
 * instead of trying again at once. Out of file descriptors (EMFILE), the
 * connection stays in the backlog and the socket stays readable, so
 * libevent's default (a warning, and accept() again at once) is a busy
 * loop that takes a core and floods the log. what names the listener in
 * the (rate-limited) warning. NULL if out of memory. Free it on the
 * listener's thread before the listener. */
struct evconnlistener;
struct net_accept_guard;
struct net_accept_guard *net_accept_guard_new(struct evconnlistener *lev, const char *what);
void net_accept_guard_free(struct net_accept_guard *g);

#endif
