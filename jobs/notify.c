/* notify.c - see notify.h. */
#include "notify.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "phone.h"

static const char *const channel_names[CH_COUNT] = {"email", "sms", "push", "kafka"};
static const char *const status_names[NOTE_STATUS_COUNT] = {
    "queued", "sending", "sent", "retrying", "dead", "delivered", "undelivered", "failed", "cancelled", "scheduled"};

const char *note_channel_name(enum note_channel c)
{
    return (unsigned)c < CH_COUNT ? channel_names[c] : "?";
}

bool note_channel_parse(const char *s, enum note_channel *out)
{
    for (int i = 0; i < CH_COUNT; i++)
        if (strcmp(s, channel_names[i]) == 0) {
            *out = (enum note_channel)i;
            return true;
        }
    return false;
}

const char *note_status_name(enum note_status s)
{
    return (unsigned)s < NOTE_STATUS_COUNT ? status_names[s] : "?";
}

bool note_status_parse(const char *s, enum note_status *out)
{
    for (int i = 0; i < NOTE_STATUS_COUNT; i++)
        if (strcmp(s, status_names[i]) == 0) {
            *out = (enum note_status)i;
            return true;
        }
    return false;
}

bool note_status_terminal(enum note_status s)
{
    return s == NOTE_DEAD || s == NOTE_DELIVERED || s == NOTE_UNDELIVERED || s == NOTE_FAILED || s == NOTE_CANCELLED;
}

bool note_status_may_move(enum note_status from, enum note_status to)
{
    if (from == to) /* written again: attempts, an error, a provider id */
        return true;
    switch (to) {
    case NOTE_SCHEDULED:
        return false; /* only as a record starts */
    case NOTE_QUEUED: /* its time came; or an operator redrove a dead one */
        return from == NOTE_SCHEDULED || from == NOTE_DEAD;
    case NOTE_SENDING: /* an attempt, the first or a retry (or again after a crash) */
        return from == NOTE_QUEUED || from == NOTE_RETRYING;
    case NOTE_RETRYING:
        return from == NOTE_SENDING;
    case NOTE_SENT:
        return from == NOTE_SENDING || from == NOTE_RETRYING; /* a timeout the provider had taken */
    case NOTE_DELIVERED:
    case NOTE_UNDELIVERED:
    case NOTE_FAILED: /* the provider's word, possibly before ours that it was sent, or after we gave up on
                         an attempt it had taken (a timeout): it knows */
        return from == NOTE_SENDING || from == NOTE_RETRYING || from == NOTE_SENT || from == NOTE_DEAD;
    case NOTE_DEAD:
        return from == NOTE_QUEUED || from == NOTE_SENDING || from == NOTE_RETRYING || from == NOTE_SCHEDULED;
    case NOTE_CANCELLED:
        return from == NOTE_SCHEDULED;
    default:
        return false;
    }
}

/* A mailbox we hand to SMTP: one '@', something on each side, and nothing
 * that could end or add a header or an SMTP command. */
static bool email_valid(const char *s)
{
    const char *at = strchr(s, '@');
    size_t n = strlen(s);
    if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@') || n > 254)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == 0x7f || strchr("<>()[]\\,;:\"", *p))
            return false;
    return true;
}

static bool printable_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

static bool topic_allowed(const char *topic, const char *allowed)
{
    size_t n = strlen(topic);
    for (const char *p = allowed; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, topic, n) == 0)
            return true;
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

