/* kafka_admin.c - see kafka_admin.h. */
#include "kafka_admin.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"
#include "util.h"

/* One Admin API request's result from its own queue (the handle's main
 * queue carries the producer's delivery reports). NULL on timeout. */
static rd_kafka_event_t *wait_result(rd_kafka_queue_t *q, rd_kafka_event_type_t type, int timeout_ms,
                                     char *errbuf, size_t errlen)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms);
    if (ev == NULL) {
        sb_errf(errbuf, errlen, "Kafka did not answer within %d ms", timeout_ms);
        return NULL;
    }
    if (rd_kafka_event_type(ev) != type || rd_kafka_event_error(ev)) {
        sb_errf(errbuf, errlen, "Kafka: %s",
                rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev) : "unexpected answer");
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

static rd_kafka_AdminOptions_t *options(rd_kafka_t *rk, rd_kafka_admin_op_t op, int timeout_ms)
{
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, op);
    char ignore[128];
    if (o)
        (void)rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, ignore, sizeof ignore);
    return o;
}

/* The end offset of topic/partition in the topics array, or -1. */
static long long end_of(const cJSON *topics, const char *topic, int32_t partition)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, topics) {
        if (strcmp(cJSON_GetObjectItem(t, "topic")->valuestring, topic) != 0)
            continue;
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItem(t, "partitions"))
            if (cJSON_GetObjectItem(p, "partition")->valueint == partition)
                return (long long)cJSON_GetObjectItem(p, "high")->valuedouble;
    }
    return -1;
}

static bool add_topics(rd_kafka_t *rk, cJSON *topics, int timeout_ms, char *errbuf, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (err)
        return sb_errf(errbuf, errlen, "Kafka metadata: %s", rd_kafka_err2str(err));
    bool ok = true;
    for (int i = 0; i < md->topic_cnt && ok; i++) {
        const struct rd_kafka_metadata_topic *mt = &md->topics[i];
        if (strncmp(mt->topic, "__", 2) == 0 || mt->err)
            continue;
        cJSON *t = cJSON_CreateObject(), *parts = cJSON_CreateArray();
        cJSON_AddItemToArray(topics, t);
        cJSON_AddStringToObject(t, "topic", mt->topic);
        long long end = 0;
        for (int k = 0; k < mt->partition_cnt && ok; k++) {
            int64_t lo = -1, hi = -1;
            err = rd_kafka_query_watermark_offsets(rk, mt->topic, mt->partitions[k].id, &lo, &hi, timeout_ms);
            if (err) {
                ok = sb_errf(errbuf, errlen, "Kafka offsets of %s/%d: %s", mt->topic, mt->partitions[k].id,
                             rd_kafka_err2str(err));
                break;
            }
            cJSON *p = cJSON_CreateObject();
            cJSON_AddNumberToObject(p, "partition", mt->partitions[k].id);
            cJSON_AddNumberToObject(p, "low", (double)lo);
            cJSON_AddNumberToObject(p, "high", (double)hi);
            cJSON_AddItemToArray(parts, p);
            end += hi;
        }
        cJSON_AddNumberToObject(t, "end_offset", (double)end);
        cJSON_AddItemToObject(t, "partitions", parts);
    }
    rd_kafka_metadata_destroy(md);
    return ok;
}

