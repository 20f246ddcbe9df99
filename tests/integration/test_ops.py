"""The operator's view (issue 25), against the real broker, MySQL, the
notifier with a provider stand-in, and Chromium: the overview (every
topic's partitions with their end offsets and throughput, every consumer
group, an idle one too, with its lag), the dead letters and their
redrive and discard, the read-only key, the lookups, the dead letters in
the workers' /metrics, and the whole story in the console."""

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import unittest
import urllib.request

from websockets.asyncio.client import connect as ws_connect

from harness import (FakeServer, ROOT, StackTestCase, kcat, kcat_consume_all, kcat_dead_letter, kcat_produce,
                     metric_samples, request, wait_until)

NODE_DIR = os.path.join(ROOT, ".cache", "ws-node")
# SB_UPDATE_SCREENSHOTS=1: the console's screenshots also go to docs/console/.
DOCS_SHOTS = os.path.join(ROOT, "docs", "console")

API = "/api/v1/applications"


READ_KEY = "ops-read-only-key-for-tests"


def post_json(url, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    return json.load(urllib.request.urlopen(req, timeout=10))


class TestOps(StackTestCase):
    ROLES = ("persister", "notifier")

    @classmethod
    def configure(cls, stack):
        cls.provider = FakeServer("provider.py", stack.path("logs"), folder="scripts/dev")
        stack.extra_env.update({
            "SB_PUSH_URL": f"http://127.0.0.1:{cls.provider.port}/push",
            "SB_NOTIFY_MAX_ATTEMPTS": "2",
            "SB_NOTIFY_BACKOFF_MS": "200",
            "SB_NOTIFY_BACKOFF_CAP_MS": "500",
            "SB_NOTIFY_TIMEOUT_MS": "1000",
            "SB_OPS_READ_KEY_HASHES": hashlib.sha256(READ_KEY.encode()).hexdigest(),
            "SB_OPS_SAMPLE_INTERVAL_MS": "1000",
        })

    @classmethod
    def setUpClass(cls):
        try:
            super().setUpClass()
        except Exception:
            cls.provider.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.provider.stop()

    def provider_fails(self, n):
        """The push provider answers 503 to the next n requests (0: none)."""
        post_json(self.provider.url, "/_control", {"fail": n, "status": 503, "hang": 0})

    def pushes(self, device):
        with urllib.request.urlopen(self.provider.url + "/_records", timeout=10) as r:
            return [x for x in json.load(r) if x["path"] == "/push" and device in json.dumps(x)]

    def read(self, method, path):
        return self.http(method, path, headers={"Authorization": f"Bearer {READ_KEY}"})

    def overview(self):
        r = self.http("GET", "/ops/v1/overview")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def group(self, name):
        return next((g for g in self.overview()["groups"] if g["group"] == name), None)

    def test_01_keys(self):
        """The ops API needs a key; a read-only key reads it and looks
        things up, and is refused (403, nothing done) everything else."""
        r = self.http("GET", "/ops/v1/overview", headers={"Authorization": "Bearer not-a-key"})
        self.assertEqual((r.status, r.json()["error"]["code"]), (401, "unauthorized"))
        self.assertEqual(self.overview()["access"], "admin")
        r = self.read("GET", "/ops/v1/overview")
        self.assertEqual((r.status, r.json()["access"]), (200, "read"), r)
        self.assertEqual(self.read("GET", "/ops/v1/dead-letters?limit=1").status, 200)
        self.assertEqual(self.read("GET", "/v1/messages/unknownNote0001").status, 404)
        self.assertEqual(self.read("GET", "/v1/messages?idempotencyKey=nothing-here").status, 404)
        self.assertEqual(self.read("GET", "/sms/requests/unknownTrack01").status, 404)
        sent_before = len(self.pushes("read-only-device"))
        for method, path in (("POST", "/ops/v1/dead-letters/redrive"), ("POST", "/ops/v1/dead-letters/discard"),
                             ("POST", "/ops/ping"), ("GET", API), ("POST", API)):
            r = self.read(method, path)
            self.assertEqual((r.status, r.json()["error"]["code"]), (403, "forbidden"), (method, path))
            self.assertIn("read-only", r.json()["error"]["message"])
        r = self.http("POST", "/v1/messages", {"channel": "push", "to": "read-only-device", "payload": "p"},
                      headers={"Authorization": f"Bearer {READ_KEY}"})
        self.assertEqual(r.status, 403, r)
        # Over a WebSocket opened with it, the same: a command is refused.
        async def ws_send():
            async with ws_connect(f"ws://127.0.0.1:{self.port}/ws",
                                  additional_headers={"Authorization": f"Bearer {READ_KEY}"}) as ws:
                await ws.send(json.dumps({"id": "n", "op": "notification.send", "body": {
                    "channel": "push", "to": "read-only-device", "payload": "p"}}))
                return json.loads(await ws.recv())
        got = asyncio.run(asyncio.wait_for(ws_send(), 30))
        self.assertEqual((got["status"], got["body"]["error"]["code"]), (403, "forbidden"), got)
        time.sleep(1)
        self.assertEqual(len(self.pushes("read-only-device")), sent_before)  # nothing was sent
        self.assertEqual(self.stack.sql("SELECT COUNT(*) FROM dead_letter_actions"), [["0"]])

    def test_02_offsets_and_lag_of_an_idle_group(self):
        token = self.create_app("ops")
        self.assertEqual(self.http("POST", f"{API}/{token}/chats").status, 201)
        wait_until("persister caught up", lambda: (self.group("switchboard-persister") or {}).get("lag") == 0, 30)
        o = self.overview()
        self.assertEqual(o["status"], "ready")
        self.assertTrue(o["dependencies"]["kafka"]["ok"])
        topics = {t["topic"]: t for t in o["topics"]}
        self.assertIn("chat.commands.dlq", topics)
        self.assertFalse([t for t in topics if t.startswith("__")])  # internal topics left out
        chat = topics["chat.commands"]
        self.assertEqual(len(chat["partitions"]), self.stack.partitions)
        self.assertEqual(chat["end_offset"], sum(p["high"] for p in chat["partitions"]))
        end_before = chat["end_offset"]

        # The persister stops: its group is idle (no member), and what is
        # created meanwhile shows as its lag, partition by partition.
        self.stack.stop("worker-persister")
        try:
            wait_until("group empty", lambda: self.group("switchboard-persister")["state"] == "Empty", 60)
            for _ in range(12):
                self.assertEqual(self.http("POST", f"{API}/{token}/chats/1/messages", {"body": "x"}).status, 201)
            g = self.group("switchboard-persister")
            self.assertEqual(g["lag"], 12)
            self.assertEqual(sum(p["lag"] for p in g["partitions"] if p["topic"] == "chat.commands"), 12)
            for p in g["partitions"]:
                self.assertEqual(p["lag"], p["end"] - p["committed"])
            self.assertEqual({t["topic"]: t for t in self.overview()["topics"]}["chat.commands"]["end_offset"],
                             end_before + 12)
            # The dispatcher's samples (every second here) have the lag too.
            t_lag = int(time.time() * 1000)

            def sampled_lag():
                h = self.overview()["lag_history"]
                after = [v for at, v in zip(h["at"], h["groups"]["switchboard-persister"]) if at > t_lag]
                return after or None
            self.assertEqual(wait_until("a sample of the lag", sampled_lag, 30)[0], 12)
        finally:
            self.stack.start_worker("persister")
        wait_until("lag back to zero", lambda: self.group("switchboard-persister")["lag"] == 0, 60)
        h = wait_until("the sampled lag back to zero", lambda: (lambda h: h if h["groups"][
            "switchboard-persister"][-1] == 0 else None)(self.overview()["lag_history"]), 30)
        self.assertEqual(len(h["at"]), len(h["groups"]["switchboard-persister"]))
        self.assertIn(12, h["groups"]["switchboard-persister"])
        self.assertEqual(self.stack.sql(f"SELECT COUNT(*) FROM messages WHERE application_token='{token}'"),
                         [["12"]])

    def test_02b_throughput_over_the_last_minutes(self):
        """The overview carries each topic's rate between the dispatcher's
        samples (every second here); the rates times the intervals add up
        to exactly the jobs produced."""
        token = self.create_app("rates")
        self.assertEqual(self.http("POST", f"{API}/{token}/chats").status, 201)
        time.sleep(2.5)  # a sample after every earlier job
        t0 = int(time.time() * 1000)
        for _ in range(20):
            self.assertEqual(self.http("POST", f"{API}/{token}/chats/1/messages", {"body": "r"}).status, 201)
        t1 = int(time.time() * 1000)

        def after_the_burst():
            tp = self.overview()["throughput"]
            return tp if len(tp["at"]) >= 2 and tp["at"][-2] > t1 else None  # an interval all after
        tp = wait_until("two samples after the creates", after_the_burst, 30)
        self.assertEqual(tp["interval_ms"], 1000)
        rates = tp["topics"]["chat.commands"]
        self.assertEqual(len(rates), len(tp["at"]))
        self.assertLessEqual(len(rates), 60)
        starts = [tp["since"]] + tp["at"][:-1]
        jobs = sum(r * (end - start) / 1000 for r, start, end in zip(rates, starts, tp["at"])
                   if r is not None and end > t0)
        self.assertEqual(round(jobs), 20, tp)
        quiet = [r for r, start in zip(rates, starts) if start > t1]
        self.assertTrue(quiet and all(r == 0 for r in quiet), tp)  # nothing since

    def letters(self, query=""):
        r = self.http("GET", "/ops/v1/dead-letters" + query)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_03_dead_letters_found_without_kcat(self):
        """Poison jobs on chat.commands become dead letters; the operator
        sees each with its reason, origin and body, counts them by cause,
        and narrows them by reason, type, application and time."""
        t0 = int(time.time() * 1000)
        app = "opsPoisonApp0123456789"
        bad = [  # (value, cause)
            (b"not json at all", "malformed JSON near offset 0"),
            (json.dumps({"type": "message.create", "version": 1, "key": app, "request_id": "r1", "created_at": 1,
                         "payload": {"application_token": app, "chat_number": 1, "number": 0,
                                     "body": "x"}}).encode(), "payload"),
            (json.dumps({"type": "message.create", "version": 1, "key": app, "request_id": "r2", "created_at": 1,
                         "payload": {"application_token": app, "chat_number": 1, "number": -5,
                                     "body": "y"}}).encode(), "payload"),
        ]
        for i, (value, _) in enumerate(bad):
            kcat_produce(self.stack, "chat.commands", f"ops-poison-{i}", value)
        wait_until("three dead letters", lambda: self.letters(f"?since={t0}")["count"] == 3, 30)
        got = self.letters(f"?since={t0}")
        self.assertEqual(len(got["items"]), 3, got)
        self.assertEqual(got["causes"], {"malformed JSON near offset N": 1, "payload": 2})  # numbers as N
        for it in got["items"]:
            self.assertEqual(it["dead_letter"]["topic"], "chat.commands.dlq")
            self.assertEqual(it["original"]["topic"], "chat.commands")
            self.assertEqual(it["consumer_group"], "switchboard-persister")
            self.assertGreaterEqual(it["failed_at"], t0)
            self.assertIn(it["body"].encode(), [b for b, _ in bad])
        times = [it["failed_at"] for it in got["items"]]
        self.assertEqual(times, sorted(times, reverse=True))  # newest first
        typed = self.letters(f"?since={t0}&type=message.create&application={app}")
        self.assertEqual(typed["count"], 2)
        self.assertEqual({it["application"] for it in typed["items"]}, {app})
        self.assertEqual(self.letters(f"?since={t0}&reason=MALFORMED")["count"], 1)  # words, any case
        self.assertEqual(self.letters(f"?since={t0}&cause=payload")["count"], 2)
        self.assertEqual(self.letters(f"?since={t0}&limit=1")["count"], 3)
        self.assertEqual(len(self.letters(f"?since={t0}&limit=1")["items"]), 1)
        self.assertEqual(self.letters(f"?since={t0 + 3_600_000}")["count"], 0)
        self.assertEqual(self.letters(f"?topic=notify.requests.dlq&since={t0}")["count"], 0)
        for q in ("?topic=chat.commands", "?limit=501", "?since=yesterday", "?reason=", "?colour=red"):
            r = self.http("GET", "/ops/v1/dead-letters" + q)
            self.assertEqual(r.status, 400, q)
            self.assertIn(r.json()["error"]["code"], ("invalid_parameter",), q)
        r = self.http("GET", "/ops/v1/dead-letters?topic=no.such.dlq")
        self.assertEqual((r.status, r.json()["error"]["code"]), (404, "not_found"), r)
        # The persister counts them by topic and cause, as the API groups
        # them (it was restarted in test_02: these are all it has seen).
        r = request(self.stack.status_ports["worker-persister"], "GET", "/metrics", timeout=10)
        dead = metric_samples(r.body.decode(), "switchboard_dead_letters_total")
        self.assertEqual(dead, {'{role="persister",topic="chat.commands",cause="malformed JSON near offset N"}': 1,
                                '{role="persister",topic="chat.commands",cause="payload"}': 2})

    def test_03b_one_action_at_a_time(self):
        """While one redrive or discard runs (its MySQL lock held, here by
        a session of the test), another is refused with 409 and does
        nothing; once the lock is free it goes through."""
        held = threading.Event()

        def hold():
            held.set()
            self.stack.sql("SELECT GET_LOCK('switchboard.dead_letter_actions', 0); SELECT SLEEP(3)")
        t = threading.Thread(target=hold)
        t.start()
        held.wait()
        time.sleep(0.5)  # the session has the lock
        try:
            r = self.http("POST", "/ops/v1/dead-letters/discard?letters=chat.commands.dlq/0/999999")
            self.assertEqual((r.status, r.json()["error"]["code"]), (409, "in_progress"), r)
            self.assertEqual(r.headers.get("Retry-After"), "1")
        finally:
            t.join()
        r = self.http("POST", "/ops/v1/dead-letters/discard?letters=chat.commands.dlq/0/999999")
        self.assertEqual((r.status, r.json()["matched"]), (200, 0), r)

    def test_04_console_in_a_browser(self):
        """The page an operator opens: in headless Chromium it shows the
        groups and their lag, the dead letters counted by cause (the same
        as the API says), narrows them to a cause, and looks a
        notification up. Each view is a screenshot."""
        t0 = int(time.time() * 1000)
        for i in range(2):
            kcat_produce(self.stack, "chat.commands", f"console-poison-{i}", b"{broken")
        # And one of another cause: a letter is left to act on after the
        # biggest cause is discarded (the read-only key's view).
        app = "consolePoisonApp012345"
        kcat_produce(self.stack, "chat.commands", "console-poison-2", json.dumps({
            "type": "message.create", "version": 1, "key": app, "request_id": "c2", "created_at": 1,
            "payload": {"application_token": app, "chat_number": 1, "number": 0, "body": "x"}}).encode())
        wait_until("dead-lettered", lambda: self.letters(f"?since={t0}")["count"] == 3, 30)
        api = self.letters("?state=new")
        r = self.http("POST", "/v1/messages", {"channel": "email", "to": "ops@example.com", "title": "t",
                                               "payload": "p", "idempotencyKey": "console-1"})
        self.assertEqual(r.status, 202, r)
        note = r.json()["id"]
        page = self.http("GET", "/ops/console", headers={"Authorization": ""})
        self.assertEqual(page.status, 200)
        self.assertIn("frame-ancestors 'none'", page.headers.get("Content-Security-Policy", ""))
        shots = self.stack.path("shots")
        os.makedirs(shots, exist_ok=True)
        out = subprocess.run(["node", os.path.join(ROOT, "tests", "ws", "console.js"),
                              f"http://127.0.0.1:{self.port}", self.stack.api_key, shots, note, READ_KEY],
                             env={**os.environ, "NODE_PATH": os.path.join(NODE_DIR, "node_modules")},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
        text = out.stdout.decode()
        self.assertEqual(out.returncode, 0, text[-3000:])
        got = json.loads(text.strip().splitlines()[-1])
        self.assertEqual(got["errors"], [])
        groups = {g["group"]: g for g in got["groups"]}
        self.assertEqual(groups["switchboard-persister"]["lag"], self.group("switchboard-persister")["lag"])
        self.assertTrue(all(d["ok"] for d in got["deps"]), got["deps"])
        self.assertTrue(got["summary"].startswith(f"{api['count']} dead letter"), got["summary"])
        self.assertEqual({c["cause"]: c["count"] for c in got["causes"]}, api["causes"])
        self.assertEqual(got["letters"], min(api["count"], 50))
        top = max(api["causes"].values())
        self.assertTrue(got["narrowed"].startswith(f"{top} dead letter"), got["narrowed"])
        self.assertEqual(got["acted"], f"{top} discarded of {top}")
        self.assertTrue(got["after"].startswith("0 dead letters match"), got["after"])
        discarded = self.letters("?state=discarded")
        self.assertEqual(discarded["count"], top)
        self.assertEqual({it["cause"] for it in discarded["items"]}, {got["causes"][0]["cause"]})
        self.assertEqual(self.letters("?state=new")["count"], api["count"] - top)
        self.assertIn(note, got["lookup"])
        self.assertEqual(got["readOnly"]["conn"], "connected · read-only key")
        self.assertFalse(got["readOnly"]["summary"].startswith("0 "), got["readOnly"])  # letters to act on
        self.assertTrue(got["readOnly"]["actionsHidden"])
        for name in ("console-overview.png", "console-dead-letters.png", "console-lookup.png"):
            self.assertGreater(os.path.getsize(os.path.join(shots, name)), 10_000, name)
            if os.environ.get("SB_UPDATE_SCREENSHOTS"):
                os.makedirs(DOCS_SHOTS, exist_ok=True)
                shutil.copy(os.path.join(shots, name), DOCS_SHOTS)

    def wait_status(self, nid, status, timeout=30):
        def reached():
            r = self.http("GET", f"/v1/messages/{nid}")
            self.assertEqual(r.status, 200, r)
            return r.json() if r.json()["status"] == status else None
        return wait_until(f"notification {nid} {status}", reached, timeout)

    def test_05_a_notification_found_by_its_idempotency_key(self):
        """GET /v1/messages?idempotencyKey= answers the notification a send
        with that key made: at once after the 202, while no notifier has
        recorded it (the dispatcher's Redis marker), and once it is sent
        (the store), for a read-only key too."""
        self.stack.stop("worker-notifier")
        try:
            r = self.http("POST", "/v1/messages", {"channel": "push", "to": "idem-device", "payload": "k",
                                                   "idempotencyKey": "lookup key 05"})
            self.assertEqual(r.status, 202, r)
            nid = r.json()["id"]
            r = self.read("GET", "/v1/messages?idempotencyKey=lookup%20key%2005")
            self.assertEqual((r.status, r.json()["id"], r.json()["status"]), (200, nid, "queued"), r)
        finally:
            self.stack.start_worker("notifier")
        self.wait_status(nid, "sent", 60)
        r = self.read("GET", "/v1/messages?idempotencyKey=lookup%20key%2005")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), self.note_json(nid))
        self.assertEqual(r.json()["status"], "sent")
        r = self.http("GET", "/v1/messages?idempotencyKey=lookup%20key%2006")
        self.assertEqual((r.status, r.json()["error"]["code"]), (404, "not_found"), r)
        for q in ("", "?idempotencyKey=", "?idempotencyKey=a%01b", "?idempotencyKey=" + "k" * 137, "?id=x"):
            r = self.http("GET", "/v1/messages" + q)
            self.assertEqual(r.status, 400, q)

    def note_json(self, nid):
        r = self.http("GET", f"/v1/messages/{nid}")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_06_the_whole_story_in_the_console(self):
        """Issue 25 end to end, as an operator lives it: a provider fails
        and a topic is poisoned; in the console the dead letters show
        grouped by cause; the provider is back; from the page the
        notifications are redriven and the poison discarded; each
        notification is sent exactly once, and the page shows every lag
        back at zero."""
        r = self.http("POST", "/ops/v1/dead-letters/discard")  # a clean slate: earlier tests' letters
        self.assertEqual(r.status, 200, r)
        self.assertFalse(r.json()["more"])
        t0 = int(time.time() * 1000)
        self.provider_fails(1000)
        ids, devices = [], [f"story-device-{i}" for i in range(3)]
        for dev in devices:
            r = self.http("POST", "/v1/messages", {"channel": "push", "to": dev, "payload": "story"})
            self.assertEqual(r.status, 202, r)
            ids.append(r.json()["id"])
        for i in range(2):
            kcat_produce(self.stack, "chat.commands", f"story-poison-{i}", b"{poison")
        for nid in ids:
            self.wait_status(nid, "dead", 60)
        wait_until("five dead letters", lambda: self.letters("?state=new")["count"] == 5, 30)
        self.provider_fails(0)  # the provider is back
        for dev in devices:
            self.assertEqual([x["status"] for x in self.pushes(dev)], [503, 503])  # two attempts, refused

        shots = self.stack.path("shots")
        os.makedirs(shots, exist_ok=True)
        out = subprocess.run(["node", os.path.join(ROOT, "tests", "ws", "console_story.js"),
                              f"http://127.0.0.1:{self.port}", self.stack.api_key, shots, ids[0]],
                             env={**os.environ, "NODE_PATH": os.path.join(NODE_DIR, "node_modules")},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240)
        text = out.stdout.decode()
        self.assertEqual(out.returncode, 0, text[-3000:])
        got = json.loads(text.strip().splitlines()[-1])
        self.assertEqual(got["errors"], [])
        self.assertEqual(got["causes"], {"gave up after N attempts": 3, "malformed JSON near offset N": 2})
        self.assertEqual(got["redriven"], "3 redriven of 3")
        self.assertEqual(got["discarded"], "2 discarded of 2")
        self.assertTrue(got["after"].startswith("0 dead letters match"), got["after"])
        self.assertEqual({g: got["lags"][g] for g in ("switchboard-notifier", "switchboard-persister")},
                         {"switchboard-notifier": 0, "switchboard-persister": 0})
        self.assertIn('"status": "sent"', got["lookup"])

        # Each notification went out exactly once after its two refusals,
        # its attempts counted afresh; the letters are marked for what was
        # done with them, and nothing is left to handle.
        time.sleep(1.5)  # a second delivery, if there were one, would show by now
        for nid, dev in zip(ids, devices):
            self.assertEqual(self.note_json(nid)["status"], "sent")
            self.assertEqual(self.note_json(nid)["attempts"], 1)
            self.assertEqual([x["status"] for x in self.pushes(dev)], [503, 503, 201])
        self.assertEqual(self.letters(f"?since={t0}&state=redriven")["count"], 3)
        self.assertEqual(self.letters(f"?since={t0}&state=discarded")["count"], 2)
        self.assertEqual(self.letters("?state=new")["count"], 0)
        self.assertEqual(self.group("switchboard-notifier")["lag"], 0)
        for name in ("console-story-failing.png", "console-story-handled.png", "console-story-recovered.png"):
            self.assertGreater(os.path.getsize(os.path.join(shots, name)), 10_000, name)
            if os.environ.get("SB_UPDATE_SCREENSHOTS"):
                os.makedirs(DOCS_SHOTS, exist_ok=True)
                shutil.copy(os.path.join(shots, name), DOCS_SHOTS)

    def test_07_a_redriven_update_never_undoes_a_newer_one(self):
        """A message.update that died at the indexer (say, a mapping error)
        is redriven after a newer update of the message: the persister takes
        the copy too, and keeps the newer body; the copy says where the job
        it copies stood, for the indexer's versions."""
        token = self.create_app("stale")
        self.assertEqual(self.http("POST", f"{API}/{token}/chats").status, 201)
        self.assertEqual(self.http("POST", f"{API}/{token}/chats/1/messages", {"body": "v0"}).status, 201)
        msg = f"{API}/{token}/chats/1/messages/1"

        def body_is(text):
            return lambda: (lambda r: r.status == 200 and r.json()["body"] == text)(self.http("GET", msg))
        wait_until("created", body_is("v0"), 30)
        for text in ("old", "new"):
            self.assertEqual(self.http("PUT", msg, {"body": text}).status, 200)
            wait_until(f"updated to {text}", body_is(text), 30)
        old = next(m for m in kcat_consume_all(self.stack, "chat.commands")
                   if m["key"] == token and '"old"' in m["payload"])
        kcat_dead_letter(self.stack, old, "switchboard-indexer",
                         "elasticsearch: mapper_parsing_exception: failed to parse field [body]")
        wait_until("the letter", lambda: self.letters(f"?application={token}&state=new")["count"] == 1, 30)
        r = self.http("POST", f"/ops/v1/dead-letters/redrive?application={token}")
        self.assertEqual((r.status, r.json()["redriven"]), (200, 1), r)
        copy = wait_until("the copy on chat.commands", lambda: next(
            (m for m in kcat_consume_all(self.stack, "chat.commands") if m["key"] == token and
             "x-redrive-of" in m["headers"]), None), 30)
        self.assertEqual(copy["payload"], old["payload"])
        self.assertEqual((copy["headers"]["x-original-partition"], copy["headers"]["x-original-offset"]),
                         (str(old["partition"]), str(old["offset"])))
        wait_until("the persister took the copy", lambda: self.group("switchboard-persister")["lag"] == 0, 30)
        self.assertEqual(self.http("GET", msg).json()["body"], "new")
        self.assertEqual(self.stack.sql(f"SELECT body FROM messages WHERE application_token='{token}'"), [["new"]])

        # An update newer than the stored body that died before any role
        # wrote it (made here: it was never on chat.commands): redriven, it
        # wins, as it would have in log order.
        late = json.loads(old["payload"])
        late["payload"]["body"], late["created_at"] = "late", int(time.time() * 1000)
        kcat_dead_letter(self.stack, {**old, "payload": json.dumps(late)}, "switchboard-persister",
                         "mysql: deadlock found when trying to get lock")
        r = self.http("POST", f"/ops/v1/dead-letters/redrive?application={token}")
        self.assertEqual((r.status, r.json()["redriven"]), (200, 1), r)
        wait_until("the late update applied", body_is("late"), 30)

    def test_08_a_second_copy_of_one_redrive_changes_nothing(self):
        """A redrive whose notification dies again, then a second copy of
        that same redrive (a rewound batch delivers it again): the copy
        finds the redrive recorded on the notification and takes it as
        dead, rather than queueing it for another round of attempts. A new
        redrive, once the provider is back, sends it once."""
        self.provider_fails(1000)
        r = self.http("POST", "/v1/messages", {"channel": "push", "to": "twice-device", "payload": "p"})
        nid = r.json()["id"]
        self.wait_status(nid, "dead", 60)
        wait_until("the letter", lambda: self.letters(f"?application={nid}&state=new")["count"] == 1, 30)
        r = self.http("POST", f"/ops/v1/dead-letters/redrive?application={nid}")
        self.assertEqual((r.status, r.json()["redriven"]), (200, 1), r)
        wait_until("dead again", lambda: len(self.pushes("twice-device")) == 4 and
                   self.note_json(nid)["status"] == "dead", 60)
        # (The letter's job came from notify.retry: the last attempt's.)
        copy = next(m for t in ("notify.requests", "notify.retry") for m in kcat_consume_all(self.stack, t)
                    if nid in m["payload"] and "x-redrive-of" in m["headers"])
        headers = [a for k, v in copy["headers"].items() for a in ("-H", f"{k}={v}")]
        kcat(self.stack, "-P", "-t", copy["topic"], "-k", copy["key"], *headers,
             data=copy["payload"].encode() + b"\n")
        again = wait_until("the copy dead-lettered as settled", lambda: self.letters(
            f"?application={nid}&state=new&reason=dead%20before%20this%20delivery")["items"], 30)
        self.assertEqual(len(again), 1)
        self.assertEqual(len(self.pushes("twice-device")), 4)  # no third round
        self.assertEqual((self.note_json(nid)["status"], self.note_json(nid)["attempts"]), ("dead", 2))

        self.provider_fails(0)
        r = self.http("POST", f"/ops/v1/dead-letters/redrive?application={nid}")
        self.assertEqual((r.status, r.json()["redriven"]), (200, 2), r)  # the second death and the copy's
        self.wait_status(nid, "sent", 60)
        time.sleep(1.5)  # a second delivery, if there were one, would show by now
        self.assertEqual([x["status"] for x in self.pushes("twice-device")], [503, 503, 503, 503, 201])


if __name__ == "__main__":
    unittest.main()
