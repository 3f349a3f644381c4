# Shared shell helpers for msrpcast's scripts. Source it; it defines functions only.
# shellcheck shell=bash

msrpcast_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
msrpcast_die() { msrpcast_log "error: $*"; exit 1; }

# The repository root (the folder above scripts/).
msrpcast_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# Prints a TCP port on 127.0.0.1 that is free right now (the kernel picks it).
msrpcast_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# msrpcast_wait_port PORT SECONDS [PID]: waits until 127.0.0.1:PORT accepts a TCP connection.
# Fails early when PID (the process expected to listen) has exited.
msrpcast_wait_port() {
    local port=$1 secs=$2 pid=${3:-} i
    for ((i = 0; i < secs * 20; i++)); do
        if python3 -c 'import socket, sys
s = socket.socket()
s.settimeout(0.2)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$port"; then
            return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
    done
    return 1
}

# `apt-get update`, at most once an hour (a stamp file records the last success), or always
# when MSRPCAST_APT_UPDATE=force (used after adding a source).
msrpcast_apt_update() {
    local stamp=/var/lib/msrpcast/apt-update.stamp
    if [[ ${MSRPCAST_APT_UPDATE:-} != force && -n $(find "$stamp" -mmin -60 2>/dev/null) ]]; then
        return 0
    fi
    mkdir -p "${stamp%/*}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
    touch "$stamp"
}

# msrpcast_wait_listen PORT SECONDS [PID]: waits until something listens on TCP PORT, without
# connecting to it (for one-shot servers such as `iperf3 -s -1`). Reads /proc/net/tcp{,6}.
msrpcast_wait_listen() {
    local port=$1 secs=$2 pid=${3:-} i hex
    hex=$(printf ':%04X ' "$port")
    for ((i = 0; i < secs * 20; i++)); do
        if awk -v p="$hex" 'index($2 " ", p) { if ($4 == "0A") found = 1 } END { exit !found }' \
            /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
            return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
    done
    return 1
}
