/* deadletter_api.h - the dead letters, for an operator (admin key):
 *
 *   GET /ops/v1/dead-letters  every dead letter of the .dlq topics (or of
 *                   one: topic=), filtered by reason (words it contains),
 *                   cause, job type, application and failure time; the count of
 *                   those that match, grouped by cause, and the newest
 *                   of them (limit=) with where they came from, why, and
 *                   whether an operator handled them (state).
 *   POST /ops/v1/dead-letters/redrive   the letters the same filters match
 *                   that nobody handled, back to their topic (with
 *                   KAFKA_REDRIVE_HEADER), recorded as redriven
 *   POST /ops/v1/dead-letters/discard   the same, recorded as discarded only
 *
 * The .dlq topics are read from Kafka itself on a pool thread: they are
 * the record of the letters; MySQL's dead_letter_actions of what operators
 * did with them (one row a letter: nothing is done twice). */
#ifndef SB_DEADLETTER_API_H
#define SB_DEADLETTER_API_H

#include "server.h"

void deadletter_list(struct http_ctx *ctx);
void deadletter_redrive(struct http_ctx *ctx);
void deadletter_discard(struct http_ctx *ctx);

#endif
