"""Chat service end to end over HTTP against the real stack: applications,
chats, messages, updates, search, the count roll-up and bad input."""

import json
import re
import subprocess
import time
import unittest

from harness import StackTestCase, readme_block, wait_until

API = "/api/v1/applications"


class TestChat(StackTestCase):
    ROLES = ("persister",)

    @classmethod
    def configure(cls, stack):
        # Small batches by bytes: every test here also exercises the cap.
        stack.extra_env["SB_BATCH_MAX_BYTES"] = "65536"

    def rows(self, sql):
        return self.stack.sql(sql)

    def message_rows(self, token, chat):
        return int(self.rows(f"SELECT COUNT(*) FROM messages WHERE application_token='{token}'"
                             f" AND chat_number={chat}")[0][0])

    def test_01_applications(self):
        r = self.http("POST", API, {"name": "Acme support"})
        self.assertEqual(r.status, 201, r)
        body = r.json()
        self.assertEqual(set(body), {"name", "token", "chats_count"})
        self.assertEqual(body["name"], "Acme support")
        self.assertEqual(body["chats_count"], 0)
        self.assertRegex(body["token"], r"^[A-Za-z0-9_-]{22}$")
        token = body["token"]
        r = self.http("GET", f"{API}/{token}")
        self.assertEqual(r.json(), body)
        r = self.http("PUT", f"{API}/{token}", {"name": "Acme help"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["name"], "Acme help")
        self.assertEqual(self.http("GET", f"{API}/{token}").json()["name"], "Acme help")
        # Renaming to the same name is fine too.
        self.assertEqual(self.http("PUT", f"{API}/{token}", {"name": "Acme help"}).status, 200)
        # Tokens are unique and random.
        other = self.create_app("other")
        self.assertNotEqual(other, token)

    def test_02_list_applications_paginated(self):
        tokens = [self.create_app(f"page-{i}") for i in range(5)]
        seen, after = [], None
        while True:
            path = f"{API}?limit=2" + (f"&after={after}" if after else "")
            page = self.http("GET", path).json()
            self.assertLessEqual(len(page), 2)
            seen += [a["token"] for a in page]
            if len(page) < 2:
                break
            after = page[-1]["token"]
        for t in tokens:
            self.assertIn(t, seen)
        self.assertEqual(len(seen), len(set(seen)))
        # Creation order.
        self.assertEqual([t for t in seen if t in tokens], tokens)
        self.assertEqual(self.http("GET", f"{API}?limit=0").status, 400)
        self.assertEqual(self.http("GET", f"{API}?limit=101").status, 400)
        self.assertEqual(self.http("GET", f"{API}?after=nope").status, 400)

    def test_03_fifty_chats_concurrently_get_1_to_50(self):
        token = self.create_app("chats")
        res = self.parallel([("POST", f"{API}/{token}/chats", None)] * 50, threads=10)
        self.assertTrue(all(r.status == 201 for r in res), [r for r in res if r.status != 201][:3])
        numbers = sorted(r.json()["number"] for r in res)
        self.assertEqual(numbers, list(range(1, 51)))
        wait_until("50 chats persisted", lambda: int(self.rows(
            f"SELECT COUNT(*) FROM chats WHERE application_token='{token}'")[0][0]) == 50, 30)
        # Paginated by number.
        page1 = self.http("GET", f"{API}/{token}/chats?limit=20").json()
        page2 = self.http("GET", f"{API}/{token}/chats?limit=20&after=20").json()
        self.assertEqual([c["number"] for c in page1], list(range(1, 21)))
        self.assertEqual([c["number"] for c in page2], list(range(21, 41)))
        self.assertEqual(self.http("GET", f"{API}/{token}/chats/7").json(),
                         {"number": 7, "messages_count": 0})

    def test_04_messages_concurrently_contiguous_per_chat(self):
        token = self.create_app("messages")
        for _ in range(4):
            self.assertEqual(self.http("POST", f"{API}/{token}/chats").status, 201)
        calls = [("POST", f"{API}/{token}/chats/{1 + i % 4}/messages", {"body": f"message {i}"})
                 for i in range(200)]
        res = self.parallel(calls, threads=10)
        self.assertTrue(all(r.status == 201 for r in res), [r for r in res if r.status != 201][:3])
        per_chat = {c: [] for c in range(1, 5)}
        for (method, path, body), r in zip(calls, res):
            chat = int(re.search(r"/chats/(\d+)/", path).group(1))
            per_chat[chat].append(r.json()["number"])
        for chat, nums in per_chat.items():
            self.assertEqual(sorted(nums), list(range(1, 51)), chat)
        for chat in range(1, 5):
            wait_until(f"chat {chat} persisted", lambda: self.message_rows(token, chat) == 50, 30)
        # Each 201 was for that exact body.
        for (method, path, body), r in zip(calls[:20], res[:20]):
            got = self.http("GET", f"{path}/{r.json()['number']}")
            self.assertEqual(got.json(), {"number": r.json()["number"], "body": body["body"]})
        listed = self.http("GET", f"{API}/{token}/chats/2/messages?limit=10&after=5").json()
        self.assertEqual([m["number"] for m in listed], list(range(6, 16)))

        # Roll-up: counts become exact.
        rc, out = self.run_counts()
        self.assertEqual(rc, 0, out)
        self.assertIn("roll-up done", out)
        for chat in range(1, 5):
            self.assertEqual(self.http("GET", f"{API}/{token}/chats/{chat}").json()["messages_count"], 50)
        self.assertEqual(self.http("GET", f"{API}/{token}").json()["chats_count"], 4)

    def test_05_update_and_search(self):
        token = self.create_app("search")
        self.http("POST", f"{API}/{token}/chats")
        self.http("POST", f"{API}/{token}/chats")
        bodies = ["Hello there", "well hello again", "nothing to see", "HELLO", "say hellooo",
                  "100% sure_thing"]
        for b in bodies:
            self.assertEqual(self.http("POST", f"{API}/{token}/chats/1/messages", {"body": b}).status, 201)
        self.http("POST", f"{API}/{token}/chats/2/messages", {"body": "hello from chat two"})
        r = self.http("PUT", f"{API}/{token}/chats/1/messages/3", {"body": "now it says hello"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"number": 3, "body": "now it says hello"})
        wait_until("update applied", lambda: self.http("GET", f"{API}/{token}/chats/1/messages/3")
                   .json().get("body") == "now it says hello", 30)
        wait_until("all persisted", lambda: self.message_rows(token, 1) == 6, 30)

        r = self.http("GET", f"{API}/{token}/chats/1/messages/search?q=hello")
        self.assertEqual(r.status, 200, r)
        numbers = [m["number"] for m in r.json()]
        # Partial and case-insensitive, one chat only, exact match first.
        self.assertEqual(sorted(numbers), [1, 2, 3, 4, 5])
        self.assertEqual(numbers[0], 4)
        r = self.http("POST", f"{API}/{token}/chats/1/messages/search", {"body": "ELL"})
        self.assertEqual(sorted(m["number"] for m in r.json()), [1, 2, 3, 4, 5])
        r = self.http("GET", f"{API}/{token}/chats/1/messages/search?q=hello&limit=2&page=2")
        self.assertEqual(len(r.json()), 2)
        self.assertEqual(self.http("GET", f"{API}/{token}/chats/1/messages/search?q=zzz").json(), [])
        # LIKE wildcards are literal text.
        self.assertEqual([m["number"] for m in self.http(
            "GET", f"{API}/{token}/chats/1/messages/search?q=0%25%20s").json()], [6])
        self.assertEqual(self.http("GET", f"{API}/{token}/chats/1/messages/search?q=e_t").json(),
                         [{"number": 6, "body": "100% sure_thing"}])
        self.assertEqual(self.http("GET", f"{API}/{token}/chats/1/messages/search?q=e%25t").json(), [])
        self.assertEqual(self.http("GET", f"{API}/{token}/chats/1/messages/search").status, 400)

    def test_06_create_then_update_back_to_back_update_wins(self):
        token = self.create_app("race")
        self.http("POST", f"{API}/{token}/chats")
        for i in range(30):
            r = self.http("POST", f"{API}/{token}/chats/1/messages", {"body": f"first {i}"})
            self.assertEqual(r.status, 201)
            n = r.json()["number"]
            u = self.http("PUT", f"{API}/{token}/chats/1/messages/{n}", {"body": f"second {i}"})
            self.assertEqual(u.status, 200, u)
        wait_until("30 persisted", lambda: self.message_rows(token, 1) == 30, 30)
        time.sleep(1)
        bodies = self.rows(f"SELECT body FROM messages WHERE application_token='{token}' ORDER BY number")
        self.assertEqual([b[0] for b in bodies], [f"second {i}" for i in range(30)])

    def test_07_not_found(self):
        token = self.create_app("missing")
        self.http("POST", f"{API}/{token}/chats")
        ghost = "A" * 22
        for method, path in (("GET", f"{API}/{ghost}"), ("PUT", f"{API}/{ghost}"),
                             ("POST", f"{API}/{ghost}/chats"), ("GET", f"{API}/{ghost}/chats"),
                             ("GET", f"{API}/short"),
                             ("GET", f"{API}/{token}/chats/99"),
                             ("POST", f"{API}/{token}/chats/99/messages"),
                             ("GET", f"{API}/{token}/chats/99/messages"),
                             ("GET", f"{API}/{token}/chats/1/messages/5"),
                             ("PUT", f"{API}/{token}/chats/1/messages/5")):
            if method == "GET" or path.endswith("/chats"):
                body = None
            elif path.count("/") == 4:
                body = {"name": "x"}
            else:
                body = {"body": "x"}
            r = self.http(method, path, body)
            self.assertEqual(r.status, 404, (method, path, r))
            self.assertEqual(r.json()["error"]["code"], "not_found")

    def test_08_bad_input_refused_nothing_persisted(self):
        token = self.create_app("bad")
        self.http("POST", f"{API}/{token}/chats")
        wait_until("chat persisted", lambda: int(self.rows(
            f"SELECT COUNT(*) FROM chats WHERE application_token='{token}'")[0][0]) == 1, 30)
        msgs = f"{API}/{token}/chats/1/messages"
        cases = [
            ("POST", API, b'{"name":', 400),
            ("POST", API, b'{}', 400),
            ("POST", API, b'{"name":""}', 400),
            ("POST", API, b'{"name":5}', 400),
            ("POST", API, b'{"name":"a","token":"mine"}', 400),
            ("POST", API, json.dumps({"name": "x" * 256}).encode(), 400),
            ("POST", API, b'{"name":"\xc3\x28"}', 400),
            ("POST", API, b'{"name":"a\\u0000"}', 400),
            ("POST", f"{API}/{token}/chats", b'{"x":1}', 400),
            ("POST", msgs, b'{"body":""}', 400),
            ("POST", msgs, b'{"body":null}', 400),
            ("POST", msgs, b'{"body":["x"]}', 400),
            ("POST", msgs, b'{"text":"hi"}', 400),
            ("POST", msgs, b'{"body":"hi","number":7}', 400),
            ("POST", msgs, json.dumps({"body": "x" * 10001}).encode(), 400),
            ("POST", msgs, b'{"body":"' + b"x" * 130000 + b'"}', 413),
            ("POST", msgs, b'{"body":"\xff"}', 400),
            ("POST", msgs, b'not json', 400),
            ("POST", f"{API}/{token}/chats/0/messages", b'{"body":"x"}', 400),
            ("POST", f"{API}/{token}/chats/-1/messages", b'{"body":"x"}', 400),
            ("POST", f"{API}/{token}/chats/99999999999999999999/messages", b'{"body":"x"}', 400),
            ("POST", f"{API}/{token}/chats/1e3/messages", b'{"body":"x"}', 400),
            ("GET", f"{msgs}/2147483648", None, 400),
            ("PUT", f"{msgs}/1", b'{"body":1}', 400),
            ("GET", f"{API}/{token}/chats?after=-5", None, 400),
            ("GET", f"{API}/{token}/chats?limit=abc", None, 400),
            ("DELETE", f"{API}/{token}", None, 405),
            ("GET", "/api/v1/nothing", None, 404),
            ("POST", f"{msgs}/search", b'{"body":""}', 400),
            ("GET", f"{msgs}/search?q=x&page=0", None, 400),
        ]
        for method, path, body, status in cases:
            r = self.http(method, path, body)
            self.assertEqual(r.status, status, (method, path, body[:40] if body else None, r))
            if status != 413:
                err = r.json()["error"]
                self.assertTrue(err["code"] and err["message"])
        time.sleep(1.5)
        self.assertEqual(self.message_rows(token, 1), 0)
        self.assertEqual(int(self.rows(f"SELECT COUNT(*) FROM chats WHERE application_token='{token}'")[0][0]), 1)
        self.assertEqual(int(self.rows("SELECT COUNT(*) FROM applications WHERE name LIKE 'x%'"
                                       " OR name = '' OR name = 'a'")[0][0]), 0)

    def test_10_large_bodies_split_into_batches(self):
        token = self.create_app("large")
        self.http("POST", f"{API}/{token}/chats")
        st = self.stack
        st.stop("worker-persister")  # let a backlog of ~1 MB build up
        calls = [("POST", f"{API}/{token}/chats/1/messages", {"body": f"{i:04d}" + "x" * 9996})
                 for i in range(100)]
        res = self.parallel(calls, threads=8)
        self.assertTrue(all(r.status == 201 for r in res))
        st.start_worker("persister")
        wait_until("all large messages persisted", lambda: self.message_rows(token, 1) == 100, 60)
        self.assertEqual(self.rows(f"SELECT MIN(CHAR_LENGTH(body)), MAX(CHAR_LENGTH(body)) FROM messages"
                                   f" WHERE application_token='{token}'"), [["10000", "10000"]])

    def test_11_scripts_sent_by_digest_and_reloaded_after_a_flush(self):
        """Redis scripts go as EVALSHA; after SCRIPT FLUSH (or a restart) the
        NOSCRIPT answer makes the dispatcher send the script itself once."""
        token = self.create_app("scripts")
        self.assertEqual(self.http("POST", f"{API}/{token}/chats").status, 201)

        def calls(cmd):
            stats = self.redis_cli("INFO", "commandstats")
            for line in stats.splitlines():
                if line.startswith(f"cmdstat_{cmd}:"):
                    return int(line.split("calls=")[1].split(",")[0])
            return 0
        before = calls("evalsha")
        for i in range(5):
            self.assertEqual(self.http("POST", f"{API}/{token}/chats/1/messages", {"body": f"s{i}"}).status, 201)
        self.assertGreaterEqual(calls("evalsha") - before, 5)
        self.assertEqual(self.redis_cli("SCRIPT", "FLUSH"), "OK")
        evals = calls("eval")
        r = self.http("POST", f"{API}/{token}/chats/1/messages", {"body": "after flush"})
        self.assertEqual((r.status, r.json()), (201, {"number": 6}))
        self.assertGreater(calls("eval"), evals)  # the fallback loaded the script again

    def test_09_readme_example_runs_as_shown(self):
        """The README's chat example, run verbatim against this stack."""
        block = readme_block("## Chat API").replace(".run/api_key", self.stack.path("api_key"))
        block = block.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{self.port}")
        block = block.replace("build/bin/", self.stack.bin_dir + "/")
        env = dict(self.stack.env())
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out)
        lines = [l for l in out.splitlines() if l.startswith(("{", "["))]
        # Compare with what the README shows in its comments.
        shown = [c.split("# ", 1)[1].strip() for c in block.splitlines()
                 if "curl" in c and "# " in c and c.split("# ", 1)[1].strip().startswith(("{", "["))]
        exact = [x for x in shown if "…" not in x]
        for expected in exact:
            self.assertIn(expected, "\n".join(lines), out)
        self.assertIn('{"number":1,"messages_count":2}', out)
        self.assertRegex(out, r'\{"name":"customer support","token":"[A-Za-z0-9_-]{22}","chats_count":1\}')


if __name__ == "__main__":
    unittest.main()