/* One group's committed offsets (every partition it has committed on). */
static bool add_group(rd_kafka_t *rk, rd_kafka_queue_t *q, const char *group, const char *state,
                      const cJSON *topics, cJSON *groups, int timeout_ms, char *errbuf, size_t errlen)
{
    rd_kafka_ListConsumerGroupOffsets_t *req = rd_kafka_ListConsumerGroupOffsets_new(group, NULL);
    rd_kafka_AdminOptions_t *o = options(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, timeout_ms);
    if (req == NULL || o == NULL) {
        if (req)
            rd_kafka_ListConsumerGroupOffsets_destroy(req);
        if (o)
            rd_kafka_AdminOptions_destroy(o);
        return sb_errf(errbuf, errlen, "out of memory");
    }
    rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, o, q);
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_event_t *ev = wait_result(q, RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT, timeout_ms + 1000,
                                       errbuf, errlen);
    if (ev == NULL)
        return false;
    size_t n = 0;
    const rd_kafka_group_result_t **res =
        rd_kafka_ListConsumerGroupOffsets_result_groups(rd_kafka_event_ListConsumerGroupOffsets_result(ev), &n);
    const rd_kafka_topic_partition_list_t *parts =
        n == 1 && !rd_kafka_group_result_error(res[0]) ? rd_kafka_group_result_partitions(res[0]) : NULL;
    cJSON *g = cJSON_CreateObject(), *gp = cJSON_CreateArray();
    cJSON_AddStringToObject(g, "group", group);
    cJSON_AddStringToObject(g, "state", state);
    long long lag = 0;
    for (int i = 0; parts && i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        long long end = end_of(topics, tp->topic, tp->partition);
        if (tp->err || tp->offset < 0 || end < 0) /* nothing committed there */
            continue;
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "topic", tp->topic);
        cJSON_AddNumberToObject(p, "partition", tp->partition);
        cJSON_AddNumberToObject(p, "committed", (double)tp->offset);
        cJSON_AddNumberToObject(p, "end", (double)end);
        long long l = end > tp->offset ? end - tp->offset : 0;
        cJSON_AddNumberToObject(p, "lag", (double)l);
        cJSON_AddItemToArray(gp, p);
        lag += l;
    }
    cJSON_AddNumberToObject(g, "lag", (double)lag);
    cJSON_AddItemToObject(g, "partitions", gp);
    cJSON_AddItemToArray(groups, g);
    rd_kafka_event_destroy(ev);
    return true;
}

static bool add_groups(rd_kafka_t *rk, rd_kafka_queue_t *q, const cJSON *topics, cJSON *groups,
                       int timeout_ms, char *errbuf, size_t errlen)
{
    rd_kafka_AdminOptions_t *o = options(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS, timeout_ms);
    if (o == NULL)
        return sb_errf(errbuf, errlen, "out of memory");
    rd_kafka_ListConsumerGroups(rk, o, q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_event_t *ev = wait_result(q, RD_KAFKA_EVENT_LISTCONSUMERGROUPS_RESULT, timeout_ms + 1000,
                                       errbuf, errlen);
    if (ev == NULL)
        return false;
    size_t n = 0;
    const rd_kafka_ConsumerGroupListing_t **gl =
        rd_kafka_ListConsumerGroups_result_valid(rd_kafka_event_ListConsumerGroups_result(ev), &n);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        ok = add_group(rk, q, rd_kafka_ConsumerGroupListing_group_id(gl[i]),
                       rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupListing_state(gl[i])), topics,
                       groups, timeout_ms, errbuf, errlen);
    rd_kafka_event_destroy(ev);
    return ok;
}

