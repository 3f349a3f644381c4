#!/usr/bin/env bash
# The browser test of the upload page (issue 4, "A real browser"): headless Debian Chromium,
# driven by playwright-core (tests/browser/browser.test.mjs), against `msrpcast serve` with three
# `msrpcast receive` processes as the participants of conference 4711.
#
#   phase "upload": log in, pick 4711, upload a generated 20 MiB file, see all three rows reach
#                   "done", check the SHA-1 of every receiver's copy; screenshots.
#   phase "cancel": the receivers are restarted on the same ports reading 1 MiB/s
#                   (--misbehave rate=1048576); upload again, click Cancel while sending, see
#                   every row "cancelled"; screenshots.
#
# Screenshots go to artifacts/ (git-ignored). One line per check, then `N passed, M failed`;
# exit status 0 only if nothing failed. Every process started here is stopped by its PID on exit.
# Needs /usr/bin/chromium and node/npm (scripts/install-deps.sh); runs `npm ci` here when the
# pinned playwright-core is not installed yet. Never downloads a browser.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
CONFERENCE=4711
ARTIFACTS=${ARTIFACTS:-$root/artifacts}

log() { printf 'browser-test: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ -x $CHROMIUM ]] || die "$CHROMIUM not found: install Debian's chromium (scripts/install-deps.sh)"
command -v node >/dev/null || die "node not found: install nodejs and npm (scripts/install-deps.sh)"

# playwright-core, exactly as package-lock.json pins it (npm ci never downloads a browser).
want=$(node -e 'console.log(require(process.argv[1]).packages["node_modules/playwright-core"].version)' \
    "$here/package-lock.json")
have=$(node -e 'try { console.log(require(process.argv[1]).version) } catch { console.log("") }' \
    "$here/node_modules/playwright-core/package.json")
if [[ $have != "$want" ]]; then
    log "npm ci (playwright-core $want)"
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

# The binary: cargo's default target dir unless CARGO_TARGET_DIR says otherwise.
cargo build --release --locked --bin msrpcast >&2
bin=${CARGO_TARGET_DIR:-$root/target}/release/msrpcast
[[ -x $bin ]] || die "$bin was not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/msrpcast-browser.XXXXXX")
pids=()
stop_all() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_all
    if [[ -n ${KEEP_TMP:-} ]]; then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_line FILE SECONDS PID: the first line of FILE, once the process has written it.
wait_line() {
    local file=$1 deadline=$((SECONDS + $2)) pid=$3
    while ((SECONDS < deadline)); do
        if [[ -s $file ]] && IFS= read -r line <"$file" && [[ -n $line ]]; then
            printf '%s\n' "$line"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$file" "$file.err" >&2 2>/dev/null; return 1; }
        sleep 0.1
    done
    return 1
}

# start_receiver N PORT [MISBEHAVE]: receiver N on 127.0.0.1:PORT (0: any). Sets rx_uri (its
# MSRP URI, its first line) and rx_log (its stdout).
start_receiver() {
    local n=$1 port=$2 misbehave=${3:-} args pid
    rx_log=$tmp/recv$n.${misbehave:+slow.}log
    args=(receive --listen "127.0.0.1:$port" --session-id "brw$n$session_salt" --dir "$tmp/recv$n")
    if [[ -n $misbehave ]]; then args+=(--misbehave "$misbehave"); fi
    "$bin" "${args[@]}" >"$rx_log" 2>"$rx_log.err" &
    pid=$!
    pids+=("$pid")
    rx_uri=$(wait_line "$rx_log" 10 "$pid") || die "receiver $n did not print its URI"
}

session_salt=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
uris=() ports=() logs=() dirs=()
for n in 1 2 3; do
    start_receiver "$n" 0
    uris+=("$rx_uri") logs+=("$rx_log") dirs+=("$tmp/recv$n")
    port=${rx_uri#msrp://*:}
    ports+=("${port%%/*}")
done
log "receivers: ${uris[*]}"

token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
# Port 0: serve picks a free port and prints the page's URL as its first line.
serve_args=(serve --http 127.0.0.1:0 --token "$token" --spool "$tmp/spool")
for uri in "${uris[@]}"; do serve_args+=(--participant "$CONFERENCE=$uri"); done
"$bin" "${serve_args[@]}" >"$tmp/serve.out" 2>"$tmp/serve.log" &
serve_pid=$!
pids+=("$serve_pid")
base=$(wait_line "$tmp/serve.out" 20 "$serve_pid") || {
    cat "$tmp/serve.log" >&2
    die "msrpcast serve did not print its URL"
}
base=${base%/}
[[ $base =~ ^http://127\.0\.0\.1:([0-9]+)$ ]] || die "msrpcast serve printed ${base@Q}, not its URL"
http_port=${BASH_REMATCH[1]}
deadline=$((SECONDS + 20))
until python3 - "$http_port" <<'EOF' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
sys.exit(0 if s.recv(12).startswith(b"HTTP/1.") else 1)
EOF
do
    kill -0 "$serve_pid" 2>/dev/null || { cat "$tmp/serve.log" >&2; die "msrpcast serve exited"; }
    ((SECONDS < deadline)) || { cat "$tmp/serve.log" >&2; die "msrpcast serve did not answer on $base"; }
    sleep 0.2
done
log "serve: $base (pid $serve_pid)"

mkdir -p "$ARTIFACTS"
results=$tmp/results
: >"$results"
run_phase() {
    local rc=0
    BASE_URL=$base TOKEN=$token CONFERENCE=$CONFERENCE ARTIFACTS=$ARTIFACTS CHROMIUM=$CHROMIUM \
        RECEIVER_DIRS=$(IFS=:; echo "${dirs[*]}") RECEIVER_LOGS=$(IFS=:; echo "${logs[*]}") \
        RESULTS=$results node "$here/browser.test.mjs" "$1" || rc=$?
    return "$rc"
}

phase_rc=0
run_phase upload || phase_rc=1

# Cancel run: the same receivers (same ports and session ids), now reading 1 MiB/s.
receivers_pids=("${pids[@]:0:3}")
for pid in "${receivers_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
pids=("${pids[@]:3}")
logs=()
for n in 1 2 3; do
    start_receiver "$n" "${ports[n - 1]}" rate=1048576
    [[ $rx_uri == "${uris[n - 1]}" ]] || die "receiver $n restarted as $rx_uri, not ${uris[n - 1]}"
    logs+=("$rx_log")
done
run_phase cancel || phase_rc=1

passed=$(grep -c '^ok ' "$results" || true)
failed=$(grep -c '^FAIL ' "$results" || true)
if ((phase_rc && failed == 0)); then failed=1; echo "FAIL a test phase ended abnormally"; fi
if ((failed)); then
    log "serve log (last 30 lines):"
    tail -n 30 "$tmp/serve.log" >&2 || true
fi
echo "$passed passed, $failed failed"
((failed == 0))
