/* otlp.h - the body of an OTLP/HTTP trace export (opentelemetry-proto's
 * ExportTraceServiceRequest): one resource (the process), one scope,
 * the spans given.
 *
 * Two encodings, as OTLP/HTTP defines them: binary protobuf
 * ("application/x-protobuf", the default OTLP exporters use) and JSON
 * ("application/json": ids in hex, 64-bit times as decimal strings).
 * Protobuf is smaller and what collectors decode fastest (Jaeger took a
 * fifth to a quarter more CPU for the same spans in JSON: scripts/bench,
 * row tr), and the collector often shares the machine with the stack it
 * traces. */
#ifndef SB_OTLP_H
#define SB_OTLP_H

#include <stddef.h>

#include "strbuf.h"
#include "trace.h"

enum otlp_format { OTLP_PROTOBUF, OTLP_JSON };

/* The process the spans come from (the resource's attributes). */
struct otlp_resource {
    const char *service; /* service.name */
    const char *host;    /* host.name */
    const char *pid;     /* process.pid, as text */
};

/* Appends the request for spans[0..n) to b (strbuf_failed on no memory). */
void otlp_encode(struct strbuf *b, enum otlp_format f, const struct otlp_resource *r,
                 const struct trace_span *spans, size_t n);
/* The Content-Type of f's bodies. */
const char *otlp_content_type(enum otlp_format f);
/* "http/protobuf" or "http/json" (OTEL_EXPORTER_OTLP_PROTOCOL's names;
 * NULL or "" is protobuf); false for anything else. */
bool otlp_format_parse(const char *s, enum otlp_format *out);

#endif
