"""Elasticsearch adapter contract (tests/contract/test_es_contract.c) and
the indexer role end to end.

Against the FAKE Elasticsearch in tests/fakes/fake_es.py unless ES_URL
names a real server; the fault-injection cases run only on the fake."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.request

from harness import FakeServer, StackTestCase, kcat_consume_all, wait_until

REAL_ES = os.environ.get("ES_URL")
BIN = os.environ.get("SB_BIN_DIR") or os.path.join(os.path.dirname(__file__), "../../build/bin")
API = "/api/v1/applications"


def fake_control(url, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    return json.load(urllib.request.urlopen(req, timeout=10))


class TestEsContract(unittest.TestCase):
    def test_contract(self):
        fake = None
        url = REAL_ES
        logs = tempfile.mkdtemp(prefix="sbfake-")
        if not url:
            fake = FakeServer("fake_es.py", logs)
            url = fake.url
        try:
            env = dict(os.environ, ES_URL=url, SB_FAKE_ES="0" if REAL_ES else "1")
            r = subprocess.run([os.path.join(BIN, "test_es_contract")], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            out = r.stdout.decode()
            self.assertEqual(r.returncode, 0, out)
            self.assertIn("PASSED", out)
        finally:
            if fake:
                fake.stop()
            shutil.rmtree(logs, ignore_errors=True)


class TestSearchThroughElasticsearch(StackTestCase):
    """Dispatcher search and the indexer role with ES_URL set."""
    ROLES = ("persister", "indexer")

    @classmethod
    def configure(cls, stack):
        cls.fake = None
        if REAL_ES:
            stack.es_url = REAL_ES
        else:
            cls.fake = FakeServer("fake_es.py", stack.run_dir)
            stack.es_url = cls.fake.url
        stack.es_index = f"sbe2e{int(time.time())}"

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if cls.fake:
            cls.fake.stop()

    def test_01_search_is_served_by_elasticsearch(self):
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
        # Prove the answer comes from Elasticsearch: remove the rows from MySQL.
        self.stack.sql(f"DELETE FROM messages WHERE application_token='{token}'")
        res = self.http("POST", f"{API}/{token}/chats/1/messages/search", {"body": "AFTER"})
        self.assertEqual(res.json(), [{"number": 3, "body": "hello after all"}])

    @unittest.skipIf(REAL_ES, "fault injection needs the fake")
    def test_02_rejections_retried_bad_documents_dead_lettered(self):
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

    @unittest.skipIf(REAL_ES, "stopping the server needs the fake")
    def test_03_elasticsearch_away_is_reported_but_not_fatal(self):
        type(self).fake = self.check_optional_dependency("elasticsearch", self.fake, "fake_es.py")


if __name__ == "__main__":
    unittest.main()
