/* notify_api.h - accepting notifications (POST /v1/messages, and the SMS
 * routes built on it) and reporting on them.
 *
 * Accepting one notification: (sms routes) its numbers are checked on the
 * find path; its idempotency key is claimed in Redis (SET NX, so repeats
 * and concurrent duplicates are told apart from new requests); the
 * notify.send job is produced; the answer waits for Kafka's ack. The
 * store's unique index is the durable guard behind Redis's fast one. */
#ifndef SB_NOTIFY_API_H
#define SB_NOTIFY_API_H

#include "notify.h"
#include "segments.h"
#include "server.h"

enum accept_outcome {
    ACCEPT_QUEUED,  /* new: in Kafka now */
    ACCEPT_REPEAT,  /* this key was accepted before with the same content */
    ACCEPT_REFUSED, /* status/code/message say why */
};

struct accept {
    struct loop *loop;
    char request_id[65];
    char id[33];
    enum note_channel channel;
    char *to, *from, *title, *body; /* owned */
    char idem[NOTE_IDEM_STORED_MAX + 1];
    char fingerprint[NOTE_FP_LEN + 1];
    char tracking_id[33];
    int64_t item;
    struct segments segs; /* CH_SMS: its encoding and segments (segments.h) */
    int64_t send_at;      /* a scheduled send: Unix ms; 0 = now */
    char callback[NOTE_CALLBACK_MAX + 1]; /* statusCallback: "" = none */
    char webhook_key[40];                 /* the principal that sent it (its secret signs) */
    bool check_numbers; /* from and to must be assigned phone numbers */
    const char *from_field, *to_field; /* names for messages */
    int checks_left;
    bool check_failed;
    char unknown[NOTE_TO_MAX + 64];
    /* outcome */
    enum accept_outcome outcome;
    int status;
    char code[32];
    char message[512]; /* room for a whole stored key */
    void (*done)(struct accept *a);
    void *owner;
    struct http_enqueue eq; /* the job's way to Kafka and back */
    struct trace_ctx trace; /* the request's, for the job */
};

/* Copies the message's strings; NULL when out of memory. */
struct accept *accept_new(struct loop *l, const char *request_id, const struct trace_ctx *trace,
                          const struct note_msg *m, const char *idem);
void accept_free(struct accept *a);
/* Runs the steps; a->done is called once, on this loop, perhaps before
 * accept_start returns. */
void accept_start(struct accept *a);

/* After a read of the notification store on a pool thread: answers 503
 * (busy: the wait for a thread ran out; else the store failed, logged)
 * and returns true unless the read went through. */
bool notify_store_failed(struct http_pending *p, bool expired, enum db_status st, const char *err);

/* An id (notification or tracking) of plausible shape: 8 to 64 of
 * [A-Za-z0-9_-], so nothing odd reaches a store. */
bool notify_id_valid(const char *id);

void notify_create(struct http_ctx *ctx);
void notify_get(struct http_ctx *ctx);
/* GET /v1/messages?idempotencyKey=K: the notification a send with that key
 * made, as GET /v1/messages/{id} answers it. */
void notify_find(struct http_ctx *ctx);
/* POST /v1/messages/{id}/cancel: a scheduled notification, before it goes
 * (409 after). */
void notify_cancel(struct http_ctx *ctx);
/* GET /v1/webhooks/secret: the calling key's secret for its statusCallback
 * signatures (webhook.h). */
void notify_webhook_secret(struct http_ctx *ctx);

#endif
