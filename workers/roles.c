/* roles.c - the worker roles and what each does with its jobs.
 *
 * Each role is a consumer group ("switchboard-<role>") over its topics, so
 * several processes of one role share the partitions and every role sees
 * every job of its topics. Jobs of types a role does not act on pass
 * through (they are another role's business on the same topic). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "worker.h"

/* Escapes s for a single-quoted SQL literal on conn. */
static void sql_quote(struct strbuf *b, MYSQL *conn, const char *s)
{
    size_t n = strlen(s);
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

/* Runs sql inside BEGIN ... COMMIT; a failure rolls back. */
static enum db_status exec_in_txn(struct db *db, const char *sql, char *errbuf, size_t errlen)
{
    enum db_status st = db_exec(db, "BEGIN", errbuf, errlen);
    if (st != DB_OK)
        return st;
    st = db_exec(db, sql, errbuf, errlen);
    if (st == DB_OK)
        st = db_exec(db, "COMMIT", errbuf, errlen);
    if (st == DB_FATAL) {
        char ignore[ERRBUF_LEN];
        if (db_exec(db, "ROLLBACK", ignore, sizeof ignore) != DB_OK)
            return DB_TRANSIENT;
    }
    return st;
}

/* persister: system.ping -> pipeline_pings, one multi-row INSERT IGNORE
 * (request_id is the key, so a replayed batch changes nothing). */
static enum db_status persister_handle(struct worker *w, struct job **jobs, size_t n,
                                       char *errbuf, size_t errlen)
{
    MYSQL *conn = db_conn(w->db, errbuf, errlen);
    if (conn == NULL)
        return DB_TRANSIENT;
    struct strbuf sql = {0};
    strbuf_appendf(&sql, "INSERT IGNORE INTO pipeline_pings (request_id, note, kafka_topic,"
                         " kafka_partition, kafka_offset, created_at_ms, consumed_at_ms) VALUES ");
    int64_t now = sb_now_ms();
    for (size_t i = 0; i < n; i++) {
        const struct job *j = jobs[i];
        strbuf_append(&sql, i ? ",(" : "(", i ? 2 : 1);
        sql_quote(&sql, conn, j->env.request_id);
        strbuf_append(&sql, ",", 1);
        sql_quote(&sql, conn, json_str(j->env.payload, "note", ""));
        strbuf_append(&sql, ",", 1);
        sql_quote(&sql, conn, rd_kafka_topic_name(j->msg->rkt));
        strbuf_appendf(&sql, ",%d,%lld,%lld,%lld)", (int)j->msg->partition,
                       (long long)j->msg->offset, (long long)j->env.created_at, (long long)now);
    }
    char *text = strbuf_take(&sql);
    if (text == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return DB_TRANSIENT;
    }
    enum db_status st = exec_in_txn(w->db, text, errbuf, errlen);
    free(text);
    return st;
}

/* Roles whose jobs arrive with later issues: nothing to act on yet, so
 * every valid job passes and every invalid one is dead-lettered. */
static enum db_status nothing_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                                     size_t errlen)
{
    (void)w;
    (void)jobs;
    (void)n;
    (void)errbuf;
    (void)errlen;
    return DB_OK;
}

static const char *const chat_topics[] = {"chat.commands"};
static const char *const notify_topics[] = {"notify.requests", "notify.retry"};
static const char *const phonebook_topics[] = {"phonebook.commands"};
static const char *const persister_types[] = {"system.ping"};

static const struct role roles[] = {
    {"persister", chat_topics, 1, persister_types, 1, true, persister_handle},
    {"indexer", chat_topics, 1, NULL, 0, false, nothing_handle},
    {"notifier", notify_topics, 2, NULL, 0, true, nothing_handle},
    {"phonebook", phonebook_topics, 1, NULL, 0, true, nothing_handle},
};

const struct role *role_find(const char *name)
{
    for (size_t i = 0; i < SB_ARRAY_LEN(roles); i++)
        if (strcmp(roles[i].name, name) == 0)
            return &roles[i];
    return NULL;
}

const char *role_names(void)
{
    return "persister | indexer | notifier | phonebook";
}
