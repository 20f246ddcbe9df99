"""Foundation: the stack comes up ready, a job travels dispatcher -> Kafka ->
worker -> MySQL, bad input is refused, poison jobs are dead-lettered, the
broker can go away and come back, consumer groups rebalance across
processes."""

import json
import os
import re
import subprocess
import threading
import time
import unittest

from harness import (ROOT, StackTestCase, kcat_consume_all, kcat_produce, log_tail, metric_samples, read_text,
                     readme_text, request, wait_until)


class TestFoundation(StackTestCase):

    def test_01_health_and_readiness(self):
        r = self.http("GET", "/healthz")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"status": "ok"})
        r = self.http("GET", "/readyz")
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertEqual(body["status"], "ready")
        self.assertEqual(set(body["dependencies"]), {"redis", "kafka", "mysql"})
        for dep, state in body["dependencies"].items():
            self.assertTrue(state["ok"], dep)
        self.assertRegex(r.headers["X-Request-Id"], r"^[0-9a-f]{32}$")
        # Bound before listening, the socket must not be polled: accept()
        # on it fails at once, in a loop, until the port opens.
        with open(self.stack.log("dispatcher")) as f:
            self.assertNotIn("Error from accept()", f.read())

    def test_02_request_id_echoed(self):
        r = self.http("GET", "/healthz", headers={"X-Request-Id": "abc-123_X"})
        self.assertEqual(r.headers["X-Request-Id"], "abc-123_X")
        # An unsafe id is replaced, not echoed.
        r = self.http("GET", "/healthz", headers={"X-Request-Id": "a b<script>"})
        self.assertRegex(r.headers["X-Request-Id"], r"^[0-9a-f]{32}$")

    def test_03_ping_round_trip(self):
        r = self.http("POST", "/ops/ping", {"note": "round trip"})
        self.assertEqual(r.status, 202, r)
        rid = r.json()["request_id"]
        self.assertEqual(r.json()["status"], "queued")
        wait_until("ping row", lambda: self.ping_count(f"request_id='{rid}'") == 1, 30)
        row = self.stack.sql(f"SELECT note, kafka_topic, created_at_ms <= consumed_at_ms "
                             f"FROM pipeline_pings WHERE request_id='{rid}'")[0]
        self.assertEqual(row, ["round trip", "chat.commands", "1"])
        # No body at all is fine too.
        r = self.http("POST", "/ops/ping", b"", headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 202, r)

    def test_04_many_pings_each_persisted_once(self):
        acked, others = self.send_pings(300, threads=8, note="burst")
        self.assertEqual(others, [])
        self.assertEqual(len(acked), 300)
        ids = ",".join(f"'{a}'" for a in acked)
        wait_until("300 rows", lambda: self.ping_count(f"request_id IN ({ids})") == 300, 60)

    def test_05_bad_input_refused_and_nothing_persisted(self):
        before = self.ping_count()
        cases = [
            (b'{"note":', 400, "bad_json"),
            (b'{"note":"x"} trailing', 400, "bad_json"),
            (b'{"note":"\xff\xfe"}', 400, "bad_json"),
            (b'{"note":"a\\u0000b"}', 400, "bad_json"),
            (b'[' * 100 + b']' * 100, 400, "bad_json"),
            (b'{"note":5}', 400, "invalid_field"),
            (b'{"note":"x","extra":1}', 400, "invalid_field"),
            (b'{"note":"x","note":"y"}', 400, "invalid_field"),
            (json.dumps({"note": "x" * 201}).encode(), 400, "invalid_field"),
            (b'[]', 400, "invalid_field"),
        ]
        for body, status, code in cases:
            r = self.http("POST", "/ops/ping", body)
            self.assertEqual(r.status, status, (body[:40], r))
            err = r.json()["error"]
            self.assertEqual(err["code"], code, (body[:40], r))
            self.assertTrue(err["message"])
        r = self.http("POST", "/ops/ping", b"note=x",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 415)
        r = self.http("GET", "/no/such/route")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json()["error"]["code"], "not_found")
        r = self.http("DELETE", "/ops/ping")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.headers.get("Allow"), "POST")
        # Over the body limit (64 KiB default): refused before parsing.
        r = self.http("POST", "/ops/ping", b'{"note":"' + b"x" * 70000 + b'"}')
        self.assertEqual(r.status, 413)
        time.sleep(1.5)  # anything wrongly queued would have landed by now
        self.assertEqual(self.ping_count(), before)
        self.assertEqual(self.http("GET", "/healthz").status, 200)

    def test_06_poison_jobs_dead_lettered_consumer_goes_on(self):
        poison = [
            (b"not json at all", "malformed JSON"),
            (json.dumps({"type": "system.ping", "version": 1}).encode(), "missing field"),
            (json.dumps({"type": "no.such", "version": 1, "key": "k", "request_id": "r",
                         "created_at": 1, "payload": {}}).encode(), "unknown job type"),
            (json.dumps({"type": "system.ping", "version": 1, "key": "k", "request_id": "r",
                         "created_at": 1, "payload": {"note": 7}}).encode(), "payload:"),
        ]
        for i, (value, _) in enumerate(poison):
            kcat_produce(self.stack, "chat.commands", f"poison-{i}", value)
        # A valid job produced straight onto the topic by another program.
        good = {"type": "system.ping", "version": 1, "key": "ext", "request_id": "external-1",
                "created_at": int(time.time() * 1000), "payload": {"note": "from kcat"}}
        kcat_produce(self.stack, "chat.commands", "ext", json.dumps(good).encode())
        wait_until("external ping persisted",
                   lambda: self.ping_count("request_id='external-1'") == 1, 30)

        def dead():
            msgs = [m for m in kcat_consume_all(self.stack, "chat.commands.dlq")
                    if (m.get("key") or "").startswith("poison-")]
            return msgs if len(msgs) >= len(poison) else None
        wait_until("dead letters", dead, 30)
        time.sleep(1.5)  # a duplicate, if there were one, would show by now
        msgs = dead()
        by_key = {m["key"]: m for m in msgs}
        self.assertEqual(len(msgs), len(poison), "each poison job dead-lettered exactly once")
        for i, (value, reason) in enumerate(poison):
            m = by_key[f"poison-{i}"]
            self.assertEqual(m["payload"].encode(), value)
            self.assertIn(reason, m["headers"]["x-dlq-reason"])
            self.assertEqual(m["headers"]["x-original-topic"], "chat.commands")
            self.assertIn("x-original-offset", m["headers"])
            # The indexer group reads chat.commands too, but only the topic's
            # owner (the persister) dead-letters, so each job appears once.
            self.assertEqual(m["headers"]["x-consumer-group"], "switchboard-persister")

    def gauge(self, name):
        s = metric_samples(self.http("GET", "/metrics").body.decode(), name)
        self.assertIn("", s, name)
        return int(s[""])

    def test_07_metrics(self):
        self.http("GET", "/healthz")
        r = self.http("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["Content-Type"].startswith("text/plain"))
        text = r.body.decode()
        m = re.search(r'switchboard_http_responses_total\{route="healthz",class="2xx"\} (\d+)', text)
        self.assertIsNotNone(m)
        self.assertGreaterEqual(int(m.group(1)), 1)
        self.assertIn('switchboard_dependency_up{dependency="kafka"} 1', text)
        self.assertIn("# TYPE switchboard_http_request_seconds histogram", text)
        # Connections are counted while open: 30 closed ones leave only the
        # scrape's own (and perhaps one still closing).
        for _ in range(30):
            self.http("GET", "/healthz")
        wait_until("closed connections uncounted", lambda: self.gauge("switchboard_http_connections") <= 2, 10)
        self.assertGreaterEqual(self.gauge("switchboard_http_connections"), 1)

    def test_08_broker_down_then_up(self):
        st = self.stack
        try:  # the finally brings the broker back even if this fails
            st.kafka_crash()  # kill -9: the broker dies with its log on disk
            def not_ready():
                r = self.http("GET", "/readyz")
                return r if r.status == 503 else None
            r = wait_until("/readyz 503", not_ready, 15)
            deps = r.json()["dependencies"]
            self.assertFalse(deps["kafka"]["ok"])
            self.assertTrue(deps["kafka"]["error"])
            self.assertTrue(deps["redis"]["ok"])
            self.assertTrue(deps["mysql"]["ok"])
            self.assertEqual(self.http("GET", "/healthz").status, 200)
            # A job that cannot be enqueued is answered 503 within the
            # request timeout (5 s default), never 2xx. Meanwhile /metrics
            # shows it waiting: in flight, and not acknowledged by Kafka.
            t0 = time.monotonic()
            answer = []
            sender = threading.Thread(target=lambda: answer.append(
                self.http("POST", "/ops/ping", {"note": "while down"})))
            sender.start()
            wait_until("the ping waiting for Kafka", lambda: self.gauge("switchboard_requests_in_flight") >= 1
                       and self.gauge("switchboard_kafka_outstanding") >= 1, 4)
            self.assertGreaterEqual(self.gauge("switchboard_http_connections"), 2)  # the ping's and ours
            sender.join(30)
            took = time.monotonic() - t0
            r = answer[0]
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json()["error"]["code"], "queue_unavailable")
            self.assertLess(took, 8)
            wait_until("nothing left waiting", lambda: self.gauge("switchboard_requests_in_flight") == 0
                       and self.gauge("switchboard_kafka_outstanding") == 0, 10)
        finally:
            st.start_kafka_node()  # the same port and log
        wait_until("/readyz 200 again", lambda: self.http("GET", "/readyz").status == 200, 30)
        r = self.http("POST", "/ops/ping", {"note": "after up"})
        self.assertEqual(r.status, 202, r)
        rid = r.json()["request_id"]
        wait_until("ping after recovery persisted",
                   lambda: self.ping_count(f"request_id='{rid}'") == 1, 60)
        self.assertEqual(self.ping_count("note='while down'"), 0)

    def test_09_consumer_group_rebalances_across_processes(self):
        st = self.stack
        first = "worker-persister"
        st.start_worker("persister", name="worker-persister-2")

        def split():
            a = re.findall(r'partitions assigned" count=(\d+)', log_tail(st, first, 400))
            b = re.findall(r'partitions assigned" count=(\d+)', log_tail(st, "worker-persister-2", 400))
            if a and b and int(a[-1]) + int(b[-1]) == self.PARTITIONS and int(b[-1]) > 0:
                return int(a[-1]), int(b[-1])
            return None
        a, b = wait_until("partitions split between two persisters", split, 60, 0.5)
        self.assertGreater(a, 0)
        # Work still flows with two members.
        acked, others = self.send_pings(40, threads=4, note="two members")
        self.assertEqual(others, [])
        ids = ",".join(f"'{x}'" for x in acked)
        wait_until("pings via two members", lambda: self.ping_count(f"request_id IN ({ids})") == 40, 60)
        # Stop the second member: the first takes every partition back.
        st.stop("worker-persister-2")
        wait_until("first persister owns all partitions again",
                   lambda: re.findall(r'partitions assigned" count=(\d+)', log_tail(st, first, 400))[-1]
                   == str(self.PARTITIONS), 60, 0.5)

    def test_10_openapi_matches_the_route_table(self):
        """schema/openapi.yaml documents exactly the routes of
        dispatcher/routes.c, and each documented route answers."""
        spec = read_text(os.path.join(ROOT, "schema", "openapi.yaml"))
        documented, path = set(), None
        for line in spec.splitlines():
            m = re.match(r"^  (/\S*):\s*$", line)
            if m:
                path = m.group(1)
                continue
            m = re.match(r"^    (get|post|put|delete):\s*$", line)
            if m and path:
                documented.add((m.group(1).upper(), path))
            if re.match(r"^\S", line):
                path = None
        table = read_text(os.path.join(ROOT, "dispatcher", "routes.c"))
        macros = dict(re.findall(r'^#define (\w+) (.+)$', table, re.M))
        def expand(expr):
            parts = re.findall(r'"[^"]*"|\w+', expr)
            return "".join(p[1:-1] if p.startswith('"') else expand(macros[p]) for p in parts)
        routed = {(m, expand(p)) for m, p in re.findall(r'RQ?\("(\w+)", ([^,]+),', table)}
        self.assertEqual(documented, routed)

        token = self.http("POST", "/api/v1/applications", {"name": "openapi"}).json()["token"]
        self.http("POST", f"/api/v1/applications/{token}/chats")
        self.http("POST", f"/api/v1/applications/{token}/chats/1/messages", {"body": "hi"})
        wait_until("message persisted", lambda: self.http(
            "GET", f"/api/v1/applications/{token}/chats/1/messages/1").status == 200, 30)
        bodies = {"/applications": {"name": "n"}, "/messages": {"body": "b"}, "/search": {"body": "b"},
                  "/ping": {}, "/chats": None}
        self.stack.seed(users=5, numbers=10, area_codes="212")
        res = self.http("POST", "/phonebook/reserve", {"areaCode": "212"}).json()
        bodies["/reserve"] = {"areaCode": "212"}
        bodies["/assign"] = {"userId": 1, "refId": res["refId"], "phoneNumber": res["phoneNumbers"][0]}
        for user, phone in ((2, "+12125550100"), (3, "+12125550101")):
            self.stack.sql(f"UPDATE users SET phone_number='{phone}' WHERE user_id={user}")
        sms = {"sms": {"idempotencyKey": "openapi-1", "fromPhoneNumber": "+12125550100",
                       "toPhoneNumber": "+12125550101", "content": "hi"}}
        bodies["/one"], bodies["/many"] = sms, [sms]
        note = {"channel": "push", "to": "device-1", "payload": "hi", "idempotencyKey": "openapi-note"}
        nid = self.http("POST", "/v1/messages", note).json()["id"]
        tid = self.http("POST", "/sms/send/many", [sms]).json()["trackingId"]
        bodies["/suppressions"] = {"channel": "email", "address": "openapi2@example.com"}
        self.assertEqual(self.http("POST", "/v1/suppressions", {"channel": "email",
                                                                "address": "openapi@example.com"}).status, 201)
        for method, p in sorted(documented):
            path = p.replace("{token}", token).replace("{chat}", "1").replace("{message}", "1")
            path = path.replace("{phone}", res["phoneNumbers"][1]).replace("{id}", nid)
            path = path.replace("{tracking}", tid)
            if path.endswith("/search") and method == "GET":
                path += "?q=hi"
            if path == "/v1/messages" and method == "GET":
                path += "?idempotencyKey=openapi-note"
            if path == "/v1/suppressions" and method == "DELETE":  # the entry made before the loop
                path += "?channel=email&address=openapi%40example.com"
            body = None
            if method in ("POST", "PUT"):
                key = "/" + path.rsplit("/", 1)[1] if not path.rsplit("/", 1)[1].isdigit() else "/messages"
                body = bodies.get(key, {"name": "n"} if method == "PUT" and "/chats" not in path else None)
            if path == "/v1/messages" and method == "POST":
                body = note
            r = self.http(method, path, body)
            if path == "/v1/webhooks/secret":  # off unless configured (test_delivery)
                self.assertEqual(r.status, 404, r)
                continue
            if path.endswith("/cancel"):  # a notification sent now, not scheduled (test_delivery cancels one)
                self.assertEqual(r.status, 409, r)
                continue
            if path.startswith(("/v1/callbacks/", "/v1/inbound/")):  # off unless configured (test_delivery)
                self.assertEqual(r.status, 404, r)
                continue
            if path == "/ws/echo":  # a WebSocket, and off unless configured (test_websocket runs it)
                self.assertEqual(r.status, 404, r)
                continue
            if path == "/ws":  # a WebSocket (test_ws_commands): a plain GET is told to upgrade
                self.assertEqual((r.status, r.headers.get("Upgrade")), (426, "websocket"), r)
                continue
            self.assertLess(r.status, 300, (method, path, r))


