#!/usr/bin/env bash
# End-to-end tests of the Kamailio module: a real Kamailio with cfg/kamailio.cfg and
# msrpcast.so, a sipp mixer, and simulated participants (per participant: a sipp UAC that calls
# conf-<id>, a sipp UAS that answers the file INVITE, and a `msrpcast receive` process that the
# UAS's SDP answer points at).
#
#   tests/kamailio/e2e/e2e.sh            all scenarios
#   E2E_ONLY="main 486" tests/kamailio/e2e/e2e.sh
#
# Scenarios: main (3 participants, 32 MiB, SHA-1 at each receiver, BYE per file session,
# msrpcast.transfers), 486 (one participant rejects the file INVITE), hangup (a participant
# hangs up mid-transfer), late (a participant joins after the upload), load (E2E_LOAD_N=20
# participants receive E2E_LOAD_MIB=256 MiB each while SIP OPTIONS must be answered within 50 ms;
# no Kamailio process dies; the engine's RSS returns near its idle size), and the sourced
# scenario_*.sh ones (tls, restart, offerin: a participant sends a file to the room).
# Prints one line per check and `N passed, M failed`; exits non-zero on any failure.
# Needs: kamailio, sipp, kamcmd, curl, python3 and the module built (kamailio-module/build.sh);
# builds the msrpcast binary (cargo build --release) unless MSRPCAST_BIN names one.
# KEEP=1 keeps the work directory (it is also kept when a check fails).
# The pieces (Kamailio, mixer, participants, kamcmd queries) live in lib.sh, shared with
# scripts/demo.sh and benches/kamailio_e2e.sh.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/../../../scripts/lib.sh"
# shellcheck source=tests/kamailio/e2e/lib.sh
source "$here/lib.sh"
root=$(msrpcast_root)
target=${CARGO_TARGET_DIR:-$root/target}
bin=${MSRPCAST_BIN:-$target/release/msrpcast}
module=${MSRPCAST_SO:-$root/kamailio-module/build/msrpcast.so}
only=${E2E_ONLY:-main 486 hangup late load}
size_mib=${E2E_SIZE_MIB:-32}

if [[ -z ${MSRPCAST_BIN:-} ]]; then
    (cd "$root" && cargo build --release --locked --bin msrpcast) || msrpcast_die "cargo build failed"
fi
[[ -x $bin ]] || msrpcast_die "$bin missing (cargo build --release)"
[[ -r $module ]] || msrpcast_die "$module missing (kamailio-module/build.sh)"
for t in kamailio sipp kamcmd curl python3; do
    command -v "$t" >/dev/null || msrpcast_die "$t not installed"
done

work=$(mktemp -d /tmp/msrpcast-e2e.XXXXXX)
mkdir -p "$work/run" "$work/spool"
E2E_ON_ERROR=fail
passed=0
failed=0
pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null
    done
    if [[ ${KEEP:-0} == 1 || $failed -gt 0 ]]; then
        echo "work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

ok() { echo "ok   - $*"; passed=$((passed + 1)); }
fail() { echo "FAIL - $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; return 1; fi
}

e2e_ports
token=e2e-token-T

# ---------------------------------------------------------------------------------------------
# The cfg's defaults load; a bad parameter is refused with a message naming it.

if kamailio -c -f "$root/cfg/kamailio.cfg" -A "MSRPCAST_MODULE=\"$module\"" >"$work/check.log" 2>&1; then
    ok "kamailio -c accepts cfg/kamailio.cfg with its defaults"
else
    fail "kamailio -c accepts cfg/kamailio.cfg with its defaults"
    tail -5 "$work/check.log"
fi
if kamailio -c -f "$root/cfg/kamailio.cfg" -A "MSRPCAST_MODULE=\"$module\"" \
    -A 'MSRPCAST_CHUNK_BYTES="0"' >"$work/check-bad.log" 2>&1; then
    fail "a bad modparam (chunk_bytes 0) is refused"
else
    check "a bad modparam is refused with a message naming it: $(grep -o 'modparam msrpcast chunk_bytes: .*' "$work/check-bad.log" | head -1)" \
        grep -q "modparam msrpcast chunk_bytes: " "$work/check-bad.log"
fi

# ---------------------------------------------------------------------------------------------
# Kamailio with the module, and the mixer

