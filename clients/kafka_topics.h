/* kafka_topics.h - the topics switchboard needs, made through Kafka's
 * Admin API (switchboard-migrate topics). */
#ifndef SB_KAFKA_TOPICS_H
#define SB_KAFKA_TOPICS_H

#include "kafka.h"

/* A topic as switchboard wants it. config: NULL-terminated key, value
 * pairs of topic settings (retention.ms, ...). */
struct kafka_topic_spec {
    const char *name;
    int partitions;
    int replication; /* 0: as many as there are brokers, at most 3 */
    const char *const *config;
};
enum kafka_topic_outcome { TOPIC_CREATED, TOPIC_EXISTS, TOPIC_DIFFERS, TOPIC_FAILED };
struct kafka_topic_result {
    enum kafka_topic_outcome outcome;
    int partitions; /* what the cluster has (TOPIC_EXISTS, TOPIC_DIFFERS) */
    char error[256]; /* TOPIC_FAILED */
};
/* Creates the topics of specs[0..n) that the cluster lacks, through the
 * Admin API, and compares the partition count of those it has (a count is
 * never changed here: more partitions would send keys elsewhere and break
 * their order). out[i] tells what happened to specs[i]. False, with why,
 * only if the cluster could not be asked at all. */
bool kafka_topics_ensure(const char *brokers, const char *extra_conf,
                         const struct kafka_topic_spec *specs, size_t n,
                         struct kafka_topic_result *out, int timeout_ms, char *errbuf,
                         size_t errlen) SB_NODISCARD;

#endif
