#!/usr/bin/env python3
"""FAKE MongoDB: a small wire-protocol stand-in, NOT MongoDB.

Written from MongoDB's documented wire protocol and command replies, for the
subset switchboard's notification store (store/notestore_mongo.c) uses, so
its contract tests can run where no MongoDB server can be installed. With
MONGO_URI set, the same contract tests run against a real server instead.

Implemented (documented behaviour):
  wire      OP_QUERY on <db>.$cmd (the legacy handshake) answered with
            OP_REPLY; OP_MSG with a body section (kind 0) and document
            sequences (kind 1), answered with OP_MSG. BSON types: double,
            string, document, array, binary, ObjectId, bool, UTC datetime,
            null, int32, timestamp, int64.
  hello / isMaster    a standalone server, maxWireVersion 13, no sessions
  ping, endSessions, buildInfo
  createIndexes       key specs kept; "unique" enforced, with a
                      partialFilterExpression of {field: {$exists: true}}
  listIndexes         _id_ and the kept specs (with v: 2); code 26
                      NamespaceNotFound for a collection never used
  insert    per-document writeErrors; a duplicate _id or unique key is
            code 11000 "E11000 duplicate key error ..."; n = inserted
  update    one statement per entry of "updates": q (filter), u ($set
            only), multi; n / nModified
  find      filter: equality on fields (dotted names not supported), $or,
            $exists; sort on one field; limit; batchSize + getMore;
            projection is ignored (the whole document comes back, which
            the documented behaviour allows callers to tolerate only
            because switchboard reads named fields)
  getMore, killCursors
  anything else: ok 0, code 59 CommandNotFound

Test controls (not MongoDB): none. Usage: fake_mongo.py PORT (prints
"ready" once listening on 127.0.0.1).
"""

import socketserver
import struct
import sys
import threading
import time

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013


class Int64(int):
    pass


class DateTime(int):
    pass


class Raw:
    """A BSON value kept as its type byte and bytes (ObjectId, binary, ...)."""

    def __init__(self, t, data):
        self.t, self.data = t, data

    def __eq__(self, other):
        return isinstance(other, Raw) and (self.t, self.data) == (other.t, other.data)

    def __hash__(self):
        return hash((self.t, self.data))


# -- BSON ---------------------------------------------------------------------

def _cstring(buf, i):
    j = buf.index(b"\x00", i)
    return buf[i:j].decode("utf-8"), j + 1


def decode(buf, i=0, array=False):
    size = struct.unpack_from("<i", buf, i)[0]
    end = i + size - 1
    i += 4
    out = {}
    while i < end:
        t = buf[i]
        name, i = _cstring(buf, i + 1)
        if t == 0x01:
            v = struct.unpack_from("<d", buf, i)[0]; i += 8
        elif t == 0x02:
            n = struct.unpack_from("<i", buf, i)[0]
            v = buf[i + 4:i + 4 + n - 1].decode("utf-8"); i += 4 + n
        elif t in (0x03, 0x04):
            n = struct.unpack_from("<i", buf, i)[0]
            v = decode(buf, i, t == 0x04); i += n
        elif t == 0x05:
            n = struct.unpack_from("<i", buf, i)[0]
            v = Raw(t, buf[i:i + 5 + n]); i += 5 + n
        elif t == 0x07:
            v = Raw(t, buf[i:i + 12]); i += 12
        elif t == 0x08:
            v = buf[i] == 1; i += 1
        elif t == 0x09:
            v = DateTime(struct.unpack_from("<q", buf, i)[0]); i += 8
        elif t == 0x0A:
            v = None
        elif t == 0x10:
            v = struct.unpack_from("<i", buf, i)[0]; i += 4
        elif t == 0x11:
            v = Raw(t, buf[i:i + 8]); i += 8
        elif t == 0x12:
            v = Int64(struct.unpack_from("<q", buf, i)[0]); i += 8
        else:
            raise ValueError(f"BSON type 0x{t:02x} not supported by the fake")
        out[name] = v
    return list(out.values()) if array else out


def _element(name, v):
    key = name.encode() + b"\x00"
    if isinstance(v, bool):
        return b"\x08" + key + (b"\x01" if v else b"\x00")
    if isinstance(v, Int64):
        return b"\x12" + key + struct.pack("<q", v)
    if isinstance(v, DateTime):
        return b"\x09" + key + struct.pack("<q", v)
    if isinstance(v, int):
        if -2**31 <= v < 2**31:
            return b"\x10" + key + struct.pack("<i", v)
        return b"\x12" + key + struct.pack("<q", v)
    if isinstance(v, float):
        return b"\x01" + key + struct.pack("<d", v)
    if isinstance(v, str):
        data = v.encode("utf-8")
        return b"\x02" + key + struct.pack("<i", len(data) + 1) + data + b"\x00"
    if isinstance(v, dict):
        return b"\x03" + key + encode(v)
    if isinstance(v, list):
        return b"\x04" + key + encode({str(k): x for k, x in enumerate(v)})
    if v is None:
        return b"\x0A" + key
    if isinstance(v, Raw):
        return bytes([v.t]) + key + v.data
    raise TypeError(f"cannot encode {type(v)}")


