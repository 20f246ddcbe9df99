/* callbacks_api.h - what providers tell us about the messages they took.
 *
 *   POST /v1/callbacks/sms/{id}   an SMS provider's status callback, as
 *        Twilio sends it (a form of MessageSid, MessageStatus, ErrorCode),
 *        to the StatusCallback URL the notifier gave with the message
 *        (sms_callback_url). Authenticated as Twilio signs it:
 *        X-Twilio-Signature, base64 HMAC-SHA1 with the account's auth token
 *        (the password of sms_url) over the URL it called and each
 *        parameter's name and value sorted by name; anything else is 403
 *        and changes nothing. sent, delivered (and read), undelivered and
 *        failed move the notification's status (jobs/notify.h): a late or
 *        repeated callback is a no-op, never a step back. 204 once the
 *        store has it.
 *
 * The routes have no API key: the signature is the credential. */
#ifndef SB_CALLBACKS_API_H
#define SB_CALLBACKS_API_H

#include <stddef.h>

#include "server.h"

void callbacks_sms(struct http_ctx *ctx);
/* POST /v1/inbound/sms: a text to one of our numbers, as Twilio forwards
 * it (From, To, Body; signed the same way). STOP, STOPALL, UNSUBSCRIBE,
 * CANCEL, END or QUIT suppresses From for messages from To (suppress.h);
 * START or UNSTOP lifts it; HELP is answered with sms_help_text. The
 * answer is TwiML, the text the provider sends back. */
void callbacks_inbound_sms(struct http_ctx *ctx);
/* POST /v1/callbacks/email: email feedback as Amazon SES publishes it (a
 * JSON notification: Bounce, Complaint or Delivery, with the message's
 * mail.commonHeaders.messageId, which the notifier sets to
 * <id@switchboard>). Authenticated by a shared secret
 * (email_feedback_secret): X-Feedback-Signature: t=<unix seconds>,v1=<hex
 * HMAC-SHA256 of "<t>.<body>">, the scheme of our own webhooks,
 * webhook.h), at most 5 minutes off (no replay); 403
 * otherwise. A hard bounce or a complaint suppresses each recipient for
 * every sender; a hard bounce makes the notification undelivered, a
 * delivery delivered (never backwards). 204 once recorded. */
void callbacks_email(struct http_ctx *ctx);
/* Twilio's signature of a request to url with params (count n, decoded
 * name/value pairs, any order) under token, base64, into out (at least
 * 29 bytes); false if out is too small. Exposed for the unit test. */
bool callbacks_twilio_signature(const char *token, const char *url, const char *const (*params)[2], size_t n,
                                char *out, size_t cap);

#endif
