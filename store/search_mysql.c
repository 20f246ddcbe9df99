/* search_mysql.c - message search in MySQL.
 *
 * Partial, case-insensitive matching is a LIKE '%text%' (the body column
 * has a case-insensitive collation) restricted to one chat's primary-key
 * range, so the cost is the size of that chat, not of the table. Ranking:
 * exact body, then body starting with the text, then earliest position,
 * then shorter bodies, then message number. */
#include <mysqld_error.h>
#include <stdlib.h>
#include <string.h>

#include "search.h"

/* Appends text with LIKE's wildcards escaped (backslash is the escape). */
static char *like_escape(const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(2 * n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const char *p = text; *p; p++) {
        if (*p == '%' || *p == '_' || *p == '\\')
            *o++ = '\\';
        *o++ = *p;
    }
    *o = '\0';
    return out;
}

enum db_status search_mysql(struct db *db, const char *token, int64_t chat, const char *text,
                            int64_t limit, int64_t offset, cJSON **out, char *errbuf,
                            size_t errlen)
{
    MYSQL *conn = db_conn(db, errbuf, errlen);
    if (conn == NULL)
        return DB_TRANSIENT;
    char *pattern = like_escape(text);
    struct strbuf sql = {0};
    /* The time cap is spelt differently by MariaDB and by MySQL (the
     * compose file's server). */
    bool maria = strstr(mysql_get_server_info(conn), "MariaDB") != NULL;
    if (maria)
        strbuf_appendf(&sql, "SET STATEMENT max_statement_time = %d FOR SELECT", SEARCH_MAX_SECONDS);
    else
        strbuf_appendf(&sql, "SELECT /*+ MAX_EXECUTION_TIME(%d) */", SEARCH_MAX_SECONDS * 1000);
    strbuf_appendf(&sql, " number, body FROM messages WHERE application_token = ");
    db_quote(&sql, conn, token);
    strbuf_appendf(&sql, " AND chat_number = %lld AND body LIKE CONCAT('%%', ", (long long)chat);
    db_quote(&sql, conn, pattern ? pattern : "");
    strbuf_appendf(&sql, ", '%%') ORDER BY body = ");
    db_quote(&sql, conn, text);
    strbuf_appendf(&sql, " DESC, body LIKE CONCAT(");
    db_quote(&sql, conn, pattern ? pattern : "");
    strbuf_appendf(&sql, ", '%%') DESC, LOCATE(");
    db_quote(&sql, conn, text);
    strbuf_appendf(&sql, ", body), CHAR_LENGTH(body), number LIMIT %lld OFFSET %lld",
                   (long long)limit, (long long)offset);
    free(pattern);
    char *q = strbuf_take(&sql);
    if (q == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return DB_TRANSIENT;
    }
    MYSQL_RES *res;
    enum db_status st = db_query(db, q, &res, errbuf, errlen);
    free(q);
    /* MariaDB's ER_STATEMENT_TIMEOUT; MySQL's ER_QUERY_TIMEOUT is 3024. */
    if (st != DB_OK && (db_last_errno(db) == ER_STATEMENT_TIMEOUT || db_last_errno(db) == 3024)) {
        sb_errf(errbuf, errlen, SEARCH_TOO_SLOW " (over %d s)", SEARCH_MAX_SECONDS);
        return DB_TRANSIENT;
    }
    if (st != DB_OK)
        return st;
    *out = cJSON_CreateArray();
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "number", strtod(row[0], NULL));
        cJSON_AddStringToObject(o, "body", row[1]);
        cJSON_AddItemToArray(*out, o);
    }
    mysql_free_result(res);
    return DB_OK;
}