if e2e_start_kamailio "$work/kamailio.log" -A DEBUG_LEVEL="${E2E_DEBUG:-2}"; then
    ok "kamailio starts with msrpcast.so (SIP $sip_port, MSRP $msrp_port, HTTP $http_port)"
else
    fail "kamailio starts with msrpcast.so"
    tail -30 "$work/kamailio.log"
    echo "$passed passed, $failed failed"
    exit 1
fi

e2e_start_mixer

# ---------------------------------------------------------------------------------------------
# Participants

not() { ! "$@"; }
proc_exited_ok() { # proc_exited_ok PID: exited with status 0 (waits at most 20 s)
    local i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    wait "$1"
}

mkfile() { # mkfile NAME MIB -> path; sets sha
    head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$work/$1"
    echo "$work/$1"
}
sha1() { sha1sum "$1" | cut -d' ' -f1; }

# The RPC replies are structures: real JSON through jsonrpcs, fields in kamcmd.
rpc_json_is_object() { # rpc_json_is_object METHOD
    kam_jsonrpc "$1" | python3 -c 'import json, sys; sys.exit(0 if isinstance(json.load(sys.stdin), dict) else 1)'
}
rpc_json_has_deliveries() { # rpc_json_has_deliveries CONF N: N deliveries, ids and bytes numbers
    kam_jsonrpc msrpcast.transfers | python3 -c '
import json, sys
d = json.load(sys.stdin)
ts = [t for t in d["transfers"] if t["conference"] == sys.argv[1]]
ok = all(isinstance(t["id"], int) for t in ts)
n = sum(len(t["deliveries"]) for t in ts)
sys.exit(0 if ok and n == int(sys.argv[2]) else 1)' "$1" "$2"
}
# msrpcast.upload over the control socket: kamcmd shows `transfer: <number>`, and that transfer
# is the one msrpcast.transfers lists for the conference (sets rpc_transfer).
rpc_transfer=
kamcmd_upload() { # kamcmd_upload CONF FILE
    local out
    out=$(kam msrpcast.upload "$1" "$2") || { echo "   kamcmd: $out"; return 1; }
    echo "$out" | sed 's/^/   kamcmd: /'
    rpc_transfer=$(sed -n 's/^[[:space:]]*transfer:[[:space:]]*\([0-9][0-9]*\)[[:space:]]*$/\1/p' <<<"$out")
    [[ -n $rpc_transfer ]] || return 1
    kam_jsonrpc msrpcast.transfers | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(t["id"] == int(sys.argv[1]) and t["conference"] == sys.argv[2]
                  for t in d["transfers"]) else 1)' "$rpc_transfer" "$1"
}
rpc_upload_refused() { # rpc_upload_refused CONF FILE WORD: an RPC error naming WORD, both ways
    local out
    out=$(kam msrpcast.upload "$1" "$2" 2>&1 || true)
    echo "   kamcmd: $out"
    grep -qi error <<<"$out" && grep -q "$3" <<<"$out" || return 1
    out=$(curl -s --max-time 10 -d "{\"jsonrpc\":\"2.0\",\"method\":\"msrpcast.upload\",\"params\":[\"$1\",\"$2\"],\"id\":1}" \
        "http://127.0.0.1:$jsonrpc_port/RPC")
    echo "   jsonrpcs: $out"
    python3 -c '
import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if "error" in d and sys.argv[2] in d["error"]["message"] else 1)' "$out" "$3"
}
rpc_counters_ok() { # msrpcast.counters: the joins so far, and read-ahead within its budget
    local out
    out=$(kam_jsonrpc msrpcast.counters) || return 1
    echo "   jsonrpcs: $out" | cut -c1-300
    python3 -c '
import json, sys
d = json.loads(sys.argv[1])
held, peak, budget = (d["spool_read_ahead_" + k] for k in ("bytes", "peak_bytes", "budget_bytes"))
sys.exit(0 if d["joins"] >= 3 and budget > 0 and held <= peak <= budget else 1)' "$out"
}
kamcmd_structured() {
    local out
    out=$(kam msrpcast.transfers) || return 1
    echo "$out" | head -12 | sed 's/^/   kamcmd: /'
    # kamcmd prints structures as indented `name: value` lines; a JSON string would start with '{"'.
    [[ $out != '{"'* ]] && grep -q 'transfers:' <<<"$out" && grep -q 'deliveries:' <<<"$out"
}

