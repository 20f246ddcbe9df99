/* kafka_admin.h - what an operator asks Kafka: every topic's partitions
 * with their offsets, and every consumer group (idle ones too) with what it
 * has committed and how far behind the log's end that is.
 *
 * Blocking (broker round trips): call it from a pool thread, never from a
 * loop. */
#ifndef SB_KAFKA_ADMIN_H
#define SB_KAFKA_ADMIN_H

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

/* rk: any client handle (the dispatcher's producer). The answer:
 *   {"topics": [{"topic", "end_offset", "partitions": [{"partition", "low", "high"}]}],
 *    "groups": [{"group", "state", "lag",
 *                "partitions": [{"topic", "partition", "committed", "end", "lag"}]}]}
 * Internal topics ("__...") are left out. A group's partitions are those
 * it has committed an offset on; lag is the messages it has yet to take
 * (end - committed). NULL (errbuf says why) if Kafka does not answer
 * within timeout_ms for each step. */
cJSON *kafka_admin_overview(rd_kafka_t *rk, int timeout_ms, char *errbuf, size_t errlen);

/* Called for each message of a scan, in offset order per partition;
 * false stops the scan. */
typedef bool (*kafka_scan_fn)(void *arg, const rd_kafka_message_t *m);

/* Reads every message topic holds, from each partition's low to its high
 * mark as they were when the scan began, with a consumer of its own that
 * joins no group and commits nothing. False (errbuf says why) if Kafka did
 * not give them within timeout_ms. */
bool kafka_admin_scan(const char *brokers, const char *extra_conf, const char *topic, int timeout_ms,
                      kafka_scan_fn fn, void *arg, char *errbuf, size_t errlen);

/* The topics whose names end in suffix (".dlq"), into names (at most max,
 * each malloc'd); their number, or -1 (errbuf says why). */
int kafka_admin_topics(rd_kafka_t *rk, const char *suffix, char **names, int max, int timeout_ms, char *errbuf,
                       size_t errlen);

#endif
