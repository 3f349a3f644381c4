# Scenario "restart" of the Kamailio end-to-end test (issue 14), sourced by e2e.sh (which runs
# it with the others unless E2E_ONLY names the scenarios):
#   - a file uploaded to a live conference survives a restart of Kamailio (SIGTERM, then a new
#     start on the same spool folder): a participant joining after the restart receives it,
#     SHA-1 checked;
#   - `kill -9` of the engine process makes Kamailio exit (its main process ends every child
#     when one dies) instead of hanging, and the file survives that too;
# Kamailio is started again at the end, so the scenarios and checks after this one run against
# a fresh instance; the logs of the instances stopped here are kept as kamailio-restart-*.log.
# Uses e2e.sh's check/ok/fail, mkfile, sha1, proc_exited_ok, engine_pid and lib.sh.
# shellcheck shell=bash

[[ -z ${E2E_ONLY:-} ]] && only="$only restart"

spool_count() { # spool_count EXT: msrpcast-*.EXT files in the spool folder
    find "$work/spool" -maxdepth 1 -name "msrpcast-*.$1" | wc -l
}
spool_has() { [[ $(spool_count spool) -eq $1 && $(spool_count record) -eq $1 ]]; }
is_gone() { ! kill -0 "$1" 2>/dev/null; }
all_gone() { # all_gone PID...: none of them runs any more
    local p
    for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done
    return 0
}
log_has() { grep -q "$2" "$1"; }

# restart_kamailio N: starts Kamailio again as e2e.sh did (same ports, spool and arguments);
# the log of the instance before is kamailio-restart-N.log.
restart_kamailio() {
    mv "$work/kamailio.log" "$work/kamailio-restart-$1.log"
    if e2e_start_kamailio "$work/kamailio.log" -A DEBUG_LEVEL="${E2E_DEBUG:-2}"; then
        ok "kamailio starts again on the same spool (pid $kam_pid)"
    else
        fail "kamailio starts again on the same spool"
        tail -20 "$work/kamailio.log"
        return 1
    fi
}

scenario_restart() {
    local f sum st epid kids
    echo "== restart: a complete file survives a Kamailio restart and a kill -9 of the engine"
    participant r1 6 participant_uas.xml
    check "1 participant joined conf 6" wait_for 20 has_participants 6 1
    f=$(mkfile r.bin 4)
    sum=$(sha1 "$f")
    upload 6 "$f"
    check "r1 received the file" wait_for 60 received_ok r1 "$sum"
    check "the spool holds the file and its record" wait_for 10 spool_has 1

    # SIGTERM: the engine stops cleanly; the complete file and its record stay.
    kill -TERM "$kam_pid"
    check "kamailio stops on SIGTERM" proc_exited_ok "$kam_pid"
    # (The engine's own log lines of its stop are not in Kamailio's log: the engine process
    # exits right after the stop. What it kept is on disk.)
    check "after the stop the spool still holds the file and its record" spool_has 1
    restart_kamailio 1 || return 1
    check "the engine restored the file from its record" \
        wait_for 20 log_has "$work/kamailio.log" "restored from msrpcast-"
    participant r2 6 participant_uas.xml
    check "r2 joined conf 6 after the restart" wait_for 20 has_participants 6 1
    check "r2 (joined after the restart) received the file with SHA-1 $sum" \
        wait_for 60 received_ok r2 "$sum"
    check "r2's file session ended with a BYE" proc_exited_ok "${uas_pid[r2]}"

    # kill -9 of the engine process: Kamailio's main process sees its child die and ends
    # every process (it does not go on without the engine, nor hang).
    epid=$(engine_pid)
    kids=$(kam core.psx 2>/dev/null | awk '/PID:/ {print $2}' | tr '\n' ' ')
    if [[ -z $epid ]]; then
        fail "the engine process is listed by core.psx"
        return 1
    fi
    kill -9 "$epid"
    check "kamailio exits after kill -9 of its engine process ($epid)" wait_for 30 is_gone "$kam_pid"
    wait "$kam_pid"
    st=$?
    echo "   kamailio's exit status: $st; what it logged:"
    grep -iE "signal 9|terminat|exit" "$work/kamailio.log" | tail -4 | sed 's/^/   /'
    # shellcheck disable=SC2086
    check "no process of that kamailio is left ($kids)" wait_for 10 all_gone $kids
    check "the file and its record survived the kill -9" spool_has 1
    restart_kamailio 2 || return 1
    participant r3 6 participant_uas.xml
    check "r3 (joined after the kill -9 and a new start) received the file with SHA-1 $sum" \
        wait_for 60 received_ok r3 "$sum"
    hangup r1
    hangup r2
    hangup r3
    check "participants left conf 6" wait_for 20 has_participants 6 0
    check "the conference's end removed the file and its record" wait_for 10 spool_has 0
    rm -f "$f"
}
