/* history.c - see history.h. */
#include "history.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_admin.h"
#include "log.h"

/* Each broker step of one sample (metadata, a partition's offsets, a
 * group's) waits at most this long: a Kafka that hangs delays the next
 * sample, and a stop by at most the steps of the sample under way. */
#define SAMPLE_TIMEOUT_MS 2000

/* One number per name per sample; -1 = not known then. */
struct series {
    int n;
    char names[HISTORY_COLUMNS][256];
    int64_t v[HISTORY_SAMPLES][HISTORY_COLUMNS];
};

struct history {
    struct dispatcher *d;
    pthread_t thread;
    atomic_int stop;
    bool stopped; /* the sampler is joined */
    pthread_mutex_t lock;
    int64_t interval_ms;
    /* The ring: count samples, the newest at head. */
    int head, count;
    int64_t at[HISTORY_SAMPLES];
    struct series topics; /* end offsets */
    struct series groups; /* lag */
};

/* The column of name, added if there is room; -1 if none. Under lock. */
static int column(struct series *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0)
            return i;
    if (s->n == HISTORY_COLUMNS || strlen(name) >= sizeof s->names[0])
        return -1;
    strcpy(s->names[s->n], name); /* length checked */
    for (int k = 0; k < HISTORY_SAMPLES; k++)
        s->v[k][s->n] = -1; /* not there before */
    return s->n++;
}

/* Sample slot of s from array's items: name_key names the column,
 * value_key holds the number. */
static void put(struct series *s, int slot, const cJSON *array, const char *name_key, const char *value_key)
{
    for (int i = 0; i < HISTORY_COLUMNS; i++)
        s->v[slot][i] = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, array)
    {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, name_key));
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, value_key);
        int c = name && cJSON_IsNumber(v) ? column(s, name) : -1;
        if (c >= 0)
            s->v[slot][c] = (int64_t)v->valuedouble;
    }
}

void history_record(struct history *h, const cJSON *overview, int64_t at_ms)
{
    pthread_mutex_lock(&h->lock);
    int slot = h->count == 0 ? 0 : (h->head + 1) % HISTORY_SAMPLES;
    h->at[slot] = at_ms;
    put(&h->topics, slot, cJSON_GetObjectItemCaseSensitive(overview, "topics"), "topic", "end_offset");
    put(&h->groups, slot, cJSON_GetObjectItemCaseSensitive(overview, "groups"), "group", "lag");
    h->head = slot;
    if (h->count < HISTORY_SAMPLES)
        h->count++;
    pthread_mutex_unlock(&h->lock);
}

/* The slot of the k-th sample, oldest first. Under lock. */
static int slot_of(const struct history *h, int k)
{
    return (h->head - h->count + 1 + k + 2 * HISTORY_SAMPLES) % HISTORY_SAMPLES;
}

/* {"interval_ms", "at": [...], key: {}}: the frame both answers share;
 * *named is the object under key. Under lock. */
static cJSON *frame(const struct history *h, int first, const char *key, cJSON **named)
{
    cJSON *out = cJSON_CreateObject();
    cJSON *at = cJSON_AddArrayToObject(out, "at");
    *named = cJSON_AddObjectToObject(out, key);
    bool ok = at && *named && cJSON_AddNumberToObject(out, "interval_ms", (double)h->interval_ms);
    for (int k = first; k < h->count && ok; k++)
        ok = cJSON_AddItemToArray(at, cJSON_CreateNumber((double)h->at[slot_of(h, k)]));
    if (!ok) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

cJSON *history_throughput(struct history *h)
{
    cJSON *topics;
    pthread_mutex_lock(&h->lock);
    cJSON *out = frame(h, 1, "topics", &topics);
    bool ok = out != NULL;
    if (ok && h->count > 0)
        ok = cJSON_AddNumberToObject(out, "since", (double)h->at[slot_of(h, 0)]) != NULL;
    for (int c = 0; c < h->topics.n && ok; c++) {
        cJSON *rates = cJSON_AddArrayToObject(topics, h->topics.names[c]);
        ok = rates != NULL;
        for (int k = 1; k < h->count && ok; k++) {
            int a = slot_of(h, k - 1), b = slot_of(h, k);
            int64_t ea = h->topics.v[a][c], eb = h->topics.v[b][c], ms = h->at[b] - h->at[a];
            /* Unknown at either end, or the topic made anew (its offsets
             * went back): no rate rather than a wrong one. */
            bool known = ea >= 0 && eb >= ea && ms > 0;
            ok = cJSON_AddItemToArray(rates, known ? cJSON_CreateNumber((double)(eb - ea) * 1000.0 / (double)ms)
                                                   : cJSON_CreateNull());
        }
    }
    pthread_mutex_unlock(&h->lock);
    if (!ok) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

cJSON *history_lag(struct history *h)
{
    cJSON *groups;
    pthread_mutex_lock(&h->lock);
    cJSON *out = frame(h, 0, "groups", &groups);
    bool ok = out != NULL;
    for (int c = 0; c < h->groups.n && ok; c++) {
        cJSON *lags = cJSON_AddArrayToObject(groups, h->groups.names[c]);
        ok = lags != NULL;
        for (int k = 0; k < h->count && ok; k++) {
            int64_t v = h->groups.v[slot_of(h, k)][c];
            ok = cJSON_AddItemToArray(lags, v >= 0 ? cJSON_CreateNumber((double)v) : cJSON_CreateNull());
        }
    }
    pthread_mutex_unlock(&h->lock);
    if (!ok) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

static void *sampler_main(void *arg)
{
    struct history *h = arg;
    bool warned = false;
    while (!atomic_load(&h->stop)) {
        char err[ERRBUF_LEN];
        cJSON *o = kafka_admin_overview(kafka_producer_handle(h->d->producer), SAMPLE_TIMEOUT_MS, err, sizeof err);
        if (o) {
            history_record(h, o, sb_now_ms());
            warned = false;
        } else if (!warned) { /* Kafka's outage is /readyz's to report; say it once */
            log_warn("ops history: sample failed", "err=\"%s\"", err);
            warned = true;
        }
        cJSON_Delete(o);
        sb_sleep_ms_unless(h->interval_ms, &h->stop);
    }
    return NULL;
}

struct history *history_new(struct dispatcher *d, char *errbuf, size_t errlen)
{
    struct history *h = calloc(1, sizeof *h);
    if (h == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    h->d = d;
    h->interval_ms = d->cfg->ops_sample_interval_ms;
    pthread_mutex_init(&h->lock, NULL);
    int rc = pthread_create(&h->thread, NULL, sampler_main, h);
    if (rc != 0) {
        sb_errf(errbuf, errlen, "cannot start the ops history sampler: %s", strerror(rc));
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    return h;
}

void history_stop(struct history *h)
{
    if (h == NULL || h->stopped)
        return;
    atomic_store(&h->stop, 1);
    pthread_join(h->thread, NULL);
    h->stopped = true;
}

void history_free(struct history *h)
{
    if (h == NULL)
        return;
    history_stop(h);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
