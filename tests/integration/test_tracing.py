"""One trace per request across the dispatcher, Kafka and the workers
(issue 27), checked in a real Jaeger (built from the Go module proxy, OTLP
over HTTP in, its query API out): a message create is one trace from the
client's traceparent through the dispatcher's request, Redis and produce
spans to the persister's job and batch; a notification is one trace
through the notifier's job to the provider call, whose traceparent the
provider received. The persister exports OTLP's JSON, the rest protobuf. The log lines of a traced request or job carry its
trace id."""

import json
import os
import secrets
import time
import urllib.request

from harness import FakeServer, StackTestCase, kcat, kcat_consume_all, request, wait_until

API = "/api/v1/applications"


def read_lines(path):
    with open(path, errors="replace") as f:
        return f.readlines()


def jaeger_trace(query_url, trace_id):
    """The trace's spans as {spanID: (service, operationName, parentSpanID
    or None, tags)}; {} while Jaeger has none."""
    try:
        with urllib.request.urlopen(f"{query_url}/api/traces/{trace_id}", timeout=5) as r:
            data = json.loads(r.read())["data"]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {}
        raise
    spans = {}
    for t in data:
        for s in t["spans"]:
            parent = next((ref["spanID"] for ref in s.get("references", []) if ref["refType"] == "CHILD_OF"), None)
            tags = {tag["key"]: tag["value"] for tag in s.get("tags", [])}
            spans[s["spanID"]] = (t["processes"][s["processID"]]["serviceName"], s["operationName"], parent, tags)
    return spans


def by_name(spans, service, name):
    found = [(sid, s) for sid, s in spans.items() if s[0] == service and s[1] == name]
    assert len(found) == 1, f"{service}/{name}: {found} in {spans}"
    return found[0]