class TestCommandLine(unittest.TestCase):
    """--help, --print-config and bad flags of every binary."""

    BIN = os.environ.get("SB_BIN_DIR") or os.path.join(os.path.dirname(__file__), "../../build/bin")

    def run_bin(self, name, *args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([os.path.join(self.BIN, name), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=e, timeout=30)

    def test_help_and_config(self):
        for name, flag in (("switchboard-dispatcher", "--listen"), ("switchboard-worker", "--role"),
                           ("switchboard-migrate", "--mysql-url")):
            r = self.run_bin(name, "--help")
            self.assertEqual(r.returncode, 0, name)
            self.assertIn(flag, r.stdout.decode(), name)
            r = self.run_bin(name, "--no-such-flag")
            self.assertEqual(r.returncode, 2, name)
            self.assertIn("unknown option", r.stderr.decode(), name)
        r = self.run_bin("switchboard-dispatcher", "--print-config", "--threads", "3",
                         env={"MYSQL_URL": "mysql://a:hunter2@h:1/d"})
        out = r.stdout.decode()
        self.assertIn("threads = 3", out)
        self.assertIn("mysql_url = mysql://a:***@h:1/d", out)
        self.assertNotIn("hunter2", out)
        # The README's configuration table names every setting of every binary.
        readme = readme_text()
        for name in ("switchboard-dispatcher", "switchboard-worker", "switchboard-migrate",
                     "switchboard-counts"):
            help_text = self.run_bin(name, "--help").stdout.decode()
            settings = re.findall(r"^  (--[a-z-]+)\s+([A-Z_]+)\s", help_text, re.M)
            self.assertGreater(len(settings), 3, name)
            for flag, env in settings:
                self.assertTrue(f"`{flag}`" in readme, f"{name}: README lacks {flag}")
                self.assertTrue(f"`{env}`" in readme, f"{name}: README lacks {env}")
        r = self.run_bin("switchboard-worker", "--role", "juggler")
        self.assertEqual(r.returncode, 2)
        self.assertIn("persister", r.stderr.decode())


if __name__ == "__main__":
    unittest.main()
