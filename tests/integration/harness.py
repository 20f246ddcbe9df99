"""Integration test harness: a private switchboard stack per test class.

Real Redis, MariaDB and Apache Kafka (KRaft: one process, or a cluster of
three for KAFKA_NODES = 3) on free loopback ports, data in a temporary directory, switchboard
binaries from SB_BIN_DIR. The stack is always torn down: in tearDownClass,
and at interpreter exit or SIGTERM if a test run is cut short. Variables
like REDIS_URL in the caller's environment are deliberately ignored.
"""

import atexit
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import stack as stackmod  # noqa: E402

_live_stacks = []
_live_fakes = []


def _teardown_all(*_):
    while _live_fakes:
        _live_fakes[-1].stop()
    while _live_stacks:
        st = _live_stacks.pop()
        try:
            st.down()
        except Exception as e:  # keep tearing down the rest
            print(f"teardown error: {e}", file=sys.stderr)


atexit.register(_teardown_all)
signal.signal(signal.SIGTERM, lambda *a: (_teardown_all(), sys.exit(143)))


def new_stack(partitions=4, log_level="info", kafka_nodes=1):
    run_dir = tempfile.mkdtemp(prefix="sbtest-")
    st = stackmod.Stack(run_dir, bin_dir=os.environ.get("SB_BIN_DIR"),
                        schema_dir=os.environ.get("SB_SCHEMA_DIR"),
                        partitions=partitions, log_level=log_level, use_env=False,
                        kafka_nodes=kafka_nodes)
    _live_stacks.append(st)
    return st


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_reports(st):
    """Sanitizer reports in the stack's logs (an ASan/UBSan build writes
    them to stderr, which the logs capture): (log, first line) pairs."""
    found = []
    logs = st.path("logs")
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else ():
        if name.split(".")[0] in ("ferretdb", "opensearch", "hydra", "jaeger"):
            continue  # not ours (a Go panic there reads "runtime error:" too)
        with open(os.path.join(logs, name), errors="replace") as f:
            for line in f:
                if any(m in line for m in SANITIZER_MARKS):
                    found.append((name, line.strip()))
                    break
    return found


def sanitized(st):
    """True when the stack's binaries are an ASan build (scripts/test with
    SB_SANITIZE=1): its allocator keeps freed memory in quarantine, so RSS
    figures say nothing about the program's own."""
    with open(st.binary("switchboard-dispatcher"), "rb") as f:
        return b"__asan_init" in f.read()


def drop_stack(st, keep=False):
    """Stops the stack and returns its sanitizer reports (the logs are
    removed unless keep, or unless there were reports)."""
    if st in _live_stacks:
        _live_stacks.remove(st)
    st.down()
    reports = sanitizer_reports(st)
    if reports:
        print(f"sanitizer reports, logs kept in {st.run_dir}:", file=sys.stderr)
        for name, line in reports:
            print(f"  {name}: {line}", file=sys.stderr)
    elif not keep:
        shutil.rmtree(st.run_dir, ignore_errors=True)
    return reports


class HTTPResult:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def request(port, method, path, body=None, headers=None, timeout=30):
    """One HTTP request on a fresh connection. body: dict/list (sent as
    JSON), bytes/str (sent as is) or None."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return HTTPResult(r.status, dict(r.getheaders()), r.read())
    finally:
        conn.close()


def metric_samples(text, name):
    """{labels: value} of one metric family in Prometheus text ("" for a
    sample without labels), e.g. {'{role="persister"}': 12.0}."""
    out = {}
    for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? (-?[0-9.e+]+)$", text, re.M):
        out[m.group(1) or ""] = float(m.group(2))
    return out


def read_response(s, buf):
    """One response from socket s (bytes already read are in buf[0]):
    (status, headers dict with lower-case names, body)."""
    while b"\r\n\r\n" not in buf[0]:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {buf[0][:200]!r}")
        buf[0] += chunk
    head, _, rest = buf[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {k.strip().lower().decode(): v.strip().decode()
               for k, _, v in (line.partition(b":") for line in lines[1:])}
    n = int(headers.get("content-length", "0")) if status >= 200 else 0
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("connection closed inside a body")
        rest += chunk
    buf[0] = rest[n:]
    return status, headers, rest[:n]


def read_text(path):
    """The whole file, closed again (a bare open().read() leaves that to the GC)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def readme_text():
    return read_text(os.path.join(ROOT, "README.md"))


def readme_block(heading):
    """The first ```sh block under a README heading: tests run it verbatim."""
    section = readme_text()
    section = section[section.index(heading):]
    block = section[section.index("```sh\n") + 6:]
    return block[:block.index("```")]


