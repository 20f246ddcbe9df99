/* notify.h - what a notification is, shared by the dispatcher (which
 * accepts them), the notifier (which delivers them) and the store.
 *
 * A notification goes out on one channel: email (SMTP), sms (a provider's
 * HTTP API), push (a webhook) or kafka (a message on an allowed topic). An
 * SMS sent through /sms/send/one and /many is an sms-channel notification. The same
 * rules check a request from the API and a job from another producer, so
 * both are refused for the same reasons. */
#ifndef SB_NOTIFY_H
#define SB_NOTIFY_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "util.h"

#define NOTE_ID_MAX 64      /* ids we make are 32 hex characters */
/* Identifiers are bounded in UTF-8 bytes (JSON_K_BYTES), so that what
 * passes validation is stored whole; texts (title, body) in characters. */
#define NOTE_IDEM_MAX 128   /* idempotency key from a client, bytes */
/* A stored key: the client's, or "<key>#<part>" for the parts of one
 * send-many message (sms_many_max is at most 100000: "#100000"). */
#define NOTE_IDEM_STORED_MAX (NOTE_IDEM_MAX + 8)
#define NOTE_TO_MAX 320     /* an email address, a phone number, a topic; bytes */
#define NOTE_TITLE_MAX 998  /* an email subject line */
#define NOTE_BODY_MAX 65536 /* characters */
#define NOTE_ERROR_MAX 255
#define NOTE_FP_LEN 16      /* fingerprint: 64 bits in hex */
#define NOTE_CALLBACK_MAX 2048 /* a statusCallback URL */
#define NOTE_PROVIDER_ID_MAX 64 /* a provider's id of a message (Twilio's MessageSid: 34) */

enum note_channel { CH_EMAIL, CH_SMS, CH_PUSH, CH_KAFKA, CH_COUNT };
/* A notification's status, a machine that never moves backwards:
 *
 *   scheduled -> queued -> sending <-> retrying     (sending again after a
 *                             |                      passing failure)
 *                             v
 *                            sent -> delivered | undelivered | failed
 *
 * plus dead (given up: attempts spent, or refused for good) and cancelled
 * (a scheduled one, before it went). delivered, undelivered and failed come
 * from the provider's callbacks, late, twice or out of order: a late "sent"
 * after "delivered" changes nothing. Those five are terminal; only an
 * operator's redrive takes a dead one back to queued, and the provider's
 * word (delivered, undelivered, failed) still moves a dead one: an attempt
 * we gave up on may have reached it after all. */
enum note_status {
    NOTE_QUEUED,
    NOTE_SENDING,
    NOTE_SENT,
    NOTE_RETRYING, /* the last attempt failed; a retry waits on notify.retry */
    NOTE_DEAD,
    NOTE_DELIVERED,
    NOTE_UNDELIVERED,
    NOTE_FAILED, /* the provider could not send it (its callback) */
    NOTE_CANCELLED,
    NOTE_SCHEDULED,
    NOTE_STATUS_COUNT
};

const char *note_channel_name(enum note_channel c);
bool note_channel_parse(const char *s, enum note_channel *out) SB_NODISCARD;
const char *note_status_name(enum note_status s);
bool note_status_parse(const char *s, enum note_status *out) SB_NODISCARD;
/* The machine's edges: whether a record in from may be moved to to (a
 * record already in to may be written again, but a terminal one only by
 * the same status). The stores apply an update only where this holds. */
bool note_status_may_move(enum note_status from, enum note_status to);
bool note_status_terminal(enum note_status s);

/* The fields a delivery needs (borrowed strings). */
struct note_msg {
    enum note_channel channel;
    const char *to;
    const char *from;  /* "" = the provider's default */
    const char *title; /* "" = none */
    const char *body;
};

/* Checks what the channel needs of to/from (an E.164 number for sms, an
 * address for email, an allowed topic for kafka: allowed_topics is the
 * comma-separated allowlist). The message names the offending field. */
bool note_msg_check(const struct note_msg *m, const char *allowed_topics, char *errbuf,
                    size_t errlen) SB_NODISCARD;

/* The fingerprint of what would be sent: the same idempotency key with a
 * different fingerprint is a different request (422), not a repeat. */
/* A client's idempotency key (its length already checked): no control
 * characters, and no '#', which marks the parts of a send-many message. */
bool note_idem_check(const char *key, const char *field, char *errbuf, size_t errlen) SB_NODISCARD;
/* The stored key of part `part` (1-based) of a send-many message. */
void note_idem_part(const char *key, int64_t part, char out[NOTE_IDEM_STORED_MAX + 1]);
void note_fingerprint(const struct note_msg *m, char out[NOTE_FP_LEN + 1]);

/* Builds the payload of a notify.send job (see schema/topics/). */
cJSON *note_job_payload(const char *id, const struct note_msg *m, const char *idem,
                        const char *tracking_id, int64_t item);

/* "2026-11-22T13:25:33.378Z" from Unix milliseconds. */
void note_iso_time(int64_t ms, char out[32]);
/* Unix milliseconds from an RFC 3339 time: "2026-11-22T13:25:33Z", with
 * optional fractions of a second and a "Z" or "+hh:mm"/"-hh:mm" offset;
 * false if s is not one. */
bool note_parse_time(const char *s, int64_t *ms) SB_NODISCARD;

#endif
