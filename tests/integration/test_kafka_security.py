"""Kafka over TLS with SASL authentication, as a managed cluster asks for:
the broker gets a SASL_SSL listener (a certificate from a CA the test makes,
SASL/PLAIN users), and every switchboard program reaches it only through
kafka_conf (SB_KAFKA_CONF). The dispatcher and every worker role work over
it; wrong credentials give a clear error and /readyz 503 within seconds,
never a hang; the password shows in no log and no --print-config."""

import os
import subprocess
import time
import unittest

from harness import StackTestCase, log_lines, read_text, request, wait_until
import stack as stackmod

PASSWORD = "sb-s3cret-pw"
WRONG = "wr0ng-pa55-quokka"  # distinctive: found in no log in any form


def make_ca_and_cert(d):
    """A CA, and a certificate for 127.0.0.1 signed by it; returns (ca
    certificate, server PEM holding key and chain)."""
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    key, csr, crt = (os.path.join(d, n) for n in ("broker.key", "broker.csr", "broker.crt"))
    ext = os.path.join(d, "san.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_crt,
        "-days", "2", "-subj", "/CN=switchboard test CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    ssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
        "-days", "2", "-extfile", ext)
    # Kafka's PEM key store: an unencrypted PKCS#8 key, then the chain.
    pk8 = subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", key], check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    pem = os.path.join(d, "broker.pem")
    with open(pem, "w") as f:
        f.write(pk8 + read_text(crt) + read_text(ca_crt))
    return ca_crt, pem


def client_conf(ca, password=PASSWORD, user="switchboard"):
    return (f"security.protocol=SASL_SSL,sasl.mechanisms=PLAIN,sasl.username={user},"
            f"sasl.password={password},ssl.ca.location={ca}")


