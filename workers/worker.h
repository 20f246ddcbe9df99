/* worker.h - the consume -> process -> commit loop shared by every role.
 *
 * One batch at a time: poll up to batch_size jobs (or batch_wait_ms),
 * decode and validate each, give the valid ones to the role's handler in
 * one call (one MySQL transaction), send the rest to the dead-letter topic,
 * and only then store the offsets. A passing failure (MySQL or Kafka away)
 * rewinds the batch and backs off; the next poll fetches it again. A role
 * may defer a job (its partition is rewound to it) or pin one it goes on
 * with after the batch (its partition goes on, but no offset past the job
 * is stored until the role lets it go). */
#ifndef SB_WORKER_H
#define SB_WORKER_H

#include "config.h"
#include "envelope.h"
#include "kafka.h"
#include "metrics.h"
#include "db.h"
#include "holds.h"
#include "redis.h"
#include "trace.h"

struct job {
    rd_kafka_message_t *msg;
    struct envelope env;
    bool valid;
    bool dead; /* set by validation or the handler; reason says why */
    /* Set by the handler: not yet (a retry waiting for its time). This job
     * and every later one of its partition in the batch stay unacknowledged;
     * the partition is rewound to it and paused until then. */
    int64_t defer_until_ms;
    /* With defer_until_ms, optionally: the role's tag for "until released".
     * The partition then resumes at the earlier of that time and
     * worker_release with a bound above the tag. 0 = the time alone. */
    uint64_t hold;
    /* Set by the handler: the role goes on with this job after the batch
     * (a delivery that outlasted it). It counts as done, and later jobs of
     * its partition are not held back, but the partition's stored offset
     * stays at this job until worker_unpin with this tag. 0 = not pinned. */
    uint64_t pin;
    char reason[ERRBUF_LEN];
    /* The job's span, from its fetch to its outcome: a child of the
     * traceparent header its producer gave it, else a new trace. */
    struct trace_span span;
    char trace_id[33]; /* for its log lines ("" untraced) */
};

struct worker;

#define ROLE_MAX_TOPICS 4

struct role {
    const char *name;
    const char *const *topics; /* at most ROLE_MAX_TOPICS */
    size_t ntopics;
    const char *const *types; /* job types this role acts on; others pass */
    size_t ntypes;
    /* The owner of its topics dead-letters invalid jobs; other roles on the
     * same topics skip them, so each bad job is dead-lettered once. */
    bool owns_topics;
    /* Applies jobs[0..n) atomically. DB_FATAL means one of them can never
     * succeed: the loop retries them one by one to find it. A handler that
     * can tell which job is bad itself marks it dead (with a reason) and
     * returns DB_OK; the loop dead-letters it. */
    enum db_status (*handle)(struct worker *w, struct job **jobs, size_t n, char *errbuf,
                             size_t errlen);
    /* Optional housekeeping, called about once a second between batches. */
    void (*tick)(struct worker *w);
    /* Optional: set up before the first batch (false = cannot start), and
     * release after the last. */
    bool (*prepare)(struct worker *w);
    void (*finish)(struct worker *w);
    /* Fetch and decode the next batch on a helper thread while this one is
     * handled. Only for roles that never defer a job: a deferral rewinds a
     * partition, and the prefetched batch may hold its later jobs. */
    bool prefetch;
    /* Optional: the consumer is about to give its partitions up (a
     * rebalance, or closing) and commit their offsets; returns once the role
     * no longer works on any job of theirs, so that the next owner does not
     * deliver one a second time beside it. */
    void (*revoked)(struct worker *w);
    /* Optional: called on the main thread before every fetch. */
    void (*turn)(struct worker *w);
};

#define WORKER_DEAD_CAUSES 32

struct worker {
    const struct sb_config *cfg;
    const struct role *role;
    const char *group;
    struct kafka_consumer *consumer;
    struct kafka_producer *producer; /* dead letters (and later, retries) */
    struct db *db;
    redisContext *redis; /* blocking, made on first use by roles that need it */
    const atomic_int *stop; /* set by the signal handler */
    void *state; /* the role's own (prepare makes it, finish frees it) */
    struct pauses paused; /* partitions waiting for deferred jobs */
    struct pins pins; /* jobs the role goes on with after their batch */
    struct metric *m_processed, *m_dead, *m_retries, *m_batches;
    struct metric *m_last_batch; /* unix seconds of the last committed batch */
    /* Dead letters by topic and cause (kafka_dlq_cause): the label sets
     * made so far, at most WORKER_DEAD_CAUSES; later causes count as
     * "other", so a reason that embeds what varies cannot grow /metrics
     * without bound. */
    size_t n_dead_causes;
    uint64_t dead_causes[WORKER_DEAD_CAUSES];
};

const struct role *role_find(const char *name);
/* "persister | indexer | ..." for messages. */
const char *role_names(void);

/* Has the worker's producer look up the topics it will produce to now
 * (kafka_producer_know): the first dead letter or retry after an idle spell
 * then goes out at once, not after librdkafka's ~1 s lookup. A broker that
 * does not answer is logged, not fatal. */
void worker_know_topics(struct worker *w, const char *const *topics, size_t n);

/* A deferred job holds back every later job of its partition: the
 * partition is rewound to the deferred job, and an offset stored for a
 * later one would be committed past it, so that a restart or the
 * partition's next owner skipped it. Gives each later job of jobs[0..n)
 * (in log order) the time and hold of its partition's first deferred job.
 * The loop does this over the whole batch after the handler; a handler
 * that must know them before it starts (the notifier's plan) calls it on
 * its own jobs. False only when out of memory. */
bool worker_defer_followers(struct job *const *jobs, size_t n) SB_NODISCARD;

/* Sends the dead letter of the job at src (deadletter_send) with why, logs
 * it and counts it; false, logged, if Kafka did not take it (the caller
 * tries again later). */
struct deadletter_src;
bool worker_dead_letter(struct worker *w, const struct deadletter_src *src, const char *reason) SB_NODISCARD;

/* Held partitions (paused for jobs with a hold tag) whose tag is below
 * `below` resume at the loop's next turn. Main thread only (the role's
 * handle, tick and turn run there). */
void worker_release(struct worker *w, uint64_t below);

/* The role is done with pinned job `tag`. handled: its partition's stored
 * offset moves on (to the next pin of that partition, or as far as the
 * partition has been handled); else the partition is sought back to the
 * job, to fetch it (and what followed it) again. A tag not pinned (its
 * batch was rewound, or its partition revoked) is ignored. Main thread. */
void worker_unpin(struct worker *w, uint64_t tag, bool handled);

/* Runs until *stop; returns the exit status. */
int worker_run(struct worker *w);

#endif
