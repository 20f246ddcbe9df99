/* deadletter_api.h - the dead letters, for an operator (admin key):
 *
 *   GET /ops/v1/dead-letters  every dead letter of the .dlq topics (or of
 *                   one: topic=), filtered by reason (words it contains),
 *                   cause, job type, application and failure time; the count of
 *                   those that match, grouped by cause, and the newest
 *                   of them (limit=) with where they came from and why.
 *
 * Read from Kafka itself on a pool thread: the .dlq topics are the record. */
#ifndef SB_DEADLETTER_API_H
#define SB_DEADLETTER_API_H

#include "server.h"

void deadletter_list(struct http_ctx *ctx);

#endif
