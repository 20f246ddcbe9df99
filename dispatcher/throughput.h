/* throughput.h - how many jobs each topic took, over the last minutes.
 *
 * A sampler thread asks Kafka for every topic's end offsets (the sum over
 * its partitions) every ops_sample_interval_ms and keeps the last
 * THROUGHPUT_SAMPLES in a ring; the overview answers the rate between
 * each pair of samples. It lives in the dispatcher, beside the overview
 * that reads it, so the history is there when the console opens rather
 * than built from the page's own polls; each dispatcher process keeps its
 * own (they sample the same broker, so they agree). */
#ifndef SB_THROUGHPUT_H
#define SB_THROUGHPUT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "server.h"

/* One more than the rates answered: 60 intervals. */
#define THROUGHPUT_SAMPLES 61
/* Topics followed (internal ones left out); more are not sampled. */
#define THROUGHPUT_TOPICS 64

struct throughput;

/* Starts the sampler thread; NULL and errbuf if it cannot. */
struct throughput *throughput_new(struct dispatcher *d, char *errbuf, size_t errlen);
void throughput_free(struct throughput *t);
/* Records one sample at at_ms: topics as kafka_admin_overview's "topics"
 * ([{"topic", "end_offset"}]). */
void throughput_record(struct throughput *t, const cJSON *topics, int64_t at_ms);
/* The rates between samples, oldest first:
 *   {"interval_ms", "since": the first interval's start (ms; absent
 *    before the first sample), "at": [end of each interval, ms],
 *    "topics": {name: [jobs per second, or null where unknown]}}
 * NULL if out of memory. */
cJSON *throughput_history(struct throughput *t);

#endif
