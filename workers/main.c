/* switchboard-worker --role ROLE - one consumer process of one role.
 *
 * SIGTERM/SIGINT: the current batch finishes (or is left unacknowledged if
 * it cannot), stored offsets are committed as the consumer closes, the
 * producer is flushed. Nothing acknowledged is lost; nothing unfinished is
 * acknowledged. */
#include <signal.h>
#include <stdio.h>

#include "log.h"
#include "process.h"

/* Set by the signal handler, read by the worker's threads: a lock-free
 * atomic is both async-signal-safe and visible to them. */
static atomic_int g_stop;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&g_stop, 1);
}

int main(int argc, char **argv)
{
    struct sb_config cfg;
    char err[ERRBUF_LEN];
    switch (config_load(&cfg, SCOPE_WORKER, "switchboard-worker", "--role ROLE [options]", argc,
                        argv, stdout, err, sizeof err)) {
    case CONFIG_EXIT: config_free(&cfg); return 0;
    case CONFIG_ERROR: fprintf(stderr, "switchboard-worker: %s\n", err); return 2;
    case CONFIG_OK: break;
    }
    const struct role *role = role_find(cfg.role);
    if (role == NULL) {
        fprintf(stderr, "switchboard-worker: --role must be one of %s (got '%s')\n", role_names(),
                cfg.role);
        config_free(&cfg);
        return 2;
    }
    char prog[64];
    snprintf(prog, sizeof prog, "worker/%s", role->name);
    if (!log_setup(cfg.log_level, cfg.log_format, prog))
        die("bad log_level or log_format", "level=%s format=%s", cfg.log_level, cfg.log_format);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (mysql_library_init(0, NULL, NULL) != 0)
        die("cannot initialise the MySQL client library", "%s", "");

    int rc = worker_process_run(&cfg, role, prog, &g_stop);
    mysql_library_end();
    log_info("worker stopped", "role=%s", role->name);
    config_free(&cfg);
    return rc;
}
