/* webhooks.h - each message's own webhook (statusCallback): every move of
 * its status, POSTed there in order, signed (webhook.h).
 *
 * A thread of the notifier process, apart from the deliveries: every
 * WEBHOOK_POLL_MS it asks the store for the messages whose webhook has
 * events due (a move since the last POST, or a retry's time come) and
 * POSTs each one's events oldest first, the next only once the one before
 * was answered 2xx. Up to WEBHOOK_SLOTS messages are on their way at once
 * (one libcurl multi handle), so a receiver that hangs holds up its own
 * message's events, not the others'. A failure is tried again after a backoff
 * (notify_backoff_ms, doubling to webhook_backoff_cap_ms) with the
 * message's later events behind it, so they arrive in order, at least once
 * (a stop between the answer and its record sends that event again); other
 * messages' events go on. Every notifier process runs one; two may POST
 * the same event, which the receiver tells by its sequence. */
#ifndef SB_WEBHOOKS_H
#define SB_WEBHOOKS_H

#include "worker.h"

struct webhooks;

/* Starts the thread (its own store and HTTP handle); NULL and errbuf if
 * it cannot. */
struct webhooks *webhooks_start(struct worker *w, char *errbuf, size_t errlen);
/* Stops and joins it (after the POST in hand). */
void webhooks_stop(struct webhooks *h);

#endif
