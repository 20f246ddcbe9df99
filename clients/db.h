/* db.h - MySQL/MariaDB connections through the libmysqlclient API.
 *
 * A struct db is one connection that reconnects lazily: after an error that
 * means "the server went away" the connection is dropped and the next call
 * dials again. Callers decide whether to retry (DB_TRANSIENT) or give up on
 * the statement (DB_FATAL, e.g. a syntax or constraint error). One db per
 * thread; the dispatcher's pool gives each pool thread its own. */
#ifndef SB_DB_H
#define SB_DB_H

#include <mysql.h>

#include "strbuf.h"
#include "threadpool.h"
#include "util.h"

struct db_url {
    char host[128];
    unsigned port;
    char user[64];
    char pass[128];
    char name[64];
};

enum db_status { DB_OK, DB_TRANSIENT, DB_FATAL };

bool db_parse_url(const char *url, struct db_url *out, char *errbuf, size_t errlen) SB_NODISCARD;

struct db;
/* Connects on first use (db_conn); NULL only when out of memory. */
struct db *db_new(const struct db_url *url);
void db_free(struct db *db);
/* The live connection, dialing if needed; NULL (and errbuf) if unreachable. */
MYSQL *db_conn(struct db *db, char *errbuf, size_t errlen);
/* Runs one statement (results discarded). */
enum db_status db_exec(struct db *db, const char *sql, char *errbuf, size_t errlen) SB_NODISCARD;
/* The same, telling how many rows the (first) statement changed. */
enum db_status db_exec_count(struct db *db, const char *sql, uint64_t *affected, char *errbuf,
                             size_t errlen) SB_NODISCARD;
/* Runs one or more statements; counts[i] is the number of rows statement i
 * changed (for the first ncounts statements; 0 for any not run). */
enum db_status db_exec_counts(struct db *db, const char *sql, uint64_t *counts, size_t ncounts,
                              char *errbuf, size_t errlen) SB_NODISCARD;
/* Runs one statement in autocommit mode: never inside a transaction the
 * caller began. InnoDB rolls a deadlock victim's transaction back whole,
 * which here is just this statement, as if it never ran; so a victim is run
 * again, up to DB_DEADLOCK_TRIES times in all. A deadlock is an ordinary
 * outcome of concurrent writers (a worker's transaction on the same rows),
 * not an outage to report to a client as one. */
enum { DB_DEADLOCK_TRIES = 3 };
enum db_status db_exec_autocommit(struct db *db, const char *sql, char *errbuf,
                                  size_t errlen) SB_NODISCARD;
/* The MySQL error number of the last failed statement (0: none). */
unsigned db_last_errno(const struct db *db);
/* Classifies the last error of conn; drops the connection if transient. */
enum db_status db_error(struct db *db, char *errbuf, size_t errlen);
/* Runs a query that returns rows; *res is the caller's to free. */
enum db_status db_query(struct db *db, const char *sql, MYSQL_RES **res, char *errbuf,
                        size_t errlen) SB_NODISCARD;
/* Runs a query and tells whether it returned any row. */
enum db_status db_exists(struct db *db, const char *sql, bool *found, char *errbuf,
                         size_t errlen) SB_NODISCARD;
enum db_status db_ping(struct db *db, char *errbuf, size_t errlen) SB_NODISCARD;

/* Appends s to b as a quoted SQL string literal (escaped for conn). */
void db_quote(struct strbuf *b, MYSQL *conn, const char *s);
/* SQL text built like printf, with every %s written as a quoted, escaped
 * literal (db_quote; NULL as NULL): "WHERE token = %s", never '%s'. The
 * one way request data reaches SQL text. malloc'd; NULL (and errbuf) if
 * there is no connection to escape for, or no memory. */
char *db_sqlf(struct db *db, char *errbuf, size_t errlen, const char *fmt, ...) SB_PRINTF(4, 5);
/* Runs sql (one or more statements) inside BEGIN ... COMMIT; on a failure
 * the transaction is rolled back (or dropped with the connection). */
enum db_status db_exec_txn(struct db *db, const char *sql, char *errbuf, size_t errlen) SB_NODISCARD;
/* Ends a transaction the caller began with BEGIN after its statements
 * returned st: DB_FATAL rolls it back (DB_TRANSIENT if even that fails);
 * any other status is returned as it is. */
enum db_status db_txn_end(struct db *db, enum db_status st) SB_NODISCARD;

/* A thread pool whose threads each own a struct db. The threads read url
 * as they start, so it must outlive the pool. */
struct threadpool *db_pool_new(const struct db_url *url, size_t size, char *errbuf,
                               size_t errlen);

#endif