def encode(doc):
    body = b"".join(_element(k, v) for k, v in doc.items())
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


# -- the data -------------------------------------------------------------------

lock = threading.Lock()
collections = {}  # "db.coll" -> list of documents (insertion order)
indexes = {}      # "db.coll" -> list of index specs
cursors = {}      # id -> (ns, remaining documents)
next_cursor = [1000]


_missing = object()


def matches(doc, flt):
    for k, cond in flt.items():
        if k == "$or":
            if not any(matches(doc, sub) for sub in cond):
                return False
            continue
        v = doc.get(k, _missing)
        if isinstance(cond, dict) and cond and all(op.startswith("$") for op in cond):
            for op, arg in cond.items():
                if op == "$exists":
                    if (v is not _missing) != bool(arg):
                        return False
                else:
                    raise ValueError(f"operator {op} not supported by the fake")
        elif v is _missing or v != cond:
            return False
    return True


def unique_conflict(ns, doc, skip=None):
    """The name and key of a unique index (or _id) doc would duplicate."""
    for other in collections.get(ns, []):
        if other is not skip and other.get("_id") == doc.get("_id"):
            return "_id_", {"_id": doc["_id"]}
    for spec in indexes.get(ns, []):
        if not spec.get("unique"):
            continue
        partial = spec.get("partialFilterExpression")
        if partial and not matches(doc, partial):
            continue
        fields = list(spec["key"])
        key = {f: doc.get(f) for f in fields}
        for other in collections.get(ns, []):
            if other is skip or (partial and not matches(other, partial)):
                continue
            if all(other.get(f) == key[f] for f in fields):
                return spec["name"], key
    return None


def reply_error(code, name, msg):
    return {"ok": 0.0, "errmsg": msg, "code": code, "codeName": name}


def cmd_hello(db, cmd):
    return {"helloOk": True, "ismaster": True, "isWritablePrimary": True, "maxBsonObjectSize": 16777216,
            "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
            "localTime": DateTime(int(time.time() * 1000)), "connectionId": 1,
            "minWireVersion": 0, "maxWireVersion": 13, "readOnly": False, "ok": 1.0}


def cmd_create_indexes(db, cmd):
    ns = f"{db}.{cmd['createIndexes']}"
    with lock:
        have = indexes.setdefault(ns, [])
        before = len(have) + 1
        for spec in cmd["indexes"]:
            if not any(h["name"] == spec["name"] for h in have):
                have.append(spec)
        return {"createdCollectionAutomatically": ns not in collections, "numIndexesBefore": before,
                "numIndexesAfter": len(have) + 1, "ok": 1.0}


def cmd_list_indexes(db, cmd):
    ns = f"{db}.{cmd['listIndexes']}"
    with lock:
        if ns not in indexes and ns not in collections:
            return reply_error(26, "NamespaceNotFound", f"ns does not exist: {ns}")
        docs = [{"v": 2, "key": {"_id": 1}, "name": "_id_"}] + [dict(s, v=2) for s in indexes.get(ns, [])]
    return _batch(ns, docs, int(cmd.get("cursor", {}).get("batchSize", 0)), True)


def cmd_insert(db, cmd):
    ns = f"{db}.{cmd['insert']}"
    errors, n = [], 0
    with lock:
        coll = collections.setdefault(ns, [])
        for i, doc in enumerate(cmd.get("documents", [])):
            clash = unique_conflict(ns, doc)
            if clash:
                name, key = clash
                errors.append({"index": i, "code": 11000,
                               "errmsg": f"E11000 duplicate key error collection: {ns} index: {name} dup key: {key}"})
                if cmd.get("ordered", True):
                    break
                continue
            coll.append(doc)
            n += 1
    out = {"n": n, "ok": 1.0}
    if errors:
        out["writeErrors"] = errors
    return out


def cmd_update(db, cmd):
    ns = f"{db}.{cmd['update']}"
    matched = modified = 0
    with lock:
        for stmt in cmd.get("updates", []):
            u = stmt["u"]
            if any(not k.startswith("$") for k in u) or set(u) - {"$set"}:
                return reply_error(9, "FailedToParse", "the fake supports $set updates only")
            for doc in collections.get(ns, []):
                if not matches(doc, stmt.get("q", {})):
                    continue
                matched += 1
                new = dict(doc, **u.get("$set", {}))
                if new != doc:
                    doc.update(u.get("$set", {}))
                    modified += 1
                if not stmt.get("multi"):
                    break
    return {"n": matched, "nModified": modified, "ok": 1.0}


def _batch(ns, docs, size, first):
    with lock:
        if size and len(docs) > size:
            cid = next_cursor[0]
            next_cursor[0] += 1
            cursors[cid] = (ns, docs[size:])
            docs = docs[:size]
        else:
            cid = 0
    return {"cursor": {"id": Int64(cid), "ns": ns, "firstBatch" if first else "nextBatch": docs}, "ok": 1.0}