# ---------------------------------------------------------------------------------------------
scenario_main() {
    local f sum t0 t1 p
    echo "== main: 3 participants, ${size_mib} MiB"
    for p in a1 a2 a3; do participant "$p" 1 participant_uas.xml; done
    check "3 participants joined conf 1 (dialog:start -> msrpcast_join)" \
        wait_for 20 has_participants 1 3
    f=$(mkfile main.bin "$size_mib")
    sum=$(sha1 "$f")
    t0=$(date +%s.%N)
    upload 1 "$f"
    for p in a1 a2 a3; do
        check "$p received ${size_mib} MiB with SHA-1 $sum" wait_for 120 received_ok "$p" "$sum"
    done
    t1=$(date +%s.%N)
    echo "   upload start to last receiver: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$t1") s"
    for p in a1 a2 a3; do
        check "$p's file session ended with a BYE (UAS scenario complete)" proc_exited_ok "${uas_pid[$p]}"
    done
    check "msrpcast.transfers: 3 deliveries done" wait_for 10 all_terminal 1 3
    check "msrpcast.transfers: all 3 done" \
        test "$(deliveries 1 | awk '$2 == "done"' | wc -l)" -eq 3
    deliveries 1 | sed 's/^/   delivery: /'
    check "jsonrpcs: msrpcast.transfers is a JSON object with 3 deliveries of conference 1" \
        rpc_json_has_deliveries 1 3
    check "kamcmd: msrpcast.transfers shows fields, not one JSON string" kamcmd_structured
    check "jsonrpcs: msrpcast.conferences is a JSON object" rpc_json_is_object msrpcast.conferences
    check "jsonrpcs: msrpcast.counters counts the joins and the read-ahead" rpc_counters_ok
    for p in a1 a2 a3; do hangup "$p"; done
    for p in a1 a2 a3; do
        check "$p hung up its conference call" proc_exited_ok "${uac_pid[$p]}"
    done
    check "participants left conf 1 (dialog:end -> msrpcast_leave)" wait_for 10 has_participants 1 0
}

scenario_486() {
    local f sum
    echo "== 486: one participant rejects the file INVITE"
    participant b1 2 participant_uas.xml
    participant b2 2 participant_uas_486.xml
    check "2 participants joined conf 2" wait_for 20 has_participants 2 2
    f=$(mkfile b.bin 4)
    sum=$(sha1 "$f")
    check "kamcmd: msrpcast.upload answers {transfer: <number>} through the control socket" \
        kamcmd_upload 2 "$f"
    check "msrpcast.upload to an unknown conference: RPC error UNKNOWN_CONFERENCE (kamcmd, jsonrpcs)" \
        rpc_upload_refused no-such-conf "$f" UNKNOWN_CONFERENCE
    check "msrpcast.upload of a missing file: RPC error naming the path" \
        rpc_upload_refused 2 "$work/missing.bin" missing.bin
    check "msrpcast.upload outside upload_dir: RPC error saying so (issue 14 #9)" \
        rpc_upload_refused 2 /etc/hostname "outside upload_dir"
    check "b1 received the file" wait_for 60 received_ok b1 "$sum"
    check "conf 2 deliveries finished" wait_for 30 all_terminal 2 2
    check "b2's delivery failed with 486" test "$(state_of 2 b2)" = "failed 486"
    check "b1's delivery is done" test "$(state_of 2 b1 | cut -d' ' -f1)" = done
    check "b2's UAS saw the ACK of its 486" proc_exited_ok "${uas_pid[b2]}"
    deliveries 2 | sed 's/^/   delivery: /'
    hangup b1
    hangup b2
}

scenario_hangup() {
    local f sum
    echo "== hangup: a participant hangs up mid-transfer"
    participant c1 3 participant_uas.xml
    # c2 reads slowly (4 MiB/s): still receiving when it hangs up.
    participant c2 3 participant_uas.xml --misbehave rate=4194304
    check "2 participants joined conf 3" wait_for 20 has_participants 3 2
    f=$(mkfile c.bin 32)
    sum=$(sha1 "$f")
    upload 3 "$f"
    check "c2's delivery is sending" wait_for 20 is_state 3 c2 sending
    sleep 1
    hangup c2
    check "c2 hung up its conference call" proc_exited_ok "${uac_pid[c2]}"
    check "c1 still received the whole file" wait_for 60 received_ok c1 "$sum"
    check "conf 3 deliveries finished" wait_for 30 all_terminal 3 2
    check "c2's delivery did not complete" test "$(state_of 3 c2 | cut -d' ' -f1)" != done
    check "c2's file session ended with a BYE" proc_exited_ok "${uas_pid[c2]}"
    check "c2's receiver got no complete file" not received_ok c2 "$sum"
    # With a '#' chunk the receiver says "aborted by the sender"; a plain close is reported too.
    echo "   c2's receiver: $(grep '^failed' "${recv_out[c2]}" | tail -1)"
    deliveries 3 | sed 's/^/   delivery: /'
    hangup c1
}

