"""The spec, checked by a machine (issue 21): schemathesis (PyPI, put in
.cache/venv by scripts/setup) sends generated requests, valid and
invalid, to every operation of schema/openapi.yaml on a running stack,
with the admin key and a real application token, and checks that no
answer is a 5xx and every status, header and body is the one the spec
gives. Bounded: a fixed number of examples per operation, a fixed seed,
and a time limit."""

import os
import subprocess
import unittest

from harness import ROOT, StackTestCase

SCHEMATHESIS = os.path.join(ROOT, ".cache", "venv", "bin", "schemathesis")
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    # negative_data_rejection is left out: schemathesis 3.39 reports
    # requests whose "invalid" part it did not send (a POST /ops/ping with
    # no body, which the spec allows). Its invalid requests are still sent
    # (--data-generation-method all), and their answers checked above.
])
EXAMPLES = int(os.environ.get("SB_SCHEMATHESIS_EXAMPLES", "30"))


class TestSchemathesis(StackTestCase):
    ROLES = ("persister",)

    @classmethod
    def configure(cls, stack):
        # Generated requests come fast: the admin key's rate limit would
        # answer most of them 429 (which the spec allows) and test little.
        stack.extra_env["SB_RATE_LIMIT_RPS"] = "0"

    def test_the_api_answers_as_its_spec_says(self):
        self.assertTrue(os.path.exists(SCHEMATHESIS), "run scripts/setup: it installs schemathesis")
        token = self.create_app("schemathesis")
        self.assertEqual(self.http("POST", f"/api/v1/applications/{token}/chats").status, 201)
        r = self.http("POST", f"/api/v1/applications/{token}/chats/1/messages", {"body": "hello"})
        self.assertEqual(r.status, 201, r)
        argv = [SCHEMATHESIS, "run", os.path.join(ROOT, "schema", "openapi.yaml"),
                "--base-url", f"http://127.0.0.1:{self.port}",
                "-H", f"Authorization: Bearer {self.stack.api_key}",
                "--set-path", f"token={token}",
                "--checks", CHECKS,
                "--data-generation-method", "all",
                "--hypothesis-max-examples", str(EXAMPLES),
                "--hypothesis-seed", "20261204",
                "--hypothesis-phases", "explicit,generate",
                "--generation-allow-x00", "false",
                "--request-timeout", "10000",
                "--workers", "1",
                "--no-color"]
        env = dict(os.environ, SCHEMATHESIS_HOOKS="", HYPOTHESIS_STORAGE_DIRECTORY=self.stack.path("hypothesis"))
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900, env=env,
                           cwd=self.stack.run_dir)
        out = r.stdout.decode(errors="replace")
        tail = "\n".join(out.splitlines()[-60:])
        print("\n" + tail)
        self.assertEqual(r.returncode, 0, tail)


if __name__ == "__main__":
    unittest.main()
