/* persister.c - the persister role: chat jobs and pings into MySQL.
 *
 * One transaction per batch. Creates are INSERT IGNOREs (a replayed create
 * hits its primary key and changes nothing), and every row really inserted
 * adds one to its chat's (or application's) count delta, which is what makes
 * the roll-up exact and incremental. Two ways to write a batch:
 *
 * Fast (almost every batch), two round trips:
 *   1. BEGIN; pings; all new chats in one INSERT IGNORE; all new messages in
 *      one INSERT IGNORE -- then the affected-row counts are compared with the
 *      number of rows sent
 *   2. if every row was inserted, each group's delta is its row count: one
 *      multi-row upsert per delta table; then the updates; COMMIT
 * Per group (a batch that replays a create, so some row already existed):
 *   ROLLBACK, then per application (chats) and per chat (messages) an INSERT
 *   IGNORE followed by its delta from ROW_COUNT(), which counts only the rows
 *   really inserted.
 * Updates, in log order, are upserts: one that arrives before its create
 * inserts the row (counted) and the create is then ignored, so the update
 * wins in either order. Replaying a batch changes nothing. A redriven
 * update (KAFKA_REDRIVE_HEADER) changes the body only if it is newer than
 * the stored one, so an old update sent back from its dead letter does not
 * undo a later one. Rows and groups
 * are written in key order so concurrent transactions lock in one order.
 *
 * The per-group form alone costs about three statements per chat in a batch
 * (a 2,000-job batch over 640 chats is ~1,900 statements); MySQL's
 * per-statement work, not the rows, then bounds the persister. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
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

/* A DATETIME(3) literal for Unix milliseconds, in UTC like the session.
 * A literal costs MySQL ~15 % less per row than FROM_UNIXTIME(), which
 * parses a decimal and converts; the formatted second is kept because a
 * batch's jobs mostly share a few seconds. Past year 9999 a literal would
 * be invalid, so such times still go through FROM_UNIXTIME(). */
