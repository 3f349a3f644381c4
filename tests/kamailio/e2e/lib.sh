# Pieces shared by the Kamailio end-to-end test (tests/kamailio/e2e/e2e.sh), the demo
# (scripts/demo.sh) and the end-to-end benchmark (benches/kamailio_e2e.sh): Kamailio with
# cfg/kamailio.cfg and msrpcast.so, the sipp mixer, simulated participants, and queries of the
# engine over kamcmd. Source it after scripts/lib.sh; it defines functions only.
#
# The caller sets, before calling them:
#   root      the repository root          bin     the msrpcast binary   module  msrpcast.so
#   work      a scratch directory (run/ and spool/ are made in it; per-participant folders too)
#   pids=()   an array: every process started here is appended (the caller ends them by PID)
#   sip_port mixer_port http_port msrp_port jsonrpc_port  (e2e_ports picks free ones)   token
# Optional knobs (defaults are the test's):
#   E2E_SIPP_TIMEOUT   seconds before `timeout` ends a participant's sipp (600; 0 = never)
#   E2E_UAS_CALLS      file INVITEs a participant's UAS answers before it exits (1; 0 = any number)
#   E2E_UAC_SCENARIO   the participant's conference call (participant_uac.xml)
#   E2E_ON_ERROR       function called with a message when a participant cannot start
#                      (default: print it on stderr)
# shellcheck shell=bash

e2e_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

e2e_warn() { echo "$*" >&2; }

port() { msrpcast_free_port; }
# A port for sipp's media (it binds P and P+2, both drawn free); the soak redefines it.
media_port() { msrpcast_free_port media; }

# e2e_ports: free ports for SIP, the mixer, HTTP and MSRP; ctl = the kamcmd socket in $work/run.
# From here on no port is handed out twice in this run ($work/ports.used).
e2e_ports() {
    export MSRPCAST_PORTS_USED=${MSRPCAST_PORTS_USED:-$work/ports.used}
    sip_port=$(port)
    mixer_port=$(port)
    http_port=$(port)
    msrp_port=$(port)
    jsonrpc_port=$(port)
    ctl="unix:$work/run/ctl"
}

# Waits up to $1 seconds for the command to succeed.
wait_for() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

kam() { kamcmd -s "$ctl" "$@"; }

# kam_jsonrpc METHOD [PARAMS_JSON]: the RPC through jsonrpcs over HTTP; prints its "result" as
# JSON (fails on an RPC error).
kam_jsonrpc() {
    curl -s --max-time 10 -d "{\"jsonrpc\":\"2.0\",\"method\":\"$1\",\"params\":${2:-[]},\"id\":1}" \
        "http://127.0.0.1:$jsonrpc_port/RPC" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if "result" not in d:
    sys.exit("jsonrpc: " + json.dumps(d))
print(json.dumps(d["result"]))'
}

# status_json msrpcast.conferences|msrpcast.transfers: the engine's status as JSON (the
# FreeSWITCH test redefines it to ask fs_cli).
status_json() { kam_jsonrpc "$1"; }

# e2e_start_kamailio LOG [kamailio args...]: Kamailio with cfg/kamailio.cfg and the module, on
# the ports above, runtime dir ${kam_run:-$work/run} (the engine's control socket is there),
# spool in ${kam_spool:-$work/spool}; sets kam_pid. Succeeds once SIP, MSRP and kamcmd answer.
e2e_start_kamailio() {
    local log=$1 run=${kam_run:-$work/run} spool=${kam_spool:-$work/spool}
    shift
    mkdir -p "$run" "$spool"
    kamailio -DD -E -f "$root/cfg/kamailio.cfg" -Y "$run" -w "$work" -m 64 -M 8 \
        -A SIP_PORT="$sip_port" -A "MIXER_URI=\"sip:127.0.0.1:$mixer_port\"" \
        -A "CTL_SOCKET=\"$ctl\"" -A "MSRPCAST_MODULE=\"$module\"" -A JSONRPC_PORT="$jsonrpc_port" \
        -A "MSRPCAST_HTTP_LISTEN=\"127.0.0.1:$http_port\"" -A "MSRPCAST_HTTP_TOKEN=\"$token\"" \
        -A "MSRPCAST_MSRP_LISTEN=\"127.0.0.1:$msrp_port\"" -A "MSRPCAST_SPOOL_DIR=\"$spool\"" \
        -A "MSRPCAST_UPLOAD_DIR=\"$work\"" "$@" >"$log" 2>&1 </dev/null &
    kam_pid=$!
    pids+=("$kam_pid")
    msrpcast_wait_port "$sip_port" 20 "$kam_pid" && msrpcast_wait_port "$msrp_port" 20 "$kam_pid" &&
        wait_for 10 kam core.version >/dev/null 2>&1
}

