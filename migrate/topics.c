/* topics.c - see topics.h. */
#include "topics.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kafka_topics.h"
#include "log.h"

#define MAX_TOPICS 64
#define MAX_SETTINGS 16
#define DEFAULT_PARTITIONS 8
#define ADMIN_TIMEOUT_MS 30000

/* One wanted topic and the storage its strings live in. */
struct wanted {
    char name[256];
    char *config[2 * MAX_SETTINGS + 1]; /* key, value, ..., NULL (strdup'ed) */
};

struct plan {
    struct wanted topics[MAX_TOPICS];
    struct kafka_topic_spec specs[MAX_TOPICS];
    size_t n;
};

static void plan_free(struct plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        for (char **c = p->topics[i].config; *c; c++)
            free(*c);
}

/* Adds a topic; settings is an object of string (or number) values, or
 * NULL. On false the slot is still counted, so that plan_free frees what
 * was copied into it. */
static bool plan_add(struct plan *p, const char *name, int partitions, int replication,
                     const cJSON *settings, char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->topics[i].name, name) == 0)
            return true; /* named twice (a notify topic that is also a schema topic) */
    if (p->n == MAX_TOPICS || strlen(name) >= sizeof p->topics[0].name) {
        sb_errf(errbuf, errlen, "too many topics, or a name too long: %s", name);
        return false;
    }
    if (settings && !cJSON_IsObject(settings)) {
        sb_errf(errbuf, errlen, "topic %s: its settings must be an object of name: value", name);
        return false;
    }
    struct wanted *w = &p->topics[p->n++];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    size_t k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, settings)
    {
        char num[32];
        const char *v = cJSON_IsString(it) ? it->valuestring : NULL;
        if (cJSON_IsNumber(it)) {
            snprintf(num, sizeof num, "%.0f", it->valuedouble);
            v = num;
        }
        if (v == NULL || k + 2 > 2 * MAX_SETTINGS) {
            sb_errf(errbuf, errlen, "topic %s: setting %s must be a string (at most %d settings)",
                    name, it->string, MAX_SETTINGS);
            return false;
        }
        if ((w->config[k++] = strdup(it->string)) == NULL || (w->config[k++] = strdup(v)) == NULL) {
            sb_errf(errbuf, errlen, "out of memory");
            return false;
        }
    }
    p->specs[p->n - 1] = (struct kafka_topic_spec){w->name, partitions, replication,
                                                   (const char *const *)w->config};
    return true;
}

