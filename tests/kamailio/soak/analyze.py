#!/usr/bin/env python3
"""The soak's after-the-fact checks and figures (tests/kamailio/soak/soak.sh runs it).

Reads, from the soak's work directory: kamailio.log (Kamailio's and the engine's log),
uploads.tsv (phase, conference, file, HTTP status per upload), participants.tsv (name, call id,
conference, misbehaviour, receiver output) and files.tsv (path, size, SHA-1 of each uploaded file).

Checks:
  - every upload was accepted (HTTP 201);
  - every delivery the engine started has an end line in the log (done, or failed / cancelled
    with a reason), exactly as the engine logs them;
  - no delivery to a well-behaved participant failed (a cancellation because the participant left
    is not a failure), and no delivery to a receiver that breaks every transfer (all modes but
    rate=) is done;
  - every file a well-behaved receiver reported complete has the size and SHA-1 of an uploaded
    file, and it reported at least as many as the engine delivered to it;
  - no ERROR (nor CRITICAL, BUG, ALERT) in Kamailio's log except the EXPECTED ones below; after
    the first LOG_LINES lines (the soak; the rest is Kamailio's shutdown on SIGTERM), none but
    the EXPECTED_AT_SHUTDOWN ones.
Usage: analyze.py WORK_DIR LOG_LINES.
Prints the figures; exits 1 when a check fails.
"""

import collections
import os
import re
import sys

# Kamailio log lines at level ERROR that the soak provokes on purpose, with why. Anything else at
# ERROR (or CRITICAL/BUG/ALERT) fails the soak.
EXPECTED = [
    # (name, regex on the line, why)
]

# At shutdown (SIGTERM), Kamailio's TCP main process reads EOF on the descriptor-passing socket of
# each TCP worker that exited before it: Kamailio's core logs that at CRITICAL.
EXPECTED_AT_SHUTDOWN = [
    (
        "tcp_main sees its workers exit",
        r"CRITICAL: <core> \[core/pass_fd\.c:\d+\]: receive_fd\(\): EOF on \d+$",
        "Kamailio's own shutdown order",
    ),
]

LEVEL = re.compile(r"\b(ERROR|CRITICAL|BUG|ALERT|EMERGENCY):")
OFFER = re.compile(r'engine: delivery (\d+): offering transfer (\d+) to "([^"]*)"')
DONE = re.compile(r'engine: delivery (\d+): transfer (\d+) delivered to "([^"]*)" \((\d+) bytes[,)]')
ENDED = re.compile(r'engine: delivery (\d+): transfer (\d+) to "([^"]*)" (failed|cancelled): (.*)$')
FAILED = re.compile(r"engine: delivery (\d+) failed: (.*)$")


def generic(reason):
    """A reason with its figures replaced, to count reasons of one kind together."""
    reason = re.sub(r"\b\d+(\.\d+)?\b", "N", reason)
    return reason.strip()


