#!/usr/bin/env bash
# End-to-end test of mod_msrpcast with an existing FreeSWITCH installation:
#
#   make freeswitch-e2e FREESWITCH_PREFIX=/usr/local/freeswitch
#   FREESWITCH_PREFIX=/usr/local/freeswitch tests/freeswitch/e2e.sh      (the same)
#
# Without FREESWITCH_PREFIX it prints a "skipped" line and exits 0 (nothing of FreeSWITCH is in
# this repository, and CI has none). The installation needs bin/freeswitch, bin/fs_cli, the
# modules (found through pkg-config's modulesdir of $prefix/lib/pkgconfig/freeswitch.pc, else
# lib/freeswitch/mod or mod under the prefix) mod_sofia, mod_conference, mod_dialplan_xml, mod_dptools, mod_commands,
# mod_event_socket, mod_console, and its development files (the module is built against them
# with freeswitch-module/build.sh).
#
# FreeSWITCH runs with a throw-away configuration in a work directory (sofia profile "internal"
# on 127.0.0.1, conference profile "default", a dialplan sending conf-<id> through the
# application msrpcast into conference conf-<id>). The participants are those of the Kamailio
# test (tests/kamailio/e2e/lib.sh): per participant a sipp UAC calling conf-<id> whose Contact is
# its sipp UAS, which answers the file INVITE with SDP pointing at its own `msrpcast receive`.
#
# Scenarios (E2E_ONLY, default all):
#   main     two participants, a 32 MiB upload reaches both (SHA-1), each file leg gets its BYE,
#            `msrpcast transfers` shows both deliveries done
#   hangup   a participant leaving mid-transfer ends only its own delivery
#   reload   10 unload/load cycles while calls run and a file leg is up; FreeSWITCH and the
#            calls survive, the unload hangs the file leg up (BYE)
#   shutdown `fsctl shutdown` ends FreeSWITCH cleanly (exit 0 within 30 s)
# Prints one line per check and `N passed, M failed`; exits non-zero on any failure.
# KEEP=1 keeps the work directory (it is also kept when a check fails).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/../../scripts/lib.sh"
root=$(msrpcast_root)

if [[ -z ${FREESWITCH_PREFIX:-} ]]; then
    echo "freeswitch e2e: skipped (set FREESWITCH_PREFIX to a FreeSWITCH installation to run it)"
    exit 0
fi
prefix=$FREESWITCH_PREFIX
fs_bin=$prefix/bin/freeswitch
fs_cli_bin=$prefix/bin/fs_cli
[[ -x $fs_bin && -x $fs_cli_bin ]] || msrpcast_die "$prefix has no bin/freeswitch and bin/fs_cli"
# FreeSWITCH's own modules: pkg-config's modulesdir (a --prefix build and vendor packages keep
# them in lib/freeswitch/mod), else the layouts of older source builds.
fs_moddir=
if [[ -f $prefix/lib/pkgconfig/freeswitch.pc ]]; then
    fs_moddir=$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --variable=modulesdir freeswitch)
fi
if [[ -z $fs_moddir || ! -d $fs_moddir ]]; then
    for d in "$prefix/lib/freeswitch/mod" "$prefix/mod"; do
        [[ -f $d/mod_sofia.so ]] && fs_moddir=$d && break
    done
fi
[[ -n $fs_moddir && -f $fs_moddir/mod_sofia.so ]] ||
    msrpcast_die "no FreeSWITCH module folder with mod_sofia.so: pkg-config modulesdir (${fs_moddir:-none}), $prefix/lib/freeswitch/mod, $prefix/mod"
missing=
for m in mod_sofia mod_conference mod_dialplan_xml mod_dptools mod_commands mod_event_socket \
    mod_console mod_logfile; do
    [[ -f $fs_moddir/$m.so ]] || missing+=" $m"
done
[[ -z $missing ]] || msrpcast_die "$fs_moddir lacks FreeSWITCH modules the test loads:$missing (build them: modules.conf of the FreeSWITCH source)"
for t in sipp curl python3; do
    command -v "$t" >/dev/null || msrpcast_die "$t not installed"
done

