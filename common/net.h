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

#endif
