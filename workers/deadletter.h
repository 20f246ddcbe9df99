/* deadletter.h - sending a job that cannot be processed to <topic>.dlq.
 *
 * The original key and bytes are kept untouched; headers say why and where
 * it came from (x-dlq-reason, x-original-topic, x-original-partition,
 * x-original-offset, x-failed-at, x-consumer-group), so an operator can
 * inspect it with kcat and produce it back once the cause is fixed. The
 * send waits for Kafka's acknowledgement: the source offset is stored only
 * after the dead letter is safe. */
#ifndef SB_DEADLETTER_H
#define SB_DEADLETTER_H

#include "kafka.h"
#include "trace.h"

/* Where a job came from and its bytes: what its dead letter carries. */
struct deadletter_src {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key;
    size_t key_len;
    const void *payload;
    size_t len;
    char traceparent[TRACEPARENT_LEN + 1]; /* the job's, passed on ("" none) */
};

/* The source of a fetched message (borrowed: valid while m is). A job whose
 * message is gone (a notifier delivery that outlasted its batch) keeps a
 * copy instead. */
struct deadletter_src deadletter_src_of(const rd_kafka_message_t *m);

bool deadletter_send(struct kafka_producer *p, const struct deadletter_src *src, const char *group,
                     const char *reason, char *errbuf, size_t errlen) SB_NODISCARD;

#endif
