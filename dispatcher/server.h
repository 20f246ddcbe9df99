/* server.h - the dispatcher's HTTP front: N event loops, one route table.
 *
 * Every loop thread has its own event_base, HTTP/1.1 connections, Redis
 * client and loopq, and accepts from one shared listening socket
 * (SO_REUSEPORT, so other processes may bind the same port too). A handler
 * runs on the loop that read the request and must answer there:
 * asynchronous handlers keep the request in a struct http_pending and
 * finish it from a loopq callback.
 *
 * The HTTP server is our own (httpconn.c runs connections, httpparse.h
 * parses): a connection keeps its read interest for its whole life and
 * writes a reply with one send(), so a keep-alive request costs a read
 * and a write and no epoll_ctl. evhttp switched read and write interest
 * around every request (about four epoll_ctl calls each, ~19 % of the
 * dispatcher's CPU on a cache hit; see bench/README.md). A connection
 * serves one request at a time, in order; pipelined requests wait in its
 * input. */
#ifndef SB_SERVER_H
#define SB_SERVER_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <event2/event.h>
#include <sys/queue.h>
#include <time.h>
#include <stdatomic.h>

#include "config.h"
#include "json.h"
#include "kafka.h"
#include "log.h"
#include "trace.h"
#include "loopq.h"
#include "metrics.h"
#include "db.h"
#include "redis.h"
#include "router.h"

struct readiness;
struct history;
struct http_conn;
struct ws_conn;
struct alloc_op;
struct http_req;
struct evconnlistener;
struct net_accept_guard;

/* Process-wide state shared by every loop (read-only after start-up, or
 * thread-safe by itself). */
struct dispatcher {
    const struct sb_config *cfg;
    struct kafka_producer *producer;
    struct threadpool *dbpool;
    struct threadpool *notepool; /* notification store reads and writes */
    struct redis_url redis_url;
    struct db_url db_url;
    struct readiness *readiness;
    struct history *history; /* the overview's last minutes (history.h) */
    atomic_int inflight;  /* requests waiting for an async completion */
    atomic_int connections; /* open client connections, every loop */
    atomic_llong out_bytes; /* answers written but not yet sent, every connection */
    atomic_llong out_reserved; /* large answers built, not yet written out (chat_req_hold) */
    atomic_llong trimmed_ms;   /* when the heap was last given back (httpconn.c) */
    int max_connections;    /* beyond it a connection is answered 503 (server_max_connections) */
    struct metric *m_refused; /* connections refused at max_connections */
    struct loop *loops;   /* all event loops, for /readyz; */
    pthread_t *threads;   /* one per loop */
    int listen_fd;
    uint64_t fd_limit;    /* RLIMIT_NOFILE at start */
    atomic_int nloops;    /* set once every loop is initialised */
    atomic_bool draining; /* SIGTERM received */
    atomic_int ws_open;      /* WebSocket connections (also in connections) */
};

struct loop {
    struct dispatcher *d;
    int index;
    struct event_base *base;
    struct evconnlistener *listener;
    LIST_HEAD(, http_conn) conns; /* open, or closed with a request in flight */
    LIST_HEAD(, ws_conn) ws;      /* WebSocket connections (wsconn.c) */
    struct ws_cmd *ws_spare;      /* freed WebSocket commands, for the next (wsconn.c) */
    int ws_nspare;                /* -1: the loop is being torn down, none kept */
    const struct timeval *io_timeout; /* a libevent common timeout */
    time_t date_at;                   /* the Date header, formatted once a second */
    char date[40];
    struct redis_client *redis;
    struct loopq *q;
    struct findcache *find; /* /phonebook/find answers of this loop */
    /* Number allocations waiting for a scope's refill, oldest first
     * (numbers.c: a scope's numbers follow the order of the requests). */
    TAILQ_HEAD(alloc_op_q, alloc_op) num_wait;
    uint64_t num_seq;
    struct net_accept_guard *accept_guard; /* rests the listener after an accept() error */
    struct log_every refused_log; /* connections refused at max_connections */
    /* Counted by this loop's thread alone with loop_count (no locked
     * instruction per command), summed at the scrape (ops_metrics). */
    atomic_llong ws_commands; /* WebSocket commands without a reply */
    atomic_llong ws_queued; /* WebSocket reply bytes not yet taken by their clients */
    /* Routes a whole request: server_dispatch (a test may put its own). */
    void (*dispatch)(struct loop *l, struct http_req *req);
};

