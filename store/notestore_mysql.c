/* notestore_mysql.c - the notification store in MySQL tables
 * (schema/mysql/005_notifications.sql). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "notestore.h"

struct mstore {
    struct notestore base;
    struct db_url url;
    struct db *db;
};

#define NOTE_COLUMNS                                                                           \
    "id, channel, recipient, IFNULL(idempotency_key, ''), fingerprint, IFNULL(tracking_id, ''), " \
    "item, status, attempts, last_error, created_ms, updated_ms, IFNULL(redrive_of, ''), IFNULL(provider_id, ''), " \
    "IFNULL(callback_url, ''), IFNULL(webhook_key, ''), webhook_sent, webhook_attempts"

static void copy_cell(char *out, size_t cap, const char *v)
{
    snprintf(out, cap, "%s", v ? v : "");
}

static int64_t num_cell(const char *v)
{
    return v ? strtoll(v, NULL, 10) : 0;
}

static void note_from_row(MYSQL_ROW row, struct note *n)
{
    memset(n, 0, sizeof *n);
    copy_cell(n->id, sizeof n->id, row[0]);
    if (!note_channel_parse(row[1] ? row[1] : "", &n->channel))
        n->channel = CH_SMS;
    copy_cell(n->to, sizeof n->to, row[2]);
    copy_cell(n->idem, sizeof n->idem, row[3]);
    copy_cell(n->fingerprint, sizeof n->fingerprint, row[4]);
    copy_cell(n->tracking_id, sizeof n->tracking_id, row[5]);
    n->item = num_cell(row[6]);
    if (!note_status_parse(row[7] ? row[7] : "", &n->status))
        n->status = NOTE_QUEUED;
    n->attempts = num_cell(row[8]);
    copy_cell(n->last_error, sizeof n->last_error, row[9]);
    n->created_ms = num_cell(row[10]);
    n->updated_ms = num_cell(row[11]);
    copy_cell(n->redrive_of, sizeof n->redrive_of, row[12]);
    copy_cell(n->provider_id, sizeof n->provider_id, row[13]);
    copy_cell(n->callback_url, sizeof n->callback_url, row[14]);
    copy_cell(n->webhook_key, sizeof n->webhook_key, row[15]);
    n->webhook_sent = num_cell(row[16]);
    n->webhook_attempts = num_cell(row[17]);
}

/* Runs sql and reads its first row into *n (*found false when none). */
static enum db_status select_note(struct mstore *m, const char *sql, struct note *n, bool *found,
                                  char *errbuf, size_t errlen)
{
    MYSQL_RES *res = NULL;
    enum db_status st = db_query(m->db, sql, &res, errbuf, errlen);
    if (st != DB_OK)
        return st;
    MYSQL_ROW row = mysql_fetch_row(res);
    *found = row != NULL;
    if (row)
        note_from_row(row, n);
    mysql_free_result(res);
    return DB_OK;
}

static void quote_or_null(struct strbuf *b, MYSQL *conn, const char *s)
{
    if (*s)
        db_quote(b, conn, s);
    else
        strbuf_appendf(b, "NULL");
}

