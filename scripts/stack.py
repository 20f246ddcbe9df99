#!/usr/bin/env python3
"""Start and stop a switchboard stack on loopback: Redis, MariaDB, Apache
Kafka (KRaft), the dispatcher and workers.

One implementation serves two callers:
  * scripts/up and scripts/down (a long-lived stack under .run/), and
  * the integration tests (a private stack per test class, on free ports,
    in a temporary directory, always torn down).

Every process is started by us, recorded by PID (and checked by its
command line before it is signalled), and stopped by that PID only.
REDIS_URL, KAFKA_BROKERS and MYSQL_URL, when set, name external services
that are used instead of starting local ones.

Standard library only: it runs on a fresh Debian 12 with python3.
"""

import argparse
import hashlib
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLES = ("persister", "indexer", "notifier", "phonebook")
DB_NAME = "switchboard"
DB_USER = "switchboard"
DB_PASS = "switchboard"

# Also used by the tests and scripts/bench as stack.free_port and so on.
from stackparts import (KafkaNode, ferretdb_binary, find_tool, free_port, http_get,  # noqa: E402
                        ferretdb_argv, hydra_argv_env, hydra_binary, jaeger_argv, jaeger_binary, kafka_cluster_id, kafka_libs, opensearch_argv, opensearch_home,
                        port_open,
                        wait_for)


