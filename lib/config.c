/* config.c - see config.h. */
#include "config.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#ifndef SB_SCHEMA_DIR_DEFAULT
#define SB_SCHEMA_DIR_DEFAULT "schema"
#endif
#ifndef SB_VERSION
#define SB_VERSION "dev"
#endif

/* CFG_KV: a string of key=value items whose secret values are masked. */
enum config_type { CFG_STR, CFG_INT, CFG_KV };

struct config_def {
    const char *name;
    const char *env;
    const char *flag;
    enum config_type type;
    const char *def;
    int64_t min, max;
    unsigned scope;
    size_t offset;
    const char *help;
};

#define S(field) offsetof(struct sb_config, field)
#define D SCOPE_DISPATCHER
#define W SCOPE_WORKER
#define M SCOPE_MIGRATE
#define C SCOPE_COUNTS

static const struct config_def defs[] = {
    {"config", "SB_CONFIG", "--config", CFG_STR, "", 0, 0, SCOPE_ALL, S(config_file),
     "settings file of 'name = value' lines (lowest precedence after defaults)"},
    {"log_level", "SB_LOG_LEVEL", "--log-level", CFG_STR, "info", 0, 0, SCOPE_ALL, S(log_level),
     "debug | info | warn | error"},
    {"log_format", "SB_LOG_FORMAT", "--log-format", CFG_STR, "logfmt", 0, 0, SCOPE_ALL,
     S(log_format), "logfmt | json"},
    {"redis_url", "REDIS_URL", "--redis-url", CFG_STR, "redis://127.0.0.1:6379/0", 0, 0,
     D | W | M, S(redis_url), "Redis server, redis://host:port[/db]"},
    {"kafka_brokers", "KAFKA_BROKERS", "--kafka-brokers", CFG_STR, "127.0.0.1:9092", 0, 0,
     D | W | M, S(kafka_brokers), "Kafka bootstrap servers, host:port[,host:port]"},
    {"kafka_conf", "SB_KAFKA_CONF", "--kafka-conf", CFG_KV, "", 0, 0, D | W | M, S(kafka_conf),
     "more librdkafka properties, key=value[,key=value] (\\, for a comma in a value): TLS, "
     "SASL, timeouts; secrets are masked in --print-config"},
    {"kafka_session_timeout_ms", "SB_KAFKA_SESSION_TIMEOUT_MS", "--kafka-session-timeout-ms",
     CFG_INT, "10000", 1000, 300000, W, S(kafka_session_timeout_ms),
     "consumer group session timeout; lower = faster rebalance after a crash"},
    {"kafka_partitions", "SB_KAFKA_PARTITIONS", "--partitions", CFG_INT, "0", 0, 10000, M,
     S(kafka_partitions),
     "topics: partitions of each topic made; 0 = as its schema/topics file says (else 8)"},
    {"kafka_replication_factor", "SB_KAFKA_REPLICATION_FACTOR", "--replication-factor", CFG_INT,
     "0", 0, 16, M, S(kafka_replication_factor),
     "topics: replicas of each partition; 0 = as many as there are brokers, at most 3"},
    {"mysql_url", "MYSQL_URL", "--mysql-url", CFG_STR,
     "mysql://switchboard:switchboard@127.0.0.1:3306/switchboard", 0, 0, D | W | M | C,
     S(mysql_url), "MySQL/MariaDB, mysql://user:pass@host:port/db"},
    {"mysql_pool_size", "SB_MYSQL_POOL_SIZE", "--mysql-pool-size", CFG_INT, "4", 1, 256, D,
     S(mysql_pool_size), "MySQL connections (one per pool thread) in the dispatcher"},
    {"schema_dir", "SB_SCHEMA_DIR", "--schema-dir", CFG_STR, SB_SCHEMA_DIR_DEFAULT, 0, 0,
     M | W, S(schema_dir), "directory holding mysql/ migrations and topics/ schemas"},
    {"listen", "SB_LISTEN", "--listen", CFG_STR, "127.0.0.1:8080", 0, 0, D, S(listen),
     "HTTP address:port (SO_REUSEPORT: several processes may share it)"},
    {"threads", "SB_THREADS", "--threads", CFG_INT, "0", 0, 256, D, S(threads),
     "event-loop threads; 0 = number of cores"},
    {"max_body_bytes", "SB_MAX_BODY_BYTES", "--max-body-bytes", CFG_INT, "1048576", 256,
     64 << 20, D, S(max_body_bytes),
     "largest request body any route accepts (413 beyond); each route's own limit follows from its fields"},
    {"max_connections", "SB_MAX_CONNECTIONS", "--max-connections", CFG_INT, "0", 0, 10000000, D,
     S(max_connections),
     "most open client connections (503 and closed beyond); 0 = the open file limit less 128"},
    {"max_output_bytes", "SB_MAX_OUTPUT_BYTES", "--max-output-bytes", CFG_INT, "67108864", 1 << 20,
     INT64_C(1) << 40, D, S(max_output_bytes),
     "answers written but not yet read by their clients, all connections together; a large answer beyond it is a 503"},
    {"pool_queue_max", "SB_POOL_QUEUE_MAX", "--pool-queue-max", CFG_INT, "256", 1, 4096, D,
     S(pool_queue_max), "requests that may wait for a MySQL or store thread (one client: half of them; 503 beyond)"},
    {"pool_wait_ms", "SB_POOL_WAIT_MS", "--pool-wait-ms", CFG_INT, "2000", 10, 120000, D, S(pool_wait_ms),
     "how long a request may wait for a MySQL or store thread before it is answered 503"},
    {"request_timeout_ms", "SB_REQUEST_TIMEOUT_MS", "--request-timeout-ms", CFG_INT, "5000", 100,
     120000, D, S(request_timeout_ms),
     "how long a request may wait for Kafka's acknowledgement before 503"},
    {"shutdown_timeout_ms", "SB_SHUTDOWN_TIMEOUT_MS", "--shutdown-timeout-ms", CFG_INT, "10000",
     0, 600000, D | W, S(shutdown_timeout_ms),
     "on SIGTERM, how long to drain in-flight work before exiting"},
    {"readiness_interval_ms", "SB_READINESS_INTERVAL_MS", "--readiness-interval-ms", CFG_INT,
     "1000", 100, 60000, D, S(readiness_interval_ms), "how often dependencies are probed"},
    {"number_block", "SB_NUMBER_BLOCK", "--number-block", CFG_INT, "100", 1, 1000000, D,
     S(number_block),
     "numbers reserved in MySQL per refill of a Redis counter (lost on a Redis data loss)"},
    {"api_key_hashes", "SB_API_KEY_HASHES", "--api-key-hashes", CFG_STR, "", 0, 0, D,
     S(api_key_hashes),
     "admin API keys as SHA-256 hex digests, comma-separated (printf %s KEY | sha256sum)"},
    {"ops_read_key_hashes", "SB_OPS_READ_KEY_HASHES", "--ops-read-key-hashes", CFG_STR, "", 0, 0, D,
     S(ops_read_key_hashes),
     "read-only operator keys as SHA-256 hex digests, comma-separated: they may read the ops API "
     "(overview, dead letters) and look notifications and SMS requests up, nothing else"},
    {"ops_sample_interval_ms", "SB_OPS_SAMPLE_INTERVAL_MS", "--ops-sample-interval-ms", CFG_INT, "10000", 200,
     600000, D, S(ops_sample_interval_ms),
     "how often the overview (end offsets, group lag) is sampled for its history of the last minutes (60 intervals kept)"},
    {"trace_otlp_url", "SB_TRACE_OTLP_URL", "--trace-otlp-url", CFG_STR, "", 0, 0, D | W, S(trace_otlp_url),
     "OTLP/HTTP traces endpoint spans are sent to (e.g. http://127.0.0.1:4318/v1/traces); empty = tracing off"},
    {"trace_sample_ratio", "SB_TRACE_SAMPLE_RATIO", "--trace-sample-ratio", CFG_STR, "0.1", 0, 0, D | W,
     S(trace_sample_ratio),
     "share of new traces recorded, 0 to 1; a traceparent's sampled flag decides for the traces it continues"},
    {"trace_otlp_protocol", "SB_TRACE_OTLP_PROTOCOL", "--trace-otlp-protocol", CFG_STR, "http/protobuf", 0, 0,
     D | W, S(trace_otlp_protocol),
     "http/protobuf | http/json: how spans are encoded for the collector (protobuf costs it least)"},
    {"trace_queue_max", "SB_TRACE_QUEUE_MAX", "--trace-queue-max", CFG_INT, "4096", 16, 1000000, D | W,
     S(trace_queue_max), "spans waiting to be sent; beyond it spans are dropped and counted"},
    {"trace_flush_ms", "SB_TRACE_FLUSH_MS", "--trace-flush-ms", CFG_INT, "1000", 10, 60000, D | W,
     S(trace_flush_ms), "how often queued spans are sent (sooner when 512 are waiting)"},
    {"jwt_issuer", "SB_JWT_ISSUER", "--jwt-issuer", CFG_STR, "", 0, 0, D, S(jwt_issuer),
     "OpenID provider whose JWT access tokens are taken beside the API keys (the iss they must carry); "
     "empty = API keys only"},
    {"jwt_jwks_url", "SB_JWT_JWKS_URL", "--jwt-jwks-url", CFG_STR, "", 0, 0, D, S(jwt_jwks_url),
     "the provider's JWKS; empty = the jwks_uri of <jwt_issuer>/.well-known/openid-configuration"},
    {"jwt_audience", "SB_JWT_AUDIENCE", "--jwt-audience", CFG_STR, "", 0, 0, D, S(jwt_audience),
     "what a token's aud must hold (required with jwt_issuer)"},
    {"jwt_scope_claim", "SB_JWT_SCOPE_CLAIM", "--jwt-scope-claim", CFG_STR, "scope", 0, 0, D, S(jwt_scope_claim),
     "the claim listing what a token may do: a space-separated string or an array (e.g. scope, scp, roles)"},
    {"jwt_admin_scope", "SB_JWT_ADMIN_SCOPE", "--jwt-admin-scope", CFG_STR, "switchboard:admin", 0, 0, D,
     S(jwt_admin_scope), "a token holding it in jwt_scope_claim may do what an admin API key may"},
    {"jwt_read_scope", "SB_JWT_READ_SCOPE", "--jwt-read-scope", CFG_STR, "switchboard:read", 0, 0, D,
     S(jwt_read_scope), "a token holding it may do what a read-only key (ops_read_key_hashes) may"},
    {"jwt_leeway_s", "SB_JWT_LEEWAY_S", "--jwt-leeway-s", CFG_INT, "30", 0, 300, D, S(jwt_leeway_s),
     "clock skew allowed when checking a token's exp and nbf"},
    {"jwt_refresh_min_s", "SB_JWT_REFRESH_MIN_S", "--jwt-refresh-min-s", CFG_INT, "5", 1, 3600, D,
     S(jwt_refresh_min_s),
     "least time between two fetches of the provider's keys (a token with an unknown kid asks for one)"},
    {"jwt_allow_http", "SB_JWT_ALLOW_HTTP", "--jwt-allow-http", CFG_INT, "0", 0, 1, D, S(jwt_allow_http),
     "1: fetch the provider's keys over plain http from any host (a trusted network); else https, or http on "
     "loopback only"},
    {"rate_limit_rps", "SB_RATE_LIMIT_RPS", "--rate-limit-rps", CFG_INT, "2000", 0, 10000000, D,
     S(rate_limit_rps), "requests per second per API key and per application token; 0 = no limit"},
    {"rate_limit_burst", "SB_RATE_LIMIT_BURST", "--rate-limit-burst", CFG_INT, "0", 0, 100000000, D,
     S(rate_limit_burst), "requests a key or token may send at once; 0 = twice rate_limit_rps"},
    {"es_url", "ES_URL", "--es-url", CFG_STR, "", 0, 0, D | W, S(es_url),
     "Elasticsearch base URL for message search; empty = search MySQL"},
    {"es_index", "SB_ES_INDEX", "--es-index", CFG_STR, "messages", 0, 0, D | W, S(es_index),
     "Elasticsearch index of messages"},
    {"role", "SB_ROLE", "--role", CFG_STR, "", 0, 0, W, S(role),
     "worker role: persister | indexer | notifier | phonebook"},
    {"batch_size", "SB_BATCH_SIZE", "--batch-size", CFG_INT, "2000", 1, 100000, W, S(batch_size),
     "most jobs handled in one batch"},
    {"batch_max_bytes", "SB_BATCH_MAX_BYTES", "--batch-max-bytes", CFG_INT, "4194304", 65536,
     1073741824, W, S(batch_max_bytes),
     "a batch stops growing past this many bytes of jobs (keeps SQL under max_allowed_packet)"},
    {"batch_wait_ms", "SB_BATCH_WAIT_MS", "--batch-wait-ms", CFG_INT, "100", 1, 60000, W,
     S(batch_wait_ms), "longest wait for the first job of a batch"},
    {"retry_base_ms", "SB_RETRY_BASE_MS", "--retry-base-ms", CFG_INT, "200", 1, 600000, W,
     S(retry_base_ms), "first backoff when a dependency is away"},
    {"retry_cap_ms", "SB_RETRY_CAP_MS", "--retry-cap-ms", CFG_INT, "10000", 1, 600000, W,
     S(retry_cap_ms), "longest backoff when a dependency is away"},
    {"status_listen", "SB_STATUS_LISTEN", "--status-listen", CFG_STR, "", 0, 0, W | C, S(status_listen),
     "host:port of this process's /healthz and /metrics (port 0 = any free port; counts: with --every); "
     "empty = none"},
    {"reservation_ttl_s", "SB_RESERVATION_TTL_S", "--reservation-ttl-s", CFG_INT, "600", 1, 86400,
     D | W, S(reservation_ttl_s), "how long a phone number reservation holds before it expires"},
    {"find_cache_size", "SB_FIND_CACHE_SIZE", "--find-cache-size", CFG_INT, "100000", 16,
     10000000, D, S(find_cache_size), "assigned phone numbers remembered per event loop by /phonebook/find (LRU; never a 'no')"},
    {"ws_echo_max_message_bytes", "SB_WS_ECHO_MAX_MESSAGE_BYTES", "--ws-echo-max-message-bytes", CFG_INT, "0", 0,
     64 << 20, D, S(ws_echo_max_message_bytes),
     "above 0: GET /ws/echo is a WebSocket that echoes each message (up to this many bytes), for "
     "protocol conformance tests; 0: no such route"},
    {"ws_max_message_bytes", "SB_WS_MAX_MESSAGE_BYTES", "--ws-max-message-bytes", CFG_INT, "1048576", 1024,
     64 << 20, D, S(ws_max_message_bytes),
     "GET /ws: the largest message a client may send (a larger one is closed with 1009)"},
    {"ws_max_inflight", "SB_WS_MAX_INFLIGHT", "--ws-max-inflight", CFG_INT, "256", 1, 65536, D,
     S(ws_max_inflight),
     "GET /ws: commands without a reply per connection; at it the connection's socket is not read "
     "until replies go out (TCP pushes back)"},
    {"ws_max_reply_bytes", "SB_WS_MAX_REPLY_BYTES", "--ws-max-reply-bytes", CFG_INT, "1048576", 65536,
     1 << 30, D, S(ws_max_reply_bytes),
     "GET /ws: replies a client has not read yet, per connection; at it no more commands are read, "
     "and a client that takes none of them for 2 s is closed (1008)"},
    {"ws_ping_interval_ms", "SB_WS_PING_INTERVAL_MS", "--ws-ping-interval-ms", CFG_INT, "20000", 100,
     3600000, D, S(ws_ping_interval_ms), "WebSockets: a ping goes out after this long without a frame from the client"},
    {"ws_idle_timeout_ms", "SB_WS_IDLE_TIMEOUT_MS", "--ws-idle-timeout-ms", CFG_INT, "60000", 200,
     86400000, D, S(ws_idle_timeout_ms),
     "WebSockets: closed (1001) after this long without a frame (a pong counts) from the client"},
    {"find_negative_ttl_ms", "SB_FIND_NEGATIVE_TTL_MS", "--find-negative-ttl-ms", CFG_INT, "2000", 0,
     600000, D, S(find_negative_ttl_ms),
     "how long Redis remembers, for every dispatcher, that a number is not assigned (an assign overrides it at once; 0: never)"},
    {"seed_users", "SB_SEED_USERS", "--users", CFG_INT, "1000000", 0, 100000000, M, S(seed_users),
     "seed: users 1..N to create"},
    {"seed_numbers", "SB_SEED_NUMBERS", "--numbers", CFG_INT, "10000", 0, 100000000, M,
     S(seed_numbers), "seed: free phone numbers to create, spread over the area codes"},
    {"seed_area_codes", "SB_SEED_AREA_CODES", "--area-codes", CFG_STR, "212,415,613", 0, 0, M,
     S(seed_area_codes), "seed: comma-separated 3-digit area codes"},
    {"mongo_uri", "MONGO_URI", "--mongo-uri", CFG_STR, "", 0, 0, D | W, S(mongo_uri),
     "MongoDB for SMS/notification records, mongodb://host:port/db; empty = MySQL tables"},
    {"store_pool_size", "SB_STORE_POOL_SIZE", "--store-pool-size", CFG_INT, "2", 1, 64, D,
     S(store_pool_size), "threads (one store connection each) reading notification records"},
    {"idempotency_ttl_s", "SB_IDEMPOTENCY_TTL_S", "--idempotency-ttl-s", CFG_INT, "86400", 60,
     31536000, D, S(idempotency_ttl_s),
     "how long Redis answers repeated idempotency keys (the store's unique index is for ever)"},
    {"sms_many_max", "SB_SMS_MANY_MAX", "--sms-many-max", CFG_INT, "1000", 1, 100000, D,
     S(sms_many_max), "most SMS in one /sms/send/many request"},
    {"notify_topics", "SB_NOTIFY_TOPICS", "--notify-topics", CFG_STR, "", 0, 0, D | W | M,
     S(notify_topics), "Kafka topics the kafka channel may produce to, comma-separated"},
    {"smtp_url", "SB_SMTP_URL", "--smtp-url", CFG_STR, "", 0, 0, W, S(smtp_url),
     "email channel: smtp[s]://[user:pass@]host:port; empty = email not configured"},
    {"sms_url", "SB_SMS_URL", "--sms-url", CFG_STR, "", 0, 0, D | W, S(sms_url),
     "sms channel: provider endpoint for a Twilio-style form POST (user:pass@ = basic auth; the password "
     "is the token the provider signs its callbacks with)"},
    {"sms_auth_token", "SB_SMS_AUTH_TOKEN", "--sms-auth-token", CFG_STR, "", 0, 0, D, S(sms_auth_token),
     "the token the SMS provider signs its callbacks with (Twilio's account auth token; masked); empty = the "
     "password in sms_url (needed when sms_url holds an API key's secret)"},
    {"sms_callback_url", "SB_SMS_CALLBACK_URL", "--sms-callback-url", CFG_STR, "", 0, 0, D | W,
     S(sms_callback_url),
     "this service's base URL as the SMS provider reaches it (https://api.example.com): each SMS asks for "
     "status callbacks at <it>/v1/callbacks/sms/<id>, whose signature is checked against it; empty = none"},
    {"email_feedback_secret", "SB_EMAIL_FEEDBACK_SECRET", "--email-feedback-secret", CFG_STR, "", 0, 0, D,
     S(email_feedback_secret),
     "shared secret of the email feedback feed (POST /v1/callbacks/email signs with it); empty = no feed"},
    {"webhook_signing_secret", "SB_WEBHOOK_SIGNING_SECRET", "--webhook-signing-secret", CFG_STR, "", 0, 0, D | W,
     S(webhook_signing_secret),
     "derives each API key's webhook secret (GET /v1/webhooks/secret), which signs a message's statusCallback "
     "POSTs; empty = statusCallback refused (masked)"},
    {"webhook_backoff_cap_ms", "SB_WEBHOOK_BACKOFF_CAP_MS", "--webhook-backoff-cap-ms", CFG_INT, "300000", 100,
     86400000, W, S(webhook_backoff_cap_ms),
     "longest wait before a failed statusCallback POST is tried again (from notify_backoff_ms, doubling)"},
    {"sms_help_text", "SB_SMS_HELP_TEXT", "--sms-help-text", CFG_STR,
     "Reply STOP to unsubscribe, START to subscribe again.", 0, 0, D, S(sms_help_text),
     "the answer to an inbound HELP (POST /v1/inbound/sms)"},
    {"push_url", "SB_PUSH_URL", "--push-url", CFG_STR, "", 0, 0, W, S(push_url),
     "push channel: webhook receiving a JSON POST"},
    {"notify_schedule_max_s", "SB_NOTIFY_SCHEDULE_MAX_S", "--notify-schedule-max-s", CFG_INT, "604800", 60,
     31622400, D, S(notify_schedule_max_s), "how far ahead a notification's sendAt may be (7 days)"},
    {"notify_timeout_ms", "SB_NOTIFY_TIMEOUT_MS", "--notify-timeout-ms", CFG_INT, "10000", 100,
     600000, W, S(notify_timeout_ms), "longest a provider may take to accept one notification"},
    {"notify_concurrency", "SB_NOTIFY_CONCURRENCY", "--notify-concurrency", CFG_INT, "8", 1, 256,
     W, S(notify_concurrency),
     "notifications a notifier process delivers at once (a store connection each)"},
    {"notify_straggler_ms", "SB_NOTIFY_STRAGGLER_MS", "--notify-straggler-ms", CFG_INT, "100", 1,
     600000, W, S(notify_straggler_ms),
     "a delivery still running this long when its batch is otherwise done goes on beside the next "
     "batch"},
    {"notify_max_attempts", "SB_NOTIFY_MAX_ATTEMPTS", "--notify-max-attempts", CFG_INT, "5", 1,
     100, W, S(notify_max_attempts), "delivery attempts before a notification is dead"},
    {"notify_backoff_ms", "SB_NOTIFY_BACKOFF_MS", "--notify-backoff-ms", CFG_INT, "1000", 1,
     3600000, W, S(notify_backoff_ms), "delay before the first retry; doubles per attempt, with jitter"},
    {"notify_backoff_cap_ms", "SB_NOTIFY_BACKOFF_CAP_MS", "--notify-backoff-cap-ms", CFG_INT,
     "300000", 1, 86400000, W, S(notify_backoff_cap_ms), "longest delay between attempts"},
    {"rate_email", "SB_RATE_EMAIL", "--rate-email", CFG_INT, "0", 0, 1000000, W, S(rate_email),
     "emails per second per notifier process; 0 = no limit"},
    {"rate_sms", "SB_RATE_SMS", "--rate-sms", CFG_INT, "0", 0, 1000000, W, S(rate_sms),
     "SMS per second per notifier process; 0 = no limit"},
    {"rate_push", "SB_RATE_PUSH", "--rate-push", CFG_INT, "0", 0, 1000000, W, S(rate_push),
     "push posts per second per notifier process; 0 = no limit"},
    {"rate_kafka", "SB_RATE_KAFKA", "--rate-kafka", CFG_INT, "0", 0, 1000000, W, S(rate_kafka),
     "kafka-channel messages per second per notifier process; 0 = no limit"},
    {"every", "SB_COUNTS_EVERY", "--every", CFG_INT, "0", 0, 86400, C, S(every_s),
     "run the roll-up every N seconds until SIGTERM; 0 = once, then exit"},
    {"rollup_chunk", "SB_ROLLUP_CHUNK", "--rollup-chunk", CFG_INT, "1000", 1, 100000, C,
     S(rollup_chunk), "count changes folded per transaction"},
};

