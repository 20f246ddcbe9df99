"""The WebSocket command protocol, GET /ws (dispatcher/wsconn.c and
wscmd.c; schema/websocket.yaml): authentication, every command answered
as its REST route answers, order, flow control, limits, liveness and the
drain on SIGTERM; with real clients: Python's websockets (PyPI), Node's ws
and a page in headless Chromium (npm: ws, playwright-core; scripts/setup
installs them into .cache)."""

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import time
import unittest

from harness import ROOT, StackTestCase, log_lines, metric_samples, request, wait_until
from test_websocket import frame, read_frame, read_until, upgrade_request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

NODE_DIR = os.path.join(ROOT, ".cache", "ws-node")
MAX_INFLIGHT = 32
MAX_MESSAGE = 65536
FROM, TO = "+12125550001", "+12125550002"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def lines(*cmds):
    return "\n".join(json.dumps(c) for c in cmds)


class TestWsCommands(StackTestCase):
    ROLES = ("persister",)

    @classmethod
    def configure(cls, stack):
        stack.extra_env.update({
            "SB_WS_MAX_INFLIGHT": str(MAX_INFLIGHT),
            "SB_WS_MAX_MESSAGE_BYTES": str(MAX_MESSAGE),
            "SB_WS_MAX_REPLY_BYTES": "65536",
            "SB_WS_PING_INTERVAL_MS": "1000",
            "SB_WS_IDLE_TIMEOUT_MS": "3000",
        })

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = cls.create_app_cls("ws")
        r = cls.http("POST", f"/api/v1/applications/{cls.token}/chats")
        assert r.status == 201, r
        cls.chat = r.json()["number"]

    @classmethod
    def create_app_cls(cls, name):
        r = cls.http("POST", "/api/v1/applications", {"name": name})
        assert r.status == 201, r
        return r.json()["token"]

    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws"

    def ws(self, credential=None, **kw):
        cred = credential or self.stack.api_key
        return connect(self.url(), additional_headers={"Authorization": f"Bearer {cred}"}, max_size=None, **kw)

    async def exchange(self, cmds, credential=None, per_frame=25):
        """Sends the commands (per_frame a message) without waiting, then
        reads a reply for each; {id: reply}."""
        async with self.ws(credential) as ws:
            for i in range(0, len(cmds), per_frame):
                await ws.send(lines(*cmds[i:i + per_frame]))
            got = {}
            while len(got) < len(cmds):
                for line in (await ws.recv()).splitlines():
                    r = json.loads(line)
                    self.assertNotIn(r["id"], got)
                    got[r["id"]] = r
            return got

    def rows(self, chat):
        return [tuple(r) for r in self.stack.sql(
            "SELECT number, body FROM messages WHERE application_token = '%s' AND chat_number = %d "
            "ORDER BY number" % (self.token, chat))]

    def new_chat(self):
        r = self.http("POST", f"/api/v1/applications/{self.token}/chats")
        self.assertEqual(r.status, 201, r)
        return r.json()["number"]

    def raw_ws(self, rcvbuf=None):
        """A raw socket upgraded to /ws (the admin key), and the bytes read
        after the 101. rcvbuf: a small receive buffer, set before connecting."""
        s = socket.socket()
        self.addCleanup(s.close)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(10)
        s.connect(("127.0.0.1", self.port))
        s.sendall(upgrade_request("/ws", extra=f"Authorization: Bearer {self.stack.api_key}\r\n"))
        head, _, rest = read_until(s, b"\r\n\r\n").partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        return s, rest

    def check_stream(self, chat, numbers, n):
        """Replies in the order sent: command i got number i; then every
        row is in MySQL with its text."""
        self.assertEqual(numbers, list(range(1, n + 1)))
        rows = wait_until(f"{n} rows", lambda: (lambda r: r if len(r) == n else None)(self.rows(chat)), 60)
        self.assertEqual(rows, [(str(i), f"m{i}") for i in range(1, n + 1)])

    # -- authentication -------------------------------------------------------
    def test_01_authentication(self):
        async def go():
            for headers in ({}, {"Authorization": "Bearer wrong-key"}):
                with self.assertRaises(InvalidStatus) as e:
                    async with connect(self.url(), additional_headers=headers):
                        pass
                self.assertEqual(e.exception.response.status_code, 401)
                self.assertEqual(json.loads(e.exception.response.body)["error"]["code"], "unauthorized")
            # A browser's way: the credential as a subprotocol beside ours.
            async with connect(self.url(), subprotocols=["switchboard.v1", f"bearer.{self.stack.api_key}"]) as ws:
                self.assertEqual(ws.subprotocol, "switchboard.v1")
                await ws.send(json.dumps({"id": "a", "op": "chat.create", "token": self.token}))
                self.assertEqual(json.loads(await ws.recv())["status"], 201)
            # An application's token: its own chats only; no token field needed.
            other = self.create_app_cls("other")
            got = await self.exchange([
                {"id": 1, "op": "message.create", "chat": self.chat, "body": {"body": "mine"}},
                {"id": 2, "op": "chat.create", "token": other},
                {"id": 3, "op": "sms.send", "body": {"sms": {"idempotencyKey": "k", "fromPhoneNumber": FROM,
                                                             "toPhoneNumber": TO, "content": "x"}}},
            ], credential=self.token)
            self.assertEqual(got[1]["status"], 201, got)
            self.assertEqual([got[2]["status"], got[3]["status"]], [403, 403], got)
            self.assertIs(got[2]["body"]["error"]["temporary"], False)
            r = self.http("GET", f"/api/v1/applications/{other}/chats")
            body = r.json()
            self.assertEqual((r.status, len(body if isinstance(body, list) else body["chats"])), (200, 0))
        run(go())

    # -- each command as its REST route ---------------------------------------
    def test_02_commands_answer_as_rest(self):
        """Every command gets the status and body its route gives over
        HTTP, errors with temporary."""
        chat = self.new_chat()
        sms = {"sms": {"idempotencyKey": "ws-1", "fromPhoneNumber": FROM, "toPhoneNumber": TO, "content": "hi"}}
        note = {"channel": "email", "to": "ada@example.com", "from": "ops@example.com", "title": "t", "payload": "p"}
        got = run(self.exchange([
            {"id": "c", "op": "chat.create", "token": self.token},
            {"id": "m", "op": "message.create", "token": self.token, "chat": chat, "body": {"body": "m1"}},
            {"id": "s", "op": "sms.send", "body": sms},
            {"id": "n", "op": "notification.send", "body": note},
            {"id": "bad", "op": "message.create", "token": self.token, "chat": chat, "body": {"text": "x"}},
            {"id": "nochat", "op": "message.create", "token": self.token, "chat": 999999, "body": {"body": "x"}},
            {"id": "noapp", "op": "chat.create", "token": "A" * 22},
        ], per_frame=7))
        self.assertEqual(got["c"]["status"], 201)
        self.assertEqual(got["m"], {"id": "m", "status": 201, "body": {"number": 1}})
        http_sms = self.http("POST", "/sms/send/one", sms)
        self.assertEqual((got["s"]["status"], got["s"]["body"]["error"]["code"]),
                         (http_sms.status, http_sms.json()["error"]["code"]))  # unknown numbers: 404
        self.assertEqual(got["n"]["status"], self.http("POST", "/v1/messages", note).status)
        self.assertIn(got["n"]["status"], (201, 202))
        r = run(self.exchange([{"id": "u", "op": "message.update", "token": self.token, "chat": chat,
                                "message": 1, "body": {"body": "m1 edited"}}]))["u"]
        h = self.http("PUT", f"/api/v1/applications/{self.token}/chats/{chat}/messages/1", {"body": "m1 edited"})
        self.assertEqual((r["status"], r["body"]), (h.status, h.json()))
        for cid, path, body in (("bad", f"/chats/{chat}/messages", {"text": "x"}),
                                ("nochat", "/chats/999999/messages", {"body": "x"})):
            h = self.http("POST", f"/api/v1/applications/{self.token}{path}", body)
            self.assertEqual(got[cid]["status"], h.status)
            err = dict(got[cid]["body"]["error"])
            self.assertIs(err.pop("temporary"), False)
            self.assertEqual(err, h.json()["error"])
        self.assertEqual(got["noapp"]["status"], 404)

    def test_03_bad_commands(self):
        """A line the protocol cannot take is answered 400 bad_command (its
        id echoed when it could be read) and changes nothing; the lines
        around it run."""
        chat = self.new_chat()

        async def go():
            async with self.ws() as ws:
                await ws.send("\n".join([
                    "not json",
                    json.dumps({"op": "chat.create", "token": self.token}),
                    json.dumps({"id": 1, "op": "chat.delete", "token": self.token}),
                    json.dumps({"id": 2, "op": "message.create", "token": self.token, "chat": "1"}),
                    json.dumps({"id": 3, "op": "chat.create", "token": self.token, "extra": 1}),
                    json.dumps({"id": [4], "op": "chat.create"}),
                    "",
                    json.dumps({"id": "ok", "op": "message.create", "token": self.token, "chat": chat,
                                "body": {"body": "m1"}}),
                ]))
                got = []
                while len(got) < 7:
                    got += [json.loads(x) for x in (await ws.recv()).splitlines()]
                return got
        got = run(go())
        bad = [r for r in got if r["id"] != "ok"]
        self.assertEqual(sorted(str(r["id"]) for r in bad), ["1", "2", "3", "None", "None", "None"])
        for r in bad:
            self.assertEqual((r["status"], r["body"]["error"]["code"]), (400, "bad_command"), r)
            self.assertIs(r["body"]["error"]["temporary"], False)
        self.assertEqual([r["body"] for r in got if r["id"] == "ok"], [{"number": 1}])
        wait_until("the one row", lambda: self.rows(chat) == [("1", "m1")], 30)

    # -- order, flow control -------------------------------------------------
    def test_04_thousand_creates_in_order(self):
        """1,000 creates on one new chat, pipelined 25 to a message: command
        i gets number i (the chat's first number block is refilled while
        they wait, in order), and the 1,000 rows land."""
        chat = self.new_chat()
        n = 1000
        got = run(self.exchange([{"id": i, "op": "message.create", "token": self.token, "chat": chat,
                                  "body": {"body": f"m{i}"}} for i in range(1, n + 1)]))
        self.assertTrue(all(got[i]["status"] == 201 for i in got), [r for r in got.values() if r["status"] != 201][:3])
        self.check_stream(chat, [got[i]["body"]["number"] for i in range(1, n + 1)], n)

    def ws_metric(self, name):
        r = request(self.port, "GET", "/metrics")
        return sum(metric_samples(r.body.decode(), name).values())

    def test_05_flow_control(self):
        """Kafka hung: commands wait for their acknowledgement. Past
        ws_max_inflight the dispatcher reads no more of the socket, so the
        client's sends block (TCP pushes back) instead of the server
        buffering; once Kafka is back every command is answered, in order,
        and persisted."""
        chat = self.new_chat()
        n = 5000  # 10 MB: more than the socket buffers hold
        s, rest = self.raw_ws()
        self.stack.kafka_pause()
        try:
            # 200 commands in one message: the limit holds inside a message too.
            s.sendall(frame(0x1, lines(*({"id": i, "op": "message.create", "token": self.token, "chat": chat,
                                          "body": {"body": f"m{i}"}} for i in range(1, 201))).encode()))
            wait_until("the limit reached", lambda: self.ws_metric("switchboard_ws_commands_in_flight") > 0, 10)
            time.sleep(0.5)
            self.assertEqual(self.ws_metric("switchboard_ws_commands_in_flight"), MAX_INFLIGHT)
            s.settimeout(1.0)
            sent = 200
            try:
                for i in range(201, n + 1):
                    s.sendall(frame(0x1, json.dumps({"id": i, "op": "message.create", "token": self.token,
                                                     "chat": chat, "body": {"body": f"m{i}" + "x" * 2000}}).encode()))
                    sent = i
            except socket.timeout:
                pass
            self.assertLess(sent, n, "the server read everything while no command could be answered")
            inflight = self.ws_metric("switchboard_ws_commands_in_flight")
            # At most the limit and what one read held (wslay reads 4 KiB).
            self.assertGreaterEqual(inflight, MAX_INFLIGHT)
            self.assertLessEqual(inflight, MAX_INFLIGHT + 4096 // 2000 + 1)
        finally:
            self.stack.kafka_resume()
        s.settimeout(30)
        for i in range(sent + 1, n + 1):
            s.sendall(frame(0x1, json.dumps({"id": i, "op": "message.create", "token": self.token, "chat": chat,
                                             "body": {"body": f"m{i}"}}).encode()))
        numbers = {}
        while len(numbers) < n:
            op, payload, rest = read_frame(s, rest)
            self.assertEqual(op, 0x1)
            for line in payload.decode().splitlines():
                r = json.loads(line)
                self.assertEqual(r["status"], 201, r)
                numbers[r["id"]] = r["body"]["number"]
        self.assertEqual([numbers[i] for i in range(1, n + 1)], list(range(1, n + 1)))
        rows = wait_until("rows", lambda: (lambda r: r if len(r) == n else None)(self.rows(chat)), 60)
        self.assertEqual([int(r[0]) for r in rows], list(range(1, n + 1)))

    def test_06_replies_not_read(self):
        """A client that sends and does not read: once its replies fill
        ws_max_reply_bytes (beyond what the sockets' buffers took) the
        server stops reading it, and when it has taken none of them for
        2 s closes it with 1008, which it finds after the replies that
        fit."""
        s, rest = self.raw_ws(rcvbuf=4096)
        s.settimeout(0.5)
        refused = frame(0x1, "\n".join("1" for _ in range(30000)).encode())  # 30,000 replies of ~120 bytes
        before = len(log_lines(self.stack, "dispatcher", "replies not read"))
        try:
            for _ in range(20):
                s.sendall(refused)
        except socket.timeout:
            pass  # the server stopped reading and the socket buffers are full: TCP pushes back
        # What the server holds for it stays near ws_max_reply_bytes (the
        # lines not run wait, read, in the socket buffers), not 72 MB.
        time.sleep(0.5)
        self.assertLess(self.ws_metric("switchboard_ws_reply_bytes_queued"), 4 * 65536)
        # Reads nothing until the server gives up on it (it then waits 2 s
        # for the answer to its close).
        wait_until("the 1008", lambda: len(log_lines(self.stack, "dispatcher", "replies not read")) > before, 20)
        s.settimeout(10)
        code, replies = None, 0
        while code is None:
            op, payload, rest = read_frame(s, rest)
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0]
            elif op == 0x1:
                replies += len(payload.splitlines())
        self.assertEqual(code, 1008, f"after {replies} replies")
        # Some replies, not all: the server stopped running lines (72 MB of
        # replies) once they filled the buffers.
        self.assertGreater(replies, 0)
        self.assertLess(replies, 600000)
        self.assertEqual(request(self.port, "GET", "/healthz").status, 200)
        wait_until("the connection gone", lambda: self.ws_metric("switchboard_ws_connections") == 0, 10)

    def test_06b_reading_client_is_never_cut_off(self):
        """Replies beyond ws_max_reply_bytes at once, to a client that
        reads: 20,000 refused lines in one message (2 MB of replies), and
        40 updates each echoing a 5,000-character body. The server runs
        lines only as fast as the client takes replies: every reply
        arrives, and the connection stays."""
        chat = self.new_chat()
        got = run(self.exchange([{"id": "m", "op": "message.create", "token": self.token, "chat": chat,
                                  "body": {"body": "x"}}]))
        self.assertEqual(got["m"]["status"], 201)
        big = "y" * 5000

        async def go():
            async with self.ws() as ws:
                await ws.send("\n".join("1" for _ in range(20000)))
                for i in range(40):
                    await ws.send(json.dumps({"id": i, "op": "message.update", "token": self.token, "chat": chat,
                                              "message": 1, "body": {"body": big}}))
                refused, updated = 0, 0
                while refused + updated < 20040:
                    for line in (await ws.recv()).splitlines():
                        r = json.loads(line)
                        if r["id"] is None:
                            self.assertEqual(r["status"], 400)
                            refused += 1
                        else:
                            self.assertEqual((r["status"], len(r["body"]["body"])), (200, 5000))
                            updated += 1
                await ws.send(json.dumps({"id": "after", "op": "chat.create", "token": self.token}))
                return json.loads(await ws.recv())
        self.assertEqual(run(go())["status"], 201)

    # -- hostile input and liveness ------------------------------------------

    def close_code(self, s, rest):
        while True:
            op, payload, rest = read_frame(s, rest)
            if op == 0x8:
                return struct.unpack("!H", payload[:2])[0]

    def test_07_hostile_frames(self):
        """Each gets its close code; a command in the same message as the
        fault is not run; the dispatcher stays well."""
        chat = self.new_chat()
        cmd = json.dumps({"id": 1, "op": "message.create", "token": self.token, "chat": chat, "body": {"body": "x"}})
        cases = (
            (bytes([0x81, 0xFF]) + struct.pack("!Q", MAX_MESSAGE + 1) + cmd.encode(), 1009),  # oversized
            (frame(0x1, cmd.encode() + b"\n\xff\xfe"), 1007),  # not UTF-8
            (frame(0x1, cmd.encode(), mask=False), 1002),  # unmasked client frame
            (frame(0x2, cmd.encode()), 1003),  # binary: commands are text
            (frame(0x1, cmd.encode()[:10], fin=False) + frame(0x9, b"x", fin=False), 1002),  # fragmented ping
        )
        for sent, code in cases:
            with self.subTest(code=code, sent=sent[:12]):
                s, rest = self.raw_ws()
                s.sendall(sent)
                self.assertEqual(self.close_code(s, rest), code, sent[:20])
        time.sleep(1)
        self.assertEqual(self.rows(chat), [])  # none of those commands ran
        self.assertEqual(request(self.port, "GET", "/healthz").status, 200)

    def test_08_ping_flood(self):
        """10,000 pings in one write: answered (wslay answers each), and
        the connection still takes commands."""
        s, rest = self.raw_ws()
        s.sendall(b"".join(frame(0x9, b"p") for _ in range(10000)))
        pongs = 0
        while pongs < 10000:
            op, payload, rest = read_frame(s, rest)
            self.assertEqual(op, 0xA)
            pongs += 1
        s.sendall(frame(0x1, json.dumps({"id": 1, "op": "chat.create", "token": self.token}).encode()))
        op, payload, rest = read_frame(s, rest)
        self.assertEqual(json.loads(payload)["status"], 201)

    def test_09_half_open(self):
        """A client that goes silent (a half-open connection) is pinged
        every ws_ping_interval_ms and closed with 1001 after
        ws_idle_timeout_ms; a client that answers the pings stays."""
        s, rest = self.raw_ws()
        start = time.monotonic()
        pings = 0
        while True:
            op, payload, rest = read_frame(s, rest)
            if op == 0x9:
                pings += 1
            if op == 0x8:
                break
        self.assertEqual(struct.unpack("!H", payload[:2])[0], 1001)
        self.assertGreaterEqual(pings, 2)
        self.assertGreater(time.monotonic() - start, 1.5)

        async def lively():
            async with self.ws() as ws:  # websockets answers pings
                await asyncio.sleep(3)
                await ws.send(json.dumps({"id": 1, "op": "chat.create", "token": self.token}))
                return json.loads(await ws.recv())["status"]
        self.assertEqual(run(lively()), 201)

    # -- other clients ---------------------------------------------------------
    def node(self, script, *args):
        r = subprocess.run(["node", os.path.join(ROOT, "tests", "ws", script), *map(str, args)],
                           env={**os.environ, "NODE_PATH": os.path.join(NODE_DIR, "node_modules")},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out[-3000:])
        return json.loads(out.strip().splitlines()[-1])

    def test_10_node_ws(self):
        chat = self.new_chat()
        got = self.node("node_client.js", self.url(), self.stack.api_key, self.token, chat, 1000)
        self.check_stream(chat, got["numbers"], 1000)

    def test_11_chromium(self):
        """A page in headless Chromium, credential as a subprotocol."""
        chat = self.new_chat()
        got = self.node("browser_client.js", self.url(), self.stack.api_key, self.token, chat, 1000)
        self.assertEqual(got["protocol"], "switchboard.v1")
        self.check_stream(chat, got["numbers"], 1000)

    # -- shutdown (last: the dispatcher stops) ---------------------------------
    def test_99_sigterm_drains(self):
        """SIGTERM with commands in flight (Kafka hung): the dispatcher
        reads no new command, answers those in flight once Kafka is back,
        then closes with 1001; every answered create is persisted."""
        chat = self.new_chat()
        s, rest = self.raw_ws()
        self.stack.kafka_pause()
        try:
            s.sendall(frame(0x1, lines(*({"id": i, "op": "message.create", "token": self.token, "chat": chat,
                                          "body": {"body": f"m{i}"}} for i in range(1, 11))).encode()))
            wait_until("10 in flight", lambda: self.ws_metric("switchboard_ws_commands_in_flight") == 10, 10)
            pid, _ = self.stack.pid_of("dispatcher")
            os.kill(pid, signal.SIGTERM)
            time.sleep(0.5)
            s.sendall(frame(0x1, json.dumps({"id": 11, "op": "message.create", "token": self.token, "chat": chat,
                                             "body": {"body": "late"}}).encode()))
        finally:
            self.stack.kafka_resume()
        got, code, last_reply = {}, None, None
        while code is None:
            op, payload, rest = read_frame(s, rest)
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0]
                closed_after = time.monotonic() - last_reply
            elif op == 0x1:
                last_reply = time.monotonic()
                for line in payload.decode().splitlines():
                    r = json.loads(line)
                    got[r["id"]] = r
        self.assertEqual(code, 1001)
        self.assertLess(closed_after, 0.5)  # at once, not at the next ping (1 s)
        self.assertEqual(sorted(got), list(range(1, 11)))  # the late one was never read
        self.assertEqual([got[i]["body"]["number"] for i in range(1, 11)], list(range(1, 11)))
        self.assertEqual(self.stack.stop("dispatcher"), 0)
        wait_until("10 rows", lambda: len(self.rows(chat)) == 10, 60)


if __name__ == "__main__":
    unittest.main()