# shellcheck source=tests/kamailio/e2e/lib.sh
source "$root/tests/kamailio/e2e/lib.sh"
target=${CARGO_TARGET_DIR:-$root/target}
bin=${MSRPCAST_BIN:-$target/release/msrpcast}
only=${E2E_ONLY:-main hangup reload shutdown}
size_mib=${E2E_SIZE_MIB:-32}

FREESWITCH_PREFIX=$prefix "$root/freeswitch-module/build.sh" || msrpcast_die "module build failed"
module=$root/freeswitch-module/build/mod_msrpcast.so
if [[ -z ${MSRPCAST_BIN:-} ]]; then
    (cd "$root" && cargo build --release --locked --bin msrpcast) || msrpcast_die "cargo build failed"
fi

work=$(mktemp -d /tmp/msrpcast-fs-e2e.XXXXXX)
mkdir -p "$work/conf" "$work/log" "$work/db" "$work/run" "$work/spool"
E2E_ON_ERROR=fail
passed=0
failed=0
pids=()
# shellcheck disable=SC2034 # recv_pid is filled by participant() of tests/kamailio/e2e/lib.sh
declare -A recv_pid recv_out uas_pid uac_pid uac_port cid

cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    if [[ ${KEEP:-0} == 1 || $failed -gt 0 ]]; then
        echo "work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

ok() { echo "ok   - $*"; passed=$((passed + 1)); }
fail() { echo "FAIL - $*"; failed=$((failed + 1)); }
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
not() { ! "$@"; }
proc_exited_ok() { # proc_exited_ok PID: waits up to 60 s for it to exit, true if it exited 0
    local i
    for ((i = 0; i < 600; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    wait "$1"
}

e2e_ports
esl_port=$(port)
rtp_start=$(( ($(port) % 20000) + 20000 ))
token=e2e-token-F

fscli() { "$fs_cli_bin" -H 127.0.0.1 -P "$esl_port" -p ClueCon -t 5000 -x "$1"; }
# The Kamailio helpers query the engine with `kam msrpcast.<command>`: answer them from fs_cli.
kam() {
    case $1 in
    msrpcast.conferences) fscli 'msrpcast conferences' ;;
    msrpcast.transfers) fscli 'msrpcast transfers' ;;
    msrpcast.upload) fscli "msrpcast upload $2 $3" ;;
    *) return 1 ;;
    esac
}
# The status JSON comes from the API command here (lib.sh asks Kamailio's jsonrpcs).
status_json() { kam "$1"; }
# In FreeSWITCH the participant key is the channel's Unique-ID; the dialplan sets the display to
# the call's Call-ID, which is how a test participant is found.
key_of() { # key_of NAME -> participant key
    fscli 'msrpcast conferences' | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
for c in d["conferences"]:
    for p in c["participants"]:
        if p["display"] == sys.argv[1]:
            print(p["key"])' "${cid[$1]}"
}
state_of() { # state_of CONF NAME -> "state code"
    local k
    k=${key[$2]:-}
    deliveries "$1" | awk -v p="$k" '$3 == p {print $2, $4}' | tail -1
}
declare -A key
remember_key() { key[$1]=$(key_of "$1"); [[ -n ${key[$1]} ]]; }

