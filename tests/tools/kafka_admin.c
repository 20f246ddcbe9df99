/* kafka_admin - what the integration tests ask of Kafka's Admin API:
 *   kafka_admin delete-records BROKERS TOPIC
 *       deletes every record of TOPIC (each partition up to its high
 *       watermark), as retention or an operator would: makes a consumer
 *       group's committed offset fall out of the log. Prints each
 *       partition's new log start.
 *   kafka_admin describe BROKERS TOPIC
 *       prints TOPIC's settings as name=value lines.
 *   kafka_admin offsets BROKERS TOPIC
 *       prints "PARTITION LOW HIGH" (the watermarks) for each partition. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_MS 30000

static rd_kafka_event_t *wait_result(rd_kafka_queue_t *q)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TIMEOUT_MS);
    if (ev == NULL || rd_kafka_event_error(ev)) {
        fprintf(stderr, "admin request: %s\n", ev ? rd_kafka_event_error_string(ev) : "no answer");
        if (ev)
            rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

/* Every partition of topic, as the cluster's metadata lists them; NULL
 * (said on stderr) if it does not. */
static rd_kafka_topic_partition_list_t *partitions_of(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_metadata(rk, 0, rkt, &md, TIMEOUT_MS) || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "no metadata for %s\n", topic);
    } else {
        parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id);
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return parts;
}

static int delete_records(rd_kafka_t *rk, rd_kafka_queue_t *q, const char *topic)
{
    rd_kafka_topic_partition_list_t *parts = partitions_of(rk, topic);
    if (parts == NULL)
        return 1;
    for (int i = 0; i < parts->cnt; i++)
        parts->elems[i].offset = RD_KAFKA_OFFSET_END; /* the high watermark */
    rd_kafka_DeleteRecords_t *dr = rd_kafka_DeleteRecords_new(parts);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_DeleteRecords(rk, &dr, 1, NULL, q);
    rd_kafka_DeleteRecords_destroy(dr);
    rd_kafka_event_t *ev = wait_result(q);
    if (ev == NULL)
        return 1;
    const rd_kafka_topic_partition_list_t *res =
        rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
    int rc = 0;
    for (int i = 0; i < res->cnt; i++) {
        printf("%s [%d] %s log start %lld\n", res->elems[i].topic, (int)res->elems[i].partition,
               res->elems[i].err ? rd_kafka_err2str(res->elems[i].err) : "ok",
               (long long)res->elems[i].offset);
        if (res->elems[i].err)
            rc = 1;
    }
    rd_kafka_event_destroy(ev);
    return rc;
}

static int offsets(rd_kafka_t *rk, const char *topic)
{
    rd_kafka_topic_partition_list_t *parts = partitions_of(rk, topic);
    if (parts == NULL)
        return 1;
    int rc = 0;
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        int64_t lo = -1, hi = -1;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, TIMEOUT_MS);
        if (err) {
            fprintf(stderr, "%s [%d]: %s\n", topic, (int)p, rd_kafka_err2str(err));
            rc = 1;
            continue;
        }
        printf("%d %lld %lld\n", (int)p, (long long)lo, (long long)hi);
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

static int describe(rd_kafka_t *rk, rd_kafka_queue_t *q, const char *topic)
{
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_DescribeConfigs(rk, &res, 1, NULL, q);
    rd_kafka_ConfigResource_destroy(res);
    rd_kafka_event_t *ev = wait_result(q);
    if (ev == NULL)
        return 1;
    size_t nres = 0, nent = 0;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &nres);
    int rc = nres == 1 && rd_kafka_ConfigResource_error(rs[0]) == 0 ? 0 : 1;
    const rd_kafka_ConfigEntry_t **es = rc == 0 ? rd_kafka_ConfigResource_configs(rs[0], &nent) : NULL;
    for (size_t i = 0; i < nent; i++) {
        const char *v = rd_kafka_ConfigEntry_value(es[i]);
        printf("%s=%s\n", rd_kafka_ConfigEntry_name(es[i]), v ? v : "");
    }
    rd_kafka_event_destroy(ev);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "delete-records") != 0 && strcmp(argv[1], "describe") != 0 &&
                      strcmp(argv[1], "offsets") != 0)) {
        fprintf(stderr, "usage: %s delete-records|describe|offsets BROKERS TOPIC\n", argv[0]);
        return 2;
    }
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[2], err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    int rc = strcmp(argv[1], "describe") == 0  ? describe(rk, q, argv[3])
             : strcmp(argv[1], "offsets") == 0 ? offsets(rk, argv[3])
                                               : delete_records(rk, q, argv[3]);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}
