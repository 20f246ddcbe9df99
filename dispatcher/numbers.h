/* numbers.h - chat and message numbers: 1, 2, 3 ... never issued twice.
 *
 * Redis hands out numbers from a block (seq < ceil) with one Lua script
 * that also checks the parent exists. A number is marked in a bitmap (the
 * cache of what exists) only once its create is acknowledged by Kafka
 * (numbers_confirm): a create that is refused leaves a gap, never a chat
 * or message that reads and updates would take as existing. Blocks come from MySQL (number_blocks: the
 * durable ceiling, raised by number_block per refill), so every number
 * issued is at most the MySQL ceiling. When Redis loses data - FLUSHALL, or
 * a restart that rolled counters back (detected by its run_id changing) -
 * the scope's next refill starts above that ceiling: numbers may jump
 * (a gap), never repeat. One refill per scope at a time (a short Redis lock)
 * keeps blocks contiguous, so there are no gaps otherwise.
 *
 * Redis keys share the hash tag {token}: sb:{T}:app, sb:{T}:c:{seq,ceil,
 * epoch,bits,lock,floor} for chats and sb:{T}:m:<chat>:{...} for messages. */
#ifndef SB_NUMBERS_H
#define SB_NUMBERS_H

#include "server.h"

/* UNCERTAIN: not in the cache, but Redis lost data less than a minute ago,
 * so it may have been allocated just before and still be on its way to
 * MySQL. Callers check MySQL; if it is not there but its number lies within
 * a block already reserved, they answer 503 (retry) rather than 404. */
enum numbers_result {
    NUMBERS_OK,
    NUMBERS_UNKNOWN_PARENT,
    NUMBERS_UNCERTAIN,
    NUMBERS_UNAVAILABLE
};

/* number: the new number (OK), else 0. For known(): 1 if known, 0 if not. */
typedef void (*numbers_cb)(void *arg, enum numbers_result r, int64_t number);

/* Next chat number (chat == 0) or next message number of chat. The parent
 * (application, or chat) must be known to the cache: else UNKNOWN_PARENT,
 * and the caller checks MySQL, calls numbers_mark and tries again. */
void numbers_next(struct loop *l, const char *token, int64_t chat, numbers_cb cb, void *arg);
/* Is the application (chat == 0, msg == 0), chat (msg == 0) or message
 * marked in the cache? Answers OK with number 1 or 0, or UNCERTAIN. */
void numbers_known(struct loop *l, const char *token, int64_t chat, int64_t msg, numbers_cb cb,
                   void *arg);
/* Marks a chat (msg == 0) or message whose create Kafka acknowledged;
 * cb (number 0) runs once Redis has it (OK) or could not (UNAVAILABLE), so
 * the 201 goes out after every reader can see the mark. */
void numbers_confirm(struct loop *l, const char *token, int64_t chat, int64_t msg, numbers_cb cb,
                     void *arg);
/* Marks it as existing (after MySQL said so). Fire and forget. */
void numbers_mark(struct loop *l, const char *token, int64_t chat, int64_t msg);

#endif
