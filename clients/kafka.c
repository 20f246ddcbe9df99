/* kafka.c - see kafka.h. */
#include "kafka.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "metrics.h"

struct kafka_producer {
    rd_kafka_t *rk;
    pthread_t poller;
    bool polling; /* the poller thread runs */
    atomic_bool stop;
    int report_fd;          /* eventfd librdkafka signals, with serve_on */
    struct event *report_ev;
    rd_kafka_topic_t **known; /* kafka_producer_know's topics, held */
    size_t nknown;
};

struct kafka_consumer {
    rd_kafka_t *rk;
    struct metric *m_resets; /* switchboard_kafka_offset_resets_total */
    void (*on_revoke)(void *arg);
    void *revoke_arg;
};

struct delivery {
    kafka_delivery_fn cb;
    void *opaque;
};

void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* librdkafka warns (facility OFFSET) when a consumer's position is not
     * in the log any more (retention deleted it, or someone deleted
     * records or reset the group) and it starts over from the earliest
     * offset: the jobs in between were never consumed. Never a mere
     * warning here. (A group's first start, with nothing committed, is
     * only debug-logged by librdkafka and does not come here.) */
    if (level <= 4 && strcmp(fac, "OFFSET") == 0 && rd_kafka_type(rk) == RD_KAFKA_CONSUMER) {
        struct kafka_consumer *c = rd_kafka_opaque(rk);
        if (c && c->m_resets)
            metric_add(c->m_resets, 1);
        log_error("consumer offset reset: the committed offset is gone from the log; the jobs "
                  "before the log's start were not consumed",
                  "client=%s detail=\"%s\"", rd_kafka_name(rk), buf);
        return;
    }
    enum log_level l = level <= 3 ? LOG_ERROR : level <= 5 ? LOG_WARN : LOG_DEBUG;
    log_msg(l, "librdkafka", "facility=%s detail=\"%s\"", fac, buf);
}

void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    /* Most errors are transient and librdkafka recovers by itself; a fatal
     * one (idempotence broken) is logged loudly and the process carries on
     * failing deliveries, which callers turn into 503s. */
    char fatal[256] = "";
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        rd_kafka_fatal_error(rk, fatal, sizeof fatal);
    log_msg(err == RD_KAFKA_RESP_ERR__FATAL ? LOG_ERROR : LOG_WARN, "kafka error",
            "client=%s err=%s reason=\"%s\"%s%s", rd_kafka_name(rk),
            rd_kafka_err2name((rd_kafka_resp_err_t)err), reason, *fatal ? " fatal=" : "", fatal);
}

bool kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errbuf, size_t errlen)
{
    char e[256];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof e) != RD_KAFKA_CONF_OK) {
        /* librdkafka's message quotes the value: not for a secret. */
        if (sb_secret_key(k))
            sb_errf(errbuf, errlen, "kafka config %s: invalid value (not shown: a secret)", k);
        else
            sb_errf(errbuf, errlen, "kafka config %s=%s: %s", k, v, e);
        return false;
    }
    return true;
}

/* Properties the code relies on: kafka_conf may not change them. The
 * brokers come from kafka_brokers and the group from the role; offsets
 * are stored only after the side effect; a 2xx means the job is on every
 * in-sync replica, once (acks=all, idempotence), within request_timeout_ms
 * (message.timeout.ms); a committed offset that is gone is reported, and
 * the consumer goes on from the log's start (auto.offset.reset). */
static const struct {
    const char *key, *why;
} reserved_keys[] = {
    {"bootstrap.servers", "use kafka_brokers"},
    {"metadata.broker.list", "use kafka_brokers"},
    {"group.id", "switchboard relies on it"},
    {"enable.auto.offset.store", "switchboard relies on it"},
    {"enable.auto.commit", "switchboard relies on it"},
    {"acks", "switchboard relies on it"},
    {"request.required.acks", "switchboard relies on it"},
    {"enable.idempotence", "switchboard relies on it"},
    {"message.timeout.ms", "use request_timeout_ms"},
    {"delivery.timeout.ms", "use request_timeout_ms"},
    {"auto.offset.reset", "switchboard relies on it"},
};