class TestTracing(StackTestCase):
    ROLES = ("persister", "notifier")

    @classmethod
    def configure(cls, stack):
        cls.otlp_url, cls.query_url = stack.start_jaeger()
        cls.provider = FakeServer("provider.py", stack.path("logs"), folder="scripts/dev")
        stack.log_level = "debug"  # every line a request logs, to check them all for the trace id
        # The dispatcher and the notifier send protobuf (the default), the
        # persister JSON: a create's trace joins both encodings.
        stack.role_flags["persister"] = ["--trace-otlp-protocol", "http/json"]
        stack.extra_env.update({
            "SB_TRACE_OTLP_URL": cls.otlp_url,
            "SB_TRACE_SAMPLE_RATIO": "1",
            "SB_TRACE_FLUSH_MS": "100",
            "SB_NOTIFY_BACKOFF_MS": "200",
            "SB_SMS_URL": f"http://ACtest:tok@127.0.0.1:{cls.provider.port}/sms",
            "SB_PUSH_URL": f"http://127.0.0.1:{cls.provider.port}/push",
        })

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.provider.stop()

    def wait_trace(self, trace_id, want):
        """Waits until the trace holds every (service, name) of want."""
        got = {}

        def complete():
            nonlocal got
            got = jaeger_trace(self.query_url, trace_id)
            have = {(s[0], s[1]) for s in got.values()}
            return all(w in have for w in want)
        wait_until(f"trace {trace_id} with {want}", complete, timeout=30)
        return got

    def test_01_message_create_is_one_trace(self):
        """The client's traceparent is the request span's parent; Redis
        and the produce are its children; the persister's job span is the
        produce's child (through the Kafka header), its batch the job's.
        Every dispatcher log line of the request names the trace."""
        token = self.create_app("traced")
        self.assertEqual(self.http("POST", f"{API}/{token}/chats").status, 201)
        trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
        rid = "traced-create-1"
        r = self.http("POST", f"{API}/{token}/chats/1/messages", {"body": "follow me"},
                      headers={"traceparent": f"00-{trace_id}-{parent}-01", "X-Request-Id": rid})
        self.assertEqual(r.status, 201, r)
        spans = self.wait_trace(trace_id, [("switchboard-dispatcher", "message_create"),
                                           ("switchboard-dispatcher", "redis.numbers_next"),
                                           ("switchboard-dispatcher", "kafka.produce"),
                                           ("switchboard-persister", "persister"),
                                           ("switchboard-persister", "batch")])
        req_id, req = by_name(spans, "switchboard-dispatcher", "message_create")
        self.assertEqual(req[2], parent)
        self.assertEqual(req[3].get("http.response.status_code"), "201")
        self.assertEqual(req[3].get("request_id"), rid)
        self.assertEqual(by_name(spans, "switchboard-dispatcher", "redis.numbers_next")[1][2], req_id)
        prod_id, prod = by_name(spans, "switchboard-dispatcher", "kafka.produce")
        self.assertEqual(prod[2], req_id)
        self.assertEqual(prod[3].get("messaging.destination.name"), "chat.commands")
        job_id, job = by_name(spans, "switchboard-persister", "persister")
        self.assertEqual(job[2], prod_id)
        self.assertEqual(job[3].get("job.type"), "message.create")
        self.assertEqual(job[3].get("job.outcome"), "done")
        self.assertEqual(by_name(spans, "switchboard-persister", "batch")[1][2], job_id)
        self.assertEqual(self.stack.sql(
            f"SELECT body FROM messages WHERE application_token='{token}' AND chat_number=1 AND number=1")[0][0],
            "follow me")

        lines = [ln for ln in read_lines(self.stack.log("dispatcher")) if f"request_id={rid}" in ln]
        self.assertTrue(lines, "the request logged nothing at debug level")
        for ln in lines:
            self.assertIn(f"trace_id={trace_id}", ln)

    def test_02_new_trace_without_traceparent(self):
        """A request without a traceparent (or with a malformed one) starts
        a trace of its own, which the job continues."""
        token = self.create_app("untraced")
        for header in ({}, {"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"},
                       {"traceparent": "garbage"}):
            rid = "fresh-" + secrets.token_hex(4)
            r = self.http("POST", f"{API}/{token}/chats", headers={**header, "X-Request-Id": rid})
            self.assertEqual(r.status, 201, r)
            line = next(ln for ln in read_lines(self.stack.log("dispatcher")) if f"request_id={rid}" in ln)
            self.assertIn("trace_id=", line)
            trace_id = line.split("trace_id=")[1].split()[0]
            self.assertNotEqual(trace_id, "0" * 32)
            spans = self.wait_trace(trace_id, [("switchboard-dispatcher", "chat_create"),
                                               ("switchboard-persister", "persister")])
            self.assertIsNone(by_name(spans, "switchboard-dispatcher", "chat_create")[1][2])  # a root

    def test_03_notification_through_the_provider(self):
        """POST /v1/messages: dispatcher -> notifier job -> provider call,
        one trace; the provider got the call span's traceparent."""
        self.provider_reset()
        trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
        r = self.http("POST", "/v1/messages", {"channel": "push", "to": "device-7", "payload": "hello"},
                      headers={"traceparent": f"00-{trace_id}-{parent}-01"})
        self.assertEqual(r.status, 202, r)
        spans = self.wait_trace(trace_id, [("switchboard-dispatcher", "notify_create"),
                                           ("switchboard-dispatcher", "kafka.produce"),
                                           ("switchboard-notifier", "notifier"),
                                           ("switchboard-notifier", "provider.send")])
        req_id, _ = by_name(spans, "switchboard-dispatcher", "notify_create")
        prod_id, prod = by_name(spans, "switchboard-dispatcher", "kafka.produce")
        self.assertEqual(prod[2], req_id)
        job_id, job = by_name(spans, "switchboard-notifier", "notifier")
        self.assertEqual(job[2], prod_id)
        call_id, call = by_name(spans, "switchboard-notifier", "provider.send")
        self.assertEqual(call[2], job_id)
        self.assertEqual(call[3].get("outcome"), "sent")
        got = [rec for rec in self.provider_records() if rec["path"] == "/push"]
        self.assertEqual(len(got), 1, got)
        headers = {k.lower(): v for k, v in got[0]["headers"].items()}
        self.assertEqual(headers.get("traceparent"), f"00-{trace_id}-{call_id}-01")

    def test_03b_retry_stays_in_the_trace(self):
        """The provider refuses the first attempt: the retry job (through
        notify.retry) is a child of the first job, both calls are in the
        trace, the first marked an error."""
        self.provider_reset()
        request(self.provider.port, "POST", "/_control", {"fail": 1, "status": 503})
        trace_id = secrets.token_hex(16)
        r = self.http("POST", "/v1/messages", {"channel": "push", "to": "device-8", "payload": "again"},
                      headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
        self.assertEqual(r.status, 202, r)

        def two_calls():
            spans = jaeger_trace(self.query_url, trace_id)
            return len([s for s in spans.values() if s[1] == "provider.send"]) == 2 and spans
        spans = wait_until("two provider calls in the trace", two_calls, timeout=30)
        jobs = {sid: s for sid, s in spans.items() if s[0] == "switchboard-notifier" and s[1] == "notifier"}
        first = next(sid for sid, s in jobs.items() if s[3]["messaging.destination.name"] == "notify.requests")
        # The retry job may be fetched before it is due (deferred, a span of
        # its own) and again when it is: each a child of the first job.
        retries = {sid: s for sid, s in jobs.items() if s[3]["messaging.destination.name"] == "notify.retry"}
        self.assertTrue(retries and all(s[2] == first for s in retries.values()), jobs)
        self.assertEqual(len(jobs), 1 + len(retries), jobs)
        second = next(sid for sid, s in retries.items() if s[3]["job.outcome"] == "done")
        calls = {s[2]: s for s in spans.values() if s[1] == "provider.send"}
        self.assertEqual(calls[first][3].get("outcome"), "retry")
        self.assertEqual(calls[first][3].get("otel.status_code"), "ERROR")
        self.assertEqual(calls[second][3].get("outcome"), "sent")

    def test_04_job_from_another_producer(self):
        """A job another service produced with a traceparent joins that
        trace; a bad one's dead-letter line carries the trace id."""
        trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
        kcat(self.stack, "-P", "-t", "chat.commands", "-k", "k1", "-H", f"traceparent=00-{trace_id}-{parent}-01",
             data=b"{not json")
        spans = self.wait_trace(trace_id, [("switchboard-persister", "persister")])
        job = by_name(spans, "switchboard-persister", "persister")[1]
        self.assertEqual(job[2], parent)
        self.assertEqual(job[3].get("job.outcome"), "dead-lettered")
        self.assertEqual(job[3].get("otel.status_code"), "ERROR")
        wait_until("the dead letter's log line", lambda: any(
            "job dead-lettered" in ln and f"trace_id={trace_id}" in ln
            for ln in read_lines(self.stack.log("worker-persister"))))
        # The dead letter keeps the traceparent: a redriven copy goes on in the trace.
        letters = [m for m in kcat_consume_all(self.stack, "chat.commands.dlq")
                   if m["headers"].get("traceparent", "").startswith(f"00-{trace_id}-")]
        self.assertEqual(len(letters), 1, letters)

    def test_05_unsampled_travels_unrecorded(self):
        """A traceparent whose sampled flag is off is followed: no span of
        it anywhere, though the job still carries it."""
        token = self.create_app("unsampled")
        trace_id = secrets.token_hex(16)
        r = self.http("POST", f"{API}/{token}/chats", headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-00"})
        self.assertEqual(r.status, 201)
        # A sampled request after it: once its job's spans are in, the
        # unsampled one's would be too.
        t2 = secrets.token_hex(16)
        self.assertEqual(self.http("POST", f"{API}/{token}/chats",
                                   headers={"traceparent": f"00-{t2}-{secrets.token_hex(8)}-01"}).status, 201)
        self.wait_trace(t2, [("switchboard-persister", "persister")])
        self.assertEqual(jaeger_trace(self.query_url, trace_id), {})

    def provider_reset(self):
        request(self.provider.port, "POST", "/_reset")

    def provider_records(self):
        return request(self.provider.port, "GET", "/_records").json()


if __name__ == "__main__":
    import unittest
    unittest.main()