static char **str_field(struct sb_config *cfg, const struct config_def *d)
{
    return (char **)((char *)cfg + d->offset);
}

static int64_t *int_field(struct sb_config *cfg, const struct config_def *d)
{
    return (int64_t *)((char *)cfg + d->offset);
}

static const struct config_def *find_by(const char *key, bool by_flag, unsigned scope)
{
    for (size_t i = 0; i < SB_ARRAY_LEN(defs); i++) {
        const char *k = by_flag ? defs[i].flag : defs[i].name;
        if ((defs[i].scope & scope) && strcmp(k, key) == 0)
            return &defs[i];
    }
    return NULL;
}

static bool set_value(struct sb_config *cfg, const struct config_def *d, const char *value,
                      const char *source, char *errbuf, size_t errlen)
{
    if (d->type != CFG_INT) {
        char *copy = strdup(value);
        if (copy == NULL) {
            sb_errf(errbuf, errlen, "out of memory");
            return false;
        }
        free(*str_field(cfg, d));
        *str_field(cfg, d) = copy;
        return true;
    }
    int64_t v;
    if (!sb_parse_i64(value, d->min, d->max, &v)) {
        sb_errf(errbuf, errlen, "%s: %s=\"%s\" must be an integer in [%lld, %lld]", source,
                d->name, value, (long long)d->min, (long long)d->max);
        return false;
    }
    *int_field(cfg, d) = v;
    return true;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static bool load_file(struct sb_config *cfg, unsigned scope, const char *path, char *errbuf,
                      size_t errlen)
{
    bool ok = false;
    char *text = sb_read_file(path, NULL, errbuf, errlen);
    if (text == NULL)
        return false;
    int lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *l = trim(line);
        if (*l == '\0' || *l == '#')
            continue;
        char *eq = strchr(l, '=');
        if (eq == NULL) {
            sb_errf(errbuf, errlen, "%s:%d: expected 'name = value'", path, lineno);
            goto done;
        }
        *eq = '\0';
        char *key = trim(l), *val = trim(eq + 1);
        const struct config_def *d = find_by(key, false, scope);
        if (d == NULL || d->offset == S(config_file)) {
            sb_errf(errbuf, errlen, "%s:%d: unknown setting '%s'", path, lineno, key);
            goto done;
        }
        char where[300];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if (!set_value(cfg, d, val, where, errbuf, errlen))
            goto done;
    }
    ok = true;
done:
    free(text);
    return ok;
}

