#!/usr/bin/env python3
"""The Rust crates linked into msrpcast's binaries, with their licenses (scripts/deb.sh).

Reads `cargo metadata --format-version 1 --filter-platform <host>` on stdin and prints, for
every crate reached from the msrpcast package through normal dependencies (not dev-, not build-
dependencies, not through proc-macro crates, which run in the compiler and are not linked), its
name, version and license expression, then the texts of its license files. A text identical to
one printed before is named, not repeated.
"""

import json
import os
import re
import sys

LICENSE_FILE = re.compile(r"^(licen[cs]e|copying|notice|unlicense)([-_.].*)?$", re.IGNORECASE)


def main():
    meta = json.load(sys.stdin)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = next(
        (i for i in meta["workspace_members"] if packages[i]["name"] == "msrpcast"), None
    )
    if root is None:
        sys.exit("deb-crates.py: the msrpcast package is not in the metadata")

    def is_proc_macro(pid):
        return any("proc-macro" in t["kind"] for t in packages[pid]["targets"])

    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for dep in nodes[pid]["deps"]:
            normal = any(k["kind"] is None for k in dep["dep_kinds"])
            d = dep["pkg"]
            if normal and d not in seen and not is_proc_macro(d):
                seen.add(d)
                todo.append(d)
    crates = sorted((packages[i] for i in seen), key=lambda p: (p["name"], p["version"]))
    if not crates:
        sys.exit("deb-crates.py: no dependencies found")

    me = packages[root]
    print("Rust crates statically linked into msrpcast.so, /usr/bin/msrpcast or both")
    print(f"({len(crates)} crates, as resolved by Cargo.lock of msrpcast {me['version']})")
    print()
    width = max(len(p["name"]) + len(p["version"]) for p in crates) + 3
    for p in crates:
        print(f"{p['name'] + ' ' + p['version']:<{width}}{p['license'] or 'see its license file'}")

    printed = {}
    for p in crates:
        name = f"{p['name']} {p['version']}"
        print()
        print("=" * 78)
        print(f"{name}: {p['license'] or ''}")
        folder = os.path.dirname(p["manifest_path"])
        files = sorted(f for f in os.listdir(folder) if LICENSE_FILE.match(f))
        if p.get("license_file"):
            lf = os.path.normpath(os.path.join(folder, p["license_file"]))
            rel = os.path.relpath(lf, folder)
            if rel not in files:
                files.append(rel)
        if not files:
            print("(the crate ships no license file; its license is the expression above)")
        for f in files:
            path = os.path.join(folder, f)
            if not os.path.isfile(path):
                continue
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read().strip("\n").rstrip()
            print(f"--- {f} ---")
            if text in printed:
                print(f"(the same text as {printed[text]})")
            else:
                printed[text] = f"{name}, {f}"
                print(text)


if __name__ == "__main__":
    main()
