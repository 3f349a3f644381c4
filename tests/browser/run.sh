#!/usr/bin/env bash
# The browser test of the upload page (issue 4, "A real browser"; issue 15, "The page"; issue 12,
# "the browser test runs once over HTTPS"): headless Debian Chromium, driven by playwright-core
# (tests/browser/browser.test.mjs), against `msrpcast serve` with `msrpcast receive` processes as
# the participants of three conferences:
#
#   4711  three well-behaved receivers: one 20 MiB file (SHA-1 at every receiver), then three
#         files queued at once (the upload throttled, so the queue is seen), wording of failure
#         reasons, a phone-sized screen, dark mode;
#   4712  one well-behaved receiver and one that reads 8 MiB/s and drops the connection after
#         12.3 MiB (--misbehave rate=8388608,close-after=12897484): "connection lost after …";
#   4713  two receivers reading 1 MiB/s: bars with rate and time left, then Stop, every row
#         "cancelled", no complete copy anywhere.
#
# Phase "http" runs all of that over plain HTTP, with an axe-core accessibility check (light and
# dark) that fails on any serious or critical violation. Phase "https" restarts `msrpcast serve`
# with a certificate from a CA made here (openssl) and runs once more over HTTPS: the CA is
# trusted by Chromium through an NSS database in the browser's own $HOME (certutil), so the
# certificate is verified for real — chain, name (127.0.0.1), dates — and no certificate error
# is ignored; a browser without that database must refuse the page. It checks the Secure
# cookie, the Strict-Transport-Security header and one delivery.
#
# Screenshots go to artifacts/ (git-ignored). One line per check, then `N passed, M failed`;
# exit status 0 only if nothing failed. Every process started here is stopped by its PID on exit.
# Needs /usr/bin/chromium, node/npm, openssl and certutil (scripts/install-deps.sh); runs
# `npm ci` here when the pinned playwright-core or axe-core is not installed yet. Never
# downloads a browser.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
ARTIFACTS=${ARTIFACTS:-$root/artifacts}

log() { printf 'browser-test: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ -x $CHROMIUM ]] || die "$CHROMIUM not found: install Debian's chromium (scripts/install-deps.sh)"
command -v node >/dev/null || die "node not found: install nodejs and npm (scripts/install-deps.sh)"
command -v openssl >/dev/null || die "openssl not found (scripts/install-deps.sh)"
command -v certutil >/dev/null || die "certutil not found: install libnss3-tools (scripts/install-deps.sh)"

# playwright-core and axe-core, exactly as package-lock.json pins them (npm ci never downloads a
# browser).
need_ci=
for pkg in playwright-core axe-core; do
    want=$(node -e 'console.log(require(process.argv[1]).packages["node_modules/" + process.argv[2]].version)' \
        "$here/package-lock.json" "$pkg")
    have=$(node -e 'try { console.log(require(process.argv[1]).version) } catch { console.log("") }' \
        "$here/node_modules/$pkg/package.json")
    [[ $have == "$want" ]] || need_ci+=" $pkg@$want"
done
if [[ -n $need_ci ]]; then
    log "npm ci ($need_ci )"
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

# The binary: cargo's default target dir unless CARGO_TARGET_DIR says otherwise.
cargo build --release --locked --bin msrpcast >&2
bin=${CARGO_TARGET_DIR:-$root/target}/release/msrpcast
[[ -x $bin ]] || die "$bin was not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/msrpcast-browser.XXXXXX")
pids=()
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
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

# start_receiver NAME [MISBEHAVE]: a receiver on 127.0.0.1 (any port). Sets rx_uri (its MSRP
# URI, its first line).
session_salt=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
start_receiver() {
    local name=$1 misbehave=${2:-} args pid
    args=(receive --listen 127.0.0.1:0 --session-id "brw$name$session_salt" --dir "$tmp/$name")
    if [[ -n $misbehave ]]; then args+=(--misbehave "$misbehave"); fi
    "$bin" "${args[@]}" >"$tmp/$name.log" 2>"$tmp/$name.log.err" &
    pid=$!
    pids+=("$pid")
    rx_uri=$(wait_line "$tmp/$name.log" 10 "$pid") || die "receiver $name did not print its URI"
}

# Conference -> receivers (name:misbehaviour).
declare -A uri_of
receivers=(good1: good2: good3: mixed-ok: mixed-lossy:rate=8388608,close-after=12897484
    slow1:rate=1048576 slow2:rate=1048576)
for r in "${receivers[@]}"; do
    start_receiver "${r%%:*}" "${r#*:}"
    uri_of[${r%%:*}]=$rx_uri