static void print_help(const char *program, const char *usage, unsigned scope, FILE *out)
{
    fprintf(out, "usage: %s %s\n\n", program, usage);
    fprintf(out, "settings (default < --config file < environment < flag):\n");
    for (size_t i = 0; i < SB_ARRAY_LEN(defs); i++) {
        const struct config_def *d = &defs[i];
        if (!(d->scope & scope))
            continue;
        fprintf(out, "  %-28s %-30s %s\n", d->flag, d->env, d->help);
        if (d->type == CFG_INT)
            fprintf(out, "  %-28s %-30s default %s, range [%lld, %lld]\n", "", "", d->def,
                    (long long)d->min, (long long)d->max);
        else if (*d->def)
            fprintf(out, "  %-28s %-30s default %s\n", "", "", d->def);
    }
    fprintf(out, "  %-28s %-30s %s\n", "--print-config", "", "print the effective settings and exit");
    fprintf(out, "  %-28s %-30s %s\n", "--version", "", "print the version and exit");
    fprintf(out, "  %-28s %-30s %s\n", "--help", "", "this text");
}

/* Masks the password of scheme://user:password@host URLs. */
static void mask_secret(const char *v, char *out, size_t cap)
{
    const char *scheme = strstr(v, "://");
    const char *at = strrchr(v, '@');
    const char *colon = scheme ? strchr(scheme + 3, ':') : NULL;
    if (scheme && at && colon && colon < at)
        snprintf(out, cap, "%.*s:***%s", (int)(colon - v), v, at);
    else
        snprintf(out, cap, "%s", v);
}

