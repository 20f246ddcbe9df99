/* config.h - one table of settings for every switchboard program.
 *
 * Each row names a setting, its environment variable, its flag, default,
 * bounds and the programs it applies to. The same table drives parsing,
 * --help and --print-config. Precedence: built-in default < config file
 * (--config / SB_CONFIG, "name = value" lines) < environment < flags. */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "util.h"

/* Which programs a setting applies to. */
enum config_scope {
    SCOPE_DISPATCHER = 1u << 0,
    SCOPE_WORKER = 1u << 1,
    SCOPE_MIGRATE = 1u << 2,
    SCOPE_COUNTS = 1u << 4,
    SCOPE_ALL = 0xffu,
};

struct sb_config {
    char *config_file;
    char *log_level;
    char *log_format;
    char *redis_url;
    char *kafka_brokers;
    char *kafka_conf;
    int64_t kafka_session_timeout_ms;
    int64_t kafka_partitions;
    int64_t kafka_replication_factor;
    char *mysql_url;
    int64_t mysql_pool_size;
    char *schema_dir;
    /* dispatcher */
    char *listen;
    int64_t threads;
    int64_t max_body_bytes;
    int64_t max_connections;
    int64_t request_timeout_ms;
    int64_t pool_queue_max;
    int64_t max_output_bytes;
    int64_t pool_wait_ms;
    int64_t shutdown_timeout_ms;
    int64_t readiness_interval_ms;
    int64_t number_block;
    char *api_key_hashes;
    char *ops_read_key_hashes;
    int64_t ops_sample_interval_ms;
    char *jwt_issuer;
    char *jwt_jwks_url;
    char *jwt_audience;
    char *jwt_scope_claim;
    char *jwt_admin_scope;
    char *jwt_read_scope;
    int64_t jwt_leeway_s;
    int64_t jwt_refresh_min_s;
    int64_t jwt_allow_http;
    int64_t rate_limit_rps;
    int64_t rate_limit_burst;
    char *es_url;
    char *es_index;
    /* worker */
    char *role;
    int64_t batch_size;
    int64_t batch_wait_ms;
    int64_t batch_max_bytes;
    int64_t retry_base_ms;
    int64_t retry_cap_ms;
    char *status_listen;
    /* phonebook */
    int64_t reservation_ttl_s;
    int64_t find_cache_size;
    int64_t find_negative_ttl_ms;
    int64_t ws_echo_max_message_bytes; /* 0: no GET /ws/echo */
    int64_t ws_max_message_bytes;
    int64_t ws_max_inflight;
    int64_t ws_max_reply_bytes;
    int64_t ws_ping_interval_ms;
    int64_t ws_idle_timeout_ms;
    int64_t seed_users;
    int64_t seed_numbers;
    char *seed_area_codes;
    /* notifications and SMS */
    char *mongo_uri;
    int64_t store_pool_size;
    int64_t idempotency_ttl_s;
    int64_t sms_many_max;
    char *notify_topics;
    char *smtp_url;
    char *sms_url;
    char *sms_callback_url;
    char *sms_auth_token;
    char *sms_help_text;
    char *email_feedback_secret;
    char *webhook_signing_secret;
    int64_t webhook_backoff_cap_ms;
    int64_t notify_schedule_max_s;
    char *push_url;
    int64_t notify_timeout_ms;
    int64_t notify_concurrency;
    int64_t notify_straggler_ms;
    int64_t notify_max_attempts;
    int64_t notify_backoff_ms;
    int64_t notify_backoff_cap_ms;
    int64_t rate_email;
    int64_t rate_sms;
    int64_t rate_push;
    int64_t rate_kafka;
    /* tracing */
    char *trace_otlp_url;
    char *trace_sample_ratio;
    char *trace_otlp_protocol;
    int64_t trace_queue_max;
    int64_t trace_flush_ms;
    /* counts */
    int64_t every_s;
    int64_t rollup_chunk;
    /* positional arguments left after the flags (borrowed from argv) */
    int nargs;
    char **args;
};

enum config_result { CONFIG_OK, CONFIG_EXIT, CONFIG_ERROR };

/* Fills cfg for a program of the given scope. CONFIG_EXIT means --help,
 * --version or --print-config was answered on out; the caller exits 0. */
enum config_result config_load(struct sb_config *cfg, unsigned scope, const char *program,
                               const char *usage, int argc, char **argv, FILE *out,
                               char *errbuf, size_t errlen) SB_NODISCARD;
void config_free(struct sb_config *cfg);
/* Writes "name = value" for every setting of the scope; secrets masked. */
void config_print(const struct sb_config *cfg, unsigned scope, FILE *out);

#endif
