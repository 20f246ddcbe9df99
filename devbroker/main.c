/* switchboard-devbroker - a Kafka broker for one machine.
 *
 * librdkafka's mock cluster (rdkafka_mock.h) speaks the real Kafka protocol
 * (produce, fetch, idempotent producer ids, consumer groups, offsets), keeps
 * everything in memory and listens on 127.0.0.1. Running it as its own
 * process lets every switchboard process, kcat and the tests connect to it
 * like to a real cluster.
 *
 * It creates one topic per schema/topics/<topic>.json, plus <topic>.dlq,
 * writes "host:port" to the bootstrap file, and serves a unix control
 * socket: "down" takes the broker off the network (connections dropped,
 * new ones refused) keeping its data, "up" brings it back on the same port,
 * "status" tells which. `switchboard-devbroker ctl down|up|status` is the
 * client side. SIGTERM/SIGINT stop it and remove both files. */
#include <dirent.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define BROKER_ID 1

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static bool write_file_atomic(const char *path, const char *text, char *errbuf, size_t errlen)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        sb_errf(errbuf, errlen, "open %s: %s", tmp, strerror(errno));
        return false;
    }
    bool ok = fprintf(f, "%s\n", text) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        sb_errf(errbuf, errlen, "write %s: %s", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

/* Creates <name> and <name>.dlq for every <name>.json in dir. */
static bool create_topics(rd_kafka_mock_cluster_t *mc, const char *dir, int partitions,
                          char *errbuf, size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        sb_errf(errbuf, errlen, "open %s: %s", dir, strerror(errno));
        return false;
    }
    int created = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n <= 5 || strcmp(de->d_name + n - 5, ".json") != 0 || de->d_name[0] == '.')
            continue;
        char topic[256];
        snprintf(topic, sizeof topic, "%.*s", (int)(n - 5), de->d_name);
        for (int dlq = 0; dlq < 2; dlq++) {
            char name[300];
            snprintf(name, sizeof name, "%s%s", topic, dlq ? ".dlq" : "");
            rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, name, partitions, 1);
            if (err) {
                sb_errf(errbuf, errlen, "create topic %s: %s", name, rd_kafka_err2str(err));
                closedir(d);
                return false;
            }
            log_info("topic created", "topic=%s partitions=%d", name, partitions);
            created++;
        }
    }
    closedir(d);
    if (created == 0) {
        sb_errf(errbuf, errlen, "no topic schemas (*.json) in %s", dir);
        return false;
    }
    return true;
}

