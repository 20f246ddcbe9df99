/* kafka.h - the Kafka producer and consumer every process uses.
 *
 * Producer: idempotent (acks=all, ordered retries), one per process, with a
 * thread serving delivery reports. Each message carries its own completion
 * callback, called once on that thread with the final result; the
 * dispatcher forwards it to the loop that owns the HTTP request (loopq).
 *
 * Consumer: at-least-once. Offsets are stored only by kafka_consumer_store,
 * after the side effect committed; librdkafka's auto-commit then commits
 * stored offsets, and a revoke commits them synchronously before the
 * partitions move. A batch that failed for a passing reason is rewound
 * (seek) so it is fetched again, instead of being held across polls. */
#ifndef SB_KAFKA_H
#define SB_KAFKA_H

#include <librdkafka/rdkafka.h>

struct event_base;

#include "util.h"

/* Called once per message on the delivery thread (or the loop given to
 * kafka_producer_serve_on); err 0 = acknowledged. */
typedef void (*kafka_delivery_fn)(void *opaque, rd_kafka_resp_err_t err);

/* extra_conf: the kafka_conf setting, "key=value,key=value" (a comma in a
 * value written "\,"), any librdkafka property (TLS, SASL, timeouts),
 * applied over switchboard's defaults; NULL or "" for none. The
 * properties switchboard relies on are refused: the brokers and group,
 * offset storing and committing, acks and idempotence, the message
 * timeouts and auto.offset.reset (kafka.c's reserved_keys). */
bool kafka_conf_apply(rd_kafka_conf_t *conf, const char *extra_conf, char *errbuf,
                      size_t errlen) SB_NODISCARD;

struct kafka_producer;
struct kafka_producer *kafka_producer_new(const char *brokers, const char *extra_conf,
                                          int64_t message_timeout_ms, char *errbuf, size_t errlen);
/* Flushes (up to timeout_ms) then destroys. */
void kafka_producer_free(struct kafka_producer *p, int timeout_ms);
/* Enqueues a message; headers (may be NULL) are taken over. On false the
 * callback will not be called and errbuf says why (queue full, ...). */
bool kafka_produce(struct kafka_producer *p, const char *topic, const void *key, size_t keylen,
                   const void *val, size_t len, rd_kafka_headers_t *headers,
                   kafka_delivery_fn cb, void *opaque, char *errbuf, size_t errlen) SB_NODISCARD;
/* Produces and waits for the acknowledgement (dead letters, tools). */
bool kafka_produce_sync(struct kafka_producer *p, const char *topic, const void *key,
                        size_t keylen, const void *val, size_t len, rd_kafka_headers_t *headers,
                        char *errbuf, size_t errlen) SB_NODISCARD;
/* Serves delivery reports on an event loop instead of the producer's own
 * thread: a report's callback then runs on that loop, one thread hop fewer
 * per message. Call before the loop runs; reports arriving after it
 * stopped are served by kafka_producer_free. */
bool kafka_producer_serve_on(struct kafka_producer *p, struct event_base *base, char *errbuf,
                             size_t errlen) SB_NODISCARD;
/* Waits for outstanding deliveries; returns how many are still pending. */
int kafka_producer_flush(struct kafka_producer *p, int timeout_ms);
/* Looks the topics up now and keeps them known for the producer's life.
 * Otherwise an idle producer's first message to a topic it has not used
 * waits ~1 s (librdkafka looks unknown topics up once a second): a worker's
 * first dead letter or retry used to. False, with why, if the brokers did
 * not answer within timeout_ms (per topic; after one failure the others
 * are held without waiting): producing still works, with that first wait. */
bool kafka_producer_know(struct kafka_producer *p, const char *const *topics, size_t n, int timeout_ms,
                         char *errbuf, size_t errlen) SB_NODISCARD;
/* Asks a broker for metadata: true if the cluster answered in time. */
bool kafka_producer_check(struct kafka_producer *p, int timeout_ms, char *errbuf, size_t errlen);
/* Messages waiting for acknowledgement. */
int kafka_producer_outstanding(struct kafka_producer *p);
/* The producer's handle, for requests of the Admin API (kafka_admin.h). */
rd_kafka_t *kafka_producer_handle(struct kafka_producer *p);

struct kafka_consumer;
struct kafka_consumer *kafka_consumer_new(const char *brokers, const char *extra_conf,
                                          const char *group,
                                          const char *const *topics, size_t ntopics,
                                          int64_t session_timeout_ms, char *errbuf,
                                          size_t errlen);
/* fn(arg) runs on the polling thread when the consumer is about to give
 * its partitions up (a rebalance, or kafka_consumer_free), before it
 * commits their stored offsets. Set it before the first poll. */
