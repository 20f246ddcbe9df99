/* kafka_topics.c - see kafka_topics.h. */
#include "kafka_topics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Partitions of topic in md, or -1 if md does not list it. */
static int metadata_partitions(const struct rd_kafka_metadata *md, const char *topic)
{
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0)
            return md->topics[i].err ? -1 : md->topics[i].partition_cnt;
    return -1;
}

/* Sends one CreateTopics request for specs[idx[0..n)] and fills their out[]. */
static bool create_topics(rd_kafka_t *rk, const struct kafka_topic_spec *specs, const size_t *idx,
                          size_t n, int replication, struct kafka_topic_result *out, int timeout_ms,
                          char *errbuf, size_t errlen)
{
    bool ok = false;
    rd_kafka_NewTopic_t **nt = calloc(n, sizeof *nt);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev = NULL;
    char e[512];
    if (nt == NULL || opts == NULL || q == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        goto done;
    }
    if (rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, e, sizeof e) ||
        rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, e, sizeof e)) {
        sb_errf(errbuf, errlen, "admin options: %s", e);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const struct kafka_topic_spec *t = &specs[idx[i]];
        int rf = t->replication ? t->replication : replication;
        nt[i] = rd_kafka_NewTopic_new(t->name, t->partitions, rf, e, sizeof e);
        if (nt[i] == NULL) {
            sb_errf(errbuf, errlen, "topic %s: %s", t->name, e);
            goto done;
        }
        bool isr_set = false;
        for (const char *const *c = t->config; c && c[0]; c += 2) {
            isr_set = isr_set || strcmp(c[0], "min.insync.replicas") == 0;
            if (rd_kafka_NewTopic_set_config(nt[i], c[0], c[1])) {
                sb_errf(errbuf, errlen, "topic %s: setting %s", t->name, c[0]);
                goto done;
            }
        }
        /* With 3 or more replicas, an acknowledged job (acks=all) is on two
         * brokers at least: one can be lost without losing it, and writes
         * go on while one is away. */
        if (!isr_set && rf >= 3 &&
            rd_kafka_NewTopic_set_config(nt[i], "min.insync.replicas", "2")) {
            sb_errf(errbuf, errlen, "topic %s: setting min.insync.replicas", t->name);
            goto done;
        }
    }
    rd_kafka_CreateTopics(rk, nt, n, opts, q);
    /* The Admin API always answers, at the latest when its timeouts pass. */
    ev = rd_kafka_queue_poll(q, timeout_ms + 5000);
    if (ev == NULL || rd_kafka_event_error(ev)) {
        sb_errf(errbuf, errlen, "create topics: %s",
                ev ? rd_kafka_event_error_string(ev) : "no answer");
        goto done;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t r = 0; r < cnt; r++)
        for (size_t i = 0; i < n; i++) {
            struct kafka_topic_result *o = &out[idx[i]];
            if (strcmp(specs[idx[i]].name, rd_kafka_topic_result_name(res[r])) != 0)
                continue;
            rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(res[r]);
            if (terr == RD_KAFKA_RESP_ERR_NO_ERROR) {
                o->outcome = TOPIC_CREATED;
                o->partitions = specs[idx[i]].partitions;
            } else if (terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                o->outcome = TOPIC_EXISTS; /* made meanwhile: compared by the caller */
            } else {
                o->outcome = TOPIC_FAILED;
                const char *why = rd_kafka_topic_result_error_string(res[r]);
                snprintf(o->error, sizeof o->error, "%s", why ? why : rd_kafka_err2str(terr));
            }
        }
    ok = true;
done:
    if (ev)
        rd_kafka_event_destroy(ev);
    for (size_t i = 0; nt && i < n && nt[i]; i++) /* those made before a failure, or all */
        rd_kafka_NewTopic_destroy(nt[i]);
    free(nt);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (q)
        rd_kafka_queue_destroy(q);
    return ok;
}

/* The admin client's last error that no retry will mend (credentials,
 * TLS), kept by on_admin_error for kafka_topics_ensure's answer. */
struct admin_state {
    rd_kafka_resp_err_t fatal;
    char reason[384];
};

