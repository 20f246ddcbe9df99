"""scripts/up and scripts/down (through scripts/stack.py, which both call):
up brings a ready stack, a second up is harmless, down leaves no process of
ours behind and a second down is harmless."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import ROOT, request
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


if __name__ == "__main__":
    unittest.main()
