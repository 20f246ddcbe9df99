/* deadletter.c - see deadletter.h. */
#include "deadletter.h"

#include <stdio.h>
#include <string.h>

bool deadletter_send(struct kafka_producer *p, const struct deadletter_src *src, const char *group,
                     const char *reason, char *errbuf, size_t errlen)
{
    char dlq[KAFKA_DLQ_NAME_MAX], part[16], off[24], at[24];
    kafka_dlq_name(src->topic, dlq);
    snprintf(part, sizeof part, "%d", (int)src->partition);
    snprintf(off, sizeof off, "%lld", (long long)src->offset);
    snprintf(at, sizeof at, "%lld", (long long)sb_now_ms());
    rd_kafka_headers_t *h = rd_kafka_headers_new(6);
    if (h == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return false;
    }
    rd_kafka_header_add(h, "x-dlq-reason", -1, reason, -1);
    rd_kafka_header_add(h, "x-original-topic", -1, src->topic, -1);
    rd_kafka_header_add(h, KAFKA_ORIGINAL_PARTITION_HEADER, -1, part, -1);
    rd_kafka_header_add(h, KAFKA_ORIGINAL_OFFSET_HEADER, -1, off, -1);
    rd_kafka_header_add(h, "x-failed-at", -1, at, -1);
    rd_kafka_header_add(h, "x-consumer-group", -1, group, -1);
    if (src->traceparent[0]) /* a redriven copy goes on in the job's trace */
        rd_kafka_header_add(h, "traceparent", -1, src->traceparent, -1);
    return kafka_produce_sync(p, dlq, src->key, src->key_len, src->payload, src->len, h, errbuf, errlen);
}

struct deadletter_src deadletter_src_of(const rd_kafka_message_t *m)
{
    struct deadletter_src s = {rd_kafka_topic_name(m->rkt), m->partition, m->offset, m->key, m->key_len,
                               m->payload, m->len, ""};
    if (!kafka_header(m, "traceparent", s.traceparent, sizeof s.traceparent))
        s.traceparent[0] = '\0';
    return s;
}
