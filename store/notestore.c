/* notestore.c - see notestore.h: picks the backend and forwards to it. */
#include "notestore.h"

#include <assert.h>
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

struct notestore *notestore_new(const struct sb_config *cfg, char *errbuf, size_t errlen)
{
    if (cfg->mongo_uri && *cfg->mongo_uri)
        return notestore_mongo_new(cfg->mongo_uri, errbuf, errlen);
    return notestore_mysql_new(cfg->mysql_url, errbuf, errlen);
}

/* A pool thread whose store could not be made has none: a passing failure
 * (the log at start-up says why), not a crash. */
static bool missing(const struct notestore *s, char *errbuf, size_t errlen)
{
    if (s == NULL)
        sb_errf(errbuf, errlen, "no notification store on this thread (see the start-up log)");
    return s == NULL;
}

void notestore_free(struct notestore *s)
{
    if (s)
        s->ops->free(s);
}

const char *notestore_kind(const struct notestore *s)
{
    return s->ops->kind;
}

enum db_status notestore_claim(struct notestore *s, const struct note *n, bool *created,
                               struct note *existing, char *errbuf, size_t errlen)
{
    if (missing(s, errbuf, errlen))
        return DB_TRANSIENT;
    return s->ops->claim(s, n, created, existing, errbuf, errlen);
}

enum db_status notestore_update(struct notestore *s, const struct note *n, bool *applied, char *errbuf,
                                size_t errlen)
{
    *applied = false;
    if (missing(s, errbuf, errlen))
        return DB_TRANSIENT;
    return s->ops->update(s, n, applied, errbuf, errlen);
}

enum db_status notestore_history(struct notestore *s, const char *id, cJSON *out, char *errbuf, size_t errlen)
{
    if (missing(s, errbuf, errlen))
        return DB_TRANSIENT;
    return s->ops->history(s, id, out, errbuf, errlen);
}

enum db_status notestore_due(struct notestore *s, int64_t now_ms, int64_t stale_ms, struct note_due *out,
                             size_t max, size_t *n, char *errbuf, size_t errlen)
{
    *n = 0;
    if (missing(s, errbuf, errlen))
        return DB_TRANSIENT;
    return s->ops->due(s, now_ms, stale_ms, out, max, n, errbuf, errlen);
}

enum db_status notestore_webhooks_due(struct notestore *s, int64_t now_ms, char (*ids)[NOTE_ID_MAX + 1], size_t max,
                                      size_t *n, char *errbuf, size_t errlen)
{
    *n = 0;
    if (missing(s, errbuf, errlen))
        return DB_TRANSIENT;
    return s->ops->webhooks_due(s, now_ms, ids, max, n, errbuf, errlen);
}

enum db_status notestore_webhook_progress(struct notestore *s, const char *id, int64_t sent, int64_t attempts,
                                          int64_t retry_at_ms, int64_t now_ms, char *errbuf, size_t errlen)
{
    if (missing(s, errbuf, errlen))
        return DB_TRANSIENT;
    return s->ops->webhook_progress(s, id, sent, attempts, retry_at_ms, now_ms, errbuf, errlen);
}

const char *note_event_detail(const struct note *n)
{
    bool why = n->status == NOTE_RETRYING || n->status == NOTE_DEAD || n->status == NOTE_UNDELIVERED ||
               n->status == NOTE_FAILED;
    return why ? n->last_error : "";
}

bool note_status_sources(enum note_status to, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < NOTE_STATUS_COUNT; i++) {
        if ((enum note_status)i == to || !note_status_may_move((enum note_status)i, to))
            continue;
        int n = snprintf(out + len, cap - len, "%s'%s'", len ? "," : "", note_status_name((enum note_status)i));
        assert(n > 0 && (size_t)n < cap - len); /* the names are short and few */
        len += (size_t)n;
    }
    return len > 0;
}

enum db_status notestore_get(struct notestore *s, const char *id, struct note *out, bool *found,
                             char *errbuf, size_t errlen)
{
    if (missing(s, errbuf, errlen))
        return DB_TRANSIENT;
    return s->ops->get(s, false, id, out, found, errbuf, errlen);
}

enum db_status notestore_find_idem(struct notestore *s, const char *idem, struct note *out, bool *found,
                                   char *errbuf, size_t errlen)
{
    if (missing(s, errbuf, errlen))
        return DB_TRANSIENT;
    return s->ops->get(s, true, idem, out, found, errbuf, errlen);
}

enum db_status notestore_track_put(struct notestore *s, const char *tracking_id, int64_t total,
                                   const cJSON *errors, int64_t created_ms, char *errbuf,
                                   size_t errlen)
{
    if (missing(s, errbuf, errlen))
        return DB_TRANSIENT;
    return s->ops->track_put(s, tracking_id, total, errors, created_ms, errbuf, errlen);
}

enum db_status notestore_track_get(struct notestore *s, const char *tracking_id,
                                   struct note_tracking *out, bool *found, char *errbuf,
                                   size_t errlen)
{
    if (missing(s, errbuf, errlen))
        return DB_TRANSIENT;
    return s->ops->track_get(s, tracking_id, out, found, errbuf, errlen);
}

enum db_status notestore_ping(struct notestore *s, char *errbuf, size_t errlen)
{
    if (missing(s, errbuf, errlen))
        return DB_TRANSIENT;
    return s->ops->ping(s, errbuf, errlen);
}

cJSON *note_to_json(const struct note *n)
{
    char t[32];
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "id", n->id);
    cJSON_AddStringToObject(o, "channel", note_channel_name(n->channel));
    cJSON_AddStringToObject(o, "to", n->to);
    cJSON_AddStringToObject(o, "status", note_status_name(n->status));
    cJSON_AddNumberToObject(o, "attempts", (double)n->attempts);
    if (*n->last_error)
        cJSON_AddStringToObject(o, "lastError", n->last_error);
    else
        cJSON_AddNullToObject(o, "lastError");
    note_iso_time(n->created_ms, t);
    cJSON_AddStringToObject(o, "createdAt", t);
    note_iso_time(n->updated_ms, t);
    cJSON_AddStringToObject(o, "updatedAt", t);
    if (*n->provider_id)
        cJSON_AddStringToObject(o, "providerMessageId", n->provider_id);
    return o;
}

static void *pool_ctx_new(void *user)
{
    /* Each thread must initialise the MySQL client library for itself (the
     * MySQL store; harmless with the MongoDB one), as db_pool_new's do. */
    mysql_thread_init();
    char err[ERRBUF_LEN];
    struct notestore *s = notestore_new(user, err, sizeof err);
    if (s == NULL)
        log_error("cannot make a notification store", "err=\"%s\"", err);
    return s;
}

static void pool_ctx_free(void *ctx)
{
    notestore_free(ctx);
    mysql_thread_end();
}

struct threadpool *notestore_pool_new(const struct sb_config *cfg, size_t size, char *errbuf,
                                      size_t errlen)
{
    return threadpool_new(size, pool_ctx_new, pool_ctx_free, (void *)cfg, errbuf, errlen);
}
