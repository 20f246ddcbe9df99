/* net.c - see net.h. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

bool net_bind(const char *addr, unsigned flags, int *fd_out, char *errbuf, size_t errlen)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    int64_t port;
    if (colon == NULL || (size_t)(colon - addr) >= sizeof host ||
        !sb_parse_i64(colon + 1, 0, 65535, &port)) {
        sb_errf(errbuf, errlen, "listen address must be host:port (got '%s')", addr);
        return false;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        sb_errf(errbuf, errlen, "listen host must be an IPv4 address (got '%s')", host);
        return false;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        sb_errf(errbuf, errlen, "socket: %s", strerror(errno));
        return false;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        ((flags & NET_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        ((flags & NET_NODELAY) && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        sb_errf(errbuf, errlen, "bind %s: %s", addr, strerror(errno));
        close(fd);
        return false;
    }
    *fd_out = fd;
    return true;
}

int net_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 || sa.sin_family != AF_INET)
        return 0;
    return ntohs(sa.sin_port);
}
