# Shared shell helpers for msrpcast's scripts. Source it; it defines functions only.
# shellcheck shell=bash

msrpcast_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
msrpcast_die() { msrpcast_log "error: $*"; exit 1; }

# The repository root (the folder above scripts/).
msrpcast_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# Prints a port on 127.0.0.1 that is free right now for both TCP and UDP (sipp binds UDP, the
# receivers and Kamailio TCP). It is drawn at random from below the kernel's ephemeral range
# (/proc/sys/net/ipv4/ip_local_port_range), not asked of the kernel: a port the kernel hands out
# for bind(0) is one it may hand out again, a moment later, as the local port of an outgoing
# connection (curl, a wait_port probe, the engine's connections to receivers) before the process
# meant to listen on it has bound it. With MSRPCAST_PORTS_USED naming a file, ports already
# printed in this run (listed there) are never printed again, and each new one is appended.
# msrpcast_free_port media: a port P for sipp's -mp, which binds P and P+2 (audio and video
# RTP): both are checked and both recorded (a P+2 left out collided with another draw's P).
msrpcast_free_port() {
    python3 - "${MSRPCAST_PORTS_USED:-}" "${1:-}" <<'EOF'
import random, socket, sys

used_file = sys.argv[1]
steps = (0, 2) if sys.argv[2] == "media" else (0,)
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
low = max(low, 12000)
used = set()
if used_file:
    try:
        used = {int(x) for x in open(used_file).read().split()}
    except OSError:
        pass


def free(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


for _ in range(2000):
    port = random.randrange(10000, low - 2)
    if all(port + k not in used and free(port + k) for k in steps):
        if used_file:
            with open(used_file, "a") as f:
                f.writelines(f"{port + k}\n" for k in steps)
        print(port)
        sys.exit(0)
sys.exit("msrpcast_free_port: no free port found below the ephemeral range")
EOF
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