/* Cuts the blanks at both ends of s, in place. */
static char *trim_blanks(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n')
        s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n'))
        *--end = '\0';
    return s;
}

bool kafka_conf_apply(rd_kafka_conf_t *conf, const char *list, char *errbuf, size_t errlen)
{
    if (list == NULL || *list == '\0')
        return true;
    /* Items are cut out of one copy (an inline PEM value may be long). */
    char *copy = malloc(strlen(list) + 1);
    if (copy == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return false;
    }
    bool ok = true;
    const char *p = list;
    for (int nitem = 1; ok && *p; nitem++) {
        /* One item, unescaped: "\," is a comma, "\\" a backslash. */
        const char *end = sb_kv_item_end(p);
        size_t n = 0;
        for (; p < end; p++) {
            if (*p == '\\' && (p[1] == ',' || p[1] == '\\'))
                p++;
            copy[n++] = *p;
        }
        copy[n] = '\0';
        if (*p == ',')
            p++;
        char *key = trim_blanks(copy);
        if (*key == '\0')
            continue; /* "a=1,,b=2" or a trailing comma */
        char *eq = strchr(key, '=');
        if (eq == NULL || eq == key) {
            /* Not echoed: a typo such as "sasl.password:..." holds a secret. */
            sb_errf(errbuf, errlen, "kafka_conf: item %d is not key=value", nitem);
            ok = false;
            break;
        }
        *eq = '\0';
        key = trim_blanks(key);
        char *val = trim_blanks(eq + 1);
        for (size_t i = 0; i < SB_ARRAY_LEN(reserved_keys); i++)
            if (strcmp(key, reserved_keys[i].key) == 0) {
                sb_errf(errbuf, errlen, "kafka_conf may not set %s (%s)", key, reserved_keys[i].why);
                ok = false;
            }
        ok = ok && kafka_conf_set(conf, key, val, errbuf, errlen);
    }
    free(copy);
    return ok;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    struct delivery *d = m->_private;
    if (d == NULL)
        return;
    d->cb(d->opaque, m->err);
    free(d);
}

static void *producer_poll_main(void *arg)
{
    struct kafka_producer *p = arg;
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 100);
    return NULL;
}