static void append_time(struct strbuf *sql, int64_t ms)
{
    static _Thread_local int64_t cached_sec = -1;
    static _Thread_local char day_time[24]; /* 'YYYY-MM-DD HH:MM:SS */
    int64_t sec = ms / 1000;
    char frac[6] = {'.', (char)('0' + ms % 1000 / 100), (char)('0' + ms % 100 / 10),
                    (char)('0' + ms % 10), '\'', ')'};
    if (sec != cached_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        if (sec > INT64_C(253402300799) || gmtime_r(&t, &tm) == NULL) {
            strbuf_append(sql, "FROM_UNIXTIME(", 14);
            strbuf_append_i64(sql, sec);
            frac[4] = ')';
            strbuf_append(sql, frac, 5);
            return;
        }
        strftime(day_time, sizeof day_time, "'%Y-%m-%d %H:%M:%S", &tm);
        cached_sec = sec;
    }
    strbuf_append(sql, day_time, 20);
    strbuf_append(sql, frac, 5);
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

/* A batch's creates of one type, sorted by key so that groups (one
 * application's chats, one chat's messages) are runs. */
struct creates {
    struct create *v;
    size_t n;
    bool messages;
};

static bool creates_select(struct creates *c, struct job **jobs, size_t n, bool messages)
{
    const char *type = messages ? "message.create" : "chat.create";
    c->messages = messages;
    c->n = 0;
    c->v = malloc((n ? n : 1) * sizeof *c->v);
    if (c->v == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(jobs[i]->env.type, type) == 0)
            create_of(jobs[i], &c->v[c->n++]);
    qsort(c->v, c->n, sizeof *c->v, cmp_create);
    return true;
}

/* The end of the group that starts at i. */
static size_t group_end(const struct creates *c, size_t i)
{
    size_t end = i + 1;
    while (end < c->n && strcmp(c->v[end].token, c->v[i].token) == 0 &&
           (!c->messages || c->v[end].chat == c->v[i].chat))
        end++;
    return end;
}

/* INSERT IGNORE of creates [from, to). */
static void add_insert(struct strbuf *sql, MYSQL *conn, const struct creates *c, size_t from,
                       size_t to)
{
    strbuf_appendf(sql, c->messages ? "INSERT IGNORE INTO messages (application_token,"
                                      " chat_number, number, body, created_at, updated_at) VALUES "
                                    : "INSERT IGNORE INTO chats (application_token, number,"
                                      " created_at, updated_at) VALUES ");
    for (size_t g = from; g < to; g++) {
        const struct create *r = &c->v[g];
        strbuf_append(sql, g > from ? ",(" : "(", g > from ? 2 : 1);
        db_quote(sql, conn, r->token);
        strbuf_append(sql, ",", 1);
        if (c->messages) {
            strbuf_append_i64(sql, r->chat);
            strbuf_append(sql, ",", 1);
            strbuf_append_i64(sql, r->number);
            strbuf_append(sql, ",", 1);
            db_quote(sql, conn, json_str(r->job->env.payload, "body", ""));
        } else {
            strbuf_append_i64(sql, r->number);
        }
        strbuf_append(sql, ",", 1);
        append_time(sql, r->job->env.created_at);
        strbuf_append(sql, ",", 1);
        append_time(sql, r->job->env.created_at);
        strbuf_append(sql, ")", 1);
    }
    strbuf_append(sql, ";", 1);
}

/* The delta table's key columns and the group's key values, "(tok, chat" or
 * "(tok" -- the caller closes the row. */
static const char *delta_table(const struct creates *c)
{
    return c->messages ? "INSERT INTO chat_count_deltas (application_token, chat_number, delta)"
                       : "INSERT INTO app_count_deltas (application_token, delta)";
}

static void add_group_key(struct strbuf *sql, MYSQL *conn, const struct creates *c, size_t i)
{
    db_quote(sql, conn, c->v[i].token);
    if (c->messages) {
        strbuf_append(sql, ",", 1);
        strbuf_append_i64(sql, c->v[i].chat);
    }
    strbuf_append(sql, ",", 1);
}

/* Per group: its INSERT IGNORE, then ROW_COUNT() (the rows really
 * inserted) added to its delta. */
static void add_creates_per_group(struct strbuf *sql, MYSQL *conn, const struct creates *c)
{
    for (size_t i = 0; i < c->n;) {
        size_t end = group_end(c, i);
        add_insert(sql, conn, c, i, end);
        strbuf_appendf(sql, "SET @n = ROW_COUNT();%s SELECT ", delta_table(c));
        add_group_key(sql, conn, c, i);
        strbuf_appendf(sql, "@n FROM DUAL WHERE @n > 0 ON DUPLICATE KEY UPDATE delta = delta + @n;");
        i = end;
    }
}

/* Every row was inserted: each group's delta is its size, all groups in one
 * multi-row upsert. */
static void add_deltas(struct strbuf *sql, MYSQL *conn, const struct creates *c)
{
    if (c->n == 0)
        return;
    strbuf_appendf(sql, "%s VALUES ", delta_table(c));
    for (size_t i = 0; i < c->n;) {
        size_t end = group_end(c, i);
        strbuf_append(sql, i ? ",(" : "(", i ? 2 : 1);
        add_group_key(sql, conn, c, i);
        strbuf_append_i64(sql, (int64_t)(end - i));
        strbuf_append(sql, ")", 1);
        i = end;
    }
    strbuf_appendf(sql, " ON DUPLICATE KEY UPDATE delta = delta + VALUES(delta);");
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
        /* In log order an update wins. A redriven copy (an operator sent
         * its dead letter back) is older than its new place in the log:
         * it wins only over a body older than it, never over an update
         * made since (the assignments run left to right, so body is
         * decided against the stored updated_at). */
        int32_t part;
        int64_t off;
        if (j->msg && kafka_redrive_origin(j->msg, &part, &off))
            strbuf_appendf(sql, ") ON DUPLICATE KEY UPDATE"
                                " body = IF(VALUES(updated_at) > updated_at, VALUES(body), body),"
                                " updated_at = GREATEST(updated_at, VALUES(updated_at));");
        else
            strbuf_appendf(sql, ") ON DUPLICATE KEY UPDATE body = VALUES(body),"
                                " updated_at = VALUES(updated_at);");
        /* ROW_COUNT is 1 only when the upsert inserted: count that row. */
        strbuf_appendf(sql, "SET @n = IF(ROW_COUNT() = 1, 1, 0);"
                            "INSERT INTO chat_count_deltas (application_token, chat_number, delta)"
                            " SELECT ");
        db_quote(sql, conn, u.token);
        strbuf_appendf(sql, ", %lld, @n FROM DUAL WHERE @n > 0"
                            " ON DUPLICATE KEY UPDATE delta = delta + @n;",
                       (long long)u.chat);
    }
}