def wait_until(what, fn, timeout=30, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def kcat(st, *args, data=None, timeout=30):
    r = subprocess.run([stackmod.find_tool("kcat", "kafkacat"), "-b", st.kafka_brokers, *args],
                       input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"kcat {args} failed: {r.stderr.decode(errors='replace')}")
    return r.stdout


def kcat_produce(st, topic, key, value, copies=1):
    """Produces a message as another program would (value: bytes, one line);
    copies > 1 sends it that many times in one produce request, so the
    copies sit side by side in one message set on the broker."""
    kcat(st, "-P", "-t", topic, "-k", key, data=(value + b"\n") * copies)


def kcat_dead_letter(st, m, group, reason):
    """Dead-letters m (a kcat_consume_all message of topic) as a worker of
    group would have: to <topic>.dlq, with its headers."""
    kcat(st, "-P", "-t", m["topic"] + ".dlq", "-k", m["key"], "-H", f"x-dlq-reason={reason}",
         "-H", f"x-original-topic={m['topic']}", "-H", f"x-original-partition={m['partition']}",
         "-H", f"x-original-offset={m['offset']}", "-H", f"x-failed-at={int(time.time() * 1000)}",
         "-H", f"x-consumer-group={group}", data=m["payload"].encode() + b"\n")


def kcat_consume_all(st, topic):
    """Every message on topic so far, as dicts with key, payload, headers."""
    out = kcat(st, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q")
    msgs = []
    for line in out.decode().splitlines():
        if line.strip():
            m = json.loads(line)
            hdrs = m.get("headers") or []
            m["headers"] = dict(zip(hdrs[0::2], hdrs[1::2]))
            msgs.append(m)
    return msgs


class FakeServer:
    """A fake from tests/fakes/ (or a development stand-in from
    scripts/dev/) as a child process on a free loopback port."""

    def __init__(self, script, run_dir, folder="tests/fakes", python=None, args=(), port=None):
        self.port = port or stackmod.free_port()  # port: start again where a stopped one was
        self.log = open(os.path.join(run_dir, os.path.basename(script) + ".log"), "w")
        self.proc = subprocess.Popen([python or sys.executable, os.path.join(ROOT, folder, script),
                                      str(self.port), *args], stdout=subprocess.PIPE, stderr=self.log)
        # Torn down at exit too, even when the test class never gets to its
        # tearDownClass (a failing setUpClass).
        _live_fakes.append(self)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError(f"{script} did not start")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self in _live_fakes:
            _live_fakes.remove(self)
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc.stdout.close()
        self.log.close()


def cpu_seconds(pid):
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_lines(st, name, needle):
    """The lines of a process's log that contain needle, oldest first. A test
    waiting for a new such line counts them first, so that an earlier test's
    line cannot satisfy the wait."""
    return [line for line in read_text(st.log(name)).splitlines() if needle in line]


def wait_worker_assigned(st, name, pid, timeout=60):
    """Waits until the worker process pid has been given its partitions.
    Its log may hold an earlier process's lines (a restart appends), and
    that one may log "partitions assigned" while it stops (a rebalance when
    another member leaves): only lines after pid's "worker started" count."""
    def assigned():
        lines = read_text(st.log(name)).splitlines()
        start = next((i for i, line in enumerate(lines)
                      if "worker started" in line and re.search(rf"\bpid={pid}\b", line)), None)
        return start is not None and any("partitions assigned" in line for line in lines[start:])
    wait_until(f"{name} (pid {pid}) assigned partitions", assigned, timeout)


def wait_pings_persisted_once(st, ids, timeout=60):
    """Waits until every ping of ids is a row of pipeline_pings, once."""
    in_list = ",".join(f"'{i}'" for i in ids)
    wait_until(f"{len(ids)} pings persisted once each", lambda: st.sql(
        f"SELECT COUNT(*), COUNT(DISTINCT request_id) FROM pipeline_pings WHERE request_id IN ({in_list})")
        == [[str(len(ids)), str(len(ids))]], timeout, 0.5)


def log_tail(st, name, lines=30):
    try:
        with open(st.log(name), errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class StackTestCase(unittest.TestCase):
    """Starts a full stack once for the class; subclasses may override
    ROLES, PARTITIONS and KAFKA_NODES."""

    ROLES = stackmod.ROLES
    PARTITIONS = 4
    KAFKA_NODES = 1

    @classmethod
    def configure(cls, stack):
        """Hook: adjust the stack (say, es_url) before it starts."""

    @classmethod
    def setUpClass(cls):
        cls.stack = new_stack(partitions=cls.PARTITIONS, kafka_nodes=cls.KAFKA_NODES)
        try:
            cls.configure(cls.stack)
            cls.stack.up(roles=cls.ROLES)
        except Exception:
            drop_stack(cls.stack, keep=True)
            raise
        cls.port = cls.stack.api_port

    @classmethod
    def tearDownClass(cls):
        reports = drop_stack(cls.stack)
        if reports:
            raise AssertionError(f"sanitizer reports in {cls.stack.run_dir}: {reports}")

    def run(self, result=None):
        # On failure, show the logs of every process of the stack.
        before = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        if result and len(result.failures) + len(result.errors) > before:
            for name in sorted(os.listdir(self.stack.path("logs"))):
                print(f"\n--- {name} (tail) ---\n{log_tail(self.stack, name[:-4])}", file=sys.stderr)
        return out

    @classmethod
    def http(cls, method, path, body=None, headers=None, timeout=30):
        """A request to this class's stack (setUpClass may use it too)."""
        return request(cls.port, method, path, body, cls.auth(headers), timeout)

    @classmethod
    def auth(cls, headers=None):
        """headers plus this stack's admin key, unless they carry their own
        Authorization (None there: send none)."""
        h = {"Authorization": f"Bearer {cls.stack.api_key}"}
        h.update(headers or {})
        return {k: v for k, v in h.items() if v is not None}

    def redis_cli(self, *args):
        r = subprocess.run([stackmod.find_tool("redis-cli"), "-p", str(self.stack.redis_port), *args],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        return r.stdout.decode().strip()

    def run_counts(self, *args):
        """Runs switchboard-counts once; returns (exit status, output)."""
        r = subprocess.run([self.stack.binary("switchboard-counts"), *args], env=self.stack.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        return r.returncode, r.stdout.decode()

    def create_app(self, name="app"):
        r = self.http("POST", "/api/v1/applications", {"name": name})
        self.assertEqual(r.status, 201, r)
        return r.json()["token"]

    def check_optional_dependency(self, dep, stop, start):
        """dep is listed by /readyz as not required. Stopped (stop()), it is
        reported down in /readyz and /metrics while the dispatcher stays
        ready and takes message creates. Returns start()'s result once
        /readyz reports dep up again."""
        def dep_state():
            r = self.http("GET", "/readyz")
            return r, r.json()["dependencies"][dep]
        r, state = wait_until(f"{dep} up", lambda: (lambda rs: rs if rs[1]["ok"] else None)(dep_state()), 15)
        self.assertEqual((r.status, state), (200, {"ok": True, "required": False}))
        stop()
        try:
            r, state = wait_until(f"/readyz reports {dep} down",
                                  lambda: (lambda rs: rs if not rs[1]["ok"] else None)(dep_state()), 15)
            self.assertEqual((r.status, r.json()["status"]), (200, "ready"))
            self.assertFalse(state["required"])
            self.assertTrue(state["error"])
            text = self.http("GET", "/metrics").body.decode()
            self.assertIn(f'switchboard_dependency_up{{dependency="{dep}"}} 0', text)
            token = self.create_app(f"while {dep} is down")
            self.assertEqual(self.http("POST", f"/api/v1/applications/{token}/chats").status, 201)
            r = self.http("POST", f"/api/v1/applications/{token}/chats/1/messages", {"body": "still here"})
            self.assertEqual(r.status, 201, r)
        finally:
            started = start()
        wait_until(f"/readyz reports {dep} up again", lambda: dep_state()[1]["ok"], 30)
        return started

    def restart_fake(self, fake, script):
        """(stop, start) for check_optional_dependency: a fake, started
        again on its port."""
        return fake.stop, lambda: FakeServer(script, os.path.dirname(fake.log.name), port=fake.port)

    def parallel(self, calls, threads=8):
        """Runs each (method, path, body) concurrently; returns results in order."""
        results = [None] * len(calls)
        lock = threading.Lock()
        todo = list(enumerate(calls))

        def run():
            while True:
                with lock:
                    if not todo:
                        return
                    i, (method, path, body) = todo.pop()
                try:
                    results[i] = self.http(method, path, body)
                except OSError as e:
                    results[i] = e
        ts = [threading.Thread(target=run) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return results

    def ping_count(self, where="1=1"):
        return int(self.stack.sql(f"SELECT COUNT(*) FROM pipeline_pings WHERE {where}")[0][0])

    def send_pings(self, n, threads=8, note="load"):
        """Sends n pings from several threads; returns (acked ids, other statuses)."""
        acked, others, lock = [], [], threading.Lock()

        def run(k):
            for _ in range(k):
                try:
                    r = self.http("POST", "/ops/ping", {"note": note}, timeout=30)
                except OSError as e:
                    with lock:
                        others.append(repr(e))
                    continue
                with lock:
                    if r.status == 202:
                        acked.append(r.json()["request_id"])
                    else:
                        others.append(r.status)

        per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
        ts = [threading.Thread(target=run, args=(k,)) for k in per]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return acked, others
