/* persister.h - the persister role's batch handler (see persister.c). */
#ifndef SB_PERSISTER_H
#define SB_PERSISTER_H

#include "worker.h"

enum db_status persister_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                                size_t errlen);

#endif