struct kafka_producer *kafka_producer_new(const char *brokers, const char *extra_conf,
                                          int64_t message_timeout_ms, char *errbuf, size_t errlen)
{
    struct kafka_producer *p = calloc(1, sizeof *p);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%lld", (long long)message_timeout_ms);
    if (p == NULL || conf == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        goto fail;
    }
    /* Idempotence gives acks=all and retries without duplicates or
     * reordering; linger 1 ms batches concurrent requests without adding
     * visible latency; the message timeout bounds how long an HTTP request
     * can wait before it is answered 503. lz4: jobs are JSON, which shrinks
     * 3-5x for little CPU, so brokers keep more of them per byte of
     * retention and the network carries less. */
    if (!kafka_conf_set(conf, "bootstrap.servers", brokers, errbuf, errlen) ||
        !kafka_conf_set(conf, "enable.idempotence", "true", errbuf, errlen) ||
        !kafka_conf_set(conf, "acks", "all", errbuf, errlen) ||
        !kafka_conf_set(conf, "linger.ms", "1", errbuf, errlen) ||
        !kafka_conf_set(conf, "compression.codec", "lz4", errbuf, errlen) ||
        !kafka_conf_set(conf, "message.timeout.ms", timeout, errbuf, errlen) ||
        !kafka_conf_set(conf, "socket.keepalive.enable", "true", errbuf, errlen) ||
        !kafka_conf_set(conf, "socket.nagle.disable", "true", errbuf, errlen) ||
        !kafka_conf_set(conf, "reconnect.backoff.max.ms", "1000", errbuf, errlen) ||
        !kafka_conf_set(conf, "client.id", "switchboard", errbuf, errlen) ||
        !kafka_conf_apply(conf, extra_conf, errbuf, errlen))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
    char e[512];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (p->rk == NULL) {
        sb_errf(errbuf, errlen, "kafka producer: %s", e);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    p->report_fd = -1;
    if (pthread_create(&p->poller, NULL, producer_poll_main, p) != 0) {
        sb_errf(errbuf, errlen, "pthread_create failed");
        rd_kafka_destroy(p->rk);
        goto fail;
    }
    p->polling = true;
    return p;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    free(p);
    return NULL;
}

int kafka_producer_flush(struct kafka_producer *p, int timeout_ms)
{
    rd_kafka_flush(p->rk, timeout_ms);
    return rd_kafka_outq_len(p->rk);
}

rd_kafka_t *kafka_producer_handle(struct kafka_producer *p)
{
    return p->rk;
}

int kafka_producer_outstanding(struct kafka_producer *p)
{
    return rd_kafka_outq_len(p->rk);
}

static void stop_polling(struct kafka_producer *p)
{
    if (!p->polling)
        return;
    atomic_store(&p->stop, true);
    pthread_join(p->poller, NULL);
    p->polling = false;
}

static void on_reports(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    uint64_t n;
    /* Reset the eventfd first: a report queued while we poll signals it
     * again (librdkafka writes when its queue turns non-empty). EAGAIN
     * only means it was reset already. */
    ssize_t got = read(fd, &n, sizeof n);
    (void)got;
    rd_kafka_poll(((struct kafka_producer *)arg)->rk, 0);
}

bool kafka_producer_serve_on(struct kafka_producer *p, struct event_base *base, char *errbuf,
                             size_t errlen)
{
    /* Non-blocking: librdkafka writes to it holding a queue lock. */
    p->report_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p->report_ev = p->report_fd < 0 ? NULL
                                    : event_new(base, p->report_fd, EV_READ | EV_PERSIST, on_reports, p);
    if (p->report_ev == NULL || event_add(p->report_ev, NULL) != 0) {
        sb_errf(errbuf, errlen, "cannot watch delivery reports on the event loop");
        if (p->report_ev)
            event_free(p->report_ev);
        if (p->report_fd >= 0)
            close(p->report_fd);
        p->report_ev = NULL;
        p->report_fd = -1;
        return false;
    }
    stop_polling(p);
    static const uint64_t one = 1; /* an eventfd takes 8-byte counts */
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(p->rk);
    rd_kafka_queue_io_event_enable(q, p->report_fd, &one, sizeof one);
    rd_kafka_queue_destroy(q);
    /* Reports queued while the thread stopped: the loop serves them. */
    uint64_t kick = 1;
    if (write(p->report_fd, &kick, sizeof kick) < 0)
        log_warn("cannot signal the delivery-report event", "%s", "");
    return true;
}

void kafka_producer_free(struct kafka_producer *p, int timeout_ms)
{
    if (p == NULL)
        return;
    /* rd_kafka_flush serves the delivery reports itself. */
    int left = kafka_producer_flush(p, timeout_ms);
    if (left > 0)
        log_error("kafka producer closing with undelivered messages", "count=%d", left);
    stop_polling(p);
    if (p->report_fd >= 0) {
        rd_kafka_queue_t *q = rd_kafka_queue_get_main(p->rk);
        rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
        rd_kafka_queue_destroy(q);
        event_free(p->report_ev); /* its loop has stopped */
        close(p->report_fd);
    }
    /* Undelivered messages get their callbacks (with an error) here. */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(p->rk, 0);
    for (size_t i = 0; i < p->nknown; i++)
        rd_kafka_topic_destroy(p->known[i]);
    free(p->known);
    rd_kafka_destroy(p->rk);
    free(p);
}

bool kafka_produce(struct kafka_producer *p, const char *topic, const void *key, size_t keylen,
                   const void *val, size_t len, rd_kafka_headers_t *headers,
                   kafka_delivery_fn cb, void *opaque, char *errbuf, size_t errlen)
{
    struct delivery *d = NULL;
    if (cb) {
        d = malloc(sizeof *d);
        if (d == NULL) {
            sb_errf(errbuf, errlen, "out of memory");
            if (headers)
                rd_kafka_headers_destroy(headers);
            return false;
        }
        d->cb = cb;
        d->opaque = opaque;
    }
    rd_kafka_resp_err_t err;
    if (headers)
        err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_KEY((void *)key, keylen),
                                RD_KAFKA_V_VALUE((void *)val, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    else
        err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_KEY((void *)key, keylen),
                                RD_KAFKA_V_VALUE((void *)val, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (err) {
        /* On failure the headers are still ours. */
        if (headers)
            rd_kafka_headers_destroy(headers);
        free(d);
        sb_errf(errbuf, errlen, "produce to %s: %s", topic, rd_kafka_err2str(err));
        return false;
    }
    return true;
}

struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    rd_kafka_resp_err_t err;
};

static void on_sync_delivery(void *opaque, rd_kafka_resp_err_t err)
{
    struct sync_wait *w = opaque;
    pthread_mutex_lock(&w->lock);
    w->done = true;
    w->err = err;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

bool kafka_produce_sync(struct kafka_producer *p, const char *topic, const void *key,
                        size_t keylen, const void *val, size_t len, rd_kafka_headers_t *headers,
                        char *errbuf, size_t errlen)
{
    struct sync_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    if (!kafka_produce(p, topic, key, keylen, val, len, headers, on_sync_delivery, &w, errbuf,
                       errlen))
        return false;
    /* message.timeout.ms bounds this wait: librdkafka always reports. */
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    if (w.err) {
        sb_errf(errbuf, errlen, "delivery to %s: %s", topic, rd_kafka_err2str(w.err));
        return false;
    }
    return true;
}

bool kafka_producer_know(struct kafka_producer *p, const char *const *topics, size_t n, int timeout_ms,
                         char *errbuf, size_t errlen)
{
    if (n == 0)
        return true;
    rd_kafka_topic_t **known = realloc(p->known, (p->nknown + n) * sizeof *known);
    if (known == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        return false;
    }
    p->known = known;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, topics[i], NULL);
        if (rkt == NULL) {
            sb_errf(errbuf, errlen, "topic %s: %s", topics[i], rd_kafka_err2str(rd_kafka_last_error()));
            return false;
        }
        p->known[p->nknown++] = rkt;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = ok ? rd_kafka_metadata(p->rk, 0, rkt, &md, timeout_ms)
                                     : RD_KAFKA_RESP_ERR_NO_ERROR;
        if (md)
            rd_kafka_metadata_destroy(md);
        if (err) { /* the rest are held all the same, and looked up when used */
            sb_errf(errbuf, errlen, "metadata of %s: %s", topics[i], rd_kafka_err2str(err));
            ok = false;
        }
    }
    return ok;
}

bool kafka_producer_check(struct kafka_producer *p, int timeout_ms, char *errbuf, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(p->rk, 0, NULL, &md, timeout_ms);
    if (err) {
        sb_errf(errbuf, errlen, "metadata: %s", rd_kafka_err2str(err));
        return false;
    }
    bool ok = md->broker_cnt > 0;
    if (!ok)
        sb_errf(errbuf, errlen, "metadata lists no brokers");
    rd_kafka_metadata_destroy(md);
    return ok;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct kafka_consumer *c = opaque;
    char list[512] = "";
    size_t n = 0;
    for (int i = 0; i < parts->cnt && n < sizeof list - 40; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s[%d]", i ? "," : "",
                              parts->elems[i].topic, parts->elems[i].partition);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info("partitions assigned", "count=%d partitions=%s", parts->cnt, list);
        rd_kafka_assign(rk, parts);
    } else {
        /* Commit what was processed before another member takes over, so
         * it does not redo (idempotently, but needlessly) our work. */
        log_info("partitions revoked", "count=%d partitions=%s", parts->cnt, list);
        if (c->on_revoke)
            c->on_revoke(c->revoke_arg);
        rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
        if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
            log_warn("commit on revoke failed", "err=%s", rd_kafka_err2name(cerr));
        rd_kafka_assign(rk, NULL);
    }
}

