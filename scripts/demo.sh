#!/usr/bin/env bash
# `make demo`: msrpcast in Kamailio with three simulated participants, ready for uploads.
#
#   scripts/demo.sh            install, build, start everything, print the upload page; stays in
#                              the foreground until Ctrl-C (or SIGTERM), then stops what it started
#   scripts/demo.sh --check    (or DEMO_NO_WAIT=1) the same, then uploads one small file, checks
#                              that it reached all three participants' folders, stops; exit 0/1
#   options (with or without --check):
#     --bin PATH               the msrpcast tool to run the receivers with (MSRPCAST_BIN)
#     --module PATH            the msrpcast.so Kamailio loads (MSRPCAST_SO)
#     --cfg FILE               the Kamailio configuration (DEMO_CFG; default cfg/kamailio.cfg)
#   e.g. the installed Debian package: scripts/demo.sh --check --bin /usr/bin/msrpcast \
#     --module "$(dpkg -L msrpcast | grep '/msrpcast\.so$')" \
#     --cfg /usr/share/doc/msrpcast/examples/kamailio.cfg
#
# On a fresh Debian machine run it as root: scripts/install-deps.sh installs Kamailio, sipp and
# the rest. It then builds the module (`make kamailio-module`) and the msrpcast tool
# (`cargo build --release --locked --bin msrpcast`), and starts, on 127.0.0.1:
#   - Kamailio with cfg/kamailio.cfg and the built msrpcast.so (settings given with -A: the HTTP
#     token, the upload page on port 8088 or a free port, the spool in the demo folder);
#   - a sipp mixer answering the conference calls;
#   - participants alice, bob and carol, each: a sipp call into sip:conf-demo@ (it stays up), a
#     sipp UAS answering the file INVITEs with SDP pointing at its own `msrpcast receive`, which
#     saves every file in the participant's folder.
#
# Environment: DEMO_DIR (default: a new /tmp/msrpcast-demo.XXXXXX; kept after the demo, removed
# after a passing --check), DEMO_TOKEN (default: a random one), DEMO_HTTP_PORT (default 8088, or a
# free port when 8088 is taken), CARGO_TARGET_DIR, MSRPCAST_BIN and MSRPCAST_SO (prebuilt
# msrpcast and msrpcast.so, like --bin and --module: with both given, the install and build steps
# are skipped and nothing of the build tree is used), DEMO_CFG (like --cfg).
# Every process is started by this script and ended by its PID; nothing is killed by name.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"
root=$(msrpcast_root)
# shellcheck source=tests/kamailio/e2e/lib.sh
source "$root/tests/kamailio/e2e/lib.sh"

check_mode=${DEMO_NO_WAIT:-0}
[[ $check_mode == 0 ]] && check_mode=
usage="usage: scripts/demo.sh [--check] [--bin PATH] [--module PATH] [--cfg FILE]"
while (($#)); do
    case $1 in
    --check) check_mode=1 ;;
    --bin | --module | --cfg)
        (($# >= 2)) && [[ -n $2 ]] || msrpcast_die "$1 needs a value; $usage"
        case $1 in
        --bin) MSRPCAST_BIN=$2 ;;
        --module) MSRPCAST_SO=$2 ;;
        --cfg) DEMO_CFG=$2 ;;
        esac
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *) msrpcast_die "unknown argument '$1'; $usage" ;;
    esac
    shift
done