/* Adds delta to a counter of the calling loop's own (struct loop): one
 * writer, so a plain load and store; readers on other threads see each
 * value whole. */
static inline void loop_count(atomic_llong *counter, long long delta)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

/* Everything a handler gets. */
struct http_ctx {
    struct loop *loop;
    struct http_req *req;
    const char *path;      /* decoded path, no query (valid until the reply) */
    const char *query;     /* raw query string or NULL */
    char request_id[65];
    int64_t start_us;
    const struct route *route;
    int nparams;              /* values of the route's {name} segments */
    char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX];
    /* Who asks (access.c): "k:<key digest>" for an admin key, "t:<token>"
     * for an application, "" for an open route. The tenant of the pools. */
    char principal[40];
};

typedef void (*route_fn)(struct http_ctx *ctx);

#define ROUTE_BODY_PER_SMS SIZE_MAX
/* Answers this small always go out, whatever max_output_bytes holds. */
#define HTTP_OUT_SMALL ((size_t)64 << 10)
/* The least any route takes (routes.c's SMALL). */
#define ROUTE_BODY_SMALL ((size_t)16 << 10)
struct loop;
/* The body limit of the route a request head names (method and raw
 * target), to refuse a body too large before it is read. */
size_t server_body_limit(struct loop *l, const char *method, const char *target);
/* The body one send-many item may take (routes.c). */
extern const size_t route_sms_item_body;

/* Who may call a route (access.h). */
enum access_class {
    ACCESS_OPEN,  /* anyone */
    ACCESS_ADMIN, /* an admin API key */
    ACCESS_APP,   /* the application whose token is the route's first parameter */
    ACCESS_READ,  /* an admin API key or a read-only key (ops_read_key_hashes) */
};

struct route {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* "/a/{x}/b": {x} matches one non-empty segment */
    route_fn fn;
    const char *name;   /* metrics label */
    enum access_class access;
    /* The largest body the route takes, derived from its fields' limits
     * (routes.c); ROUTE_BODY_PER_SMS: sms_many_max items. Never above
     * max_body_bytes. */
    size_t max_body;
    const char *query;  /* the query parameters it takes, ",a,b," (NULL: none) */
    struct metric *latency, *c2xx, *c4xx, *c5xx;
};

/* The route table (routes.c). */
extern struct route dispatcher_routes[];
extern const size_t dispatcher_nroutes;

/* An answer that arrives later. The pending object owns copies of what the
 * reply needs; the request stays valid until the reply (if the client went
 * away meanwhile, the reply is dropped). */
struct http_pending {
    struct loop *loop;
    struct http_req *req;
    const struct route *route;
    char request_id[65];
    int64_t start_us;
};

/* Binds the listening socket (SO_REUSEPORT) without listening yet: the
 * loops attach to it first, and server_open lets clients in once they can
 * be served (a client that comes earlier is refused, not answered 503). */
bool server_listen(const char *addr, int *fd_out, char *errbuf, size_t errlen) SB_NODISCARD;
bool server_open(int fd, char *errbuf, size_t errlen) SB_NODISCARD;
bool loop_init(struct loop *l, struct dispatcher *d, int index, int listen_fd, char *errbuf,
               size_t errlen) SB_NODISCARD;
/* Descriptors kept for everything but clients: Redis, MySQL, the store
 * pool, Kafka, each loop's own (event base, queue, listener), log files. */
#define SERVER_FD_RESERVE 128

/* Raises the open file soft limit to the hard one (services often start
 * with 1024 of a far higher hard limit) and sets *fd_limit to the limit
 * now. Returns how many client connections to serve at once: configured
 * if not 0, else the limit less SERVER_FD_RESERVE (at least 16). */
int server_max_connections(int64_t configured, uint64_t *fd_limit);

/* On the loop's thread, after server_open(): start / stop accepting. */
void loop_start_accepting(struct loop *l);
void loop_stop_accepting(struct loop *l);
void loop_destroy(struct loop *l);

