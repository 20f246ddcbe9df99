/* indexer.h - the indexer role: message bodies into Elasticsearch. */
#ifndef SB_INDEXER_H
#define SB_INDEXER_H

#include "worker.h"

/* Creates the index (with schema/elasticsearch/messages.json) unless it
 * exists, retrying while Elasticsearch is away; false if stopped first or
 * the mapping is refused. Nothing to do without es_url. */
bool indexer_prepare(struct worker *w);
enum db_status indexer_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                              size_t errlen);

#endif