conf=demo # participants call sip:conf-demo@...; CONF_PREFIX "conf-" in cfg/kamailio.cfg
names=(alice bob carol)
target=${CARGO_TARGET_DIR:-$root/target}
bin=${MSRPCAST_BIN:-$target/release/msrpcast}
module=${MSRPCAST_SO:-$root/kamailio-module/build/msrpcast.so}
cfg=${DEMO_CFG:-$root/cfg/kamailio.cfg}
# Relative paths are taken from where the demo was started (it works in the repository root).
abs() { [[ $1 == /* ]] && printf '%s\n' "$1" || printf '%s\n' "$PWD/$1"; }
bin=$(abs "$bin")
module=$(abs "$module")
cfg=$(abs "$cfg")

say() { printf '%s\n' "$*"; }
step() { printf '==> %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# Install and build

cd "$root" || exit 1
if [[ -n ${MSRPCAST_BIN:-} && -n ${MSRPCAST_SO:-} ]]; then
    step "using prebuilt $bin and $module"
else
    step "installing dependencies (scripts/install-deps.sh)"
    scripts/install-deps.sh || msrpcast_die "scripts/install-deps.sh failed (run as root on Debian)"
    step "building the Kamailio module (make kamailio-module)"
    make --no-print-directory kamailio-module || msrpcast_die "make kamailio-module failed"
    step "building the msrpcast tool (cargo build --release --locked --bin msrpcast)"
    cargo build --release --locked --bin msrpcast || msrpcast_die "cargo build failed"
fi
[[ -x $bin ]] || msrpcast_die "$bin missing"
[[ -r $module ]] || msrpcast_die "$module missing"
[[ -r $cfg ]] || msrpcast_die "$cfg missing"
for t in kamailio sipp kamcmd curl python3; do
    command -v "$t" >/dev/null || msrpcast_die "$t not installed (scripts/install-deps.sh)"
done

# ---------------------------------------------------------------------------------------------
# Start

if [[ -n ${DEMO_DIR:-} ]]; then
    work=$DEMO_DIR
    mkdir -p "$work" || exit 1
else
    work=$(mktemp -d /tmp/msrpcast-demo.XXXXXX) || exit 1
fi
pids=()
stopped=
kam_crash=

stop_all() {
    local p i alive rc
    [[ -n $stopped ]] && return
    stopped=1
    ((${#pids[@]})) || return
    say "==> stopping ${#pids[@]} processes started by the demo (PIDs ${pids[*]})"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for ((i = 0; i < 100; i++)); do
        alive=
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=" $p"; done
        [[ -z $alive ]] && break
        sleep 0.1
    done
    if [[ -n $alive ]]; then
        say "    still running after 10 s, sending SIGKILL:$alive"
        # shellcheck disable=SC2086
        kill -KILL $alive 2>/dev/null
    fi
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null
        rc=$?
        if [[ $p == "${kam_pid:-}" ]] && ((rc > 128 && rc != 143)); then
            kam_crash="Kamailio (PID $p) ended with signal $((rc - 128)) while stopping (core in $work)"
        fi
    done
    say "    all stopped"
    if [[ -n $kam_crash ]]; then say "    WARNING: $kam_crash"; fi
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# Ports: the upload page on 8088 when free (a stable URL), everything else on free ports.
e2e_ports
want=${DEMO_HTTP_PORT:-8088}
if python3 -c 'import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))' "$want" 2>/dev/null; then
    http_port=$want
fi
token=${DEMO_TOKEN:-demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')}

step "starting Kamailio ($cfg + $module) on SIP 127.0.0.1:$sip_port"
# e2e_start_kamailio passes -f cfg/kamailio.cfg first; Kamailio takes the last -f it is given.
if ! e2e_start_kamailio "$work/kamailio.log" -f "$cfg"; then
    tail -20 "$work/kamailio.log"
    msrpcast_die "Kamailio did not start: see $work/kamailio.log"
fi
step "starting the sipp mixer on 127.0.0.1:$mixer_port"
E2E_MIXER_TIMEOUT=0 e2e_start_mixer

# Participants stay in the conference and answer any number of file INVITEs: no sipp timeout,
# no call limit on the UAS, and the conference call's "hang up after 300 s" made a day.
E2E_SIPP_TIMEOUT=0
E2E_UAS_CALLS=0
sed 's/timeout="300000"/timeout="86400000"/' "$e2e_dir/participant_uac.xml" >"$work/participant_uac.xml"
grep -q 'timeout="86400000"' "$work/participant_uac.xml" ||
    msrpcast_log "warning: participant_uac.xml changed; the participants may hang up after a while"
E2E_UAC_SCENARIO=$work/participant_uac.xml
for n in "${names[@]}"; do
    step "starting participant $n (receiver, file UAS, call into conf-$conf)"
    participant "$n" "$conf" participant_uas.xml || msrpcast_die "participant $n did not start"
done
if ! wait_for 30 has_participants "$conf" "${#names[@]}"; then
    tail -20 "$work/kamailio.log"
    msrpcast_die "the participants did not join conference $conf (see $work)"
fi

url="http://127.0.0.1:$http_port/?conference=$conf"
http=
http_up && http=1
echo
say "msrpcast demo is running: Kamailio + msrpcast, conference '$conf' with ${names[*]}."
say
say "  Upload page:  $url"
say "  Token:        $token"
for n in "${names[@]}"; do
    say "  $(printf '%-15s' "$n's files:")$work/$n/   (saved under the offered file name)"
done
say
if [[ -n $http ]]; then
    say "Open the page, log in with the token, drop a file: it goes to alice, bob and carol over"
    say "MSRP, with each one's progress on the page. Or with curl:"
    say "  curl -H 'Authorization: Bearer $token' -H \"Content-Disposition: attachment; filename*=UTF-8''\$(basename FILE)\" \\"
    say "       --data-binary @FILE http://127.0.0.1:$http_port/conferences/$conf/files"
else
    say "NOTE: the engine's HTTP handler does not answer on 127.0.0.1:$http_port in this build, so"
    say "the page is not there yet. Send a file that is on this machine instead:"
fi
say "  kamcmd -s $ctl msrpcast.upload $conf $work/FILE   (upload_dir is $work)"
say "Progress: kamcmd -s $ctl msrpcast.transfers    (msrpcast.conferences: who is in)"
say "Logs: $work/kamailio.log, $work/<participant>/receive.out"
echo

# ---------------------------------------------------------------------------------------------
# --check: one small file to everybody, then stop

if [[ -n $check_mode ]]; then
    status=0
    f=$work/hello-msrpcast.txt
    {
        echo "Hello from the msrpcast demo, $(date -u)."
        head -c 200000 /dev/urandom | od -An -tx1
    } >"$f"
    sum=$(sha1sum "$f" | cut -d' ' -f1)
    bytes=$(stat -c %s "$f")
    if [[ -n $http ]]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' "$url")
        if [[ $code == 200 ]]; then say "check: GET $url -> 200"; else say "check: GET $url -> $code (FAIL)"; status=1; fi
    else
        say "check: HTTP handler not running: the page is not checked, the upload goes through kamcmd"
    fi
    step "check: uploading $(basename "$f") ($bytes bytes, SHA-1 $sum) to conference $conf"
    upload "$conf" "$f"
    for n in "${names[@]}"; do
        if wait_for 60 received_ok "$n" "$sum"; then
            # `received ID BYTES SHA1 PATH`: the path is the rest of the line (it may hold
            # spaces). cut, not an awk regex interval: Debian's default awk (mawk) has none.
            path=$(awk -v s="$sum" '$1 == "received" && $4 == s' "${recv_out[$n]}" | tail -1 | cut -d' ' -f5-)
            if [[ -f $path ]] && [[ $(sha1sum "$path" | cut -d' ' -f1) == "$sum" ]]; then
                say "check: ok   - $n has it: $path"
            else
                say "check: FAIL - $n's receiver reported it but $path is missing or differs"
                status=1
            fi
        else
            say "check: FAIL - $n did not receive it within 60 s"
            status=1
        fi
    done
    if wait_for 20 all_terminal "$conf" "${#names[@]}" &&
        [[ $(deliveries "$conf" | awk '$2 == "done"' | wc -l) -eq ${#names[@]} ]]; then
        say "check: ok   - msrpcast.transfers shows ${#names[@]} deliveries done"
    else
        say "check: FAIL - msrpcast.transfers:"
        deliveries "$conf" | sed 's/^/    /'
        status=1
    fi
    stop_all
    if ((status == 0)); then
        [[ -z ${DEMO_DIR:-} && -z $kam_crash ]] && rm -rf "$work"
        say "demo check passed${kam_crash:+ (see the WARNING above; files kept in $work)}"
    else
        say "demo check FAILED; files and logs kept in $work"
    fi
    trap - EXIT
    exit $status
fi

say "Press Ctrl-C to stop the demo."
# Sleep in the background so the INT/TERM traps run at once.
while kill -0 "$kam_pid" 2>/dev/null; do
    sleep 1 &
    wait $! 2>/dev/null
done
say "Kamailio (PID $kam_pid) exited: see $work/kamailio.log"
exit 1
