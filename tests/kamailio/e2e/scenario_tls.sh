# The `tls` scenario of tests/kamailio/e2e/e2e.sh (sourced from it; it defines scenario_tls and
# adds `tls` to the scenarios run by default): one transfer with MSRP over TLS.
#
# A second Kamailio with cfg/kamailio.cfg and MSRP TLS on (MSRPCAST_MSRP_TLS and the
# MSRPCAST_TLS_* defines; its own ports, runtime dir, control socket and spool; the same mixer),
# certificates made here with the openssl CLI: a CA, the participant's certificate for 127.0.0.1
# signed by it (the engine checks it: tls_verify host, tls_ca = that CA), the engine's own
# self-signed one. The participant's UAS requires a TLS offer (TCP/TLS/MSRP, msrps a=path,
# a=fingerprint) and answers TCP/TLS/MSRP with the a=path of a `msrpcast receive` that accepts
# TLS only; the file arrives with its SHA-1. Then msrpcast.reload_tls: a renewed engine
# certificate is reloaded (kamcmd and jsonrpcs answer MSRPCAST_OK with its fingerprint, as
# openssl computes it), a broken one is refused with MSRPCAST_ERR_IO naming the file.
# shellcheck shell=bash

[[ -n ${E2E_ONLY:-} ]] || only+=" tls"

# tls_pki DIR: the CA, participant and engine certificates (two engine ones: the second is the
# renewal reloaded later).
tls_pki() {
    local d=$1 i
    mkdir -p "$d"
    (
        cd "$d" || exit 1
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=msrpcast e2e CA" -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign" -keyout ca.key -out ca.pem &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -subj "/CN=127.0.0.1" -keyout part.key -out part.csr &&
            printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=CA:FALSE" \
                "extendedKeyUsage=serverAuth,clientAuth" >part.ext &&
            openssl x509 -req -in part.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile part.ext -out part.pem || exit 1
        for i in 1 2; do
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
                -subj "/CN=msrpcast engine $i" -addext "subjectAltName=IP:127.0.0.1" \
                -keyout "engine$i.key" -out "engine$i.pem" || exit 1
        done
    ) >"$d/openssl.log" 2>&1
}

# The certificate's fingerprint as the engine writes it: "sha-256 AB:CD:...".
tls_fingerprint() {
    openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^[^=]*=/sha-256 /'
}

scenario_tls() {
    local d=$work/tls saved
    echo "== tls: one transfer with MSRP over TLS (a second Kamailio with msrp_tls on)"
    if ! check "certificates made with openssl (CA, participant, engine)" tls_pki "$d"; then
        tail -5 "$d/openssl.log"
        return
    fi
    # This scenario's Kamailio: its own ports, runtime dir and spool; the other one's are back
    # at the end.
    saved=("$sip_port" "$http_port" "$msrp_port" "$jsonrpc_port" "$ctl" "$kam_pid")
    sip_port=$(port)
    http_port=$(port)
    msrp_port=$(port)
    jsonrpc_port=$(port)
    ctl="unix:$work/run-tls/ctl"
    cp "$d/engine1.pem" "$d/engine.pem"
    cp "$d/engine1.key" "$d/engine.key"
    if kam_run=$work/run-tls kam_spool=$work/spool-tls e2e_start_kamailio "$work/kamailio-tls.log" \
        -A DEBUG_LEVEL="${E2E_DEBUG:-2}" -A 'MSRPCAST_MSRP_TLS="on"' \
        -A "MSRPCAST_TLS_CERT=\"$d/engine.pem\"" -A "MSRPCAST_TLS_KEY=\"$d/engine.key\"" \
        -A "MSRPCAST_TLS_CA=\"$d/ca.pem\"" -A 'MSRPCAST_TLS_VERIFY="host"'; then
        ok "kamailio with msrp_tls on starts (SIP $sip_port, MSRP $msrp_port)"
        scenario_tls_run "$d"
    else
        fail "kamailio with msrp_tls on starts"
        tail -20 "$work/kamailio-tls.log"
    fi
    # As for the other Kamailio: its log is checked while it runs (Kamailio's TCP readers may log
    # a CRITICAL "EOF" of their fd pipe while they are shut down).
    if grep -q "CRITICAL\|segfault\|died" "$work/kamailio-tls.log"; then
        fail "no CRITICAL or dead process in the TLS kamailio's log"
        grep "CRITICAL\|segfault\|died" "$work/kamailio-tls.log" | head -5
    else
        ok "no CRITICAL or dead process in the TLS kamailio's log"
    fi
    kill -TERM "$kam_pid" 2>/dev/null
    check "the TLS kamailio shuts down cleanly on SIGTERM" proc_exited_ok "$kam_pid"
    sip_port=${saved[0]} http_port=${saved[1]} msrp_port=${saved[2]}
    jsonrpc_port=${saved[3]} ctl=${saved[4]} kam_pid=${saved[5]}
}