bool note_msg_check(const struct note_msg *m, const char *allowed_topics, char *errbuf,
                    size_t errlen)
{
    if (strpbrk(m->title, "\r\n")) {
        sb_errf(errbuf, errlen, "title must be one line");
        return false;
    }
    switch (m->channel) {
    case CH_EMAIL:
        if (!email_valid(m->to)) {
            sb_errf(errbuf, errlen, "to must be an email address, like ada@example.com");
            return false;
        }
        if (*m->from && !email_valid(m->from)) {
            sb_errf(errbuf, errlen, "from must be an email address, like ops@example.com");
            return false;
        }
        return true;
    case CH_SMS:
        if (!phone_valid(m->to)) {
            sb_errf(errbuf, errlen, "to must be an E.164 phone number, like +14155550123");
            return false;
        }
        if (*m->from && !phone_valid(m->from)) {
            sb_errf(errbuf, errlen, "from must be an E.164 phone number, like +14155550123");
            return false;
        }
        if (*m->body == '\0') {
            sb_errf(errbuf, errlen, "an SMS needs a non-empty payload");
            return false;
        }
        return true;
    case CH_PUSH:
        if (!printable_token(m->to)) {
            sb_errf(errbuf, errlen, "to must be a device or user id without spaces");
            return false;
        }
        return true;
    case CH_KAFKA:
        if (!topic_allowed(m->to, allowed_topics)) {
            sb_errf(errbuf, errlen, "to must be a Kafka topic this service may produce to (%s)",
                    allowed_topics && *allowed_topics ? allowed_topics : "none are configured");
            return false;
        }
        return true;
    default:
        sb_errf(errbuf, errlen, "unknown channel");
        return false;
    }
}

/* FNV-1a over the fields with a separator that cannot occur in them (a
 * NUL), so ("ab","c") and ("a","bc") differ. Not cryptographic: it tells
 * a client's repeat from a changed request, nothing more. */
static uint64_t fnv(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= UINT64_C(1099511628211);
    }
    return h * UINT64_C(1099511628211); /* the NUL after the field */
}

void note_fingerprint(const struct note_msg *m, char out[NOTE_FP_LEN + 1])
{
    uint64_t h = UINT64_C(14695981039346656037);
    h = fnv(h, note_channel_name(m->channel));
    h = fnv(h, m->to);
    h = fnv(h, m->from);
    h = fnv(h, m->title);
    h = fnv(h, m->body);
    snprintf(out, NOTE_FP_LEN + 1, "%016llx", (unsigned long long)h);
}

cJSON *note_job_payload(const char *id, const struct note_msg *m, const char *idem,
                        const char *tracking_id, int64_t item)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "channel", note_channel_name(m->channel));
    cJSON_AddStringToObject(o, "to", m->to);
    if (*m->from)
        cJSON_AddStringToObject(o, "from", m->from);
    if (*m->title)
        cJSON_AddStringToObject(o, "title", m->title);
    cJSON_AddStringToObject(o, "body", m->body);
    if (idem && *idem)
        cJSON_AddStringToObject(o, "idempotency_key", idem);
    if (tracking_id && *tracking_id) {
        cJSON_AddStringToObject(o, "tracking_id", tracking_id);
        cJSON_AddNumberToObject(o, "item", (double)item);
    }
    return o;
}

void note_iso_time(int64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char date[24];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", date, (int)(ms % 1000));
}

bool note_parse_time(const char *s, int64_t *ms)
{
    struct tm tm = {0};
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &n) != 6 || n != 19 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    const char *p = s + 19;
    int64_t frac = 0, scale = 1000;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        for (; *p >= '0' && *p <= '9'; p++)
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hh, mm, k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &k) != 2 || k != 5 || hh > 23 || mm > 59)
            return false;
        offset = (*p == '+' ? 1 : -1) * ((int64_t)hh * 3600 + mm * 60);
        p += 6;
    } else {
        return false;
    }
    if (*p)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *ms = ((int64_t)t - offset) * 1000 + frac;
    return true;
}

bool note_idem_check(const char *key, const char *field, char *errbuf, size_t errlen)
{
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '#') {
            sb_errf(errbuf, errlen, "%s may not hold control characters or '#'", field);
            return false;
        }
    return true;
}

void note_idem_part(const char *key, int64_t part, char out[NOTE_IDEM_STORED_MAX + 1])
{
    assert(strlen(key) <= NOTE_IDEM_MAX && part > 0 && part <= 9999999);
    snprintf(out, NOTE_IDEM_STORED_MAX + 1, "%s#%lld", key, (long long)part);
}
