/* readiness.h - background probes of Kafka and MySQL for /readyz.
 *
 * A probe thread asks Kafka for metadata and sends a ping through the MySQL
 * pool every readiness_interval_ms; /readyz reads the last result without
 * blocking the loop. Redis state is per loop (redis_client_ready). */
#ifndef SB_READINESS_H
#define SB_READINESS_H

#include "server.h"

struct dep_state {
    bool ok;
    int64_t since_ms; /* wall clock of the last change */
    char error[ERRBUF_LEN];
};

struct readiness *readiness_new(struct dispatcher *d);
/* Call once the MySQL pool is stopped: a probe may have been queued there. */
void readiness_free(struct readiness *r);
void readiness_kafka(struct readiness *r, struct dep_state *out);
void readiness_mysql(struct readiness *r, struct dep_state *out);

#endif