struct kafka_consumer *kafka_consumer_new(const char *brokers, const char *extra_conf,
                                          const char *group,
                                          const char *const *topics, size_t ntopics,
                                          int64_t session_timeout_ms, char *errbuf,
                                          size_t errlen)
{
    struct kafka_consumer *c = calloc(1, sizeof *c);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *subs = NULL;
    char session[32], heartbeat[32];
    snprintf(session, sizeof session, "%lld", (long long)session_timeout_ms);
    snprintf(heartbeat, sizeof heartbeat, "%lld", (long long)(session_timeout_ms / 3));
    if (c == NULL || conf == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        goto fail;
    }
    if (!kafka_conf_set(conf, "bootstrap.servers", brokers, errbuf, errlen) ||
        !kafka_conf_set(conf, "group.id", group, errbuf, errlen) ||
        !kafka_conf_set(conf, "enable.auto.offset.store", "false", errbuf, errlen) ||
        !kafka_conf_set(conf, "enable.auto.commit", "true", errbuf, errlen) ||
        !kafka_conf_set(conf, "auto.commit.interval.ms", "1000", errbuf, errlen) ||
        !kafka_conf_set(conf, "auto.offset.reset", "earliest", errbuf, errlen) ||
        !kafka_conf_set(conf, "session.timeout.ms", session, errbuf, errlen) ||
        !kafka_conf_set(conf, "heartbeat.interval.ms", heartbeat, errbuf, errlen) ||
        !kafka_conf_set(conf, "reconnect.backoff.max.ms", "1000", errbuf, errlen) ||
        /* A fetch is answered once 64 KB of jobs are there, or after
         * 20 ms: under load a batch is a few hundred jobs (one transaction,
         * one fetch, where answering every job at once cost the broker and
         * MySQL two to three times the CPU per job), and a job that
         * trickles in waits 20 ms at most. */
        !kafka_conf_set(conf, "fetch.wait.max.ms", "20", errbuf, errlen) ||
        !kafka_conf_set(conf, "fetch.min.bytes", "65536", errbuf, errlen) ||
        /* librdkafka prefetches up to 64 MB by default, in fetches of up to
         * 50 MB, and a broker with a backlog fills that at once (a persister
         * reached 144 MB RSS after a 250k-job backlog). 8 MB holds two
         * batches of batch_max_bytes' default: enough to keep the handler
         * busy. */
        !kafka_conf_set(conf, "queued.max.messages.kbytes", "8192", errbuf, errlen) ||
        !kafka_conf_set(conf, "fetch.max.bytes", "8388608", errbuf, errlen) ||
        !kafka_conf_set(conf, "client.id", group, errbuf, errlen) ||
        !kafka_conf_apply(conf, extra_conf, errbuf, errlen))
        goto fail;
    char labels[160];
    snprintf(labels, sizeof labels, "group=\"%s\"", group);
    c->m_resets = metrics_counter("switchboard_kafka_offset_resets_total", labels,
                                  "times a committed offset was gone from the log (jobs skipped)");
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
    char e[512];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (c->rk == NULL) {
        sb_errf(errbuf, errlen, "kafka consumer: %s", e);
        goto fail;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(c->rk);
    subs = rd_kafka_topic_partition_list_new((int)ntopics);
    for (size_t i = 0; i < ntopics; i++)
        rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (err) {
        sb_errf(errbuf, errlen, "subscribe: %s", rd_kafka_err2str(err));
        rd_kafka_destroy(c->rk);
        goto fail;
    }
    return c;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    free(c);
    return NULL;
}

size_t kafka_consumer_poll_batch(struct kafka_consumer *c, rd_kafka_message_t **msgs,
                                 size_t max, size_t max_bytes, int wait_ms)
{
    /* Wait up to wait_ms for the first message, then take only what is
     * already fetched: a batch is as large as the backlog (up to max) and
     * a lone job is not held back to fill one. */
    size_t n = 0, bytes = 0;
    int64_t deadline = sb_mono_ms() + wait_ms;
    while (n < max && bytes < max_bytes) {
        int64_t left = n ? 0 : deadline - sb_mono_ms();
        if (left < 0)
            left = 0;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, (int)left);
        if (m == NULL) {
            if (n || left == 0)
                break;
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
            /* The position fell out of the broker's retention: the jobs in
             * between are gone. Never silent. */
            log_error("consumer offset reset: jobs were lost to broker retention",
                      "topic=%s partition=%d detail=\"%s\"",
                      m->rkt ? rd_kafka_topic_name(m->rkt) : "?", (int)m->partition,
                      rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("consumer error", "err=%s detail=\"%s\"", rd_kafka_err2name(m->err),
                         rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        bytes += m->len;
        msgs[n++] = m;
    }
    return n;
}

/* Builds one entry per partition with the lowest (first) or highest
 * (last + 1) offset seen in the batch. */
static rd_kafka_topic_partition_list_t *batch_offsets(rd_kafka_message_t **msgs, size_t n,
                                                      bool first)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        const char *topic = rd_kafka_topic_name(msgs[i]->rkt);
        int64_t off = first ? msgs[i]->offset : msgs[i]->offset + 1;
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(l, topic, msgs[i]->partition);
        if (tp == NULL) {
            tp = rd_kafka_topic_partition_list_add(l, topic, msgs[i]->partition);
            tp->offset = off;
        } else if (first ? off < tp->offset : off > tp->offset) {
            tp->offset = off;
        }
    }
    return l;
}

void kafka_consumer_on_revoke(struct kafka_consumer *c, void (*fn)(void *arg), void *arg)
{
    c->on_revoke = fn;
    c->revoke_arg = arg;
}

/* Stores (or, seek: seeks to) the offsets of list l, and destroys it. */
static bool apply_offsets(struct kafka_consumer *c, rd_kafka_topic_partition_list_t *l, bool seek,
                          char *errbuf, size_t errlen)
{
    bool ok = true;
    if (seek) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 5000);
        if (e) {
            sb_errf(errbuf, errlen, "seek: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            ok = false;
        }
    } else {
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, l);
        /* _STATE means a partition was revoked meanwhile: its new owner will
         * redo the batch, which is safe because every handler is idempotent. */
        if (err && err != RD_KAFKA_RESP_ERR__STATE) {
            sb_errf(errbuf, errlen, "offsets store: %s", rd_kafka_err2str(err));
            ok = false;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return ok;
}

bool kafka_consumer_store(struct kafka_consumer *c, rd_kafka_message_t **msgs, size_t n,
                          char *errbuf, size_t errlen)
{
    return n == 0 || apply_offsets(c, batch_offsets(msgs, n, false), false, errbuf, errlen);
}

bool kafka_consumer_rewind(struct kafka_consumer *c, rd_kafka_message_t **msgs, size_t n,
                           char *errbuf, size_t errlen)
{
    return n == 0 || apply_offsets(c, batch_offsets(msgs, n, true), true, errbuf, errlen);
}

static rd_kafka_topic_partition_list_t *one_offset(const char *topic, int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    return l;
}

bool kafka_consumer_store_at(struct kafka_consumer *c, const char *topic, int32_t partition,
                             int64_t offset, char *errbuf, size_t errlen)
{
    return apply_offsets(c, one_offset(topic, partition, offset), false, errbuf, errlen);
}

bool kafka_consumer_seek_to(struct kafka_consumer *c, const char *topic, int32_t partition,
                            int64_t offset, char *errbuf, size_t errlen)
{
    return apply_offsets(c, one_offset(topic, partition, offset), true, errbuf, errlen);
}

bool kafka_consumer_pause(struct kafka_consumer *c, const char *topic, int32_t partition,
                          bool pause, char *errbuf, size_t errlen)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, l)
                                    : rd_kafka_resume_partitions(c->rk, l);
    if (!err && l->elems[0].err)
        err = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (err)
        sb_errf(errbuf, errlen, "%s %s[%d]: %s", pause ? "pause" : "resume", topic, (int)partition,
                rd_kafka_err2str(err));
    return err == 0;
}

