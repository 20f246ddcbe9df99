"""Notification store contract (tests/contract/test_notestore_contract.c):
the same suite against the MySQL backend (a real MariaDB on loopback) and
the MongoDB backend: FerretDB (MongoDB's protocol on SQLite, started
here), or the server MONGO_URI names (the compose stack's MongoDB)."""

import os
import subprocess
import sys
import unittest

from harness import drop_stack, new_stack
import stackparts  # noqa: E402 (harness puts scripts/ on the path)

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

    def test_mongodb(self):
        st = new_stack()
        try:
            if REAL_MONGO:
                uri, server = REAL_MONGO, "the server MONGO_URI names"
            else:
                st.start_ferretdb()
                uri, server = st.mongo_uri + "_contract", "FerretDB " + stackparts.FERRETDB_VERSION
            out = self.run_suite(MONGO_URI=uri)
            self.assertIn("backend mongodb", out)
            print(f"\n  notestore contract passed against {server}", file=sys.stderr)
        finally:
            drop_stack(st)


if __name__ == "__main__":
    unittest.main()