void config_print(const struct sb_config *cfg, unsigned scope, FILE *out)
{
    for (size_t i = 0; i < SB_ARRAY_LEN(defs); i++) {
        const struct config_def *d = &defs[i];
        if (!(d->scope & scope))
            continue;
        if (d->type == CFG_INT) {
            fprintf(out, "%s = %lld\n", d->name,
                    (long long)*int_field((struct sb_config *)cfg, d));
        } else {
            char masked[4096];
            size_t nl = strlen(d->name);
            const char *v = *str_field((struct sb_config *)cfg, d);
            if (d->type == CFG_KV)
                sb_mask_kv_list(v, masked, sizeof masked);
            else if ((nl > 7 && strcmp(d->name + nl - 7, "_secret") == 0) ||
                     (nl > 6 && strcmp(d->name + nl - 6, "_token") == 0)) /* a secret whole */
                snprintf(masked, sizeof masked, "%s", v && *v ? "***" : "");
            else
                mask_secret(*str_field((struct sb_config *)cfg, d), masked, sizeof masked);
            fprintf(out, "%s = %s\n", d->name, masked);
        }
    }
}

void config_free(struct sb_config *cfg)
{
    for (size_t i = 0; i < SB_ARRAY_LEN(defs); i++)
        if (defs[i].type != CFG_INT) {
            free(*str_field(cfg, &defs[i]));
            *str_field(cfg, &defs[i]) = NULL;
        }
    free(cfg->args);
    cfg->args = NULL;
    cfg->nargs = 0;
}

