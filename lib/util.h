/* util.h - small helpers every subsystem uses: error buffers, clocks, ids. */
#ifndef SB_UTIL_H
#define SB_UTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#define SB_NODISCARD __attribute__((warn_unused_result))
#define SB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define SB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Every fallible function takes (char *errbuf, size_t errlen) and writes a
 * one-line reason there. ERRBUF_LEN is big enough for any of them. */
#define ERRBUF_LEN 256

/* Returns false, so that a failing function can end with
 * `return sb_errf(err, errlen, ...)`. */
bool sb_errf(char *errbuf, size_t errlen, const char *fmt, ...) SB_PRINTF(3, 4);

/* Wall clock in milliseconds since the epoch (job timestamps). */
int64_t sb_now_ms(void);
/* Monotonic clock in milliseconds (timeouts, latencies). */
int64_t sb_mono_ms(void);
/* Monotonic clock in microseconds (latency histograms). */
int64_t sb_mono_us(void);
/* A condition variable whose timed waits count on the monotonic clock (a
 * wall clock set back must not stretch a wait), and the deadline such a
 * wait takes for a time on sb_mono_ms's clock. */
bool sb_cond_init_mono(pthread_cond_t *cv) SB_NODISCARD;
struct timespec sb_mono_deadline(int64_t mono_ms);

/* Fills buf with len random bytes from getrandom(2) (small requests from a
 * per-thread pool of its output). */
bool sb_random_bytes(void *buf, size_t len) SB_NODISCARD;
/* Writes len bytes as 2 * len lowercase hex chars + NUL. */
void sb_hex(const void *bytes, size_t len, char *out);
/* Writes a 128-bit random id as 32 lowercase hex chars + NUL (out >= 33). */
bool sb_random_id(char out[33]) SB_NODISCARD;

/* Sleeps up to ms milliseconds, waking early once *stop becomes true. */
void sb_sleep_ms_unless(int64_t ms, const atomic_int *stop);

/* Reads a whole file into a NUL-terminated heap buffer. */
char *sb_read_file(const char *path, size_t *len_out, char *errbuf, size_t errlen);

/* Parses a base-10 integer that must span the whole string and lie in
 * [min, max]. */
bool sb_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) SB_NODISCARD;
/* ms milliseconds as a struct timeval (event_add's timeouts). */
static inline struct timeval sb_timeval_ms(int64_t ms)
{
    return (struct timeval){.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

/* v in decimal into out (NUL-terminated), without printf; returns its length. */
#define SB_I64_STR 21
size_t sb_i64_to_str(int64_t v, char out[SB_I64_STR]);

/* The strings after cap, up to a NULL, joined into dst (NUL-terminated;
 * cut if dst is too small). Returns the joined length, which is >= cap
 * when it was cut. For keys built on every request: no format parsed. */
size_t sb_join(char *dst, size_t cap, ...) __attribute__((sentinel));

/* Parses the "host[:port]" of a URL at *p, which ends at the first '/' or
 * at the end of the string, and moves *p there. host must be 1..hostlen-1
 * characters; a port, if given, 1..65535 (else *port is left as it is). */
bool sb_parse_host_port(const char **p, char *host, size_t hostlen, int *port) SB_NODISCARD;

/* True if s is min..max characters of base64url ([A-Za-z0-9_-]): tokens,
 * ids and request ids that may go into keys, SQL and headers as they are. */
bool sb_token_valid(const char *s, size_t min, size_t max);

/* True if a "key=value" setting's value is a secret by its key's name
 * (sasl.password, ssl.key.password, ...): such values are masked wherever
 * settings are printed or logged. */
bool sb_secret_key(const char *key);

/* The end of the item of a "key=value,key=value" list that starts at p:
 * the first comma that is not escaped ("\," is a comma in a value, "\\"
 * a backslash), or the end of the string. */
const char *sb_kv_item_end(const char *p);

/* Copies a "key=value,key=value" list into out with the values of secret
 * keys replaced by ***; cut (on an item boundary) if out is too small. */
void sb_mask_kv_list(const char *list, char *out, size_t cap);

#endif
