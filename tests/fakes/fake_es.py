#!/usr/bin/env python3
"""FAKE Elasticsearch: a small protocol-level stand-in, NOT Elasticsearch.

Written from Elasticsearch's documented REST behaviour for the subset
switchboard uses. The contract tests run against a real OpenSearch node;
this fake stays for the faults a real server does not make on demand (its
test controls below: a bulk request refused whole, one document refused).

Implemented (documented behaviour):
  PUT  /{index}             create with settings+mappings; 400
                            resource_already_exists_exception if it exists
  GET|HEAD /{index}         200 / 404 index_not_found_exception
  POST /_bulk, /{index}/_bulk  NDJSON "index" actions with _index, _id,
                            version + version_type external: a version not
                            higher than the stored one -> item status 409
                            version_conflict_engine_exception; per-item
                            errors, top-level "errors": true when any item
                            failed; strict mappings reject unknown fields
                            (strict_dynamic_mapping_exception), integer
                            fields reject non-integers (document_parsing_exception)
  POST /{index}/_search     bool query: filter of term queries, must of one
                            match query (operator and) on a text field
                            analysed by the index's ngram tokenizer +
                            lowercase filter; from/size; sort by _score then
                            a field; hits.total {value, relation}
  POST /{index}/_refresh    (writes are visible at once here)
  GET  /                    cluster info

Test controls (not Elasticsearch; under /_fake):
  POST /_fake/bulk_status   {"status": 429, "count": n}: the next n bulk
                            requests fail whole with that status
  POST /_fake/item_error    {"id": "...", "status": 400, "type": "...",
                            "reason": "..."}: that document's item fails
  GET  /_fake/stats         {"bulk_requests": n, "search_requests": n}

Usage: fake_es.py PORT   (prints "ready" once listening on 127.0.0.1)
"""

import json
import math
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
INDICES = {}
CONTROL = {"bulk_status": None, "bulk_count": 0, "item_errors": {}}
STATS = {"bulk_requests": 0, "search_requests": 0}


def es_error(status, etype, reason, index=None):
    err = {"type": etype, "reason": reason}
    if index:
        err["index"] = index
    return status, {"error": {"root_cause": [err], **err}, "status": status}


def analyzer_of(index, field):
    """(min_gram, max_gram, lowercase) of the field's analyzer; falls back to
    the standard analyzer (whole words, lowercase)."""
    idx = INDICES[index]
    props = idx["mappings"].get("properties", {})
    name = props.get(field, {}).get("search_analyzer") or props.get(field, {}).get("analyzer")
    analysis = idx["settings"].get("analysis", {})
    an = analysis.get("analyzer", {}).get(name) if name else None
    if not an:
        return None
    tok = analysis.get("tokenizer", {}).get(an.get("tokenizer"), {})
    if tok.get("type") != "ngram":
        return None
    return tok.get("min_gram", 1), tok.get("max_gram", 2), "lowercase" in an.get("filter", [])


def analyze(index, field, text):
    spec = analyzer_of(index, field)
    if spec is None:
        return [w.lower() for w in re.findall(r"\w+", text)]
    lo, hi, lower = spec
    terms = []
    for run in re.findall(r"[^\W_]+", text):  # letter/digit token_chars
        if lower:
            run = run.lower()
        for n in range(lo, hi + 1):
            terms += [run[i:i + n] for i in range(len(run) - n + 1)]
    return terms


def check_doc(index, source):
    props = INDICES[index]["mappings"].get("properties", {})
    strict = INDICES[index]["mappings"].get("dynamic") == "strict"
    for k, v in source.items():
        if k not in props:
            if strict:
                return ("strict_dynamic_mapping_exception",
                        f"mapping set to strict, dynamic introduction of [{k}] within [_doc] is not allowed")
            continue
        t = props[k].get("type")
        if t in ("integer", "long") and not (isinstance(v, int) and not isinstance(v, bool)):
            return ("document_parsing_exception", f"failed to parse field [{k}] of type [{t}]")
    return None


def do_bulk(path_index, body):
    lines = [l for l in body.split(b"\n") if l.strip()]
    items, errors = [], False
    i = 0
    while i < len(lines):
        action = json.loads(lines[i])
        op, meta = next(iter(action.items()))
        index = meta.get("_index") or path_index
        doc_id = meta.get("_id")
        source = json.loads(lines[i + 1]) if op in ("index", "create") else None
        i += 2 if source is not None else 1
        item = {"_index": index, "_id": doc_id}
        with LOCK:
            forced = CONTROL["item_errors"].get(doc_id)
            if forced:
                item.update(status=forced["status"], error={"type": forced["type"], "reason": forced["reason"]})
            elif index not in INDICES:
                item.update(status=404, error={"type": "index_not_found_exception", "reason": f"no such index [{index}]"})
            else:
                docs = INDICES[index]["docs"]
                bad = check_doc(index, source)
                cur = docs.get(doc_id)
                ver = meta.get("version")
                if bad:
                    item.update(status=400, error={"type": bad[0], "reason": bad[1]})
                elif meta.get("version_type") == "external" and cur and ver <= cur["_version"]:
                    item.update(status=409, error={
                        "type": "version_conflict_engine_exception",
                        "reason": f"[{doc_id}]: version conflict, current version [{cur['_version']}] "
                                  f"is higher or equal to the one provided [{ver}]"})
                else:
                    new_ver = ver if meta.get("version_type") == "external" else (cur["_version"] + 1 if cur else 1)
                    docs[doc_id] = {"_version": new_ver, "_source": source}
                    item.update(status=200 if cur else 201, result="updated" if cur else "created",
                                _version=new_ver)
        errors |= item["status"] >= 300
        items.append({op: item})
    return 200, {"took": 1, "errors": errors, "items": items}


