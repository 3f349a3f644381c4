#!/usr/bin/env python3
"""Checks that kamailio-module/README.md and msrpcast_rpc.c describe the same RPC commands.

- The names registered in msrpcast_rpc_cmds (msrpcast_rpc.c) and the `### msrpcast.*` headings
  under README.md's "## RPC Commands" are the same set, in the same order.
- Each command's doc string (the array named in its rpc_export_t entry, concatenated C string
  literals) equals the first paragraph under its README heading, with Markdown backticks
  removed and whitespace runs collapsed.
- Each doc array is named msrpcast_rpc_<command>_doc.

    kamailio-module/check-rpc-docs.py        # exit 0 when they agree, 1 with the differences
"""
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def norm(text):
    return " ".join(text.replace("`", "").split())


def c_side(src):
    table = re.search(r"rpc_export_t\s+msrpcast_rpc_cmds\[\]\s*=\s*\{(.*?)\n\};", src, re.S)
    if not table:
        sys.exit("check-rpc-docs: no msrpcast_rpc_cmds[] table in msrpcast_rpc.c")
    cmds = []
    for name, doc_var in re.findall(r'\{\s*"([^"]+)"\s*,\s*\w+\s*,\s*(\w+)\s*,', table.group(1)):
        body = re.search(
            r"const\s+char\s*\*\s*" + re.escape(doc_var) + r"\s*\[\d*\]\s*=\s*\{(.*?)\}\s*;",
            src,
            re.S,
        )
        if not body:
            sys.exit(f"check-rpc-docs: doc array {doc_var} of {name} not found")
        # Adjacent string literals up to the terminating 0.
        literals = re.findall(r'"((?:[^"\\]|\\.)*)"', body.group(1).split(",\n\t0")[0])
        text = "".join(lit.encode().decode("unicode_escape") for lit in literals)
        cmds.append((name, doc_var, norm(text)))
    return cmds


def readme_side(md):
    sec = re.search(r"^## RPC Commands\n(.*?)(?=^## )", md, re.S | re.M)
    if not sec:
        sys.exit("check-rpc-docs: no '## RPC Commands' section in README.md")
    out = []
    for m in re.finditer(r"^### (\S+)[^\n]*\n\n(.*?)(?:\n\n|\Z)", sec.group(1), re.S | re.M):
        out.append((m.group(1), norm(m.group(2))))
    return out


def main():
    c = c_side((HERE / "msrpcast_rpc.c").read_text())
    r = readme_side((HERE / "README.md").read_text())
    errors = []
    c_names = [n for n, _, _ in c]
    r_names = [n for n, _ in r]
    if c_names != r_names:
        errors.append(f"commands differ: msrpcast_rpc.c {c_names}, README.md {r_names}")
    docs = dict((n, t) for n, t in r)
    for name, var, text in c:
        want = "msrpcast_rpc_" + name.split(".", 1)[1] + "_doc"
        if var != want:
            errors.append(f"{name}: doc array is {var}, expected {want}")
        if name in docs and docs[name] != text:
            errors.append(f"{name}: descriptions differ\n  C:      {text}\n  README: {docs[name]}")
    for e in errors:
        print("check-rpc-docs: " + e, file=sys.stderr)
    if errors:
        return 1
    print(f"check-rpc-docs: {len(c)} RPC commands, names and descriptions agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