/* Reads schema_dir/topics/<name>.json: the topic and its .dlq. */
static bool plan_schema_topic(struct plan *p, const char *dir, const char *file, int partitions,
                              int replication, char *errbuf, size_t errlen)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t len = 0;
    char *text = sb_read_file(path, &len, errbuf, errlen);
    if (text == NULL)
        return false;
    char inner[ERRBUF_LEN];
    cJSON *doc = json_parse_strict(text, len, inner, sizeof inner);
    free(text);
    if (doc == NULL) {
        sb_errf(errbuf, errlen, "%s: %s", path, inner);
        return false;
    }
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(doc, "x-kafka");
    int64_t want = partitions ? partitions : json_i64(x, "partitions", DEFAULT_PARTITIONS);
    char name[256], dlq[KAFKA_DLQ_NAME_MAX];
    snprintf(name, sizeof name, "%.*s", (int)(strlen(file) - 5), file);
    kafka_dlq_name(name, dlq);
    bool ok = want >= 1 && want <= 10000;
    if (!ok)
        sb_errf(errbuf, errlen, "%s: x-kafka.partitions must be 1..10000", path);
    ok = ok &&
         plan_add(p, name, (int)want, replication, cJSON_GetObjectItemCaseSensitive(x, "config"),
                  errbuf, errlen) &&
         plan_add(p, dlq, (int)want, replication, cJSON_GetObjectItemCaseSensitive(x, "dlq_config"),
                  errbuf, errlen);
    cJSON_Delete(doc);
    return ok;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool plan_build(struct plan *p, const struct sb_config *cfg, char *errbuf, size_t errlen)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/topics", cfg->schema_dir);
    DIR *d = opendir(dir);
    if (d == NULL) {
        sb_errf(errbuf, errlen, "open %s: %s", dir, strerror(errno));
        return false;
    }
    char *files[MAX_TOPICS];
    size_t nf = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && nf < MAX_TOPICS) {
        size_t n = strlen(de->d_name);
        if (n > 5 && de->d_name[0] != '.' && strcmp(de->d_name + n - 5, ".json") == 0 &&
            (files[nf] = strdup(de->d_name)) != NULL)
            nf++;
    }
    closedir(d);
    qsort(files, nf, sizeof *files, cmp_name);
    int partitions = (int)cfg->kafka_partitions, replication = (int)cfg->kafka_replication_factor;
    bool ok = nf > 0;
    if (!ok)
        sb_errf(errbuf, errlen, "%s holds no topic schema", dir);
    for (size_t i = 0; i < nf; i++) {
        ok = ok && plan_schema_topic(p, dir, files[i], partitions, replication, errbuf, errlen);
        free(files[i]);
    }
    /* The kafka channel's destination topics: made like the others, without
     * settings of their own and without a dead-letter topic (the notifier
     * dead-letters a failed delivery on notify.requests.dlq). */
    char list[1024];
    snprintf(list, sizeof list, "%s", cfg->notify_topics);
    char *save = NULL;
    for (char *t = strtok_r(list, ", ", &save); ok && t; t = strtok_r(NULL, ", ", &save))
        ok = plan_add(p, t, partitions ? partitions : DEFAULT_PARTITIONS, replication, NULL, errbuf,
                      errlen);
    return ok;
}

int topics_run(const struct sb_config *cfg, FILE *out)
{
    struct plan *p = calloc(1, sizeof *p);
    struct kafka_topic_result res[MAX_TOPICS];
    char err[ERRBUF_LEN];
    int rc = 1;
    if (p == NULL) {
        log_error("topics failed", "err=\"out of memory\"");
        return 1;
    }
    if (!plan_build(p, cfg, err, sizeof err)) {
        log_error("topics failed", "err=\"%s\"", err);
        goto done;
    }
    if (!kafka_topics_ensure(cfg->kafka_brokers, cfg->kafka_conf, p->specs, p->n, res,
                             ADMIN_TIMEOUT_MS, err, sizeof err)) {
        log_error("topics failed", "brokers=%s err=\"%s\"", cfg->kafka_brokers, err);
        goto done;
    }
    size_t created = 0, differ = 0, failed = 0;
    for (size_t i = 0; i < p->n; i++) {
        const char *name = p->specs[i].name;
        int want = p->specs[i].partitions;
        switch (res[i].outcome) {
        case TOPIC_CREATED:
            created++;
            fprintf(out, "created %s partitions=%d\n", name, want);
            break;
        case TOPIC_EXISTS:
            fprintf(out, "exists  %s partitions=%d\n", name, res[i].partitions);
            break;
        case TOPIC_DIFFERS:
            differ++;
            fprintf(out, "DIFFERS %s partitions=%d wanted=%d\n", name, res[i].partitions, want);
            log_warn("topic has another partition count than wanted; left as it is (more partitions "
                     "would move keys to other partitions and break their order)",
                     "topic=%s partitions=%d wanted=%d", name, res[i].partitions, want);
            break;
        case TOPIC_FAILED:
            failed++;
            fprintf(out, "FAILED  %s %s\n", name, res[i].error);
            log_error("topic not created", "topic=%s err=\"%s\"", name, res[i].error);
            break;
        }
    }
    log_info("topics up to date", "topics=%zu created=%zu differ=%zu failed=%zu", p->n, created,
             differ, failed);
    rc = failed ? 1 : 0;
done:
    plan_free(p);
    free(p);
    return rc;
}
