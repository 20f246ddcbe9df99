/* chat_req.h - one request of the chat routes while it waits (app_api.c,
 * chat_api.c): what the MySQL pool work reads and leaves behind, and the
 * replies made from it.
 *
 * A handler checks the path and body on the loop, makes a chat_req and
 * hands it to the pool (chat_req_submit) or to Redis (numbers.h); the
 * completion runs on the loop again and answers with one of the
 * chat_req_* replies, which also free the request. */
#ifndef SB_CHAT_REQ_H
#define SB_CHAT_REQ_H

#include "db.h"
#include "envelope.h"
#include "server.h"
#include "threadpool.h"

struct chat_req {
    struct http_pending *p;
    struct loop *loop;
    char token[TOKEN_LEN + 1];
    int64_t chat, msg;
    int64_t after, limit, offset;
    char *text; /* name, message body or search text */
    /* filled by pool work */
    enum db_status st;
    char err[ERRBUF_LEN];
    bool app_exists, chat_exists, found;
    bool uncertain;  /* the cache lost data recently (numbers.h) */
    int64_t ceiling; /* MySQL number ceiling of the scope that issued it */
    int status;
    cJSON *result;
    const char *errcode;
    char errmsg[200];
    bool retried;
    int64_t created; /* the number of a chat or message being created */
    uint64_t tenant; /* for the pool's fair share (threadpool.h) */
    struct http_enqueue eq; /* its job's way to Kafka and back */
    struct trace_span redis_span; /* a number's allocation in Redis */
    size_t reserve;  /* the size of the answer it built (chat_req_hold) */
    bool reserved;   /* reserve counted in the dispatcher's out_reserved */
    bool retry_after;
    size_t built;    /* bytes of the rows read so far */
    bool expired;    /* waited for a pool thread past its deadline */
};

/* A request for ctx (limit at the default page size); NULL after answering
 * 503 itself. */
struct chat_req *chat_req_new(struct http_ctx *ctx);
void chat_req_free(struct chat_req *r);

/* Answers an error and frees r. */
#define chat_req_error(r, status, code, ...)                       \
    do {                                                           \
        http_pending_errorf((r)->p, status, code, __VA_ARGS__);    \
        chat_req_free(r);                                          \
    } while (0)

/* Answers body (taken) with status and frees r. */
void chat_req_reply(struct chat_req *r, int status, cJSON *body);
/* Allocated just before Redis lost data, maybe still on its way to MySQL:
 * answers 503 with Retry-After instead of denying that it exists. */
void chat_req_retry(struct chat_req *r, const char *what, int64_t n);
/* Sends what the pool work left in r: a result, or an error (loopq_fn). */
void chat_req_finish(void *arg);
/* Sets r's answer to 404 for its application, chat or message. */
void chat_req_not_found(struct chat_req *r, const char *what);
/* Runs work on the MySQL pool and done on r's loop; answers 503 if the
 * pool cannot take it. */
void chat_req_submit(struct chat_req *r, threadpool_work_fn work, loopq_fn done);
/* Pool: runs sql and calls each(row) for every row; false on error (r->st set). */
bool chat_req_query_rows(struct chat_req *r, struct db *db, char *sql,
                         void (*each)(struct chat_req *r, MYSQL_ROW row));

/* Pool: counts an answer of bytes (built, not yet written to its client)
 * against max_output_bytes, with those not yet read; false (and the
 * request answers 503, Retry-After) if it does not fit. Released when r is
 * freed. A page of long messages is megabytes: slow readers and answers
 * piling up for them cannot take the process's memory. */
bool chat_req_hold(struct chat_req *r, size_t bytes);

/* Reads the {token}, {chat}, {msg} path parameters (chat, msg may be NULL);
 * false after answering 404/400. */
bool chat_path_ids(struct http_ctx *ctx, char *token, int64_t *chat, int64_t *msg);
/* ?limit= (1..100) and ?after= (an integer into after, or an application
 * token into after_token); false after answering 400. */
bool chat_page_params(struct http_ctx *ctx, int64_t *limit, int64_t *after, char *after_token);

#endif