size_t kafka_consumer_lag(struct kafka_consumer *c, struct kafka_lag *out, size_t max, int timeout_ms)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(c->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || parts == NULL)
        return 0;
    size_t n = 0;
    int64_t deadline = sb_mono_ms() + timeout_ms;
    if (rd_kafka_committed(c->rk, parts, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < parts->cnt && n < max; i++) {
            const rd_kafka_topic_partition_t *tp = &parts->elems[i];
            int64_t lo = RD_KAFKA_OFFSET_INVALID, hi = RD_KAFKA_OFFSET_INVALID;
            int64_t from = tp->err ? RD_KAFKA_OFFSET_INVALID : tp->offset;
            (void)rd_kafka_get_watermark_offsets(c->rk, tp->topic, tp->partition, &lo, &hi);
            int64_t left = deadline - sb_mono_ms();
            /* Nothing committed yet: the group starts at the log's
             * beginning (auto.offset.reset=earliest), which only the
             * broker knows (librdkafka caches the low mark only with
             * statistics on). */
            if (from == RD_KAFKA_OFFSET_INVALID && !tp->err && left > 0 &&
                rd_kafka_query_watermark_offsets(c->rk, tp->topic, tp->partition, &lo, &hi,
                                                 (int)left) == RD_KAFKA_RESP_ERR_NO_ERROR)
                from = lo;
            struct kafka_lag *l = &out[n++];
            snprintf(l->topic, sizeof l->topic, "%s", tp->topic);
            l->partition = tp->partition;
            l->lag = hi >= 0 && from >= 0 ? (hi > from ? hi - from : 0) : -1;
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return n;
}

void kafka_consumer_free(struct kafka_consumer *c)
{
    if (c == NULL)
        return;
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
    if (err)
        log_warn("consumer close", "err=%s", rd_kafka_err2name(err));
    rd_kafka_destroy(c->rk);
    free(c);
}

bool kafka_header(const rd_kafka_message_t *m, const char *name, char *out, size_t cap)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *val;
    size_t len;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    if (len >= cap)
        len = cap - 1;
    memcpy(out, val, len);
    out[len] = '\0';
    return true;
}

