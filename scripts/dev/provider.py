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
      "callbacks": ["sent", "delivered"], "callback_delay": 0.2,
      "error_code": "30003": after an SMS it took that names a
      StatusCallback, the provider POSTs those statuses to it, in that
      order (repeat or reorder them to test a callback twice or out of
      order), callback_delay seconds apart, as Twilio does: a form of
      MessageSid, MessageStatus, AccountSid (and ErrorCode for undelivered
      and failed), signed in X-Twilio-Signature with the password of the
      delivery's basic auth (the account's auth token);
  GET  /_records   every delivery so far: path, headers, body, answered
                   status, and in_flight: the deliveries in progress when it
                   arrived, itself included; GET /_callbacks: every status
                   callback sent, with the status it was answered
  POST /_reset     forget records, failures, the delays and callbacks

Any other POST is a delivery: recorded, then answered 201 unless a failure
is pending. Usage: provider.py PORT; prints "ready" once listening."""

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
records = []
DEFAULTS = {"fail": 0, "status": 500, "hang": 0.0, "delay": 0.0, "slow": {}, "callbacks": [],
            "callback_delay": 0.2, "error_code": "30003"}
mode = dict(DEFAULTS)
in_flight = 0
callbacks_sent = []


def twilio_signature(token, url, params):
    """Twilio's request signature: HMAC-SHA1 over the URL and then each POST
    parameter's name and value, sorted by name; base64."""
    data = url + "".join(k + v for k, v in sorted(params.items()))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def send_callbacks(url, token, sid, statuses, delay, error_code):
    for status in statuses:
        time.sleep(delay)
        params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "ACtest"}
        if status in ("undelivered", "failed"):
            params["ErrorCode"] = error_code
        req = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(token, url, params)})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                answered = r.status
        except urllib.error.HTTPError as e:
            answered = e.code
        except OSError as e:
            answered = str(e)
        with lock:
            callbacks_sent.append({"url": url, "params": params, "answered": answered, "at": time.time()})


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
        elif self.path == "/_callbacks":
            with lock:
                self.reply(200, callbacks_sent)
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
                callbacks_sent.clear()
                mode.clear()
                mode.update(DEFAULTS)
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
            sid = f"SM{len(records):032x}"
            callbacks = list(mode["callbacks"])
            callback_delay, error_code = mode["callback_delay"], mode["error_code"]
        try:
            if hang or delay:
                time.sleep(hang or delay)
            self.reply(status, {"sid": sid} if status < 300 else {"error": "injected"})
        finally:
            with lock:
                in_flight -= 1
        form = urllib.parse.parse_qs(text) if "x-www-form-urlencoded" in (self.headers.get("Content-Type") or "") else {}
        auth = self.headers.get("Authorization") or ""
        if status < 300 and callbacks and form.get("StatusCallback") and auth.startswith("Basic "):
            token = base64.b64decode(auth[6:]).decode().partition(":")[2]
            threading.Thread(target=send_callbacks, daemon=True,
                             args=(form["StatusCallback"][0], token, sid, callbacks, callback_delay,
                                   error_code)).start()


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