def do_search(index, q):
    if index not in INDICES:
        return es_error(404, "index_not_found_exception", f"no such index [{index}]", index)
    query = q.get("query", {"match_all": {}})
    filters, musts = [], []
    if "bool" in query:
        filters = query["bool"].get("filter", [])
        musts = query["bool"].get("must", [])
        if isinstance(filters, dict):
            filters = [filters]
        if isinstance(musts, dict):
            musts = [musts]
    hits = []
    with LOCK:
        docs = list(INDICES[index]["docs"].items())
    for doc_id, d in docs:
        src = d["_source"]
        if not all(src.get(k) == v for f in filters for k, v in f.get("term", {}).items()):
            continue
        score, ok = 0.0, True
        for m in musts:
            field, spec = next(iter(m["match"].items()))
            if not isinstance(spec, dict):
                spec = {"query": spec}
            qterms = analyze(index, field, spec["query"])
            dterms = analyze(index, field, str(src.get(field, "")))
            if not qterms:
                ok = False
                break
            present = [t for t in qterms if t in dterms]
            if spec.get("operator", "or").lower() == "and" and len(present) != len(qterms):
                ok = False
                break
            if not present:
                ok = False
                break
            # tf / length normalisation, in the spirit of BM25
            score += sum(dterms.count(t) for t in present) / math.sqrt(len(dterms))
        if ok:
            hits.append({"_index": index, "_id": doc_id, "_score": round(score, 6), "_source": src})
    sort = q.get("sort", ["_score"])
    def key(h):
        k = []
        for s in sort:
            if s == "_score":
                k.append(-h["_score"])
            else:
                field, order = (s, "asc") if isinstance(s, str) else next(iter(s.items()))
                order = order if isinstance(order, str) else order.get("order", "asc")
                v = h["_source"].get(field, 0)
                k.append(-v if order == "desc" else v)
        return k
    hits.sort(key=key)
    start, size = q.get("from", 0), q.get("size", 10)
    page = hits[start:start + size]
    return 200, {"took": 1, "timed_out": False,
                 "hits": {"total": {"value": len(hits), "relation": "eq"},
                          "max_score": max((h["_score"] for h in hits), default=None), "hits": page}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def route(self):
        path = self.path.split("?")[0].rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        m, body = self.command, self.body()
        if path == "/" and m in ("GET", "HEAD"):
            return 200, {"name": "fake-es", "version": {"number": "8.0.0-fake"}, "tagline": "FAKE"}
        if parts[:1] == ["_fake"]:
            req = json.loads(body or b"{}")
            with LOCK:
                if parts[1:] == ["bulk_status"]:
                    CONTROL["bulk_status"], CONTROL["bulk_count"] = req["status"], req.get("count", 1)
                elif parts[1:] == ["item_error"]:
                    CONTROL["item_errors"][req["id"]] = req
                elif parts[1:] == ["stats"]:
                    return 200, dict(STATS)
            return 200, {"ok": True}
        if parts and parts[-1] == "_bulk" and m in ("POST", "PUT"):
            with LOCK:
                STATS["bulk_requests"] += 1
                if CONTROL["bulk_count"] > 0:
                    CONTROL["bulk_count"] -= 1
                    st = CONTROL["bulk_status"]
                    return es_error(st, "es_rejected_execution_exception" if st == 429 else "fake_failure",
                                    "rejected by the fake on request")
            return do_bulk(parts[0] if len(parts) == 2 else None, body)
        if len(parts) == 2 and parts[1] == "_search" and m in ("GET", "POST"):
            with LOCK:
                STATS["search_requests"] += 1
            return do_search(parts[0], json.loads(body or b"{}"))
        if len(parts) == 2 and parts[1] == "_refresh":
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if len(parts) == 1:
            index = parts[0]
            if m == "PUT":
                with LOCK:
                    if index in INDICES:
                        return es_error(400, "resource_already_exists_exception",
                                        f"index [{index}] already exists", index)
                    spec = json.loads(body or b"{}")
                    INDICES[index] = {"settings": spec.get("settings", {}).get("index", {}) | spec.get("settings", {}),
                                      "mappings": spec.get("mappings", {}), "docs": {}}
                return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}
            if m in ("GET", "HEAD"):
                if index not in INDICES:
                    return es_error(404, "index_not_found_exception", f"no such index [{index}]", index)
                return 200, {index: {"mappings": INDICES[index]["mappings"]}}
            if m == "DELETE":
                with LOCK:
                    INDICES.pop(index, None)
                return 200, {"acknowledged": True}
        return es_error(400, "illegal_argument_exception", f"fake: unsupported {m} {path}")

    def handle_one(self):
        try:
            status, body = self.route()
        except (ValueError, KeyError, StopIteration) as e:
            status, body = es_error(400, "parse_exception", f"fake: {e!r}")
        self.reply(status, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_one


def main():
    port = int(sys.argv[1])
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
