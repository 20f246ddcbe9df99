"""A recording provider endpoint: stands in for an SMS provider's HTTP API
and a push webhook on a development stack (scripts/up starts it unless
SB_SMS_URL / SB_PUSH_URL name real ones) and in tests. It is a real HTTP
server on loopback; what it does is told to it through /_control:

  POST /_control {"fail": N, "status": 500, "hang": 0, "delay": 0, "slow": {}}
      the next N deliveries answer `status` (or, with hang > 0, wait that
      many seconds first, so the caller's timeout fires); with delay > 0,
      every delivery waits that many seconds before its answer (a slow
      provider); "slow": {"text": S} makes a delivery whose body holds
      text wait S seconds instead (one slow recipient);
  GET  /_records   every delivery so far: path, headers, body, answered
                   status, and in_flight: the deliveries in progress when it
                   arrived, itself included
  POST /_reset     forget records, failures and the delays

Any other POST is a delivery: recorded, then answered 201 unless a failure
is pending. Usage: provider.py PORT; prints "ready" once listening."""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
records = []
mode = {"fail": 0, "status": 500, "hang": 0.0, "delay": 0.0, "slow": {}}
in_flight = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("provider: " + fmt % args + "\n")

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:  # the caller timed out (a "hang" failure): expected
            pass

    def do_GET(self):
        if self.path == "/_records":
            with lock:
                self.reply(200, records)
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_control":
            with lock:
                mode.update(json.loads(body))
            self.reply(200, mode)
            return
        if self.path == "/_reset":
            with lock:
                records.clear()
                mode.update({"fail": 0, "status": 500, "hang": 0.0, "delay": 0.0, "slow": {}})
            self.reply(200, {})
            return
        global in_flight
        with lock:
            failing = mode["fail"] > 0
            if failing:
                mode["fail"] -= 1
            status = mode["status"] if failing else 201
            hang = mode["hang"] if failing else 0
            delay = mode["delay"]
            text = body.decode("utf-8", "replace")
            for needle, secs in mode["slow"].items():
                if needle in text:
                    delay = secs
            in_flight += 1
            records.append({"path": self.path, "headers": dict(self.headers.items()),
                            "body": text, "status": status,
                            "hung": hang > 0, "at": time.time(), "in_flight": in_flight})
            sid = f"SM{len(records)}"
        try:
            if hang or delay:
                time.sleep(hang or delay)
            self.reply(status, {"sid": sid} if status < 300 else {"error": "injected"})
        finally:
            with lock:
                in_flight -= 1


class Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a notifier's senders
    # connecting at once overflowed it, and a dropped SYN is sent again
    # only after a second, past a short delivery timeout.
    request_queue_size = 128


def main():
    server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
