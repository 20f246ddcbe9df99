/* db.c - see db.h. */
#include "db.h"

#include <assert.h>
#include <errmsg.h>
#include <mysqld_error.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "log.h"

struct db {
    struct db_url url;
    MYSQL *conn;
    unsigned last_errno; /* of the last failed statement, kept past mysql_close */
};

bool db_parse_url(const char *url, struct db_url *out, char *errbuf, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->port = 3306;
    const char *p = url;
    if (strncmp(p, "mysql://", 8) != 0) {
        sb_errf(errbuf, errlen, "MySQL URL must start with mysql:// (got '%s')", url);
        return false;
    }
    p += 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = (size_t)((colon ? colon : at) - p);
        if (ulen >= sizeof out->user)
            goto bad;
        memcpy(out->user, p, ulen);
        if (colon) {
            size_t plen = (size_t)(at - colon - 1);
            if (plen >= sizeof out->pass)
                goto bad;
            memcpy(out->pass, colon + 1, plen);
        }
        p = at + 1;
    }
    int port = (int)out->port;
    if (!sb_parse_host_port(&p, out->host, sizeof out->host, &port))
        goto bad;
    out->port = (unsigned)port;
    if (*p == '/')
        p++;
    if (strlen(p) >= sizeof out->name || strchr(p, '/'))
        goto bad;
    snprintf(out->name, sizeof out->name, "%s", p);
    return true;
bad:
    sb_errf(errbuf, errlen, "cannot parse MySQL URL (want mysql://user:pass@host:port/db)");
    return false;
}

struct db *db_new(const struct db_url *url)
{
    struct db *db = calloc(1, sizeof *db);
    if (db)
        db->url = *url;
    return db;
}

void db_free(struct db *db)
{
    if (db == NULL)
        return;
    if (db->conn)
        mysql_close(db->conn);
    free(db);
}

MYSQL *db_conn(struct db *db, char *errbuf, size_t errlen)
{
    if (db->conn)
        return db->conn;
    MYSQL *m = mysql_init(NULL);
    if (m == NULL) {
        sb_errf(errbuf, errlen, "mysql_init: out of memory");
        return NULL;
    }
    /* Bounded timeouts: a dead server must surface as an error the caller
     * can retry, not a thread stuck forever. */
    unsigned connect_timeout = 3, rw_timeout = 30;
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
    mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &rw_timeout);
    mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &rw_timeout);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    /* Timestamps are written from Unix milliseconds: keep the session in UTC. */
    mysql_options(m, MYSQL_INIT_COMMAND, "SET time_zone = '+00:00'");
    if (!mysql_real_connect(m, db->url.host, db->url.user, db->url.pass,
                            *db->url.name ? db->url.name : NULL, db->url.port, NULL,
                            CLIENT_MULTI_STATEMENTS)) {
        sb_errf(errbuf, errlen, "connect %s:%u: %s", db->url.host, db->url.port, mysql_error(m));
        mysql_close(m);
        return NULL;
    }
    db->conn = m;
    return m;
}

enum db_status db_error(struct db *db, char *errbuf, size_t errlen)
{
    if (db->conn == NULL)
        return DB_TRANSIENT;
    unsigned e = mysql_errno(db->conn);
    db->last_errno = e;
    sb_errf(errbuf, errlen, "mysql %u: %s", e, mysql_error(db->conn));
    /* Lost connections, server shutdown, lock waits and deadlocks are worth
     * retrying; anything else is a property of the statement. */
    bool transient = e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST ||
                     e == CR_CONNECTION_ERROR || e == CR_CONN_HOST_ERROR ||
                     e == ER_SERVER_SHUTDOWN || e == ER_LOCK_DEADLOCK ||
                     e == ER_LOCK_WAIT_TIMEOUT || e == ER_CON_COUNT_ERROR ||
                     e == CR_COMMANDS_OUT_OF_SYNC || e == 4031 /* client idle timeout */;
    if (transient) {
        mysql_close(db->conn);
        db->conn = NULL;
        return DB_TRANSIENT;
    }
    return DB_FATAL;
}

enum db_status db_exec(struct db *db, const char *sql, char *errbuf, size_t errlen)
{
    return db_exec_count(db, sql, NULL, errbuf, errlen);
}

enum db_status db_exec_autocommit(struct db *db, const char *sql, char *errbuf, size_t errlen)
{
    for (int attempt = 1;; attempt++) {
        db->last_errno = 0;
        enum db_status st = db_exec(db, sql, errbuf, errlen);
        if (st != DB_TRANSIENT || db->last_errno != ER_LOCK_DEADLOCK ||
            attempt == DB_DEADLOCK_TRIES)
            return st;
        log_warn("deadlock victim; running the statement again", "attempt=%d of=%d",
                 attempt + 1, DB_DEADLOCK_TRIES);
    }
}

enum db_status db_exec_count(struct db *db, const char *sql, uint64_t *affected, char *errbuf,
                             size_t errlen)
{
    return db_exec_counts(db, sql, affected, affected ? 1 : 0, errbuf, errlen);
}

