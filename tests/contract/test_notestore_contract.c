/* Contract tests of the notification store (store/notestore*.c): one
 * suite, both backends.
 *
 * MONGO_URI set: the MongoDB backend (FerretDB started by the caller, or a
 * real MongoDB when the caller's MONGO_URI names one); otherwise the
 * MySQL backend at MYSQL_URL (a real MariaDB with the schema migrated).
 * Run by tests/integration/test_notestore_contract.py. Ids carry a random
 * part so the suite can run again against the same database.
 *
 * MongoDB's indexes are declared in schema/mongo/indexes.json (what an
 * operator reads) and made by notestore_mongo.c from its own copy of the
 * specs; test_indexes_as_declared keeps the two the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "notestore.h"

static struct sb_config cfg;
static struct notestore *store;
static char run[17]; /* random part of every id of this run */

static void make_note(struct note *n, const char *id_suffix, const char *idem, const char *tracking,
                      int64_t item)
{
    memset(n, 0, sizeof *n);
    snprintf(n->id, sizeof n->id, "%s%s", run, id_suffix);
    n->channel = CH_SMS;
    snprintf(n->to, sizeof n->to, "+12125550002");
    if (idem)
        snprintf(n->idem, sizeof n->idem, "%s-%s", run, idem);
    snprintf(n->fingerprint, sizeof n->fingerprint, "00112233445566ff");
    if (tracking)
        snprintf(n->tracking_id, sizeof n->tracking_id, "%s%s", run, tracking);
    n->item = item;
    n->status = NOTE_QUEUED;
    n->created_ms = n->updated_ms = sb_now_ms();
}

static bool claim(const struct note *n, struct note *existing)
{
    char err[ERRBUF_LEN];
    bool created = false;
    enum db_status st = notestore_claim(store, n, &created, existing, err, sizeof err);
    if (st != DB_OK)
        fail_msg("claim: %s", err);
    return created;
}

