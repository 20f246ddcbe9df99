/* phonebook.h - the phonebook role (see phonebook.c). */
#ifndef SB_PHONEBOOK_H
#define SB_PHONEBOOK_H

#include "worker.h"

enum db_status phonebook_handle(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                                size_t errlen);
/* Periodic: expired reservations back to the pool (Redis and MySQL). */
void phonebook_tick(struct worker *w);

#endif