# --- a throw-away configuration --------------------------------------------------------------
cat >"$work/conf/freeswitch.xml" <<EOF
<?xml version="1.0"?>
<document type="freeswitch/xml">
  <section name="configuration" description="msrpcast e2e">
    <configuration name="switch.conf" description="core">
      <settings>
        <param name="rtp-start-port" value="$rtp_start"/>
        <param name="rtp-end-port" value="$((rtp_start + 400))"/>
        <param name="max-sessions" value="500"/>
        <param name="loglevel" value="debug"/>
      </settings>
    </configuration>
    <configuration name="modules.conf" description="modules">
      <modules>
        <load module="mod_console"/>
        <load module="mod_logfile"/>
        <load module="mod_event_socket"/>
        <load module="mod_commands"/>
        <load module="mod_dptools"/>
        <load module="mod_dialplan_xml"/>
        <load module="mod_sofia"/>
        <load module="mod_conference"/>
        <load module="$module"/>
      </modules>
    </configuration>
    <configuration name="console.conf" description="console">
      <mappings><map name="all" value="console,debug,info,notice,warning,err,crit,alert"/></mappings>
      <settings><param name="colorize" value="false"/><param name="loglevel" value="info"/></settings>
    </configuration>
    <configuration name="logfile.conf" description="log">
      <settings><param name="rotate-on-hup" value="true"/></settings>
      <profiles><profile name="default"><settings>
        <param name="logfile" value="$work/log/freeswitch.log"/>
      </settings><mappings><map name="all" value="debug,info,notice,warning,err,crit,alert"/></mappings></profile></profiles>
    </configuration>
    <configuration name="event_socket.conf" description="ESL">
      <settings>
        <param name="listen-ip" value="127.0.0.1"/>
        <param name="listen-port" value="$esl_port"/>
        <param name="password" value="ClueCon"/>
      </settings>
    </configuration>
    <configuration name="sofia.conf" description="sofia">
      <global_settings><param name="log-level" value="0"/></global_settings>
      <profiles>
        <profile name="internal">
          <settings>
            <param name="sip-ip" value="127.0.0.1"/>
            <param name="sip-port" value="$sip_port"/>
            <param name="rtp-ip" value="127.0.0.1"/>
            <param name="ext-rtp-ip" value="127.0.0.1"/>
            <param name="ext-sip-ip" value="127.0.0.1"/>
            <param name="context" value="public"/>
            <param name="dialplan" value="XML"/>
            <param name="auth-calls" value="false"/>
            <param name="inbound-codec-prefs" value="PCMU"/>
            <param name="outbound-codec-prefs" value="PCMU"/>
            <param name="rtp-timeout-sec" value="0"/>
            <param name="rtp-hold-timeout-sec" value="0"/>
          </settings>
        </profile>
      </profiles>
    </configuration>
    <configuration name="conference.conf" description="conference">
      <profiles>
        <profile name="default">
          <param name="rate" value="8000"/>
          <param name="interval" value="20"/>
          <param name="energy-level" value="100"/>
        </profile>
      </profiles>
    </configuration>
    <configuration name="msrpcast.conf" description="msrpcast">
      <settings>
        <param name="conferences" value="conf-*"/>
        <param name="require_optin" value="true"/>
        <param name="http_listen" value="127.0.0.1:$http_port"/>
        <param name="http_token" value="$token"/>
        <param name="msrp_listen" value="127.0.0.1:$msrp_port"/>
        <param name="spool_dir" value="$work/spool"/>
        <param name="upload_dir" value="$work"/>
        <param name="log_level" value="info"/>
      </settings>
    </configuration>
  </section>
  <section name="dialplan" description="dialplan">
    <context name="public">
      <extension name="msrpcast_conference">
        <condition field="destination_number" expression="^(conf-.+)\$">
          <action application="answer"/>
          <action application="msrpcast" data="display=\${sip_call_id}"/>
          <action application="conference" data="\$1@default"/>
        </condition>
      </extension>
    </context>
  </section>
</document>
EOF

"$fs_bin" -nonat -nf -nc -conf "$work/conf" -log "$work/log" -db "$work/db" -run "$work/run" \
    -mod "$fs_moddir" >"$work/log/stdout" 2>&1 </dev/null &
fs_pid=$!
pids+=("$fs_pid")
fs_up() { fscli 'msrpcast members' 2>/dev/null | grep -q '"members"'; }
# Up, or gone: a FreeSWITCH that exited at once is reported at once, not after the 60 s.
fs_up_or_gone() { fs_up || ! kill -0 "$fs_pid" 2>/dev/null; }
wait_for 60 fs_up_or_gone
if ! fs_up; then
    fail "FreeSWITCH starts with mod_msrpcast loaded (modules from $fs_moddir)"
    if kill -0 "$fs_pid" 2>/dev/null; then
        echo "   FreeSWITCH runs (PID $fs_pid) but \`msrpcast members\` got no answer on ESL port $esl_port"
    else
        wait "$fs_pid"
        echo "   FreeSWITCH exited with status $?"
    fi
    for f in "$work/log/stdout" "$work/log/freeswitch.log"; do
        if [[ -s $f ]]; then
            echo "   --- last 40 lines of $f:"
            tail -n 40 "$f" | sed 's/^/   /'
        else
            echo "   --- $f is empty or missing"
        fi
    done
    exit 1
fi
ok "FreeSWITCH $(fscli version | head -1) runs with mod_msrpcast ($(fscli 'msrpcast help'))"

