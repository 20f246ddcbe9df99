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

/* A create's fields, read from its payload once: the sort compares them
 * ~n log n times, and a cJSON lookup per comparison was a tenth of the
 * worker's CPU. */
struct create {
    const struct job *job;
    const char *token;
    int64_t chat, number;
};

static void create_of(const struct job *j, struct create *c)
{
    c->job = j;
    c->token = json_str(j->env.payload, "application_token", "");
    c->chat = json_i64(j->env.payload, "chat_number", 0);
    c->number = json_i64(j->env.payload, "number", 0);
}

/* Orders creates by (token, chat, number): groups become runs. */
static int cmp_create(const void *a, const void *b)
{
    const struct create *x = a, *y = b;
    int c = strcmp(x->token, y->token);
    if (c)
        return c;
    if (x->chat != y->chat)
        return x->chat < y->chat ? -1 : 1;
    return x->number < y->number ? -1 : x->number > y->number;
}

static void append_time(struct strbuf *sql, int64_t ms)
{
    char frac[5] = {'.', (char)('0' + ms % 1000 / 100), (char)('0' + ms % 100 / 10),
                    (char)('0' + ms % 10), ')'};
    strbuf_append(sql, "FROM_UNIXTIME(", 14);
    strbuf_append_i64(sql, ms / 1000);
    strbuf_append(sql, frac, sizeof frac);
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
    struct create *sel = malloc(n * sizeof *sel);
    if (sel == NULL) {
        sql->failed = true;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(jobs[i]->env.type, type) == 0)
            create_of(jobs[i], &sel[k++]);
    qsort(sel, k, sizeof *sel, cmp_create);
    for (size_t i = 0; i < k;) {
        size_t end = i + 1;
        while (end < k && strcmp(sel[end].token, sel[i].token) == 0 &&
               (!messages || sel[end].chat == sel[i].chat))
            end++;
        strbuf_appendf(sql, messages ? "INSERT IGNORE INTO messages (application_token,"
                                       " chat_number, number, body, created_at, updated_at) VALUES "
                                     : "INSERT IGNORE INTO chats (application_token, number,"
                                       " created_at, updated_at) VALUES ");
        for (size_t g = i; g < end; g++) {
            strbuf_append(sql, g > i ? ",(" : "(", g > i ? 2 : 1);
            db_quote(sql, conn, sel[g].token);
            strbuf_append(sql, ",", 1);
            if (messages) {
                strbuf_append_i64(sql, sel[g].chat);
                strbuf_append(sql, ",", 1);
                strbuf_append_i64(sql, sel[g].number);
                strbuf_append(sql, ",", 1);
                db_quote(sql, conn, json_str(sel[g].job->env.payload, "body", ""));
            } else {
                strbuf_append_i64(sql, sel[g].number);
            }
            strbuf_append(sql, ",", 1);
            append_time(sql, sel[g].job->env.created_at);
            strbuf_append(sql, ",", 1);
            append_time(sql, sel[g].job->env.created_at);
            strbuf_append(sql, ")", 1);
        }
        strbuf_appendf(sql, ";SET @n = ROW_COUNT();");
        if (messages) {
            strbuf_appendf(sql, "INSERT INTO chat_count_deltas (application_token, chat_number, delta)"
                                " SELECT ");
            db_quote(sql, conn, sel[i].token);
            strbuf_appendf(sql, ", %lld, @n", (long long)sel[i].chat);
        } else {
            strbuf_appendf(sql, "INSERT INTO app_count_deltas (application_token, delta) SELECT ");
            db_quote(sql, conn, sel[i].token);
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
        struct create u;
        create_of(j, &u); /* an update names its message the same way */
        strbuf_appendf(sql, "INSERT INTO messages (application_token, chat_number, number, body,"
                            " created_at, updated_at) VALUES (");
        db_quote(sql, conn, u.token);
        strbuf_appendf(sql, ",%lld,%lld,", (long long)u.chat, (long long)u.number);
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
        db_quote(sql, conn, u.token);
        strbuf_appendf(sql, ", %lld, @n FROM DUAL WHERE @n > 0"
                            " ON DUPLICATE KEY UPDATE delta = delta + @n;",
                       (long long)u.chat);
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