class Stack:
    """A stack rooted at run_dir (pids/, logs/, data/)."""

    DEFAULT_PARTITIONS = 8  # what schema/topics gives every topic

    def __init__(self, run_dir, bin_dir=None, schema_dir=None, partitions=None,
                 api_port=None, log_level="info", use_env=True, kafka_nodes=1, kafka_fast_start=None,
                 kafka_heap_mb=None):
        self.run_dir = os.path.abspath(run_dir)
        self.bin_dir = bin_dir or os.environ.get("SB_BIN_DIR") or os.path.join(ROOT, "build", "bin")
        self.schema_dir = schema_dir or os.environ.get("SB_SCHEMA_DIR") or os.path.join(ROOT, "schema")
        self.partitions = partitions
        self.log_level = log_level
        self.api_port = api_port or free_port()
        self.procs = {}  # name -> Popen (only for processes started by this object)
        self.status_ports = {}  # worker name -> port of its /healthz and /metrics
        for d in ("pids", "logs", "data"):
            os.makedirs(os.path.join(self.run_dir, d), exist_ok=True)
        env = os.environ if use_env else {}
        self.redis_url = env.get("REDIS_URL")
        self.kafka_brokers = env.get("KAFKA_BROKERS")
        self.mysql_url = env.get("MYSQL_URL")
        self.es_url = env.get("ES_URL")  # search in Elasticsearch when set
        self.es_index = env.get("SB_ES_INDEX")
        self.mongo_uri = env.get("MONGO_URI")  # notifications in MongoDB when set
        self.extra_env = {}  # more settings for every switchboard process
        self.role_flags = {}  # role -> more flags for that role's workers
        self.external = {
            "redis": bool(self.redis_url),
            "kafka": bool(self.kafka_brokers),
            "mysql": bool(self.mysql_url),
        }
        self.redis_port = None
        self.mysql_port = None
        self.use_env = use_env
        self.kafka_nodes_wanted = kafka_nodes
        # Tests (use_env=False) start many brokers, each doing little: a
        # smaller heap and a JVM tuned to start fast. The local stack and
        # the benchmark run it as a deployment would.
        self.kafka_heap_mb = kafka_heap_mb or (int(os.environ.get("SB_KAFKA_HEAP_MB", "512")) if use_env else 384)
        self.kafka_fast_start = (not use_env) if kafka_fast_start is None else kafka_fast_start
        self.kafka_nodes = {}  # name -> KafkaNode
        self.kafka_listener = None  # a listener added to the nodes that the clients use instead
        self.kafka_netns = False  # the broker in a network namespace of its own (root)
        self.kafka_link_if = None

    # -- paths ------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.run_dir, *parts)

    def log(self, name):
        return self.path("logs", name + ".log")

    def binary(self, name):
        p = os.path.join(self.bin_dir, name)
        if not os.access(p, os.X_OK):
            raise RuntimeError(f"{p} is missing: build first (cmake --build build)")
        return p

    @property
    def api_url(self):
        return f"http://127.0.0.1:{self.api_port}"

    def env(self):
        e = dict(os.environ)
        # libmongoc (which starts itself where it is linked: the dispatcher
        # and the worker, through store/, and no other binary) keeps per-process
        # counters in /dev/shm/mongoc-<pid>; a killed process leaves its file
        # behind, and a later process given the same pid then prints a
        # warning on stderr. Nothing here reads those counters.
        e.setdefault("MONGOC_DISABLE_SHM", "1")
        for k, v in (("REDIS_URL", self.redis_url), ("KAFKA_BROKERS", self.kafka_brokers),
                     ("MYSQL_URL", self.mysql_url), ("ES_URL", self.es_url),
                     ("MONGO_URI", self.mongo_uri),
                     ("SB_ES_INDEX", self.es_index),
                     ("SB_SCHEMA_DIR", self.schema_dir),
                     ("SB_LOG_LEVEL", self.log_level)):
            if v:
                e[k] = v
        e.update(self.extra_env)
        return e

    # -- process bookkeeping ---------------------------------------------
    def spawn(self, name, argv, env=None, nofile=None, exe=None):
        """Starts argv[0] in the background; nofile: its open file limit
        (soft, hard), for tests of running out of descriptors; exe: the
        program the process becomes, when argv[0] execs another."""
        logf = open(self.log(name), "ab")
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)) if nofile else None
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env or self.env(),
                                cwd=self.run_dir, start_new_session=True, preexec_fn=limit)
        logf.close()
        self.procs[name] = proc
        with open(self.path("pids", name + ".pid"), "w") as f:
            json.dump({"pid": proc.pid, "exe": exe or argv[0]}, f)
        return proc

    def pid_of(self, name):
        try:
            with open(self.path("pids", name + ".pid")) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            return None, None
        return rec.get("pid"), rec.get("exe")

    @staticmethod
    def alive(pid, exe):
        """True if pid runs and is still the program we started (not a
        recycled PID, not a zombie)."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return False
            running = os.readlink(f"/proc/{pid}/exe")
        except (OSError, IndexError):
            return False
        # A binary rebuilt while the process runs reads "<path> (deleted)".
        if running.endswith(" (deleted)"):
            running = running[:-len(" (deleted)")]
        running = os.path.realpath(running)
        # redis-server rewrites its argv, so compare the executable itself.
        return running == os.path.realpath(exe) or \
            os.path.basename(running) == os.path.basename(exe)

    def stop(self, name, sig=signal.SIGTERM, timeout=20):
        """Signals the process and waits for it; returns its exit status
        when this object started it (else None)."""
        pid, exe = self.pid_of(name)
        if pid is None:
            return None
        if self.alive(pid, exe):
            try:
                os.kill(pid, sig)
                os.kill(pid, signal.SIGCONT)  # a paused (SIGSTOP) process acts on it too
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while self.alive(pid, exe) and time.monotonic() < deadline:
                self.reap(name)
                time.sleep(0.05)
            if self.alive(pid, exe):
                os.kill(pid, signal.SIGKILL)
                while self.alive(pid, exe):
                    self.reap(name)
                    time.sleep(0.05)
        self.reap(name)
        try:
            os.unlink(self.path("pids", name + ".pid"))
        except OSError:
            pass
        proc = self.procs.pop(name, None)
        return proc.wait() if proc is not None else None

    def reap(self, name):
        p = self.procs.get(name)
        if p is not None:
            p.poll()

    def kill9(self, name):
        """Hard kill (fault tests): no drain, no cleanup by the process."""
        pid, exe = self.pid_of(name)
        if pid and self.alive(pid, exe):
            os.kill(pid, signal.SIGKILL)
            while self.alive(pid, exe):
                self.reap(name)
                time.sleep(0.02)
        self.stop(name)

    def names(self):
        d = self.path("pids")
        return sorted(f[:-4] for f in os.listdir(d) if f.endswith(".pid"))

    # -- services -----------------------------------------------------------
    def start_redis(self):
        if self.external["redis"]:
            return
        self.redis_port = self.redis_port or free_port()
        data = self.path("data", "redis")
        os.makedirs(data, exist_ok=True)
        argv = [find_tool("redis-server"), "--port", str(self.redis_port),
                "--bind", "127.0.0.1", "--dir", data, "--appendonly", "yes",
                "--appendfsync", "everysec", "--save", "", "--daemonize", "no"]
        proc = self.spawn("redis", argv)
        wait_for("redis", lambda: port_open(self.redis_port), 20, proc, self.log("redis"))
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"

    def mysql_socket(self):
        return self.path("data", "mysql.sock")

    def start_mariadb(self):
        if self.external["mysql"]:
            return
        self.mysql_port = self.mysql_port or free_port()
        datadir = self.path("data", "mysql")
        # A private tmpdir: a starting mariadbd deletes the '#sql*' files it
        # finds in its tmpdir, which breaks other instances sharing /tmp.
        tmpdir = self.path("data", "mysql-tmp")
        os.makedirs(tmpdir, exist_ok=True)
        user = ["--user=root"] if os.geteuid() == 0 else []
        if not os.path.isdir(os.path.join(datadir, "mysql")):
            os.makedirs(datadir, exist_ok=True)
            r = subprocess.run(
                [find_tool("mariadb-install-db", "mysql_install_db"), "--no-defaults",
                 f"--datadir={datadir}", f"--tmpdir={tmpdir}",
                 "--auth-root-authentication-method=normal", "--skip-test-db"] + user,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                raise RuntimeError("mariadb-install-db failed:\n" + r.stdout.decode(errors="replace"))
        argv = [find_tool("mariadbd", "mysqld"), "--no-defaults", f"--datadir={datadir}",
                f"--tmpdir={tmpdir}",
                f"--socket={self.mysql_socket()}", f"--port={self.mysql_port}",
                "--bind-address=127.0.0.1", f"--pid-file={self.path('data', 'mysql.pid')}",
                "--skip-log-bin", "--innodb-buffer-pool-size=256M",
                "--max-connections=500", "--skip-name-resolve"] + user
        proc = self.spawn("mariadb", argv)
        wait_for("mariadb", lambda: os.path.exists(self.mysql_socket()) and port_open(self.mysql_port),
                 60, proc, self.log("mariadb"))
        self.mysql_root(
            f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASS}';"
            f"CREATE USER IF NOT EXISTS '{DB_USER}'@'localhost' IDENTIFIED BY '{DB_PASS}';"
            f"GRANT ALL ON `{DB_NAME}`.* TO '{DB_USER}'@'127.0.0.1';"
            f"GRANT ALL ON `{DB_NAME}`.* TO '{DB_USER}'@'localhost';")
        self.mysql_url = f"mysql://{DB_USER}:{DB_PASS}@127.0.0.1:{self.mysql_port}/{DB_NAME}"

    def mysql_root(self, sql):
        r = subprocess.run([find_tool("mariadb", "mysql"), "--no-defaults", "-S", self.mysql_socket(),
                            "-uroot", "-e", sql], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise RuntimeError("mariadb client failed: " + r.stdout.decode(errors="replace"))

    def mysql_client(self):
        """argv of the mariadb client as the application user, tab-separated
        rows without headers."""
        u = self.mysql_url[len("mysql://"):]
        cred, rest = u.rsplit("@", 1)
        user, pw = cred.split(":", 1)
        hostport, db = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        return [find_tool("mariadb", "mysql"), "--no-defaults", "-h", host, "-P", port,
                "-u", user, f"-p{pw}", "-D", db, "-N", "-B"]

    def sql(self, query):
        """Runs a query as the application user; returns rows as lists."""
        r = subprocess.run(self.mysql_client() + ["-e", query], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError("query failed: " + r.stderr.decode(errors="replace"))
        out = r.stdout.decode()
        return [line.split("\t") for line in out.splitlines()]

    # -- Kafka ------------------------------------------------------------
    def kafka_names(self):
        """The stack's Kafka processes: "kafka", or "kafka-1".. for a cluster."""
        n = self.kafka_nodes_wanted
        return ["kafka"] if n == 1 else [f"kafka-{i}" for i in range(1, n + 1)]

    def kafka_node(self, name="kafka"):
        if not self.kafka_nodes:
            names = self.kafka_names()
            nodes = [KafkaNode(self.path("data", name), node_id=i + 1, heap_mb=self.kafka_heap_mb,
                               fast_start=self.kafka_fast_start) for i, name in enumerate(names)]
            for n in nodes:
                n.cluster = nodes if len(nodes) > 1 else None
            self.kafka_nodes = dict(zip(names, nodes))
        return self.kafka_nodes[name]

    def start_kafka(self):
        """Apache Kafka (KRaft; one process, or kafka_nodes_wanted of them
        as one cluster), then the project's topics."""
        if self.external["kafka"]:
            self.make_topics()
            return
        names = self.kafka_names()
        if self.kafka_netns:
            self.netns_setup(self.kafka_node(names[0]))
        cluster_id = kafka_cluster_id(self.path("data", "kafka" if len(names) == 1 else "kafka-cluster"))
        for name in names:
            self.kafka_node(name).format(cluster_id)
        waits = [self.start_kafka_node(name, wait=False) for name in names]
        for w in waits:
            w()
        nodes = [self.kafka_node(n) for n in names]
        if len(nodes) > 1:
            # Started is not yet registered with the controller: topics
            # made before every broker is would get fewer replicas.
            boot = ",".join(n.bootstrap for n in nodes)
            wait_for(f"{len(nodes)} brokers in the cluster's metadata",
                     lambda: self.kafka_broker_count(boot) == len(nodes), 60)
        if self.kafka_listener:  # the clients use that listener (TLS, SASL)
            self.kafka_brokers = ",".join(f"{n.host}:{n.listeners[self.kafka_listener][0]}" for n in nodes)
        else:
            self.kafka_brokers = ",".join(n.bootstrap for n in nodes)
        self.make_topics()

    def start_kafka_node(self, name="kafka", wait=True):
        """Starts one Kafka process on its ports and data (again, after a
        kill). wait=False: returns a function that waits for it."""
        node = self.kafka_node(name)
        node.write_config()
        started = "Kafka Server started"
        def count():
            if not os.path.exists(self.log(name)):
                return 0
            with open(self.log(name), errors="replace") as f:
                return sum(1 for line in f if started in line)
        before = count()
        argv = node.java_argv("kafka.Kafka", os.path.join(node.data_dir, "server.properties"))
        if node.netns:  # ip execs java in the namespace: the process is java's
            proc = self.spawn(name, ["ip", "netns", "exec", node.netns] + argv, exe=argv[0])
        else:
            proc = self.spawn(name, argv)

        def wait_started():
            wait_for(f"Kafka ({name})", lambda: count() > before, 120, proc, self.log(name))
        if wait:
            wait_started()
            return None
        return wait_started

    # -- a network namespace for the broker (network-cut tests) -----------
    def netns_setup(self, node):
        """Puts node in a network namespace of its own, joined to this one
        by a veth pair, on a private /28 that exists only between the two:
        its link can then be cut like a network. Root only."""
        k = os.getpid() % 16000
        ns, host_if, ns_if = f"sbk{k}", f"sbkh{k}", f"sbkn{k}"
        net = f"10.{200 + k // 4000}.{(k // 16) % 250}.{(k % 16) * 16}"
        base = net.rsplit(".", 1)
        host_ip, ns_ip = f"{base[0]}.{int(base[1]) + 1}", f"{base[0]}.{int(base[1]) + 2}"
        with open(self.path("data", "netns.json"), "w") as f:
            json.dump({"ns": ns, "host_if": host_if}, f)
        cmds = [["ip", "netns", "add", ns],
                ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
                ["ip", "link", "set", ns_if, "netns", ns],
                ["ip", "addr", "add", f"{host_ip}/28", "dev", host_if],
                ["ip", "link", "set", host_if, "up"],
                ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/28", "dev", ns_if],
                ["ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up"],
                ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]]
        for c in cmds:
            r = subprocess.run(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                self.netns_teardown()
                raise RuntimeError(f"{' '.join(c)}: {r.stdout.decode(errors='replace').strip()}")
        node.netns, node.host = ns, ns_ip
        self.kafka_link_if = host_if

    def kafka_link(self, up):
        """Cuts (up=False) or mends the broker's network link."""
        subprocess.run(["ip", "link", "set", self.kafka_link_if, "up" if up else "down"], check=True)

    def netns_teardown(self):
        try:
            with open(self.path("data", "netns.json")) as f:
                ns = json.load(f)["ns"]
        except (OSError, ValueError, KeyError):
            return
        subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.unlink(self.path("data", "netns.json"))

    @staticmethod
    def kafka_broker_count(bootstrap):
        r = subprocess.run([find_tool("kcat", "kafkacat"), "-b", bootstrap, "-L", "-J", "-m", "5"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            return len(json.loads(r.stdout)["brokers"]) if r.returncode == 0 else 0
        except (ValueError, KeyError):
            return 0

    def kafka_pause(self, name="kafka"):
        """A hung broker: SIGSTOP keeps its sockets open and answers nothing."""
        pid, exe = self.pid_of(name)
        os.kill(pid, signal.SIGSTOP)

    def kafka_resume(self, name="kafka"):
        pid, exe = self.pid_of(name)
        os.kill(pid, signal.SIGCONT)

    def kafka_crash(self, name="kafka"):
        """kill -9: the broker dies with its log as it is on disk."""
        self.kill9(name)

    def start_opensearch(self, name="opensearch", port=None):
        """One OpenSearch node (search through Elasticsearch's API) unless
        ES_URL names a server; ES_URL points at it from then on. port: start
        it again where it was (its data is kept under data/)."""
        if self.es_url and port is None:
            return
        port = port or free_port()
        proc = self.spawn(name, opensearch_argv(self.path("data", name), port))
        url = f"http://127.0.0.1:{port}"
        wait_for(name, lambda: http_get(url + "/")[0] == 200, 180, proc, self.log(name))
        self.es_url = url

    def start_ferretdb(self, name="ferretdb", port=None):
        """FerretDB (the MongoDB wire protocol, on SQLite) unless MONGO_URI
        names a server; MONGO_URI points at it from then on. port: start it
        again where it was, on its data."""
        if self.mongo_uri and port is None:
            return
        port = port or free_port()
        proc = self.spawn(name, ferretdb_argv(self.path("data", name), port),
                          env=dict(self.env(), DO_NOT_TRACK="1"))
        wait_for(name, lambda: port_open(port), 60, proc, self.log(name))
        self.mongo_uri = f"mongodb://127.0.0.1:{port}/switchboard"

    def start_hydra(self, name="hydra", access_ttl=None):
        """Ory Hydra, an OpenID provider, in memory: returns (issuer URL,
        admin URL). The dispatcher takes its tokens once jwt_issuer names
        it (extra_env SB_JWT_ISSUER)."""
        public, admin = free_port(), free_port()
        argv, env = hydra_argv_env(public, admin, self.env(), access_ttl)
        proc = self.spawn(name, argv, env=env)
        for port in (public, admin):
            wait_for(name, lambda: http_get(f"http://127.0.0.1:{port}/health/ready")[0] == 200, 60, proc,
                     self.log(name))
        return f"http://127.0.0.1:{public}/", f"http://127.0.0.1:{admin}"

    def start_jaeger(self, name="jaeger"):
        """Jaeger, receiving OTLP/HTTP: returns (the traces endpoint for
        trace_otlp_url, the query API's base URL)."""
        otlp, query, grpc = free_port(), free_port(), free_port()
        proc = self.spawn(name, jaeger_argv(self.path("data", name), otlp, query, grpc))
        # The query API opens before the receiver: both, or a first export is refused.
        wait_for(name, lambda: http_get(f"http://127.0.0.1:{query}/api/services")[0] == 200 and port_open(otlp),
                 60, proc, self.log(name))
        return f"http://127.0.0.1:{otlp}/v1/traces", f"http://127.0.0.1:{query}"

    def make_topics(self):
        """switchboard-migrate topics: every topic of schema/topics/ (and
        its .dlq), and notify_topics, with the stack's partitions (None: as
        the schemas say)."""
        rf = ["--replication-factor", str(min(3, len(self.kafka_names())))] if not self.external["kafka"] else []
        parts = ["--partitions", str(self.partitions)] if self.partitions else []
        self.migrate("topics", *parts, *rf)

    def migrate(self, *args):
        r = subprocess.run([self.binary("switchboard-migrate"), *args], env=self.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.run_dir)
        with open(self.log("migrate"), "ab") as f:
            f.write(r.stdout)
        if r.returncode != 0:
            raise RuntimeError("switchboard-migrate failed:\n" + r.stdout.decode(errors="replace"))

    def start_dispatcher(self, name="dispatcher", extra=(), wait_ready=True, share_port=False, port=None,
                         nofile=None, binary=None):
        """A dispatcher on the stack's API port (or on port); nofile as for
        spawn; binary: another build's (a benchmark's baseline)."""
        port = port or self.api_port
        url = f"http://127.0.0.1:{port}"
        # SO_REUSEPORT would let a stray dispatcher share the port silently.
        if not share_port and port_open(port):
            raise RuntimeError(f"port {port} is already in use (another dispatcher? "
                               f"scripts/down, or set SB_API_PORT)")
        argv = [binary or self.binary("switchboard-dispatcher"), "--listen", f"127.0.0.1:{port}"]
        proc = self.spawn(name, argv + list(extra), nofile=nofile)
        wait_for("dispatcher /healthz", lambda: http_get(url + "/healthz")[0] == 200,
                 20, proc, self.log(name))
        if wait_ready:
            wait_for("dispatcher /readyz", lambda: http_get(url + "/readyz")[0] == 200,
                     30, proc, self.log(name))
        return proc

    def start_worker(self, role, name=None, extra=(), nofile=None):
        """A worker of role, with its /healthz and /metrics on a free port
        (status_ports[name]); nofile as for spawn."""
        name = name or f"worker-{role}"
        port = free_port()
        argv = [self.binary("switchboard-worker"), "--role", role,
                "--status-listen", f"127.0.0.1:{port}"]
        self.status_ports[name] = port
        return self.spawn(name, argv + list(self.role_flags.get(role, ())) + list(extra), nofile=nofile)

    def ensure_api_key(self):
        """The admin API key of this stack: made once (run_dir/api_key,
        mode 0600) and given to the dispatcher as its SHA-256 digest only."""
        path = self.path("api_key")
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        with open(path) as f:
            self.api_key = f.read().strip()
        digest = hashlib.sha256(self.api_key.encode()).hexdigest()
        given = self.env().get("SB_API_KEY_HASHES", "")
        if digest not in given:
            self.extra_env["SB_API_KEY_HASHES"] = f"{given},{digest}" if given else digest
        return self.api_key

    def start_dev_peers(self):
        """Stand-ins for the notifier's providers, unless the environment
        names real ones: an SMTP server (aiosmtpd) that keeps every email in
        data/mail.jsonl, and a recording HTTP endpoint for SMS and push
        (GET /_records lists what it received)."""
        env = self.env()
        dev = os.path.join(ROOT, "scripts", "dev")
        python = "/usr/bin/python3"  # Debian's: python3-aiosmtpd is installed for it
        if not env.get("SB_SMTP_URL"):
            port = free_port()
            proc = self.spawn("smtp-sink", [python, os.path.join(dev, "smtp_sink.py"), str(port),
                                            self.path("data", "mail.jsonl")])
            wait_for("SMTP sink", lambda: port_open(port), 20, proc, self.log("smtp-sink"))
            self.extra_env["SB_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        if not env.get("SB_SMS_URL") or not env.get("SB_PUSH_URL"):
            port = self.start_provider()
            self.extra_env.setdefault("SB_SMS_URL", env.get("SB_SMS_URL") or f"http://dev:dev@127.0.0.1:{port}/sms")
            self.extra_env.setdefault("SB_PUSH_URL", env.get("SB_PUSH_URL") or f"http://127.0.0.1:{port}/push")
            self.provider_url = f"http://127.0.0.1:{port}"
        if not env.get("SB_NOTIFY_TOPICS"):
            self.extra_env["SB_NOTIFY_TOPICS"] = "notify.events"

    def start_provider(self, name="provider"):
        """The recording HTTP endpoint (scripts/dev/provider.py) on a free
        port, under name; returns the port once it listens."""
        port = free_port()
        proc = self.spawn(name, ["/usr/bin/python3", os.path.join(ROOT, "scripts", "dev", "provider.py"),
                                 str(port)])
        wait_for("recording provider", lambda: port_open(port), 20, proc, self.log(name))
        return port

    def wait_pipeline(self, timeout=60):
        """Waits until a ping travels dispatcher -> Kafka -> persister ->
        MySQL: the persister has joined its consumer group and owns the
        partitions, so the first creates after `up` are written at once."""
        req = urllib.request.Request(self.api_url + "/ops/ping", method="POST",
                                     data=json.dumps({"note": "start-up"}).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            rid = json.loads(r.read())["request_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sql(f"SELECT COUNT(*) FROM pipeline_pings WHERE request_id='{rid}'")[0][0] == "1":
                return
            time.sleep(0.1)
        raise RuntimeError(f"the persister did not consume within {timeout} s (see {self.log('worker-persister')})")

    def write_env_file(self):
        with open(self.path("env"), "w") as f:
            f.write(f"export REDIS_URL='{self.redis_url}'\n")
            f.write(f"export KAFKA_BROKERS='{self.kafka_brokers}'\n")
            f.write(f"export MYSQL_URL='{self.mysql_url}'\n")
            for k, v in (("ES_URL", self.es_url), ("MONGO_URI", self.mongo_uri)):
                if v:
                    f.write(f"export {k}='{v}'\n")
            f.write(f"export SB_API_URL='{self.api_url}'\n")
            for k in ("SB_SMTP_URL", "SB_SMS_URL", "SB_PUSH_URL", "SB_NOTIFY_TOPICS"):
                if k in self.extra_env:
                    f.write(f"export {k}='{self.extra_env[k]}'\n")
            if getattr(self, "provider_url", None):
                f.write(f"export SB_DEV_PROVIDER_URL='{self.provider_url}'\n")
            for name, port in sorted(self.status_ports.items()):
                if name.startswith("worker-"):  # worker-persister: SB_PERSISTER_STATUS_URL
                    var = name[len("worker-"):].upper().replace("-", "_")
                    f.write(f"export SB_{var}_STATUS_URL='http://127.0.0.1:{port}'\n")

    def seed(self, users=1000, numbers=300, area_codes="212,415,613"):
        """Phonebook demo data (idempotent): users 1..users, numbers spread
        over the area codes (300 over three = 100 each)."""
        self.migrate("seed", "--users", str(users), "--numbers", str(numbers),
                     "--area-codes", area_codes)

    def up(self, roles=ROLES, seed=False, opensearch=False, ferretdb=False):
        """Everything, in dependency order; raises with the failing log.
        opensearch, ferretdb: search in OpenSearch, notifications in
        FerretDB (unless ES_URL / MONGO_URI name servers)."""
        self.start_redis()
        self.start_mariadb()
        self.start_kafka()
        if opensearch:
            self.start_opensearch()
        if ferretdb:
            self.start_ferretdb()
        self.migrate()
        if seed:
            self.seed()
        self.ensure_api_key()
        if "notifier" in roles:
            self.start_dev_peers()
        self.start_dispatcher()
        for role in roles:
            self.start_worker(role)
        self.write_env_file()  # the services, and the workers' status URLs
        self.save_manifest()
        if "persister" in roles:
            self.wait_pipeline()

    def save_manifest(self):
        """Names the processes this `up` started: `up` and `status` compare
        them with what runs."""
        with open(self.path("stack.json"), "w") as f:
            json.dump({"processes": self.names(), "api_port": self.api_port}, f)

    def load_manifest(self):
        """The processes the last `up` started; the stack's API port becomes
        the one it used."""
        try:
            with open(self.path("stack.json")) as f:
                m = json.load(f)
        except (OSError, ValueError):
            return []
        self.api_port = m.get("api_port") or self.api_port
        return m.get("processes", [])

    def restore(self):
        """Takes the services' addresses and the processes' settings back
        from run_dir/env (written by `up`); False if there is none."""
        try:
            with open(self.path("env")) as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        for line in lines:
            if not line.startswith("export ") or "=" not in line:
                continue
            k, v = line[len("export "):].split("=", 1)
            v = v.strip("'")
            if k == "REDIS_URL":
                self.redis_url = v
            elif k == "KAFKA_BROKERS":
                self.kafka_brokers = v
            elif k == "MYSQL_URL":
                self.mysql_url = v
            elif k == "ES_URL":
                self.es_url = v
            elif k == "MONGO_URI":
                self.mongo_uri = v
            elif k in ("SB_SMTP_URL", "SB_SMS_URL", "SB_PUSH_URL", "SB_NOTIFY_TOPICS"):
                self.extra_env[k] = v
            elif k == "SB_DEV_PROVIDER_URL":
                self.provider_url = v
            elif k.endswith("_STATUS_URL") and k.startswith("SB_"):
                name = "worker-" + k[3:-len("_STATUS_URL")].lower().replace("_", "-")
                self.status_ports[name] = int(v.rsplit(":", 1)[1])
        self.ensure_api_key()
        return bool(self.redis_url and self.kafka_brokers and self.mysql_url)

    def restart(self, names):
        """Starts the dispatcher and workers among names again (on the
        services that run), then waits as `up` does."""
        for name in names:
            if name == "dispatcher":
                self.start_dispatcher()
            elif name.startswith("worker-"):
                self.start_worker(name[len("worker-"):])
        self.write_env_file()
        self.save_manifest()
        if "worker-persister" in self.names():
            self.wait_pipeline()

    def down(self):
        """Stops what this stack started: the front first (it drains into
        Kafka), then the workers, then the services they use."""
        order = ["dispatcher"]
        names = self.names()
        order += [n for n in names if n.startswith("dispatcher") and n != "dispatcher"]
        order += [n for n in names if n.startswith("worker")]
        order += [n for n in names if n == "kafka" or n.startswith("kafka-")]
        order += ["mariadb", "redis"]
        order += [n for n in names if n not in order]
        for n in order:
            self.stop(n)
        self.netns_teardown()
        try:
            os.unlink(self.path("stack.json"))
        except OSError:
            pass


# What the rest runs on (and the Kafka processes, kafka and kafka-N): one of
# them gone means a restart of the whole stack, since the others were given
# its address. The providers' stand-ins are among them.
SERVICES = ("redis", "mariadb", "smtp-sink", "provider", "opensearch", "ferretdb")


def is_service(name):
    return name in SERVICES or name == "kafka" or name.startswith("kafka-")


def process_states(st):
    """[(name, pid, running)] of every process the stack's last `up`
    started (its manifest), or that has a PID file."""
    names = list(st.load_manifest())
    names += [n for n in st.names() if n not in names]
    out = []
    for n in names:
        pid, exe = st.pid_of(n)
        out.append((n, pid, bool(pid) and st.alive(pid, exe)))
    return out


def print_states(st, out=sys.stdout):
    for name, pid, running in process_states(st):
        print(f"  {name:<20} {'running' if running else 'NOT RUNNING':<12} {f'pid {pid}' if running else ''}",
              file=out)


def cmd_up(args):
    st = Stack(args.run_dir, api_port=args.port, partitions=args.partitions)
    states = process_states(st)
    dead = [n for n, _, running in states if not running]
    if states and not dead and http_get(st.api_url + "/readyz")[0] == 200:
        print(f"switchboard is already running: {st.api_url}")
        print_states(st)
        return 0
    if states and dead and not any(is_service(n) for n in dead) and st.restore():
        # Only a dispatcher or workers are gone (a crash, a kill): start
        # those again beside the running rest.
        print(f"restarting what is not running: {', '.join(dead)}", file=sys.stderr)
        try:
            st.restart(dead)
        except Exception as e:
            print(f"scripts/up failed: {e}", file=sys.stderr)
            return 1
        print(f"switchboard is up: {st.api_url} (restarted: {', '.join(dead)})")
        print_states(st)
        return 0
    if states:
        print("a previous stack is partly running; restarting it", file=sys.stderr)
        st.down()
    try:
        st.up(seed=not args.no_seed, opensearch=args.opensearch, ferretdb=args.ferretdb)
    except Exception as e:  # show the cause, leave nothing half-started
        print(f"scripts/up failed: {e}", file=sys.stderr)
        st.down()
        return 1
    print(f"switchboard is up: {st.api_url}")
    print(f"  admin API key: {st.path('api_key')}  (Authorization: Bearer $(cat {st.path('api_key')}))")
    print(f"  state and logs: {st.run_dir}  (source {st.path('env')} for the service URLs)")
    return 0


def cmd_status(args):
    """What runs, and whether the dispatcher is ready; exit 0 only when all
    of it runs and /readyz answers 200."""
    st = Stack(args.run_dir, api_port=args.port, use_env=False)
    states = process_states(st)
    if not states:
        print("switchboard is not running (scripts/up starts it)")
        return 3
    code, body = http_get(st.api_url + "/readyz")
    print(f"switchboard at {st.api_url}: /readyz {code or 'no answer'}")
    print_states(st)
    if code:
        print(f"  {body.decode(errors='replace').strip()}")
    return 0 if code == 200 and all(r for _, _, r in states) else 1


def cmd_down(args):
    st = Stack(args.run_dir, use_env=False)
    names = st.names()
    st.down()
    print("stopped: " + (", ".join(names) if names else "nothing was running"))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("up", "down", "status", "fetch"))
    ap.add_argument("--run-dir", default=os.path.join(ROOT, ".run"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("SB_API_PORT", "8080")))
    ap.add_argument("--no-seed", action="store_true",
                    default=os.environ.get("SB_NO_SEED") == "1",
                    help="do not load the phonebook demo data (users 1..1000, 100 numbers "
                         "in each of the area codes 212, 415, 613)")
    ap.add_argument("--partitions", type=int,
                    default=int(os.environ["SB_KAFKA_PARTITIONS"]) if os.environ.get("SB_KAFKA_PARTITIONS") else None,
                    help="partitions of each topic when first made (default: as schema/topics says, 8)")
    ap.add_argument("--opensearch", action="store_true", default=os.environ.get("SB_OPENSEARCH") == "1",
                    help="search through OpenSearch (started here, from Maven Central's jars) "
                         "instead of MySQL; or set SB_OPENSEARCH=1")
    ap.add_argument("--ferretdb", action="store_true", default=os.environ.get("SB_FERRETDB") == "1",
                    help="keep notifications in FerretDB (MongoDB's protocol; built here with go) "
                         "instead of MySQL; or set SB_FERRETDB=1")
    args = ap.parse_args()
    if args.command == "fetch":  # what the tests start, fetched once before they run side by side
        print(kafka_libs())
        print(opensearch_home())
        print(ferretdb_binary())
        print(hydra_binary())  # Go builds: ~2 and ~5 minutes cold on two cores, seconds with Go's cache
        print(jaeger_binary())
        return 0
    return {"up": cmd_up, "down": cmd_down, "status": cmd_status}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
