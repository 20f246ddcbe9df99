"""Delivery you can trust (issue 26), end to end with real peers on
loopback: the provider stand-in (scripts/dev/provider.py) takes the SMS and
push deliveries and sends Twilio-style status callbacks, signed, late,
twice and out of order. Covers what an SMS costs (its encoding and
segments, at acceptance), the status machine that never moves backwards
and its history, and the callbacks' signature."""

import base64
import hashlib
import hmac
import json
import time
import unittest
import urllib.parse
import urllib.request

from harness import FakeServer, StackTestCase, kcat_produce, wait_until

FROM, TO, OTHER = "+12125550101", "+12125550102", "+12125550103"
TOKEN = "s3cret"  # the account's auth token: the password in SB_SMS_URL
FEEDBACK_SECRET = "feedback-secret-for-tests"
WEBHOOK_SECRET = "webhook-signing-secret-for-tests"
RANK = {"queued": 1, "sending": 2, "retrying": 2, "sent": 3, "delivered": 4, "undelivered": 4, "failed": 4}


def twilio_signature(token, url, params):
    data = url + "".join(k + v for k, v in sorted(params.items()))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class TestDelivery(StackTestCase):
    ROLES = ("notifier",)

    @classmethod
    def configure(cls, stack):
        cls.provider = FakeServer("provider.py", stack.path("logs"), folder="scripts/dev")
        # A customer's webhook: the same recording endpoint, told to fail at will.
        cls.hooks = FakeServer("provider.py", stack.path("logs"), folder="scripts/dev")
        # aiosmtpd is Debian's package: run it with Debian's interpreter.
        cls.smtp = FakeServer("smtp_sink.py", stack.path("logs"), folder="scripts/dev", python="/usr/bin/python3",
                              args=(stack.path("logs", "mail.jsonl"),))
        stack.extra_env.update({
            "SB_SMTP_URL": f"smtp://127.0.0.1:{cls.smtp.port}",
            "SB_SMS_URL": f"http://ACtest:{TOKEN}@127.0.0.1:{cls.provider.port}/sms",
            "SB_PUSH_URL": f"http://127.0.0.1:{cls.provider.port}/push",
            "SB_SMS_CALLBACK_URL": f"http://127.0.0.1:{stack.api_port}",
            "SB_EMAIL_FEEDBACK_SECRET": FEEDBACK_SECRET,
            "SB_WEBHOOK_SIGNING_SECRET": WEBHOOK_SECRET,
            "SB_NOTIFY_BACKOFF_MS": "200",
            "SB_WEBHOOK_BACKOFF_CAP_MS": "1000",
        })

    @classmethod
    def setUpClass(cls):
        try:
            super().setUpClass()
        except Exception:
            cls.provider.stop()
            cls.hooks.stop()
            cls.smtp.stop()
            raise
        cls.stack.seed(users=4, numbers=0, area_codes="212")
        for user, phone in ((1, FROM), (2, TO), (3, OTHER)):
            cls.stack.sql(f"UPDATE users SET phone_number='{phone}' WHERE user_id={user}")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.provider.stop()
        cls.hooks.stop()
        cls.smtp.stop()

    def sms(self, key, content):
        return {"sms": {"idempotencyKey": key, "fromPhoneNumber": FROM, "toPhoneNumber": TO, "content": content}}

    def test_01_segments_at_acceptance(self):
        """Each SMS reports its encoding and segment count when it is
        accepted: send-one in headers (its body stays {"sent": true}),
        send-many per item and in total, POST /v1/messages in its body."""
        for key, text, enc, segs in (("seg-1", "hi, how are you?", "GSM-7", 1),
                                     ("seg-2", "a" * 161, "GSM-7", 2),
                                     ("seg-3", "{curly} €" * 17, "GSM-7", 2),  # 17 x 12 septets = 204
                                     ("seg-4", "привет", "UCS-2", 1),
                                     ("seg-5", "ж" * 71, "UCS-2", 2)):
            r = self.http("POST", "/sms/send/one", self.sms(key, text))
            self.assertEqual((r.status, r.json()), (200, {"sent": True}), r)
            self.assertEqual((r.headers.get("X-SMS-Encoding"), r.headers.get("X-SMS-Segments")), (enc, str(segs)),
                             key)
        body = "\n".join(json.dumps(x) for x in (self.sms("many-1", "short"), self.sms("many-2", "é" * 200),
                                                 {"sms": {"idempotencyKey": "many-3"}},
                                                 self.sms("many-4", "😀" * 40)))
        r = self.http("POST", "/sms/send/many", body, headers={"Content-Type": "application/x-ndjson"})
        self.assertEqual(r.status, 202, r)
        got = r.json()
        self.assertEqual([e["index"] for e in got["errors"]], [2])
        self.assertEqual(got["items"], [{"index": 0, "encoding": "GSM-7", "segments": 1},
                                        {"index": 1, "encoding": "GSM-7", "segments": 2},
                                        {"index": 3, "encoding": "UCS-2", "segments": 2}])
        self.assertEqual(got["segments"], 5)
        r = self.http("POST", "/v1/messages", {"channel": "sms", "to": TO, "payload": "ê" * 70})
        self.assertEqual(r.status, 202, r)
        self.assertEqual((r.json()["encoding"], r.json()["segments"]), ("UCS-2", 1))
        r = self.http("POST", "/v1/messages", {"channel": "push", "to": "device-1", "payload": "p"})
        self.assertNotIn("segments", r.json())  # only an SMS has them

    def control(self, **mode):
        req = urllib.request.Request(self.provider.url + "/_control", data=json.dumps(mode).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def callbacks(self, sid):
        with urllib.request.urlopen(self.provider.url + "/_callbacks", timeout=10) as r:
            return [c for c in json.load(r) if c["params"]["MessageSid"] == sid]

    def note(self, nid):
        r = self.http("GET", f"/v1/messages/{nid}")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def send_sms(self, text="status?"):
        r = self.http("POST", "/v1/messages", {"channel": "sms", "to": TO, "payload": text})
        self.assertEqual(r.status, 202, r)
        return r.json()["id"]

    def callback(self, nid, params, token=TOKEN, path_id=None, signature=None):
        """A status callback as the provider sends it (signed with token)."""
        url = f"http://127.0.0.1:{self.port}/v1/callbacks/sms/{path_id or nid}"
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": None}
        if signature is not False:
            headers["X-Twilio-Signature"] = signature or twilio_signature(token, url, params)
        return self.http("POST", f"/v1/callbacks/sms/{path_id or nid}", urllib.parse.urlencode(params),
                         headers=headers)

    def assert_forward_only(self, history):
        ranks = [RANK[h["status"]] for h in history]
        self.assertEqual(ranks, sorted(ranks), history)
        self.assertEqual(len({h["status"] for h in history}), len(history), history)  # each move once

    def test_02_callbacks_late_twice_and_out_of_order(self):
        """The provider says delivered, then a late sent, then delivered
        again: the status goes to delivered and stays; the history moves
        forward only, each status once, with its time; the provider's id of
        the message is kept."""
        self.control(callbacks=["delivered", "sent", "delivered"], callback_delay=0.5)
        try:
            nid = self.send_sms()
            n = wait_until("delivered", lambda: (lambda n: n if n["status"] == "delivered" else None)(
                self.note(nid)), 30)
            sid = n["providerMessageId"]
            self.assertRegex(sid, r"^SM[0-9a-f]{32}$")
            cbs = wait_until("all three callbacks", lambda: (lambda c: c if len(c) == 3 else None)(
                self.callbacks(sid)), 30)
            self.assertEqual([c["answered"] for c in cbs], [204, 204, 204])
        finally:
            self.control(callbacks=[])
        n = self.note(nid)
        self.assertEqual(n["status"], "delivered")
        # Our "sent" lands before the provider's first word, or, on a busy
        # machine, after it and is refused: either way never after it.
        self.assertIn([h["status"] for h in n["history"]], (["queued", "sending", "sent", "delivered"],
                                                            ["queued", "sending", "delivered"]))
        self.assert_forward_only(n["history"])
        for h in n["history"]:
            self.assertRegex(h["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(n["attempts"], 1)

    def test_03_undelivered_with_the_providers_error(self):
        self.control(callbacks=["sent", "undelivered"], callback_delay=0.2, error_code="30003")
        try:
            nid = self.send_sms()
            n = wait_until("undelivered", lambda: (lambda n: n if n["status"] == "undelivered" else None)(
                self.note(nid)), 30)
        finally:
            self.control(callbacks=[])
        self.assertIn("30003", n["lastError"])
        self.assertEqual(n["history"][-1]["status"], "undelivered")
        self.assertIn("30003", n["history"][-1]["detail"])
        self.assert_forward_only(n["history"])

    def test_04_a_forged_callback_is_refused(self):
        """A wrong token, no signature, a signature for another message's
        URL, or a changed parameter: 403, and nothing changes. A true one
        for another message id is 409; a terminal status stays."""
        nid = self.send_sms()
        n = wait_until("sent", lambda: (lambda n: n if n["status"] == "sent" else None)(self.note(nid)), 30)
        sid = n["providerMessageId"]
        good = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "ACtest"}
        other = self.send_sms("another")
        url_other = f"http://127.0.0.1:{self.port}/v1/callbacks/sms/{other}"
        for r in (self.callback(nid, good, token="not-the-token"),
                  self.callback(nid, good, signature=False),
                  self.callback(nid, good, signature=twilio_signature(TOKEN, url_other, good)),
                  self.callback(nid, {**good, "MessageStatus": "failed"},
                                signature=twilio_signature(TOKEN, f"http://127.0.0.1:{self.port}/v1/callbacks/sms/"
                                                                  f"{nid}", good))):
            self.assertEqual((r.status, r.json()["error"]["code"]), (403, "forbidden"), r)
        n = self.note(nid)
        self.assertEqual((n["status"], len(n["history"])), ("sent", 3))
        r = self.callback(nid, {**good, "MessageSid": "SM" + "f" * 32})
        self.assertEqual(r.status, 409, r)
        self.assertEqual(self.callback(nid, good).status, 204)
        self.assertEqual(self.note(nid)["status"], "delivered")
        self.assertEqual(self.callback(nid, {**good, "MessageStatus": "failed", "ErrorCode": "30008"}).status, 204)
        n = self.note(nid)
        self.assertEqual((n["status"], [h["status"] for h in n["history"]]),
                         ("delivered", ["queued", "sending", "sent", "delivered"]))  # terminal: stays
        r = self.callback("nosuchnotification0", {**good})
        self.assertEqual(r.status, 404, r)

    def inbound(self, frm, body, to=FROM, token=TOKEN, sid=None):
        """A text to one of our numbers, as the provider forwards it."""
        url = f"http://127.0.0.1:{self.port}/v1/inbound/sms"
        self.inbound_seq = getattr(self, "inbound_seq", 0) + 1
        params = {"From": frm, "To": to, "Body": body, "MessageSid": sid or f"SMin{self.inbound_seq:030d}",
                  "AccountSid": "ACtest"}
        return self.http("POST", "/v1/inbound/sms", urllib.parse.urlencode(params), headers={
            "Content-Type": "application/x-www-form-urlencoded", "Authorization": None,
            "X-Twilio-Signature": twilio_signature(token, url, params)})

    def sms_texts(self, to):
        with urllib.request.urlopen(self.provider.url + "/_records", timeout=10) as r:
            return [urllib.parse.parse_qs(x["body"])["Body"][0] for x in json.load(r)
                    if x["path"] == "/sms" and urllib.parse.parse_qs(x["body"]).get("To") == [to]]

    def test_05_stop_and_start(self):
        """A recipient texts STOP to one of our numbers: every send to them
        from that number is refused at once with a clear error (from
        another of our numbers it goes), a job from another producer is not
        sent either; HELP is answered; START lifts it. A forged inbound
        text changes nothing."""
        r = self.inbound(TO, "  stop ", token="forged")
        self.assertEqual(r.status, 403, r)
        self.assertEqual(self.http("POST", "/sms/send/one", self.sms("stop-0", "before")).status, 200)
        r = self.inbound(TO, "  stop ")
        self.assertEqual((r.status, r.headers.get("Content-Type")), (200, "text/xml"), r)
        self.assertIn(b"<Message>You are unsubscribed", r.body)
        r = self.http("POST", "/sms/send/one", self.sms("stop-1", "after"))
        self.assertEqual((r.status, r.json()["error"]["code"]), (422, "suppressed"), r)
        self.assertIn(f"toPhoneNumber {TO} is suppressed for {FROM} (STOP", r.json()["error"]["message"])
        for frm in (FROM, None):  # from that number, or from the provider's default (maybe that one)
            body = {"channel": "sms", "to": TO, "payload": "x", **({"from": frm} if frm else {})}
            self.assertEqual(self.http("POST", "/v1/messages", body).status, 422, frm)
        ok = {"sms": {"idempotencyKey": "stop-2", "fromPhoneNumber": OTHER, "toPhoneNumber": TO, "content": "other"}}
        self.assertEqual(self.http("POST", "/sms/send/one", ok).status, 200)
        # Another producer's job, straight onto the topic: not sent, dead, saying why.
        nid = "externalstop0000001"
        job = {"type": "notify.send", "version": 1, "key": nid, "request_id": "ext-stop",
               "created_at": int(time.time() * 1000),
               "payload": {"id": nid, "channel": "sms", "to": TO, "from": FROM, "body": "from elsewhere"}}
        kcat_produce(self.stack, "notify.requests", nid, json.dumps(job).encode())
        n = wait_until("the job settled", lambda: (lambda r: r.json() if r.status == 200 and r.json()["status"] ==
                                                   "dead" else None)(self.http("GET", f"/v1/messages/{nid}")), 30)
        self.assertIn("suppressed", n["lastError"])
        wait_until("the other number's SMS out", lambda: "other" in self.sms_texts(TO), 30)
        self.assertNotIn("after", self.sms_texts(TO))
        self.assertNotIn("from elsewhere", self.sms_texts(TO))
        listed = self.http("GET", f"/v1/suppressions?address=%2B{TO[1:]}").json()
        self.assertEqual([(e["channel"], e["scope"], e["reason"]) for e in listed], [("sms", FROM, "STOP")])
        r = self.inbound(TO, "help")
        self.assertIn(b"<Message>Reply STOP to unsubscribe", r.body)
        self.assertEqual(self.inbound(TO, "stop please, no").body.count(b"<Message>"), 0)  # a message, not a keyword
        # The STOP played back later (Twilio's signature has no time in
        # it) after a START: nothing changes.
        stop_sid = "SMreplay" + "0" * 26
        self.assertEqual(self.inbound(OTHER, "STOP", sid=stop_sid).status, 200)
        self.assertEqual(self.inbound(OTHER, "START").status, 200)
        self.assertEqual(self.inbound(OTHER, "STOP", sid=stop_sid).status, 200)
        self.assertEqual(self.http("GET", f"/v1/suppressions?address=%2B{OTHER[1:]}").json(), [])
        r = self.inbound(TO, "START")
        self.assertIn(b"subscribed again", r.body)
        self.assertEqual(self.http("POST", "/sms/send/one", self.sms("stop-3", "welcome back")).status, 200)
        self.assertEqual(self.http("GET", f"/v1/suppressions?address=%2B{TO[1:]}").json(), [])

    def test_06_the_suppression_list(self):
        """An operator suppresses an email address (every sender) and
        lifts it; bad entries are refused."""
        r = self.http("POST", "/v1/suppressions", {"channel": "email", "address": "ada@example.com",
                                                   "reason": "bounce"})
        self.assertEqual((r.status, r.json()["scope"]), (201, "*"), r)
        self.assertEqual(self.http("POST", "/v1/suppressions", {"channel": "email", "address": "ada@example.com",
                                                                "reason": "again"}).json()["reason"], "bounce")
        mail = {"channel": "email", "to": "ada@example.com", "title": "t", "payload": "p"}
        r = self.http("POST", "/v1/messages", mail)
        self.assertEqual((r.status, r.json()["error"]["code"]), (422, "suppressed"), r)
        self.assertIn("every sender (bounce", r.json()["error"]["message"])
        for bad in ({"channel": "push", "address": "x"}, {"channel": "email", "address": "not-an-address"},
                    {"channel": "email", "address": "a@b.c", "scope": "+12125550101"},
                    {"channel": "sms", "address": "12345"}):
            self.assertEqual(self.http("POST", "/v1/suppressions", bad).status, 400, bad)
        # An SMS recipient for one of our numbers, added and lifted by hand.
        r = self.http("POST", "/v1/suppressions", {"channel": "sms", "address": OTHER, "scope": FROM,
                                                   "reason": "asked by phone"})
        self.assertEqual((r.status, r.json()["scope"]), (201, FROM), r)
        sms = {"sms": {"idempotencyKey": "supp-1", "fromPhoneNumber": FROM, "toPhoneNumber": OTHER, "content": "x"}}
        self.assertEqual(self.http("POST", "/sms/send/one", sms).status, 422)
        r = self.http("DELETE", f"/v1/suppressions?channel=sms&address=%2B{OTHER[1:]}&scope=%2B{FROM[1:]}")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(self.http("POST", "/sms/send/one", sms).status, 200)
        r = self.http("DELETE", "/v1/suppressions?channel=email&address=ada@example.com")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(self.http("DELETE", "/v1/suppressions?channel=email&address=ada@example.com").status, 404)
        self.assertEqual(self.http("POST", "/v1/messages", mail).status, 202)

    def feedback(self, event, secret=FEEDBACK_SECRET, at=None):
        """Email feedback as the feed posts it: signed with the shared secret."""
        body = json.dumps(event)
        t = str(int(at if at is not None else time.time()))
        mac = hmac.new(secret.encode(), (t + "." + body).encode(), hashlib.sha256).hexdigest()
        return self.http("POST", "/v1/callbacks/email", body,
                         headers={"Authorization": None, "X-Feedback-Signature": f"t={t},v1={mac}"})

    def test_07_email_bounces_and_complaints(self):
        """SES-style feedback: a hard bounce suppresses the address and
        makes its notification undelivered; a complaint suppresses; a
        delivery makes it delivered; a soft bounce suppresses nobody; a
        wrong secret or an old timestamp is refused and changes nothing."""
        def email(to):
            r = self.http("POST", "/v1/messages", {"channel": "email", "to": to, "title": "t", "payload": "p"})
            self.assertEqual(r.status, 202, r)
            return r.json()["id"]

        def event(kind, nid, **extra):
            return {"notificationType": kind, "mail": {"messageId": "0100abc", "commonHeaders": {
                "messageId": f"<{nid}@switchboard>"}}, **extra}
        hard, soft, angry, fine = (email(a) for a in ("hard@example.com", "soft@example.com", "angry@example.com",
                                                      "fine@example.com"))

        def status(nid):
            return self.http("GET", f"/v1/messages/{nid}").json()["status"]
        for nid in (hard, soft, angry, fine):
            wait_until("sent over SMTP", lambda: status(nid) == "sent", 30)
        bounce = event("Bounce", hard, bounce={"bounceType": "Permanent", "bouncedRecipients": [
            {"emailAddress": "hard@example.com", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]})
        for r in (self.feedback(bounce, secret="wrong"), self.feedback(bounce, at=time.time() - 3600)):
            self.assertEqual((r.status, r.json()["error"]["code"]), (403, "forbidden"), r)
        self.assertEqual(self.http("GET", "/v1/suppressions?address=hard%40example.com").json(), [])
        self.assertEqual(self.feedback(bounce).status, 204)
        self.assertEqual(self.feedback(event("Bounce", soft, bounce={"bounceType": "Transient", "bouncedRecipients": [
            {"emailAddress": "soft@example.com"}]})).status, 204)
        self.assertEqual(self.feedback(event("Complaint", angry, complaint={"complainedRecipients": [
            {"emailAddress": "angry@example.com"}], "complaintFeedbackType": "abuse"})).status, 204)
        # As SES sends it: its own Message-ID, ours in the headers it includes.
        ses = {"notificationType": "Delivery", "delivery": {"recipients": ["fine@example.com"]},
               "mail": {"messageId": "0100ses", "commonHeaders": {"messageId": "<0100ses@email.amazonses.com>"},
                        "headers": [{"name": "X-Switchboard-Notification", "value": fine}]}}
        self.assertEqual(self.feedback(ses).status, 204)
        self.assertEqual(self.feedback({"notificationType": "Bounce"}).status, 400)
        reasons = {e["address"]: e["reason"] for e in self.http("GET", "/v1/suppressions").json()}
        self.assertEqual(reasons["hard@example.com"], "bounce: smtp; 550 5.1.1 user unknown")
        self.assertEqual(reasons["angry@example.com"], "complaint")
        self.assertNotIn("soft@example.com", reasons)
        self.assertNotIn("fine@example.com", reasons)
        for to in ("hard@example.com", "angry@example.com"):
            r = self.http("POST", "/v1/messages", {"channel": "email", "to": to, "title": "t", "payload": "p"})
            self.assertEqual((r.status, r.json()["error"]["code"]), (422, "suppressed"), to)
        self.assertEqual([status(n) for n in (hard, soft, angry, fine)], ["undelivered", "sent", "sent", "delivered"])
        n = self.http("GET", f"/v1/messages/{hard}").json()
        self.assertEqual(n["lastError"], "bounced: smtp; 550 5.1.1 user unknown")
        self.assertEqual(self.feedback(event("Delivery", hard, delivery={"recipients": ["hard@example.com"]})).status,
                         204)
        self.assertEqual(status(hard), "undelivered")  # terminal: a late delivery changes nothing

    def pushes(self, device):
        with urllib.request.urlopen(self.provider.url + "/_records", timeout=10) as r:
            return [x for x in json.load(r) if x["path"] == "/push" and device in x["body"]]

    def test_08_scheduled_sends(self):
        """sendAt holds a notification until its time, across a restart of
        the notifier (it is kept in the store, not in a process), and it
        can be cancelled until then, not after."""
        def iso(t):
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
        for bad in ("yesterday", iso(time.time() - 60), iso(time.time() + 8 * 86400), "2026-13-01T00:00:00Z"):
            r = self.http("POST", "/v1/messages", {"channel": "push", "to": "d", "payload": "p", "sendAt": bad})
            self.assertEqual(r.status, 400, bad)
        due = time.time() + 6
        ids = {}
        for dev in ("sched-go", "sched-cancel"):
            r = self.http("POST", "/v1/messages", {"channel": "push", "to": dev, "payload": "later",
                                                   "sendAt": iso(due)})
            self.assertEqual((r.status, r.json()["status"], r.json()["sendAt"]), (202, "scheduled", iso(due)), r)
            ids[dev] = r.json()["id"]
        for nid in ids.values():
            wait_until("recorded as scheduled", lambda: self.http("GET", f"/v1/messages/{nid}").status == 200 and
                       self.note(nid)["status"] == "scheduled", 30)
        r = self.http("POST", f"/v1/messages/{ids['sched-cancel']}/cancel")
        self.assertEqual((r.status, r.json()["status"]), (200, "cancelled"), r)
        r = self.http("POST", f"/v1/messages/{ids['sched-cancel']}/cancel")
        self.assertEqual((r.status, r.json()["error"]["code"]), (409, "not_cancellable"), r)
        # The notifier stops before the time and comes back after it.
        self.stack.stop("worker-notifier")
        try:
            time.sleep(max(0.0, due - time.time()) + 1)
            self.assertEqual(self.pushes("sched-go"), [])
        finally:
            self.stack.start_worker("notifier")
        n = wait_until("sent after the restart", lambda: (lambda n: n if n["status"] == "sent" else None)(
            self.note(ids["sched-go"])), 60)
        got = self.pushes("sched-go")
        self.assertEqual(len(got), 1)
        self.assertGreaterEqual(got[0]["at"], due - 0.01)
        self.assertEqual([h["status"] for h in n["history"]], ["scheduled", "queued", "sending", "sent"])
        time.sleep(1.5)  # the cancelled one, if it went, would show by now
        self.assertEqual(self.pushes("sched-cancel"), [])
        self.assertEqual(self.note(ids["sched-cancel"])["status"], "cancelled")
        r = self.http("POST", f"/v1/messages/{ids['sched-go']}/cancel")
        self.assertEqual((r.status, r.json()["error"]["code"]), (409, "not_cancellable"), r)

    def hook_records(self, nid):
        with urllib.request.urlopen(self.hooks.url + "/_records", timeout=10) as r:
            return [x for x in json.load(r) if json.loads(x["body"])["id"] == nid]

    def test_09_your_webhook(self):
        """A message with a statusCallback: each change of its status is
        POSTed there, signed with the key's secret and timestamped, in
        order, each event again after a failure (with backoff) before the
        next, until it is taken."""
        r = self.http("POST", "/v1/messages", {"channel": "push", "to": "d", "payload": "p",
                                               "statusCallback": "ftp://example.com/hook"})
        self.assertEqual(r.status, 400, r)
        secret = self.http("GET", "/v1/webhooks/secret").json()["secret"]
        self.assertRegex(secret, r"^[0-9a-f]{64}$")
        post = urllib.request.Request(self.hooks.url + "/_control", data=json.dumps(
            {"fail": 2, "status": 500}).encode(), headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(post, timeout=10).read()
        self.control(callbacks=["delivered"], callback_delay=0.5)
        try:
            r = self.http("POST", "/v1/messages", {"channel": "sms", "to": TO, "payload": "hooked",
                                                   "statusCallback": self.hooks.url + "/hook"})
            self.assertEqual(r.status, 202, r)
            nid = r.json()["id"]
            wait_until("delivered", lambda: self.note(nid)["status"] == "delivered", 30)
            n = self.note(nid)
            wait_until("every change at the webhook", lambda: len(
                [x for x in self.hook_records(nid) if x["status"] < 300]) == len(n["history"]), 30)
        finally:
            self.control(callbacks=[])
        recs = self.hook_records(nid)
        self.assertEqual([x["status"] for x in recs[:2]], [500, 500])  # refused twice, then taken
        taken = [json.loads(x["body"]) for x in recs if x["status"] < 300]
        self.assertEqual([e["sequence"] for e in taken], list(range(1, len(taken) + 1)))  # in order, once each
        self.assertEqual([e["status"] for e in taken], [h["status"] for h in n["history"]])
        self.assertEqual(json.loads(recs[0]["body"])["sequence"], 1)
        self.assertEqual(json.loads(recs[1]["body"])["sequence"], 1)  # the same event again, not the next
        for x in recs:
            sig = dict(p.split("=", 1) for p in x["headers"]["X-Switchboard-Signature"].split(","))
            mac = hmac.new(secret.encode(), (sig["t"] + "." + x["body"]).encode(), hashlib.sha256).hexdigest()
            self.assertEqual(sig["v1"], mac)
            self.assertLess(abs(int(sig["t"]) - time.time()), 300)
        self.assertGreaterEqual(recs[2]["at"] - recs[1]["at"], 0.15)  # a backoff between tries
        # A message without one: nothing at the webhook.
        other = self.send_sms("no hook")
        wait_until("sent", lambda: self.note(other)["status"] in ("sent", "delivered"), 30)
        time.sleep(1)
        self.assertEqual(self.hook_records(other), [])

    def test_10_a_slow_webhook_holds_up_only_its_own_message(self):
        """One customer's receiver takes 4 s to answer each event; another
        message's events, sent just after, all arrive meanwhile."""
        post = urllib.request.Request(self.hooks.url + "/_control", data=json.dumps(
            {"fail": 0, "slow": {"slow-hook-device": 4}}).encode(), headers={"Content-Type": "application/json"},
            method="POST")
        urllib.request.urlopen(post, timeout=10).read()
        try:
            ids = {}
            for dev in ("slow-hook-device", "fast-hook-device"):
                r = self.http("POST", "/v1/messages", {"channel": "push", "to": dev, "payload": "p",
                                                       "statusCallback": self.hooks.url + "/hook"})
                self.assertEqual(r.status, 202, r)
                ids[dev] = r.json()["id"]
            fast = ids["fast-hook-device"]
            wait_until("the fast one sent", lambda: self.note(fast)["status"] == "sent", 30)
            wait_until("all the fast one's events", lambda: len(
                [x for x in self.hook_records(fast) if x["status"] < 300]) == 3, 30, 0.1)
            # They arrived while the slow one's first event, which the
            # receiver holds 4 s before answering, was still unanswered.
            slow_first = wait_until("the slow one's first event", lambda: self.hook_records(
                ids["slow-hook-device"]), 30)[0]["at"]
            for x in self.hook_records(fast):
                self.assertLess(x["at"], slow_first + 4, x)
        finally:
            post = urllib.request.Request(self.hooks.url + "/_control", data=json.dumps({"slow": {}}).encode(),
                                          headers={"Content-Type": "application/json"}, method="POST")
            urllib.request.urlopen(post, timeout=10).read()


if __name__ == "__main__":
    unittest.main()
