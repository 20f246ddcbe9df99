"""The API suite against a running stack (the compose `tests` service):
SB_API_URL names the dispatcher, SB_API_KEY the plain admin key. Uses only
what every deployment has: no process control, no direct database access;
waits are bounded."""

import json
import os
import time
import unittest
import urllib.error
import urllib.request

URL = os.environ.get("SB_API_URL", "")
KEY = os.environ.get("SB_API_KEY", "")
API = "/api/v1/applications"


def call(method, path, body=None, key=KEY):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(URL + path, method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait(what, fn, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@unittest.skipUnless(URL and KEY, "SB_API_URL and SB_API_KEY name the stack under test")
class TestApi(unittest.TestCase):
    def test_01_ready(self):
        self.assertEqual(call("GET", "/readyz")[0], 200)

    def test_02_admin_key_required(self):
        self.assertEqual(call("POST", API, {"name": "x"}, key="")[0], 401)
        self.assertEqual(call("POST", API, {"name": "x"}, key=KEY + "x")[0], 401)

    def test_03_chat_round_trip_with_search(self):
        status, app = call("POST", API, {"name": "compose"})
        self.assertEqual(status, 201, app)
        token = app["token"]
        self.assertEqual(call("POST", f"{API}/{token}/chats"), (201, {"number": 1}))
        for i, body in enumerate(("Hello from compose", "nothing here", "say HELLO again"), 1):
            self.assertEqual(call("POST", f"{API}/{token}/chats/1/messages", {"body": body}), (201, {"number": i}))
        wait("messages persisted", lambda: call("GET", f"{API}/{token}/chats/1/messages/3")[0] == 200)
        hits = wait("search (Elasticsearch) finds both", lambda: (lambda r: r if len(r[1]) == 2 else None)(
            call("GET", f"{API}/{token}/chats/1/messages/search?q=hell")))
        self.assertEqual(sorted(m["number"] for m in hits[1]), [1, 3])

    def test_04_notification_to_kafka(self):
        topic = os.environ.get("SB_NOTIFY_TOPICS", "notify.events").split(",")[0]
        status, r = call("POST", "/v1/messages", {"channel": "kafka", "to": topic, "payload": "{\"e\":1}"})
        self.assertEqual(status, 202, r)
        got = wait("sent", lambda: (lambda s: s[1] if s[1].get("status") == "sent" else None)(
            call("GET", f"/v1/messages/{r['id']}")))
        self.assertEqual(got["attempts"], 1)

    def test_05_bad_input(self):
        self.assertEqual(call("POST", API, {"name": 5})[0], 400)
        self.assertEqual(call("GET", f"{API}/{'A' * 22}")[0], 404)


if __name__ == "__main__":
    unittest.main()
