/* suppress.h - who must not be messaged: the suppression list (MySQL,
 * schema/mysql/010_suppressions.sql).
 *
 * An entry names a channel (sms, email), a recipient address and a scope:
 * the sender it applies to (our number, for an SMS opt-out), or "*" for
 * every sender (a hard bounce, a complaint, STOP to every number). A send
 * is suppressed when an entry for its recipient has its sender's scope or
 * "*"; a send without a sender (the provider's default number) when any
 * entry for its recipient exists, since it may go out from the number
 * that was told STOP. Calls block (pool threads, the notifier's senders). */
#ifndef SB_SUPPRESS_H
#define SB_SUPPRESS_H

#include <cjson/cJSON.h>

#include "db.h"
#include "notify.h"

#define SUPPRESS_REASON_MAX 255
#define SUPPRESS_SCOPE_ALL "*"

struct suppression {
    char scope[NOTE_TO_MAX + 1];
    char reason[SUPPRESS_REASON_MAX + 1];
    int64_t created_ms;
};

/* Whether a send on channel to address from sender ("" = the default) is
 * suppressed; *out says by which entry. Channels other than sms and email
 * never are. */
enum db_status suppress_find(struct db *db, enum note_channel channel, const char *address, const char *sender,
                             bool *found, struct suppression *out, char *errbuf, size_t errlen) SB_NODISCARD;
/* Adds (or keeps, with its first reason and time) an entry. */
enum db_status suppress_add(struct db *db, enum note_channel channel, const char *address, const char *scope,
                            const char *reason, int64_t now_ms, char *errbuf, size_t errlen) SB_NODISCARD;
/* Removes an entry; *removed: whether there was one. */
enum db_status suppress_remove(struct db *db, enum note_channel channel, const char *address, const char *scope,
                               bool *removed, char *errbuf, size_t errlen) SB_NODISCARD;
/* The entries for address (or all, address NULL), newest first, at most
 * limit, into out (a JSON array of {channel, address, scope, reason,
 * createdAt}). */
enum db_status suppress_list(struct db *db, const char *address, int limit, cJSON *out, char *errbuf,
                             size_t errlen) SB_NODISCARD;

#endif
