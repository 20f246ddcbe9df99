/* readiness.h - background probes of the dispatcher's dependencies for
 * /readyz and /metrics.
 *
 * A probe thread, every readiness_interval_ms: asks Kafka for metadata,
 * sends a ping through the MySQL pool, and, when they are configured, a
 * ping through the notification-store pool (MongoDB) and a GET / to
 * Elasticsearch. /readyz reads the last results without blocking the loop.
 * Redis state is per loop (redis_client_ready).
 *
 * Kafka and MySQL are required: every write path needs them. MongoDB and
 * Elasticsearch are reported but do not make the process not ready: chat
 * and message traffic does not use them, and taking every dispatcher out
 * of rotation because search or the notification records are away would
 * turn a partial outage into a full one. */
#ifndef SB_READINESS_H
#define SB_READINESS_H

#include "server.h"

enum readiness_dep { DEP_KAFKA, DEP_MYSQL, DEP_MONGODB, DEP_ELASTICSEARCH, DEP_COUNT };

struct dep_state {
    bool ok;
    int64_t since_ms; /* wall clock of the last change */
    char error[ERRBUF_LEN];
};

/* Starts the probe thread; NULL and errbuf if it cannot. */
struct readiness *readiness_new(struct dispatcher *d, char *errbuf, size_t errlen);
/* Joins the probe thread (it uses the Kafka producer: call before that is
 * freed); the last results stay readable. */
void readiness_stop(struct readiness *r);
/* Call once the MySQL and notification-store pools are stopped (a probe may
 * have been queued there) and the loops destroyed (a request's completion
 * may read the results). */
void readiness_free(struct readiness *r);
/* The last result for dep; false if dep is not probed (not configured). */
bool readiness_get(struct readiness *r, enum readiness_dep dep, struct dep_state *out);
/* Its name in /readyz and in the metric's label. */
const char *readiness_name(enum readiness_dep dep);
/* Whether /readyz answers 503 while dep is down. */
bool readiness_required(enum readiness_dep dep);

#endif