def cmd_find(db, cmd):
    ns = f"{db}.{cmd['find']}"
    with lock:
        docs = [dict(d) for d in collections.get(ns, []) if matches(d, cmd.get("filter", {}))]
    sort = cmd.get("sort") or {}
    if len(sort) > 1:
        return reply_error(2, "BadValue", "the fake sorts on one field only")
    for field, direction in sort.items():
        docs.sort(key=lambda d: (d.get(field) is None, d.get(field)), reverse=direction < 0)
    limit = abs(int(cmd.get("limit", 0)))
    if limit:
        docs = docs[:limit]
    size = int(cmd.get("batchSize", 101))
    if cmd.get("singleBatch"):
        size = 0
    return _batch(ns, docs, size, True)


def cmd_get_more(db, cmd):
    with lock:
        entry = cursors.pop(int(cmd["getMore"]), None)
    if entry is None:
        return reply_error(43, "CursorNotFound", f"cursor id {cmd['getMore']} not found")
    ns, docs = entry
    return _batch(ns, docs, int(cmd.get("batchSize", 0)), False)


def cmd_kill_cursors(db, cmd):
    with lock:
        for cid in cmd.get("cursors", []):
            cursors.pop(int(cid), None)
    return {"cursorsKilled": cmd.get("cursors", []), "ok": 1.0}


COMMANDS = {
    "hello": cmd_hello, "ismaster": cmd_hello, "isMaster": cmd_hello,
    "ping": lambda db, cmd: {"ok": 1.0},
    "endSessions": lambda db, cmd: {"ok": 1.0},
    "buildInfo": lambda db, cmd: {"version": "0.0.0-fake", "versionArray": [0, 0, 0, 0], "ok": 1.0},
    "buildinfo": lambda db, cmd: {"version": "0.0.0-fake", "versionArray": [0, 0, 0, 0], "ok": 1.0},
    "createIndexes": cmd_create_indexes,
    "listIndexes": cmd_list_indexes,
    "insert": cmd_insert,
    "update": cmd_update,
    "find": cmd_find,
    "getMore": cmd_get_more,
    "killCursors": cmd_kill_cursors,
}


def run_command(db, cmd):
    name = next(iter(cmd))
    fn = COMMANDS.get(name)
    if fn is None:
        return reply_error(59, "CommandNotFound", f"no such command: '{name}' (fake MongoDB)")
    try:
        return fn(db, cmd)
    except (KeyError, ValueError, TypeError) as e:
        return reply_error(2, "BadValue", f"fake MongoDB cannot do this: {e}")


# -- the wire -------------------------------------------------------------------

class Handler(socketserver.BaseRequestHandler):
    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                raise ConnectionError
            buf += chunk
        return buf

    def send(self, request_id, opcode, payload):
        header = struct.pack("<iiii", 16 + len(payload), request_id + 1_000_000, request_id, opcode)
        self.request.sendall(header + payload)

    def handle(self):
        try:
            while True:
                length, request_id, _, opcode = struct.unpack("<iiii", self.recv_exact(16))
                body = self.recv_exact(length - 16)
                if opcode == OP_QUERY:
                    coll, i = _cstring(body, 4)
                    cmd = decode(body, i + 8)
                    reply = run_command(coll.split(".")[0], cmd)
                    self.send(request_id, OP_REPLY, struct.pack("<iqii", 0, 0, 0, 1) + encode(reply))
                elif opcode == OP_MSG:
                    flags = struct.unpack_from("<I", body, 0)[0]
                    end = len(body) - (4 if flags & 1 else 0)
                    i, cmd = 4, None
                    while i < end:
                        kind = body[i]
                        if kind == 0:
                            size = struct.unpack_from("<i", body, i + 1)[0]
                            cmd = decode(body, i + 1)
                            i += 1 + size
                        else:  # a document sequence: an array field of the command
                            size = struct.unpack_from("<i", body, i + 1)[0]
                            name, j = _cstring(body, i + 5)
                            docs, stop = [], i + 1 + size
                            while j < stop:
                                docs.append(decode(body, j))
                                j += struct.unpack_from("<i", body, j)[0]
                            seqs = getattr(self, "_seqs", {})
                            seqs[name] = docs
                            self._seqs = seqs
                            i = stop
                    for name, docs in getattr(self, "_seqs", {}).items():
                        cmd[name] = docs
                    self._seqs = {}
                    reply = run_command(cmd.get("$db", "admin"), cmd)
                    if not flags & 2:  # moreToCome: the client wants no answer
                        self.send(request_id, OP_MSG, struct.pack("<I", 0) + b"\x00" + encode(reply))
                else:
                    sys.stderr.write(f"fake_mongo: opcode {opcode} not supported\n")
                    return
        except ConnectionError:
            return


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