# e2e_start_mixer: the sipp mixer answering every conference call on mixer_port.
e2e_start_mixer() {
    timeout "${E2E_MIXER_TIMEOUT:-900}" sipp -sf "$e2e_dir/mixer_uas.xml" -i 127.0.0.1 \
        -p "$mixer_port" -mp "$(media_port)" -nostdin -trace_err -error_file "$work/mixer.err" \
        >"$work/mixer.out" 2>&1 </dev/null &
    mixer_pid=$!
    pids+=("$mixer_pid")
}

declare -A uas_pid uac_pid recv_pid recv_out uac_port uas_port cid

# participant NAME CONF [UAS_SCENARIO [RECEIVE_ARGS...]]: starts its receiver (files in
# $work/NAME), its UAS and its call into conf-CONF.
participant() {
    local name=$1 conf=$2 scen=${3:-participant_uas.xml} rport uport cport calls umedia cmedia
    shift 3 2>/dev/null || shift $#
    local secs=${E2E_SIPP_TIMEOUT:-600}
    rport=$(port)
    uport=$(port)
    cport=$(port)
    # sipp binds two media ports (P and P+2) whether or not media flows; left to itself it tries
    # 6000, 6002, ... 6198 only, which fifty sipp processes on the machine use up.
    umedia=$(media_port)
    cmedia=$(media_port)
    calls=()
    ((${E2E_UAS_CALLS:-1} > 0)) && calls=(-m "${E2E_UAS_CALLS:-1}")
    mkdir -p "$work/$name"
    "$bin" receive --listen "127.0.0.1:$rport" --session-id "s$name" --dir "$work/$name" "$@" \
        >"$work/$name/receive.out" 2>"$work/$name/receive.err" </dev/null &
    recv_pid[$name]=$!
    pids+=("$!")
    recv_out[$name]=$work/$name/receive.out
    msrpcast_wait_port "$rport" 10 "$!" || {
        "${E2E_ON_ERROR:-e2e_warn}" "$name: receiver listens"
        return 1
    }
    timeout "$secs" sipp -sf "$e2e_dir/$scen" -i 127.0.0.1 -p "$uport" -mp "$umedia" "${calls[@]}" -nostdin \
        -key msrp_port "$rport" -key msrp_session "s$name" \
        -trace_err -error_file "$work/$name/uas.err" >"$work/$name/uas.out" 2>&1 </dev/null &
    uas_pid[$name]=$!
    uas_port[$name]=$uport
    pids+=("$!")
    timeout "$secs" sipp -sf "${E2E_UAC_SCENARIO:-$e2e_dir/participant_uac.xml}" -i 127.0.0.1 \
        -p "$cport" -mp "$cmedia" -m 1 -nostdin -s "conf-$conf" -key contact_port "$uport" \
        -cid_str "$name-%u@e2e" -trace_err -error_file "$work/$name/uac.err" \
        "127.0.0.1:$sip_port" >"$work/$name/uac.out" 2>&1 </dev/null &
    uac_pid[$name]=$!
    pids+=("$!")
    uac_port[$name]=$cport
    cid[$name]="$name-1@e2e"
}

