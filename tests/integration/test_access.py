"""Access control: admin API keys (hashed, constant-time compared, never
logged or held in plain text by the dispatcher), chat routes authorized by
their application token, and per-key / per-token rate limits kept in Redis
(shared by every dispatcher process) answering 429 with Retry-After."""

import os
import time
import unittest

from harness import StackTestCase, request, wait_until

API = "/api/v1/applications"


class TestAccess(StackTestCase):
    ROLES = ("persister",)

    @classmethod
    def configure(cls, stack):
        stack.extra_env.update({"SB_RATE_LIMIT_RPS": "2", "SB_RATE_LIMIT_BURST": "5"})

    def raw(self, method, path, body=None, headers=None, port=None):
        return request(port or self.port, method, path, body, headers)

    def test_01_admin_routes_need_a_valid_key(self):
        admin_routes = [("POST", API, {"name": "x"}), ("GET", API, None), ("POST", "/phonebook/reserve", {"areaCode": "212"}),
                        ("GET", "/phonebook/find/+14155550123", None), ("POST", "/sms/send/one", {}),
                        ("POST", "/v1/messages", {}), ("GET", "/v1/messages/0123456789abcdef", None),
                        ("POST", "/ops/ping", {})]
        for method, path, body in admin_routes:
            for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic abc"},
                            {"Authorization": f"Bearer {self.stack.api_key}x"}):
                r = self.raw(method, path, body, headers)
                self.assertEqual(r.status, 401, (method, path, headers, r))
                self.assertEqual(r.json()["error"]["code"], "unauthorized")
                self.assertIn("Bearer", r.headers.get("WWW-Authenticate", ""))
        r = self.http("POST", API, {"name": "with key"})
        self.assertEqual(r.status, 201, r)
        # Open routes stay open.
        for path in ("/healthz", "/readyz", "/metrics"):
            self.assertEqual(self.raw("GET", path).status, 200, path)

    def test_02_chat_routes_are_authorized_by_their_token(self):
        token = self.http("POST", API, {"name": "tokened"}).json()["token"]
        r = self.raw("POST", f"{API}/{token}/chats")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(self.raw("GET", f"{API}/{token}").status, 200)
        # Another token (unknown) gets nothing of this application.
        self.assertEqual(self.raw("GET", f"{API}/{'A' * 22}").status, 404)
        # Renaming is management: the admin key, not the token.
        self.assertEqual(self.raw("PUT", f"{API}/{token}", {"name": "mine now"}).status, 401)

    def test_03_key_is_never_logged_nor_held_in_plain_text(self):
        key = self.stack.api_key
        self.http("POST", API, {"name": "quiet"})
        self.raw("POST", API, {"name": "x"}, {"Authorization": f"Bearer {key}-but-wrong"})
        pid = self.stack.pid_of("dispatcher")[0]
        for f in ("environ", "cmdline"):
            with open(f"/proc/{pid}/{f}", "rb") as fh:
                self.assertNotIn(key.encode(), fh.read(), f)
        for name in os.listdir(self.stack.path("logs")):
            with open(os.path.join(self.stack.path("logs"), name), "rb") as fh:
                self.assertNotIn(key.encode(), fh.read(), name)
        self.assertEqual(oct(os.stat(self.stack.path("api_key")).st_mode & 0o777), "0o600")
        out = self.stack_print_config()
        self.assertIn("api_key_hashes = ", out)
        self.assertNotIn(key, out)

    def stack_print_config(self):
        import subprocess
        return subprocess.run([self.stack.binary("switchboard-dispatcher"), "--print-config"],
                              env=self.stack.env(), stdout=subprocess.PIPE, check=True).stdout.decode()

    def test_04_rate_limit_per_token_with_retry_after(self):
        a = self.http("POST", API, {"name": "busy"}).json()["token"]
        b = self.http("POST", API, {"name": "quiet"}).json()["token"]
        time.sleep(3)  # the admin key's bucket refills after the creates above
        statuses = [self.raw("GET", f"{API}/{a}").status for _ in range(12)]
        self.assertEqual(statuses[:5], [200] * 5, statuses)  # the burst
        self.assertIn(429, statuses)
        r = self.raw("GET", f"{API}/{a}")
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json()["error"]["code"], "rate_limited")
        self.assertGreaterEqual(int(r.headers["Retry-After"]), 1)
        # Another application is not held back by this one.
        self.assertEqual(self.raw("GET", f"{API}/{b}").status, 200)
        # Tokens come back at the configured rate.
        wait_until("a token refilled", lambda: self.raw("GET", f"{API}/{a}").status == 200, 5, 0.2)

    def test_05_limit_is_shared_by_dispatcher_processes(self):
        token = self.http("POST", API, {"name": "shared"}).json()["token"]
        self.stack.start_dispatcher(name="dispatcher-2", share_port=True)
        try:
            t0 = time.monotonic()
            # Fresh connections: SO_REUSEPORT spreads them over both processes.
            statuses = [self.raw("GET", f"{API}/{token}").status for _ in range(30)]
            elapsed = time.monotonic() - t0
            allowed = statuses.count(200)
            # One shared bucket: the burst plus what refilled meanwhile. Two
            # private buckets would let up to twice the burst through.
            self.assertLessEqual(allowed, 5 + int(2 * elapsed) + 1, (statuses, elapsed))
            self.assertEqual(allowed + statuses.count(429), 30)
        finally:
            self.stack.stop("dispatcher-2")


if __name__ == "__main__":
    unittest.main()
