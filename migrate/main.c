/* switchboard-migrate - applies schema/mysql/NNN_*.sql in order, once each;
 * `switchboard-migrate topics` makes the Kafka topics (topics.h).
 *
 * Applied versions are recorded in schema_migrations; a named lock keeps two
 * migrators (say, two containers starting together) from racing. MySQL DDL
 * is not transactional, so every migration is written to be re-runnable
 * (IF NOT EXISTS): a migrator killed halfway simply runs that file again.
 * The database itself is created if missing. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "config.h"
#include "log.h"
#include "db.h"
#include "seed.h"
#include "topics.h"

#define WAIT_FOR_SERVER_MS 60000

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of *.sql names in dir; caller frees each and the array. */
static char **list_migrations(const char *dir, size_t *count, char *errbuf, size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        sb_errf(errbuf, errlen, "open %s: %s", dir, strerror(errno));
        return NULL;
    }
    size_t n = 0, cap = 16;
    char **names = malloc(cap * sizeof *names);
    struct dirent *de;
    while (names && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".sql") != 0)
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap *= 2) * sizeof *names);
            if (nn == NULL)
                break;
            names = nn;
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    if (names == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    qsort(names, n, sizeof *names, cmp_str);
    *count = n;
    return names;
}

static bool is_applied(struct db *db, const char *version, bool *applied, char *errbuf,
                       size_t errlen)
{
    char *sql = db_sqlf(db, errbuf, errlen, "SELECT 1 FROM schema_migrations WHERE version = %s", version);
    bool ok = sql && db_exists(db, sql, applied, errbuf, errlen) == DB_OK;
    free(sql);
    return ok;
}

static struct db *connect_with_wait(const struct db_url *url, char *errbuf, size_t errlen)
{
    struct db *db = db_new(url);
    struct backoff b;
    backoff_init(&b, 200, 2000);
    int64_t deadline = sb_mono_ms() + WAIT_FOR_SERVER_MS;
    while (db && db_conn(db, errbuf, errlen) == NULL) {
        if (sb_mono_ms() > deadline) {
            db_free(db);
            return NULL;
        }
        log_warn("waiting for MySQL", "err=\"%s\"", errbuf);
        sb_sleep_ms_unless(backoff_next(&b), NULL);
    }
    return db;
}

static bool migrate_up(const struct sb_config *cfg, bool dry, char *errbuf, size_t errlen)
{
    bool ok = false;
    struct db *db = NULL;
    char **names = NULL;
    size_t n = 0;
    char *sql = NULL;
    struct db_url url, server;
    if (!db_parse_url(cfg->mysql_url, &url, errbuf, errlen))
        return false;

    /* Create the database first, through a connection without one. */
    server = url;
    server.name[0] = '\0';
    db = connect_with_wait(&server, errbuf, errlen);
    if (db == NULL)
        goto done;
    char create[200];
    snprintf(create, sizeof create,
             "CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
             url.name);
    if (!dry && db_exec(db, create, errbuf, errlen) != DB_OK)
        goto done;
    db_free(db);
    db = connect_with_wait(&url, errbuf, errlen);
    if (db == NULL)
        goto done;
    if (db_conn(db, errbuf, errlen) == NULL)
        goto done;
    if (db_exec(db, "SELECT GET_LOCK('switchboard_migrate', 60)", errbuf, errlen) != DB_OK ||
        db_exec(db,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version VARCHAR(255) NOT NULL PRIMARY KEY,"
                " applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB",
                errbuf, errlen) != DB_OK)
        goto done;

    char dir[1024];
    snprintf(dir, sizeof dir, "%s/mysql", cfg->schema_dir);
    names = list_migrations(dir, &n, errbuf, errlen);
    if (names == NULL)
        goto done;
    int applied_now = 0;
    for (size_t i = 0; i < n; i++) {
        bool applied;
        if (!is_applied(db, names[i], &applied, errbuf, errlen))
            goto done;
        if (applied)
            continue;
        if (dry) {
            printf("pending %s\n", names[i]);
            continue;
        }
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        sql = sb_read_file(path, NULL, errbuf, errlen);
        if (sql == NULL)
            goto done;
        char inner[ERRBUF_LEN];
        if (db_exec(db, sql, inner, sizeof inner) != DB_OK) {
            sb_errf(errbuf, errlen, "%s: %s", names[i], inner);
            goto done;
        }
        free(sql);
        sql = NULL;
        char *ins = db_sqlf(db, errbuf, errlen, "INSERT IGNORE INTO schema_migrations(version) VALUES (%s)",
                            names[i]);
        bool inserted = ins && db_exec(db, ins, errbuf, errlen) == DB_OK;
        free(ins);
        if (!inserted)
            goto done;
        log_info("migration applied", "version=%s", names[i]);
        applied_now++;
    }
    log_info("schema up to date", "applied=%d known=%zu", applied_now, n);
    ok = true;
done:
    free(sql);
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    if (db) {
        char ignore[ERRBUF_LEN];
        if (db_exec(db, "SELECT RELEASE_LOCK('switchboard_migrate')", ignore, sizeof ignore) != DB_OK)
            log_debug("release lock failed", "err=\"%s\"", ignore);
    }
    db_free(db);
    return ok;
}

int main(int argc, char **argv)
{
    struct sb_config cfg;
    char err[ERRBUF_LEN];
    switch (config_load(&cfg, SCOPE_MIGRATE, "switchboard-migrate", "[options] [up|status|seed|topics]", argc,
                        argv, stdout, err, sizeof err)) {
    case CONFIG_EXIT: config_free(&cfg); return 0;
    case CONFIG_ERROR: fprintf(stderr, "switchboard-migrate: %s\n", err); return 2;
    case CONFIG_OK: break;
    }
    int rc = 2;
    if (!log_setup(cfg.log_level, cfg.log_format, "migrate")) {
        fprintf(stderr, "switchboard-migrate: bad log_level or log_format\n");
        goto done;
    }
    const char *cmd = cfg.nargs > 0 ? cfg.args[0] : "up";
    if (cfg.nargs > 1 || (strcmp(cmd, "up") != 0 && strcmp(cmd, "status") != 0 &&
                          strcmp(cmd, "seed") != 0 && strcmp(cmd, "topics") != 0)) {
        fprintf(stderr, "usage: switchboard-migrate [options] [up|status|seed|topics]\n");
        goto done;
    }
    if (strcmp(cmd, "topics") == 0) { /* Kafka only: no MySQL */
        rc = topics_run(&cfg, stdout);
        goto done;
    }
    if (mysql_library_init(0, NULL, NULL) != 0) {
        fprintf(stderr, "switchboard-migrate: cannot initialise the MySQL client library\n");
        goto done;
    }
    rc = migrate_up(&cfg, strcmp(cmd, "status") == 0, err, sizeof err) ? 0 : 1;
    if (rc != 0) {
        log_error("migration failed", "err=\"%s\"", err);
    } else if (strcmp(cmd, "seed") == 0) {
        struct db_url url;
        struct db *db = NULL;
        if (!db_parse_url(cfg.mysql_url, &url, err, sizeof err) ||
            (db = connect_with_wait(&url, err, sizeof err)) == NULL ||
            !seed_run(&cfg, db, err, sizeof err)) {
            log_error("seed failed", "err=\"%s\"", err);
            rc = 1;
        }
        db_free(db);
    }
    mysql_library_end();
done:
    config_free(&cfg);
    return rc;
}