void kafka_consumer_on_revoke(struct kafka_consumer *c, void (*fn)(void *arg), void *arg);
/* Collects up to max messages: waits at most wait_ms for the first one,
 * then adds whatever is already fetched, until max messages or max_bytes
 * of payload (the message that crosses it is the last one). Error events are logged and
 * dropped here; returns the number of messages (caller destroys each with
 * rd_kafka_message_destroy). */
size_t kafka_consumer_poll_batch(struct kafka_consumer *c, rd_kafka_message_t **msgs,
                                 size_t max, size_t max_bytes, int wait_ms);
/* Marks msgs[0..n) processed: stores offset+1 for each partition. */
bool kafka_consumer_store(struct kafka_consumer *c, rd_kafka_message_t **msgs, size_t n,
                          char *errbuf, size_t errlen) SB_NODISCARD;
/* Seeks every partition in msgs back to its first offset in the batch. */
bool kafka_consumer_rewind(struct kafka_consumer *c, rd_kafka_message_t **msgs, size_t n,
                           char *errbuf, size_t errlen) SB_NODISCARD;
/* One partition: stores `offset` as the next to consume (store), or seeks
 * the consumer to it (the next fetch starts there). */
bool kafka_consumer_store_at(struct kafka_consumer *c, const char *topic, int32_t partition,
                             int64_t offset, char *errbuf, size_t errlen) SB_NODISCARD;
bool kafka_consumer_seek_to(struct kafka_consumer *c, const char *topic, int32_t partition,
                            int64_t offset, char *errbuf, size_t errlen) SB_NODISCARD;
/* Stops (pause) or restarts fetching one partition. A rebalance that
 * moves the partition forgets the pause. */
bool kafka_consumer_pause(struct kafka_consumer *c, const char *topic, int32_t partition,
                          bool pause, char *errbuf, size_t errlen) SB_NODISCARD;
/* One assigned partition and the jobs its log holds past the group's
 * committed offset, or past its beginning while nothing is committed (the
 * consumer group lag: jobs not yet processed, or processed within the last
 * auto-commit interval; -1 while unknown: no fetch has told the high
 * watermark yet, or the broker did not answer in time). */
struct kafka_lag {
    char topic[128];
    int32_t partition;
    int64_t lag;
};
/* The consumer's assigned partitions (at most max) into out, all within
 * timeout_ms: one OffsetFetch round trip to the group coordinator, one
 * ListOffsets per partition with nothing committed, the high watermarks
 * from librdkafka's cache. Safe from any thread. */
size_t kafka_consumer_lag(struct kafka_consumer *c, struct kafka_lag *out, size_t max, int timeout_ms);
/* Commits stored offsets, leaves the group, destroys. */
void kafka_consumer_free(struct kafka_consumer *c);

/* Every topic's dead letters go to <topic>.dlq: the workers send them
 * there, and switchboard-migrate topics makes it beside the topic. */
#define KAFKA_DLQ_NAME_MAX 300
void kafka_dlq_name(const char *topic, char out[KAFKA_DLQ_NAME_MAX]);
/* The cause a dead letter's reason belongs to: its words before the first
 * ':' (the detail after it names the job or the provider's answer), each
 * number as N ("gave up after N attempts", "malformed JSON near offset
 * N"). The ops API groups dead letters by it and the workers count them by
 * it in /metrics, so both say the same. */
#define KAFKA_DLQ_CAUSE_MAX 80
void kafka_dlq_cause(const char *reason, char out[KAFKA_DLQ_CAUSE_MAX + 1]);

/* Shared by the clients of this folder (kafka_topics.c): librdkafka's log
 * and error callbacks, routed to our log, and one setting with its
 * failure in errbuf (a secret's value never quoted). */
void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque);
bool kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errbuf, size_t errlen) SB_NODISCARD;

/* Reads a header's value as a NUL-terminated copy into out; false if absent. */
bool kafka_header(const rd_kafka_message_t *m, const char *name, char *out, size_t cap);
/* On a job an operator produced back from its dead letter (POST
 * /ops/v1/dead-letters/redrive): that letter's "topic/partition/offset".
 * A role that would refuse the job as already settled (a dead
 * notification) takes it again. */
#define KAFKA_REDRIVE_HEADER "x-redrive-of"
/* The copy also carries the partition and offset of the job it copies
 * (x-original-partition, x-original-offset, as on its dead letter). */
#define KAFKA_ORIGINAL_PARTITION_HEADER "x-original-partition"
#define KAFKA_ORIGINAL_OFFSET_HEADER "x-original-offset"
/* Whether m is a redriven copy; then *partition and *offset are where the
 * job it copies was (-1 when the copy does not say). */
bool kafka_redrive_origin(const rd_kafka_message_t *m, int32_t *partition, int64_t *offset);

#endif
