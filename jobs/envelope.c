/* envelope.c - see envelope.h. */
#include "envelope.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify.h"
#include "strbuf.h"

/* system.ping: an operator's probe that travels the whole pipeline; the
 * persister records it, so "dispatcher -> Kafka -> worker -> MySQL" can be
 * checked (and timed) without touching user data. */
static const struct json_field ping_fields[] = {
    {"note", JSON_K_STRING, false, 0, 200},
};

/* Chat jobs: key = application token (all of an application's jobs share
 * a partition, so a message lands after its chat and an update after its
 * create). Numbers were allocated by the dispatcher. */
static const struct json_field chat_create_fields[] = {
    {"application_token", JSON_K_TOKEN, true, TOKEN_LEN, TOKEN_LEN},
    {"number", JSON_K_INT, true, 1, NUMBER_MAX},
};

static const struct json_field message_fields[] = {
    {"application_token", JSON_K_TOKEN, true, TOKEN_LEN, TOKEN_LEN},
    {"chat_number", JSON_K_INT, true, 1, NUMBER_MAX},
    {"number", JSON_K_INT, true, 1, NUMBER_MAX},
    {"body", JSON_K_STRING, true, 1, MESSAGE_BODY_MAX},
};

/* Phonebook: key = phone number, so every job about one number is applied
 * in order by one consumer. */
static const struct json_field phonebook_assign_fields[] = {
    {"user_id", JSON_K_INT, true, 1, (INT64_C(1) << 53) - 1},
    {"phone_number", JSON_K_STRING, true, 9, 16},
    {"ref_id", JSON_K_TOKEN, true, 1, 64},
};

/* Notifications (and SMS): key = the notification id. The same job, with
 * attempt and not_before set, waits on notify.retry after a failed try.
 * Channel and recipient rules beyond length are notify.c's. */
static const struct json_field notify_send_fields[] = {
    {"id", JSON_K_TOKEN, true, 8, NOTE_ID_MAX},
    {"channel", JSON_K_STRING, true, 1, 8},
    {"to", JSON_K_BYTES, true, 1, NOTE_TO_MAX},
    {"from", JSON_K_BYTES, false, 0, NOTE_TO_MAX},
    {"title", JSON_K_STRING, false, 0, NOTE_TITLE_MAX},
    {"body", JSON_K_STRING, true, 0, NOTE_BODY_MAX},
    {"idempotency_key", JSON_K_BYTES, false, 1, NOTE_IDEM_STORED_MAX},
    {"tracking_id", JSON_K_TOKEN, false, 8, NOTE_ID_MAX},
    {"item", JSON_K_INT, false, 0, 1000000},
    {"attempt", JSON_K_INT, false, 1, 1000},
    {"not_before", JSON_K_INT, false, 0, INT64_C(1) << 52},
    {"send_at", JSON_K_INT, false, 0, INT64_C(1) << 52},
    {"status_callback", JSON_K_BYTES, false, 8, NOTE_CALLBACK_MAX},
    {"webhook_key", JSON_K_BYTES, false, 1, 40},
};

static const struct job_type job_types[] = {
    {"system.ping", "chat.commands", 1, ping_fields, SB_ARRAY_LEN(ping_fields)},
    {"chat.create", "chat.commands", 1, chat_create_fields, SB_ARRAY_LEN(chat_create_fields)},
    {"message.create", "chat.commands", 1, message_fields, SB_ARRAY_LEN(message_fields)},
    {"message.update", "chat.commands", 1, message_fields, SB_ARRAY_LEN(message_fields)},
    {"phonebook.assign", "phonebook.commands", 1, phonebook_assign_fields,
     SB_ARRAY_LEN(phonebook_assign_fields)},
    {"notify.send", "notify.requests", 1, notify_send_fields, SB_ARRAY_LEN(notify_send_fields)},
};

static const struct json_field envelope_fields[] = {
    {"type", JSON_K_STRING, true, 1, ENVELOPE_MAX_TYPE},
    {"version", JSON_K_INT, true, 1, 1000},
    {"key", JSON_K_STRING, true, 1, ENVELOPE_MAX_KEY},
    {"request_id", JSON_K_STRING, true, 1, ENVELOPE_MAX_REQUEST_ID},
    {"created_at", JSON_K_INT, true, 0, INT64_C(1) << 52},
    {"payload", JSON_K_OBJECT, true, 0, 0},
};

const struct job_type *envelope_job_type(const char *type)
{
    for (size_t i = 0; i < SB_ARRAY_LEN(job_types); i++)
        if (strcmp(job_types[i].type, type) == 0)
            return &job_types[i];
    return NULL;
}

size_t envelope_job_type_count(void)
{
    return SB_ARRAY_LEN(job_types);
}

const struct job_type *envelope_job_type_at(size_t i)
{
    return i < SB_ARRAY_LEN(job_types) ? &job_types[i] : NULL;
}

