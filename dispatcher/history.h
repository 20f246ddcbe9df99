/* history.h - the queues over the last minutes: each topic's throughput and
 * each consumer group's lag.
 *
 * A sampler thread asks Kafka for the overview (kafka_admin_overview: every
 * topic's end offsets, every group's lag) every ops_sample_interval_ms and
 * keeps the last HISTORY_SAMPLES in a ring; the overview answers from it.
 * It lives in the dispatcher, beside the overview that reads it, so the
 * history is there when the console opens rather than built from the
 * page's own polls; each dispatcher process keeps its own (they sample the
 * same broker, so they agree). */
#ifndef SB_HISTORY_H
#define SB_HISTORY_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "server.h"

/* Samples kept: 60 intervals. */
#define HISTORY_SAMPLES 61
/* Topics, and groups, followed (internal topics left out); more are not. */
#define HISTORY_COLUMNS 64

struct history;

/* Starts the sampler thread; NULL and errbuf if it cannot. */
struct history *history_new(struct dispatcher *d, char *errbuf, size_t errlen);
/* Joins the sampler (it uses the Kafka producer: call before that is
 * freed); what it recorded stays readable. */
void history_stop(struct history *h);
/* Call once the loops are destroyed: a request's completion (the overview)
 * may read the history until their queues are run. */
void history_free(struct history *h);
/* Records one sample at at_ms: overview as kafka_admin_overview answers
 * ({"topics": [{"topic", "end_offset"}], "groups": [{"group", "lag"}]}). */
void history_record(struct history *h, const cJSON *overview, int64_t at_ms);
/* The rates between samples, oldest first:
 *   {"interval_ms", "since": the first interval's start (ms; absent
 *    before the first sample), "at": [end of each interval, ms],
 *    "topics": {name: [jobs per second, or null where unknown]}}
 * NULL if out of memory. */
cJSON *history_throughput(struct history *h);
/* Each group's lag at each sample, oldest first:
 *   {"interval_ms", "at": [ms], "groups": {name: [lag, or null where the
 *    group was not there]}}
 * NULL if out of memory. */
cJSON *history_lag(struct history *h);

#endif
