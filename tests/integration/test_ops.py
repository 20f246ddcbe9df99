"""The operator's view (GET /ops/v1/overview, issue 25): every topic's
partitions with their end offsets, and every consumer group, an idle one
too, with its committed offsets and lag, read from the real broker."""

import json
import os
import shutil
import subprocess
import threading
import time
import unittest

from harness import ROOT, StackTestCase, kcat_produce, wait_until

NODE_DIR = os.path.join(ROOT, ".cache", "ws-node")
# SB_UPDATE_SCREENSHOTS=1: the console's screenshots also go to docs/console/.
DOCS_SHOTS = os.path.join(ROOT, "docs", "console")

API = "/api/v1/applications"


class TestOps(StackTestCase):
    ROLES = ("persister",)

    def overview(self):
        r = self.http("GET", "/ops/v1/overview")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def group(self, name):
        return next((g for g in self.overview()["groups"] if g["group"] == name), None)

    def test_01_admin_only(self):
        r = self.http("GET", "/ops/v1/overview", headers={"Authorization": "Bearer not-a-key"})
        self.assertEqual((r.status, r.json()["error"]["code"]), (401, "unauthorized"))

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
        finally:
            self.stack.start_worker("persister")
        wait_until("lag back to zero", lambda: self.group("switchboard-persister")["lag"] == 0, 60)
        self.assertEqual(self.stack.sql(f"SELECT COUNT(*) FROM messages WHERE application_token='{token}'"),
                         [["12"]])

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
        wait_until("dead-lettered", lambda: self.letters(f"?since={t0}")["count"] == 2, 30)
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
                              f"http://127.0.0.1:{self.port}", self.stack.api_key, shots, note],
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
        for name in ("console-overview.png", "console-dead-letters.png", "console-lookup.png"):
            self.assertGreater(os.path.getsize(os.path.join(shots, name)), 10_000, name)
            if os.environ.get("SB_UPDATE_SCREENSHOTS"):
                os.makedirs(DOCS_SHOTS, exist_ok=True)
                shutil.copy(os.path.join(shots, name), DOCS_SHOTS)


if __name__ == "__main__":
    unittest.main()