done
participants=(
    --participant "4711=${uri_of[good1]}" --participant "4711=${uri_of[good2]}"
    --participant "4711=${uri_of[good3]}"
    --participant "4712=${uri_of[mixed-ok]}" --participant "4712=${uri_of[mixed-lossy]}"
    --participant "4713=${uri_of[slow1]}" --participant "4713=${uri_of[slow2]}"
)
log "receivers: ${uri_of[*]}"

token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

# start_serve NAME [serve options]: `msrpcast serve` on 127.0.0.1 (port 0: it picks a free port
# and prints the page's URL as its first line). Sets base and serve_pid; waits until it answers
# (over HTTPS: verifying its certificate against the test CA).
start_serve() {
    local name=$1 port
    shift
    "$bin" serve --http 127.0.0.1:0 --token "$token" --spool "$tmp/spool-$name" "${participants[@]}" "$@" \
        >"$tmp/serve-$name.out" 2>"$tmp/serve-$name.log" &
    serve_pid=$!
    pids+=("$serve_pid")
    serve_log=$tmp/serve-$name.log
    base=$(wait_line "$tmp/serve-$name.out" 20 "$serve_pid") || {
        cat "$serve_log" >&2
        die "msrpcast serve did not print its URL"
    }
    base=${base%/}
    [[ $base =~ ^https?://127\.0\.0\.1:([0-9]+)$ ]] || die "msrpcast serve printed ${base@Q}, not its URL"
    port=${BASH_REMATCH[1]}
    local deadline=$((SECONDS + 20))
    until python3 - "$port" "${base%%:*}" "$tmp/ca.pem" <<'EOF' 2>/dev/null
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
if sys.argv[2] == "https":
    s = ssl.create_default_context(cafile=sys.argv[3]).wrap_socket(s, server_hostname="127.0.0.1")
s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
sys.exit(0 if s.recv(12).startswith(b"HTTP/1.") else 1)
EOF
    do
        kill -0 "$serve_pid" 2>/dev/null || { cat "$serve_log" >&2; die "msrpcast serve exited"; }
        ((SECONDS < deadline)) || { cat "$serve_log" >&2; die "msrpcast serve did not answer on $base"; }
        sleep 0.2
    done
    log "serve ($name): $base (pid $serve_pid)"
}

mkdir -p "$ARTIFACTS"
results=$tmp/results
: >"$results"
run_phase() {
    local rc=0 phase=$1
    shift
    env BASE_URL="$base" TOKEN="$token" ARTIFACTS="$ARTIFACTS" CHROMIUM="$CHROMIUM" RECEIVERS="$tmp" \
        RESULTS="$results" "$@" node "$here/browser.test.mjs" "$phase" || rc=$?
    return "$rc"
}

phase_rc=0
start_serve http
run_phase http || phase_rc=1
stop_pid "$serve_pid"

# HTTPS: a CA of this run, and a certificate for 127.0.0.1 (and localhost) signed by it.
ca_subj="/CN=msrpcast browser test CA $session_salt"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "$ca_subj" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$tmp/server.ext"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days 2 -extfile "$tmp/server.ext" -out "$tmp/server.pem" 2>/dev/null
# Chromium on Linux reads the user's trust from the NSS database in $HOME/.pki/nssdb: a HOME of
# this run with only the test CA in it, trusted for TLS servers ("C,,").
trust_home=$tmp/home-trusting
mkdir -p "$trust_home/.pki/nssdb"
certutil -N -d "sql:$trust_home/.pki/nssdb" --empty-password
certutil -A -d "sql:$trust_home/.pki/nssdb" -n "msrpcast browser test CA" -t "C,," -i "$tmp/ca.pem"
plain_home=$tmp/home-plain
mkdir -p "$plain_home"

start_serve https --https-cert "$tmp/server.pem" --https-key "$tmp/server.key"
[[ $base == https://* ]] || die "serve with --https-cert printed $base"
run_phase https TRUST_HOME="$trust_home" PLAIN_HOME="$plain_home" || phase_rc=1
stop_pid "$serve_pid"

passed=$(grep -c '^ok ' "$results" || true)
failed=$(grep -c '^FAIL ' "$results" || true)
if ((phase_rc && failed == 0)); then failed=1; echo "FAIL a test phase ended abnormally"; fi
if ((failed)); then
    for f in "$tmp"/serve-*.log; do
        log "$(basename "$f") (last 30 lines):"
        tail -n 30 "$f" >&2 || true
    done
fi
echo "$passed passed, $failed failed"
((failed == 0))