cJSON *kafka_admin_overview(rd_kafka_t *rk, int timeout_ms, char *errbuf, size_t errlen)
{
    cJSON *out = cJSON_CreateObject();
    cJSON *topics = cJSON_AddArrayToObject(out, "topics"), *groups = cJSON_AddArrayToObject(out, "groups");
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    bool ok = out && topics && groups && q;
    if (!ok)
        sb_errf(errbuf, errlen, "out of memory");
    ok = ok && add_topics(rk, topics, timeout_ms, errbuf, errlen) &&
         add_groups(rk, q, topics, groups, timeout_ms, errbuf, errlen);
    if (q)
        rd_kafka_queue_destroy(q);
    if (!ok) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

int kafka_admin_topics(rd_kafka_t *rk, const char *suffix, char **names, int max, int timeout_ms, char *errbuf,
                       size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (err) {
        sb_errf(errbuf, errlen, "Kafka metadata: %s", rd_kafka_err2str(err));
        return -1;
    }
    int n = 0;
    size_t sl = strlen(suffix);
    for (int i = 0; i < md->topic_cnt && n < max; i++) {
        const char *t = md->topics[i].topic;
        size_t tl = strlen(t);
        if (!md->topics[i].err && tl > sl && strcmp(t + tl - sl, suffix) == 0 && (names[n] = strdup(t)))
            n++;
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

bool kafka_admin_scan(const char *brokers, const char *extra_conf, const char *topic, int timeout_ms,
                      kafka_scan_fn fn, void *arg, char *errbuf, size_t errlen)
{
    bool ok = false;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    const struct rd_kafka_metadata *md = NULL;
    int64_t *end = NULL;
    int64_t deadline = sb_mono_ms() + timeout_ms;
    char why[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Partitions assigned, not subscribed: no group is joined, and with
     * commits off nothing is ever stored for the group named here. */
    if (conf == NULL || !kafka_conf_set(conf, "bootstrap.servers", brokers, errbuf, errlen) ||
        !kafka_conf_set(conf, "group.id", "switchboard-ops-scan", errbuf, errlen) ||
        !kafka_conf_set(conf, "enable.auto.commit", "false", errbuf, errlen) ||
        /* The end of a partition is told (its last offset may never come
         * as a message: a transaction marker, a compacted record), and a
         * start trimmed by retention meanwhile is read from what is left. */
        !kafka_conf_set(conf, "enable.partition.eof", "true", errbuf, errlen) ||
        !kafka_conf_set(conf, "auto.offset.reset", "earliest", errbuf, errlen) ||
        !kafka_conf_apply(conf, extra_conf, errbuf, errlen)) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        return conf ? false : sb_errf(errbuf, errlen, "out of memory");
    }
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return sb_errf(errbuf, errlen, "Kafka consumer: %s", why);
    }
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = t ? rd_kafka_metadata(rk, 0, t, &md, timeout_ms) : RD_KAFKA_RESP_ERR__NOENT;
    if (t)
        rd_kafka_topic_destroy(t);
    if (err || md->topic_cnt != 1 || md->topics[0].err) {
        sb_errf(errbuf, errlen, "no topic %s: %s", topic,
                rd_kafka_err2str(err ? err : md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        goto done;
    }
    int np = md->topics[0].partition_cnt, left = 0;
    parts = rd_kafka_topic_partition_list_new(np);
    end = calloc((size_t)np + 1, sizeof *end);
    if (parts == NULL || end == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        goto done;
    }
    for (int k = 0; k < np; k++) {
        int32_t id = md->topics[0].partitions[k].id;
        int64_t lo = -1, hi = -1;
        long long wait = deadline - sb_mono_ms();
        err = wait > 0 ? rd_kafka_query_watermark_offsets(rk, topic, id, &lo, &hi, (int)wait) : RD_KAFKA_RESP_ERR__TIMED_OUT;
        if (err) {
            sb_errf(errbuf, errlen, "Kafka offsets of %s/%d: %s", topic, id, rd_kafka_err2str(err));
            goto done;
        }
        if (hi > lo) {
            rd_kafka_topic_partition_list_add(parts, topic, id)->offset = lo;
            end[k] = hi;
            left++;
        }
    }
    if (left == 0) {
        ok = true;
        goto done;
    }
    if ((err = rd_kafka_assign(rk, parts)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sb_errf(errbuf, errlen, "Kafka assign: %s", rd_kafka_err2str(err));
        goto done;
    }
    bool stop = false;
    while (left > 0 && !stop) {
        long long wait = deadline - sb_mono_ms();
        if (wait <= 0) {
            sb_errf(errbuf, errlen, "Kafka did not give %s within %d ms", topic, timeout_ms);
            goto done;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, (int)(wait < 200 ? wait : 200));
        if (m == NULL)
            continue;
        int k = 0;
        while (k < np && md->topics[0].partitions[k].id != m->partition)
            k++;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && m->err != RD_KAFKA_RESP_ERR__TRANSPORT)
            log_warn("dead letter scan", "topic=%s err=\"%s\"", topic, rd_kafka_message_errstr(m));
        if (k < np && end[k] > 0 && !m->err && m->offset < end[k])
            stop = !fn(arg, m);
        /* Done with a partition at its end as it was (end[k] -1 from then
         * on): its last message, or the broker saying it has no more. */
        if (k < np && end[k] > 0 &&
            ((!m->err && m->offset + 1 >= end[k]) || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)) {
            end[k] = -1;
            left--;
        }
        rd_kafka_message_destroy(m);
    }
    ok = true;
done:
    free(end);
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return ok;
}
