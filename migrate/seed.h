/* seed.h - the seeding subcommand of switchboard-migrate (see seed.c). */
#ifndef SB_SEED_H
#define SB_SEED_H

#include "config.h"
#include "db.h"
#include "phone.h"

bool seed_run(const struct sb_config *cfg, struct db *db, char *errbuf, size_t errlen) SB_NODISCARD;

#endif
