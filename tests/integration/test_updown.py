"""scripts/up, scripts/status and scripts/down (through scripts/stack.py,
which all call): up brings a ready stack, a second up is harmless and
restarts what of the stack is not running, down leaves no process of ours
behind and a second down is harmless; down then up keeps the jobs queued in
Kafka and the consumers' committed offsets."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import ROOT, metric_samples, request, wait_pings_persisted_once, wait_until
import stack as stackmod


class TestUpDown(unittest.TestCase):

    def test_up_twice_down_twice(self):
        run_dir = tempfile.mkdtemp(prefix="sbupdown-")
        port = stackmod.free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("REDIS_URL", "KAFKA_BROKERS", "MYSQL_URL")}
        # SB_BIN_DIR (set by CTest) stays: stack.py runs that build's binaries.
        cmd = [sys.executable, os.path.join(ROOT, "scripts", "stack.py")]
        args = ["--run-dir", run_dir, "--port", str(port), "--partitions", "2"]
        try:
            r = subprocess.run(cmd + ["up"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=180)
            self.assertEqual(r.returncode, 0, r.stdout.decode())
            self.assertIn(f"http://127.0.0.1:{port}", r.stdout.decode())
            res = request(port, "GET", "/readyz")
            self.assertEqual(res.status, 200, res)
            st = stackmod.Stack(run_dir, use_env=False)
            names = st.names()
            for expected in ("redis", "mariadb", "kafka", "dispatcher", "worker-persister",
                             "worker-indexer", "worker-notifier", "worker-phonebook"):
                self.assertIn(expected, names)
            pids = {n: st.pid_of(n) for n in names}
            self.assertTrue(all(st.alive(*p) for p in pids.values()))

            r = subprocess.run(cmd + ["up"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(r.returncode, 0)
            self.assertIn("already running", r.stdout.decode())
            self.assertEqual({n: st.pid_of(n) for n in st.names()}, pids)

            r = subprocess.run(cmd + ["status"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout.decode())
            self.assertRegex(r.stdout.decode(), r"worker-persister +running +pid")

            # A killed persister: status says so, and up starts it again
            # (alone); the jobs acknowledged meanwhile wait in Kafka for it.
            st.kill9("worker-persister")
            r = subprocess.run(cmd + ["status"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(r.returncode, 1, r.stdout.decode())
            self.assertRegex(r.stdout.decode(), r"worker-persister +NOT RUNNING")
            acked = self.pings(st, port, 50, "while the persister was dead")
            r = subprocess.run(cmd + ["up"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=180)
            self.assertEqual(r.returncode, 0, r.stdout.decode())
            self.assertIn("restarted: worker-persister", r.stdout.decode())
            st = stackmod.Stack(run_dir, use_env=False)
            self.assertTrue(st.alive(*st.pid_of("worker-persister")))
            self.assertNotEqual(st.pid_of("worker-persister"), pids["worker-persister"])
            for n, p in pids.items():
                if n != "worker-persister":
                    self.assertEqual(st.pid_of(n), p, f"{n} was restarted too")
            self.wait_persisted(st, acked)

            # down, then up: the jobs queued while no persister ran are kept
            # (Kafka's log is on disk), and so are the committed offsets:
            # the new persister consumes the queued jobs and the start-up
            # ping only, not the topic from its beginning again.
            st.stop("worker-persister")
            acked = self.pings(st, port, 30, "queued across down and up")
            r = subprocess.run(cmd + ["down"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout.decode())
            r = subprocess.run(cmd + ["up"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=180)
            self.assertEqual(r.returncode, 0, r.stdout.decode())
            st = stackmod.Stack(run_dir, use_env=False)
            st.restore()
            self.wait_persisted(st, acked)
            status_port = st.status_ports["worker-persister"]

            def jobs_done():  # counted once the batch after it is fetched
                return sum(metric_samples(request(status_port, "GET", "/metrics").body.decode(),
                                          "switchboard_worker_jobs_total").values())
            wait_until("the persister's job count", lambda: jobs_done() >= len(acked) + 1, 10)
            self.assertEqual(jobs_done(), len(acked) + 1)
            pids = {n: st.pid_of(n) for n in st.names()}

            r = subprocess.run(cmd + ["down"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout.decode())
            for n, p in pids.items():
                self.assertFalse(st.alive(*p), f"{n} still running")
            r = subprocess.run(cmd + ["down"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(r.returncode, 0)
            self.assertIn("nothing was running", r.stdout.decode())
        finally:
            subprocess.run(cmd + ["down"] + args, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120)
            shutil.rmtree(run_dir, ignore_errors=True)

    def test_up_with_opensearch_and_ferretdb(self):
        """SB_OPENSEARCH=1 and SB_FERRETDB=1: up starts both, /readyz lists
        them, .run/env names them, a worker restarted alone gets them too,
        and down stops them."""
        run_dir = tempfile.mkdtemp(prefix="sbupdown-")
        port = stackmod.free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("REDIS_URL", "KAFKA_BROKERS", "MYSQL_URL", "ES_URL", "MONGO_URI")}
        env.update(SB_OPENSEARCH="1", SB_FERRETDB="1", SB_NO_SEED="1")
        cmd = [sys.executable, os.path.join(ROOT, "scripts", "stack.py")]
        args = ["--run-dir", run_dir, "--port", str(port), "--partitions", "2"]
        st = stackmod.Stack(run_dir, use_env=False)
        try:
            r = subprocess.run(cmd + ["up"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=300)
            self.assertEqual(r.returncode, 0, r.stdout.decode())
            deps = request(port, "GET", "/readyz").json()["dependencies"]
            self.assertEqual(deps["elasticsearch"], {"ok": True, "required": False})
            self.assertEqual(deps["mongodb"], {"ok": True, "required": False})
            self.assertIn("opensearch", st.names())
            self.assertIn("ferretdb", st.names())
            with open(os.path.join(run_dir, "env")) as f:
                text = f.read()
            self.assertRegex(text, r"export ES_URL='http://127\.0\.0\.1:\d+'")
            self.assertRegex(text, r"export MONGO_URI='mongodb://127\.0\.0\.1:\d+/switchboard'")
            st.kill9("worker-notifier")
            r = subprocess.run(cmd + ["up"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=180)
            self.assertIn("restarted: worker-notifier", r.stdout.decode())

            def ready_twice():  # the first start and the restart, on MongoDB both
                with open(st.log("worker-notifier")) as f:
                    return f.read().count("store=mongodb") == 2
            wait_until("the restarted notifier on the MongoDB store", ready_twice, 30)
        finally:
            r = subprocess.run(cmd + ["down"] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=120)
            self.assertIn("opensearch", r.stdout.decode())
            self.assertEqual(st.names(), [])
            shutil.rmtree(run_dir, ignore_errors=True)

    @staticmethod
    def pings(st, port, n, note):
        st.ensure_api_key()
        acked = []
        for _ in range(n):
            r = request(port, "POST", "/ops/ping", {"note": note},
                        {"Authorization": f"Bearer {st.api_key}"})
            assert r.status == 202, r
            acked.append(r.json()["request_id"])
        return acked

    @staticmethod
    def wait_persisted(st, ids):
        if not st.mysql_url:
            st.restore()  # the addresses scripts/up wrote
        wait_pings_persisted_once(st, ids)


if __name__ == "__main__":
    unittest.main()
