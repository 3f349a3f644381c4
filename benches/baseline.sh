#!/usr/bin/env bash
# The loopback limit of this machine, measured in the same run as the figures compared with it:
# one iperf3 (Debian) TCP stream on 127.0.0.1 with 1 MiB writes.
#
#   benches/baseline.sh [-t SECONDS] [--quick] [--sendfile]    (default 5 s; --quick = 1 s)
#
# Prints one line on stdout: `BENCH loopback_tcp_baseline <GB/s> GB/s` (GB = 1e9 bytes, the
# receiver's figure); anything else goes to stderr. With --sendfile the sender is iperf3's
# zero-copy mode (`-Z`: `sendfile` from a file, what the engine does with file bodies on plain
# TCP) and the line is `BENCH loopback_tcp_sendfile_baseline …`: on some machines the kernel's
# `sendfile` path is far slower on loopback than 1 MiB writes (it hands the socket 64 KiB at a
# time, and each piece is sent, and wakes the reader, on its own). The iperf3 server is a
# one-shot (`-s -1`) on a free port, ended by its PID if still there.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

secs=5
zerocopy=()
name=loopback_tcp_baseline
while (($#)); do
    case $1 in
    -t) secs=$2; shift 2 ;;
    --quick) secs=1; shift ;;
    --sendfile) zerocopy=(-Z); name=loopback_tcp_sendfile_baseline; shift ;;
    *) msrpcast_die "usage: baseline.sh [-t SECONDS] [--quick] [--sendfile]" ;;
    esac
done
command -v iperf3 >/dev/null || msrpcast_die "iperf3 not installed (scripts/install-deps.sh)"

port=$(msrpcast_free_port)
tmp=$(mktemp -d)
iperf3 -s -1 -B 127.0.0.1 -p "$port" >"$tmp/server.log" 2>&1 </dev/null &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
msrpcast_wait_listen "$port" 5 "$server" ||
    { cat "$tmp/server.log" >&2; msrpcast_die "iperf3 server did not start"; }

iperf3 -c 127.0.0.1 -p "$port" -l 1M -t "$secs" "${zerocopy[@]}" -J >"$tmp/client.json" 2>"$tmp/client.err" </dev/null ||
    { cat "$tmp/client.err" "$tmp/client.json" >&2; msrpcast_die "iperf3 client failed"; }
python3 - "$tmp/client.json" "$name" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    r = json.load(f)
if "error" in r:
    sys.exit(f"iperf3: {r['error']}")
bps = r["end"]["sum_received"]["bits_per_second"]
print(f"BENCH {sys.argv[2]} {bps / 8 / 1e9:.2f} GB/s")
EOF