class TestKafkaSecurity(StackTestCase):
    PARTITIONS = 2

    @classmethod
    def configure(cls, st):
        cls.ca, pem = make_ca_and_cert(st.path("data"))
        node = st.kafka_node()
        node.add_listener("SASL_SSL", "SASL_SSL")
        node.extra.update({
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_ssl.plain.sasl.jaas.config":
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'user_switchboard="{PASSWORD}";',
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": pem,
        })
        st.kafka_listener = "SASL_SSL"
        st.extra_env["SB_KAFKA_CONF"] = client_conf(cls.ca)

    def test_01_every_role_works_over_tls_and_sasl(self):
        st = self.stack
        # The clients know only the SASL_SSL listener.
        self.assertEqual(st.kafka_brokers, f"127.0.0.1:{st.kafka_node().listeners['SASL_SSL'][0]}")
        # Every role's consumer joined its group over it.
        for role in stackmod.ROLES:
            wait_until(f"{role}'s partitions", lambda r=role: log_lines(st, f"worker-{role}", "partitions assigned"), 30)
        # A chat and a message go dispatcher -> Kafka -> persister -> MySQL
        # (setUpClass's ping did too), a phonebook reservation through the
        # phonebook role, an SMS through the notifier.
        token = self.create_app("over tls")
        self.assertEqual(self.http("POST", f"/api/v1/applications/{token}/chats").status, 201)
        r = self.http("POST", f"/api/v1/applications/{token}/chats/1/messages", {"body": "sealed"})
        self.assertEqual(r.status, 201, r)
        wait_until("the message persisted", lambda: self.http(
            "GET", f"/api/v1/applications/{token}/chats/1/messages/1").status == 200, 30)
        r = self.http("POST", "/v1/messages",
                      {"channel": "push", "to": "device-1", "title": "Hi", "payload": "over tls"})
        self.assertEqual(r.status, 202, r)
        nid = r.json()["id"]
        wait_until("the push sent", lambda: self.http("GET", f"/v1/messages/{nid}").json().get("status") == "sent", 30)
        # The password is in no log (librdkafka, ours, the broker's).
        for name in os.listdir(st.path("logs")):
            self.assertNotIn(PASSWORD, read_text(os.path.join(st.path("logs"), name)), name)

    def test_02_wrong_password_is_a_clear_error_and_readyz_503(self):
        st = self.stack
        port = stackmod.free_port()
        env = st.env()
        env["SB_KAFKA_CONF"] = client_conf(self.ca, password=WRONG)
        proc = st.spawn("dispatcher-badauth", [st.binary("switchboard-dispatcher"), "--listen",
                                               f"127.0.0.1:{port}"], env=env)
        self.addCleanup(st.stop, "dispatcher-badauth")
        wait_until("its /healthz", lambda: self.get(port, "/healthz") == 200, 20)
        t0 = time.monotonic()
        r = wait_until("/readyz 503 naming kafka", lambda: (lambda x: x if x.status == 503 else None)(
            request(port, "GET", "/readyz")), 20)
        kafka = r.json()["dependencies"]["kafka"]
        self.assertFalse(kafka["ok"])
        self.assertTrue(kafka["error"])
        # A job cannot be enqueued: 503 within request_timeout_ms, never a hang.
        t0 = time.monotonic()
        r = request(port, "POST", "/ops/ping", {"note": "bad auth"},
                    {"Authorization": f"Bearer {st.api_key}"}, timeout=30)
        self.assertEqual(r.status, 503, r)
        self.assertLess(time.monotonic() - t0, 8)
        self.assertTrue(proc.poll() is None)
        # The log says why, in librdkafka's words, without the password.
        text = read_text(st.log("dispatcher-badauth"))
        self.assertRegex(text, r"(?i)authentication failed|SASL authentication error")
        self.assertNotIn(WRONG, text)

    def test_03_a_worker_with_a_wrong_password_says_so_and_keeps_running(self):
        st = self.stack
        env = st.env()
        env["SB_KAFKA_CONF"] = client_conf(self.ca, password=WRONG)
        name = "worker-badauth"
        st.spawn(name, [st.binary("switchboard-worker"), "--role", "persister"], env=env)
        self.addCleanup(st.stop, name)
        wait_until("an authentication error in its log",
                   lambda: log_lines(st, name, "uthentication failed") or log_lines(st, name, "SASL authentication error"), 30)
        self.assertTrue(st.alive(*st.pid_of(name)))
        self.assertEqual(st.stop(name, timeout=30), 0, "it stops cleanly on SIGTERM")
        self.assertNotIn(WRONG, read_text(st.log(name)))

    def test_04_topics_command_with_a_wrong_password_fails_in_bounded_time(self):
        st = self.stack
        env = st.env()
        env["SB_KAFKA_CONF"] = client_conf(self.ca, password=WRONG)
        t0 = time.monotonic()
        r = subprocess.run([st.binary("switchboard-migrate"), "topics"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        self.assertEqual(r.returncode, 1, r.stdout.decode())
        self.assertIn("topics failed", r.stdout.decode())
        # Said at once, in words a person acts on (not "transport failure"
        # when the 30 s wait runs out).
        self.assertRegex(r.stdout.decode(), r'topics failed.*err="metadata from .*Authentication failed')
        self.assertLess(time.monotonic() - t0, 15)
        self.assertNotIn(WRONG, r.stdout.decode())
        # The right password: every topic exists already.
        r = subprocess.run([st.binary("switchboard-migrate"), "topics", "--partitions", "2"], env=st.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout.decode())
        self.assertIn("exists  chat.commands partitions=2", r.stdout.decode())
        # --print-config masks the password.
        r = subprocess.run([st.binary("switchboard-dispatcher"), "--print-config"], env=st.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertIn("sasl.password=***", r.stdout.decode())
        self.assertNotIn(PASSWORD, r.stdout.decode())

    @staticmethod
    def get(port, path):
        try:
            return request(port, "GET", path, timeout=5).status
        except OSError:
            return 0


if __name__ == "__main__":
    unittest.main()
