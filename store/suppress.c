/* suppress.c - see suppress.h. */
#include "suppress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool checked_channel(enum note_channel c)
{
    return c == CH_SMS || c == CH_EMAIL;
}

enum db_status suppress_find(struct db *db, enum note_channel channel, const char *address, const char *sender,
                             bool *found, struct suppression *out, char *errbuf, size_t errlen)
{
    *found = false;
    if (!checked_channel(channel))
        return DB_OK;
    char *sql = *sender ? db_sqlf(db, errbuf, errlen,
                                  "SELECT scope, reason, created_ms FROM suppressions WHERE channel = %s AND"
                                  " address = %s AND scope IN (%s, '" SUPPRESS_SCOPE_ALL "') LIMIT 1",
                                  note_channel_name(channel), address, sender)
                        : db_sqlf(db, errbuf, errlen,
                                  "SELECT scope, reason, created_ms FROM suppressions WHERE channel = %s AND"
                                  " address = %s LIMIT 1",
                                  note_channel_name(channel), address);
    MYSQL_RES *res = NULL;
    enum db_status st = sql ? db_query(db, sql, &res, errbuf, errlen) : DB_TRANSIENT;
    free(sql);
    if (st != DB_OK)
        return st;
    MYSQL_ROW row = mysql_fetch_row(res);
    if (row) {
        *found = true;
        snprintf(out->scope, sizeof out->scope, "%s", row[0] ? row[0] : "");
        snprintf(out->reason, sizeof out->reason, "%s", row[1] ? row[1] : "");
        out->created_ms = row[2] ? strtoll(row[2], NULL, 10) : 0;
    }
    mysql_free_result(res);
    return DB_OK;
}

enum db_status suppress_add(struct db *db, enum note_channel channel, const char *address, const char *scope,
                            const char *reason, int64_t now_ms, char *errbuf, size_t errlen)
{
    char *sql = db_sqlf(db, errbuf, errlen,
                        "INSERT IGNORE INTO suppressions (channel, address, scope, reason, created_ms)"
                        " VALUES (%s, %s, %s, %s, %lld)",
                        note_channel_name(channel), address, scope, reason, (long long)now_ms);
    enum db_status st = sql ? db_exec_autocommit(db, sql, errbuf, errlen) : DB_TRANSIENT;
    free(sql);
    return st;
}

enum db_status suppress_remove(struct db *db, enum note_channel channel, const char *address, const char *scope,
                               bool *removed, char *errbuf, size_t errlen)
{
    char *sql = db_sqlf(db, errbuf, errlen,
                        "DELETE FROM suppressions WHERE channel = %s AND address = %s AND scope = %s",
                        note_channel_name(channel), address, scope);
    uint64_t n = 0;
    enum db_status st = sql ? db_exec_count(db, sql, &n, errbuf, errlen) : DB_TRANSIENT;
    free(sql);
    *removed = n > 0;
    return st;
}

enum db_status suppress_list(struct db *db, const char *address, int limit, cJSON *out, char *errbuf,
                             size_t errlen)
{
    char *sql = address ? db_sqlf(db, errbuf, errlen,
                                  "SELECT channel, address, scope, reason, created_ms FROM suppressions"
                                  " WHERE address = %s ORDER BY created_ms DESC LIMIT %d",
                                  address, limit)
                        : db_sqlf(db, errbuf, errlen,
                                  "SELECT channel, address, scope, reason, created_ms FROM suppressions"
                                  " ORDER BY created_ms DESC LIMIT %d",
                                  limit);
    MYSQL_RES *res = NULL;
    enum db_status st = sql ? db_query(db, sql, &res, errbuf, errlen) : DB_TRANSIENT;
    free(sql);
    if (st != DB_OK)
        return st;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        cJSON *e = cJSON_CreateObject();
        char t[32];
        note_iso_time(row[4] ? strtoll(row[4], NULL, 10) : 0, t);
        cJSON_AddStringToObject(e, "channel", row[0] ? row[0] : "");
        cJSON_AddStringToObject(e, "address", row[1] ? row[1] : "");
        cJSON_AddStringToObject(e, "scope", row[2] ? row[2] : "");
        cJSON_AddStringToObject(e, "reason", row[3] ? row[3] : "");
        cJSON_AddStringToObject(e, "createdAt", t);
        cJSON_AddItemToArray(out, e);
    }
    mysql_free_result(res);
    return DB_OK;
}
