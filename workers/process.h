/* process.h - one worker process of one role, from its clients to its
 * close. main.c reads the configuration and handles signals. */
#ifndef SB_PROCESS_H
#define SB_PROCESS_H

#include <stdatomic.h>

#include "config.h"
#include "worker.h"

/* Connects MySQL and Kafka, serves the status port, runs the role until
 * *stop, then commits stored offsets and flushes the producer. Returns the
 * exit status; a start-up failure ends the process (die). prog names the
 * process in logs and on the status port. */
int worker_process_run(const struct sb_config *cfg, const struct role *role, const char *prog,
                       const atomic_int *stop);

#endif
