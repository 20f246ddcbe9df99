"""docker-compose.yml and Dockerfile, checked without a Docker engine (these
machines have none): Debian's docker-compose validates the file, and the
shape the issue asks for is asserted from its resolved form."""

import os
import re
import subprocess
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # sha256("test")


def compose(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SB_")}
    e.update(env or {})
    return subprocess.run(["docker-compose", "-f", os.path.join(ROOT, "docker-compose.yml"), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=e, cwd=ROOT, timeout=60)


class TestCompose(unittest.TestCase):
    def test_config_is_valid(self):
        r = compose("config", "-q", env={"SB_API_KEY_HASHES": HASH})
        self.assertEqual(r.returncode, 0, r.stdout.decode())

    def test_admin_key_digest_is_required(self):
        r = compose("config", "-q")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("SB_API_KEY_HASHES", r.stdout.decode())

    def test_services_and_scaling(self):
        r = compose("--profile", "test", "config", "--services", env={"SB_API_KEY_HASHES": HASH})
        services = set(r.stdout.decode().split())
        self.assertTrue({"kafka", "topics", "redis", "mysql", "mongo", "elasticsearch", "migrate",
                         "dispatcher", "persister", "indexer", "notifier", "phonebook", "counts",
                         "tests"} <= services, services)
        resolved = compose("config", env={"SB_API_KEY_HASHES": HASH}).stdout.decode()
        # A role scales (--scale persister=4) only without a fixed name or host port.
        self.assertNotIn("container_name", resolved)
        blocks = dict(re.findall(r"^  ([a-z-]+):\n((?:    .*\n|\n)*)", resolved, re.M))
        for role in ("persister", "indexer", "notifier", "phonebook", "counts"):
            if role != "counts":
                self.assertNotIn("ports:", blocks[role], role)
                self.assertIn(f"- {role}", blocks[role])
            # Its status endpoint is on, and the healthcheck asks that port.
            self.assertIn("SB_STATUS_LISTEN: 0.0.0.0:9100", blocks[role], role)
            self.assertIn("healthcheck:", blocks[role], role)
            self.assertIn("/dev/tcp/127.0.0.1/9100", blocks[role], role)
        for svc in ("kafka", "redis", "mysql", "mongo", "elasticsearch", "dispatcher"):
            self.assertIn("healthcheck:", blocks[svc], svc)
        self.assertIn("condition: service_healthy", blocks["dispatcher"])
        self.assertIn("--appendonly", blocks["redis"])
        self.assertIn("KAFKA_PROCESS_ROLES: broker,controller", blocks["kafka"])
        self.assertIn("image: apache/kafka:3.9", blocks["kafka"])
        # Topics are made by the project's own command, not a shell loop.
        self.assertIn("switchboard-migrate", blocks["topics"])
        self.assertNotIn("kafka-topics.sh", resolved)
        self.assertIn("image: mysql:8.4", blocks["mysql"])
        self.assertIn("--every", blocks["counts"])
        for vol in ("kafka-data", "redis-data", "mysql-data", "mongo-data", "es-data"):
            self.assertRegex(resolved, rf"\n  {vol}:")

    def test_dockerfile(self):
        with open(os.path.join(ROOT, "Dockerfile")) as f:
            text = f.read()
        stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.M)
        self.assertEqual([s[1] for s in stages], ["build", "test", "runtime"])
        self.assertTrue(stages[0][0].startswith("debian:12"))
        self.assertEqual(stages[-1][0], "debian:12-slim")
        runtime = text[text.index("AS runtime"):]
        self.assertIn("USER switchboard", runtime)
        self.assertNotRegex(runtime, r"-dev\b|build-essential|cmake")
        # Every COPY from the build context names something that exists
        # (a folder removed from the tree broke the image's build once),
        # and every folder the top-level CMakeLists.txt builds is copied.
        for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
            self.assertTrue(os.path.exists(os.path.join(ROOT, src)), f"Dockerfile copies {src}, which is gone")
        with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
            subdirs = re.findall(r"^add_subdirectory\((\w+)\)", f.read(), re.M)
        copied = set(re.findall(r"^COPY (\w+) \1$", text, re.M))
        self.assertEqual(set(subdirs) - copied - {"fuzz"}, set())


if __name__ == "__main__":
    unittest.main()