static void test_claim_get_update(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    struct note n, got, existing;
    bool found;
    make_note(&n, "a1", "key-a", NULL, 0);
    assert_true(claim(&n, &existing));
    assert_int_equal(notestore_get(store, n.id, &got, &found, err, sizeof err), DB_OK);
    assert_true(found);
    assert_string_equal(got.id, n.id);
    assert_int_equal(got.channel, CH_SMS);
    assert_string_equal(got.to, "+12125550002");
    assert_string_equal(got.idem, n.idem);
    assert_string_equal(got.fingerprint, n.fingerprint);
    assert_int_equal(got.status, NOTE_QUEUED);
    assert_int_equal(got.attempts, 0);
    assert_int_equal(got.created_ms, n.created_ms);

    /* The machine: queued -> sending -> sent, each move applied and in
     * the history with its time. */
    bool applied;
    n.status = NOTE_SENDING;
    n.attempts = 2;
    n.updated_ms = n.created_ms + 1000;
    assert_int_equal(notestore_update(store, &n, &applied, err, sizeof err), DB_OK);
    assert_true(applied);
    n.status = NOTE_SENT;
    snprintf(n.last_error, sizeof n.last_error, "provider answered HTTP 500 – ünïcode");
    snprintf(n.provider_id, sizeof n.provider_id, "SM0123456789abcdef");
    n.updated_ms = n.created_ms + 1234;
    assert_int_equal(notestore_update(store, &n, &applied, err, sizeof err), DB_OK);
    assert_true(applied);
    assert_int_equal(notestore_get(store, n.id, &got, &found, err, sizeof err), DB_OK);
    assert_int_equal(got.status, NOTE_SENT);
    assert_int_equal(got.attempts, 2);
    assert_string_equal(got.last_error, n.last_error);
    assert_int_equal(got.updated_ms, n.created_ms + 1234);
    assert_string_equal(got.provider_id, "SM0123456789abcdef");
    assert_string_equal(got.redrive_of, ""); /* never redriven */

    /* The provider's callback: delivered, without touching attempts or the
     * provider id; then a late "sent" changes nothing, nor does a second
     * "delivered" add to the history. */
    struct note cb = n;
    cb.status = NOTE_DELIVERED;
    cb.attempts = -1;
    cb.provider_id[0] = '\0';
    cb.last_error[0] = '\0';
    cb.updated_ms = n.created_ms + 2000;
    assert_int_equal(notestore_update(store, &cb, &applied, err, sizeof err), DB_OK);
    assert_true(applied);
    assert_int_equal(notestore_update(store, &cb, &applied, err, sizeof err), DB_OK);
    assert_true(applied); /* the same status again: a no-op, not a refusal */
    n.updated_ms = n.created_ms + 3000;
    assert_int_equal(notestore_update(store, &n, &applied, err, sizeof err), DB_OK);
    assert_false(applied);
    assert_int_equal(notestore_get(store, n.id, &got, &found, err, sizeof err), DB_OK);
    assert_int_equal(got.status, NOTE_DELIVERED);
    assert_int_equal(got.attempts, 2);
    assert_string_equal(got.provider_id, "SM0123456789abcdef");
    cJSON *h = cJSON_CreateArray();
    assert_int_equal(notestore_history(store, n.id, h, err, sizeof err), DB_OK);
    char *text = cJSON_PrintUnformatted(h);
    char want[512];
    snprintf(want, sizeof want,
             "[{\"status\":\"queued\",\"at\":%lld},{\"status\":\"sending\",\"at\":%lld},"
             "{\"status\":\"sent\",\"at\":%lld},{\"status\":\"delivered\",\"at\":%lld}]",
             (long long)n.created_ms, (long long)n.created_ms + 1000, (long long)n.created_ms + 1234,
             (long long)n.created_ms + 2000);
    assert_string_equal(text, want);
    free(text);
    cJSON_Delete(h);

    /* A redrive is recorded, and an update without one keeps it; a dead
     * one's history says why. */
    struct note d;
    make_note(&d, "a2", NULL, NULL, 0);
    assert_true(claim(&d, &existing));
    d.status = NOTE_DEAD;
    snprintf(d.last_error, sizeof d.last_error, "gave up after 3 attempts");
    assert_int_equal(notestore_update(store, &d, &applied, err, sizeof err), DB_OK);
    assert_true(applied);
    snprintf(d.redrive_of, sizeof d.redrive_of, "notify.requests.dlq/3/41");
    d.status = NOTE_QUEUED;
    assert_int_equal(notestore_update(store, &d, &applied, err, sizeof err), DB_OK);
    assert_true(applied);
    d.redrive_of[0] = '\0';
    d.status = NOTE_DEAD;
    assert_int_equal(notestore_update(store, &d, &applied, err, sizeof err), DB_OK);
    assert_int_equal(notestore_get(store, d.id, &got, &found, err, sizeof err), DB_OK);
    assert_int_equal(got.status, NOTE_DEAD);
    assert_string_equal(got.redrive_of, "notify.requests.dlq/3/41");
    h = cJSON_CreateArray();
    assert_int_equal(notestore_history(store, d.id, h, err, sizeof err), DB_OK);
    assert_int_equal(cJSON_GetArraySize(h), 4);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(h, 1), "detail")),
                        "gave up after 3 attempts");
    cJSON_Delete(h);
    /* Cancelled only from scheduled: a queued one is not. */
    d.status = NOTE_CANCELLED;
    assert_int_equal(notestore_update(store, &d, &applied, err, sizeof err), DB_OK);
    assert_false(applied);

    char unknown[80];
    snprintf(unknown, sizeof unknown, "%snope", run);
    assert_int_equal(notestore_get(store, unknown, &got, &found, err, sizeof err), DB_OK);
    assert_false(found);
}

/* A redelivered notification finds its own record. */
static void test_claim_same_id(void **state)
{
    (void)state;
    struct note n, existing;
    make_note(&n, "b1", "key-b", NULL, 0);
    assert_true(claim(&n, &existing));
    assert_false(claim(&n, &existing));
    assert_string_equal(existing.id, n.id);
}