# participant_diag NAME: what a participant's processes said, for a failed check: whether each
# still runs, and the last lines of their error files and output.
participant_diag() {
    local name=$1 d=$work/$1 f k
    for k in recv_pid uas_pid uac_pid; do
        local -n pid_of=$k
        if kill -0 "${pid_of[$name]:-0}" 2>/dev/null; then
            echo "   $name ${k%_pid}: running (${pid_of[$name]})"
        else
            echo "   $name ${k%_pid}: exited"
        fi
    done
    for f in "$d/receive.err" "$d/uas.err" "$d/uac.err" "$d/uac.out"; do
        [[ -s $f ]] || continue
        echo "   $name ${f##*/}:"
        tail -n 8 "$f" | sed 's/^/      /'
    done
}

# hangup NAME: tells the participant's UAC to hang up (an INFO in its dialog).
hangup() {
    python3 - "${uac_port[$1]}" "${cid[$1]}" <<'EOF'
import socket, sys
port, cid = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
lp = s.getsockname()[1]
msg = (f"INFO sip:participant@127.0.0.1:{port} SIP/2.0\r\n"
       f"Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-e2e-{cid}\r\n"
       f"From: <sip:e2e@127.0.0.1>;tag=e2e\r\nTo: <sip:participant@127.0.0.1>\r\n"
       f"Call-ID: {cid}\r\nCSeq: 1 INFO\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
s.sendto(msg.encode(), ("127.0.0.1", port))
EOF
}

# Conference JSON helpers (the RPC replies through jsonrpcs: real JSON; null members are left out).
participants_in() { # participants_in CONF -> count
    status_json msrpcast.conferences 2>/dev/null | python3 -c '
import json, sys
conf = sys.argv[1]
try:
    d = json.loads(sys.stdin.read())
except ValueError:
    print(-1); sys.exit()
print(sum(len(c["participants"]) for c in d["conferences"] if c["id"] == conf))' "$1"
}
has_participants() { [[ $(participants_in "$1") == "$2" ]]; }

# deliveries CONF -> lines "transfer state participant code" for every delivery of CONF.
deliveries() {
    status_json msrpcast.transfers 2>/dev/null | python3 -c '
import json, sys
conf = sys.argv[1]
try:
    d = json.loads(sys.stdin.read())
except ValueError:
    sys.exit()
for t in d["transfers"]:
    if t["conference"] != conf:
        continue
    for x in t["deliveries"]:
        print(t["id"], x["state"], x["participant"], x.get("code", "-"), x.get("reason", "-"))' "$1"
}
all_terminal() { # all_terminal CONF N: N deliveries, none still running
    local n
    n=$(deliveries "$1" | awk '$2 ~ /^(done|failed|cancelled)$/' | wc -l)
    [[ $n -ge $2 ]] && ! deliveries "$1" | awk '$2 !~ /^(done|failed|cancelled)$/ {f=1} END {exit !f}'
}
state_of() { # state_of CONF PARTICIPANT_NAME -> "state code"
    deliveries "$1" | awk -v p="${cid[$2]}" '$3 == p {print $2, $4}' | tail -1
}
is_state() { [[ $(state_of "$1" "$2" | cut -d' ' -f1) == "$3" ]]; }

# http_up: the engine's HTTP handler accepts connections on http_port.
http_up() { msrpcast_wait_port "$http_port" 1; }

# upload CONF FILE: over HTTP when the engine serves it, else with RPC msrpcast.upload.
upload() {
    local conf=$1 file=$2 code
    code=$(curl -s -o "$work/upload.resp" -w '%{http_code}' -H "Authorization: Bearer $token" \
        -H "Content-Disposition: attachment; filename*=UTF-8''$(basename "$file")" \
        --data-binary @"$file" "http://127.0.0.1:$http_port/conferences/$conf/files" 2>/dev/null)
    if [[ $code == 2* ]]; then
        echo "uploaded $(basename "$file") to conference $conf over HTTP ($code)"
        return 0
    fi
    echo "HTTP upload unavailable ($code): using kamcmd msrpcast.upload"
    kam msrpcast.upload "$conf" "$file"
}

received_ok() { # received_ok NAME SHA1
    grep -q "^received .* $2 " "${recv_out[$1]}"
}
