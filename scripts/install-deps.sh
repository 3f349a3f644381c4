#!/usr/bin/env bash
# Installs what msrpcast's tests, benchmarks and demo need on a Debian bookworm machine.
#
# Idempotent and non-interactive: run it as root as often as you like; a machine that already
# has everything is left alone (no `apt-get update`, nothing installed, ~1 s). Needs a Rust
# toolchain (cargo) already on PATH; it adds the rustfmt and clippy components if missing.
#
# The Debian kamailio package starts a kamailio daemon (default /etc/kamailio/kamailio.cfg,
# port 5060) from its postinst. The tests start their own Kamailio instances on free ports, and a
# system daemon is not wanted on a test machine, so:
#   - while kamailio is installed here, a temporary /usr/sbin/policy-rc.d (exit 101, Debian's
#     documented "action forbidden" answer) keeps the postinst from starting it — only when no
#     policy-rc.d exists already, and removed again afterwards;
#   - if a packaged daemon runs anyway (installed earlier by someone else), it is stopped with the
#     package's own init script: `service kamailio stop`. It stays enabled for the next boot;
#     `systemctl disable kamailio` (or `update-rc.d kamailio disable`) is left to the admin.
# No process is ever killed by name.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CBINDGEN_VERSION=0.29.4

# Debian packages: SIP/MSRP test peers and the relay, benchmarks, C builds, the browser test.
PACKAGES=(
    kamailio sip-tester iperf3          # Kamailio (incl. msrp.so, kamcmd), sipp, loopback baseline
    kamailio-tls-modules                # tls.so: the msrp relay over TLS (tests/kamailio/run-relay.sh)
    dpkg-dev xz-utils                   # `apt-get source kamailio` for the module's headers;
                                        # dpkg-shlibdeps, dpkg-gencontrol for `make deb`
    build-essential make gcc pkg-config # the Kamailio module and the C tests
    clang-format                        # kamailio-module/format.sh (Kamailio's C style)
    valgrind                            # C tests under valgrind, instruction counts
    python3 procps                      # test helpers (relay smoke, JSON parsing, pgrep -g)
    python3-jsonschema                  # tests/http_api.rs: responses against docs/openapi.json
    python3-prometheus-client           # tests/http_api.rs: /metrics through prometheus_client.parser
    chromium                            # the browser test of the upload page
    libnss3-tools                       # certutil: the browser test trusts its test CA (HTTPS run)
    curl ca-certificates git            # curl: uploads in the end-to-end tests
)
# Node.js for the browser test driver, only when no node is installed (any source).
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) != installed ]]; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || msrpcast_die "must run as root to install: ${missing[*]}"
    msrpcast_log "installing: ${missing[*]}"
    msrpcast_apt_update
    policy=/usr/sbin/policy-rc.d
    created_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, from msrpcast scripts/install-deps.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
        trap 'rm -f "$policy"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null
    if [[ -n $created_policy ]]; then
        rm -f "$policy"
        trap - EXIT
    fi
fi

# A packaged kamailio daemon holding port 5060: stop it through its init script.
kamailio_daemon_running() {
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl is-active --quiet kamailio 2>/dev/null
    else
        local pidfile=/run/kamailio/kamailio.pid
        [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
    fi
}
if kamailio_daemon_running; then
    [[ $(id -u) == 0 ]] || msrpcast_die "the packaged kamailio daemon runs; stop it as root: service kamailio stop"
    msrpcast_log "stopping the packaged kamailio daemon: service kamailio stop"
    service kamailio stop </dev/null
fi

# Rust: the toolchain itself is a prerequisite; its components and cbindgen are installed here.
command -v cargo >/dev/null 2>&1 ||
    msrpcast_die "cargo not found: install a Rust toolchain (rustup, stable >= 1.95) first"
if command -v rustup >/dev/null 2>&1; then
    for c in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" ||
            rustup component add "$c" </dev/null
    done
fi
if [[ $(cbindgen --version 2>/dev/null) != "cbindgen $CBINDGEN_VERSION" ]]; then
    msrpcast_log "installing cbindgen $CBINDGEN_VERSION"
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked </dev/null
fi
# cargo-deny: `make deny` (part of make test) checks licenses, bans and sources against deny.toml.
if ! command -v cargo-deny >/dev/null 2>&1; then
    msrpcast_log "installing cargo-deny"
    cargo install --locked cargo-deny </dev/null
fi

msrpcast_log "all dependencies present"
