"""SMS and notifications end to end, with real peers on loopback: an SMTP
server (aiosmtpd) receives the emails, a recording HTTP endpoint stands in
for the SMS provider and the push webhook and can be told to fail, answer
429/500 or hang. Covers idempotent send, send-many tracking, every channel,
retries with backoff, dead letters, rate limits and other producers."""

import base64
import contextlib
import json
import os
import signal
import time
import unittest
import urllib.parse
import urllib.request

from harness import (FakeServer, StackTestCase, kcat, kcat_consume_all, kcat_produce, log_lines, metric_samples,
                     readme_block, request, wait_until, wait_worker_assigned)

FROM, TO, OTHER = "+12125550001", "+12125550002", "+12125550003"
UNASSIGNED = "+12125550999"
EVENTS_TOPIC = "notify.events"


def post_json(url, path, body=None):
    req = urllib.request.Request(url + path, data=json.dumps(body or {}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    return json.load(urllib.request.urlopen(req, timeout=10))


def tracking_done(case, tid, timeout=30):
    """GET /sms/requests/{tid} once its status is DONE."""
    return wait_until(f"tracking {tid} done", lambda: (lambda t: t if t["status"] == "DONE" else None)(
        case.http("GET", f"/sms/requests/{tid}").json()), timeout)


class TestNotify(StackTestCase):
    ROLES = ("notifier",)
    MAX_ATTEMPTS = 3

    @classmethod
    def configure(cls, stack):
        cls.provider = FakeServer("provider.py", stack.path("logs"), folder="scripts/dev")
        cls.mail_file = stack.path("logs", "mail.jsonl")
        # aiosmtpd is Debian's package: run it with Debian's interpreter.
        cls.smtp = FakeServer("smtp_sink.py", stack.path("logs"), folder="scripts/dev",
                              python="/usr/bin/python3", args=(cls.mail_file,))
        stack.extra_env.update({
            "SB_SMTP_URL": f"smtp://127.0.0.1:{cls.smtp.port}",
            "SB_SMS_URL": f"http://ACtest:s3cret@127.0.0.1:{cls.provider.port}/sms",
            "SB_PUSH_URL": f"http://127.0.0.1:{cls.provider.port}/push",
            "SB_NOTIFY_TOPICS": EVENTS_TOPIC,
            "SB_NOTIFY_MAX_ATTEMPTS": str(cls.MAX_ATTEMPTS),
            "SB_NOTIFY_BACKOFF_MS": "400",
            "SB_NOTIFY_BACKOFF_CAP_MS": "2000",
            "SB_NOTIFY_TIMEOUT_MS": "1000",
            # Above the timeout: the tests before test_24 see every delivery
            # of a batch end before the next batch starts.
            "SB_NOTIFY_STRAGGLER_MS": "5000",
            "SB_RATE_EMAIL": "5",
        })

    @classmethod
    def setUpClass(cls):
        try:
            super().setUpClass()
        except Exception:
            cls.provider.stop()
            cls.smtp.stop()
            raise
        cls.stack.seed(users=10, numbers=0, area_codes="212")
        for user, phone in ((1, FROM), (2, TO), (3, OTHER)):
            cls.stack.sql(f"UPDATE users SET phone_number='{phone}' WHERE user_id={user}")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.provider.stop()
        cls.smtp.stop()

    def setUp(self):
        post_json(self.provider.url, "/_reset")

    # -- helpers -----------------------------------------------------------
    def sms(self, key, frm=FROM, to=TO, content="hello"):
        return {"sms": {"idempotencyKey": key, "fromPhoneNumber": frm, "toPhoneNumber": to,
                        "content": content}}

    def records(self, path=None):
        with urllib.request.urlopen(self.provider.url + "/_records", timeout=10) as r:
            recs = json.load(r)
        return [x for x in recs if path is None or x["path"] == path]

    def fail_next(self, n, status=500, hang=0):
        post_json(self.provider.url, "/_control", {"fail": n, "status": status, "hang": hang})

    def note(self, nid):
        r = self.http("GET", f"/v1/messages/{nid}")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def wait_status(self, nid, status, timeout=30):
        def reached():
            r = self.http("GET", f"/v1/messages/{nid}")
            if r.status == 404:  # produced by another program: unknown until the notifier records it
                return None
            self.assertEqual(r.status, 200, r)
            return r.json() if r.json()["status"] == status else None
        return wait_until(f"notification {nid} {status}", reached, timeout)

    def mails(self):
        try:
            with open(self.mail_file) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    # -- SMS -----------------------------------------------------------------
    def test_01_send_one_is_idempotent(self):
        r = self.http("POST", "/sms/send/one", self.sms("order-1", content="Your code is 1234"))
        self.assertEqual((r.status, r.json()), (200, {"sent": True}))
        recs = wait_until("the SMS delivered", lambda: self.records("/sms"), 30)
        r = self.http("POST", "/sms/send/one", self.sms("order-1", content="Your code is 1234"))
        self.assertEqual((r.status, r.json()), (200, {"sent": True}))
        time.sleep(1.5)
        recs = self.records("/sms")
        self.assertEqual(len(recs), 1, recs)
        form = dict(urllib.parse.parse_qsl(recs[0]["body"]))
        self.assertEqual(form, {"To": TO, "From": FROM, "Body": "Your code is 1234"})
        self.assertEqual(recs[0]["headers"]["Authorization"],
                         "Basic " + base64.b64encode(b"ACtest:s3cret").decode())
        self.assertEqual(recs[0]["headers"]["Content-Type"], "application/x-www-form-urlencoded")
        self.assertTrue(recs[0]["headers"]["Idempotency-Key"])
        # The same key with different content is a client error, and sends nothing.
        r = self.http("POST", "/sms/send/one", self.sms("order-1", content="Your code is 9999"))
        self.assertEqual(r.status, 422, r)
        self.assertEqual(r.json()["error"]["code"], "idempotency_mismatch")
        # The durable half: one record holds the key in the store.
        self.assertEqual(self.stack.sql("SELECT COUNT(*), MIN(status) FROM notifications"
                                        " WHERE idempotency_key='order-1'"), [["1", "sent"]])

    def test_02_unknown_numbers_and_bad_input(self):
        r = self.http("POST", "/sms/send/one", self.sms("k-unknown-from", frm=UNASSIGNED))
        self.assertEqual(r.status, 404, r)
        self.assertIn("fromPhoneNumber " + UNASSIGNED, r.json()["error"]["message"])
        r = self.http("POST", "/sms/send/one", self.sms("k-unknown-to", to=UNASSIGNED))
        self.assertEqual(r.status, 404, r)
        self.assertIn("toPhoneNumber " + UNASSIGNED, r.json()["error"]["message"])
        good = self.sms("k-bad")["sms"]
        cases = [
            b"{bad", {}, {"sms": "x"}, {"sms": {**good, "extra": 1}},
            {"sms": {k: v for k, v in good.items() if k != "idempotencyKey"}},
            {"sms": {**good, "fromPhoneNumber": "2125550001"}},
            {"sms": {**good, "toPhoneNumber": "+1212abc0002"}},
            {"sms": {**good, "content": ""}},
            {"sms": {**good, "content": "x" * 1601}},
            {"sms": {**good, "idempotencyKey": 5}},
        ]
        for body in cases:
            r = self.http("POST", "/sms/send/one", body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertTrue(r.json()["error"]["message"])
        time.sleep(1)
        self.assertEqual(self.records("/sms"), [])
        self.assertEqual(self.stack.sql("SELECT COUNT(*) FROM notifications WHERE idempotency_key LIKE 'k-%'"),
                         [["0"]])

    def test_03_one_key_twenty_times_concurrently_sends_once(self):
        results = self.parallel([("POST", "/sms/send/one", self.sms("burst-1", content="once"))] * 20, threads=20)
        statuses = sorted(r.status for r in results)
        self.assertIn(200, statuses)
        for r in results:
            self.assertIn(r.status, (200, 409), r)
            if r.status == 409:
                self.assertEqual(r.json()["error"]["code"], "in_progress")
        wait_until("delivered", lambda: self.records("/sms"), 30)
        time.sleep(1.5)
        self.assertEqual(len([x for x in self.records("/sms") if "once" in x["body"]]), 1)

    def test_04_send_many_with_tracking(self):
        items = [self.sms(f"many-{i}", to=TO if i % 2 else OTHER, content=f"item {i}") for i in range(4)]
        items.append(self.sms("many-bad", to="12345"))          # refused up front: bad number
        items.append(self.sms("many-unknown", to=UNASSIGNED))   # refused: not assigned
        r = self.http("POST", "/sms/send/many", items)
        self.assertEqual(r.status, 202, r)
        body = r.json()
        self.assertEqual(sorted(e["index"] for e in body["errors"]), [4, 5])
        tid = body["trackingId"]
        done = tracking_done(self, tid)
        self.assertEqual((done["total"], done["sent"], done["failed"], done["pending"]), (6, 4, 2, 0))
        self.assertEqual(sorted(e["index"] for e in done["errors"]), [4, 5])
        self.assertEqual(sorted(x["body"] for x in self.records("/sms")),
                         sorted(f"To=%2B1212555000{3 if i % 2 == 0 else 2}&From=%2B12125550001&Body=item%20{i}"
                                for i in range(4)))
        # NDJSON, with a line that is not JSON.
        nd = (json.dumps(self.sms("nd-1", content="nd one")) + "\n{oops\n\n" +
              json.dumps(self.sms("nd-2", content="nd two")) + "\n").encode()
        r = self.http("POST", "/sms/send/many", nd, headers={"Content-Type": "application/x-ndjson"})
        self.assertEqual(r.status, 202, r)
        self.assertEqual([e["index"] for e in r.json()["errors"]], [1])
        tid = r.json()["trackingId"]
        done = tracking_done(self, tid)
        self.assertEqual((done["total"], done["sent"], done["failed"]), (3, 2, 1))
        self.assertEqual(self.http("GET", "/sms/requests/0123456789abcdef").status, 404)
        self.assertEqual(self.http("GET", "/sms/requests/x'--").status, 400)
        self.assertEqual(self.http("POST", "/sms/send/many", []).status, 400)

    # -- channels ------------------------------------------------------------
    def test_05_email_through_smtp(self):
        r = self.http("POST", "/v1/messages", {"channel": "email", "to": "ada@example.com",
                                               "from": "ops@example.com", "title": "Grüße from switchboard",
                                               "payload": "line one\nline two\n.hidden dot", "idempotencyKey": "mail-1"})
        self.assertEqual(r.status, 202, r)
        nid = r.json()["id"]
        self.assertEqual(r.json()["status"], "queued")
        n = self.wait_status(nid, "sent")
        self.assertEqual((n["channel"], n["to"], n["attempts"], n["lastError"]), ("email", "ada@example.com", 1, None))
        mails = [m for m in self.mails() if "ada@example.com" in m["rcpt_tos"]]
        self.assertEqual(len(mails), 1)
        self.assertEqual(mails[0]["mail_from"], "ops@example.com")
        data = mails[0]["data"]
        self.assertIn("Subject: =?UTF-8?B?" + base64.b64encode("Grüße from switchboard".encode()).decode() + "?=", data)
        self.assertIn("To: <ada@example.com>", data)
        self.assertIn(f"Message-ID: <{nid}@switchboard>", data)
        self.assertTrue(data.rstrip().endswith("line one\nline two\n.hidden dot") or
                        "line one\r\nline two\r\n.hidden dot" in data or "line one\nline two\n.hidden dot" in data, data)
        # A repeat answers with the first notification's id.
        r = self.http("POST", "/v1/messages", {"channel": "email", "to": "ada@example.com",
                                               "from": "ops@example.com", "title": "Grüße from switchboard",
                                               "payload": "line one\nline two\n.hidden dot", "idempotencyKey": "mail-1"})
        self.assertEqual(r.json()["id"], nid)

    def test_06_rate_limit_is_respected(self):
        # SB_RATE_EMAIL=5: a burst of 5, then 5 per second. 15 emails take >= 2 s.
        ids = []
        for i in range(15):
            r = self.http("POST", "/v1/messages", {"channel": "email", "to": f"rate{i}@example.com",
                                                   "payload": "x"})
            self.assertEqual(r.status, 202, r)
            ids.append(r.json()["id"])
        for nid in ids:
            self.wait_status(nid, "sent")
        times = sorted(self.stack_times(ids))
        self.assertGreaterEqual(times[-1] - times[0], 1.8, times)

    def stack_times(self, ids):
        rows = self.stack.sql("SELECT updated_ms FROM notifications WHERE id IN (%s)" %
                              ",".join(f"'{i}'" for i in ids))
        return [int(r[0]) / 1000 for r in rows]

    def test_07_push_retries_with_backoff_then_sent(self):
        self.fail_next(2, status=500)
        r = self.http("POST", "/v1/messages", {"channel": "push", "to": "device-42", "title": "Hi",
                                               "payload": "{\"badge\":3}"})
        nid = r.json()["id"]
        n = self.wait_status(nid, "sent", 30)
        self.assertEqual(n["attempts"], 3)
        recs = self.records("/push")
        self.assertEqual([x["status"] for x in recs], [500, 500, 201])
        self.assertEqual(json.loads(recs[-1]["body"]), {"id": nid, "to": "device-42", "title": "Hi",
                                                         "body": "{\"badge\":3}"})
        gaps = [b["at"] - a["at"] for a, b in zip(recs, recs[1:])]
        # Backoff with jitter: attempt n waits within [base/2, base*2^(n-1)].
        self.assertGreaterEqual(gaps[0], 0.2 - 0.05, gaps)
        self.assertGreaterEqual(gaps[1], 0.2 - 0.05, gaps)
        self.assertEqual(len(kcat_consume_all(self.stack, "notify.retry")) >= 2, True)

    def test_08_dead_after_max_attempts_with_dead_letter(self):
        self.fail_next(100, status=429)
        r = self.http("POST", "/v1/messages", {"channel": "push", "to": "device-dead", "payload": "x"})
        nid = r.json()["id"]
        n = self.wait_status(nid, "dead", 30)
        self.assertEqual(n["attempts"], self.MAX_ATTEMPTS)
        self.assertIn("429", n["lastError"])
        self.assertEqual(len(self.records("/push")), self.MAX_ATTEMPTS)
        dead = wait_until("dead letter", lambda: [
            m for m in kcat_consume_all(self.stack, "notify.retry.dlq") + kcat_consume_all(self.stack, "notify.requests.dlq")
            if m["key"] == nid], 30, 0.5)
        self.assertIn("gave up after 3 attempts", dead[0]["headers"]["x-dlq-reason"])
        self.fail_next(0)

    def test_09_hanging_provider_times_out_and_retries(self):
        self.fail_next(1, status=200, hang=3)
        r = self.http("POST", "/v1/messages", {"channel": "sms", "to": TO, "payload": "after a hang"})
        nid = r.json()["id"]
        n = self.wait_status(nid, "sent", 30)
        self.assertEqual(n["attempts"], 2)
        recs = self.records("/sms")
        self.assertEqual([x["hung"] for x in recs], [True, False])

    def test_10_permanent_refusal_is_dead_at_once(self):
        self.fail_next(1, status=400)
        r = self.http("POST", "/v1/messages", {"channel": "push", "to": "device-x", "payload": "x"})
        n = self.wait_status(r.json()["id"], "dead", 30)
        self.assertEqual(n["attempts"], 1)
        self.assertIn("HTTP 400", n["lastError"])

    def test_11_kafka_channel(self):
        r = self.http("POST", "/v1/messages", {"channel": "kafka", "to": EVENTS_TOPIC, "payload": "{\"event\":\"signup\"}"})
        self.assertEqual(r.status, 202, r)
        nid = r.json()["id"]
        self.wait_status(nid, "sent")
        msgs = [m for m in kcat_consume_all(self.stack, EVENTS_TOPIC) if m["key"] == nid]
        self.assertEqual([m["payload"] for m in msgs], ["{\"event\":\"signup\"}"])
        r = self.http("POST", "/v1/messages", {"channel": "kafka", "to": "chat.commands", "payload": "x"})
        self.assertEqual(r.status, 400, r)
        self.assertIn(EVENTS_TOPIC, r.json()["error"]["message"])

    def test_12_other_producers_and_poison(self):
        nid = "external0000000001"
        job = {"type": "notify.send", "version": 1, "key": nid, "request_id": "ext-1",
               "created_at": int(time.time() * 1000),
               "payload": {"id": nid, "channel": "push", "to": "device-ext", "body": "from kcat"}}
        kcat_produce(self.stack, "notify.requests", nid, json.dumps(job).encode())
        self.wait_status(nid, "sent")
        self.assertEqual([json.loads(x["body"])["body"] for x in self.records("/push")], ["from kcat"])
        bad = dict(job, key="external0000000002", payload=dict(job["payload"], id="external0000000002",
                                                                channel="fax"))
        kcat_produce(self.stack, "notify.requests", bad["key"], json.dumps(bad).encode())
        kcat_produce(self.stack, "notify.requests", "junk", b"{not json")
        dead = wait_until("both dead-lettered", lambda: (lambda ms: ms if len(ms) >= 2 else None)(
            [m for m in kcat_consume_all(self.stack, "notify.requests.dlq") if m["key"] in ("external0000000002", "junk")]), 30, 0.5)
        reasons = {m["key"]: m["headers"]["x-dlq-reason"] for m in dead}
        self.assertIn("channel", reasons["external0000000002"])
        self.assertTrue(reasons["junk"])
        self.assertEqual(self.note("external0000000002")["status"], "dead")
        # The consumer went on: a later job is delivered.
        r = self.http("POST", "/v1/messages", {"channel": "push", "to": "device-after", "payload": "after"})
        self.wait_status(r.json()["id"], "sent")

    def test_13_bad_requests_and_unknown_ids(self):
        cases = [
            {"channel": "fax", "to": "x", "payload": "x"},
            {"channel": "email", "to": "not-an-address", "payload": "x"},
            {"channel": "email", "to": "a@b.c", "payload": "x", "title": "two\r\nBcc: evil@x"},
            {"channel": "sms", "to": "12345", "payload": "x"},
            {"channel": "sms", "to": TO, "payload": ""},
            {"channel": "push", "to": "has space", "payload": "x"},
            {"channel": "push", "to": "d", "payload": {"object": True}},
            {"channel": "push", "to": "d"},
            {"channel": "push", "to": "d", "payload": "x", "extra": 1},
        ]
        for body in cases:
            r = self.http("POST", "/v1/messages", body)
            self.assertEqual(r.status, 400, (body, r))
        self.assertEqual(self.http("GET", "/v1/messages/0123456789abcdef0123456789abcdef").status, 404)
        self.assertEqual(self.http("GET", "/v1/messages/x").status, 400)

    def test_15_store_stops_a_repeat_redis_forgot(self):
        """The durable half of idempotency: Redis lost the key (expired,
        flushed), the repeat is enqueued again, the store's unique index
        keeps it from going out twice; reused with other content, the job
        is dead-lettered with its reason."""
        r = self.http("POST", "/sms/send/one", self.sms("durable-1", content="durable"))
        self.assertEqual(r.status, 200, r)
        wait_until("delivered", lambda: self.records("/sms"), 30)
        self.assertEqual(self.redis_cli("DEL", "sb:idem:durable-1"), "1")
        r = self.http("POST", "/sms/send/one", self.sms("durable-1", content="durable"))
        self.assertEqual((r.status, r.json()), (200, {"sent": True}))
        self.assertEqual(self.redis_cli("DEL", "sb:idem:durable-1"), "1")
        r = self.http("POST", "/sms/send/one", self.sms("durable-1", content="changed"))
        self.assertEqual(r.status, 200, r)  # Redis forgot: only the notifier can tell now
        dead = wait_until("the reuse dead-lettered", lambda: [
            m for m in kcat_consume_all(self.stack, "notify.requests.dlq")
            if "idempotency key reused" in m["headers"].get("x-dlq-reason", "")], 30, 0.5)
        self.assertEqual(len(dead), 1)
        time.sleep(1)
        self.assertEqual(len([x for x in self.records("/sms") if "durable" in x["body"] or "changed" in x["body"]]), 1)
        self.assertEqual(self.stack.sql("SELECT COUNT(*) FROM notifications WHERE idempotency_key='durable-1'"),
                         [["1"]])

    def test_16_a_slow_provider_gets_deliveries_at_once(self):
        """A notifier delivers notify_concurrency notifications at once (8 by
        default): a provider that takes 0.5 s per SMS has several in
        progress at a time, and each SMS arrives exactly once. One at a
        time, every delivery would find itself alone there."""
        post_json(self.provider.url, "/_control", {"delay": 0.5})
        r = self.http("POST", "/sms/send/many", [self.sms(f"slow-{i}", content=f"slow {i}") for i in range(8)])
        self.assertEqual(r.status, 202, r)
        tid = r.json()["trackingId"]
        done = tracking_done(self, tid, 60)
        self.assertEqual((done["total"], done["sent"], done["failed"]), (8, 8, 0))
        recs = self.records("/sms")
        self.assertEqual(sorted(dict(urllib.parse.parse_qsl(x["body"]))["Body"] for x in recs),
                         [f"slow {i}" for i in range(8)])
        self.assertGreaterEqual(max(x["in_flight"] for x in recs), 2, [x["in_flight"] for x in recs])

    def test_17_a_job_twice_in_one_batch_goes_out_once(self):
        """A producer's repeat can sit beside its original in one batch. Jobs
        with the same id go to the same sender, one after the other, so the
        repeat finds the notification sent; on two senders at once both
        would deliver it."""
        post_json(self.provider.url, "/_control", {"delay": 0.3})
        nid = "external0000000017"
        job = {"type": "notify.send", "version": 1, "key": nid, "request_id": "ext-17",
               "created_at": int(time.time() * 1000),
               "payload": {"id": nid, "channel": "push", "to": "device-twice", "body": "twice"}}
        kcat_produce(self.stack, "notify.requests", nid, json.dumps(job).encode(), copies=2)
        self.wait_status(nid, "sent")
        time.sleep(1)
        self.assertEqual([json.loads(x["body"])["id"] for x in self.records("/push")], [nid])
        self.assertEqual(self.note(nid)["attempts"], 1)

    def test_20_a_repeat_follows_its_id_before_a_shared_key(self):
        """B, A, then a repeat of A that carries B's idempotency key, in one
        batch: the repeat must go to A's sender (same id), not B's (same
        key), or it would be delivered beside A. B is invalid (a channel
        that does not exist), so its sender is free again at once."""
        post_json(self.provider.url, "/_control", {"delay": 0.5})
        now = int(time.time() * 1000)

        def job(nid, key, channel):
            return json.dumps({"type": "notify.send", "version": 1, "key": nid, "request_id": f"r-{nid}",
                               "created_at": now, "payload": {"id": nid, "channel": channel, "to": "device-order",
                                                              "body": "order", "idempotency_key": key}}).encode()
        a, b = "external000000017a", "external000000017b"
        lines = [job(b, "order-key-b", "fax"), job(a, "order-key-a", "push"), job(a, "order-key-b", "push")]
        kcat(self.stack, "-P", "-t", "notify.requests", "-k", "order", data=b"\n".join(lines) + b"\n")
        self.wait_status(a, "sent")
        self.assertEqual(self.note(b)["status"], "dead")
        time.sleep(1)
        self.assertEqual([json.loads(x["body"])["id"] for x in self.records("/push")], [a])

    def test_21_a_slow_delivery_holds_up_only_its_own_group(self):
        """Senders take a batch group by group as they come free. One
        notification that takes 0.9 s at the provider (the class's timeout is
        1 s), then 8 quick ones, in one batch: the quick ones all reach the
        provider while the slow one is still there. Dealt out to the 8
        senders in turn beforehand, the 9th would have waited behind it."""
        post_json(self.provider.url, "/_control", {"slow": {"slow-recipient": 0.9}})
        now = int(time.time() * 1000)

        def job(nid, to):
            return json.dumps({"type": "notify.send", "version": 1, "key": nid, "request_id": f"r-{nid}",
                               "created_at": now, "payload": {"id": nid, "channel": "push", "to": to,
                                                              "body": "hi"}}).encode()
        ids = [f"external00000021{i:02d}" for i in range(9)]
        lines = [job(ids[0], "slow-recipient")] + [job(nid, "quick-recipient") for nid in ids[1:]]
        kcat(self.stack, "-P", "-t", "notify.requests", "-k", "group21", data=b"\n".join(lines) + b"\n")
        for nid in ids:
            self.wait_status(nid, "sent")
        recs = self.records("/push")
        slow = [r for r in recs if "slow-recipient" in r["body"]]
        quick = [r for r in recs if "quick-recipient" in r["body"]]
        self.assertEqual((len(slow), len(quick)), (1, 8))
        late = [round(r["at"] - slow[0]["at"], 2) for r in quick if r["at"] > slow[0]["at"] + 0.6]
        self.assertEqual(late, [], "quick notifications that waited for the slow one (s after it)")

    def test_18_a_dead_job_delivered_again_is_dead_lettered_again(self):
        """A batch can be rewound after one of its jobs was recorded dead but
        before its dead letter went out (another sender's store error). The
        job comes again and finds its record dead: it is dead-lettered
        again, with the reason from the record, and not sent."""
        nid = "external0000000018"
        job = {"type": "notify.send", "version": 1, "key": nid, "request_id": "ext-18",
               "created_at": int(time.time() * 1000),
               "payload": {"id": nid, "channel": "push", "to": "device-refused", "body": "refused"}}
        self.fail_next(1, status=400)
        kcat_produce(self.stack, "notify.requests", nid, json.dumps(job).encode())
        self.wait_status(nid, "dead")

        def letters(count):
            ms = [m for m in kcat_consume_all(self.stack, "notify.requests.dlq") if m["key"] == nid]
            return ms if len(ms) >= count else None
        wait_until("the first dead letter", lambda: letters(1), 30, 0.5)
        kcat_produce(self.stack, "notify.requests", nid, json.dumps(job).encode())
        dead = wait_until("the second dead letter", lambda: letters(2), 30, 0.5)
        self.assertIn("refused after 1 attempt", dead[0]["headers"]["x-dlq-reason"])
        self.assertIn("dead before this delivery of the job: provider answered HTTP 400",
                      dead[1]["headers"]["x-dlq-reason"])
        self.assertEqual(len(self.records("/push")), 1)
        self.assertEqual(self.note(nid)["attempts"], 1)

    def test_18b_a_redriven_dead_notification_is_sent_once(self):
        """Issue 25: an operator redrives a dead notification's letter
        (POST /ops/v1/dead-letters/redrive) once the provider is back: the
        notifier honours the marker, queues it again and sends it once; a
        second redrive finds nothing new; a discarded letter is never
        redriven."""
        t0 = int(time.time() * 1000)
        ids = []
        for dev in ("device-redrive", "device-discard"):
            self.fail_next(1, status=400)
            r = self.http("POST", "/v1/messages", {"channel": "push", "to": dev, "payload": "again"})
            ids.append(r.json()["id"])
            self.wait_status(ids[-1], "dead")
        nid, gone = ids

        def letters(query):
            r = self.http("GET", f"/ops/v1/dead-letters?since={t0}&{query}")
            self.assertEqual(r.status, 200, r)
            return r.json()
        wait_until("both dead letters", lambda: letters("")["count"] == 2, 30, 0.5)
        self.fail_next(0)
        r = self.http("POST", f"/ops/v1/dead-letters/discard?since={t0}&application={gone}")
        self.assertEqual((r.status, r.json()), (200, {"matched": 1, "discarded": 1, "failed": 0, "more": False,
                                                          "recorded": True}))
        r = self.http("POST", f"/ops/v1/dead-letters/redrive?since={t0}")  # the discarded one stays
        self.assertEqual((r.status, r.json()), (200, {"matched": 1, "redriven": 1, "failed": 0, "more": False,
                                                          "recorded": True}))
        n = self.wait_status(nid, "sent", 30)
        self.assertEqual(n["attempts"], 1)  # counted afresh
        pushed = [x for x in self.records("/push") if "device-redrive" in json.dumps(x)]
        self.assertEqual(len(pushed), 2)  # the refused one, then the one sent
        r = self.http("POST", f"/ops/v1/dead-letters/redrive?since={t0}")  # safe to run twice
        self.assertEqual(r.json(), {"matched": 0, "redriven": 0, "failed": 0, "more": False, "recorded": True})
        states = {it["application"]: it["state"] for it in letters("")["items"]}
        self.assertEqual(states, {nid: "redriven", gone: "discarded"})
        self.assertEqual(letters("state=new")["count"], 0)
        time.sleep(1.5)  # a second delivery, if there were one, would show by now
        self.assertEqual(len([x for x in self.records("/push") if "device-redrive" in json.dumps(x)]), 2)
        self.assertEqual(self.note(gone)["status"], "dead")
        self.assertEqual(self.stack.sql("SELECT action, COUNT(*) FROM dead_letter_actions GROUP BY action"
                                        " ORDER BY action"), [["redriven", "1"], ["discarded", "1"]])

    def test_22_an_older_copy_waits_for_the_retry(self):
        """The job again (a producer repeats it, or a rewound batch) while
        its notification waits for a retry: the retry owns it. The copy used
        to be delivered at once, skipping the backoff and spending an
        attempt."""
        nid = "external0000000022"
        job = {"type": "notify.send", "version": 1, "key": nid, "request_id": "ext-22",
               "created_at": int(time.time() * 1000),
               "payload": {"id": nid, "channel": "push", "to": "device-22", "body": "once"}}
        self.fail_next(1, status=200, hang=3)  # attempt 1 times out after 1 s
        kcat_produce(self.stack, "notify.requests", nid, json.dumps(job).encode())
        wait_until("attempt 1 at the provider", lambda: self.records("/push"), 30)
        # The copy is in the log before attempt 1 fails.
        kcat_produce(self.stack, "notify.requests", nid, json.dumps(job).encode())
        n = self.wait_status(nid, "sent", 30)
        self.assertEqual(n["attempts"], 2)
        recs = self.records("/push")
        self.assertEqual([x["hung"] for x in recs], [True, False])
        # Attempt 2 came from the retry, not before the time it carries
        # (the copy went out ~5 ms after attempt 1 failed, well before it).
        retries = [json.loads(m["payload"]) for m in kcat_consume_all(self.stack, "notify.retry")
                   if m["key"] == nid]
        self.assertEqual(len(retries), 1)
        due = retries[0]["payload"]["not_before"] / 1000
        self.assertGreaterEqual(recs[1]["at"], due - 0.002, (recs, due))
        # The copy was taken while the retry waited, and skipped.
        self.assertEqual(len(log_lines(self.stack, "worker-notifier",
                                       f"waiting for its retry; skipped\" id={nid}")), 1)

    def log_count(self, needle, name="worker-notifier"):
        return len(log_lines(self.stack, name, needle))

    def restart_notifier(self, *args):
        self.assertEqual(self.stack.stop("worker-notifier"), 0)
        proc = self.stack.start_worker("notifier", extra=args)
        wait_worker_assigned(self.stack, "worker-notifier", proc.pid)

    @contextlib.contextmanager
    def notifier_with(self, *args):
        """The notifier restarted with args for the block, and as the class
        has it after (a second one a test started is stopped)."""
        self.restart_notifier(*args)
        try:
            yield
        finally:
            self.stack.stop("worker-notifier-2")
            self.restart_notifier()

    def push_jobs(self, ids, to, partition):
        """Push notifications produced onto one partition in one request, as
        another program would (the Kafka key is the first id)."""
        now = int(time.time() * 1000)
        data = b"".join(json.dumps({"type": "notify.send", "version": 1, "key": nid, "request_id": f"r-{nid}",
                                    "created_at": now, "payload": {"id": nid, "channel": "push", "to": to,
                                                                   "body": "hi"}}).encode() + b"\n"
                        for nid in ids)
        kcat(self.stack, "-P", "-t", "notify.requests", "-p", str(partition), "-k", ids[0], data=data)

    def push_job(self, nid, to, partition):
        self.push_jobs([nid], to, partition)

    def notifier_metric(self, name, labels=""):
        r = request(self.stack.status_ports["worker-notifier"], "GET", "/metrics", timeout=10)
        return metric_samples(r.body.decode(), name).get(labels, 0)

    def jobs_consumed(self):
        return self.notifier_metric("switchboard_worker_jobs_total", '{role="notifier"}')

    def detached(self):
        return self.notifier_metric("switchboard_notifier_detached_total")

    def test_23_a_job_behind_a_waiting_retry_waits_with_it(self):
        """A retry that is not due yet, then a malformed job on the same
        partition, in one batch. The retry's partition is rewound to it; the
        malformed job used to count as done, so its offset was stored past
        the retry, and a restart (or a new owner after a rebalance) went on
        after it: the retry was lost. Now the job behind the retry waits
        with it, and is dead-lettered once, when its turn comes."""
        nid, key = "external0000000023", "key-23"
        due = int(time.time() * 1000) + 5000
        job = {"type": "notify.send", "version": 1, "key": key, "request_id": "ext-23",
               "created_at": int(time.time() * 1000),
               "payload": {"id": nid, "channel": "push", "to": "device-23", "body": "later",
                           "attempt": 1, "not_before": due}}
        before = self.jobs_consumed()
        kcat(self.stack, "-P", "-t", "notify.retry", "-k", key,
             data=json.dumps(job).encode() + b"\n{not json 23\n")
        wait_until("both jobs consumed", lambda: self.jobs_consumed() >= before + 2, 30, 0.1)
        self.assertEqual(self.stack.stop("worker-notifier"), 0)  # commits the stored offsets
        self.stack.start_worker("notifier")
        n = self.wait_status(nid, "sent", 30)
        self.assertEqual(n["attempts"], 2)
        recs = [r for r in self.records("/push") if json.loads(r["body"])["id"] == nid]
        self.assertEqual(len(recs), 1)
        self.assertGreaterEqual(recs[0]["at"], due / 1000 - 0.002)
        letters = lambda: [m for m in kcat_consume_all(self.stack, "notify.retry.dlq") if m["key"] == key]
        wait_until("the dead letter", letters, 30, 0.5)
        time.sleep(1)
        self.assertEqual([m["payload"] for m in letters()], ["{not json 23"])

    def test_24_a_slow_delivery_goes_on_beside_the_next_batch(self):
        """One notification takes 2 s at the provider (the timeout is 5 s
        here); more come while it is there, some on its partition. Once the
        rest of its batch is done it runs on by itself (past
        notify_straggler_ms, 300 ms here), and the next batch goes on: the
        new ones all reach the provider while the slow one is still there,
        and nothing is sent twice. The next batch used to wait for it."""
        with self.notifier_with("--notify-straggler-ms", "300", "--notify-timeout-ms", "5000"):
            detached = self.detached()
            post_json(self.provider.url, "/_control", {"slow": {"slow-24": 2}})
            slow = "external0000002499"
            self.push_job(slow, "slow-24", 0)
            wait_until("the slow one at the provider", lambda: self.records("/push"), 30, 0.02)
            quick = [f"external00000024{p}{i}" for p in range(4) for i in range(3)]
            for p in range(4):
                self.push_jobs(quick[3 * p:3 * p + 3], "quick-24", p)
            for nid in quick:
                self.wait_status(nid, "sent")
            self.assertEqual(self.wait_status(slow, "sent")["attempts"], 1)
            time.sleep(1)
            by_id = {}
            for r in self.records("/push"):
                by_id.setdefault(json.loads(r["body"])["id"], []).append(r["at"])
            self.assertEqual(sorted(by_id), sorted([slow] + quick))
            self.assertEqual([k for k, v in by_id.items() if len(v) != 1], [], "sent more than once")
            answered = by_id[slow][0] + 2
            late = [nid for nid in quick if by_id[nid][0] >= answered - 0.5]
            self.assertEqual(late, [], "notifications that waited for the slow one")
            self.assertEqual(self.detached(), detached + 1)

    def test_25_a_rebalance_waits_for_deliveries_that_outlasted_their_batch(self):
        """A second notifier joins while the first is still delivering four
        notifications, one per partition, whose batch went on without them
        (a 12 s provider, with a 30 s timeout here). The first gives its
        partitions up only once those deliveries are over, so the notifier
        that gets each partition finds its notification sent. Given up at
        once, the new owner of half of them found the records still
        "sending" and delivered them a second time."""
        st = self.stack
        args = ("--notify-straggler-ms", "300", "--notify-timeout-ms", "30000")
        with self.notifier_with(*args):
            detached, waited = self.detached(), self.log_count("waiting for deliveries in flight")
            post_json(self.provider.url, "/_control", {"slow": {"slow-25": 12}})
            slow = [f"external000000250{p}" for p in range(4)]
            after = [f"external000000251{p}" for p in range(4)]
            for p, i in enumerate(slow):
                self.push_job(i, "slow-25", p)
            wait_until("four detached", lambda: self.detached() >= detached + 4, 30, 0.1)
            st.start_worker("notifier", name="worker-notifier-2", extra=args)
            wait_until("the rebalance", lambda: self.log_count("partitions assigned", "worker-notifier-2"), 60)
            self.assertEqual(self.log_count("waiting for deliveries in flight"), waited + 1)
            for i in slow:
                self.assertEqual(self.wait_status(i, "sent", 30)["attempts"], 1)
            # Each partition's owner has fetched from it since the rebalance.
            for p, i in enumerate(after):
                self.push_job(i, "device-25", p)
            for i in after:
                self.wait_status(i, "sent", 30)
            time.sleep(1)
            self.assertEqual(sorted(json.loads(r["body"])["id"] for r in self.records("/push")), slow + after)

    def test_26_a_detached_delivery_refused_is_dead_lettered_once(self):
        """A delivery that outlasts its batch and is then refused: its own
        sender dead-letters it (its batch is gone), once, and the offset
        moves past it: a restarted notifier does not see it again."""
        nid, after = "external0000002600", "external0000002601"
        with self.notifier_with("--notify-straggler-ms", "300", "--notify-timeout-ms", "5000"):
            detached = self.detached()
            self.fail_next(1, status=400, hang=1)
            self.push_job(nid, "device-26", 0)
            self.wait_status(nid, "dead")
            self.assertEqual(self.detached(), detached + 1)
            self.push_job(after, "device-26", 0)
            self.wait_status(after, "sent")

        def letters():
            return [m for m in kcat_consume_all(self.stack, "notify.requests.dlq") if m["key"] == nid]
        wait_until("the dead letter", letters, 30, 0.5)
        # The class's notifier has started again and fetched partition 0.
        self.push_job("external0000002602", "device-26", 0)
        self.wait_status("external0000002602", "sent")
        time.sleep(1)
        dead = letters()
        self.assertEqual(len(dead), 1, dead)
        self.assertIn("refused after 1 attempt", dead[0]["headers"]["x-dlq-reason"])
        self.assertEqual(dead[0]["headers"]["x-original-topic"], "notify.requests")
        self.assertEqual(sorted(json.loads(r["body"])["id"] for r in self.records("/push")),
                         [nid, after, "external0000002602"])

    def test_27_a_crash_during_a_detached_delivery_sends_it_again(self):
        """The notifier is killed while a delivery that outlasted its batch
        is at the provider, after a later job of the same partition was
        sent and its offset stored. The committed offset stayed at the slow
        job: the next notifier sends that one again (at least once) and the
        later one not at all. Committed past it, the slow one would be
        left "sending" for good."""
        st = self.stack
        slow, after = "external0000002700", "external0000002701"
        args = ("--notify-straggler-ms", "300", "--notify-timeout-ms", "5000")
        with self.notifier_with(*args):
            detached = self.detached()
            post_json(self.provider.url, "/_control", {"slow": {"slow-27": 4}})
            self.push_job(slow, "slow-27", 0)
            wait_until("detached", lambda: self.detached() > detached, 30, 0.05)
            self.push_job(after, "device-27", 0)
            self.wait_status(after, "sent")
            time.sleep(1.5)  # offsets are committed every second
            self.assertEqual(self.note(slow)["status"], "sending")
            st.kill9("worker-notifier")
            post_json(self.provider.url, "/_control", {"slow": {}})
            proc = st.start_worker("notifier", extra=args)
            wait_worker_assigned(st, "worker-notifier", proc.pid)
            self.wait_status(slow, "sent", 30)
            time.sleep(1)
            ids = [json.loads(r["body"])["id"] for r in self.records("/push")]
            self.assertEqual(sorted(ids), [slow, slow, after])

    def test_28_a_detached_delivery_not_recorded_is_fetched_again(self):
        """MySQL goes away while a delivery that outlasted its batch is at
        the provider, so its outcome cannot be recorded. Its partition is
        sought back to it: once MySQL is back the same notifier finds the
        record still "sending" and sends it again (at least once), and it
        ends sent. Let go as if done, it would stay "sending"."""
        st = self.stack
        nid = "external0000002800"
        with self.notifier_with("--notify-straggler-ms", "300", "--notify-timeout-ms", "5000"):
            detached = self.detached()
            post_json(self.provider.url, "/_control", {"slow": {"slow-28": 2}})
            self.push_job(nid, "slow-28", 0)
            wait_until("detached", lambda: self.detached() > detached, 30, 0.05)
            not_handled = self.log_count("handled=0")
            st.stop("mariadb")
            try:
                wait_until("its outcome not recorded", lambda: self.log_count("handled=0") > not_handled, 30, 0.1)
                post_json(self.provider.url, "/_control", {"slow": {}})
            finally:
                st.start_mariadb()

            def sent():  # the dispatcher answers 503 until its MySQL connections are back
                r = self.http("GET", f"/v1/messages/{nid}")
                self.assertIn(r.status, (200, 503), r)
                return r.json() if r.status == 200 and r.json()["status"] == "sent" else None
            n = wait_until(f"notification {nid} sent", sent, 60)
            self.assertEqual(n["attempts"], 2)
            self.assertEqual([json.loads(r["body"])["id"] for r in self.records("/push")], [nid, nid])

    def test_19_stop_between_notifications_then_the_rest(self):
        """SIGTERM while a slow provider works through a batch: each sender
        finishes the notification in hand and stops there, so the process
        leaves with part of the batch unsent and unacknowledged. The next
        notifier sends the rest, and nothing twice."""
        post_json(self.provider.url, "/_control", {"delay": 0.5})  # inside the 1 s timeout
        r = self.http("POST", "/sms/send/many", [self.sms(f"stop-{i}", content=f"stop {i}") for i in range(40)])
        self.assertEqual(r.status, 202, r)
        tid = r.json()["trackingId"]
        wait_until("the first deliveries", lambda: self.records("/sms"), 30, 0.1)
        self.assertEqual(self.stack.stop("worker-notifier"), 0)
        at_stop = len(self.records("/sms"))
        self.assertLess(at_stop, 40)
        post_json(self.provider.url, "/_control", {"delay": 0})
        self.stack.start_worker("notifier")
        done = tracking_done(self, tid, 90)
        self.assertEqual((done["total"], done["sent"], done["failed"]), (40, 40, 0))
        bodies = sorted(dict(urllib.parse.parse_qsl(x["body"]))["Body"] for x in self.records("/sms"))
        self.assertEqual(bodies, sorted(f"stop {i}" for i in range(40)))

    def test_14_readme_example_runs_as_shown(self):
        self.stack.seed(users=1000, numbers=300)  # scripts/up's demo data
        block = readme_block("## Notifications and SMS API").replace(".run/api_key", self.stack.path("api_key")).replace("http://127.0.0.1:8080", f"http://127.0.0.1:{self.port}")
        import subprocess
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=self.stack.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=90)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out)
        self.assertIn('{"sent":true}', out)
        self.assertRegex(out, r'"status":"(sent|queued|sending)"')
        self.assertRegex(out, r'"status":"(DONE|IN_PROGRESS)","total":2,"sent":[01],"failed":1')
        self.assertIn("toPhoneNumber +15550000000 is not an assigned phone number", out)


class TestNotifyOnMongo(StackTestCase):
    """The same routes and notifier with the MongoDB store: on FerretDB
    (MongoDB's protocol, started with the stack), or on the server MONGO_URI
    names."""
    ROLES = ("notifier",)

    @classmethod
    def configure(cls, stack):
        if os.environ.get("MONGO_URI"):
            stack.mongo_uri = os.environ["MONGO_URI"]
        else:
            stack.start_ferretdb()
        cls.provider = FakeServer("provider.py", stack.path("logs"), folder="scripts/dev")
        stack.extra_env.update({"SB_SMS_URL": f"http://u:p@127.0.0.1:{cls.provider.port}/sms",
                                "SB_PUSH_URL": f"http://127.0.0.1:{cls.provider.port}/push",
                                "SB_SMTP_URL": "smtp://127.0.0.1:9",  # nobody listens: retried, then dead
                                "SB_NOTIFY_MAX_ATTEMPTS": "2", "SB_NOTIFY_BACKOFF_MS": "200"})

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.seed(users=10, numbers=0, area_codes="212")
        for user, phone in ((1, FROM), (2, TO)):
            cls.stack.sql(f"UPDATE users SET phone_number='{phone}' WHERE user_id={user}")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.provider.stop()

    def test_01_sms_once_and_tracking(self):
        sms = {"sms": {"idempotencyKey": f"mongo-{time.time()}", "fromPhoneNumber": FROM, "toPhoneNumber": TO,
                       "content": "via mongo"}}
        for _ in range(2):
            r = self.http("POST", "/sms/send/one", sms)
            self.assertEqual((r.status, r.json()), (200, {"sent": True}))
        r = self.http("POST", "/sms/send/many", [sms, {"sms": dict(sms["sms"], idempotencyKey=f"m2-{time.time()}")}])
        self.assertEqual(r.status, 202, r)
        self.assertEqual([e["index"] for e in r.json()["errors"]], [0])  # the repeated key
        tid = r.json()["trackingId"]
        done = tracking_done(self, tid)
        self.assertEqual((done["total"], done["sent"], done["failed"]), (2, 1, 1))
        with urllib.request.urlopen(self.provider.url + "/_records", timeout=10) as f:
            bodies = [x["body"] for x in json.load(f)]
        self.assertEqual(len([b for b in bodies if "via%20mongo" in b]), 2)  # one per key

    def test_02_status_of_a_dead_notification(self):
        r = self.http("POST", "/v1/messages", {"channel": "email", "to": "a@example.com", "payload": "x"})
        nid = r.json()["id"]
        n = wait_until("dead", lambda: (lambda j: j if j.get("status") == "dead" else None)(
            self.http("GET", f"/v1/messages/{nid}").json()), 60)
        self.assertEqual((n["channel"], n["attempts"]), ("email", 2))
        self.assertIn("smtp", n["lastError"])
        with open(self.stack.log("worker-notifier")) as f:
            self.assertIn("store=mongodb", f.read())

    @unittest.skipIf(os.environ.get("MONGO_URI"), "stopping the server needs the one the test started")
    def test_03_mongodb_away_is_reported_but_not_fatal(self):
        port = int(self.stack.mongo_uri.rsplit(":", 1)[1].split("/")[0])
        self.check_optional_dependency(
            "mongodb", lambda: self.stack.stop("ferretdb", sig=signal.SIGKILL),
            lambda: self.stack.start_ferretdb(port=port))

    @unittest.skipIf(os.environ.get("MONGO_URI"), "stopping the server needs the one the test started")
    def test_04_a_mongodb_that_stops_answering_costs_seconds_not_minutes(self):
        """A MongoDB that stops answering and keeps its connections open (a
        hung host, a partition; here FerretDB is SIGSTOPped): a read of a
        notification answers 503 after the store's socket timeout (10 s)
        instead of waiting out the driver's default of 5 minutes, and
        answers 200 again once the server is back."""
        nid = self.http("POST", "/v1/messages", {"channel": "push", "to": "device-04", "payload": "x"}).json()["id"]
        wait_until("recorded", lambda: self.http("GET", f"/v1/messages/{nid}").status == 200, 30)
        pid = self.stack.pid_of("ferretdb")[0]
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            r = self.http("GET", f"/v1/messages/{nid}", timeout=90)
            took = time.monotonic() - t0
        finally:
            os.kill(pid, signal.SIGCONT)
        self.assertEqual(r.status, 503, r)
        self.assertLess(took, 30)
        wait_until("answered again", lambda: self.http("GET", f"/v1/messages/{nid}").status == 200, 30)


if __name__ == "__main__":
    unittest.main()
