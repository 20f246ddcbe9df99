/* throughput.c - see throughput.h. */
#include "throughput.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_admin.h"
#include "log.h"

/* Broker round trips of one sample (one per partition): bounded, so a
 * Kafka that hangs delays the next sample, never the process's stop. */
#define SAMPLE_TIMEOUT_MS 5000

struct throughput {
    struct dispatcher *d;
    pthread_t thread;
    bool started;
    atomic_int stop;
    pthread_mutex_t lock;
    int64_t interval_ms;
    int ntopics;
    char names[THROUGHPUT_TOPICS][256];
    /* The ring: count samples, the newest at head. -1 = not known then. */
    int head, count;
    int64_t at[THROUGHPUT_SAMPLES];
    int64_t end[THROUGHPUT_SAMPLES][THROUGHPUT_TOPICS];
};

/* The column of a topic, added if there is room; -1 if none. Under lock. */
static int column(struct throughput *t, const char *name)
{
    for (int i = 0; i < t->ntopics; i++)
        if (strcmp(t->names[i], name) == 0)
            return i;
    if (t->ntopics == THROUGHPUT_TOPICS || strlen(name) >= sizeof t->names[0])
        return -1;
    strcpy(t->names[t->ntopics], name); /* length checked */
    for (int s = 0; s < THROUGHPUT_SAMPLES; s++)
        t->end[s][t->ntopics] = -1; /* not there before */
    return t->ntopics++;
}

void throughput_record(struct throughput *t, const cJSON *topics, int64_t at_ms)
{
    pthread_mutex_lock(&t->lock);
    int s = t->count == 0 ? 0 : (t->head + 1) % THROUGHPUT_SAMPLES;
    t->at[s] = at_ms;
    for (int i = 0; i < THROUGHPUT_TOPICS; i++)
        t->end[s][i] = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, topics)
    {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "topic"));
        const cJSON *end = cJSON_GetObjectItemCaseSensitive(it, "end_offset");
        int c = name && cJSON_IsNumber(end) ? column(t, name) : -1;
        if (c >= 0)
            t->end[s][c] = (int64_t)end->valuedouble;
    }
    t->head = s;
    if (t->count < THROUGHPUT_SAMPLES)
        t->count++;
    pthread_mutex_unlock(&t->lock);
}

cJSON *throughput_history(struct throughput *t)
{
    cJSON *out = cJSON_CreateObject();
    cJSON *at = cJSON_AddArrayToObject(out, "at"), *topics = cJSON_AddObjectToObject(out, "topics");
    if (at == NULL || topics == NULL) {
        cJSON_Delete(out);
        return NULL;
    }
    pthread_mutex_lock(&t->lock);
    cJSON_AddNumberToObject(out, "interval_ms", (double)t->interval_ms);
    int first = (t->head - t->count + 1 + THROUGHPUT_SAMPLES) % THROUGHPUT_SAMPLES;
    bool ok = true;
    for (int c = 0; c < t->ntopics && ok; c++) {
        cJSON *rates = cJSON_AddArrayToObject(topics, t->names[c]);
        ok = rates != NULL;
        for (int k = 1; k < t->count && ok; k++) {
            int a = (first + k - 1) % THROUGHPUT_SAMPLES, b = (first + k) % THROUGHPUT_SAMPLES;
            int64_t jobs = t->end[b][c] - t->end[a][c], ms = t->at[b] - t->at[a];
            /* Unknown at either end, or the topic made anew (its offsets
             * went back): no rate rather than a wrong one. */
            bool known = t->end[a][c] >= 0 && t->end[b][c] >= 0 && jobs >= 0 && ms > 0;
            ok = cJSON_AddItemToArray(rates, known ? cJSON_CreateNumber((double)jobs * 1000.0 / (double)ms)
                                                   : cJSON_CreateNull());
        }
    }
    if (t->count > 0)
        cJSON_AddNumberToObject(out, "since", (double)t->at[first]);
    for (int k = 1; k < t->count && ok; k++)
        ok = cJSON_AddItemToArray(at, cJSON_CreateNumber((double)t->at[(first + k) % THROUGHPUT_SAMPLES]));
    pthread_mutex_unlock(&t->lock);
    if (!ok) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

static void *sampler_main(void *arg)
{
    struct throughput *t = arg;
    bool warned = false;
    while (!atomic_load(&t->stop)) {
        char err[ERRBUF_LEN];
        cJSON *topics = kafka_admin_topic_offsets(kafka_producer_handle(t->d->producer), SAMPLE_TIMEOUT_MS, err,
                                                  sizeof err);
        if (topics) {
            throughput_record(t, topics, sb_now_ms());
            warned = false;
        } else if (!warned) { /* Kafka's outage is /readyz's to report; say it once */
            log_warn("throughput sample failed", "err=\"%s\"", err);
            warned = true;
        }
        cJSON_Delete(topics);
        sb_sleep_ms_unless(t->interval_ms, &t->stop);
    }
    return NULL;
}

struct throughput *throughput_new(struct dispatcher *d, char *errbuf, size_t errlen)
{
    struct throughput *t = calloc(1, sizeof *t);
    if (t == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return NULL;
    }
    t->d = d;
    t->interval_ms = d->cfg->ops_sample_interval_ms;
    pthread_mutex_init(&t->lock, NULL);
    int rc = pthread_create(&t->thread, NULL, sampler_main, t);
    if (rc != 0) {
        sb_errf(errbuf, errlen, "cannot start the throughput sampler: %s", strerror(rc));
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
    }
    return t;
}

void throughput_free(struct throughput *t)
{
    if (t == NULL)
        return;
    atomic_store(&t->stop, 1);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
