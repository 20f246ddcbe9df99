"""Parts of the local stack that stand on their own (scripts/stack.py
uses them): process helpers, and one Apache Kafka node in KRaft mode with
its jars fetched from Maven Central.

Standard library only.
"""

import fcntl
import json
import os
import shutil
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Kafka 3.9: the last line that speaks every protocol version Debian's
# librdkafka 2.0.2 may use (4.0 removed the old ones); see scripts/kafka/pom.xml.
KAFKA_VERSION = "3.9.2"
KAFKA_CACHE = os.environ.get("SB_KAFKA_CACHE") or os.path.join(ROOT, ".cache", f"kafka-{KAFKA_VERSION}")


_HANDED_OUT = set()
_PORT_LOCK = threading.Lock()


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split()[:2])
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _try_port(port):
    if port in _HANDED_OUT:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    _HANDED_OUT.add(port)
    return True


def free_port():
    """A loopback port nothing listens on, for a server started next.

    Not bind(0)'s answer: that is a port of the kernel's ephemeral range,
    which it may give to any outgoing connection (a test's HTTP client, a
    span export) before our server binds it, and the server then fails
    with "port already in use". So a port outside that range: below it,
    from a block of 1000 chosen by pid (two harnesses at once, ctest -j,
    rarely share a block), else above it; never the same one twice in a
    process. Two harnesses in one block can still race for a port while
    a slow server starts; bind(0) had the same race and more of it."""
    lo, hi = _ephemeral_range()
    with _PORT_LOCK:
        blocks = (lo - 10000) // 1000
        if blocks >= 1:
            base = 10000 + (os.getpid() % blocks) * 1000
            for _ in range(500):
                port = base + secrets.randbelow(1000)
                if _try_port(port):
                    return port
        if hi < 65000:
            for _ in range(500):
                port = hi + 1 + secrets.randbelow(65535 - hi)
                if _try_port(port):
                    return port
    print("free_port: no port outside the ephemeral range; taking one inside it", file=sys.stderr)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(what, check, timeout, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            tail = ""
            if log and os.path.exists(log):
                with open(log, errors="replace") as f:
                    tail = "".join(f.readlines()[-20:])
            raise RuntimeError(f"{what} exited with {proc.returncode}\n{tail}")
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def http_get(url, timeout=2.0):
    """Returns (status, body bytes); status 0 when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def find_tool(*names):
    for n in names:
        for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            p = os.path.join(d, n)
            if os.access(p, os.X_OK):
                return p
        p = shutil.which(n)
        if p:
            return p
    raise RuntimeError(f"none of {names} is installed (run scripts/setup)")



def once(folder, done, make):
    """make() unless the file done exists (make writes it last). Under a
    lock in folder: two test processes starting at once, one makes it and
    the other waits for it."""
    if os.path.exists(done):
        return
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(done):
            make()


def kafka_libs():
    """The folder of Kafka's jars, fetched from Maven Central on first use
    (mvn, into KAFKA_CACHE; about 50 MB)."""
    libs = os.path.join(KAFKA_CACHE, "libs")
    marker = os.path.join(KAFKA_CACHE, "complete")
    once(KAFKA_CACHE, marker, lambda: fetch_kafka(libs, marker))
    return libs


def fetch_kafka(libs, marker):
    tmp = libs + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    r = subprocess.run([find_tool("mvn"), "-q", "-B", "-f", os.path.join(ROOT, "scripts", "kafka", "pom.xml"),
                        f"-Dkafka.version={KAFKA_VERSION}", "dependency:copy-dependencies",
                        f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0 or not os.path.isdir(tmp) or \
            not any(f.startswith("kafka_2.13-") for f in os.listdir(tmp)):
        raise RuntimeError("fetching Apache Kafka from Maven Central failed:\n" + r.stdout.decode(errors="replace"))
    shutil.rmtree(libs, ignore_errors=True)
    os.rename(tmp, libs)
    with open(marker, "w") as f:
        f.write(KAFKA_VERSION + "\n")


KAFKA_LOG4J = """log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
# start-up and shut-down lines (the stack waits for "Kafka Server started")
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""


class KafkaNode:
    """One Apache Kafka process in KRaft mode, broker and controller in one
    (process.roles=broker,controller), its log under data_dir. Ports and
    the cluster id are kept in data_dir, so a restart finds its data and
    its clients find it where it was."""

    def __init__(self, data_dir, node_id=1, cluster=None, heap_mb=512, fast_start=False):
        self.data_dir = data_dir
        self.node_id = node_id
        self.cluster = cluster  # the KafkaNodes of one cluster (voters), or None: just this one
        self.heap_mb = heap_mb
        self.fast_start = fast_start
        self.host = "127.0.0.1"  # another address when it runs in a network namespace
        self.netns = None  # that namespace's name
        self.extra = {}  # more server.properties (TLS and SASL settings, ...)
        self.listeners = {}  # more client listeners: name -> (port, security protocol)
        os.makedirs(data_dir, exist_ok=True)
        self.port = self.kept_port("port")
        self.controller_port = self.kept_port("controller_port")

    def kept_port(self, key):
        """The port kept under key in data_dir/node.json, or a free one,
        kept there from now on."""
        state = os.path.join(self.data_dir, "node.json")
        saved = {}
        if os.path.exists(state):
            with open(state) as f:
                saved = json.load(f)
        if not saved.get(key):
            saved[key] = free_port()
            with open(state, "w") as f:
                json.dump(saved, f)
        return saved[key]

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def add_listener(self, name, protocol):
        """One more client listener (say SASL_SSL, for a TLS and SASL test)
        on a port of its own, kept with the node's other ports."""
        port = self.kept_port(f"listener_{name}")
        self.listeners[name] = (port, protocol)
        return f"{self.host}:{port}"

    def properties(self):
        nodes = self.cluster or [self]
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes)
        rf = min(3, len(nodes))
        h = self.host
        more = "".join(f",{name}://{h}:{port}" for name, (port, _) in self.listeners.items())
        protocols = "".join(f",{name}:{proto}" for name, (_, proto) in self.listeners.items())
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{h}:{self.port},CONTROLLER://{h}:{self.controller_port}{more}",
            "advertised.listeners": f"PLAINTEXT://{h}:{self.port}{more}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": f"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{protocols}",
            "log.dirs": os.path.join(self.data_dir, "log"),
            # Topics come from switchboard-migrate topics, with their
            # partitions and settings; a typo must not make a new one.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": str(rf),
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": str(min(2, rf)),
            "default.replication.factor": str(rf),
            "min.insync.replicas": "1",
            # A consumer group forms at once: waiting for more members to
            # join (the default 3 s) only delays every start here.
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "8",
            # Kafka's defaults (3 network and 8 I/O threads) are for a host
            # of its own; here it shares the cores with everything else, and
            # fewer threads switch less: at 9k creates/s the p99 of a create
            # was 4.7-6.2 ms with one per core, 4.9-9.1 ms with the defaults
            # (six 10-s runs each).
            "num.network.threads": str(min(3, os.cpu_count() or 1)),
            "num.io.threads": str(min(8, os.cpu_count() or 1)),
            "log.retention.hours": "168",
        }
        props.update(self.extra)
        return props

    def write_config(self):
        path = os.path.join(self.data_dir, "server.properties")
        with open(path, "w") as f:
            for k, v in self.properties().items():
                f.write(f"{k}={v}\n")
        with open(os.path.join(self.data_dir, "log4j.properties"), "w") as f:
            f.write(KAFKA_LOG4J)
        return path

    def java_argv(self, main, *args):
        opts = [f"-Xmx{self.heap_mb}m", "-XX:-UsePerfData", "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{os.path.join(self.data_dir, 'log4j.properties')}"]
        if self.fast_start:
            # Tests: the broker's work there is small, its start-up is not;
            # C1 alone and one GC thread take a second or two off each start
            # and keep two cores free for the code under test.
            opts += [f"-Xms{min(64, self.heap_mb)}m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        else:
            # As Kafka's own start script runs it: a fixed heap, G1 with
            # short pauses.
            opts += [f"-Xms{self.heap_mb}m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                     "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                     "-XX:MaxInlineLevel=15",
                     f"-Xlog:gc:file={os.path.join(self.data_dir, 'gc.log')}:time,uptime:filecount=3,filesize=10M"]
        return [find_tool("java"), *opts, "-cp", os.path.join(kafka_libs(), "*"), main, *args]

    def format(self, cluster_id):
        """Formats the log directory once (KRaft needs it); a formatted one
        is kept as it is, with its data."""
        config = self.write_config()
        if os.path.exists(os.path.join(self.data_dir, "log", "meta.properties")):
            return
        r = subprocess.run(self.java_argv("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", config),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise RuntimeError("formatting Kafka's log directory failed:\n" + r.stdout.decode(errors="replace"))


def kafka_cluster_id(data_dir):
    """A cluster id (22 characters of base64url, as Kafka makes them), made
    once and kept in data_dir."""
    path = os.path.join(data_dir, "cluster.id")
    if not os.path.exists(path):
        os.makedirs(data_dir, exist_ok=True)
        # One starting with '-' would be read as an option by the storage
        # tool's argument parser (1 in 32 ids: a set-up failed so in CI).
        cid = "-"
        while not cid[0].isalnum():
            cid = secrets.token_urlsafe(16)[:22]
        with open(path, "w") as f:
            f.write(cid + "\n")
    with open(path) as f:
        return f.read().strip()


# -- OpenSearch ---------------------------------------------------------------

# 2.19: the last line that runs on Java 17 (3.x needs 21); scripts/opensearch/pom.xml.
OPENSEARCH_VERSION = "2.19.6"
OPENSEARCH_HOME = os.environ.get("SB_OPENSEARCH_CACHE") or \
    os.path.join(ROOT, ".cache", f"opensearch-{OPENSEARCH_VERSION}")

# The two modules the node loads (modules/<name>/ with the jars and the
# descriptor the node reads). analysis-common names lang-painless as the
# plugin it extends, for scripts nobody here runs: left out, it is not needed.
OPENSEARCH_MODULES = {
    "transport-netty4": ("org.opensearch.transport.Netty4Plugin", "HTTP and transport on netty"),
    "analysis-common": ("org.opensearch.analysis.common.CommonAnalysisPlugin", "ngram and other analysis"),
}
# The node runs under a security manager; the netty module may accept and
# connect (core grants only listening on the configured ports).
NETTY_POLICY = """grant {
  permission java.io.FilePermission "/proc/sys/net/core/somaxconn", "read";
  permission java.net.SocketPermission "*", "accept,connect";
  permission java.lang.RuntimePermission "*", "setContextClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
  permission java.util.PropertyPermission "sun.nio.ch.bugLevel", "write";
};
"""
OPENSEARCH_LOG4J = """status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%c{1.}] %m%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
logger.node.name = org.opensearch.node.Node
logger.node.level = info
"""


def opensearch_home():
    """OpenSearch's home (lib/, modules/), made from Maven Central's jars on
    first use (mvn, into OPENSEARCH_HOME; about 46 MB)."""
    marker = os.path.join(OPENSEARCH_HOME, "complete")
    once(OPENSEARCH_HOME, marker, lambda: fetch_opensearch(marker))
    return OPENSEARCH_HOME


def fetch_opensearch(marker):
    tmp = os.path.join(OPENSEARCH_HOME, "jars.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    r = subprocess.run([find_tool("mvn"), "-q", "-B", "-f", os.path.join(ROOT, "scripts", "opensearch", "pom.xml"),
                        f"-Dopensearch.version={OPENSEARCH_VERSION}", "dependency:copy-dependencies",
                        f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0 or not os.path.exists(os.path.join(tmp, f"opensearch-{OPENSEARCH_VERSION}.jar")):
        raise RuntimeError("fetching OpenSearch from Maven Central failed:\n" + r.stdout.decode(errors="replace"))
    for d in ("lib", "modules", "plugins", "bin"):
        shutil.rmtree(os.path.join(OPENSEARCH_HOME, d), ignore_errors=True)
        os.makedirs(os.path.join(OPENSEARCH_HOME, d))
    for name, (classname, description) in OPENSEARCH_MODULES.items():
        mod = os.path.join(OPENSEARCH_HOME, "modules", name)
        os.makedirs(mod)
        with open(os.path.join(mod, "plugin-descriptor.properties"), "w") as f:
            f.write(f"description={description}\nversion={OPENSEARCH_VERSION}\nname={name}\n"
                    f"classname={classname}\njava.version=11\nopensearch.version={OPENSEARCH_VERSION}\n"
                    "has.native.controller=false\n")
    with open(os.path.join(OPENSEARCH_HOME, "modules", "transport-netty4", "plugin-security.policy"), "w") as f:
        f.write(NETTY_POLICY)
    # The jars keep Maven's names: the node's security policy grants by them.
    for jar in os.listdir(tmp):
        if jar.startswith(("netty-", "transport-netty4-client-")):
            dest = "modules/transport-netty4"
        elif jar.startswith("analysis-common-"):
            dest = "modules/analysis-common"
        else:
            dest = "lib"
        os.rename(os.path.join(tmp, jar), os.path.join(OPENSEARCH_HOME, dest, jar))
    shutil.rmtree(tmp)
    with open(marker, "w") as f:
        f.write(OPENSEARCH_VERSION + "\n")


def opensearch_argv(node_dir, http_port, heap_mb=384):
    """The command that runs one single-node OpenSearch with its config,
    data and logs under node_dir (made here), HTTP on 127.0.0.1:http_port."""
    home = opensearch_home()
    for d in ("config", "data", "logs", "tmp"):
        os.makedirs(os.path.join(node_dir, d), exist_ok=True)
    with open(os.path.join(node_dir, "config", "opensearch.yml"), "w") as f:
        f.write(f"""cluster.name: switchboard
node.name: switchboard-1
path.data: {os.path.join(node_dir, "data")}
path.logs: {os.path.join(node_dir, "logs")}
network.host: 127.0.0.1
http.port: {http_port}
transport.port: {free_port()}
discovery.type: single-node
bootstrap.system_call_filter: false
cluster.routing.allocation.disk.threshold_enabled: false
""")
    with open(os.path.join(node_dir, "config", "log4j2.properties"), "w") as f:
        f.write(OPENSEARCH_LOG4J)
    opts = [f"-Xms{heap_mb}m", f"-Xmx{heap_mb}m", "-Xss1m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData", "-XX:-OmitStackTraceInFastThrow", "-Djava.security.manager=allow",
            "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8", "-Djna.nosys=true",
            "-Dio.netty.noUnsafe=true", "-Dio.netty.noKeySetOptimization=true",
            "-Dio.netty.recycler.maxCapacityPerThread=0", "-Dio.netty.allocator.numDirectArenas=0",
            "-Dlog4j.shutdownHookEnabled=false", "-Dlog4j2.disable.jmx=true",
            f"-Djava.io.tmpdir={os.path.join(node_dir, 'tmp')}",
            f"-Dopensearch.path.home={home}", f"-Dopensearch.path.conf={os.path.join(node_dir, 'config')}"]
    if os.geteuid() == 0:
        # OpenSearch will not run as root, and asks JNA whether it does;
        # with JNA's native part not unpacked it cannot tell, and goes on
        # (what it loses, memory locking and seccomp, a loopback test node
        # does not need).
        opts.append("-Djna.nounpack=true")
    return [find_tool("java"), *opts, "-cp", os.path.join(home, "lib", "*"), "org.opensearch.bootstrap.OpenSearch"]


# -- FerretDB -----------------------------------------------------------------

# A MongoDB wire-protocol server on SQLite, built from the Go module proxy.
FERRETDB_VERSION = "v1.24.2"
FERRETDB_DIR = os.environ.get("SB_FERRETDB_CACHE") or \
    os.path.join(ROOT, ".cache", f"ferretdb-{FERRETDB_VERSION.lstrip('v')}")


def ferretdb_binary():
    """FerretDB's binary, built on first use (go build, about a minute on
    two cores; the module cache takes ~600 MB)."""
    binary = os.path.join(FERRETDB_DIR, "bin", "ferretdb")
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    once(FERRETDB_DIR, binary, lambda: build_ferretdb(binary))
    return binary


def build_ferretdb(binary):
    # The module as the proxy serves it, copied: its build wants a
    # build/version/version.txt that only its release tooling writes.
    go = go_tool()
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-modcacherw -buildvcs=false",  # pure Go SQLite
               GOTOOLCHAIN="local")
    r = subprocess.run([go, "mod", "download", "-json", f"github.com/FerretDB/FerretDB@{FERRETDB_VERSION}"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        module = json.loads(r.stdout)["Dir"]
    except (ValueError, KeyError):
        raise RuntimeError("fetching FerretDB from the Go module proxy failed:\n" + r.stdout.decode(errors="replace"))
    src = os.path.join(FERRETDB_DIR, "src")
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(module, src)
    for d, _, files in os.walk(src):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    with open(os.path.join(src, "build", "version", "version.txt"), "w") as f:
        f.write(FERRETDB_VERSION + "\n")
    tmp = binary + ".tmp"
    r = subprocess.run([go, "build", "-trimpath", "-o", tmp, "./cmd/ferretdb"], cwd=src, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("building FerretDB failed:\n" + r.stdout.decode(errors="replace"))
    os.rename(tmp, binary)
    shutil.rmtree(src)


def ferretdb_argv(node_dir, port):
    """The command that runs FerretDB on SQLite files under node_dir (made
    here), on 127.0.0.1:port, with telemetry and its debug listener off."""
    for d in ("data", "state"):
        os.makedirs(os.path.join(node_dir, d), exist_ok=True)
    return [ferretdb_binary(), "--handler=sqlite", f"--sqlite-url=file:{os.path.join(node_dir, 'data')}/",
            f"--listen-addr=127.0.0.1:{port}", f"--state-dir={os.path.join(node_dir, 'state')}",
            "--debug-addr=-", "--telemetry=disable", "--log-level=warn"]


# -- Go programs from the module proxy: Ory Hydra and Jaeger ---------------

def go_tool():
    """The Go toolchain scripts/setup provides (its own when the machine's
    is missing or too old)."""
    own = os.path.join(ROOT, ".cache", "go", "bin", "go")
    return own if os.access(own, os.X_OK) else find_tool("go")


def go_build_tool(pkg, version, binary, what, cgo=False, tags=None, ldflags=None, replaces=()):
    """Builds the program pkg@version into binary in a throwaway module
    (go get -tool, then go build). replaces: (old, new@version) pairs the
    program's own go.mod has, which Go ignores in a dependency."""
    go = go_tool()
    env = dict(os.environ, CGO_ENABLED="1" if cgo else "0", GOTOOLCHAIN="local",
               GOFLAGS="-modcacherw -buildvcs=false")
    work = tempfile.mkdtemp(prefix="gobuild-")

    def run(*argv):
        r = subprocess.run([go, *argv], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise RuntimeError(f"building {what}: go {' '.join(argv)} failed:\n" + r.stdout.decode(errors="replace"))
        return r.stdout.decode(errors="replace")
    try:
        run("mod", "init", "switchboard.local/" + what.lower())
        for old, new in replaces:
            run("mod", "edit", f"-replace={old}={new}")
        run("get", "-tool", f"{pkg}@{version}")
        tmp = binary + ".tmp"
        run("build", "-trimpath", *(["-tags", tags] if tags else []), *(["-ldflags", ldflags] if ldflags else []),
            "-o", tmp, pkg)
        os.rename(tmp, binary)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# Ory Hydra, a real OpenID provider: client credentials, JWT access tokens,
# its keys in a JWKS, and an admin API to rotate or import them.
HYDRA_VERSION = "v2.3.0"
HYDRA_DIR = os.path.join(ROOT, ".cache", f"hydra-{HYDRA_VERSION.lstrip('v')}")
# Hydra's go.mod replaces pop with Ory's fork; a consumer module must say so
# itself (the build fails on p.conn.Store.SQLDB otherwise).
HYDRA_REPLACES = (("github.com/gobuffalo/pop/v6", "github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b"),)


def hydra_binary():
    """Hydra's binary, built on first use (about 100 s cold on two cores,
    CGO for its SQLite, which DSN=memory needs)."""
    binary = os.path.join(HYDRA_DIR, "bin", "hydra")
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    once(HYDRA_DIR, binary, lambda: go_build_tool(
        "github.com/ory/hydra/v2", HYDRA_VERSION, binary, "Hydra", cgo=True,
        tags="sqlite,sqlite_omit_load_extension",
        ldflags=f"-X github.com/ory/hydra/v2/driver/config.Version={HYDRA_VERSION}", replaces=HYDRA_REPLACES))
    return binary


def hydra_argv_env(public_port, admin_port, base_env, access_ttl=None):
    """Hydra on 127.0.0.1, in memory (it migrates itself at start), JWT
    access tokens with the scopes in "scp", no usage reports."""
    env = dict(base_env, DSN="memory", SERVE_PUBLIC_HOST="127.0.0.1", SERVE_PUBLIC_PORT=str(public_port),
               SERVE_ADMIN_HOST="127.0.0.1", SERVE_ADMIN_PORT=str(admin_port),
               URLS_SELF_ISSUER=f"http://127.0.0.1:{public_port}/", STRATEGIES_ACCESS_TOKEN="jwt",
               SECRETS_SYSTEM="switchboard-test-system-secret-0123456789", SQA_OPT_OUT="true", LOG_LEVEL="warn")
    if access_ttl:
        env["TTL_ACCESS_TOKEN"] = access_ttl
    return [hydra_binary(), "serve", "all", "--dev", "--sqa-opt-out"], env


# Jaeger (v2: an OpenTelemetry Collector inside): OTLP/HTTP in, traces in
# memory, its query API out.
JAEGER_VERSION = "v1.75.0"
JAEGER_DIR = os.path.join(ROOT, ".cache", f"jaeger-{JAEGER_VERSION.lstrip('v')}")
JAEGER_CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
      readers: []
extensions:
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: mem
    enable_tracing: false
    http:
      endpoint: "127.0.0.1:{query}"
    grpc:
      endpoint: "127.0.0.1:{grpc}"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "127.0.0.1:{otlp}"
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
"""


def jaeger_binary():
    """Jaeger's binary, built on first use (about 5 minutes cold on two
    cores, 20 s with Go's build cache)."""
    binary = os.path.join(JAEGER_DIR, "bin", "jaeger")
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    once(JAEGER_DIR, binary, lambda: go_build_tool(
        "github.com/jaegertracing/jaeger/cmd/jaeger", JAEGER_VERSION, binary, "Jaeger",
        ldflags=f"-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion={JAEGER_VERSION}"))
    return binary


def jaeger_argv(node_dir, otlp_port, query_port, grpc_port):
    """Jaeger with every listener on 127.0.0.1 (its query gRPC port cannot
    be turned off), its config written under node_dir."""
    os.makedirs(node_dir, exist_ok=True)
    conf = os.path.join(node_dir, "jaeger.yaml")
    with open(conf, "w") as f:
        f.write(JAEGER_CONFIG.format(otlp=otlp_port, query=query_port, grpc=grpc_port))
    return [jaeger_binary(), "--config", conf]
