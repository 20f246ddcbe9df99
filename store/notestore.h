/* notestore.h - the records of notifications and SMS, behind one interface.
 *
 * MongoDB when mongo_uri is set (notestore_mongo.c, mongo-c-driver), MySQL
 * tables otherwise (notestore_mysql.c). Both keep the same two things:
 *
 *   notifications  one per notification: channel, recipient, idempotency
 *                  key (unique: the durable half of "send once"), the
 *                  fingerprint of its content, status, attempts, last error;
 *   sms_requests   one per /sms/send/many call: item count and the items
 *                  refused up front; its items are notifications carrying
 *                  its tracking id.
 *
 * A store is one connection, used by one thread at a time; calls block.
 * Failures are DB_TRANSIENT (the server is away: retry later) or DB_FATAL.
 * The notestore_* calls take a NULL store too (a pool thread whose store
 * could not be made) and answer DB_TRANSIENT. */
#ifndef SB_NOTESTORE_H
#define SB_NOTESTORE_H

#include <cjson/cJSON.h>

#include "config.h"
#include "db.h"
#include "notify.h"

#define NOTE_REDRIVE_MAX 300

struct note {
    char id[NOTE_ID_MAX + 1];
    enum note_channel channel;
    char to[NOTE_TO_MAX + 1];
    char idem[NOTE_IDEM_STORED_MAX + 1]; /* "" = none */
    char fingerprint[NOTE_FP_LEN + 1];
    char tracking_id[NOTE_ID_MAX + 1];  /* "" = not part of a send-many */
    int64_t item;                       /* its index in that request */
    enum note_status status;
    int64_t attempts; /* an update with attempts < 0 leaves them as they are */
    char last_error[NOTE_ERROR_MAX + 1];
    int64_t created_ms, updated_ms;
    /* The provider's id of the message (Twilio's MessageSid), once it took
     * it; "" = none yet. An update never clears it. */
    char provider_id[NOTE_PROVIDER_ID_MAX + 1];
    /* The dead letter ("topic/partition/offset") whose redrive last queued
     * it again; "" = never redriven. Another copy of that same redrive
     * (a rewound batch) then finds it settled. */
    char redrive_of[NOTE_REDRIVE_MAX + 1];
    /* A scheduled send: when it goes (0 = not scheduled), and the job to
     * produce then (claim stores it; NULL elsewhere; borrowed). */
    int64_t send_at_ms;
    const char *job;
    /* Its own webhook (statusCallback; "" = none), the key that sent it
     * (whose secret signs), and how far its delivery has come: events of
     * the history delivered, failures of the next. Set at claim; the
     * webhook thread moves them (notestore_webhook_progress). */
    char callback_url[NOTE_CALLBACK_MAX + 1];
    char webhook_key[41];
    int64_t webhook_sent, webhook_attempts;
};

/* A scheduled notification whose time has come (notestore_due). */
struct note_due {
    char id[NOTE_ID_MAX + 1];
    bool claimed; /* queued already: a scheduler took it and may not have produced it */
    char *job;    /* malloc'd */
};

struct note_tracking {
    int64_t total;                 /* items in the request */
    int64_t rejected;              /* of which refused up front */
    int64_t counts[NOTE_STATUS_COUNT];
    cJSON *errors;                 /* [{"index","reason"}]: refused up front, then dead items */
    int64_t created_ms;
};

struct notestore;

struct notestore_ops {
    const char *kind;
    enum db_status (*claim)(struct notestore *s, const struct note *n, bool *created,
                            struct note *existing, char *errbuf, size_t errlen);
    enum db_status (*update)(struct notestore *s, const struct note *n, bool *applied, char *errbuf, size_t errlen);
    enum db_status (*history)(struct notestore *s, const char *id, cJSON *out, char *errbuf, size_t errlen);
    enum db_status (*webhooks_due)(struct notestore *s, int64_t now_ms, char (*ids)[NOTE_ID_MAX + 1], size_t max,
                                   size_t *n, char *errbuf, size_t errlen);
    enum db_status (*webhook_progress)(struct notestore *s, const char *id, int64_t sent, int64_t attempts,
                                       int64_t retry_at_ms, int64_t now_ms, char *errbuf, size_t errlen);
    enum db_status (*due)(struct notestore *s, int64_t now_ms, int64_t stale_ms, struct note_due *out, size_t max,
                          size_t *n, char *errbuf, size_t errlen);
    /* by_idem: value is an idempotency key, else an id. */
    enum db_status (*get)(struct notestore *s, bool by_idem, const char *value, struct note *out, bool *found,
                          char *errbuf, size_t errlen);
    enum db_status (*track_put)(struct notestore *s, const char *tracking_id, int64_t total,
                                const cJSON *errors, int64_t created_ms, char *errbuf, size_t errlen);
    enum db_status (*track_get)(struct notestore *s, const char *tracking_id,
                                struct note_tracking *out, bool *found, char *errbuf, size_t errlen);
    enum db_status (*ping)(struct notestore *s, char *errbuf, size_t errlen);
    void (*free)(struct notestore *s);
};

