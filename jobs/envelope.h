/* envelope.h - the job envelope every Kafka message carries.
 *
 *   {"type":"system.ping","version":1,"key":"...","request_id":"...",
 *    "created_at":1763800000000,"payload":{...}}
 *
 * created_at is Unix milliseconds. The key is also the Kafka message key,
 * so every job of one application (or phone number) lands on one partition
 * and is applied in order. schema/topics/ holds the same rules as JSON
 * Schema for producers outside switchboard; job_types[] here is the code
 * side of those files and the tests keep the two in step. */
#ifndef SB_ENVELOPE_H
#define SB_ENVELOPE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "json.h"

#define ENVELOPE_MAX_KEY 200

/* Chat limits shared by the API and the jobs. */
#define TOKEN_LEN 22                 /* 128 random bits, base64url, no padding */
#define NUMBER_MAX INT64_C(2147483647) /* chat and message numbers */
#define MESSAGE_BODY_MAX 10000       /* characters (code points) */
#define ENVELOPE_MAX_TYPE 64
#define ENVELOPE_MAX_REQUEST_ID 64

struct job_type {
    const char *type;
    const char *topic;
    int version;
    const struct json_field *fields; /* payload fields */
    size_t nfields;
};

/* The limits count code points; a code point takes up to 4 bytes of
 * UTF-8, so the copies below hold any valid value whole (a byte-sized
 * buffer would cut a long multibyte key mid-character). */
struct envelope {
    const struct job_type *job;
    char type[4 * ENVELOPE_MAX_TYPE + 1];
    int version;
    char key[4 * ENVELOPE_MAX_KEY + 1];
    char request_id[4 * ENVELOPE_MAX_REQUEST_ID + 1];
    int64_t created_at;
    cJSON *payload; /* borrowed from root */
    cJSON *root;    /* owned */
};

/* The known job types, or NULL. */
const struct job_type *envelope_job_type(const char *type);
/* Number of entries and the i-th one (for tests and docs). */
size_t envelope_job_type_count(void);
const struct job_type *envelope_job_type_at(size_t i);

/* Builds the JSON text of an envelope; takes ownership of payload. The
 * result is heap memory for the caller to free(). NULL on bad input. */
char *envelope_encode(const char *type, const char *key, const char *request_id,
                      int64_t created_at, cJSON *payload, char *errbuf, size_t errlen);
/* The same with the payload as JSON text (len bytes), which the caller
 * built to the type's fields: written as it is, not parsed nor checked
 * (debug builds check it). For the create path, which makes one a
 * request: no tree to build, check and print. */
char *envelope_encode_text(const char *type, const char *key, const char *request_id,
                           int64_t created_at, const char *payload, size_t len, char *errbuf,
                           size_t errlen);

/* Parses and validates a message (envelope and payload). On false, errbuf
 * holds the reason that goes with the job to the dead-letter topic. */
bool envelope_decode(struct envelope *env, const char *buf, size_t len, char *errbuf,
                     size_t errlen) SB_NODISCARD;
void envelope_clear(struct envelope *env);

#endif
