/* persister.c - the persister role: chat jobs and pings into MySQL.
 *
 * One transaction per batch, built as one multi-statement round trip:
 *   1. pings       one INSERT IGNORE
 *   2. chats       per application: INSERT IGNORE of its new chats, then
 *                  the number of rows really inserted (ROW_COUNT) added to
 *                  app_count_deltas
 *   3. messages    per chat: the same, into chat_count_deltas
 *   4. updates     in log order, each an upsert; if it arrives before its
 *                  create it inserts the row (counted) and the create is
 *                  then ignored, so the update wins in either order
 * Replaying a batch changes nothing: creates hit their primary keys, an
 * update rewrites the same body, and deltas count only new rows. Groups are
 * written in key order so concurrent transactions lock rows in one order. */
#include <stdlib.h>
#include <string.h>

#include "persister.h"

static const char *job_token(const struct job *j)
{
    return json_str(j->env.payload, "application_token", "");
}

static int64_t job_chat(const struct job *j)
{
    return json_i64(j->env.payload, "chat_number", 0);
}

static int64_t job_number(const struct job *j)
{
    return json_i64(j->env.payload, "number", 0);
}

/* Orders creates by (token, chat, number): groups become runs. */
static int cmp_create(const void *a, const void *b)
{
    const struct job *x = *(const struct job *const *)a, *y = *(const struct job *const *)b;
    int c = strcmp(job_token(x), job_token(y));
    if (c)
        return c;
    if (job_chat(x) != job_chat(y))
        return job_chat(x) < job_chat(y) ? -1 : 1;
    return job_number(x) < job_number(y) ? -1 : job_number(x) > job_number(y);
}

static void append_time(struct strbuf *sql, int64_t ms)
{
    strbuf_appendf(sql, "FROM_UNIXTIME(%lld.%03lld)", (long long)(ms / 1000), (long long)(ms % 1000));
}

static void add_pings(struct strbuf *sql, MYSQL *conn, struct job **jobs, size_t n)
{
    bool first = true;
    int64_t now = sb_now_ms();
    for (size_t i = 0; i < n; i++) {
        const struct job *j = jobs[i];
        if (strcmp(j->env.type, "system.ping") != 0)
            continue;
        strbuf_appendf(sql, "%s(", first ? "INSERT IGNORE INTO pipeline_pings (request_id, note,"
                                           " kafka_topic, kafka_partition, kafka_offset,"
                                           " created_at_ms, consumed_at_ms) VALUES "
                                         : ",");
        first = false;
        db_quote(sql, conn, j->env.request_id);
        strbuf_append(sql, ",", 1);
        db_quote(sql, conn, json_str(j->env.payload, "note", ""));
        strbuf_append(sql, ",", 1);
        db_quote(sql, conn, rd_kafka_topic_name(j->msg->rkt));
        strbuf_appendf(sql, ",%d,%lld,%lld,%lld)", (int)j->msg->partition,
                       (long long)j->msg->offset, (long long)j->env.created_at, (long long)now);
    }
    if (!first)
        strbuf_append(sql, ";", 1);
}

