# The `offerin` scenario of tests/kamailio/e2e/e2e.sh (sourced from it; it defines
# scenario_offerin and adds `offerin` to the scenarios run by default): a participant sends a
# file to the room (issue 13).
#
# Three participants in conf-oi (each a sipp UAC in the call, a sipp UAS and a `msrpcast
# receive`). Then the sender's phone — a sipp UAC (participant_push_uac.xml) with the Contact of
# its conference call — sends an INVITE with an RFC 5547 push offer of a 32 MiB file to
# sip:conf-oi@kamailio; cfg/kamailio.cfg hands it to msrpcast_offer_in, which answers 200 with
# the engine's SDP. The test reads the answer's a=path from sipp's log and drives the phone's
# MSRP side with `msrpcast send --to <path>`. The two others receive the file with its SHA-1;
# the sender's own UAS is never offered it; msrpcast.transfers shows via participant and the
# sender's key; the push dialog's BYE is answered 200. A phone that is not in the conference
# gets 403.
# shellcheck shell=bash

[[ -n ${E2E_ONLY:-} ]] || only+=" offerin"

# push NAME CONTACT_PORT FILE: the push INVITE from a phone whose Contact port is CONTACT_PORT;
# its sipp log is $work/NAME/push.log. Sets uac_port[NAME], cid[NAME] (for hangup), push_pid.
push() {
    local name=$1 cport=$2 file=$3 pport pmedia
    pport=$(port)
    pmedia=$(media_port)
    mkdir -p "$work/$name"
    timeout "${E2E_SIPP_TIMEOUT:-600}" sipp -sf "$e2e_dir/participant_push_uac.xml" -i 127.0.0.1 \
        -p "$pport" -mp "$pmedia" -m 1 -nostdin -s "conf-oi" -key contact_port "$cport" \
        -key offer_name "$(basename "$file")" -key offer_size "$(stat -c %s "$file")" \
        -cid_str "$name-%u@e2e" -trace_logs -log_file "$work/$name/push.log" \
        -trace_err -error_file "$work/$name/push.err" \
        "127.0.0.1:$sip_port" >"$work/$name/push.out" 2>&1 </dev/null &
    push_pid=$!
    pids+=("$push_pid")
    uac_port[$name]=$pport
    cid[$name]="$name-1@e2e"
}

answer_path() { # answer_path NAME -> the a=path of the 200 the push got
    sed -n 's/.*answer-path \(msrps\{0,1\}:[^ ]*\).*/\1/p' "$work/$1/push.log" 2>/dev/null | head -1
}
has_answer_path() { [[ -n $(answer_path "$1") ]]; }
push_refused() { grep -q "refused 403" "$work/$1/push.log" 2>/dev/null; }

# offerin_transfer CONF SENDER_KEY -> "id via sender state" of the conference's participant file.
offerin_transfer() {
    status_json msrpcast.transfers 2>/dev/null | python3 -c '
import json, sys
conf, key = sys.argv[1], sys.argv[2]
try:
    d = json.loads(sys.stdin.read())
except ValueError:
    sys.exit(1)
for t in d["transfers"]:
    if t["conference"] == conf and t.get("sender") == key:
        print(t["id"], t.get("via"), t.get("sender"), t["state"])
        sys.exit(0)
sys.exit(1)' "$1" "$2"
}
offerin_complete() { [[ $(offerin_transfer "$1" "$2" | awk '{print $4}') == complete ]]; }
no_delivery_to() { # no_delivery_to CONF NAME: no delivery of CONF names the participant's key
    ! deliveries "$1" | awk -v p="${cid[$2]}" '$3 == p {f=1} END {exit !f}'
}

send_to_room() { # send_to_room PATH FILE: the phone's MSRP side
    timeout 120 "$bin" send --to "$1" "$2" >"$work/o1push/send.out" 2>&1
}

scenario_offerin() {
    local f sum path p
    echo "== offerin: a participant sends a ${size_mib} MiB file to the room"
    for p in o1 o2 o3; do participant "$p" oi participant_uas.xml; done
    check "3 participants joined conf oi" wait_for 20 has_participants oi 3
    f=$(mkfile offerin.bin "$size_mib")
    sum=$(sha1 "$f")
    # o1's phone: the Contact of its conference call is its UAS's port.
    push o1push "${uas_port[o1]}" "$f"
    check "the push INVITE is answered 200 with an a=path (msrpcast_offer_in)" \
        wait_for 20 has_answer_path o1push
    path=$(answer_path o1push)
    echo "   answer a=path: $path"
    if [[ -n $path ]]; then
        check "msrpcast send --to <answer path> delivers the file to the room" \
            send_to_room "$path" "$f"
        tail -3 "$work/o1push/send.out" | sed 's/^/   send: /'
    fi
    for p in o2 o3; do
        check "$p received ${size_mib} MiB with SHA-1 $sum" wait_for 120 received_ok "$p" "$sum"
    done
    check "msrpcast.transfers: the file is complete, via participant, sender o1's key" \
        wait_for 20 offerin_complete oi "${cid[o1]}"
    echo "   transfer: $(offerin_transfer oi "${cid[o1]}")"
    check "conf oi: 2 deliveries finished" wait_for 30 all_terminal oi 2
    deliveries oi | sed 's/^/   delivery: /'
    check "the sender is never offered its own file (no delivery to o1)" no_delivery_to oi o1
    check "o1's receiver got nothing" not received_ok o1 "$sum"
    hangup o1push
    check "the push dialog's BYE is answered 200 (sipp push scenario complete)" \
        proc_exited_ok "$push_pid"

    # A phone that is not in the conference: 403.
    push x1push "$(port)" "$f"
    check "a non-participant's push INVITE gets 403" wait_for 20 push_refused x1push
    check "the 403 scenario completes (ACK sent)" proc_exited_ok "$push_pid"
    for p in o1 o2 o3; do hangup "$p"; done
    check "participants left conf oi" wait_for 10 has_participants oi 0
    rm -f "$f"
}
