#!/usr/bin/env bash
# End-to-end throughput through Kamailio: cfg/kamailio.cfg with msrpcast.so, a sipp mixer, and N
# simulated participants (sipp call into conf-bench, sipp UAS answering the file INVITE,
# `msrpcast receive --discard` so the disk is not the limit). One file is uploaded to the
# conference; the figure is N x SIZE bytes over the time from the start of the upload to the
# last receiver's complete message (the moment it sends its success REPORT), GB = 1e9 bytes.
# Every delivery must then show `done` in `kamcmd msrpcast.transfers`, or the benchmark fails.
#
#   benches/kamailio_e2e.sh            20 participants x 256 MiB
#   benches/kamailio_e2e.sh --quick    3 participants x 16 MiB
#
# stdout: `BENCH kamailio_e2e_20x256MiB <GB/s> GB/s` (the name follows N and SIZE) and
# `BENCH kamailio_e2e_ratio <x> x` = that figure / MSRPCAST_BASELINE_GBPS (set by
# scripts/bench.sh; when unset, benches/baseline.sh is run here). Everything else on stderr.
# The upload goes over HTTP when the engine serves it, else through `kamcmd msrpcast.upload`.
# Needs kamailio, sipp, kamcmd, curl, python3; builds the module and the msrpcast tool unless
# MSRPCAST_SO and MSRPCAST_BIN name them. Every process it starts is ended by its PID.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/../scripts/lib.sh"
root=$(msrpcast_root)
# shellcheck source=tests/kamailio/e2e/lib.sh
source "$root/tests/kamailio/e2e/lib.sh"

n=20
mib=256
quick=
case ${1:-} in
--quick) n=3 mib=16 quick=1 ;;
"") ;;
*) msrpcast_die "usage: benches/kamailio_e2e.sh [--quick]" ;;
esac
n=${KAMAILIO_E2E_N:-$n}
mib=${KAMAILIO_E2E_MIB:-$mib}
name=kamailio_e2e_${n}x${mib}MiB
conf=bench
bytes=$((mib * 1024 * 1024))

# Progress and tool output go to stderr; stdout carries only the BENCH lines.
exec 3>&1 1>&2

cd "$root" || exit 1
target=${CARGO_TARGET_DIR:-$root/target}
bin=${MSRPCAST_BIN:-$target/release/msrpcast}
module=${MSRPCAST_SO:-$root/kamailio-module/build/msrpcast.so}
for t in kamailio sipp kamcmd curl python3; do
    command -v "$t" >/dev/null || msrpcast_die "$t not installed (scripts/install-deps.sh)"
done
if [[ -z ${MSRPCAST_SO:-} ]]; then
    kamailio-module/build.sh || msrpcast_die "kamailio-module/build.sh failed"
fi
if [[ -z ${MSRPCAST_BIN:-} ]]; then
    cargo build --release --locked --bin msrpcast || msrpcast_die "cargo build failed"
fi
[[ -x $bin && -r $module ]] || msrpcast_die "$bin or $module missing"

baseline=${MSRPCAST_BASELINE_GBPS:-}
if [[ -z $baseline ]]; then
    baseline=$(benches/baseline.sh ${quick:+--quick} | awk '$1 == "BENCH" {print $3}')
    msrpcast_log "MSRPCAST_BASELINE_GBPS unset: measured loopback baseline $baseline GB/s"
fi

work=$(mktemp -d /tmp/msrpcast-bench.XXXXXX) || exit 1
pids=()
token=bench-token
cleanup() {
    local rc=$? p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    # A failed run keeps its logs (Kamailio, sipp, receivers) for a look afterwards.
    if [[ ${KEEP:-0} == 1 || $rc -ne 0 ]]; then
        rm -f "$work/bench.bin"
        msrpcast_log "work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

e2e_ports
e2e_start_kamailio "$work/kamailio.log" -A DEBUG_LEVEL=1 || {
    tail -20 "$work/kamailio.log"
    msrpcast_die "Kamailio did not start"
}
e2e_start_mixer
names=()
for ((i = 1; i <= n; i++)); do
    names+=("p$i")
    participant "p$i" "$conf" participant_uas.xml --discard --no-hash || msrpcast_die "participant p$i did not start"
done
wait_for 60 has_participants "$conf" "$n" ||
    msrpcast_die "the $n participants did not join within 60 s ($(participants_in "$conf") in" \
        "msrpcast.conferences; -1: no answer); logs in $work"

f=$work/bench.bin
head -c "$bytes" /dev/urandom >"$f"
msrpcast_log "$n participants in conference $conf; uploading $mib MiB"

# The receivers' state in one grep over their output files: how many printed the complete
# message of the file's size, how many printed a failure. One process per look, a look every
# 0.2 s: the machine's 2 cores are the ones under measurement, and a look must not take from them
# (20 greps every 50 ms did: ~2.6 ms of CPU per grep here).
receivers_state() { # prints "<done> <failed>"
    grep -H -m1 -E "^(received [^ ]* $bytes |failed)" "${recv_out[@]}" |
        awk '$1 ~ /:received$/ {d++} $1 ~ /:failed$/ {f++} END {print d + 0, f + 0}'
}
# last_done_at: when the last receiver completed, from the receivers' own output files. A
# receiver prints one line per message, at the moment the message is complete (its stdout is
# line-buffered, written to a file), and nothing more until it is ended: the newest modification
# time of those files is the moment the last one completed, to the nanosecond, however seldom
# the loop below looks.
last_done_at() { stat -c %.9Y "${recv_out[@]}" | sort -n | tail -n 1; }

t0=$(date +%s.%N)
upload "$conf" "$f" &
up=$!
pids+=("$up")
ok=
deadline=$((SECONDS + 600))
for ((i = 0; SECONDS < deadline; i++)); do # 600 s at most
    read -r ndone nfailed < <(receivers_state)
    ((ndone == n)) && ok=1 && break
    ((nfailed > 0)) && break
    # A delivery the engine gave up on (a participant that never answered its file INVITE, say)
    # never reaches its receiver: stop then, about once a second, rather than wait out the limit.
    if ((i % 5 == 4)) && deliveries "$conf" | awk '$2 == "failed" {f=1} END {exit !f}'; then
        break
    fi
    sleep 0.2
done
t1=$(last_done_at)
wait "$up" || msrpcast_log "upload command failed"
if [[ -z $ok ]]; then
    grep -h '^failed' "${recv_out[@]}" | head -5
    deliveries "$conf" | head -25
    msrpcast_die "not every receiver got the file (logs in $work)"
fi
if ! wait_for 30 all_terminal "$conf" "$n" ||
    [[ $(deliveries "$conf" | awk '$2 == "done"' | wc -l) -ne $n ]]; then
    deliveries "$conf" | head -25
    msrpcast_die "msrpcast.transfers does not show $n deliveries done"
fi
t2=$(date +%s.%N)

read -r gbps ratio secs < <(python3 -c '
import sys
n, b, t0, t1, base = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
g = n * b / (t1 - t0) / 1e9
r = g / float(base) if base and float(base) > 0 else float("nan")
print(f"{g:.3f} {r:.3f} {t1 - t0:.2f}")' "$n" "$bytes" "$t0" "$t1" "$baseline")
msrpcast_log "$n x $mib MiB: last receiver done after $secs s; all $n deliveries seen done in" \
    "msrpcast.transfers after $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$t2") s;" \
    "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "BENCH $name $gbps GB/s" >&3
echo "BENCH kamailio_e2e_ratio $ratio x" >&3