/* Creates of one type, sorted, one INSERT IGNORE + delta per group. */
static void add_creates(struct strbuf *sql, MYSQL *conn, struct job **jobs, size_t n,
                        bool messages)
{
    const char *type = messages ? "message.create" : "chat.create";
    struct job **sel = malloc(n * sizeof *sel);
    if (sel == NULL) {
        sql->failed = true;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(jobs[i]->env.type, type) == 0)
            sel[k++] = jobs[i];
    qsort(sel, k, sizeof *sel, cmp_create);
    for (size_t i = 0; i < k;) {
        size_t end = i + 1;
        while (end < k && strcmp(job_token(sel[end]), job_token(sel[i])) == 0 &&
               (!messages || job_chat(sel[end]) == job_chat(sel[i])))
            end++;
        strbuf_appendf(sql, messages ? "INSERT IGNORE INTO messages (application_token,"
                                       " chat_number, number, body, created_at, updated_at) VALUES "
                                     : "INSERT IGNORE INTO chats (application_token, number,"
                                       " created_at, updated_at) VALUES ");
        for (size_t g = i; g < end; g++) {
            strbuf_append(sql, g > i ? ",(" : "(", g > i ? 2 : 1);
            db_quote(sql, conn, job_token(sel[g]));
            if (messages) {
                strbuf_appendf(sql, ",%lld,%lld,", (long long)job_chat(sel[g]),
                               (long long)job_number(sel[g]));
                db_quote(sql, conn, json_str(sel[g]->env.payload, "body", ""));
            } else {
                strbuf_appendf(sql, ",%lld", (long long)job_number(sel[g]));
            }
            strbuf_append(sql, ",", 1);
            append_time(sql, sel[g]->env.created_at);
            strbuf_append(sql, ",", 1);
            append_time(sql, sel[g]->env.created_at);
            strbuf_append(sql, ")", 1);
        }
        strbuf_appendf(sql, ";SET @n = ROW_COUNT();");
        if (messages) {
            strbuf_appendf(sql, "INSERT INTO chat_count_deltas (application_token, chat_number, delta)"
                                " SELECT ");
            db_quote(sql, conn, job_token(sel[i]));
            strbuf_appendf(sql, ", %lld, @n", (long long)job_chat(sel[i]));
        } else {
            strbuf_appendf(sql, "INSERT INTO app_count_deltas (application_token, delta) SELECT ");
            db_quote(sql, conn, job_token(sel[i]));
            strbuf_appendf(sql, ", @n");
        }
        strbuf_appendf(sql, " FROM DUAL WHERE @n > 0 ON DUPLICATE KEY UPDATE delta = delta + @n;");
        i = end;
    }
    free(sel);
}

static void add_updates(struct strbuf *sql, MYSQL *conn, struct job **jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct job *j = jobs[i];
        if (strcmp(j->env.type, "message.update") != 0)
            continue;
        strbuf_appendf(sql, "INSERT INTO messages (application_token, chat_number, number, body,"
                            " created_at, updated_at) VALUES (");
        db_quote(sql, conn, job_token(j));
        strbuf_appendf(sql, ",%lld,%lld,", (long long)job_chat(j), (long long)job_number(j));
        db_quote(sql, conn, json_str(j->env.payload, "body", ""));
        strbuf_append(sql, ",", 1);
        append_time(sql, j->env.created_at);
        strbuf_append(sql, ",", 1);
        append_time(sql, j->env.created_at);
        /* ROW_COUNT is 1 only when the upsert inserted: count that row. */
        strbuf_appendf(sql, ") ON DUPLICATE KEY UPDATE body = VALUES(body),"
                            " updated_at = VALUES(updated_at);"
                            "SET @n = IF(ROW_COUNT() = 1, 1, 0);"
                            "INSERT INTO chat_count_deltas (application_token, chat_number, delta)"
                            " SELECT ");
        db_quote(sql, conn, job_token(j));
        strbuf_appendf(sql, ", %lld, @n FROM DUAL WHERE @n > 0"
                            " ON DUPLICATE KEY UPDATE delta = delta + @n;",
                       (long long)job_chat(j));
    }
}

enum db_status persister_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                                size_t errlen)
{
    MYSQL *conn = db_conn(w->db, errbuf, errlen);
    if (conn == NULL)
        return DB_TRANSIENT;
    struct strbuf sql = {0};
    add_pings(&sql, conn, jobs, n);
    add_creates(&sql, conn, jobs, n, false);
    add_creates(&sql, conn, jobs, n, true);
    add_updates(&sql, conn, jobs, n);
    size_t len = sql.len;
    char *text = strbuf_take(&sql);
    if (text == NULL) {
        sb_errf(errbuf, errlen, "out of memory building a batch of %zu jobs", n);
        return DB_TRANSIENT;
    }
    enum db_status st = len ? db_exec_txn(w->db, text, errbuf, errlen) : DB_OK;
    free(text);
    return st;
}