/* Finds the value of a flag given as "--flag value" or "--flag=value". */
static const char *flag_value(int argc, char **argv, int *i, const char *flag)
{
    size_t fl = strlen(flag);
    if (strncmp(argv[*i], flag, fl) != 0)
        return NULL;
    if (argv[*i][fl] == '=')
        return argv[*i] + fl + 1;
    if (argv[*i][fl] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

enum config_result config_load(struct sb_config *cfg, unsigned scope, const char *program,
                               const char *usage, int argc, char **argv, FILE *out,
                               char *errbuf, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    bool print = false;
    for (size_t i = 0; i < SB_ARRAY_LEN(defs); i++)
        if (!set_value(cfg, &defs[i], defs[i].def, "default", errbuf, errlen))
            goto fail;

    /* The file is named by flag or env, but read before both so they win. */
    const char *file = getenv("SB_CONFIG");
    for (int i = 1; i < argc; i++) {
        const char *v = flag_value(argc, argv, &i, "--config");
        if (v)
            file = v;
    }
    if (file && *file) {
        if (!set_value(cfg, &defs[0], file, "--config", errbuf, errlen) ||
            !load_file(cfg, scope, file, errbuf, errlen))
            goto fail;
    }
    for (size_t i = 0; i < SB_ARRAY_LEN(defs); i++) {
        const char *v = (defs[i].scope & scope) ? getenv(defs[i].env) : NULL;
        if (v && !set_value(cfg, &defs[i], v, defs[i].env, errbuf, errlen))
            goto fail;
    }
    cfg->args = calloc((size_t)argc + 1, sizeof *cfg->args);
    if (cfg->args == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        goto fail;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(program, usage, scope, out);
            return CONFIG_EXIT;
        }
        if (strcmp(a, "--version") == 0) {
            fprintf(out, "%s %s\n", program, SB_VERSION);
            return CONFIG_EXIT;
        }
        if (strcmp(a, "--print-config") == 0) {
            print = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            cfg->args[cfg->nargs++] = argv[i];
            continue;
        }
        char flag[128];
        snprintf(flag, sizeof flag, "%.*s", (int)strcspn(a, "="), a);
        const struct config_def *d = find_by(flag, true, scope);
        if (d == NULL) {
            sb_errf(errbuf, errlen, "unknown option %s (see --help)", flag);
            goto fail;
        }
        const char *v = flag_value(argc, argv, &i, d->flag);
        if (v == NULL) {
            sb_errf(errbuf, errlen, "option %s needs a value", d->flag);
            goto fail;
        }
        if (!set_value(cfg, d, v, d->flag, errbuf, errlen))
            goto fail;
    }
    if (print) {
        config_print(cfg, scope, out);
        return CONFIG_EXIT;
    }
    return CONFIG_OK;
fail:
    config_free(cfg);
    return CONFIG_ERROR;
}
