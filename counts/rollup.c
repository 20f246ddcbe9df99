/* rollup.c - see rollup.h. */
#include "rollup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

/* One table's deltas: the key columns, the counter they fold into. */
struct delta_table {
    const char *deltas;  /* delta table */
    const char *target;  /* counted table */
    const char *counter; /* its count column */
    const char *join;    /* join condition t (target) ~ d (deltas) */
    bool two_keys;       /* key is (application_token, chat_number) */
};

static const struct delta_table app_deltas = {
    "app_count_deltas", "applications", "chats_count", "t.token = d.application_token", false};
static const struct delta_table chat_deltas = {
    "chat_count_deltas", "chats", "messages_count",
    "t.application_token = d.application_token AND t.number = d.chat_number", true};

/* Folds one chunk; *rows = rows folded (0 = nothing left). */
static enum db_status fold_chunk(struct db *db, const struct delta_table *t, int64_t chunk,
                                 int64_t *rows, char *errbuf, size_t errlen)
{
    *rows = 0;
    MYSQL *conn = db_conn(db, errbuf, errlen);
    if (conn == NULL)
        return DB_TRANSIENT;
    enum db_status st = db_exec(db, "BEGIN", errbuf, errlen);
    if (st != DB_OK)
        return st;
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT application_token%s FROM %s ORDER BY application_token%s"
             " LIMIT %lld FOR UPDATE", t->two_keys ? ", chat_number" : "", t->deltas,
             t->two_keys ? ", chat_number" : "", (long long)chunk);
    MYSQL_RES *res = NULL;
    st = db_query(db, sql, &res, errbuf, errlen);
    if (st != DB_OK)
        goto fail;
    char last_token[64] = "";
    long long last_chat = 0;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        snprintf(last_token, sizeof last_token, "%s", row[0]);
        if (t->two_keys)
            last_chat = strtoll(row[1], NULL, 10);
        (*rows)++;
    }
    mysql_free_result(res);
    if (*rows == 0)
        return db_exec(db, "COMMIT", errbuf, errlen);

    /* The same range as locked above: everything up to the last key. */
    struct strbuf upto = {0};
    if (t->two_keys) {
        strbuf_appendf(&upto, "(d.application_token < ");
        db_quote(&upto, conn, last_token);
        strbuf_appendf(&upto, " OR (d.application_token = ");
        db_quote(&upto, conn, last_token);
        strbuf_appendf(&upto, " AND d.chat_number <= %lld))", last_chat);
    } else {
        strbuf_appendf(&upto, "d.application_token <= ");
        db_quote(&upto, conn, last_token);
    }
    struct strbuf q = {0};
    const char *range = upto.p ? upto.p : "FALSE";
    strbuf_appendf(&q, "UPDATE %s t JOIN %s d ON %s SET t.%s = t.%s + d.delta WHERE %s;",
                   t->target, t->deltas, t->join, t->counter, t->counter, range);
    strbuf_appendf(&q, "DELETE d FROM %s d WHERE %s;", t->deltas, range);
    if (upto.failed)
        q.failed = true;
    strbuf_free(&upto);
    char *text = strbuf_take(&q);
    if (text == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        st = DB_TRANSIENT;
        goto fail;
    }
    st = db_exec(db, text, errbuf, errlen);
    free(text);
    if (st != DB_OK)
        goto fail;
    return db_exec(db, "COMMIT", errbuf, errlen);
fail:
    if (st == DB_FATAL) {
        char ignore[ERRBUF_LEN];
        if (db_exec(db, "ROLLBACK", ignore, sizeof ignore) != DB_OK)
            return DB_TRANSIENT;
    }
    return st;
}

enum db_status rollup_run(struct db *db, int64_t chunk, struct rollup_stats *stats,
                          void (*progress)(const struct rollup_stats *s), char *errbuf,
                          size_t errlen)
{
    memset(stats, 0, sizeof *stats);
    const struct delta_table *tables[] = {&chat_deltas, &app_deltas};
    int64_t *counters[] = {&stats->chats, &stats->apps};
    for (int i = 0; i < 2; i++) {
        for (;;) {
            int64_t rows;
            enum db_status st = fold_chunk(db, tables[i], chunk, &rows, errbuf, errlen);
            if (st != DB_OK)
                return st;
            if (rows == 0)
                break;
            *counters[i] += rows;
            if (progress)
                progress(stats);
        }
    }
    return DB_OK;
}
