/* indexer.c - the indexer role (see search_es.h for the document model).
 *
 * A batch of message.create / message.update jobs becomes one _bulk
 * request, each document versioned by its Kafka offset so that replays and
 * reorderings never put an older body over a newer one. A whole-request
 * failure (429, 5xx, network) rewinds the batch; a document Elasticsearch
 * can never take (a mapping error) is dead-lettered alone. Without es_url
 * search runs on MySQL and there is nothing to index: jobs pass. */
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "indexer.h"
#include "log.h"
#include "search_es.h"

/* A document's version: its job's offset, plus one (0 is not a version).
 * A redriven copy takes the offset of the job it copies, when that was in
 * the same partition (the partition count unchanged): an update indexed
 * since then keeps its newer body. */
static int64_t version_of(const rd_kafka_message_t *m)
{
    int32_t partition;
    int64_t offset;
    if (kafka_redrive_origin(m, &partition, &offset) && partition == m->partition && offset >= 0)
        return offset + 1;
    return m->offset + 1;
}

bool indexer_prepare(struct worker *w)
{
    if (!*w->cfg->es_url)
        return true;
    char path[1024], err[ERRBUF_LEN];
    snprintf(path, sizeof path, "%s/elasticsearch/messages.json", w->cfg->schema_dir);
    struct backoff b;
    backoff_init(&b, w->cfg->retry_base_ms, w->cfg->retry_cap_ms);
    while (!atomic_load(w->stop)) {
        enum db_status st = es_ensure_index(w->cfg->es_url, w->cfg->es_index, path, err, sizeof err);
        if (st == DB_OK) {
            log_info("elasticsearch index ready", "index=%s", w->cfg->es_index);
            return true;
        }
        if (st == DB_FATAL) {
            log_error("elasticsearch refused the index", "index=%s err=\"%s\"", w->cfg->es_index, err);
            return false;
        }
        int64_t delay = backoff_next(&b);
        log_warn("waiting for elasticsearch", "err=\"%s\" delay_ms=%lld", err, (long long)delay);
        sb_sleep_ms_unless(delay, w->stop);
    }
    return false;
}

enum db_status indexer_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                              size_t errlen)
{
    if (!*w->cfg->es_url)
        return DB_OK;
    struct es_doc *docs = calloc(n, sizeof *docs);
    if (docs == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return DB_TRANSIENT;
    }
    for (size_t i = 0; i < n; i++) {
        const cJSON *p = jobs[i]->env.payload;
        docs[i].token = json_str(p, "application_token", "");
        docs[i].chat = json_i64(p, "chat_number", 0);
        docs[i].number = json_i64(p, "number", 0);
        docs[i].body = json_str(p, "body", "");
        docs[i].version = version_of(jobs[i]->msg);
    }
    enum db_status st = es_bulk_index(w->cfg->es_url, w->cfg->es_index, docs, n, errbuf, errlen);
    for (size_t i = 0; st == DB_OK && i < n; i++) {
        if (docs[i].status == DB_TRANSIENT) {
            sb_errf(errbuf, errlen, "document %s:%lld:%lld: %s", docs[i].token,
                    (long long)docs[i].chat, (long long)docs[i].number, docs[i].error);
            st = DB_TRANSIENT; /* the whole batch again; done ones answer 409 */
        } else if (docs[i].status == DB_FATAL) {
            jobs[i]->dead = true;
            snprintf(jobs[i]->reason, sizeof jobs[i]->reason, "elasticsearch: %s", docs[i].error);
        }
    }
    free(docs);
    return st;
}