def main():
    work = sys.argv[1]
    soak_lines = int(sys.argv[2])
    bad = []

    def check(ok, what):
        if not ok:
            bad.append(what)
        return ok

    # Uploads.
    codes = collections.Counter()
    phases = collections.Counter()
    upload_bytes = 0
    sizes = {}
    shas = {}
    for line in open(os.path.join(work, "files.tsv")):
        path, size, sha = line.rstrip("\n").split("\t")
        sizes[os.path.basename(path)] = int(size)
        shas[(int(size), sha)] = os.path.basename(path)
    try:
        for line in open(os.path.join(work, "uploads.tsv")):
            phase, conf, name, code = line.rstrip("\n").split("\t")
            codes[code] += 1
            phases[phase] += 1
            if code == "201":
                upload_bytes += sizes.get(name, 0)
    except FileNotFoundError:
        pass
    n_up = sum(codes.values())
    print(
        f"uploads:      {n_up} ({', '.join(f'{p} {n}' for p, n in sorted(phases.items()))}); "
        f"HTTP {', '.join(f'{c}: {n}' for c, n in sorted(codes.items()))}; "
        f"{upload_bytes / 1048576:.1f} MiB accepted"
    )
    check(n_up > 0 and codes["201"] == n_up, f"uploads not all accepted: {dict(codes)}")

    # Participants.
    parts = {}
    for line in open(os.path.join(work, "participants.tsv")):
        name, cid, conf, mode, out = line.rstrip("\n").split("\t")
        parts[cid] = (name, conf, mode, out)

    # Deliveries, from the engine's log lines.
    started = {}
    ended = {}
    unexpected = []
    expected = collections.Counter()
    for i, line in enumerate(open(os.path.join(work, "kamailio.log"), errors="replace")):
        line = line.rstrip("\n")
        if i >= soak_lines:
            if LEVEL.search(line):
                for name, rx, _ in EXPECTED_AT_SHUTDOWN:
                    if re.search(rx, line):
                        expected[f"{name} (shutdown)"] += 1
                        break
                else:
                    unexpected.append(f"(at shutdown) {line}")
            continue
        m = OFFER.search(line)
        if m:
            started.setdefault(m.group(1), m.group(3))
            continue
        m = DONE.search(line)
        if m:
            ended.setdefault(m.group(1), (m.group(3), "done", ""))
            started.setdefault(m.group(1), m.group(3))
            continue
        m = ENDED.search(line)
        if m:
            ended.setdefault(m.group(1), (m.group(3), m.group(4), m.group(5)))
            started.setdefault(m.group(1), m.group(3))
            continue
        m = FAILED.search(line)
        if m:
            who = started.get(m.group(1), "?")
            ended.setdefault(m.group(1), (who, "failed", m.group(2)))
            started.setdefault(m.group(1), who)
            continue
        if LEVEL.search(line):
            for name, rx, _ in EXPECTED:
                if re.search(rx, line):
                    expected[name] += 1
                    break
            else:
                unexpected.append(line)

    outcome = collections.Counter()
    reasons = collections.Counter()
    by_mode = collections.defaultdict(collections.Counter)
    no_reason = []
    good_failed = []
    bad_done = []
    done_to = collections.Counter()
    for d, who in started.items():
        if d not in ended:
            continue
        _, state, reason = ended[d]
        outcome[state] += 1
        mode = parts.get(who, ("?", "?", "?", ""))[2]
        kind = mode.split("=")[0] if mode != "-" else "well-behaved"
        by_mode[kind][state] += 1
        if state == "done":
            done_to[who] += 1
            if kind not in ("well-behaved", "rate", "not-started"):
                bad_done.append(f"delivery {d} to {who} ({mode})")
            continue
        if not reason.strip():
            no_reason.append(d)
        reasons[f"{state}: {generic(reason)}"] += 1
        if state == "failed" and kind == "well-behaved":
            # (A participant whose sipp could not start is "not-started", not well-behaved.)
            good_failed.append(f"delivery {d} to {who}: {reason}")
    stuck = sorted((d for d in started if d not in ended), key=int)
    print(
        f"deliveries:   {len(started)} started, {outcome['done']} done, "
        f"{outcome['failed']} failed, {outcome['cancelled']} cancelled, {len(stuck)} without an end"
    )
    for r, n in reasons.most_common():
        print(f"   {n:6d}  {r}")
    for kind in sorted(by_mode):
        c = by_mode[kind]
        print(f"   {kind:>14}: " + ", ".join(f"{s} {n}" for s, n in sorted(c.items())))
    check(started, "no delivery started")
    if not check(not stuck, f"{len(stuck)} deliveries have no end line in the log"):
        for d in stuck[:20]:
            print(f"   no end: delivery {d} to {started[d]}")
    check(not no_reason, f"deliveries ended without a reason: {no_reason[:20]}")
    if not check(not good_failed, f"{len(good_failed)} deliveries to well-behaved participants failed"):
        for x in good_failed[:20]:
            print(f"   {x}")
    if not check(not bad_done, f"{len(bad_done)} deliveries to broken receivers were done"):
        for x in bad_done[:20]:
            print(f"   {x}")

    # What the well-behaved receivers got.
    whole = 0
    whole_bytes = 0
    wrong = []
    short = []
    for cid, (name, _conf, mode, out) in parts.items():
        if mode != "-":  # misbehaving or not-started
            continue
        got = 0
        try:
            lines = open(out, errors="replace").read().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            f = line.split(" ")
            if f[0] != "received" or len(f) < 4:
                continue
            got += 1
            if (int(f[2]), f[3]) not in shas:
                wrong.append(f"{name}: {line}")
            else:
                whole_bytes += int(f[2])
        whole += got
        if got < done_to[cid]:
            short.append(f"{name}: {got} files received, {done_to[cid]} deliveries done")
    print(
        f"receivers:    well-behaved ones got {whole} whole files ({whole_bytes / 1048576:.1f} MiB), "
        "each the size and SHA-1 of an uploaded file"
        if not wrong
        else f"receivers:    {len(wrong)} files unlike any uploaded one"
    )
    if not check(not wrong, f"{len(wrong)} received files unlike any uploaded one"):
        for x in wrong[:10]:
            print(f"   {x}")
    if not check(not short, f"{len(short)} receivers got fewer files than delivered to them"):
        for x in short[:10]:
            print(f"   {x}")

    # Kamailio's log.
    print(
        f"kamailio log: {sum(expected.values())} expected error lines"
        + "".join(f"; {n} x {name}" for name, n in sorted(expected.items()))
        + f"; {len(unexpected)} unexpected"
    )
    if not check(not unexpected, f"{len(unexpected)} unexpected ERROR lines in Kamailio's log"):
        for line in unexpected[:20]:
            print(f"   {line[:300]}")

    for b in bad:
        print(f"FAIL - {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