struct notestore {
    const struct notestore_ops *ops;
};

/* MongoDB if cfg->mongo_uri is set, else MySQL at cfg->mysql_url. Does not
 * dial: the first call does (and a lost connection is redialled). */
struct notestore *notestore_new(const struct sb_config *cfg, char *errbuf, size_t errlen);
struct notestore *notestore_mysql_new(const char *mysql_url, char *errbuf, size_t errlen);
struct notestore *notestore_mongo_new(const char *mongo_uri, char *errbuf, size_t errlen);
void notestore_free(struct notestore *s);
const char *notestore_kind(const struct notestore *s);

/* Records n unless its id or idempotency key is already recorded: then
 * *created is false and *existing is the record that holds it. */
enum db_status notestore_claim(struct notestore *s, const struct note *n, bool *created,
                               struct note *existing, char *errbuf, size_t errlen) SB_NODISCARD;
/* Writes n's status, attempts (unless < 0), last_error and updated_ms (by
 * id), and its redrive_of and provider_id unless "" (an update never
 * forgets them), if the stored status may move to n's
 * (note_status_may_move): *applied says whether it did. A move of status
 * adds {status, at: updated_ms, detail} to the record's history (detail:
 * last_error for retrying, dead, undelivered and failed), in the same
 * transaction. */
enum db_status notestore_update(struct notestore *s, const struct note *n, bool *applied, char *errbuf,
                                size_t errlen) SB_NODISCARD;
/* The record's history, oldest first, appended to out (a JSON array) as
 * {"status", "at" (ms), "detail" (only when there is one)}. */
enum db_status notestore_history(struct notestore *s, const char *id, cJSON *out, char *errbuf,
                                 size_t errlen) SB_NODISCARD;
/* Scheduled notifications whose time has come, at most max, into out
 * (*n of them; the caller frees each job): those still scheduled with
 * send_at_ms <= now_ms, and those a scheduler moved to queued before
 * stale_ms but whose job may never have gone out (it stopped between the
 * two), to be produced again (a repeat the notifier sends once). */
enum db_status notestore_due(struct notestore *s, int64_t now_ms, int64_t stale_ms, struct note_due *out,
                             size_t max, size_t *n, char *errbuf, size_t errlen) SB_NODISCARD;
/* Notifications whose webhook has events to deliver now (a move since, or
 * a retry's time come), at most max. */
enum db_status notestore_webhooks_due(struct notestore *s, int64_t now_ms, char (*ids)[NOTE_ID_MAX + 1], size_t max,
                                      size_t *n, char *errbuf, size_t errlen) SB_NODISCARD;
/* Records a webhook's progress: sent events delivered; then, with
 * retry_at_ms, the next failed (attempts so far) and is tried again then;
 * without (0), it is tried again now if the history has more events (a
 * move since), else not until the next move. */
enum db_status notestore_webhook_progress(struct notestore *s, const char *id, int64_t sent, int64_t attempts,
                                          int64_t retry_at_ms, int64_t now_ms, char *errbuf,
                                          size_t errlen) SB_NODISCARD;
/* The detail a status move records (see notestore_update). */
const char *note_event_detail(const struct note *n);
/* The statuses from which a record may move to to, but to itself, as SQL
 * string literals ("'queued','retrying'") into out; false if none. */
bool note_status_sources(enum note_status to, char *out, size_t cap);
enum db_status notestore_get(struct notestore *s, const char *id, struct note *out, bool *found,
                             char *errbuf, size_t errlen) SB_NODISCARD;
/* The record holding idempotency key idem (a send-many part's is
 * "<key>#<part>"). */
enum db_status notestore_find_idem(struct notestore *s, const char *idem, struct note *out, bool *found,
                                   char *errbuf, size_t errlen) SB_NODISCARD;
/* Records a send-many request (again = no change). errors: a JSON array. */
enum db_status notestore_track_put(struct notestore *s, const char *tracking_id, int64_t total,
                                   const cJSON *errors, int64_t created_ms, char *errbuf,
                                   size_t errlen) SB_NODISCARD;
/* The request and its items' counts by status; out->errors is the caller's. */
enum db_status notestore_track_get(struct notestore *s, const char *tracking_id,
                                   struct note_tracking *out, bool *found, char *errbuf,
                                   size_t errlen) SB_NODISCARD;
enum db_status notestore_ping(struct notestore *s, char *errbuf, size_t errlen) SB_NODISCARD;

/* The public JSON of a record (GET /v1/messages/{id}). */
cJSON *note_to_json(const struct note *n);

/* Thread pool whose threads each own a store (made from cfg, which must
 * outlive the pool): work functions get the struct notestore * as ctx. */
struct threadpool *notestore_pool_new(const struct sb_config *cfg, size_t size, char *errbuf,
                                      size_t errlen);

#endif
