/* notifier.h - the notifier role (see notifier.c). */
#ifndef SB_NOTIFIER_H
#define SB_NOTIFIER_H

#include "worker.h"

bool notifier_prepare(struct worker *w);
void notifier_finish(struct worker *w);
void notifier_turn(struct worker *w);
void notifier_revoked(struct worker *w);
enum db_status notifier_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                               size_t errlen);

#endif