/* The unique idempotency key: a second notification with the key finds
 * the first one's record. */
static void test_claim_same_key(void **state)
{
    (void)state;
    struct note first, second, existing;
    make_note(&first, "c1", "key-c", NULL, 0);
    make_note(&second, "c2", "key-c", NULL, 0);
    snprintf(second.fingerprint, sizeof second.fingerprint, "ffeeddccbbaa9988");
    assert_true(claim(&first, &existing));
    assert_false(claim(&second, &existing));
    assert_string_equal(existing.id, first.id);
    assert_string_equal(existing.fingerprint, first.fingerprint);
    /* Looked up by the key: the first one's record. */
    char err[256];
    bool found = false;
    struct note got;
    assert_int_equal(notestore_find_idem(store, first.idem, &got, &found, err, sizeof err), DB_OK);
    assert_true(found);
    assert_string_equal(got.id, first.id);
    char other[sizeof first.idem + 2];
    snprintf(other, sizeof other, "%s-x", first.idem);
    assert_int_equal(notestore_find_idem(store, other, &got, &found, err, sizeof err), DB_OK);
    assert_false(found);
}

/* Notifications without a key never collide with each other. */
static void test_no_key_no_collision(void **state)
{
    (void)state;
    struct note a, b, existing;
    make_note(&a, "d1", NULL, NULL, 0);
    make_note(&b, "d2", NULL, NULL, 0);
    assert_true(claim(&a, &existing));
    assert_true(claim(&b, &existing));
}

static void test_tracking(void **state)
{
    (void)state;
    char err[ERRBUF_LEN], tracking[80];
    struct note n, existing;
    struct note_tracking t;
    bool found;
    snprintf(tracking, sizeof tracking, "%strk1", run);
    cJSON *errors = cJSON_Parse("[{\"index\":3,\"reason\":\"toPhoneNumber must be E.164\"}]");
    assert_int_equal(notestore_track_put(store, tracking, 4, errors, sb_now_ms(), err, sizeof err), DB_OK);
    /* Again: no change, no error. */
    assert_int_equal(notestore_track_put(store, tracking, 99, errors, sb_now_ms(), err, sizeof err), DB_OK);
    cJSON_Delete(errors);
    const enum note_status statuses[] = {NOTE_SENT, NOTE_DEAD, NOTE_QUEUED};
    for (int i = 0; i < 3; i++) {
        char suffix[8];
        snprintf(suffix, sizeof suffix, "t%d", i);
        make_note(&n, suffix, NULL, "trk1", i);
        assert_true(claim(&n, &existing));
        bool applied;
        if (statuses[i] == NOTE_SENT) { /* by way of sending, as the machine goes */
            n.status = NOTE_SENDING;
            assert_int_equal(notestore_update(store, &n, &applied, err, sizeof err), DB_OK);
        }
        n.status = statuses[i];
        if (statuses[i] == NOTE_DEAD)
            snprintf(n.last_error, sizeof n.last_error, "gave up after 3 attempts");
        assert_int_equal(notestore_update(store, &n, &applied, err, sizeof err), DB_OK);
        assert_true(applied);
    }
    assert_int_equal(notestore_track_get(store, tracking, &t, &found, err, sizeof err), DB_OK);
    assert_true(found);
    assert_int_equal(t.total, 4);
    assert_int_equal(t.rejected, 1);
    assert_int_equal(t.counts[NOTE_SENT], 1);
    assert_int_equal(t.counts[NOTE_DEAD], 1);
    assert_int_equal(t.counts[NOTE_QUEUED], 1);
    assert_int_equal(cJSON_GetArraySize(t.errors), 2);
    char *text = cJSON_PrintUnformatted(t.errors);
    assert_string_equal(text, "[{\"index\":3,\"reason\":\"toPhoneNumber must be E.164\"},"
                              "{\"index\":1,\"reason\":\"gave up after 3 attempts\"}]");
    free(text);
    cJSON_Delete(t.errors);

    snprintf(tracking, sizeof tracking, "%strk-none", run);
    assert_int_equal(notestore_track_get(store, tracking, &t, &found, err, sizeof err), DB_OK);
    assert_false(found);
}

