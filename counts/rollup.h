/* rollup.h - folding count changes into chats_count / messages_count.
 *
 * The persister records, in the same transaction as its inserts, how many
 * chats each application gained (app_count_deltas) and how many messages
 * each chat gained (chat_count_deltas). A roll-up takes those rows in key
 * order, a chunk per transaction: SELECT ... FOR UPDATE locks the chunk (and
 * the gaps before it, so a concurrent persister waits rather than slipping
 * a row in), the counts are raised by the deltas, the rows are deleted,
 * commit. Nothing is counted twice or missed, whatever runs concurrently,
 * and the work is the number of changed chats and applications, not the
 * size of the tables. */
#ifndef SB_ROLLUP_H
#define SB_ROLLUP_H

#include "db.h"

struct rollup_stats {
    int64_t apps;  /* applications whose chats_count changed */
    int64_t chats; /* chats whose messages_count changed */
};

/* progress (may be NULL) is called after every chunk. */
enum db_status rollup_run(struct db *db, int64_t chunk, struct rollup_stats *stats,
                          void (*progress)(const struct rollup_stats *s), char *errbuf,
                          size_t errlen);

#endif
