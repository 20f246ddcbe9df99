/* search_es.h - the Elasticsearch side of message search (libcurl).
 *
 * Documents: id "<token>:<chat>:<number>", fields application_token,
 * chat_number, number, body; the index mapping (schema/elasticsearch/
 * messages.json) analyses body into lowercase 2-3 character ngrams, so a
 * match with operator "and" finds partial words case-insensitively.
 * Writes carry version = the job's Kafka offset (version_type external):
 * a replayed older write is refused by Elasticsearch (409) instead of
 * overwriting a newer body, so replays are harmless. */
#ifndef SB_SEARCH_ES_H
#define SB_SEARCH_ES_H

#include <cjson/cJSON.h>

#include "db.h"

/* Creates the index with the mapping file unless it exists. */
enum db_status es_ensure_index(const char *url, const char *index, const char *mapping_path,
                               char *errbuf, size_t errlen);

enum db_status es_search(const char *url, const char *index, const char *token, int64_t chat,
                         const char *text, int64_t limit, int64_t offset, cJSON **out,
                         char *errbuf, size_t errlen);

struct es_doc {
    const char *token;
    int64_t chat, number, version;
    const char *body;
    /* result */
    enum db_status status; /* OK (indexed or already newer), FATAL (this doc
                              can never be indexed), TRANSIENT (retry) */
    char error[160];
};

/* One _bulk request for docs[0..n). Returns TRANSIENT when the whole
 * request must be retried (429, 5xx, network); otherwise OK, with each
 * doc's own status set. */
enum db_status es_bulk_index(const char *url, const char *index, struct es_doc *docs, size_t n,
                             char *errbuf, size_t errlen);

/* GET / (the cluster's banner) within timeout_ms: DB_OK if it answers 200. */
enum db_status es_ping(const char *url, int timeout_ms, char *errbuf, size_t errlen);

/* Makes recent writes visible to search (tests). */
enum db_status es_refresh(const char *url, const char *index, char *errbuf, size_t errlen);

#endif
