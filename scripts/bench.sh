#!/usr/bin/env bash
# `make bench`: the loopback baseline first, then every benchmark, printing only
# `BENCH <name> <value> <unit>` lines on stdout (everything else goes to stderr).
#
#   scripts/bench.sh [--quick]      --quick: 1 s baseline, benches get `-- --quick`
#
# Environment:
#   BENCHES        cargo bench targets to run, in order (default: msrp). A name that is not a
#                  bench target of the package fails the run (reported on stderr).
#   BENCH_SCRIPTS  further executables that print BENCH lines (e.g. the Kamailio end-to-end
#                  benchmark), run after the cargo benches.
# Every benchmark gets MSRPCAST_BASELINE_GBPS (the baseline of this run, GB/s) in its
# environment, for its `..._ratio` lines. Exit status: non-zero if any benchmark failed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(msrpcast_root)"

quick=
[[ ${1:-} == --quick ]] && quick=1
BENCHES=${BENCHES-msrp}
BENCH_SCRIPTS=${BENCH_SCRIPTS-}
status=0

# BENCH lines to stdout, the rest to stderr.
only_bench_lines() { awk '/^BENCH / { print; fflush(); next } { print > "/dev/stderr" }'; }

# The scale benchmarks hold 10,000 connections: as many descriptors as the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || msrpcast_log "cannot raise the open-file limit"

line=$(benches/baseline.sh ${quick:+--quick}) || msrpcast_die "baseline failed"
echo "$line"
MSRPCAST_BASELINE_GBPS=$(awk '{ print $3 }' <<<"$line")
export MSRPCAST_BASELINE_GBPS
# iperf3's zero-copy (sendfile) sender: the kernel's limit for the engine's plain-TCP body path.
benches/baseline.sh ${quick:+--quick} --sendfile || msrpcast_log "sendfile baseline failed"

targets=$(cargo metadata --no-deps --format-version 1 --locked 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    for t in p["targets"]:
        if "bench" in t["kind"]:
            print(t["name"])') || msrpcast_die "cargo metadata failed"

for b in $BENCHES; do
    if ! grep -qx "$b" <<<"$targets"; then
        msrpcast_log "bench '$b' is not a bench target of the package"
        status=1
        continue
    fi
    msrpcast_log "cargo bench --bench $b"
    if ! cargo bench --locked --bench "$b" -- ${quick:+--quick} 2>&1 | only_bench_lines; then
        msrpcast_log "bench '$b' failed"
        status=1
    fi
done

for s in $BENCH_SCRIPTS; do
    msrpcast_log "$s"
    if ! "$s" ${quick:+--quick} 2>&1 | only_bench_lines; then
        msrpcast_log "$s failed"
        status=1
    fi
done
exit $status