/* A server that is not there is a passing failure (retry later), reported
 * within a bounded time, never a crash or a hang. */
static void test_unreachable_is_transient(void **state)
{
    (void)state;
    char err[ERRBUF_LEN];
    struct sb_config away = cfg;
    const char *kind = notestore_kind(store);
    away.mongo_uri = strcmp(kind, "mongodb") == 0 ? "mongodb://127.0.0.1:9/x?serverSelectionTimeoutMS=300" : "";
    away.mysql_url = "mysql://u:p@127.0.0.1:9/x";
    struct notestore *s = notestore_new(&away, err, sizeof err);
    assert_non_null(s);
    int64_t t0 = sb_mono_ms();
    assert_int_equal(notestore_ping(s, err, sizeof err), DB_TRANSIENT);
    struct note n, existing;
    bool created;
    make_note(&n, "z1", NULL, NULL, 0);
    assert_int_equal(notestore_claim(s, &n, &created, &existing, err, sizeof err), DB_TRANSIENT);
    assert_true(strlen(err) > 0);
    assert_true(sb_mono_ms() - t0 < 10000);
    notestore_free(s);
}

/* The indexes of a collection as the server lists them, by name ("_id_"
 * left out); NULL on an error other than a collection never made. */
static cJSON *list_indexes(mongoc_client_t *client, const char *db, const char *name)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, name);
    mongoc_cursor_t *c = mongoc_collection_find_indexes_with_opts(coll, NULL);
    cJSON *have = cJSON_CreateObject();
    const bson_t *doc;
    while (mongoc_cursor_next(c, &doc)) {
        char *text = bson_as_relaxed_extended_json(doc, NULL);
        char err[ERRBUF_LEN];
        cJSON *spec = text ? json_parse_strict(text, strlen(text), err, sizeof err) : NULL;
        bson_free(text);
        const char *iname = spec ? json_str(spec, "name", "") : "";
        if (spec && strcmp(iname, "_id_") != 0)
            cJSON_AddItemToObject(have, iname, spec);
        else
            cJSON_Delete(spec);
    }
    bson_error_t e;
    if (mongoc_cursor_error(c, &e) && e.code != 26 /* NamespaceNotFound */) {
        print_error("listIndexes %s: %s\n", name, e.message);
        cJSON_Delete(have);
        have = NULL;
    }
    mongoc_cursor_destroy(c);
    mongoc_collection_destroy(coll);
    return have;
}

/* Same JSON text (key order matters in an index key), or both absent. */
static void assert_same_json(const cJSON *want, const cJSON *got, const char *what)
{
    if (want == NULL && got == NULL)
        return;
    char *w = want ? json_print(want) : NULL, *g = got ? json_print(got) : NULL;
    if (!w || !g || strcmp(w, g) != 0)
        fail_msg("%s: declared %s, server has %s", what, w ? w : "(none)", g ? g : "(none)");
    free(w);
    free(g);
}

/* Whether the server makes partial indexes: FerretDB 1.x answers
 * NotImplemented (238), and the store falls back to a plain unique index
 * (notestore_mongo.c's ensure_indexes). Tried on a scratch collection. */
static bool server_has_partial_indexes(mongoc_client_t *client, const char *db)
{
    char name[64];
    snprintf(name, sizeof name, "sb_probe_%s", run);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, name);
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(name), "indexes", "[", "{", "name", BCON_UTF8("p"), "key",
                           "{", "k", BCON_INT32(1), "}", "partialFilterExpression", "{", "k", "{", "$exists",
                           BCON_BOOL(true), "}", "}", "}", "]");
    bson_t reply;
    bson_error_t e;
    bool ok = mongoc_collection_command_simple(coll, cmd, NULL, &reply, &e);
    bson_destroy(&reply);
    bson_destroy(cmd);
    if (!ok && e.code != 238)
        fail_msg("createIndexes on %s: %s", name, e.message);
    (void)mongoc_collection_drop(coll, NULL);
    mongoc_collection_destroy(coll);
    return ok;
}