scenario_late() {
    local f sum g gsum out
    echo "== late: a participant joins after the upload; a file for chosen participants"
    participant d1 4 participant_uas.xml
    participant d3 4 participant_uas.xml
    check "2 participants joined conf 4" wait_for 20 has_participants 4 2
    # Chosen recipients (issue 13): a file for d3 only, by its key (each simulated participant
    # takes one file INVITE); d3 then hangs up, and late joiners never get that file.
    g=$(mkfile d-chosen.bin 1)
    gsum=$(sha1 "$g")
    out=$(kam msrpcast.upload 4 "$g" "${cid[d3]}" 2>&1)
    echo "   kamcmd: $out"
    check "msrpcast.upload with a key: a transfer for that participant" grep -q "transfer:" <<<"$out"
    check "d3 (chosen) received the file for it" wait_for 60 received_ok d3 "$gsum"
    out=$(kam msrpcast.upload 4 "$g" "${cid[d3]},nobody" 2>&1 || true)
    echo "   kamcmd: $out"
    check "msrpcast.upload with an unknown key: error 400 naming it" \
        grep -q 'error: 400 - MSRPCAST_ERR_INVALID_VALUE: no participant "nobody"' <<<"$out"
    check "d1 (not chosen) was not offered the file for d3" not received_ok d1 "$gsum"
    hangup d3
    check "d3 left conf 4" wait_for 20 has_participants 4 1
    f=$(mkfile d.bin 2)
    sum=$(sha1 "$f")
    upload 4 "$f"
    check "d1 received the file" wait_for 60 received_ok d1 "$sum"
    participant d2 4 participant_uas.xml
    check "d2 joined conf 4 later" wait_for 20 has_participants 4 2
    check "d2 (late joiner) received the file" wait_for 60 received_ok d2 "$sum"
    sleep 2
    check "d2 (late joiner) was not offered the file for d3" not received_ok d2 "$gsum"
    check "d2's file session ended with a BYE" proc_exited_ok "${uas_pid[d2]}"
    deliveries 4 | sed 's/^/   delivery: /'
    hangup d1
    hangup d2
}