# kamcmd's answer to msrpcast.reload_tls is MSRPCAST_OK with fingerprint $1.
reload_ok_kamcmd() {
    local out
    out=$(kam msrpcast.reload_tls 2>&1)
    echo "$out" | sed 's/^/   kamcmd: /'
    grep -q "result: MSRPCAST_OK" <<<"$out" && grep -qF "fingerprint: $1" <<<"$out"
}
# jsonrpcs: {"result": "MSRPCAST_OK", "msrp": true, "fingerprint": $1}.
reload_ok_jsonrpc() {
    local out
    out=$(kam_jsonrpc msrpcast.reload_tls) || { echo "   jsonrpcs: $out"; return 1; }
    echo "   jsonrpcs: $out"
    python3 -c '
import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if d.get("result") == "MSRPCAST_OK" and d.get("msrp") in (True, 1)
         and d.get("fingerprint") == sys.argv[2] else 1)' "$out" "$1"
}
# Both ways, the reload is an RPC error with MSRPCAST_ERR_IO and the reason naming file $1.
reload_fails_naming() {
    local out
    out=$(kam msrpcast.reload_tls 2>&1 || true)
    echo "   kamcmd: $out"
    grep -qi error <<<"$out" && grep -q "MSRPCAST_ERR_IO" <<<"$out" && grep -qF "$1" <<<"$out" ||
        return 1
    out=$(curl -s --max-time 10 -d '{"jsonrpc":"2.0","method":"msrpcast.reload_tls","id":1}' \
        "http://127.0.0.1:$jsonrpc_port/RPC")
    echo "   jsonrpcs: $out"
    python3 -c '
import json, sys
d = json.loads(sys.argv[1])
m = d.get("error", {}).get("message", "")
sys.exit(0 if "MSRPCAST_ERR_IO" in m and sys.argv[2] in m else 1)' "$out" "$1"
}

scenario_tls_run() {
    local d=$1 f sum fp2 first
    participant t1 6 participant_uas_tls.xml --tls-cert "$d/part.pem" --tls-key "$d/part.key"
    first=$(head -1 "${recv_out[t1]}")
    check "t1's receiver listens with TLS only ($first)" grep -q '^msrps://127\.0\.0\.1:' <<<"$first"
    check "1 participant joined conf 6" wait_for 20 has_participants 6 1
    f=$(mkfile tls.bin 8)
    sum=$(sha1 "$f")
    upload 6 "$f"
    if ! check "t1 received 8 MiB over TLS with SHA-1 $sum" wait_for 60 received_ok t1 "$sum"; then
        participant_diag t1
        deliveries 6 | sed 's/^/   delivery: /'
    fi
    check "conf 6 delivery finished" wait_for 10 all_terminal 6 1
    check "t1's delivery is done" test "$(state_of 6 t1 | cut -d' ' -f1)" = done
    check "t1's UAS got a TLS offer and its file session ended with a BYE" \
        proc_exited_ok "${uas_pid[t1]}"
    deliveries 6 | sed 's/^/   delivery: /'
    hangup t1
    check "t1 hung up its conference call" proc_exited_ok "${uac_pid[t1]}"

    # A renewed certificate: reloaded, both RPC transports answer its fingerprint.
    cp "$d/engine2.pem" "$d/engine.pem"
    cp "$d/engine2.key" "$d/engine.key"
    fp2=$(tls_fingerprint "$d/engine2.pem")
    check "kamcmd msrpcast.reload_tls: MSRPCAST_OK with the new certificate's fingerprint" \
        reload_ok_kamcmd "$fp2"
    check "jsonrpcs msrpcast.reload_tls: result MSRPCAST_OK, msrp true, the same fingerprint" \
        reload_ok_jsonrpc "$fp2"
    # A broken one: refused naming the file; the renewed certificate stays in use.
    echo "not a certificate" >"$d/engine.pem"
    check "msrpcast.reload_tls of a broken certificate: RPC error MSRPCAST_ERR_IO naming the file" \
        reload_fails_naming "$d/engine.pem"
    cp "$d/engine2.pem" "$d/engine.pem"
    check "after the fix msrpcast.reload_tls succeeds again (same fingerprint)" \
        reload_ok_kamcmd "$fp2"
    check "the engine process logged the reloads" grep -q "MSRP TLS reloaded" "$work/kamailio-tls.log"
}