/* The envelope's text around a payload that add_payload writes (b: the
 * envelope so far). Written directly (every create encodes one): the text
 * cJSON would print for {type, version, key, request_id, created_at,
 * payload}. */
static char *encode(const struct job_type *jt, const char *key, const char *request_id,
                    int64_t created_at, bool (*add_payload)(struct strbuf *b, const void *arg),
                    const void *arg, char *errbuf, size_t errlen)
{
    struct strbuf b = {0};
    strbuf_append_lit(&b, "{\"type\":");
    json_append_string(&b, jt->type);
    strbuf_append_lit(&b, ",\"version\":");
    strbuf_append_i64(&b, jt->version);
    strbuf_append_lit(&b, ",\"key\":");
    json_append_string(&b, key);
    strbuf_append_lit(&b, ",\"request_id\":");
    json_append_string(&b, request_id);
    strbuf_append_lit(&b, ",\"created_at\":");
    strbuf_append_i64(&b, created_at);
    strbuf_append_lit(&b, ",\"payload\":");
    if (!add_payload(&b, arg)) {
        strbuf_free(&b);
        sb_errf(errbuf, errlen, "payload cannot be written as JSON");
        return NULL;
    }
    strbuf_append_lit(&b, "}");
    char *out = strbuf_take(&b);
    strbuf_free(&b);
    if (out == NULL)
        sb_errf(errbuf, errlen, "out of memory");
    return out;
}

static bool add_tree(struct strbuf *b, const void *payload)
{
    return json_append(b, payload);
}

struct text_payload {
    const char *p;
    size_t len;
};

static bool add_text(struct strbuf *b, const void *arg)
{
    const struct text_payload *t = arg;
    strbuf_append(b, t->p, t->len);
    return true;
}

char *envelope_encode(const char *type, const char *key, const char *request_id,
                      int64_t created_at, cJSON *payload, char *errbuf, size_t errlen)
{
    char *out = NULL;
    const struct job_type *jt = envelope_job_type(type);
    if (jt == NULL)
        sb_errf(errbuf, errlen, "unknown job type '%s'", type);
    else if (json_check_object(payload, jt->fields, jt->nfields, errbuf, errlen))
        out = encode(jt, key, request_id, created_at, add_tree, payload, errbuf, errlen);
    cJSON_Delete(payload);
    return out;
}

char *envelope_encode_text(const char *type, const char *key, const char *request_id,
                           int64_t created_at, const char *payload, size_t len, char *errbuf,
                           size_t errlen)
{
    const struct job_type *jt = envelope_job_type(type);
    if (jt == NULL) {
        sb_errf(errbuf, errlen, "unknown job type '%s'", type);
        return NULL;
    }
#ifndef NDEBUG
    /* The caller vouches for the payload; debug builds (the sanitizer
     * run of CI) check it as envelope_encode does. */
    cJSON *tree = json_parse_strict(payload, len, errbuf, errlen);
    bool valid = tree && json_check_object(tree, jt->fields, jt->nfields, errbuf, errlen);
    cJSON_Delete(tree);
    assert(valid);
    if (!valid)
        return NULL;
#endif
    struct text_payload t = {payload, len};
    return encode(jt, key, request_id, created_at, add_text, &t, errbuf, errlen);
}

bool envelope_decode(struct envelope *env, const char *buf, size_t len, char *errbuf,
                     size_t errlen)
{
    memset(env, 0, sizeof *env);
    env->root = json_parse_strict(buf, len, errbuf, errlen);
    if (env->root == NULL)
        return false;
    if (!json_check_object(env->root, envelope_fields, SB_ARRAY_LEN(envelope_fields), errbuf,
                           errlen))
        goto fail;
    snprintf(env->type, sizeof env->type, "%s", json_str(env->root, "type", ""));
    snprintf(env->key, sizeof env->key, "%s", json_str(env->root, "key", ""));
    snprintf(env->request_id, sizeof env->request_id, "%s", json_str(env->root, "request_id", ""));
    env->version = (int)json_i64(env->root, "version", 0);
    env->created_at = json_i64(env->root, "created_at", 0);
    env->payload = cJSON_GetObjectItemCaseSensitive(env->root, "payload");
    env->job = envelope_job_type(env->type);
    if (env->job == NULL) {
        sb_errf(errbuf, errlen, "unknown job type '%s'", env->type);
        goto fail;
    }
    if (env->version != env->job->version) {
        sb_errf(errbuf, errlen, "%s version %d is not supported (expected %d)", env->type,
                env->version, env->job->version);
        goto fail;
    }
    char inner[ERRBUF_LEN];
    if (!json_check_object(env->payload, env->job->fields, env->job->nfields, inner,
                           sizeof inner)) {
        sb_errf(errbuf, errlen, "payload: %s", inner);
        goto fail;
    }
    return true;
fail:
    envelope_clear(env);
    return false;
}

void envelope_clear(struct envelope *env)
{
    cJSON_Delete(env->root);
    env->root = NULL;
    env->payload = NULL;
}
