/* search.h - message search within one chat, behind one interface.
 *
 * Elasticsearch when es_url is set (search_es.c: an ngram-analysed index
 * kept by the indexer role), MySQL otherwise (search_mysql.c: a LIKE scan
 * of one chat's primary-key range). Results are a JSON array of
 * {"number","body"}, best match first. Called on a pool thread: db is that
 * thread's connection (the MySQL backend uses it). */
#ifndef SB_SEARCH_H
#define SB_SEARCH_H

#include <cjson/cJSON.h>

#include "config.h"
#include "db.h"

/* Results go at most this deep (page x limit), and a MySQL search runs at
 * most SEARCH_MAX_SECONDS: one client's searches cannot take the pool's
 * threads for long. A search stopped for its time is DB_TRANSIENT with
 * errbuf starting SEARCH_TOO_SLOW. */
#define SEARCH_MAX_WINDOW 1000
#define SEARCH_MAX_SECONDS 2
#define SEARCH_TOO_SLOW "search took too long"

enum db_status search_messages(const struct sb_config *cfg, struct db *db, const char *token,
                               int64_t chat, const char *text, int64_t limit, int64_t offset,
                               cJSON **out, char *errbuf, size_t errlen);

enum db_status search_mysql(struct db *db, const char *token, int64_t chat, const char *text,
                            int64_t limit, int64_t offset, cJSON **out, char *errbuf,
                            size_t errlen);

#endif
