"""Notification store contract (tests/contract/test_notestore_contract.c):
the same suite against the MySQL backend (a real MariaDB on loopback) and
the MongoDB backend: the FAKE MongoDB in tests/fakes/fake_mongo.py, and a
real server too when MONGO_URI names one (the compose stack sets it)."""

import os
import subprocess
import unittest

from harness import FakeServer, drop_stack, new_stack

REAL_MONGO = os.environ.get("MONGO_URI")
BIN = os.environ.get("SB_BIN_DIR") or os.path.join(os.path.dirname(__file__), "../../build/bin")


class TestNotestoreContract(unittest.TestCase):
    def run_suite(self, **env):
        full = {k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "MYSQL_URL")}
        full.update(env)
        r = subprocess.run([os.path.join(BIN, "test_notestore_contract")], env=full,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out)
        self.assertIn("PASSED", out)
        return out

    def test_mysql(self):
        st = new_stack()
        try:
            st.start_mariadb()
            st.migrate()
            out = self.run_suite(MYSQL_URL=st.mysql_url)
            self.assertIn("backend mysql", out)
        finally:
            drop_stack(st)

    def test_mongodb_fake(self):
        st = new_stack()
        fake = FakeServer("fake_mongo.py", st.run_dir)
        try:
            out = self.run_suite(MONGO_URI=f"mongodb://127.0.0.1:{fake.port}/switchboard_contract")
            self.assertIn("backend mongodb", out)
        finally:
            fake.stop()
            drop_stack(st)

    @unittest.skipUnless(REAL_MONGO, "MONGO_URI not set: no real MongoDB to run against")
    def test_mongodb_real(self):
        out = self.run_suite(MONGO_URI=REAL_MONGO)
        self.assertIn("backend mongodb", out)


if __name__ == "__main__":
    unittest.main()