/* Runs text and frees it. NULL text means out of memory: a transaction
 * the caller has open (open_txn) is rolled back first, or the next BEGIN
 * would commit its rows without their deltas. */
static enum db_status run(struct db *db, char *text, bool open_txn, uint64_t *counts,
                          size_t ncounts, char *errbuf, size_t errlen)
{
    if (text == NULL) {
        if (open_txn && db_txn_end(db, DB_FATAL) != DB_FATAL)
            log_warn("rollback after running out of memory failed", "%s", "");
        sb_errf(errbuf, errlen, "out of memory building a batch");
        return DB_TRANSIENT;
    }
    enum db_status st = db_exec_counts(db, text, counts, ncounts, errbuf, errlen);
    free(text);
    return st;
}

/* The fast form; *replayed set (and the transaction rolled back) when some
 * create's row already existed, so the batch must be counted per group. */
static enum db_status write_fast(struct db *db, MYSQL *conn, struct job **jobs, size_t n,
                                 const struct creates *chats, const struct creates *msgs,
                                 bool *replayed, char *errbuf, size_t errlen)
{
    struct strbuf sql = {0};
    size_t stmt = 1, at_chats = 0, at_msgs = 0;
    strbuf_append(&sql, "BEGIN;", 6);
    size_t before = sql.len;
    add_pings(&sql, conn, jobs, n);
    stmt += sql.len > before;
    if (chats->n) {
        at_chats = stmt++;
        add_insert(&sql, conn, chats, 0, chats->n);
    }
    if (msgs->n) {
        at_msgs = stmt++;
        add_insert(&sql, conn, msgs, 0, msgs->n);
    }
    uint64_t counts[4] = {0};
    enum db_status st = run(db, strbuf_take(&sql), false, counts, stmt, errbuf, errlen);
    if (st != DB_OK)
        return db_txn_end(db, st);
    *replayed = (chats->n && counts[at_chats] != chats->n) || (msgs->n && counts[at_msgs] != msgs->n);
    if (*replayed) {
        st = db_exec(db, "ROLLBACK", errbuf, errlen);
        return st == DB_OK ? DB_OK : DB_TRANSIENT;
    }
    add_deltas(&sql, conn, chats);
    add_deltas(&sql, conn, msgs);
    add_updates(&sql, conn, jobs, n);
    strbuf_append(&sql, "COMMIT", 6);
    return db_txn_end(db, run(db, strbuf_take(&sql), true, NULL, 0, errbuf, errlen));
}

enum db_status persister_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                                size_t errlen)
{
    MYSQL *conn = db_conn(w->db, errbuf, errlen);
    if (conn == NULL)
        return DB_TRANSIENT;
    struct creates chats = {0}, msgs = {0};
    enum db_status st = DB_TRANSIENT;
    if (!creates_select(&chats, jobs, n, false) || !creates_select(&msgs, jobs, n, true)) {
        sb_errf(errbuf, errlen, "out of memory sorting a batch of %zu jobs", n);
        goto out;
    }
    bool replayed = false;
    st = write_fast(w->db, conn, jobs, n, &chats, &msgs, &replayed, errbuf, errlen);
    if (st != DB_OK || !replayed)
        goto out;
    log_info("batch replays creates, counting per group", "jobs=%zu", n);
    struct strbuf sql = {0};
    add_pings(&sql, conn, jobs, n);
    add_creates_per_group(&sql, conn, &chats);
    add_creates_per_group(&sql, conn, &msgs);
    add_updates(&sql, conn, jobs, n);
    size_t len = sql.len;
    char *text = strbuf_take(&sql);
    if (text == NULL) {
        sb_errf(errbuf, errlen, "out of memory building a batch of %zu jobs", n);
        goto out;
    }
    st = len ? db_exec_txn(w->db, text, errbuf, errlen) : DB_OK;
    free(text);
out:
    free(chats.v);
    free(msgs.v);
    return st;
}