static enum db_status m_claim(struct notestore *s, const struct note *n, bool *created,
                              struct note *existing, char *errbuf, size_t errlen)
{
    struct mstore *m = (struct mstore *)s;
    enum db_status st = DB_TRANSIENT;
    struct strbuf sql = {0};
    MYSQL *conn = db_conn(m->db, errbuf, errlen);
    if (conn == NULL)
        return DB_TRANSIENT;
    /* IGNORE: a duplicate id or idempotency key is the answer we look for,
     * not an error (every value was checked before it came here). */
    strbuf_appendf(&sql, "START TRANSACTION; INSERT IGNORE INTO notifications (id, channel, recipient, idempotency_key,"
                         " fingerprint, tracking_id, item, status, attempts, last_error, created_ms,"
                         " updated_ms, send_at_ms, job, callback_url, webhook_key, webhook_next_ms) VALUES (");
    db_quote(&sql, conn, n->id);
    strbuf_appendf(&sql, ", ");
    db_quote(&sql, conn, note_channel_name(n->channel));
    strbuf_appendf(&sql, ", ");
    db_quote(&sql, conn, n->to);
    strbuf_appendf(&sql, ", ");
    quote_or_null(&sql, conn, n->idem);
    strbuf_appendf(&sql, ", ");
    db_quote(&sql, conn, n->fingerprint);
    strbuf_appendf(&sql, ", ");
    quote_or_null(&sql, conn, n->tracking_id);
    strbuf_appendf(&sql, ", %lld, ", (long long)n->item);
    db_quote(&sql, conn, note_status_name(n->status));
    strbuf_appendf(&sql, ", %lld, ", (long long)n->attempts);
    db_quote(&sql, conn, n->last_error);
    strbuf_appendf(&sql, ", %lld, %lld, ", (long long)n->created_ms, (long long)n->updated_ms);
    if (n->send_at_ms > 0) {
        strbuf_appendf(&sql, "%lld, ", (long long)n->send_at_ms);
        db_quote(&sql, conn, n->job ? n->job : "");
    } else {
        strbuf_appendf(&sql, "NULL, NULL");
    }
    strbuf_appendf(&sql, ", ");
    quote_or_null(&sql, conn, n->callback_url);
    strbuf_appendf(&sql, ", ");
    quote_or_null(&sql, conn, n->webhook_key);
    if (*n->callback_url) /* its first event, "queued" or "scheduled", goes out at once */
        strbuf_appendf(&sql, ", %lld", (long long)n->created_ms);
    else
        strbuf_appendf(&sql, ", NULL");
    strbuf_appendf(&sql, "); SET @n = ROW_COUNT();"
                         " INSERT INTO notification_events (id, status, at_ms, detail) SELECT ");
    /* The history starts with it, in the same transaction. */
    db_quote(&sql, conn, n->id);
    strbuf_appendf(&sql, ", ");
    db_quote(&sql, conn, note_status_name(n->status));
    strbuf_appendf(&sql, ", %lld, ", (long long)n->created_ms);
    db_quote(&sql, conn, note_event_detail(n));
    strbuf_appendf(&sql, " FROM DUAL WHERE @n = 1; COMMIT");
    if (strbuf_failed(&sql)) {
        sb_errf(errbuf, errlen, "out of memory");
        goto done;
    }
    uint64_t counts[2] = {0};
    if ((st = db_exec_counts(m->db, sql.p, counts, 2, errbuf, errlen)) != DB_OK) {
        st = db_txn_end(m->db, st);
        goto done;
    }
    *created = counts[1] == 1;
    if (*created)
        goto done;
    strbuf_free(&sql);
    strbuf_appendf(&sql, "SELECT " NOTE_COLUMNS " FROM notifications WHERE id = ");
    db_quote(&sql, conn, n->id);
    if (*n->idem) {
        strbuf_appendf(&sql, " OR idempotency_key = ");
        db_quote(&sql, conn, n->idem);
    }
    strbuf_appendf(&sql, " ORDER BY id = ");
    db_quote(&sql, conn, n->id);
    strbuf_appendf(&sql, " DESC LIMIT 1");
    bool found = false;
    if (strbuf_failed(&sql)) {
        sb_errf(errbuf, errlen, "out of memory");
        st = DB_TRANSIENT;
    } else if ((st = select_note(m, sql.p, existing, &found, errbuf, errlen)) == DB_OK && !found) {
        /* Ignored for another reason than a duplicate: say so, loudly. */
        sb_errf(errbuf, errlen, "notification %s was neither recorded nor found", n->id);
        st = DB_FATAL;
    }
done:
    strbuf_free(&sql);
    return st;
}

static enum db_status m_get(struct notestore *s, bool by_idem, const char *value, struct note *out, bool *found,
                            char *errbuf, size_t errlen);

/* Appends the columns every update writes: attempts (unless < 0),
 * last_error, updated_ms, and redrive_of and provider_id when given. */
static void update_columns(struct strbuf *sql, MYSQL *conn, const struct note *n)
{
    if (n->attempts >= 0)
        strbuf_appendf(sql, "attempts = %lld, ", (long long)n->attempts);
    strbuf_appendf(sql, "last_error = ");
    db_quote(sql, conn, n->last_error);
    strbuf_appendf(sql, ", updated_ms = %lld", (long long)n->updated_ms);
    if (*n->redrive_of) {
        strbuf_appendf(sql, ", redrive_of = ");
        db_quote(sql, conn, n->redrive_of);
    }
    if (*n->provider_id) {
        strbuf_appendf(sql, ", provider_id = ");
        db_quote(sql, conn, n->provider_id);
    }
}

/* One transaction: the move (only from a status that may move to n's),
 * its history row, or else the same status written again. */
