#!/usr/bin/env bash
# Starts and stops Debian's Kamailio as the MSRP relay of tests/kamailio/msrp-relay.cfg.
#
#   run-relay.sh start [PORT [DIR]]   start on 127.0.0.1:PORT (default: a free port), working
#                                     and runtime dir DIR (default: a fresh temp dir); waits until
#                                     the port accepts, then prints KEY='VALUE' lines (for eval):
#                                       RELAY_PID=<pid of kamailio's main process>
#                                       RELAY_PORT=<port>
#                                       RELAY_URI=msrp://127.0.0.1:<port>;tcp   (To-Path of AUTH;
#                                                 msrps:// with TLS)
#                                       RELAY_DIR=<dir>   RELAY_LOG=<dir>/kamailio.log
#   run-relay.sh stop PID             SIGTERM to that kamailio (its children follow), waits for
#                                     it; SIGKILL to its process group only after 10 s.
#
# Extra `kamailio -A` defines can be given in RELAY_DEFINES (e.g. RELAY_DEFINES="-A
# RELAY_FORWARD_200 -A RELAY_DEBUG=3"). With RELAY_TLS_CERT and RELAY_TLS_KEY (PEM files) set,
# the relay speaks TLS only (msrps; tls.so from kamailio-tls-modules). Exit status non-zero,
# with the log's tail on stderr, when Kamailio does not come up within 10 s.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/../../scripts/lib.sh"
cfg=$here/msrp-relay.cfg

# Alive and not a zombie (an exited kamailio waits for its new parent to reap it).
alive() {
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

is_our_kamailio() {
    [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q "kamailio .*-f $cfg"
}

case ${1:-} in
start)
    command -v kamailio >/dev/null || msrpcast_die "kamailio not installed (scripts/install-deps.sh)"
    port=${2:-$(msrpcast_free_port)}
    dir=${3:-$(mktemp -d /tmp/msrpcast-relay.XXXXXX)}
    mkdir -p "$dir"
    log=$dir/kamailio.log
    scheme=msrp
    tls=()
    if [[ -n ${RELAY_TLS_CERT:-} || -n ${RELAY_TLS_KEY:-} ]]; then
        [[ -r ${RELAY_TLS_CERT:-} && -r ${RELAY_TLS_KEY:-} ]] ||
            msrpcast_die "RELAY_TLS_CERT and RELAY_TLS_KEY must both name readable PEM files"
        scheme=msrps
        cat >"$dir/tls.cfg" <<EOF
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = $RELAY_TLS_CERT
private_key = $RELAY_TLS_KEY

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
EOF
        tls=(-A RELAY_TLS -A "RELAY_TLS_CFG=\"$dir/tls.cfg\"")
    fi
    # Own process group (job control on), so that stop can reach stragglers by group id.
    set -m
    # shellcheck disable=SC2086 # RELAY_DEFINES is a list of words on purpose
    kamailio -DD -E -f "$cfg" -Y "$dir" -w "$dir" -m 64 -M 8 \
        -A "RELAY_PORT=$port" -A "RELAY_PATH_ADDR=\"127.0.0.1:$port\"" "${tls[@]}" ${RELAY_DEFINES:-} \
        </dev/null >"$log" 2>&1 &
    pid=$!
    set +m
    if ! msrpcast_wait_port "$port" 10 "$pid"; then
        tail -20 "$log" >&2 || true
        kill -TERM "$pid" 2>/dev/null || true
        msrpcast_die "kamailio did not listen on 127.0.0.1:$port"
    fi
    printf "RELAY_PID='%s'\nRELAY_PORT='%s'\nRELAY_URI='%s://127.0.0.1:%s;tcp'\nRELAY_DIR='%s'\nRELAY_LOG='%s'\n" \
        "$pid" "$port" "$scheme" "$port" "$dir" "$log"
    ;;
stop)
    pid=${2:?usage: run-relay.sh stop PID}
    alive "$pid" || exit 0
    is_our_kamailio "$pid" || msrpcast_die "PID $pid is not a kamailio started with $cfg"
    kill -TERM "$pid"
    # Done when the main process and every child in its process group are gone.
    for ((i = 0; i < 200; i++)); do
        if ! alive "$pid"; then
            left=0
            for p in $(pgrep -g "$pid" || true); do alive "$p" && left=1; done
            ((left)) || exit 0
        fi
        sleep 0.05
    done
    msrpcast_log "kamailio $pid still running after 10 s: SIGKILL to its process group"
    kill -KILL -- "-$pid" 2>/dev/null || true
    ;;
*)
    sed -n '2,20p' "$0" >&2
    exit 2
    ;;
esac
