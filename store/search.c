/* search.c - see search.h: picks the backend. */
#include "search.h"

#include "search_es.h"

enum db_status search_messages(const struct sb_config *cfg, struct db *db, const char *token,
                               int64_t chat, const char *text, int64_t limit, int64_t offset,
                               cJSON **out, char *errbuf, size_t errlen)
{
    if (cfg->es_url && *cfg->es_url)
        return es_search(cfg->es_url, cfg->es_index, token, chat, text, limit, offset, out,
                         errbuf, errlen);
    return search_mysql(db, token, chat, text, limit, offset, out, errbuf, errlen);
}