static enum db_status m_update(struct notestore *s, const struct note *n, bool *applied, char *errbuf,
                               size_t errlen)
{
    struct mstore *m = (struct mstore *)s;
    MYSQL *conn = db_conn(m->db, errbuf, errlen);
    if (conn == NULL)
        return DB_TRANSIENT;
    char sources[256];
    if (!note_status_sources(n->status, sources, sizeof sources))
        snprintf(sources, sizeof sources, "''"); /* nothing moves to it: only written again */
    const char *to = note_status_name(n->status);
    struct strbuf sql = {0};
    strbuf_appendf(&sql, "START TRANSACTION; UPDATE notifications SET status = ");
    db_quote(&sql, conn, to);
    strbuf_appendf(&sql, ", ");
    update_columns(&sql, conn, n);
    /* A move is an event for the message's webhook: due now. */
    strbuf_appendf(&sql, ", webhook_next_ms = IF(callback_url IS NULL, NULL, LEAST(IFNULL(webhook_next_ms, %lld),"
                         " %lld))", (long long)n->updated_ms, (long long)n->updated_ms);
    strbuf_appendf(&sql, " WHERE id = ");
    db_quote(&sql, conn, n->id);
    strbuf_appendf(&sql, " AND status IN (%s); SET @n = ROW_COUNT();"
                         " INSERT INTO notification_events (id, status, at_ms, detail) SELECT ", sources);
    db_quote(&sql, conn, n->id);
    strbuf_appendf(&sql, ", ");
    db_quote(&sql, conn, to);
    strbuf_appendf(&sql, ", %lld, ", (long long)n->updated_ms);
    db_quote(&sql, conn, note_event_detail(n));
    strbuf_appendf(&sql, " FROM DUAL WHERE @n = 1; UPDATE notifications SET ");
    update_columns(&sql, conn, n);
    strbuf_appendf(&sql, " WHERE id = ");
    db_quote(&sql, conn, n->id);
    strbuf_appendf(&sql, " AND status = ");
    db_quote(&sql, conn, to);
    strbuf_appendf(&sql, " AND @n = 0; COMMIT");
    enum db_status st = DB_TRANSIENT;
    uint64_t counts[5] = {0};
    if (strbuf_failed(&sql)) {
        sb_errf(errbuf, errlen, "out of memory");
    } else if ((st = db_exec_counts(m->db, sql.p, counts, 5, errbuf, errlen)) != DB_OK) {
        st = db_txn_end(m->db, st);
    } else if (counts[1] == 1 || counts[4] == 1) {
        *applied = true;
    } else { /* written again with the same values, or refused: which? */
        bool found = false;
        struct note now;
        st = m_get(s, false, n->id, &now, &found, errbuf, errlen);
        *applied = st == DB_OK && found && now.status == n->status;
    }
    strbuf_free(&sql);
    return st;
}

static enum db_status m_due(struct notestore *s, int64_t now_ms, int64_t stale_ms, struct note_due *out,
                            size_t max, size_t *n, char *errbuf, size_t errlen)
{
    struct mstore *m = (struct mstore *)s;
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT id, status, job FROM notifications WHERE (status = 'scheduled' AND send_at_ms <= %lld) OR"
             " (status = 'queued' AND send_at_ms IS NOT NULL AND updated_ms < %lld) ORDER BY send_at_ms LIMIT %zu",
             (long long)now_ms, (long long)stale_ms, max);
    MYSQL_RES *res = NULL;
    enum db_status st = db_query(m->db, sql, &res, errbuf, errlen);
    if (st != DB_OK)
        return st;
    MYSQL_ROW row;
    while (*n < max && (row = mysql_fetch_row(res)) != NULL) {
        if (row[0] == NULL || row[2] == NULL || (out[*n].job = strdup(row[2])) == NULL)
            continue;
        snprintf(out[*n].id, sizeof out[*n].id, "%s", row[0]);
        out[*n].claimed = row[1] && strcmp(row[1], "queued") == 0;
        (*n)++;
    }
    mysql_free_result(res);
    return DB_OK;
}

static enum db_status m_webhooks_due(struct notestore *s, int64_t now_ms, char (*ids)[NOTE_ID_MAX + 1], size_t max,
                                     size_t *n, char *errbuf, size_t errlen)
{
    struct mstore *m = (struct mstore *)s;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT id FROM notifications WHERE webhook_next_ms <= %lld ORDER BY webhook_next_ms"
             " LIMIT %zu", (long long)now_ms, max);
    MYSQL_RES *res = NULL;
    enum db_status st = db_query(m->db, sql, &res, errbuf, errlen);
    if (st != DB_OK)
        return st;
    MYSQL_ROW row;
    while (*n < max && (row = mysql_fetch_row(res)) != NULL)
        if (row[0])
            snprintf(ids[(*n)++], NOTE_ID_MAX + 1, "%s", row[0]);
    mysql_free_result(res);
    return DB_OK;
}