bool kafka_redrive_origin(const rd_kafka_message_t *m, int32_t *partition, int64_t *offset)
{
    char of[256], part[16], off[24];
    *partition = -1;
    *offset = -1;
    if (!kafka_header(m, KAFKA_REDRIVE_HEADER, of, sizeof of))
        return false;
    char *end;
    if (kafka_header(m, KAFKA_ORIGINAL_PARTITION_HEADER, part, sizeof part) &&
        kafka_header(m, KAFKA_ORIGINAL_OFFSET_HEADER, off, sizeof off)) {
        long p = strtol(part, &end, 10);
        if (*part && !*end && p >= 0 && p <= INT32_MAX) {
            long long o = strtoll(off, &end, 10);
            if (*off && !*end && o >= 0) {
                *partition = (int32_t)p;
                *offset = o;
            }
        }
    }
    return true;
}

void kafka_dlq_name(const char *topic, char out[KAFKA_DLQ_NAME_MAX])
{
    snprintf(out, KAFKA_DLQ_NAME_MAX, "%s.dlq", topic);
}

void kafka_dlq_cause(const char *reason, char out[KAFKA_DLQ_CAUSE_MAX + 1])
{
    size_t n = 0;
    for (const char *p = reason; *p && *p != ':' && n < KAFKA_DLQ_CAUSE_MAX; p++) {
        if (*p >= '0' && *p <= '9') {
            while (p[1] >= '0' && p[1] <= '9')
                p++;
            out[n++] = 'N';
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    json_utf8_trim(out); /* a multibyte character cut at the limit */
}
