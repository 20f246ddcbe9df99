/* switchboard-counts - the chats_count / messages_count roll-up.
 *
 * One shot (for cron): folds every pending count change, prints a summary
 * and exits 0, or 1 if the database failed. With --every N it repeats every
 * N seconds until SIGTERM/SIGINT, riding out database outages, and serves
 * /healthz and /metrics on status_listen if set (statusport.h). On a
 * terminal it shows progress as it goes. See rollup.h for why the counts
 * are exact and the cost follows what changed. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "rollup.h"
#include "statusport.h"

static atomic_int g_stop; /* lock-free: safe to set from the signal handler */

struct counts_metrics {
    struct metric *ok, *failed, *last_success, *last_ms;
};

/* Status port, on its thread: how long ago a roll-up last committed. */
static void status_health(void *arg, cJSON *body)
{
    const struct counts_metrics *m = arg;
    statusport_add_age(body, "seconds_since_success", m->last_success);
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&g_stop, 1);
}

static void show_progress(const struct rollup_stats *s)
{
    fprintf(stderr, "\rrolling up: %lld chats, %lld applications", (long long)s->chats,
            (long long)s->apps);
}

int main(int argc, char **argv)
{
    struct sb_config cfg;
    char err[ERRBUF_LEN];
    switch (config_load(&cfg, SCOPE_COUNTS, "switchboard-counts", "[--every SECONDS] [options]",
                        argc, argv, stdout, err, sizeof err)) {
    case CONFIG_EXIT: config_free(&cfg); return 0;
    case CONFIG_ERROR: fprintf(stderr, "switchboard-counts: %s\n", err); return 2;
    case CONFIG_OK: break;
    }
    int rc = 1;
    struct db *db = NULL;
    struct statusport *status = NULL;
    struct counts_metrics m = {
        .ok = metrics_counter("switchboard_counts_runs_total", "outcome=\"ok\"", "roll-up runs"),
        .failed = metrics_counter("switchboard_counts_runs_total", "outcome=\"failed\"", NULL),
        .last_success = metrics_gauge("switchboard_counts_last_success_timestamp_seconds", "",
                                      "when a roll-up last committed (unix seconds)"),
        .last_ms = metrics_gauge("switchboard_counts_last_run_milliseconds", "",
                                 "how long the last roll-up took"),
    };
    if (!log_setup(cfg.log_level, cfg.log_format, "counts")) {
        fprintf(stderr, "switchboard-counts: bad log_level or log_format\n");
        goto done;
    }
    if (cfg.nargs > 0) {
        fprintf(stderr, "switchboard-counts: unexpected argument '%s' (see --help)\n", cfg.args[0]);
        rc = 2;
        goto done;
    }
    struct db_url url;
    if (!db_parse_url(cfg.mysql_url, &url, err, sizeof err)) {
        fprintf(stderr, "switchboard-counts: %s\n", err);
        rc = 2;
        goto done;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (mysql_library_init(0, NULL, NULL) != 0 || (db = db_new(&url)) == NULL) {
        fprintf(stderr, "switchboard-counts: cannot initialise the MySQL client\n");
        goto done;
    }
    if (*cfg.status_listen && cfg.every_s > 0) {
        const struct statusport_source src = {"counts", status_health, NULL, &m};
        if ((status = statusport_new(cfg.status_listen, &src, err, sizeof err)) == NULL) {
            fprintf(stderr, "switchboard-counts: status_listen: %s\n", err);
            rc = 2;
            goto done;
        }
    } else if (*cfg.status_listen) {
        log_warn("status_listen is served with --every only; this run is one shot", "addr=%s",
                 cfg.status_listen);
    }
    bool tty = isatty(STDERR_FILENO);
    do {
        struct rollup_stats stats;
        int64_t t0 = sb_mono_us();
        enum db_status st = rollup_run(db, cfg.rollup_chunk, &stats, tty ? show_progress : NULL,
                                       err, sizeof err);
        if (tty && (stats.chats || stats.apps))
            fputc('\n', stderr);
        int64_t took_us = sb_mono_us() - t0;
        metric_set(m.last_ms, took_us / 1000);
        metric_add(st == DB_OK ? m.ok : m.failed, 1);
        if (st == DB_OK) {
            metric_set(m.last_success, sb_now_ms() / 1000);
            log_info("roll-up done", "chats=%lld applications=%lld ms=%.3f",
                     (long long)stats.chats, (long long)stats.apps, (double)took_us / 1000);
            rc = 0;
        } else {
            log_error("roll-up failed", "err=\"%s\" chats=%lld applications=%lld", err,
                      (long long)stats.chats, (long long)stats.apps);
            rc = 1;
        }
        if (cfg.every_s > 0)
            sb_sleep_ms_unless(cfg.every_s * 1000, &g_stop);
    } while (cfg.every_s > 0 && !atomic_load(&g_stop));
    if (cfg.every_s > 0)
        rc = 0; /* periodic mode ends on a signal, by design */
done:
    statusport_free(status);
    db_free(db);
    config_free(&cfg);
    return rc;
}
