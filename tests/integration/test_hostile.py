"""Hostile input: a corpus of bad requests, sent over raw sockets where the
HTTP client would not let us. Every one gets a 4xx (or the connection is
closed), changes nothing, and the dispatcher stays up; under the ASan
build the harness also fails on any sanitizer report in the logs."""

import json
import re
import socket
import time
import unittest

from harness import StackTestCase, cpu_seconds, log_lines, metric_samples, read_response, stackmod, wait_until

API = "/api/v1/applications"


def read_to_eof(s):
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


class TestHostile(StackTestCase):
    ROLES = ("persister",)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = cls.http("POST", API, {"name": "hostile"}).json()["token"]
        cls.http("POST", f"{API}/{cls.token}/chats")

    def raw(self, data, read_timeout=15):
        """Sends bytes as they are; returns (status or None, response bytes)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=read_timeout)
        try:
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, rest = out.partition(b"\r\n\r\n")
                    cl = [int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")]
                    if cl and len(rest) >= cl[0]:
                        break
        finally:
            s.close()
        status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.") else None
        return status, out

    def post(self, path, body, ctype=b"application/json", extra=b""):
        return self.raw(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        b"Content-Type: " + ctype + b"\r\nContent-Length: " + str(len(body)).encode() +
                        b"\r\n" + extra + b"\r\n" + body)

    def message_count(self):
        return int(self.stack.sql(f"SELECT COUNT(*) FROM messages WHERE application_token='{self.token}'")[0][0])

    def assert_alive(self):
        self.assertEqual(self.http("GET", "/healthz").status, 200)
        self.assertTrue(self.stack.alive(*self.stack.pid_of("dispatcher")))

    def test_01_bodies(self):
        path = f"{API}/{self.token}/chats/1/messages"
        corpus = {
            "deep nesting": b'{"body":' + b"[" * 100000 + b"]" * 100000 + b"}",
            "deep objects": b'{"body":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
            "huge number": b'{"body":1' + b"0" * 5000 + b"}",
            "number overflow in a string field": b'{"body":1e999}',
            "NUL byte": b'{"body":"a\x00b"}',
            "escaped NUL": b'{"body":"a\\u0000b"}',
            "invalid UTF-8": b'{"body":"\xff\xfe"}',
            "overlong UTF-8": b'{"body":"\xc0\xaf"}',
            "lone surrogate": b'{"body":"\\ud800"}',
            "truncated": b'{"body":"abc',
            "duplicate keys": b'{"body":"a","body":"b"}',
            "not an object": b'["body"]',
            "empty": b"",
            "trailing garbage": b'{"body":"a"} x',
            "wrong type": b'{"body":{"$gt":""}}',
            "too long": json.dumps({"body": "x" * 10001}).encode(),
        }
        before = self.message_count()
        for name, body in corpus.items():
            status, out = self.post(path, body)
            self.assertIsNotNone(status, name)
            self.assertTrue(400 <= status < 500, (name, status, out[:200]))
        status, _ = self.post(path, b'{"body":"x"}', ctype=b"text/plain")
        self.assertEqual(status, 415)
        time.sleep(1)
        self.assertEqual(self.message_count(), before)
        self.assert_alive()

    def test_02_oversized_headers_and_bodies(self):
        status, _ = self.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
        self.assertTrue(status is None or 400 <= status < 500, status)
        status, _ = self.raw(b"POST " + f"{API}/{self.token}/chats/1/messages".encode() +
                             b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 104857600\r\n\r\n{")
        self.assertTrue(status is None or status == 413, status)
        body = json.dumps({"body": "x" * 130000}).encode()
        status, _ = self.post(f"{API}/{self.token}/chats/1/messages", body)
        self.assertEqual(status, 413)
        # Within the fields' limits, a body is never too large, however the
        # client writes its characters (Python escapes each one outside the
        # BMP as two \u escapes: 12 bytes a character).
        body = json.dumps({"body": "\U0001F600" * 10000}).encode()
        self.assertGreater(len(body), 65536)
        status, out = self.post(f"{API}/{self.token}/chats/1/messages", body)
        self.assertEqual(status, 201, out[:300])
        body = json.dumps({"channel": "push", "to": "dev", "payload": "\U0001F600" * 65536}).encode()
        status, out = self.raw(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               b"Authorization: Bearer " + self.stack.api_key.encode() + b"\r\n"
                               b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                               b"\r\n\r\n" + body)
        self.assertEqual(status, 202, out[:300])
        # A route with small fields takes a small body: refused before it is read.
        status, out = self.raw(b"POST /phonebook/reserve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 200000\r\n\r\n{")
        self.assertEqual(status, 413, out[:300])
        self.assert_alive()

    def test_03_slow_body_times_out(self):
        """A client that sends part of its body and then a byte every 2 s is
        cut off 10 s after it connected (a deadline for the whole request,
        not an idle timer each byte would reset), with a 408."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        try:
            t0 = time.monotonic()
            s.sendall(b"POST " + f"{API}/{self.token}/chats/1/messages".encode() +
                      b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"bo")
            s.settimeout(2)
            data = b""
            while time.monotonic() - t0 < 25:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    s.sendall(b"d")  # keep dripping
                    continue
                if not chunk:
                    break
                data += chunk
            waited = time.monotonic() - t0
        finally:
            s.close()
        self.assertGreater(waited, 9)
        self.assertLess(waited, 14)
        self.assertTrue(data.startswith(b"HTTP/1.1 408 "), data[:100])
        self.assertIn(b'"code":"request_timeout"', data)
        self.assert_alive()

    def test_04_paths_and_injection_strings(self):
        cases = [
            ("GET", f"{API}/{self.token}/chats/99999999999999999999", (400, 404)),
            ("GET", f"{API}/{self.token}/chats/-1", (400, 404)),
            ("GET", f"{API}/{self.token}/chats/1/messages/1e3", (400, 404)),
            ("GET", f"{API}/{self.token}'%20OR%201=1--/chats", (400, 404)),
            ("GET", f"{API}/..%2F..%2Fetc%2Fpasswd", (400, 404)),
            ("GET", "/phonebook/find/%2B1%27%3B%20DROP%20TABLE%20users%3B--", (400,)),
            ("GET", "/v1/messages/%00%00%00%00%00%00%00%00", (400, 404)),
            ("GET", "/sms/requests/" + "A" * 5000, (400, 404, 414)),
        ]
        for method, path, allowed in cases:
            r = self.http(method, path)
            self.assertIn(r.status, allowed, (path, r))
        # Injection strings as data are stored as data.
        nasty = "'); DROP TABLE messages; -- \" <script>alert(1)</script> ${jndi:ldap://x} %s%n"
        r = self.http("POST", f"{API}/{self.token}/chats/1/messages", {"body": nasty})
        self.assertEqual(r.status, 201, r)
        number = r.json()["number"]
        from harness import wait_until
        got = wait_until("stored", lambda: (lambda x: x if x.status == 200 else None)(
            self.http("GET", f"{API}/{self.token}/chats/1/messages/{number}")), 30)
        self.assertEqual(got.json()["body"], nasty)
        # A request id with CR/LF is not echoed into the headers.
        status, out = self.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               b"X-Request-Id: abc\r\n\tInjected: yes\r\n\r\n")
        self.assertNotIn(b"\r\nInjected:", out)
        self.assert_alive()

    def test_05_garbage_requests(self):
        for data in (b"\x00\x01\x02\x03\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                     b"BREW /coffee HTTP/1.1\r\nHost: x\r\n\r\n", b"GET " + b"/a" * 20000 + b" HTTP/1.1\r\n\r\n",
                     b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
            status, _ = self.raw(data, read_timeout=12)
            # 501 is HTTP's answer to a method nobody implements (BREW).
            self.assertTrue(status is None or 400 <= status < 500 or (status == 501 and data.startswith(b"BREW")),
                            (data[:40], status))
        self.assert_alive()

    # ---- HTTP framing: what well-behaved clients do besides one request per
    # connection (the dispatcher's own HTTP/1.1 server, dispatcher/httpconn.c).

    def test_06_pipelined_keepalive_requests_answer_in_order(self):
        path = f"{API}/{self.token}/chats/1/messages".encode()
        one = (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 16\r\n\r\n{\"body\":\"piped\"}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            # Three creates and a read in one write; then more on the same connection.
            s.sendall(one * 3 + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = [b""]
            numbers = []
            for _ in range(3):
                status, headers, body = read_response(s, buf)
                self.assertEqual(status, 201, body)
                self.assertEqual(headers["content-type"], "application/json")
                self.assertNotIn("connection", headers)
                numbers.append(json.loads(body)["number"])
            self.assertEqual(numbers, [numbers[0], numbers[0] + 1, numbers[0] + 2])
            self.assertEqual(read_response(s, buf)[0], 200)
            for _ in range(50):
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(read_response(s, buf)[0], 200)
            self.assertEqual(buf[0], b"")

    def test_07_chunked_body_and_expect_continue(self):
        path = f"{API}/{self.token}/chats/1/messages".encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            s.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n8\r\n{\"body\":\r\n9;ext=1\r\n\"chunked\"\r\n"
                      b"1\r\n}\r\n0\r\n\r\n")
            buf = [b""]
            status, _, body = read_response(s, buf)
            self.assertEqual(status, 201, body)
            chunked = json.loads(body)["number"]
            # curl sends Expect: 100-continue for larger bodies and waits for it.
            s.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Expect: 100-continue\r\nContent-Length: 19\r\n\r\n")
            status, _, _ = read_response(s, buf)
            self.assertEqual(status, 100)
            s.sendall(b'{"body":"expected"}')
            status, _, body = read_response(s, buf)
            self.assertEqual(status, 201, body)
        from harness import wait_until
        got = wait_until("stored", lambda: (lambda x: x if x.status == 200 else None)(
            self.http("GET", f"{API}/{self.token}/chats/1/messages/{chunked}")), 30)
        self.assertEqual(got.json()["body"], "chunked")

    def test_08_http10_head_and_connection_close(self):
        # HTTP/1.0 without keep-alive: answered, then closed by the server.
        status, out = self.raw(b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertIn(b"\r\nConnection: close\r\n", out)
        # HTTP/1.0 keep-alive is honoured and said so.
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            buf = [b""]
            for _ in range(2):
                s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                status, headers, _ = read_response(s, buf)
                self.assertEqual((status, headers.get("connection")), (200, "keep-alive"))
            # HEAD: the headers of GET's answer, no body; Connection: close is obeyed.
            s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head, _, rest = read_to_eof(s).partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
            self.assertIn(b"\r\nContent-Length: ", head)
            self.assertEqual(rest, b"")
        # Absolute-form targets (proxies send them) route like paths.
        status, _ = self.raw(b"GET http://example/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(status, 200)
        status, out = self.raw(b"GET http://example HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(status, 404)
        self.assertIn(b"no route for GET /", out)
        self.assert_alive()

    # ---- issue 21: strict framing, readable answers ----------------------

    def test_08b_host_head_and_media_type_are_strict(self):
        for data, want in ((b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
                           (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", 400),
                           (b"GET /healthz HTTP/1.0\r\n\r\n", 200),
                           (b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 200)):
            status, out = self.raw(data)
            self.assertEqual(status, want, (data, out[:200]))
        # HEAD wherever GET is: GET's status and headers, no body.
        status, out = self.raw(f"HEAD {API}/{self.token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               f"Authorization: Bearer {self.stack.api_key}\r\n\r\n".encode())
        head, _, rest = out.partition(b"\r\n\r\n")
        self.assertEqual((status, rest), (200, b""), out[:300])
        self.assertNotIn(b"Content-Length: 0\r\n", head + b"\r\n")
        status, out = self.raw(b"HEAD /ops/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(status, 405)
        self.assertIn(b"Allow: POST", out)
        # The media type exactly (parameters allowed).
        path = f"{API}/{self.token}/chats/1/messages"
        for ctype, want in ((b"application/jsonx", 415), (b"application/json-patch+json", 415),
                            (b"application/json; charset=utf-8", 201), (b"Application/JSON", 201)):
            status, out = self.post(path, b'{"body":"typed"}', ctype=ctype)
            self.assertEqual(status, want, (ctype, out[:200]))
        # Integers strictly: chat 1 is "1", not "+1", "01" or " 1".
        for n in ("%2B1", "01", "%201", "1%20"):
            r = self.http("GET", f"{API}/{self.token}/chats/{n}")
            self.assertEqual((r.status, r.json()["error"]["code"]), (400, "invalid_number"), n)
        self.assertEqual(self.http("GET", f"{API}/{self.token}/chats/1").status, 200)
        # Beyond 2^53 an id may already be rounded: refused, never changed.
        r = self.http("POST", "/phonebook/assign", b'{"userId": 9007199254740993, "refId": "r", '
                      b'"phoneNumber": "+14155550123"}')
        self.assertEqual(r.status, 400, r)
        # Queries strictly: a parameter the route does not take, a value too
        # long to read, a query that does not parse are refused, never read
        # as absent (found by schemathesis); ?after= on search once crashed
        # the dispatcher (a NULL write).
        chats = f"{API}/{self.token}/chats"
        for q in ("limt=5", "limit=" + "9" * 100, "limit=%ZZ", "after=1&x=2"):
            r = self.http("GET", f"{chats}?{q}")
            self.assertEqual(r.status, 400, (q, r))
        for q in ("q=a&after=5", "q=a&limit=5&page=1&sort=x"):
            r = self.http("GET", f"{chats}/1/messages/search?{q}")
            self.assertEqual(r.status, 400, (q, r))
        self.assertEqual(self.http("GET", f"{chats}?limit=5&after=0").status, 200)
        self.assert_alive()
        # A raw control character inside a JSON string is not JSON.
        status, out = self.post(path, b'{"body":"tab\there"}')
        self.assertEqual(status, 400, out[:200])

    def test_08c_every_answer_is_valid_utf8_json(self):
        long_field = "\u00e9" * 300
        bad = [
            ("GET", b"/%FF%FE", None),
            ("GET", b"/api/v1/applications/%C3", None),
            ("POST", b"/sms/send/many", json.dumps({"sms": {"idempotencyKey": "k", long_field: 1}}).encode()),
            ("POST", b"/v1/messages", json.dumps({"channel": "push", "to": "d", "payload": "p",
                                                   long_field: 1}).encode()),
        ]
        for method, path, body in bad:
            data = method.encode() + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            data += f"Authorization: Bearer {self.stack.api_key}\r\n".encode()
            if body is not None:
                data += b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
            status, out = self.raw(data + b"\r\n" + (body or b""))
            payload = out.partition(b"\r\n\r\n")[2]
            text = payload.decode("utf-8")  # raises on invalid UTF-8
            json.loads(text)
            self.assertTrue(400 <= status < 500 or status == 202, (path, status, payload[:200]))

    def test_08d_an_early_413_is_read_by_a_client_still_sending(self):
        """A client that sends a big body without Expect: 100-continue and
        reads only when it is done: the 413 must reach it (a close with
        unread input would make the kernel send a reset instead)."""
        body = b"x" * (3 << 20)
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=15)
            try:
                s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
                try:
                    s.sendall(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server may stop reading: the answer must still be there
                out = read_to_eof(s)
            finally:
                s.close()
            self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:200])
            self.assertIn(b'"code":"body_too_large"', out)
        self.assert_alive()

    # -- connections and file descriptors --------------------------------

    def limited_dispatcher(self, name, soft, hard, *extra):
        """Another dispatcher of this stack on a port of its own, started
        with its open file limit set to soft:hard: its pid, port and
        start-up line ("dispatcher listening")."""
        port = stackmod.free_port()
        self.addCleanup(self.stack.stop, name)
        proc = self.stack.start_dispatcher(name, extra, port=port, nofile=(soft, hard))
        # Logged after the port opened: /readyz may answer first.
        line = wait_until("its start-up line", lambda: log_lines(self.stack, name, "dispatcher listening"), 10)
        return proc.pid, port, line[-1]

    def connect(self, port, n):
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
        self.addCleanup(lambda: [s.close() for s in socks])
        return socks

    @staticmethod
    def get_on(s, path="/healthz"):
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return read_response(s, [b""])

    def serves(self, port):
        """A new connection to port gets 200 for /healthz."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            return self.get_on(s)[0] == 200

    def test_09_connections_beyond_the_limit_get_503_and_the_others_go_on(self):
        """max_connections defaults to the open file limit less 128 (the
        descriptors of Redis, MySQL, Kafka and the loops): a connection
        beyond it is answered 503 and closed at once, while the open ones
        are served as before, and one closing makes room for the next."""
        pid, port, line = self.limited_dispatcher("dispatcher-capped", 160, 160)
        self.assertIn("fd_limit=160 max_connections=32", line)
        # The start-up probes' connections gone (an ASan build frees them
        # later than the 32 below arrive): only the scrape's own is open.
        def open_connections():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                text = self.get_on(s, "/metrics")[2].decode()
            return metric_samples(text, "switchboard_http_connections")[""]
        wait_until("the probes' connections closed", lambda: open_connections() == 1, 10, 0.1)
        time.sleep(0.2)  # and the scrape's
        held = self.connect(port, 32)
        for s in held:  # each one accepted and counted before the next connection
            self.assertEqual(self.get_on(s)[0], 200)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            # Answered without a request (none is read): the client may not
            # even have sent one yet.
            status, headers, body = read_response(extra, [b""])
            self.assertEqual(status, 503)
            self.assertEqual(headers.get("connection"), "close")
            self.assertEqual(json.loads(body)["error"]["code"], "too_many_connections")
            self.assertEqual(extra.recv(1), b"")  # and closed
        self.assertEqual(self.get_on(held[0])[0], 200)
        _, _, text = self.get_on(held[1], "/metrics")
        refused = metric_samples(text.decode(), "switchboard_http_connections_refused_total")
        self.assertEqual(refused, {"": 1.0})
        self.assertTrue(log_lines(self.stack, "dispatcher-capped", "max_connections reached"))
        for s in held[:4]:
            s.close()
        wait_until("a connection served once others closed", lambda: self.serves(port), 10, 0.2)
        self.assertTrue(self.stack.alive(pid, self.stack.binary("switchboard-dispatcher")))

    def test_10_out_of_file_descriptors_it_pauses_accepting_instead_of_spinning(self):
        """With max_connections set above what the open file limit allows,
        accept() fails (EMFILE) while clients wait in the backlog. The
        dispatcher pauses accepting and tries again a little later, rather
        than calling accept() in a busy loop: it took 1.4 of the 2 cores and
        wrote about a million warnings a second before. It serves again once
        descriptors are free."""
        pid, port, _ = self.limited_dispatcher("dispatcher-fds", 64, 64, "--max-connections", "1000")
        self.assertTrue(log_lines(self.stack, "dispatcher-fds", "max_connections is above"))
        lines_before = len(log_lines(self.stack, "dispatcher-fds", ""))  # a spin may be over before the window
        held = self.connect(port, 80)  # more than 64 descriptors: the rest wait in the backlog
        # accept() has failed for want of descriptors, in either wording
        # (libevent's own, or ours).
        wait_until("accept() out of descriptors",
                   lambda: log_lines(self.stack, "dispatcher-fds", "Too many open files"), 10, 0.1)
        before = cpu_seconds(pid)
        t0 = time.monotonic()
        time.sleep(2)
        share = (cpu_seconds(pid) - before) / (time.monotonic() - t0)
        self.assertLess(share, 0.5, "the dispatcher spins on accept()")
        self.assertLess(len(log_lines(self.stack, "dispatcher-fds", "")) - lines_before, 20, "log flooded")
        warnings = log_lines(self.stack, "dispatcher-fds", "accept failed")
        self.assertTrue(any(re.search(r"Too many open files", w) for w in warnings), warnings[-3:])
        for s in held:
            s.close()
        wait_until("served again once descriptors are free", lambda: self.serves(port), 15, 0.2)

    def test_11_the_open_file_limit_is_raised_to_its_hard_maximum(self):
        """Distributions start services with a soft limit of 1024 and a far
        higher hard one: the dispatcher raises its soft limit, as Redis and
        nginx do, and sizes max_connections by that."""
        _, _, line = self.limited_dispatcher("dispatcher-raised", 160, 400)
        self.assertIn("fd_limit=400 max_connections=272", line)


if __name__ == "__main__":
    unittest.main()