enum db_status db_exec_counts(struct db *db, const char *sql, uint64_t *counts, size_t ncounts,
                              char *errbuf, size_t errlen)
{
    MYSQL *m = db_conn(db, errbuf, errlen);
    if (m == NULL)
        return DB_TRANSIENT;
    if (mysql_query(m, sql) != 0)
        return db_error(db, errbuf, errlen);
    /* Drain every result set so the connection is ready for the next call;
     * each statement's count is read before moving past its result, which
     * resets it. */
    size_t i = 0;
    int more;
    do {
        if (i < ncounts)
            counts[i++] = (uint64_t)mysql_affected_rows(m);
        MYSQL_RES *res = mysql_store_result(m);
        if (res)
            mysql_free_result(res);
        else if (mysql_field_count(m) != 0)
            return db_error(db, errbuf, errlen);
        more = mysql_next_result(m);
        if (more > 0)
            return db_error(db, errbuf, errlen);
    } while (more == 0);
    while (i < ncounts)
        counts[i++] = 0;
    return DB_OK;
}

enum db_status db_query(struct db *db, const char *sql, MYSQL_RES **res, char *errbuf,
                        size_t errlen)
{
    *res = NULL;
    db->last_errno = 0;
    MYSQL *m = db_conn(db, errbuf, errlen);
    if (m == NULL)
        return DB_TRANSIENT;
    if (mysql_query(m, sql) != 0 || (*res = mysql_store_result(m)) == NULL)
        return db_error(db, errbuf, errlen);
    return DB_OK;
}

enum db_status db_exists(struct db *db, const char *sql, bool *found, char *errbuf,
                         size_t errlen)
{
    MYSQL_RES *res;
    enum db_status st = db_query(db, sql, &res, errbuf, errlen);
    if (st != DB_OK)
        return st;
    *found = mysql_num_rows(res) > 0;
    mysql_free_result(res);
    return DB_OK;
}

enum db_status db_ping(struct db *db, char *errbuf, size_t errlen)
{
    MYSQL *m = db_conn(db, errbuf, errlen);
    if (m == NULL)
        return DB_TRANSIENT;
    if (mysql_ping(m) != 0)
        return db_error(db, errbuf, errlen);
    return DB_OK;
}

static void quote_n(struct strbuf *b, MYSQL *conn, const char *s, size_t n)
{
    char *tmp = malloc(2 * n + 1);
    if (tmp == NULL) {
        b->failed = true;
        return;
    }
    unsigned long m = mysql_real_escape_string(conn, tmp, s, (unsigned long)n);
    strbuf_append(b, "'", 1);
    strbuf_append(b, tmp, m);
    strbuf_append(b, "'", 1);
    free(tmp);
}

unsigned db_last_errno(const struct db *db)
{
    return db->last_errno;
}

void db_quote(struct strbuf *b, MYSQL *conn, const char *s)
{
    quote_n(b, conn, s, strlen(s));
}

static void put_sql(struct strbuf *out, const char *s, size_t max, bool quoted, void *ud)
{
    (void)quoted;
    assert(!quoted); /* the literal carries its own quotes */
    if (s == NULL)
        strbuf_append_lit(out, "NULL");
    else
        quote_n(out, ud, s, strnlen(s, max));
}

char *db_sqlf(struct db *db, char *errbuf, size_t errlen, const char *fmt, ...)
{
    /* '%s' would be quoted twice: a mistake, never SQL to run. */
    assert(strstr(fmt, "'%") == NULL);
    MYSQL *conn = db_conn(db, errbuf, errlen);
    if (conn == NULL)
        return NULL;
    struct strbuf b = {0};
    va_list ap;
    va_start(ap, fmt);
    bool ok = fmt_walk(&b, fmt, ap, put_sql, conn);
    va_end(ap);
    char *sql = ok ? strbuf_take(&b) : NULL;
    strbuf_free(&b);
    if (sql == NULL)
        sb_errf(errbuf, errlen, ok ? "out of memory" : "internal: an SQL format it cannot take");
    return sql;
}

enum db_status db_exec_txn(struct db *db, const char *sql, char *errbuf, size_t errlen)
{
    enum db_status st = db_exec(db, "BEGIN", errbuf, errlen);
    if (st != DB_OK)
        return st;
    st = db_exec(db, sql, errbuf, errlen);
    if (st == DB_OK)
        st = db_exec(db, "COMMIT", errbuf, errlen);
    return db_txn_end(db, st);
}

enum db_status db_txn_end(struct db *db, enum db_status st)
{
    if (st != DB_FATAL)
        return st; /* committed, or the connection (and the txn) is gone */
    char ignore[ERRBUF_LEN];
    if (db_exec(db, "ROLLBACK", ignore, sizeof ignore) != DB_OK)
        return DB_TRANSIENT; /* the connection is gone, and the txn with it */
    return st;
}

static void *pool_ctx_new(void *user)
{
    /* Each thread must initialise the client library for itself. */
    mysql_thread_init();
    return db_new(user);
}

static void pool_ctx_free(void *ctx)
{
    db_free(ctx);
    mysql_thread_end();
}

struct threadpool *db_pool_new(const struct db_url *url, size_t size, char *errbuf,
                               size_t errlen)
{
    return threadpool_new(size, pool_ctx_new, pool_ctx_free, (void *)url, errbuf, errlen);
}
