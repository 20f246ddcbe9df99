"""Elasticsearch adapter contract (tests/contract/test_es_contract.c) and
the indexer role end to end, against a real OpenSearch node the test
starts (scripts/stackparts.py: Maven Central's jars, single node on
loopback), or against the server ES_URL names (compose: Elasticsearch).

The fake in tests/fakes/fake_es.py stays for the faults a real server
cannot be made to produce on demand: a bulk request refused whole (429),
one document refused among others."""

import json
import os
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

from harness import FakeServer, StackTestCase, drop_stack, kcat_consume_all, kcat_dead_letter, new_stack, wait_until

REAL_ES = os.environ.get("ES_URL")
BIN = os.environ.get("SB_BIN_DIR") or os.path.join(os.path.dirname(__file__), "../../build/bin")
API = "/api/v1/applications"


def fake_control(url, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    return json.load(urllib.request.urlopen(req, timeout=10))


def server_name(url):
    """What the server's banner says it is: "opensearch 2.19.6", "elasticsearch 8.x"."""
    with urllib.request.urlopen(url + "/", timeout=10) as r:
        v = json.load(r).get("version", {})
    return f"{v.get('distribution', 'elasticsearch')} {v.get('number', '?')}"


def run_contract(test, url, fake):
    env = dict(os.environ, ES_URL=url, SB_FAKE_ES="1" if fake else "0")
    r = subprocess.run([os.path.join(BIN, "test_es_contract")], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out = r.stdout.decode()
    test.assertEqual(r.returncode, 0, out)
    test.assertIn("PASSED", out)
    print(f"\n  es contract passed against {'the fake' if fake else server_name(url)} at {url}",
          file=sys.stderr)


class TestEsContract(unittest.TestCase):
    def test_real_server(self):
        st = None
        url = REAL_ES
        try:
            if not url:
                st = new_stack()
                st.start_opensearch()
                url = st.es_url
                self.assertTrue(server_name(url).startswith("opensearch "))
            run_contract(self, url, fake=False)
        finally:
            if st:
                drop_stack(st)

    def test_fake_faults(self):
        st = new_stack()
        fake = FakeServer("fake_es.py", st.run_dir)
        try:
            run_contract(self, fake.url, fake=True)
        finally:
            fake.stop()
            drop_stack(st)


class TestSearchThroughOpenSearch(StackTestCase):
    """Dispatcher search and the indexer role with ES_URL set: OpenSearch
    started with the stack, or the server ES_URL names."""
    ROLES = ("persister", "indexer")

    @classmethod
    def configure(cls, stack):
        if REAL_ES:
            stack.es_url = REAL_ES
        else:
            stack.start_opensearch()
        stack.es_index = f"sbe2e{int(time.time())}"

    def test_01_search_is_served_by_the_search_engine(self):
        token = self.create_app("es")
        self.http("POST", f"{API}/{token}/chats")
        for body in ("Hello there", "say HELLO", "unrelated"):
            self.assertEqual(self.http("POST", f"{API}/{token}/chats/1/messages", {"body": body}).status, 201)
        r = self.http("PUT", f"{API}/{token}/chats/1/messages/3", {"body": "hello after all"})
        self.assertEqual(r.status, 200)

        def found():
            res = self.http("GET", f"{API}/{token}/chats/1/messages/search?q=hell")
            nums = sorted(m["number"] for m in res.json()) if res.status == 200 else None
            return nums if nums == [1, 2, 3] else None
        wait_until("indexed and searchable", found, 30, 0.2)
        # Prove the answer comes from the search engine: remove the rows from MySQL.
        self.stack.sql(f"DELETE FROM messages WHERE application_token='{token}'")
        res = self.http("POST", f"{API}/{token}/chats/1/messages/search", {"body": "AFTER"})
        self.assertEqual(res.json(), [{"number": 3, "body": "hello after all"}])

    def test_01b_a_redriven_update_keeps_its_place(self):
        """An update that died at the indexer, redriven (issue 25) after a
        newer update was indexed: its copy takes the version of the job it
        copies, so the search engine keeps the newer body (and so does
        MySQL)."""
        token = self.create_app("redrive")
        self.http("POST", f"{API}/{token}/chats")
        self.assertEqual(self.http("POST", f"{API}/{token}/chats/1/messages", {"body": "first"}).status, 201)
        msg = f"{API}/{token}/chats/1/messages/1"

        def found(q):
            res = self.http("GET", f"{API}/{token}/chats/1/messages/search?q={q}")
            return res.json() if res.status == 200 else None
        for text in ("stale", "fresh"):
            self.assertEqual(self.http("PUT", msg, {"body": text}).status, 200)
            wait_until(f"{text} searchable", lambda: found(text) == [{"number": 1, "body": text}], 30, 0.2)
        old = next(m for m in kcat_consume_all(self.stack, "chat.commands")
                   if m["key"] == token and '"stale"' in m["payload"])
        kcat_dead_letter(self.stack, old, "switchboard-indexer", "elasticsearch: mapper_parsing_exception")
        wait_until("the letter", lambda: self.http("GET", f"/ops/v1/dead-letters?application={token}")
                   .json()["count"] == 1, 30)
        r = self.http("POST", f"/ops/v1/dead-letters/redrive?application={token}")
        self.assertEqual((r.status, r.json()["redriven"]), (200, 1), r)

        def lag(group):
            return next(g["lag"] for g in self.http("GET", "/ops/v1/overview").json()["groups"]
                        if g["group"] == group)
        wait_until("both roles took the copy",
                   lambda: lag("switchboard-indexer") == 0 and lag("switchboard-persister") == 0, 30)
        time.sleep(1.5)  # the index refreshes every second
        self.assertEqual(found("stale"), [])
        self.assertEqual(found("fresh"), [{"number": 1, "body": "fresh"}])
        self.assertEqual(self.http("GET", msg).json()["body"], "fresh")

        # An update that stood after the fresh one and died before it was
        # indexed (made here: its letter names a later offset): redriven,
        # it is indexed.
        late = json.loads(old["payload"])
        late["payload"]["body"], late["created_at"] = "latest", int(time.time() * 1000)
        kcat_dead_letter(self.stack, {**old, "offset": old["offset"] + 1000, "payload": json.dumps(late)},
                         "switchboard-indexer", "elasticsearch: es_rejected_execution_exception")
        r = self.http("POST", f"/ops/v1/dead-letters/redrive?application={token}")
        self.assertEqual((r.status, r.json()["redriven"]), (200, 1), r)
        wait_until("latest searchable", lambda: found("latest") == [{"number": 1, "body": "latest"}], 30, 0.2)
        self.assertEqual(self.http("GET", msg).json()["body"], "latest")

    @unittest.skipIf(REAL_ES, "stopping the server needs the one the test started")
    def test_02_search_engine_away_is_reported_but_not_fatal(self):
        port = int(self.stack.es_url.rsplit(":", 1)[1])
        # SIGKILL: the node is gone at once, as after a crash; it starts
        # again on its data.
        self.check_optional_dependency(
            "elasticsearch", lambda: self.stack.stop("opensearch", sig=signal.SIGKILL),
            lambda: self.stack.start_opensearch(port=port))


class TestSearchFaults(StackTestCase):
    """The indexer under faults only the fake produces on demand."""
    ROLES = ("persister", "indexer")

    @classmethod
    def configure(cls, stack):
        cls.fake = FakeServer("fake_es.py", stack.run_dir)
        stack.es_url = cls.fake.url
        stack.es_index = f"sbe2e{int(time.time())}"

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.fake.stop()

    def test_rejections_retried_bad_documents_dead_lettered(self):
        token = self.create_app("es-faults")
        self.http("POST", f"{API}/{token}/chats")
        # The next two bulk requests are refused whole (429): retried.
        fake_control(self.fake.url, "/_fake/bulk_status", {"status": 429, "count": 2})
        # Message 2 can never be indexed (mapping error): dead-lettered alone.
        fake_control(self.fake.url, "/_fake/item_error", {"id": f"{token}:1:2", "status": 400,
                     "type": "document_parsing_exception", "reason": "forced by the test"})
        for body in ("alpha one", "alpha two", "alpha three"):
            self.assertEqual(self.http("POST", f"{API}/{token}/chats/1/messages", {"body": body}).status, 201)

        def found():
            res = self.http("GET", f"{API}/{token}/chats/1/messages/search?q=alpha").json()
            nums = sorted(m["number"] for m in res)
            return nums if nums == [1, 3] else None
        wait_until("the good documents indexed after the 429s", found, 30, 0.2)
        dead = wait_until("the bad one dead-lettered", lambda: [
            m for m in kcat_consume_all(self.stack, "chat.commands.dlq")
            if m["headers"].get("x-consumer-group") == "switchboard-indexer"], 30, 0.5)
        self.assertEqual(len(dead), 1)
        self.assertIn("forced by the test", dead[0]["headers"]["x-dlq-reason"])
        self.assertEqual(json.loads(dead[0]["payload"])["payload"]["number"], 2)
        # The persister stored all three regardless.
        self.assertEqual(self.stack.sql(f"SELECT COUNT(*) FROM messages WHERE application_token='{token}'"),
                         [["3"]])


if __name__ == "__main__":
    unittest.main()
