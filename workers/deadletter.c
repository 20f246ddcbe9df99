/* deadletter.c - see deadletter.h. */
#include "deadletter.h"

#include <stdio.h>
#include <string.h>

void deadletter_topic(const char *topic, char out[DEADLETTER_TOPIC_MAX])
{
    snprintf(out, DEADLETTER_TOPIC_MAX, "%s.dlq", topic);
}

bool deadletter_send(struct kafka_producer *p, const rd_kafka_message_t *m, const char *group,
                     const char *reason, char *errbuf, size_t errlen)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    char dlq[DEADLETTER_TOPIC_MAX], part[16], off[24], at[24];
    deadletter_topic(topic, dlq);
    snprintf(part, sizeof part, "%d", (int)m->partition);
    snprintf(off, sizeof off, "%lld", (long long)m->offset);
    snprintf(at, sizeof at, "%lld", (long long)sb_now_ms());
    rd_kafka_headers_t *h = rd_kafka_headers_new(6);
    if (h == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return false;
    }
    rd_kafka_header_add(h, "x-dlq-reason", -1, reason, -1);
    rd_kafka_header_add(h, "x-original-topic", -1, topic, -1);
    rd_kafka_header_add(h, "x-original-partition", -1, part, -1);
    rd_kafka_header_add(h, "x-original-offset", -1, off, -1);
    rd_kafka_header_add(h, "x-failed-at", -1, at, -1);
    rd_kafka_header_add(h, "x-consumer-group", -1, group, -1);
    return kafka_produce_sync(p, dlq, m->key, m->key_len, m->payload, m->len, h, errbuf, errlen);
}