/* Replies (on the loop thread). The body is sent as application/json. */
void http_reply_json(struct http_ctx *ctx, int code, const cJSON *body);
void http_reply_raw(struct http_ctx *ctx, int code, const char *content_type, const char *body,
                    size_t len);
void http_reply_error(struct http_ctx *ctx, int code, const char *errcode, const char *fmt, ...)
    SB_PRINTF(4, 5);

/* Reads and strictly parses the request body and checks it holds exactly
 * the declared fields (json_check_object); on failure answers 400/413/415
 * itself and returns NULL. empty_ok: an absent body yields {}. */
cJSON *http_body_json(struct http_ctx *ctx, const struct json_field *fields, size_t nfields,
                      bool empty_ok);

/* The request body (size and Content-Type checked: application/json, or
 * other_type if not NULL), or NULL after answering 413/415 itself. */
const char *http_body_raw(struct http_ctx *ctx, size_t *len, const char *other_type);

/* Hands work for the request p answers to one of the dispatcher's pools
 * (MySQL, store) as tenant, waiting at most pool_wait_ms (expire runs
 * instead of work past it: it must make done answer 503). False after
 * answering 503 overloaded (Retry-After: 1) when the pool refuses it: the
 * caller frees arg. */
bool http_pool_submit(struct http_pending *p, struct threadpool *tp, uint64_t tenant,
                      threadpool_work_fn work, void (*expire)(void *arg), loopq_fn done, void *arg);
/* A job produced for a request: Kafka's delivery report comes back to the
 * request's loop through the embedded queue item, which cannot fail, so
 * every request is answered (an allocation in the report's path once
 * could fail and leave the client without an answer). Embed one in the
 * request; it must live until done has run. */
typedef void (*http_enqueued_fn)(void *arg, rd_kafka_resp_err_t err);
struct http_enqueue {
    struct loopq_item item;
    struct loop *loop;
    http_enqueued_fn done; /* on the loop: err 0 = Kafka has the job */
    void *arg;
    rd_kafka_resp_err_t err;
    struct trace_span span; /* the produce, from the call to Kafka's answer */
};
/* Produces job (to topic, with key) for a request on loop l; done(arg, err)
 * runs on l once Kafka answered. trace (NULL or not valid: none): the
 * request's context, carried in the job's traceparent header. False (and
 * errbuf) if the producer would not take it: done is then not called. */
bool http_enqueue(struct http_enqueue *e, struct loop *l, const struct trace_ctx *trace, const char *topic,
                  const char *key, size_t keylen, const char *job, http_enqueued_fn done, void *arg, char *errbuf,
                  size_t errlen) SB_NODISCARD;

/* 503 overloaded with Retry-After: 1 (a pool busy past pool_wait_ms). */
void http_pending_busy(struct http_pending *p);

/* The query parameter's value (decoded) into out; false if absent. A
 * value too long for out comes back as "", which no parameter takes (it
 * is refused, never read as absent). */
bool http_query_param(struct http_ctx *ctx, const char *name, char *out, size_t cap);

/* A request header's value (name matched without regard to case) or NULL. */
const char *http_req_header(const struct http_req *req, const char *name);
/* Adds a header to the reply (before replying; at most a few short ones). */
void http_req_add_header(struct http_req *req, const char *name, const char *value);
/* Has the client closed the connection while the request was in flight? */
bool http_req_gone(const struct http_req *req);
/* Ends a request whose client has gone without answering it. */
void http_req_abandon(struct http_req *req);

/* Turns ctx into a pending answer (counts it in flight). */
struct http_pending *http_pending_new(struct http_ctx *ctx);
/* Finishes a pending answer with a body (or an error), then frees it. */
void http_pending_reply(struct http_pending *p, int code, const cJSON *body);
/* The same with the body as JSON text (len bytes). */
void http_pending_reply_text(struct http_pending *p, int code, const char *json, size_t len);
/* The same with a body of another type. */
void http_pending_reply_typed(struct http_pending *p, int code, const char *content_type, const char *body,
                              size_t len);
void http_pending_error(struct http_pending *p, int code, const char *errcode, const char *msg);
void http_pending_errorf(struct http_pending *p, int code, const char *errcode, const char *fmt, ...)
    SB_PRINTF(4, 5);

#endif