make_file() { # make_file PATH MIB -> prints its SHA-1
    head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1"
    sha1sum "$1" | cut -d' ' -f1
}

scenario_main() {
    echo "== main: 2 participants, ${size_mib} MiB"
    local p sum
    for p in a1 a2; do participant "$p" main participant_uas.xml; done
    check "2 participants joined conf-main" wait_for 30 has_participants conf-main 2
    for p in a1 a2; do check "$p known by its Unique-ID" remember_key "$p"; done
    sum=$(make_file "$work/main.bin" "$size_mib")
    upload conf-main "$work/main.bin"
    for p in a1 a2; do
        check "$p received ${size_mib} MiB with SHA-1 $sum" wait_for 180 received_ok "$p" "$sum"
    done
    check "both deliveries done (msrpcast transfers)" wait_for 60 all_terminal conf-main 2
    for p in a1 a2; do
        check "$p's delivery is done" is_state conf-main "$p" "done"
        check "$p's file session ended with a BYE" proc_exited_ok "${uas_pid[$p]}"
    done
    echo "   transfers: $(fscli 'msrpcast transfers' | head -c 600)"
    for p in a1 a2; do hangup "$p"; done
    check "conf-main empty after both hung up" wait_for 30 has_participants conf-main 0
}

scenario_hangup() {
    echo "== hangup: a participant leaves mid-transfer"
    local sum
    participant c1 hangup participant_uas.xml
    participant c2 hangup participant_uas.xml --misbehave rate=4194304
    check "2 participants joined conf-hangup" wait_for 30 has_participants conf-hangup 2
    remember_key c1
    remember_key c2
    sum=$(make_file "$work/hangup.bin" "$size_mib")
    upload conf-hangup "$work/hangup.bin"
    check "c2 is receiving" wait_for 30 is_state conf-hangup c2 sending
    hangup c2
    check "c2 left conf-hangup" wait_for 30 has_participants conf-hangup 1
    check "c1 still received the whole file" wait_for 180 received_ok c1 "$sum"
    check "c1's delivery is done" wait_for 30 is_state conf-hangup c1 "done"
    check "c2's file session ended with a BYE" proc_exited_ok "${uas_pid[c2]}"
    check "c2's receiver got no complete file" not received_ok c2 "$sum"
    hangup c1
}

scenario_reload() {
    echo "== reload: 10 unload/load cycles while calls run (and one file leg is up)"
    local i good=0
    # r1 reads slowly (4 MiB/s): its file leg is still up at the first unload.
    participant r1 reload participant_uas.xml --misbehave rate=4194304
    participant r2 reload participant_uas.xml
    check "2 participants joined conf-reload" wait_for 30 has_participants conf-reload 2
    remember_key r1
    make_file "$work/reload.bin" "$size_mib" >/dev/null
    upload conf-reload "$work/reload.bin"
    check "r1 is receiving" wait_for 30 is_state conf-reload r1 sending
    for ((i = 1; i <= 10; i++)); do
        fscli 'unload mod_msrpcast' >/dev/null
        fscli "load $module" | grep -q '+OK' && good=$((good + 1))
    done
    check "10 of 10 loads succeeded ($good)" test "$good" -eq 10
    check "FreeSWITCH still runs" kill -0 "$fs_pid"
    check "the conference calls are still up" kill -0 "${uac_pid[r1]}"
    check "the module answers after the cycles" fs_up
    check "the unload hung r1's file leg up (its UAS got the BYE)" proc_exited_ok "${uas_pid[r1]}"
    check "no msrpcast leg left over" not bash -c "\"$fs_cli_bin\" -H 127.0.0.1 -P $esl_port -p ClueCon -x 'show channels' | grep -q msrpcast-"
    hangup r1
    hangup r2
}

scenario_shutdown() {
    echo "== shutdown"
    fscli 'fsctl shutdown' >/dev/null
    local i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$fs_pid" 2>/dev/null || break
        sleep 0.1
    done
    check "FreeSWITCH exited within 30 s" not kill -0 "$fs_pid" 2>/dev/null
    wait "$fs_pid"
    check "exit status 0" test $? -eq 0
    check "no crash in the log" not grep -qi 'segmentation\|core dumped\|abort' "$work/log/stdout"
}

for s in $only; do
    "scenario_$s"
done
echo "$passed passed, $failed failed"
((failed == 0))
