/* deadletter_api.c - see deadletter_api.h. */
#include "deadletter_api.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "json.h"
#include "kafka.h"
#include "kafka_admin.h"
#include "log.h"
#include "metrics.h"
#include "strbuf.h"
#include "util.h"

#define DL_SCAN_TIMEOUT_MS 10000
#define DL_LIMIT_DEFAULT 50
#define DL_LIMIT_MAX 500
#define DL_TOPICS_MAX 64
#define DL_BODY_MAX (64 << 10) /* of a body shown; longer ones are cut, and say so */

enum dl_mode { DL_LIST, DL_REDRIVE, DL_DISCARD };
enum dl_state { DL_ANY, DL_NEW, DL_REDRIVEN, DL_DISCARDED };
static const char *const state_names[] = {"any", "new", "redriven", "discarded"};

#define DL_ACT_MAX 10000 /* letters one redrive or discard handles; the rest stay for the next */
#define DL_ID_MAX (249 + 24) /* "topic/partition/offset" */
#define DL_LETTERS_MAX (64 << 10) /* letters=, the list a request names */

/* A letter picked for a redrive: where it goes, what it carries. */
struct dl_pick {
    char id[DL_ID_MAX]; /* its dead letter's "topic/partition/offset" */
    int dlq_len;        /* of that topic, in id */
    int32_t dlq_partition;
    int64_t dlq_offset;
    char topic[250];    /* the original topic */
    char opart[16], ooff[24]; /* and where the job was there ("" if the letter does not say) */
    char traceparent[TRACEPARENT_LEN + 1]; /* the job's trace, which the copy goes on in ("" none) */
    void *key, *body;
    size_t keylen, len;
    rd_kafka_resp_err_t err; /* of its delivery */
    bool done;
    struct dl_req *r;
};

struct dl_req {
    struct http_pending *p;
    struct dispatcher *d;
    enum dl_mode mode;
    char actor[40]; /* the principal (admin key digest) */
    /* The letters operators handled (sorted "topic/partition/offset" with
     * the state after a tab), and those a request names (letters=). */
    char **handled;
    size_t nhandled;
    char **named;
    size_t nnamed;
    enum dl_state state;
    /* the filter */
    char topic[256];
    char reason[128];
    char cause[KAFKA_DLQ_CAUSE_MAX + 1];
    char type[64];
    char app[128];
    int64_t since, until; /* ms; 0: open */
    int limit;
    /* the answer */
    long long count;
    cJSON *top[DL_LIMIT_MAX]; /* the newest that match, newest first */
    int64_t top_at[DL_LIMIT_MAX];
    int ntop;
    cJSON *causes; /* {cause: count} */
    struct dl_pick *picks; /* redrive and discard: the letters to handle */
    size_t npicks, cap_picks; /* grown as letters match, up to DL_ACT_MAX */
    bool more; /* matched more than DL_ACT_MAX (or no memory for more) */
    long long acted, failed_n;
    pthread_mutex_t lock; /* deliveries of a redrive */
    pthread_cond_t cond;
    size_t pending;
    bool expired, failed;
    bool unknown; /* topic= names no dead-letter topic */
    bool db_failed;
    bool busy;       /* another redrive or discard holds the lock */
    bool orphaned;   /* deliveries never reported: left allocated */
    bool unrecorded; /* done, but dead_letter_actions could not say so */
    char err[ERRBUF_LEN];
};

/* A dead letter's header as text ("" when missing). */
static void header(const rd_kafka_message_t *m, const char *name, char *out, size_t cap)
{
    if (!kafka_header(m, name, out, cap))
        out[0] = '\0';
}

static bool matches(const struct dl_req *r, const char *reason, const char *cause, int64_t at, const char *type,
                    const char *app)
{
    return (!r->reason[0] || strcasestr(reason, r->reason)) && (!r->cause[0] || strcmp(cause, r->cause) == 0) &&
           (!r->type[0] || strcmp(type, r->type) == 0) &&
           (!r->app[0] || strcmp(app, r->app) == 0) && (!r->since || at >= r->since) &&
           (!r->until || at < r->until);
}

