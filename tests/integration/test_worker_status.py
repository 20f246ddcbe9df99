"""A worker's status endpoint (status_listen): /healthz and /metrics with its
counters and the consumer group's lag per partition, which grows while the
worker cannot commit and falls back to 0 once it catches up."""

import datetime
import json
import socket
import subprocess
import threading
import time
import unittest

from harness import (StackTestCase, cpu_seconds, kcat_consume_all, kcat_produce, log_lines,
                     metric_samples as samples, request, wait_until)

WORKER = "worker-persister"


class TestWorkerStatus(StackTestCase):
    ROLES = ("persister",)

    def status(self, path, method="GET"):
        r = request(self.stack.status_ports[WORKER], method, path, timeout=10)
        return r.status, r.headers, r.body.decode()

    def metrics(self):
        status, headers, text = self.status("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("Content-Type", "").startswith("text/plain"))
        return text

    def lag(self):
        """Total lag over chat.commands' partitions, and how many reported."""
        s = {k: v for k, v in samples(self.metrics(), "switchboard_worker_lag").items()
             if 'topic="chat.commands"' in k}
        return sum(s.values()), len(s)

    def test_00_first_dead_letter_goes_out_at_once(self):
        # The worker has sat idle since it started. Its first dead letter
        # used to wait ~1 s in librdkafka for chat.commands.dlq's metadata
        # (the batch with it, too); the topics are now looked up at start.
        kcat_produce(self.stack, "chat.commands", "poison-00", b"{not json")
        line = wait_until("dead-lettered", lambda: log_lines(self.stack, WORKER, "job dead-lettered"), 30)[0]
        letter = [m for m in kcat_consume_all(self.stack, "chat.commands.dlq") if m["key"] == "poison-00"][0]
        logged = datetime.datetime.strptime(line.split()[0], "ts=%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        took = logged - int(letter["headers"]["x-failed-at"]) / 1000
        self.assertLess(took, 0.5, f"the dead letter took {took:.3f} s to be acknowledged")

    def test_02_health_and_metrics(self):
        status, _, body = self.status("/healthz")
        self.assertEqual(status, 200)
        health = json.loads(body)
        self.assertEqual(health["status"], "ok")
        self.assertEqual(health["role"], "persister")

        acked, others = self.send_pings(120, note="status")
        self.assertEqual(others, [])
        in_list = ",".join(f"'{i}'" for i in acked)
        wait_until("pings persisted", lambda: self.ping_count(f"request_id IN ({in_list})") == 120, 60)

        text = self.metrics()
        jobs = samples(text, "switchboard_worker_jobs_total")
        self.assertGreaterEqual(jobs['{role="persister"}'], 120)  # and the ping of scripts/up
        self.assertGreaterEqual(samples(text, "switchboard_worker_batches_total")['{role="persister"}'], 1)
        last = samples(text, "switchboard_worker_last_batch_timestamp_seconds")['{role="persister"}']
        self.assertLess(abs(time.time() - last), 60)
        self.assertIn("# TYPE switchboard_worker_lag gauge", text)
        # Offsets are committed every second: the lag of every partition
        # that has had jobs settles at 0.
        def settled():
            total, partitions = self.lag()
            return total == 0 and partitions >= 1
        wait_until("lag 0", settled, 20)
        health = json.loads(self.status("/healthz")[2])
        self.assertGreaterEqual(health["seconds_since_batch"], 0)
        self.assertLess(health["seconds_since_batch"], 60)

    def test_03_errors(self):
        status, _, body = self.status("/nowhere")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body)["error"]["code"], "not_found")
        status, headers, body = self.status("/metrics", method="POST")
        self.assertEqual(status, 405)
        self.assertEqual(headers.get("Allow"), "GET, HEAD")
        self.assertEqual(json.loads(body)["error"]["code"], "method_not_allowed")
        self.assertEqual(self.status("/healthz", method="HEAD")[0], 200)

    def test_01_lag_grows_while_mysql_away(self):
        # First, on a fresh stack: only the start-up ping's partition has a
        # committed offset, so the others count from their beginning.
        st = self.stack
        wait_until("lag 0 before", lambda: self.lag()[0] == 0, 20)
        st.stop("mariadb")
        try:
            acked, others = self.send_pings(150, threads=5, note="lag")
            self.assertEqual(others, [])
            # Nothing commits while MySQL is away: the jobs stay as lag,
            # and the worker keeps answering.
            wait_until("lag >= 150", lambda: self.lag()[0] >= 150, 30)
            self.assertEqual(self.status("/healthz")[0], 200)
        finally:
            st.start_mariadb()  # same port and data directory
        in_list = ",".join(f"'{i}'" for i in acked)
        wait_until("pings persisted", lambda: self.ping_count(f"request_id IN ({in_list})") == 150, 90)
        wait_until("lag back to 0", lambda: self.lag()[0] == 0, 30)

    def test_05_health_does_not_wait_behind_a_scrape(self):
        # With the broker away, a scrape's lag waits on the group
        # coordinator (up to 2 s). /healthz must answer meanwhile: a
        # liveness probe with a short timeout would otherwise fail and have
        # the worker restarted for the broker's outage.
        st = self.stack
        try:  # the finally brings the broker back even if this fails
            st.kafka_pause()  # SIGSTOP: a hung broker
            scrapes, t0 = [], time.monotonic()

            def scrape():
                scrapes.append((self.status("/metrics"), time.monotonic() - t0))
            scrapers = [threading.Thread(target=scrape) for _ in range(2)]
            for t in scrapers:
                t.start()
            time.sleep(0.3)  # the scrapes are in
            status, _, body = self.status("/healthz")
            answered = time.monotonic() - t0
            for t in scrapers:
                t.join(30)
        finally:
            st.kafka_resume()
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["role"], "persister")
        self.assertEqual(len(scrapes), 2)
        for (code, _, text), took in scrapes:
            self.assertEqual(code, 200)
            self.assertIn("switchboard_worker_jobs_total", text)
            self.assertGreater(took, 1.0, "the scrape did not wait on the broker: this test checks nothing")
            self.assertLess(answered, took, "/healthz waited for a scrape")
        # The broker back, scrapes see the lag again.
        wait_until("lag lines again", lambda: self.lag()[1] >= 1, 30)

    def test_04_bad_address_stops_the_worker(self):
        st = self.stack
        r = subprocess.run([st.binary("switchboard-worker"), "--role", "persister",
                            "--status-listen", "localhost"],
                           env=st.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("listen address must be host:port", r.stdout.decode())
        # A port someone else holds: the worker says so and exits.
        port = st.status_ports[WORKER]
        r = subprocess.run([st.binary("switchboard-worker"), "--role", "persister",
                            "--status-listen", f"127.0.0.1:{port}"],
                           env=st.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Address already in use", r.stdout.decode())

    def test_06_stopping_during_a_scrape(self):
        # SIGTERM while a scrape waits on the broker: the scrape gets an
        # answer (the rendering's, or 503), and the worker exits 0 with no
        # sanitizer report (the harness looks at the logs at the end).
        st = self.stack
        name = "worker-persister-2"
        st.start_worker("persister", name=name)
        wait_until("second worker's status port", lambda: log_lines(st, name, "worker started"), 20)
        try:  # the finally brings the broker back even if this fails
            st.kafka_pause()  # SIGSTOP: a hung broker
            got = []

            def scrape():
                try:
                    got.append(request(st.status_ports[name], "GET", "/metrics", timeout=30).status)
                except OSError as e:  # the worker closed the connection
                    got.append(repr(e))
            t = threading.Thread(target=scrape)
            t.start()
            time.sleep(0.3)
            self.assertEqual(st.stop(name, timeout=60), 0)
            t.join(30)
        finally:
            st.kafka_resume()
        self.assertIn(got[0], (200, 503), got)

    def test_07_out_of_descriptors_the_status_port_rests_instead_of_spinning(self):
        # A worker that runs out of file descriptors (here: 300 clients on
        # its status port, against a limit of 128) must not call accept()
        # in a busy loop: it wrote 320,000 warnings in 2 s before. Once the
        # clients are gone, /healthz answers again.
        st = self.stack
        name = "worker-phonebook-fds"
        proc = st.start_worker("phonebook", name=name, nofile=(128, 128))
        self.addCleanup(st.stop, name)
        wait_until("its status port", lambda: log_lines(st, name, "worker started"), 20)
        port = st.status_ports[name]
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        lines = len(log_lines(st, name, ""))
        for _ in range(300):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        # accept() has failed for want of descriptors: the count in /proc
        # is no sign, as librdkafka opens and closes sockets meanwhile. In
        # either wording (libevent's own, or ours).
        wait_until("accept() out of descriptors", lambda: log_lines(st, name, "Too many open files"), 10, 0.1)
        before, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(2)
        self.assertLess((cpu_seconds(proc.pid) - before) / (time.monotonic() - t0), 0.5,
                        "the status port spins on accept()")
        # Counted from before the clients came: without the rest, the spin
        # lasts while the backlog holds connections, and may be over (after
        # millions of lines) before the window above begins.
        self.assertLess(len(log_lines(st, name, "")) - lines, 20, "log flooded")
        self.assertTrue(log_lines(st, name, "accept failed"))
        for s in socks:
            s.close()
        wait_until("/healthz again", lambda: request(port, "GET", "/healthz", timeout=5).status == 200, 15, 0.2)

    def test_08_a_committed_offset_gone_from_the_log_is_an_error_and_counted(self):
        # Jobs the group never consumed are deleted from the log (as
        # retention does to a consumer days behind, or an operator's
        # delete-records): the consumer's committed offset is out of range
        # and it starts over at the log's start. That skips jobs, so it is
        # an error in the log and a count in /metrics, never a quiet warning.
        st = self.stack
        def resets():
            try:
                return sum(samples(self.metrics(), "switchboard_kafka_offset_resets_total").values())
            except OSError:  # the status port is not open yet
                return -1
        wait_until("the status port", lambda: resets() >= 0, 20)
        self.assertIn('switchboard_kafka_offset_resets_total{group="switchboard-persister"} 0', self.metrics())
        acked, _ = self.send_pings(20, note="before the gap")
        in_list = ",".join(f"'{i}'" for i in acked)
        wait_until("pings persisted", lambda: self.ping_count(f"request_id IN ({in_list})") == 20, 60)
        wait_until("offsets committed", lambda: self.lag() == (0, 4), 30)
        errors = len(log_lines(st, WORKER, "consumer offset reset"))
        st.stop(WORKER)
        lost, _ = self.send_pings(20, note="deleted before consumed")
        r = subprocess.run([st.binary("kafka_admin"), "delete-records", st.kafka_brokers, "chat.commands"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout.decode())
        st.start_worker("persister")
        wait_until("the reset counted", lambda: resets() >= 1, 30)
        lines = log_lines(st, WORKER, "consumer offset reset")
        self.assertGreater(len(lines), errors)
        self.assertIn("level=error", lines[-1])
        self.assertIn("Offset out of range", lines[-1])
        in_list = ",".join(f"'{i}'" for i in lost)
        self.assertEqual(self.ping_count(f"request_id IN ({in_list})"), 0)
        # And it goes on from the log's start: new jobs are consumed.
        acked, _ = self.send_pings(5, note="after the gap")
        in_list = ",".join(f"'{i}'" for i in acked)
        wait_until("pings after the gap persisted", lambda: self.ping_count(f"request_id IN ({in_list})") == 5, 60)


if __name__ == "__main__":
    unittest.main()
