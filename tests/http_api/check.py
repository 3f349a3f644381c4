#!/usr/bin/env python3
"""Checks msrpcast's HTTP API against docs/openapi.json, and parses /metrics (tests/http_api.rs).

  check.py routes DOC             prints "METHOD /path" for every operation of the document
  check.py validate DOC RECORDS   validates recorded responses (JSON list) against the document
  check.py metrics FILE           parses Prometheus text with prometheus_client.parser, checks
                                  the naming conventions, prints {"name{labels}": value} as JSON

Needs Debian's python3-jsonschema and python3-prometheus-client (scripts/install-deps.sh).
"""
import json
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def resolve(doc, obj):
    while isinstance(obj, dict) and "$ref" in obj:
        node = doc
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def routes(doc):
    for path, item in doc["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "delete", "patch", "options", "head"):
                print(method.upper(), path)


def validate(doc, records):
    from jsonschema import Draft202012Validator

    def check(schema, value):
        full = dict(schema)
        full["components"] = doc["components"]
        return [e.message for e in Draft202012Validator(full).iter_errors(value)]

    failures = []
    covered = set()
    for r in records:
        where = f'{r["method"]} {r["template"]} -> {r["status"]}'
        op = doc["paths"].get(r["template"], {}).get(r["method"].lower())
        if op is None:
            failures.append(f"{where}: no such operation in the document")
            continue
        resp = op["responses"].get(str(r["status"])) or op["responses"].get("default")
        if resp is None:
            failures.append(f"{where}: status not documented")
            continue
        resp = resolve(doc, resp)
        content = resp.get("content")
        ctype = (r.get("content_type") or "").split(";")[0].strip().lower()
        body = r.get("body", "")
        if content is None:
            if body:
                failures.append(f"{where}: documented without content, got {len(body)} bytes")
            else:
                covered.add((r["method"], r["template"], r["status"]))
            continue
        if ctype not in content:
            failures.append(f"{where}: content type {ctype!r} not documented ({list(content)})")
            continue
        media = content[ctype]
        if r.get("sse_event"):
            schema = media.get("x-event-data", {}).get(r["sse_event"])
            if schema is None:
                failures.append(f'{where}: SSE event {r["sse_event"]!r} not documented')
                continue
            errors = check(schema, json.loads(body))
        elif ctype == "application/json":
            try:
                value = json.loads(body)
            except ValueError as e:
                failures.append(f"{where}: body is not JSON: {e}: {body[:200]!r}")
                continue
            errors = check(media.get("schema", {}), value)
        else:
            errors = []
        if errors:
            failures.append(f"{where}: {errors[:3]} in {body[:300]!r}")
        else:
            covered.add((r["method"], r["template"], r["status"]))
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    ok_ops = {(m, p) for (m, p, s) in covered if 200 <= s < 400}
    for m, p in sorted(ops - ok_ops):
        failures.append(f"{m} {p}: no successful response was exercised")
    for f in failures:
        print("FAIL", f)
    print(f"{len(records)} responses, {len(covered)} distinct (route, status) valid, "
          f"{len(ok_ops)} of {len(ops)} operations answered successfully, {len(failures)} failures")
    return not failures


def metrics(text):
    from prometheus_client.parser import text_string_to_metric_families

    problems = []
    values = {}
    # The parser adds _total to counter samples itself, so the exposition is checked as written.
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"] and parts[3] == "counter":
            if not parts[2].endswith("_total"):
                problems.append(f"counter {parts[2]} does not end in _total")
    for fam in text_string_to_metric_families(text):
        name = fam.name
        if "bytes" in name and not name.endswith("_bytes"):
            problems.append(f"{name}: a size in bytes must end in _bytes (or _bytes_total)")
        if ("seconds" in name or "latency" in name or "duration" in name) and not name.endswith("_seconds"):
            problems.append(f"{name}: a time must be in seconds and end in _seconds")
        if name.endswith("_ms") or "_millis" in name:
            problems.append(f"{name}: milliseconds; use _seconds")
        if fam.type == "histogram":
            buckets = [(float(s.labels["le"]), s.value) for s in fam.samples if s.name.endswith("_bucket")]
            counts = [s.value for s in fam.samples if s.name.endswith("_count")]
            if not buckets or buckets[-1][0] != float("inf") or not counts or buckets[-1][1] != counts[0]:
                problems.append(f"histogram {name}: +Inf bucket missing or not equal to _count")
            if any(b[1] > c[1] for b, c in zip(buckets, buckets[1:])) or any(
                    b[0] >= c[0] for b, c in zip(buckets, buckets[1:])):
                problems.append(f"histogram {name}: buckets not cumulative")
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            values[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    for p in problems:
        print("FAIL", p, file=sys.stderr)
    print(json.dumps(values, sort_keys=True))
    return not problems


def main():
    cmd = sys.argv[1]
    if cmd == "routes":
        routes(load(sys.argv[2]))
        return 0
    if cmd == "validate":
        return 0 if validate(load(sys.argv[2]), load(sys.argv[3])) else 1
    if cmd == "metrics":
        with open(sys.argv[2], encoding="utf-8") as f:
            return 0 if metrics(f.read()) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