static cJSON *item(const rd_kafka_message_t *m, const char *reason, const char *cause, const char *otopic,
                   const char *opart, const char *ooff, int64_t at, const char *group, const char *type,
                   const char *app, const cJSON *payload)
{
    cJSON *it = cJSON_CreateObject();
    cJSON *dlq = cJSON_AddObjectToObject(it, "dead_letter");
    cJSON_AddStringToObject(dlq, "topic", rd_kafka_topic_name(m->rkt));
    cJSON_AddNumberToObject(dlq, "partition", m->partition);
    cJSON_AddNumberToObject(dlq, "offset", (double)m->offset);
    cJSON_AddStringToObject(it, "reason", reason);
    cJSON_AddStringToObject(it, "cause", cause);
    cJSON *orig = cJSON_AddObjectToObject(it, "original");
    cJSON_AddStringToObject(orig, "topic", otopic);
    cJSON_AddNumberToObject(orig, "partition", strtol(opart, NULL, 10));
    cJSON_AddNumberToObject(orig, "offset", (double)strtoll(ooff, NULL, 10));
    cJSON_AddNumberToObject(it, "failed_at", (double)at);
    cJSON_AddStringToObject(it, "consumer_group", group);
    cJSON_AddStringToObject(it, "type", type);
    cJSON_AddStringToObject(it, "application", app);
    const cJSON *attempt = cJSON_GetObjectItemCaseSensitive(payload, "attempt");
    if (cJSON_IsNumber(attempt))
        cJSON_AddNumberToObject(it, "attempts", attempt->valuedouble);
    /* The body as it is on the topic (text: it may not be JSON). */
    size_t n = m->len < DL_BODY_MAX ? m->len : DL_BODY_MAX;
    char *body = malloc(n + 1);
    if (body) {
        memcpy(body, m->payload, n);
        body[n] = '\0';
        json_utf8_trim(body);
        cJSON_AddStringToObject(it, "body", body);
        free(body);
    }
    if (n < m->len)
        cJSON_AddBoolToObject(it, "body_cut", true);
    return it;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Does the sorted set hold id ("topic/partition/offset"), as a whole or
 * followed by a tab? Returns the entry or NULL. */
static const char *set_find(char **set, size_t n, const char *id)
{
    size_t lo = 0, hi = n, len = strlen(id);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strncmp(set[mid], id, len);
        if (c == 0 && (set[mid][len] == '\0' || set[mid][len] == '\t'))
            return set[mid];
        if (c < 0 || (c == 0 && set[mid][len] < '\t'))
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static enum dl_state state_of(const struct dl_req *r, const char *id)
{
    const char *h = set_find(r->handled, r->nhandled, id);
    return h == NULL ? DL_NEW : strcmp(strchr(h, '\t') + 1, "redriven") == 0 ? DL_REDRIVEN : DL_DISCARDED;
}

static void free_set(char **set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(set[i]);
    free(set);
}

/* A redrive's or discard's letter, kept for after the scan. */
static void pick(struct dl_req *r, const rd_kafka_message_t *m, const char *id, const char *otopic,
                 const char *opart, const char *ooff)
{
    if (r->npicks == r->cap_picks) {
        size_t cap = r->cap_picks ? 2 * r->cap_picks : 64;
        if (cap > DL_ACT_MAX)
            cap = DL_ACT_MAX;
        struct dl_pick *grown = cap > r->cap_picks ? realloc(r->picks, cap * sizeof *r->picks) : NULL;
        if (grown == NULL) { /* at DL_ACT_MAX (or out of memory): the rest stay for another call */
            r->more = true;
            return;
        }
        r->picks = grown;
        r->cap_picks = cap;
    }
    struct dl_pick *k = &r->picks[r->npicks];
    *k = (struct dl_pick){.r = r, .dlq_len = (int)strlen(rd_kafka_topic_name(m->rkt)),
                          .dlq_partition = m->partition, .dlq_offset = m->offset};
    snprintf(k->id, sizeof k->id, "%s", id);
    snprintf(k->topic, sizeof k->topic, "%s", otopic);
    snprintf(k->opart, sizeof k->opart, "%s", opart);
    snprintf(k->ooff, sizeof k->ooff, "%s", ooff);
    if (!kafka_header(m, "traceparent", k->traceparent, sizeof k->traceparent))
        k->traceparent[0] = '\0';
    if (r->mode == DL_REDRIVE) {
        k->keylen = m->key_len;
        k->len = m->len;
        k->key = malloc(m->key_len + 1);
        k->body = malloc(m->len + 1);
        if (k->key == NULL || k->body == NULL) {
            free(k->key);
            free(k->body);
            r->more = true;
            return;
        }
        if (m->key_len)
            memcpy(k->key, m->key, m->key_len);
        if (m->len)
            memcpy(k->body, m->payload, m->len);
    }
    r->npicks++;
}

static bool on_letter(void *arg, const rd_kafka_message_t *m)
{
    struct dl_req *r = arg;
    char id[DL_ID_MAX];
    snprintf(id, sizeof id, "%s/%d/%lld", rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset);
    enum dl_state st = state_of(r, id);
    if ((r->state != DL_ANY && st != r->state) || (r->named && !set_find(r->named, r->nnamed, id)))
        return true;
    char reason[1024], otopic[256], opart[16], ooff[24], at_s[24], group[256];
    header(m, "x-dlq-reason", reason, sizeof reason);
    header(m, "x-original-topic", otopic, sizeof otopic);
    header(m, KAFKA_ORIGINAL_PARTITION_HEADER, opart, sizeof opart);
    header(m, KAFKA_ORIGINAL_OFFSET_HEADER, ooff, sizeof ooff);
    header(m, "x-failed-at", at_s, sizeof at_s);
    header(m, "x-consumer-group", group, sizeof group);
    int64_t at = strtoll(at_s, NULL, 10);
    /* The job, if it is one (a poison message is dead-lettered as it came). */
    cJSON *job = cJSON_ParseWithLength(m->payload, m->len);
    const cJSON *payload = cJSON_GetObjectItemCaseSensitive(job, "payload");
    const char *type = json_str(job, "type", "");
    const char *app = json_str(payload, "application_token", json_str(job, "key", ""));
    char cause[KAFKA_DLQ_CAUSE_MAX + 1];
    kafka_dlq_cause(reason, cause);
    if (!matches(r, reason, cause, at, type, app)) {
        /* not one of those asked for */
    } else if (r->mode != DL_LIST) {
        r->count++;
        pick(r, m, id, otopic, opart, ooff);
    } else {
        r->count++;
        cJSON *c = cJSON_GetObjectItemCaseSensitive(r->causes, cause);
        if (c)
            cJSON_SetNumberValue(c, c->valuedouble + 1);
        else
            cJSON_AddNumberToObject(r->causes, cause, 1);
        /* Newest first, at most limit: the letters come in offset order
         * per partition, so each takes its place by failure time (in an
         * array of our own: cJSON 1.7.15's insert loses an item put just
         * before the last). */
        int idx = r->ntop;
        while (idx > 0 && r->top_at[idx - 1] < at)
            idx--;
        if (idx < r->limit) {
            cJSON *it = item(m, reason, cause, otopic, opart, ooff, at, group, type, app, payload);
            cJSON_AddStringToObject(it, "state", state_names[st]);
            if (r->ntop == r->limit)
                cJSON_Delete(r->top[--r->ntop]);
            memmove(r->top + idx + 1, r->top + idx, (size_t)(r->ntop - idx) * sizeof *r->top);
            memmove(r->top_at + idx + 1, r->top_at + idx, (size_t)(r->ntop - idx) * sizeof *r->top_at);
            r->top[idx] = it;
            r->top_at[idx] = at;
            r->ntop++;
        }
    }
    cJSON_Delete(job);
    return true;
}

/* Pool thread: the letters operators handled, from MySQL. */
static bool load_handled(struct dl_req *r, struct db *db)
{
    MYSQL_RES *res = NULL;
    if (db_query(db, "SELECT CONCAT(dlq_topic, '/', dlq_partition, '/', dlq_offset, '\t', action)"
                     " FROM dead_letter_actions", &res, r->err, sizeof r->err) != DB_OK)
        return false;
    size_t n = (size_t)mysql_num_rows(res);
    r->handled = calloc(n + 1, sizeof *r->handled);
    MYSQL_ROW row;
    bool ok = r->handled != NULL;
    while (ok && (row = mysql_fetch_row(res)) != NULL)
        if (row[0]) /* a letter not known as handled would be handled again: all or nothing */
            ok = (r->handled[r->nhandled++] = strdup(row[0])) != NULL;
    mysql_free_result(res);
    if (!ok)
        return sb_errf(r->err, sizeof r->err, "out of memory");
    qsort(r->handled, r->nhandled, sizeof *r->handled, cmp_str);
    return true;
}

static void on_redriven(void *opaque, rd_kafka_resp_err_t err)
{
    struct dl_pick *k = opaque;
    struct dl_req *r = k->r;
    pthread_mutex_lock(&r->lock);
    k->err = err;
    k->done = true;
    r->pending--;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

/* Each picked letter back to its original topic, with its key and body as
 * they were and a header naming the dead letter it came from (the roles
 * honour it: a dead notification is queued again); waits for Kafka's
 * acknowledgements (message.timeout.ms bounds the wait). */
static bool redrive(struct dl_req *r)
{
    for (size_t i = 0; i < r->npicks; i++) {
        struct dl_pick *k = &r->picks[i];
        rd_kafka_headers_t *h = rd_kafka_headers_new(5);
        rd_kafka_header_add(h, KAFKA_REDRIVE_HEADER, -1, k->id, -1);
        if (*k->traceparent)
            rd_kafka_header_add(h, "traceparent", -1, k->traceparent, -1);
        rd_kafka_header_add(h, "x-redriven-by", -1, r->actor, -1);
        /* Where the job stood: a role that orders writes by it (the
         * indexer's versions) puts the copy there, not at its new offset. */
        if (*k->opart && *k->ooff) {
            rd_kafka_header_add(h, KAFKA_ORIGINAL_PARTITION_HEADER, -1, k->opart, -1);
            rd_kafka_header_add(h, KAFKA_ORIGINAL_OFFSET_HEADER, -1, k->ooff, -1);
        }
        char err[ERRBUF_LEN];
        pthread_mutex_lock(&r->lock);
        r->pending++;
        pthread_mutex_unlock(&r->lock);
        if (!kafka_produce(r->d->producer, k->topic, k->key, k->keylen, k->body, k->len, h, on_redriven, k, err,
                           sizeof err)) {
            pthread_mutex_lock(&r->lock);
            r->pending--;
            k->err = RD_KAFKA_RESP_ERR__FAIL;
            k->done = true;
            pthread_mutex_unlock(&r->lock);
            log_warn("dead letter not redriven", "letter=%s err=\"%s\"", k->id, err);
        }
    }
    /* librdkafka reports every message within its timeout (the producer's
     * is request_timeout_ms); a wait past that means nobody serves the
     * reports (the dispatcher is stopping): the request is then left, not
     * freed, since reports may still come for it. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(r->d->cfg->request_timeout_ms / 1000 + 10);
    pthread_mutex_lock(&r->lock);
    int rc = 0;
    while (r->pending > 0 && rc == 0)
        rc = pthread_cond_timedwait(&r->cond, &r->lock, &until);
    bool all = r->pending == 0;
    pthread_mutex_unlock(&r->lock);
    if (!all)
        sb_errf(r->err, sizeof r->err, "Kafka did not report the deliveries (stopping?)");
    return all;
}

/* Records what was done to the picked letters (those Kafka took, for a
 * redrive), 500 a statement; INSERT IGNORE: a letter handled meanwhile by
 * another request stays as that one recorded it. */
static bool record(struct dl_req *r, struct db *db)
{
    const char *action = r->mode == DL_REDRIVE ? "redriven" : "discarded";
    for (size_t i = 0; i < r->npicks;) {
        struct strbuf b = {0};
        MYSQL *conn = db_conn(db, r->err, sizeof r->err);
        if (conn == NULL)
            return false;
        strbuf_append_lit(&b, "INSERT IGNORE INTO dead_letter_actions"
                              " (dlq_topic, dlq_partition, dlq_offset, action, actor, acted_at) VALUES ");
        size_t rows = 0;
        for (; i < r->npicks && rows < 500; i++) {
            struct dl_pick *k = &r->picks[i];
            if (r->mode == DL_REDRIVE && k->err) {
                r->failed_n++;
                continue;
            }
            char topic[250];
            snprintf(topic, sizeof topic, "%.*s", k->dlq_len, k->id);
            strbuf_appendf(&b, "%s(", rows ? "," : "");
            db_quote(&b, conn, topic);
            strbuf_appendf(&b, ",%d,%lld,'%s',", (int)k->dlq_partition, (long long)k->dlq_offset, action);
            db_quote(&b, conn, r->actor);
            strbuf_append_lit(&b, ",NOW(3))");
            rows++;
        }
        uint64_t n = 0;
        enum db_status st = rows == 0 || strbuf_failed(&b) ? (rows ? DB_FATAL : DB_OK)
                                                          : db_exec_count(db, b.p, &n, r->err, sizeof r->err);
        strbuf_free(&b);
        if (st != DB_OK)
            return false;
        r->acted += (long long)n;
    }
    return true;
}

/* One redrive or discard at a time, across dispatchers (a MySQL named
 * lock, held by this pool thread's connection): two at once would both
 * find the same letters unhandled and both produce them. */
#define DL_LOCK "switchboard.dead_letter_actions"

static bool take_lock(struct dl_req *r, struct db *db)
{
    MYSQL_RES *res = NULL;
    if (db_query(db, "SELECT GET_LOCK('" DL_LOCK "', 0)", &res, r->err, sizeof r->err) != DB_OK) {
        r->failed = r->db_failed = true;
        return false;
    }
    MYSQL_ROW row = mysql_fetch_row(res);
    r->busy = !(row && row[0] && strcmp(row[0], "1") == 0);
    mysql_free_result(res);
    return !r->busy;
}

static void dl_work(void *ctx, void *arg)
{
    struct dl_req *r = arg;
    struct db *db = ctx;
    const struct sb_config *cfg = r->d->cfg;
    if (r->mode != DL_LIST && !take_lock(r, db))
        return;
    if (!load_handled(r, db)) {
        r->failed = r->db_failed = true;
        goto unlock;
    }
    char *topics[DL_TOPICS_MAX];
    int n = kafka_admin_topics(kafka_producer_handle(r->d->producer), ".dlq", topics, DL_TOPICS_MAX,
                               DL_SCAN_TIMEOUT_MS, r->err, sizeof r->err);
    r->failed = n < 0;
    r->unknown = r->topic[0] != '\0';
    for (int i = 0; i < n; i++)
        if (r->topic[0] && strcmp(topics[i], r->topic) == 0)
            r->unknown = false;
    for (int i = 0; i < n; i++) {
        if (!r->failed && !r->unknown && (!r->topic[0] || strcmp(topics[i], r->topic) == 0) &&
            !kafka_admin_scan(cfg->kafka_brokers, cfg->kafka_conf, topics[i], DL_SCAN_TIMEOUT_MS, on_letter, r,
                              r->err, sizeof r->err))
            r->failed = true;
        free(topics[i]);
    }
    if (r->failed || r->unknown || r->mode == DL_LIST)
        goto unlock;
    if (r->mode == DL_REDRIVE && !redrive(r)) {
        r->orphaned = true; /* its reports may still come: never freed */
        r->failed = true;
        goto unlock;
    }
    /* Produced first, recorded after: a crash between the two leaves a
     * letter that may be redriven twice (the roles take a job twice
     * safely), never one marked redriven that was not. */
    if (!record(r, db)) {
        r->unrecorded = true; /* done, but a later call may do it again: said so, and logged */
        log_error("dead letters handled but not recorded", "by=%s err=\"%s\"", r->actor, r->err);
    }
unlock:
    if (r->mode != DL_LIST) {
        char why[ERRBUF_LEN];
        if (db_exec(db, "DO RELEASE_LOCK('" DL_LOCK "')", why, sizeof why) != DB_OK) /* gone with the connection */
            log_debug("dead-letter lock not released", "err=\"%s\"", why);
    }
}

static void dl_expire(void *arg)
{
    ((struct dl_req *)arg)->expired = true;
}

static void dl_free(struct dl_req *r)
{
    for (int i = 0; i < r->ntop; i++)
        cJSON_Delete(r->top[i]);
    cJSON_Delete(r->causes);
    for (size_t i = 0; i < r->npicks; i++) {
        free(r->picks[i].key);
        free(r->picks[i].body);
    }
    free(r->picks);
    free_set(r->handled, r->nhandled);
    free_set(r->named, r->nnamed);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

static void dl_done(void *arg)
{
    struct dl_req *r = arg;
    if (r->expired) {
        http_pending_busy(r->p);
    } else if (r->busy) {
        http_req_add_header(r->p->req, "Retry-After", "1");
        http_pending_errorf(r->p, 409, "in_progress", "another redrive or discard is running; retry when it is done");
    } else if (r->unknown && !r->failed) {
        http_pending_errorf(r->p, 404, "not_found", "no dead-letter topic %s", r->topic);
    } else if (r->failed) {
        log_warn("dead letters: a dependency did not answer", "err=\"%s\"", r->err);
        http_pending_errorf(r->p, 503, r->db_failed ? "database_unavailable" : "kafka_unavailable",
                            "cannot %s the dead letters: %s", r->mode == DL_LIST ? "read" : "handle", r->err);
    } else if (r->mode == DL_LIST) {
        cJSON *body = cJSON_CreateObject();
        cJSON_AddNumberToObject(body, "count", (double)r->count);
        cJSON_AddItemToObject(body, "causes", r->causes);
        cJSON *items = cJSON_AddArrayToObject(body, "items");
        for (int i = 0; i < r->ntop; i++)
            cJSON_AddItemToArray(items, r->top[i]);
        r->ntop = 0;
        r->causes = NULL;
        http_pending_reply(r->p, 200, body);
        cJSON_Delete(body);
    } else {
        const char *done = r->mode == DL_REDRIVE ? "redriven" : "discarded";
        /* Who did what to how many: the audit trail of the operators. */
        log_info(r->mode == DL_REDRIVE ? "dead letters redriven" : "dead letters discarded",
                 "by=%s matched=%lld done=%lld failed=%lld more=%s topic=%s reason=\"%s\" cause=\"%s\" type=%s"
                 " application=%s since=%lld until=%lld",
                 r->actor, r->count, r->acted, r->failed_n, r->more ? "yes" : "no", r->topic, r->reason, r->cause,
                 r->type, r->app, (long long)r->since, (long long)r->until);
        metric_add(metrics_counter(r->mode == DL_REDRIVE ? "switchboard_dead_letters_redriven_total"
                                                        : "switchboard_dead_letters_discarded_total",
                                   "", r->mode == DL_REDRIVE ? "dead letters produced back to their topic by an operator"
                                                             : "dead letters an operator marked handled"),
                   (double)r->acted);
        cJSON *body = cJSON_CreateObject();
        cJSON_AddNumberToObject(body, "matched", (double)r->count);
        cJSON_AddNumberToObject(body, done, (double)r->acted);
        cJSON_AddNumberToObject(body, "failed", (double)r->failed_n);
        cJSON_AddBoolToObject(body, "more", r->more);
        cJSON_AddBoolToObject(body, "recorded", !r->unrecorded);
        http_pending_reply(r->p, 200, body);
        cJSON_Delete(body);
    }
    if (r->orphaned)
        log_error("dead-letter redrive left waiting for Kafka's reports", "by=%s letters=%zu", r->actor, r->npicks);
    else
        dl_free(r);
}

/* A time bound: milliseconds since the epoch, or absent. */
static bool time_param(struct http_ctx *ctx, const char *name, int64_t *out)
{
    char v[24];
    *out = 0;
    if (!http_query_param(ctx, name, v, sizeof v))
        return true;
    if (!sb_parse_i64(v, 1, INT64_MAX, out)) {
        http_reply_error(ctx, 400, "invalid_parameter", "%s must be a time in milliseconds since the epoch", name);
        return false;
    }
    return true;
}

/* A filter's words: absent, or 1 to cap - 1 bytes. */
static bool text_param(struct http_ctx *ctx, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    if (http_query_param(ctx, name, out, cap) && out[0] == '\0') {
        http_reply_error(ctx, 400, "invalid_parameter", "%s must be 1 to %zu bytes", name, cap - 1);
        return false;
    }
    return true;
}

static bool topic_name_ok(const char *t, size_t n)
{
    return n > 0 && n < 250 && strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* letters=topic/partition/offset,...: the letters a request names. */
static bool letters_param(struct http_ctx *ctx, struct dl_req *r)
{
    char *buf = malloc(DL_LETTERS_MAX);
    if (buf == NULL) {
        http_reply_error(ctx, 503, "overloaded", "out of memory");
        return false;
    }
    if (!http_query_param(ctx, "letters", buf, DL_LETTERS_MAX)) {
        free(buf);
        return true;
    }
    bool ok = buf[0] != '\0';
    size_t cap = 1;
    for (const char *c = buf; *c; c++)
        cap += *c == ',';
    r->named = ok ? calloc(cap, sizeof *r->named) : NULL;
    ok = ok && r->named;
    for (char *save = NULL, *it = ok ? strtok_r(buf, ",", &save) : NULL; ok && it; it = strtok_r(NULL, ",", &save)) {
        char *a = strchr(it, '/'), *b = a ? strchr(a + 1, '/') : NULL;
        int64_t v;
        ok = a && b && topic_name_ok(it, (size_t)(a - it)) && (*b = '\0', sb_parse_i64(a + 1, 0, INT32_MAX, &v)) &&
             sb_parse_i64(b + 1, 0, INT64_MAX, &v);
        if (ok) {
            *b = '/';
            ok = (r->named[r->nnamed] = strdup(it)) != NULL;
            r->nnamed += ok;
        }
    }
    free(buf);
    if (!ok) {
        http_reply_error(ctx, 400, "invalid_parameter",
                         "letters must be dead letters as topic/partition/offset, comma-separated");
        return false;
    }
    qsort(r->named, r->nnamed, sizeof *r->named, cmp_str);
    return true;
}

/* The filter every dead-letter route takes, from the query. */
static struct dl_req *dl_req_new(struct http_ctx *ctx, enum dl_mode mode)
{
    struct dl_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        http_reply_error(ctx, 503, "overloaded", "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->mode = mode;
    r->state = mode == DL_LIST ? DL_ANY : DL_NEW; /* an action takes only letters nobody handled */
    char limit[16], state[16];
    int64_t lim = DL_LIMIT_DEFAULT;
    bool ok = true;
    if (http_query_param(ctx, "topic", r->topic, sizeof r->topic)) {
        size_t n = strlen(r->topic);
        if (n < 5 || strcmp(r->topic + n - 4, ".dlq") != 0 || !topic_name_ok(r->topic, n)) {
            http_reply_error(ctx, 400, "invalid_parameter", "topic must name a dead-letter topic (<topic>.dlq)");
            ok = false;
        }
    }
    if (ok && mode == DL_LIST && http_query_param(ctx, "limit", limit, sizeof limit) &&
        !sb_parse_i64(limit, 0, DL_LIMIT_MAX, &lim)) {
        http_reply_error(ctx, 400, "invalid_parameter", "limit must be 0 to %d", DL_LIMIT_MAX);
        ok = false;
    }
    if (ok && mode == DL_LIST && http_query_param(ctx, "state", state, sizeof state)) {
        int k = 0;
        while (k < (int)SB_ARRAY_LEN(state_names) && strcmp(state, state_names[k]) != 0)
            k++;
        if (k == (int)SB_ARRAY_LEN(state_names)) {
            http_reply_error(ctx, 400, "invalid_parameter", "state must be any, new, redriven or discarded");
            ok = false;
        }
        r->state = (enum dl_state)k;
    }
    ok = ok && time_param(ctx, "since", &r->since) && time_param(ctx, "until", &r->until);
    ok = ok && text_param(ctx, "reason", r->reason, sizeof r->reason) &&
         text_param(ctx, "cause", r->cause, sizeof r->cause) &&
         text_param(ctx, "type", r->type, sizeof r->type) && text_param(ctx, "application", r->app, sizeof r->app);
    ok = ok && letters_param(ctx, r);
    if (ok) {
        r->limit = (int)lim;
        r->d = ctx->loop->d;
        snprintf(r->actor, sizeof r->actor, "%s", ctx->principal);
        r->causes = cJSON_CreateObject();
        ok = r->causes != NULL;
        if (!ok)
            http_reply_error(ctx, 503, "overloaded", "out of memory");
        else
            ok = (r->p = http_pending_new(ctx)) != NULL; /* on NULL it answered itself */
    }
    if (!ok) {
        dl_free(r);
        return NULL;
    }
    return r;
}

static void dl_start(struct http_ctx *ctx, enum dl_mode mode)
{
    struct dl_req *r = dl_req_new(ctx, mode);
    /* Kafka round trips, a read of whole topics, MySQL: on a pool thread. */
    if (r && !http_pool_submit(r->p, r->d->dbpool, threadpool_tenant(ctx->principal), dl_work, dl_expire, dl_done,
                               r))
        dl_free(r);
}

void deadletter_list(struct http_ctx *ctx)
{
    dl_start(ctx, DL_LIST);
}

void deadletter_redrive(struct http_ctx *ctx)
{
    dl_start(ctx, DL_REDRIVE);
}

void deadletter_discard(struct http_ctx *ctx)
{
    dl_start(ctx, DL_DISCARD);
}
