/* topics.h - `switchboard-migrate topics`: makes the Kafka topics.
 *
 * Every schema/topics/<name>.json names a topic; its "x-kafka" object gives
 * the partitions, the topic's settings and those of its dead-letter topic
 * <name>.dlq, which is made beside it. The kafka channel's notify_topics
 * are made too. Idempotent: topics that exist are left alone, and one
 * whose partition count differs from the wanted one is reported (and
 * logged as a warning), never changed. */
#ifndef SB_TOPICS_H
#define SB_TOPICS_H

#include <stdio.h>

#include "config.h"

/* Makes what is missing and writes a line per topic to out; 0 when every
 * topic exists now (with the wanted partitions or not), else 1. */
int topics_run(const struct sb_config *cfg, FILE *out);

#endif