static void on_admin_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct admin_state *a = opaque;
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL ||
        err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED || err == RD_KAFKA_RESP_ERR__FATAL) {
        a->fatal = (rd_kafka_resp_err_t)err;
        snprintf(a->reason, sizeof a->reason, "%s", reason);
    }
    kafka_error_cb(rk, err, reason, NULL);
}

/* Metadata of the whole cluster within timeout_ms, asked in 1 s steps so
 * that an authentication or TLS failure ends the wait at once, with its
 * reason, instead of a timeout's "transport failure" 30 s later. */
static rd_kafka_resp_err_t admin_metadata(rd_kafka_t *rk, struct admin_state *a,
                                          const struct rd_kafka_metadata **md, int timeout_ms)
{
    int64_t deadline = sb_mono_ms() + timeout_ms;
    rd_kafka_resp_err_t err;
    do {
        err = rd_kafka_metadata(rk, 1, NULL, md, 1000);
        rd_kafka_poll(rk, 0); /* serves on_admin_error */
    } while (err && !a->fatal && sb_mono_ms() < deadline);
    return err;
}

bool kafka_topics_ensure(const char *brokers, const char *extra_conf,
                         const struct kafka_topic_spec *specs, size_t n,
                         struct kafka_topic_result *out, int timeout_ms, char *errbuf, size_t errlen)
{
    bool ok = false;
    rd_kafka_t *rk = NULL;
    const struct rd_kafka_metadata *md = NULL;
    size_t *missing = calloc(n ? n : 1, sizeof *missing);
    struct admin_state admin = {0};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[512];
    if (missing == NULL || conf == NULL) {
        sb_errf(errbuf, errlen, "out of memory");
        goto done;
    }
    if (!kafka_conf_set(conf, "bootstrap.servers", brokers, errbuf, errlen) ||
        !kafka_conf_set(conf, "client.id", "switchboard-migrate", errbuf, errlen) ||
        !kafka_conf_apply(conf, extra_conf, errbuf, errlen))
        goto done;
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, on_admin_error);
    rd_kafka_conf_set_opaque(conf, &admin);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (rk == NULL) {
        sb_errf(errbuf, errlen, "kafka client: %s", e);
        goto done;
    }
    conf = NULL;
    rd_kafka_resp_err_t err = admin_metadata(rk, &admin, &md, timeout_ms);
    if (err) {
        sb_errf(errbuf, errlen, "metadata from %s: %s", brokers,
                admin.fatal ? admin.reason : rd_kafka_err2str(err));
        goto done;
    }
    if (md->broker_cnt == 0) {
        sb_errf(errbuf, errlen, "metadata from %s lists no broker yet", brokers);
        goto done;
    }
    int replication = md->broker_cnt < 3 ? md->broker_cnt : 3;
    size_t nmissing = 0;
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        int have = metadata_partitions(md, specs[i].name);
        if (have < 0)
            missing[nmissing++] = i;
        out[i].outcome = have < 0 ? TOPIC_FAILED : have == specs[i].partitions ? TOPIC_EXISTS : TOPIC_DIFFERS;
        out[i].partitions = have;
    }
    if (nmissing && !create_topics(rk, specs, missing, nmissing, replication, out, timeout_ms,
                                   errbuf, errlen))
        goto done;
    /* Topics another migrator made meanwhile: compare them as well, in
     * one fresh look at the cluster. */
    bool raced = false;
    for (size_t k = 0; k < nmissing; k++)
        raced = raced || out[missing[k]].outcome == TOPIC_EXISTS;
    if (raced) {
        rd_kafka_metadata_destroy(md);
        md = NULL;
        if (rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
            md = NULL; /* left as "exists": their count is not known */
    }
    for (size_t k = 0; raced && md && k < nmissing; k++) {
        struct kafka_topic_result *o = &out[missing[k]];
        if (o->outcome != TOPIC_EXISTS)
            continue;
        o->partitions = metadata_partitions(md, specs[missing[k]].name);
        if (o->partitions != specs[missing[k]].partitions)
            o->outcome = TOPIC_DIFFERS;
    }
    ok = true;
done:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (rk)
        rd_kafka_destroy(rk);
    free(missing);
    return ok;
}