static enum db_status m_webhook_progress(struct notestore *s, const char *id, int64_t sent, int64_t attempts,
                                         int64_t retry_at_ms, int64_t now_ms, char *errbuf, size_t errlen)
{
    struct mstore *m = (struct mstore *)s;
    /* Done with what it had: due again at once if the history grew since
     * (a move that came while these went out), else not. */
    char *sql = retry_at_ms > 0
                    ? db_sqlf(m->db, errbuf, errlen,
                              "UPDATE notifications SET webhook_sent = %lld, webhook_attempts = %lld,"
                              " webhook_next_ms = %lld WHERE id = %s",
                              (long long)sent, (long long)attempts, (long long)retry_at_ms, id)
                    : db_sqlf(m->db, errbuf, errlen,
                              "UPDATE notifications SET webhook_sent = %lld, webhook_attempts = 0,"
                              " webhook_next_ms = IF((SELECT COUNT(*) FROM notification_events e WHERE e.id = %s)"
                              " > %lld, %lld, NULL) WHERE id = %s",
                              (long long)sent, id, (long long)sent, (long long)now_ms, id);
    enum db_status st = sql ? db_exec(m->db, sql, errbuf, errlen) : DB_TRANSIENT;
    free(sql);
    return st;
}

static enum db_status m_history(struct notestore *s, const char *id, cJSON *out, char *errbuf, size_t errlen)
{
    struct mstore *m = (struct mstore *)s;
    MYSQL *conn = db_conn(m->db, errbuf, errlen);
    if (conn == NULL)
        return DB_TRANSIENT;
    struct strbuf sql = {0};
    strbuf_appendf(&sql, "SELECT status, at_ms, detail FROM notification_events WHERE id = ");
    db_quote(&sql, conn, id);
    strbuf_appendf(&sql, " ORDER BY seq");
    MYSQL_RES *res = NULL;
    enum db_status st = DB_TRANSIENT;
    if (strbuf_failed(&sql))
        sb_errf(errbuf, errlen, "out of memory");
    else
        st = db_query(m->db, sql.p, &res, errbuf, errlen);
    strbuf_free(&sql);
    if (st != DB_OK)
        return st;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "status", row[0] ? row[0] : "");
        cJSON_AddNumberToObject(e, "at", (double)num_cell(row[1]));
        if (row[2] && *row[2])
            cJSON_AddStringToObject(e, "detail", row[2]);
        cJSON_AddItemToArray(out, e);
    }
    mysql_free_result(res);
    return DB_OK;
}

static enum db_status m_get(struct notestore *s, bool by_idem, const char *value, struct note *out, bool *found,
                            char *errbuf, size_t errlen)
{
    struct mstore *m = (struct mstore *)s;
    MYSQL *conn = db_conn(m->db, errbuf, errlen);
    if (conn == NULL)
        return DB_TRANSIENT;
    struct strbuf sql = {0};
    strbuf_appendf(&sql, "SELECT " NOTE_COLUMNS " FROM notifications WHERE %s = ", by_idem ? "idempotency_key" : "id");
    db_quote(&sql, conn, value);
    enum db_status st = DB_TRANSIENT;
    if (strbuf_failed(&sql))
        sb_errf(errbuf, errlen, "out of memory");
    else
        st = select_note(m, sql.p, out, found, errbuf, errlen);
    strbuf_free(&sql);
    return st;
}

static enum db_status m_track_put(struct notestore *s, const char *tracking_id, int64_t total,
                                  const cJSON *errors, int64_t created_ms, char *errbuf,
                                  size_t errlen)
{
    struct mstore *m = (struct mstore *)s;
    MYSQL *conn = db_conn(m->db, errbuf, errlen);
    if (conn == NULL)
        return DB_TRANSIENT;
    char *text = json_print(errors);
    struct strbuf sql = {0};
    strbuf_appendf(&sql, "INSERT IGNORE INTO sms_requests (tracking_id, total, errors, created_ms)"
                         " VALUES (");
    db_quote(&sql, conn, tracking_id);
    strbuf_appendf(&sql, ", %lld, ", (long long)total);
    db_quote(&sql, conn, text ? text : "[]");
    strbuf_appendf(&sql, ", %lld)", (long long)created_ms);
    enum db_status st = DB_TRANSIENT;
    if (text == NULL || strbuf_failed(&sql))
        sb_errf(errbuf, errlen, "out of memory");
    else
        st = db_exec(m->db, sql.p, errbuf, errlen);
    strbuf_free(&sql);
    free(text);
    return st;
}