# Engine process: pid (from core.psx) and resident size in KiB.
engine_pid() {
    kam core.psx 2>/dev/null | awk '/PID:/ {p = $2} /DSC: msrpcast engine/ {print p; exit}'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
kam_procs() { kam core.psx 2>/dev/null | grep -c 'PID:'; }
received_bytes() { # received_bytes NAME BYTES: one complete message of BYTES
    grep -q "^received [^ ]* $2 " "${recv_out[$1]}"
}

scenario_load() {
    local n=${E2E_LOAD_N:-20} mib=${E2E_LOAD_MIB:-256} f i p epid rss0 rss1 rss2 procs0 t0 t1
    local names=() probe_pid probe_out=$work/probe.out all
    echo "== load: $n participants receive $mib MiB each; OPTIONS answered meanwhile"
    epid=$(engine_pid)
    rss0=$(rss_kib "$epid")
    procs0=$(kam_procs)
    for ((i = 1; i <= n; i++)); do
        names+=("l$i")
        participant "l$i" 5 participant_uas.xml --discard
    done
    if ! check "$n participants joined conf 5" wait_for 60 has_participants 5 "$n"; then
        echo "   conf 5 has $(participants_in 5) participants; what the participants' sipp and receivers said:"
        for p in "${names[@]}"; do participant_diag "$p"; done
    fi
    f=$(mkfile load.bin "$mib")
    rm -f "$work/probe.stop"
    python3 "$here/options_probe.py" "$sip_port" "$work/probe.stop" 0.02 >"$probe_out" 2>&1 &
    probe_pid=$!
    pids+=("$probe_pid")
    sleep 1
    t0=$(date +%s.%N)
    upload 5 "$f"
    all=1
    # One deadline for the whole transfer (not one per participant: a participant that never
    # joined must not cost the run 900 s more).
    local deadline=$((SECONDS + ${E2E_LOAD_SECS:-900}))
    for p in "${names[@]}"; do
        wait_for "$((deadline > SECONDS ? deadline - SECONDS : 1))" received_bytes "$p" "$((mib * 1024 * 1024))" ||
            { all=0; fail "$p received $mib MiB"; participant_diag "$p"; }
    done
    t1=$(date +%s.%N)
    rss1=$(rss_kib "$epid")
    touch "$work/probe.stop"
    wait "$probe_pid"
    ((all)) && ok "all $n participants received $mib MiB"
    python3 -c "import sys; n, mib, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]); \
print(f'   {n} x {mib} MiB in {t1 - t0:.1f} s: {n * mib * 1048576 / (t1 - t0) / 1e9:.2f} GB/s aggregate')" \
        "$n" "$mib" "$t0" "$t1"
    echo "   OPTIONS during the transfer: $(cat "$probe_out")"
    check "OPTIONS answered within 50 ms, none lost" python3 -c '
import sys
f = sys.argv[1].split()
d = dict(zip(f[0::2], f[1::2]))
sys.exit(0 if int(d["lost"]) == 0 and int(d["answered"]) > 0 and float(d["max_ms"]) < 50.0 else 1)' "$(cat "$probe_out")"
    check "no Kamailio process died ($procs0 processes)" test "$(kam_procs)" -eq "$procs0"
    check "the engine process is the same ($epid)" test "$(engine_pid)" = "$epid"
    for p in "${names[@]}"; do hangup "$p"; done
    wait_for 30 has_participants 5 0
    sleep 2
    rss2=$(rss_kib "$epid")
    echo "   engine RSS: idle ${rss0} KiB, end of transfer ${rss1} KiB, after ${rss2} KiB"
    check "engine RSS back near idle (within 64 MiB)" test "$rss2" -lt "$((rss0 + 65536))"
    rm -f "$f"
}

source "$here/scenario_tls.sh"
source "$here/scenario_restart.sh"
source "$here/scenario_offerin.sh"
for s in $only; do
    "scenario_$s"
done

# msrpcast.reload_tls: the engine process re-reads the TLS files and answers with the outcome
# (and logs it). This configuration has no TLS on: both RPC transports get the refusal's code and
# reason. (scenario_tls reloads with TLS on.)
reload_logged() { grep -q "TLS reload: MSRPCAST_ERR_REFUSED: no TLS to reload" "$work/kamailio.log"; }
reload_refused_jsonrpc() {
    local out
    out=$(curl -s --max-time 10 -d '{"jsonrpc":"2.0","method":"msrpcast.reload_tls","id":1}' \
        "http://127.0.0.1:$jsonrpc_port/RPC")
    echo "   jsonrpcs: $out"
    python3 -c '
import json, sys
e = json.loads(sys.argv[1]).get("error", {})
sys.exit(0 if e.get("code") == 400 and e.get("message", "").startswith(
    "MSRPCAST_ERR_REFUSED: no TLS to reload") else 1)' "$out"
}
out=$(kam msrpcast.reload_tls 2>&1)
echo "   kamcmd: $out"
check "kamcmd msrpcast.reload_tls without TLS: error 400 MSRPCAST_ERR_REFUSED, no TLS to reload" \
    grep -q "error: 400 - MSRPCAST_ERR_REFUSED: no TLS to reload" <<<"$out"
check "jsonrpcs msrpcast.reload_tls without TLS: the same code and reason" reload_refused_jsonrpc
check "the engine process logs the reload's outcome" wait_for 10 reload_logged

check "kamailio still running" kill -0 "$kam_pid"
if grep -q "CRITICAL\|segfault\|died" "$work/kamailio.log"; then
    fail "no CRITICAL or dead process in the kamailio log"
    grep "CRITICAL\|segfault\|died" "$work/kamailio.log" | head -5
else
    ok "no CRITICAL or dead process in the kamailio log"
fi
# Shutdown must be clean too: tm's shutdown runs the module's transaction callbacks.
kill -TERM "$kam_pid"
if proc_exited_ok "$kam_pid"; then
    ok "kamailio shuts down cleanly on SIGTERM"
else
    fail "kamailio shut down with status $? (a crash in the shutdown path?)"
fi
echo "$passed passed, $failed failed"
((failed == 0))
