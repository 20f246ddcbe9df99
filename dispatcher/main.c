/* switchboard-dispatcher - the HTTP front of switchboard.
 *
 * Reads the configuration, starts the dispatcher (dispatcher.c), waits
 * for SIGTERM/SIGINT and drains. */
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>

#include "dispatcher.h"
#include "heap.h"
#include "trace.h"

int main(int argc, char **argv)
{
    heap_init();
    struct sb_config cfg;
    char err[ERRBUF_LEN];
    switch (config_load(&cfg, SCOPE_DISPATCHER, "switchboard-dispatcher", "[options]", argc, argv,
                        stdout, err, sizeof err)) {
    case CONFIG_EXIT: config_free(&cfg); return 0;
    case CONFIG_ERROR: fprintf(stderr, "switchboard-dispatcher: %s\n", err); return 2;
    case CONFIG_OK: break;
    }
    if (!log_setup(cfg.log_level, cfg.log_format, "dispatcher"))
        die("bad log_level or log_format", "level=%s format=%s", cfg.log_level, cfg.log_format);

    /* Signals go to the main thread only (sigwait below); the loops and
     * library threads inherit the blocked mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() != 0)
        die("libevent has no pthreads support", "%s", "");
    if (mysql_library_init(0, NULL, NULL) != 0)
        die("cannot initialise the MySQL client library", "%s", "");

    if (!trace_setup("switchboard-dispatcher", &cfg, err, sizeof err))
        die("bad configuration", "err=\"%s\"", err);
    struct dispatcher d = {0};
    if (!dispatcher_start(&d, &cfg, err, sizeof err))
        die("cannot start", "err=\"%s\"", err);
    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("signal received", "signal=%d", sig);
    dispatcher_stop(&d);
    trace_shutdown();
    mysql_library_end();
    log_info("dispatcher stopped", "%s", "");
    config_free(&cfg);
    libevent_global_shutdown();
    return 0;
}
