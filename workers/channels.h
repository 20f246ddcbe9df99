/* channels.h - delivering one notification on its channel.
 *
 * email: SMTP through libcurl (smtp_url); sms: a Twilio-style form POST
 * (To, From, Body, and StatusCallback when sms_callback_url is set) with
 * basic auth from the URL's user:pass, whose answer's "sid" is kept; push: a JSON
 * POST to a webhook; kafka: the body produced to the topic named by "to".
 * HTTP posts carry an Idempotency-Key header (the notification id) so a
 * provider that honours it drops our at-least-once repeats. */
#ifndef SB_CHANNELS_H
#define SB_CHANNELS_H

#include "config.h"
#include "kafka.h"
#include "notify.h"
#include "trace.h"

enum send_result {
    SEND_OK,
    SEND_RETRY,     /* worth another attempt: timeout, refused, 429, 5xx, SMTP 4xx */
    SEND_PERMANENT, /* will never work: 4xx, SMTP 5xx, channel not configured */
};

struct channels;
/* Provider handles are made on first use; NULL only when out of memory. */
struct channels *channels_new(const struct sb_config *cfg, struct kafka_producer *producer);
void channels_free(struct channels *c);
/* provider_id: the provider's id of the message when it gave one (an SMS
 * provider's "sid"), else "". */
/* trace: the job's context (NULL or not valid: untraced); the call gets a
 * span of its own and passes it on to the provider. */
enum send_result channels_send(struct channels *c, const char *id, const struct note_msg *m,
                               const struct trace_ctx *trace, char provider_id[NOTE_PROVIDER_ID_MAX + 1],
                               char *errbuf, size_t errlen);

#endif