static void test_indexes_as_declared(void **state)
{
    (void)state;
    if (strcmp(notestore_kind(store), "mongodb") != 0)
        skip();
    struct note n, existing;
    make_note(&n, "i1", "key-i", "trk-i", 0);
    claim(&n, &existing); /* the store makes its indexes on first use */

    char path[1024], err[ERRBUF_LEN];
    snprintf(path, sizeof path, "%s/schema/mongo/indexes.json", SB_SOURCE_DIR);
    size_t len;
    char *text = sb_read_file(path, &len, err, sizeof err);
    cJSON *decl = text ? json_parse_strict(text, len, err, sizeof err) : NULL;
    free(text);
    if (decl == NULL)
        fail_msg("%s: %s", path, err);

    mongoc_client_t *client = mongoc_client_new(cfg.mongo_uri);
    assert_non_null(client);
    const char *db = mongoc_uri_get_database(mongoc_client_get_uri(client));
    bool partial = server_has_partial_indexes(client, db ? db : "switchboard");
    if (!partial)
        print_message("server without partial indexes (FerretDB): the key's unique index is plain; "
                      "test_no_key_no_collision holds what the filter is for\n");
    int collections = 0;
    const cJSON *coll;
    cJSON_ArrayForEach(coll, decl) {
        if (!cJSON_IsArray(coll))
            continue; /* "description" */
        collections++;
        cJSON *have = list_indexes(client, db ? db : "switchboard", coll->string);
        assert_non_null(have);
        assert_int_equal(cJSON_GetArraySize(have), cJSON_GetArraySize(coll));
        const cJSON *spec;
        cJSON_ArrayForEach(spec, coll) {
            const char *iname = json_str(spec, "name", "");
            const cJSON *got = cJSON_GetObjectItemCaseSensitive(have, iname);
            if (got == NULL)
                fail_msg("index %s.%s is declared but the server does not have it", coll->string, iname);
            assert_same_json(cJSON_GetObjectItemCaseSensitive(spec, "key"),
                             cJSON_GetObjectItemCaseSensitive(got, "key"), iname);
            assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(spec, "unique")),
                             cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(got, "unique")));
            assert_same_json(partial ? cJSON_GetObjectItemCaseSensitive(spec, "partialFilterExpression") : NULL,
                             cJSON_GetObjectItemCaseSensitive(got, "partialFilterExpression"), iname);
        }
        cJSON_Delete(have);
    }
    assert_int_equal(collections, 2);
    mongoc_client_destroy(client);
    cJSON_Delete(decl);
}

int main(void)
{
    char err[ERRBUF_LEN];
    cfg.mongo_uri = getenv("MONGO_URI") ? getenv("MONGO_URI") : "";
    cfg.mysql_url = getenv("MYSQL_URL") ? getenv("MYSQL_URL") : "";
    unsigned char r[8];
    if (!sb_random_bytes(r, sizeof r))
        return 2;
    for (int i = 0; i < 8; i++)
        snprintf(run + 2 * i, 3, "%02x", r[i]);
    if (mysql_library_init(0, NULL, NULL) != 0)
        return 2;
    store = notestore_new(&cfg, err, sizeof err);
    if (store == NULL) {
        fprintf(stderr, "cannot make the store: %s\n", err);
        return 2;
    }
    fprintf(stderr, "notification store contract: backend %s\n", notestore_kind(store));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_get_update),
        cmocka_unit_test(test_claim_same_id),
        cmocka_unit_test(test_claim_same_key),
        cmocka_unit_test(test_no_key_no_collision),
        cmocka_unit_test(test_tracking),
        cmocka_unit_test(test_unreachable_is_transient),
        cmocka_unit_test(test_indexes_as_declared),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    notestore_free(store);
    mysql_library_end();
    return rc;
}