static int listen_unix(const char *path, char *errbuf, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        sb_errf(errbuf, errlen, "control socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        sb_errf(errbuf, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    unlink(path); /* a stale socket from a crashed run */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 8) != 0) {
        sb_errf(errbuf, errlen, "bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void serve_control(int lfd, rd_kafka_mock_cluster_t *mc, bool *up)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char cmd[64] = "";
    ssize_t n = read(fd, cmd, sizeof cmd - 1);
    if (n > 0) {
        cmd[n] = '\0';
        cmd[strcspn(cmd, "\r\n ")] = '\0';
    }
    const char *reply;
    if (strcmp(cmd, "down") == 0) {
        rd_kafka_mock_broker_set_down(mc, BROKER_ID);
        *up = false;
        reply = "ok down\n";
        log_warn("broker taken down by control command", "%s", "");
    } else if (strcmp(cmd, "up") == 0) {
        rd_kafka_mock_broker_set_up(mc, BROKER_ID);
        *up = true;
        reply = "ok up\n";
        log_info("broker brought up by control command", "%s", "");
    } else if (strcmp(cmd, "status") == 0) {
        reply = *up ? "ok up\n" : "ok down\n";
    } else {
        reply = "error unknown command (down|up|status)\n";
    }
    ssize_t w = write(fd, reply, strlen(reply));
    (void)w;
    close(fd);
}

/* Client side: `switchboard-devbroker ctl CMD`. */
static int run_ctl(const char *path, const char *cmd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "cannot reach dev broker at %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    char line[80];
    snprintf(line, sizeof line, "%s\n", cmd);
    char reply[128] = "";
    ssize_t n = -1;
    if (write(fd, line, strlen(line)) == (ssize_t)strlen(line)) {
        shutdown(fd, SHUT_WR);
        n = read(fd, reply, sizeof reply - 1);
    }
    close(fd);
    if (n <= 0) {
        fprintf(stderr, "no reply from dev broker\n");
        return 1;
    }
    reply[n] = '\0';
    fputs(reply, stdout);
    return strncmp(reply, "ok", 2) == 0 ? 0 : 1;
}

/* Sets TCP_NODELAY on the mock brokers' listening sockets (Linux hands
 * it down to every accepted connection), as a Kafka broker sets it on its
 * own. The mock does not: its produce acknowledgements then sat behind
 * Nagle's algorithm until the client's delayed ACK of an earlier response,
 * up to 40 ms - the whole tail of message-create latency. The listeners are
 * the mock's, so they are found among this process's descriptors. */
static void nodelay_listeners(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        log_warn("cannot list descriptors; mock brokers keep Nagle on", "err=\"%s\"", strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name), listening = 0, family = 0, one = 1;
        socklen_t len = sizeof listening, flen = sizeof family;
        if (fd <= 2 || fd == dirfd(d) ||
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening ||
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &flen) != 0 ||
            (family != AF_INET && family != AF_INET6))
            continue;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
            log_warn("cannot set TCP_NODELAY on a mock listener", "fd=%d err=\"%s\"", fd,
                     strerror(errno));
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    struct sb_config cfg;
    char err[ERRBUF_LEN];
    int rc = 1;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    int lfd = -1;
    bool files_written = false;

    switch (config_load(&cfg, SCOPE_DEVBROKER, "switchboard-devbroker", "[options] [ctl down|up|status]",
                        argc, argv, stdout, err, sizeof err)) {
    case CONFIG_EXIT: config_free(&cfg); return 0;
    case CONFIG_ERROR: fprintf(stderr, "switchboard-devbroker: %s\n", err); return 2;
    case CONFIG_OK: break;
    }
    if (!log_setup(cfg.log_level, cfg.log_format, "devbroker")) {
        fprintf(stderr, "switchboard-devbroker: bad log_level or log_format\n");
        goto done;
    }
    if (cfg.nargs > 0) {
        if (strcmp(cfg.args[0], "ctl") != 0 || cfg.nargs != 2) {
            fprintf(stderr, "usage: switchboard-devbroker ctl down|up|status\n");
            rc = 2;
            goto done;
        }
        rc = run_ctl(cfg.control_socket, cfg.args[1]);
        goto done;
    }

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "4", err, sizeof err);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk == NULL) {
        log_error("cannot create kafka handle", "err=\"%s\"", err);
        goto done;
    }
    mc = rd_kafka_mock_cluster_new(rk, 1);
    if (mc == NULL) {
        log_error("cannot create mock cluster", "%s", "");
        goto done;
    }
    nodelay_listeners();
    char topics_dir[1024];
    snprintf(topics_dir, sizeof topics_dir, "%s/topics", cfg.schema_dir);
    if (!create_topics(mc, topics_dir, (int)cfg.kafka_partitions, err, sizeof err)) {
        log_error("cannot create topics", "err=\"%s\"", err);
        goto done;
    }
    lfd = listen_unix(cfg.control_socket, err, sizeof err);
    if (lfd < 0) {
        log_error("cannot open control socket", "err=\"%s\"", err);
        goto done;
    }
    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    if (!write_file_atomic(cfg.bootstrap_file, bootstrap, err, sizeof err)) {
        log_error("cannot write bootstrap file", "err=\"%s\"", err);
        goto done;
    }
    files_written = true;
    log_info("dev broker ready", "bootstrap=%s control=%s pid=%d", bootstrap, cfg.control_socket,
             (int)getpid());

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    bool up = true;
    while (!g_stop) {
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        if (poll(&pfd, 1, 200) > 0 && (pfd.revents & POLLIN)) {
            serve_control(lfd, mc, &up);
            nodelay_listeners(); /* in case bringing a broker up listened anew */
        }
    }
    log_info("dev broker stopping", "%s", "");
    rc = 0;
done:
    if (lfd >= 0)
        close(lfd);
    if (files_written) {
        unlink(cfg.control_socket);
        unlink(cfg.bootstrap_file);
    }
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (rk)
        rd_kafka_destroy(rk);
    config_free(&cfg);
    return rc;
}
