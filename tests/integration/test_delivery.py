"""Delivery you can trust (issue 26), end to end with real peers on
loopback: the provider stand-in (scripts/dev/provider.py) takes the SMS and
push deliveries. Covers what an SMS costs (its encoding and segments, at
acceptance)."""

import json
import unittest

from harness import FakeServer, StackTestCase

FROM, TO = "+12125550101", "+12125550102"


class TestDelivery(StackTestCase):
    ROLES = ("notifier",)

    @classmethod
    def configure(cls, stack):
        cls.provider = FakeServer("provider.py", stack.path("logs"), folder="scripts/dev")
        stack.extra_env.update({
            "SB_SMS_URL": f"http://ACtest:s3cret@127.0.0.1:{cls.provider.port}/sms",
            "SB_PUSH_URL": f"http://127.0.0.1:{cls.provider.port}/push",
        })

    @classmethod
    def setUpClass(cls):
        try:
            super().setUpClass()
        except Exception:
            cls.provider.stop()
            raise
        cls.stack.seed(users=4, numbers=0, area_codes="212")
        for user, phone in ((1, FROM), (2, TO)):
            cls.stack.sql(f"UPDATE users SET phone_number='{phone}' WHERE user_id={user}")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.provider.stop()

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


if __name__ == "__main__":
    unittest.main()
