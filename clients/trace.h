/* trace.h - distributed tracing: W3C Trace Context in, spans out over
 * OTLP/HTTP.
 *
 * A request or job carries a trace context (W3C traceparent: trace id,
 * parent span id, sampled flag). The dispatcher takes a client's
 * traceparent or starts a trace, and passes it on in every Kafka job it
 * produces (header "traceparent"); a worker continues the job's trace
 * (or starts one for a job without), and passes it to the provider it
 * calls. Whether a trace is recorded is decided once, where it starts
 * (trace_sample_ratio), and followed downstream through the flag.
 *
 * A finished span is copied into a bounded in-memory queue (a mutex held
 * for the copy only, so a loop never waits on the network); a thread of
 * its own sends the queue in batches to trace_otlp_url over OTLP/HTTP
 * (protobuf, or JSON: trace_otlp_protocol; the bodies are otlp.c's).
 * When the queue is full a span is dropped and counted
 * (switchboard_trace_spans_dropped_total{reason="queue_full"}), as is a
 * batch the collector refused (reason="export"). With trace_otlp_url
 * empty, tracing is off: every call here returns at its first branch. */
#ifndef SB_TRACE_H
#define SB_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#define TRACEPARENT_LEN 55 /* "00-" 32 hex "-" 16 hex "-" 2 hex */

struct trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8]; /* the span a child names as its parent */
    uint8_t flags;      /* bit 0: sampled */
    bool valid;
};

enum trace_kind { TRACE_INTERNAL = 1, TRACE_SERVER, TRACE_CLIENT, TRACE_PRODUCER, TRACE_CONSUMER };

#define TRACE_ATTRS 6
struct trace_span {
    struct trace_ctx ctx;  /* its own trace and span id */
    uint8_t parent[8];     /* all zero: a root span */
    const char *name;      /* a literal or a route's name: lives forever */
    enum trace_kind kind;
    int64_t start_ns, end_ns; /* wall clock, since the epoch */
    bool error;
    int nattrs;
    const char *attr_key[TRACE_ATTRS]; /* literals */
    char attr_val[TRACE_ATTRS][64];
};

/* Starts the exporter for service (the OTLP service.name) if
 * cfg->trace_otlp_url is set; false and errbuf on a bad setting. */
bool trace_setup(const char *service, const struct sb_config *cfg, char *errbuf, size_t errlen) SB_NODISCARD;
/* Sends what is queued (bounded by the export timeout) and stops. */
void trace_shutdown(void);
/* Tracing is on (trace_otlp_url set). */
bool trace_on(void);

/* Parses a traceparent header (version 00, or a later one read as 00);
 * false for anything malformed or all-zero ids. */
bool trace_parse(const char *s, struct trace_ctx *out);
/* The traceparent of t. */
void trace_format(const struct trace_ctx *t, char out[TRACEPARENT_LEN + 1]);
/* t's trace id in hex ("" when t is not valid). */
void trace_id_hex(const struct trace_ctx *t, char out[33]);

/* Starts s now: a child of parent (sampled as it is), or with parent
 * NULL the root of a new trace, sampled at trace_sample_ratio. With
 * tracing off, or a parent that is not valid (an untraced request), s is
 * left not valid, and every call below does nothing with it. */
void trace_span_start(struct trace_span *s, const struct trace_ctx *parent, const char *name, enum trace_kind kind);
/* As trace_span_start, with the start given (trace_now_ns earlier). */
void trace_span_start_at(struct trace_span *s, const struct trace_ctx *parent, const char *name,
                         enum trace_kind kind, int64_t start_ns);
void trace_span_attr(struct trace_span *s, const char *key, const char *value);
void trace_span_attr_i64(struct trace_span *s, const char *key, int64_t value);
/* Ends s and queues it if sampled (s may not be ended twice: it is made
 * not valid here). */
void trace_span_end(struct trace_span *s, bool error);
int64_t trace_now_ns(void);
/* The span is recorded (valid and sampled). */
bool trace_sampled(const struct trace_ctx *t);

/* Spans queued, sent, dropped (tests and /metrics). */
struct trace_counts {
    int64_t queued, exported, dropped_full, dropped_export;
};
void trace_counts(struct trace_counts *out);

#endif