/* Runs one query about a send-many request: fmt has one %s, the quoted
 * tracking id. *res is the caller's to free. */
static enum db_status tracking_query(struct mstore *m, const char *fmt, const char *quoted_id,
                                     MYSQL_RES **res, char *errbuf, size_t errlen)
{
    struct strbuf sql = {0};
    strbuf_appendf(&sql, fmt, quoted_id);
    enum db_status st = DB_TRANSIENT;
    if (strbuf_failed(&sql))
        sb_errf(errbuf, errlen, "out of memory");
    else
        st = db_query(m->db, sql.p, res, errbuf, errlen);
    strbuf_free(&sql);
    return st;
}

static enum db_status m_track_get(struct notestore *s, const char *tracking_id,
                                  struct note_tracking *out, bool *found, char *errbuf,
                                  size_t errlen)
{
    struct mstore *m = (struct mstore *)s;
    MYSQL_RES *res = NULL;
    MYSQL_ROW row;
    struct strbuf q = {0};
    enum db_status st = DB_TRANSIENT;
    MYSQL *conn = db_conn(m->db, errbuf, errlen);
    memset(out, 0, sizeof *out);
    *found = false;
    if (conn == NULL)
        return DB_TRANSIENT;
    db_quote(&q, conn, tracking_id);
    if (strbuf_failed(&q)) {
        sb_errf(errbuf, errlen, "out of memory");
        goto done;
    }
    st = tracking_query(m, "SELECT total, errors, created_ms FROM sms_requests WHERE tracking_id = %s",
                        q.p, &res, errbuf, errlen);
    if (st != DB_OK || (row = mysql_fetch_row(res)) == NULL)
        goto done;
    *found = true;
    out->total = num_cell(row[0]);
    out->errors = json_parse_strict(row[1] ? row[1] : "[]", row[1] ? strlen(row[1]) : 2, errbuf,
                                    errlen);
    if (out->errors == NULL)
        out->errors = cJSON_CreateArray();
    out->rejected = cJSON_GetArraySize(out->errors);
    out->created_ms = num_cell(row[2]);
    mysql_free_result(res);
    res = NULL;
    st = tracking_query(m, "SELECT status, COUNT(*) FROM notifications WHERE tracking_id = %s"
                           " GROUP BY status", q.p, &res, errbuf, errlen);
    if (st != DB_OK)
        goto done;
    while ((row = mysql_fetch_row(res)) != NULL) {
        enum note_status ns;
        if (row[0] && note_status_parse(row[0], &ns))
            out->counts[ns] = num_cell(row[1]);
    }
    mysql_free_result(res);
    res = NULL;
    st = tracking_query(m, "SELECT item, last_error FROM notifications WHERE tracking_id = %s"
                           " AND status = 'dead' ORDER BY item LIMIT 1000", q.p, &res, errbuf, errlen);
    if (st != DB_OK)
        goto done;
    while ((row = mysql_fetch_row(res)) != NULL) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "index", (double)num_cell(row[0]));
        cJSON_AddStringToObject(e, "reason", row[1] ? row[1] : "");
        cJSON_AddItemToArray(out->errors, e);
    }
done:
    if (res)
        mysql_free_result(res);
    if (st != DB_OK) {
        cJSON_Delete(out->errors);
        out->errors = NULL;
    }
    strbuf_free(&q);
    return st;
}

static enum db_status m_ping(struct notestore *s, char *errbuf, size_t errlen)
{
    return db_ping(((struct mstore *)s)->db, errbuf, errlen);
}

static void m_free(struct notestore *s)
{
    struct mstore *m = (struct mstore *)s;
    db_free(m->db);
    free(m);
}

static const struct notestore_ops mysql_ops = {
    "mysql", m_claim, m_update, m_history, m_webhooks_due, m_webhook_progress, m_due, m_get, m_track_put, m_track_get, m_ping, m_free,
};

struct notestore *notestore_mysql_new(const char *mysql_url, char *errbuf, size_t errlen)
{
    struct mstore *m = calloc(1, sizeof *m);
    if (m == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    if (!db_parse_url(mysql_url, &m->url, errbuf, errlen)) {
        free(m);
        return NULL;
    }
    if ((m->db = db_new(&m->url)) == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        free(m);
        return NULL;
    }
    m->base.ops = &mysql_ops;
    return &m->base;
}
