/* net.c - see net.h. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

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

/* libevent hands an error callback the listener's accept argument (the
 * loop, or an evhttp's own), so the guards are found by their listener: a
 * short list, searched only when accept() fails. */
struct net_accept_guard {
    struct evconnlistener *lev;
    struct event *retry;
    struct log_every log;
    char what[64];
    struct net_accept_guard *next;
};

static pthread_mutex_t guards_mu = PTHREAD_MUTEX_INITIALIZER;
static struct net_accept_guard *guards;

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct net_accept_guard *g = arg;
    if (evconnlistener_enable(g->lev) != 0)
        log_error("cannot enable a listener again", "listener=%s", g->what);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    pthread_mutex_lock(&guards_mu);
    struct net_accept_guard *g = guards;
    while (g && g->lev != lev)
        g = g->next;
    pthread_mutex_unlock(&guards_mu);
    if (g == NULL)
        return; /* being freed: its listener goes next */
    const struct timeval pause = {0, NET_ACCEPT_PAUSE_MS * 1000};
    int64_t skipped;
    evconnlistener_disable(lev);
    evtimer_add(g->retry, &pause);
    if (log_every_due(&g->log, 1000, &skipped))
        log_warn("accept failed; accepting again shortly", "listener=%s err=\"%s\" pause_ms=%d repeats=%lld",
                 g->what, strerror(err), NET_ACCEPT_PAUSE_MS, (long long)skipped);
}

struct net_accept_guard *net_accept_guard_new(struct evconnlistener *lev, const char *what)
{
    struct net_accept_guard *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->lev = lev;
    snprintf(g->what, sizeof g->what, "%s", what);
    g->retry = evtimer_new(evconnlistener_get_base(lev), on_accept_retry, g);
    if (g->retry == NULL) {
        free(g);
        return NULL;
    }
    pthread_mutex_lock(&guards_mu);
    g->next = guards;
    guards = g;
    pthread_mutex_unlock(&guards_mu);
    evconnlistener_set_error_cb(lev, on_accept_error);
    return g;
}

void net_accept_guard_free(struct net_accept_guard *g)
{
    if (g == NULL)
        return;
    evconnlistener_set_error_cb(g->lev, NULL);
    pthread_mutex_lock(&guards_mu);
    struct net_accept_guard **p = &guards;
    while (*p != g)
        p = &(*p)->next;
    *p = g->next;
    pthread_mutex_unlock(&guards_mu);
    event_free(g->retry);
    free(g);
}
