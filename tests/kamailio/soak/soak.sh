#!/usr/bin/env bash
# Soak of the Kamailio module (issue 14): a real Kamailio with cfg/kamailio.cfg and msrpcast.so,
# the sipp mixer, and simulated participants (tests/kamailio/e2e/lib.sh) joining and leaving all
# the time while files are uploaded over HTTP; a few receivers misbehave. Afterwards:
#   - every delivery the engine started ended (Kamailio's log has its end line: done, or failed /
#     cancelled with a reason) and none is left running once the churn stops;
#   - the engine process's RSS and open descriptors are back within SOAK_TOLERANCE_PCT of the
#     baseline (taken after a warm-up, with no conference left; the cold figures are printed);
#   - the spool is empty once every conference ended;
#   - Kamailio's log has no ERROR but the expected ones (listed in analyze.py, each with why);
#   - the well-behaved receivers got whole files (size and SHA-1 of an uploaded file).
# Prints a summary of figures and `soak: PASS` or `soak: FAIL (...)`; exits non-zero on failure.
#
#   make soak          the 30-minute run (the defaults below)
#   make soak-short    the 2-minute run of `make test` (the variables set by the Makefile)
#
# Knobs (environment; durations in seconds):
#   SOAK_SECS=1800          length of the churn (joins, leaves, uploads) after the warm-up
#   SOAK_UPLOADS=1000       uploads spread evenly over SOAK_SECS
#   SOAK_WARMUP_SECS=300    warm-up with the same churn (and upload rate) before the baseline
#                           is measured: long enough for the engine's working set to reach its
#                           plateau (the first 30-minute run, with 60 s, had its baseline below
#                           it: RSS +19 % at the end, flat from the first quarter on)
#   SOAK_PARTICIPANTS=12    participants present at once; one joins and (once that many are
#                           present) the longest-present one leaves every SOAK_CHURN_SECS
#   SOAK_CHURN_SECS=1
#   SOAK_CONFS=3            conferences taking joins at once
#   SOAK_CONF_SECS=120      a conference takes joins this long, then a new one replaces it and
#                           the old one ends as its participants leave (its files must go)
#   SOAK_MISBEHAVE_PCT=5    share of receivers that misbehave, in turn: close-after=16384,
#                           never-answer, reply-481, rate=102400 (100 KB/s), flood
#   SOAK_MIN_KIB=32 SOAK_MAX_KIB=2048 SOAK_FILES=12   the uploaded files (sizes spread between)
#   SOAK_LINGER_SECS=5      a participant's receiver and UAS end this long after its hang-up
#   SOAK_DRAIN_SECS=300     hang guard: time for running deliveries to end once the churn stops
#   SOAK_SAMPLE_SECS=10     engine RSS, descriptors and spool size sampled this often
#   SOAK_TOLERANCE_PCT=10
# Needs what tests/kamailio/e2e/e2e.sh needs. KEEP=1 keeps the work directory (also kept on
# failure); samples.tsv, uploads.tsv and kamailio.log there.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/../../../scripts/lib.sh"
# shellcheck source=tests/kamailio/e2e/lib.sh
source "$here/../e2e/lib.sh"
root=$(msrpcast_root)
target=${CARGO_TARGET_DIR:-$root/target}
bin=${MSRPCAST_BIN:-$target/release/msrpcast}
module=${MSRPCAST_SO:-$root/kamailio-module/build/msrpcast.so}

secs=${SOAK_SECS:-1800}
uploads_n=${SOAK_UPLOADS:-1000}
warmup=${SOAK_WARMUP_SECS:-300}
present=${SOAK_PARTICIPANTS:-12}
churn_secs=${SOAK_CHURN_SECS:-1}
confs_n=${SOAK_CONFS:-3}
conf_secs=${SOAK_CONF_SECS:-120}
bad_pct=${SOAK_MISBEHAVE_PCT:-5}
min_kib=${SOAK_MIN_KIB:-32}
max_kib=${SOAK_MAX_KIB:-2048}
files_n=${SOAK_FILES:-12}
linger=${SOAK_LINGER_SECS:-5}
drain=${SOAK_DRAIN_SECS:-300}
sample_secs=${SOAK_SAMPLE_SECS:-10}
tolerance=${SOAK_TOLERANCE_PCT:-10}
modes=(close-after=16384 never-answer reply-481 rate=102400 flood)

if [[ -z ${MSRPCAST_BIN:-} ]]; then
    (cd "$root" && cargo build --release --locked --bin msrpcast) || msrpcast_die "cargo build failed"
fi
[[ -x $bin ]] || msrpcast_die "$bin missing (cargo build --release)"
[[ -r $module ]] || msrpcast_die "$module missing (kamailio-module/build.sh)"
for t in kamailio sipp kamcmd curl python3; do
    command -v "$t" >/dev/null || msrpcast_die "$t not installed"
done
((uploads_n > 0 && secs > 0 && present >= 2 && confs_n >= 1)) ||
    msrpcast_die "SOAK_SECS, SOAK_UPLOADS > 0, SOAK_PARTICIPANTS >= 2, SOAK_CONFS >= 1 please"

work=$(mktemp -d /tmp/msrpcast-soak.XXXXXX)
mkdir -p "$work/run" "$work/spool" "$work/files"
failures=()
pids=()           # Kamailio and the mixer (lib.sh appends to it)
declare -A p_conf p_joined p_left p_mode
live=()           # participants present, oldest first
join_failures=0
E2E_ON_ERROR=join_error
join_error() { say "participant did not start: $*"; }
leaving=()        # participants that hung up, processes still running
all_names=()
seq_no=0

cleanup() {
    local p n
    for n in "${live[@]}" "${leaving[@]}"; do
        for p in "${recv_pid[$n]:-}" "${uas_pid[$n]:-}" "${uac_pid[$n]:-}"; do
            [[ -n $p ]] && kill "$p" 2>/dev/null
        done
    done
    for p in "${upload_pids[@]}" "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    wait 2>/dev/null
    if [[ ${KEEP:-0} == 1 || ${#failures[@]} -gt 0 ]]; then
        echo "work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

now_us() { echo "${EPOCHREALTIME/./}"; }
say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() { failures+=("$1"); say "FAIL - $1"; }

# ---------------------------------------------------------------------------------------------
# Files: SOAK_FILES sizes spread geometrically between SOAK_MIN_KIB and SOAK_MAX_KIB.

python3 - "$work/files" "$files_n" "$min_kib" "$max_kib" <<'EOF' >"$work/files.tsv"
import hashlib, os, sys
d, n, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    kib = lo if n == 1 else round(lo * (hi / lo) ** (i / (n - 1)))
    data = os.urandom(kib * 1024 - (i * 7919) % 1000)  # not all a multiple of the chunk size
    p = os.path.join(d, f"f{i:02d}.bin")
    with open(p, "wb") as f:
        f.write(data)
    print(p, len(data), hashlib.sha1(data).hexdigest(), sep="\t")
EOF
mapfile -t pool < <(cut -f1 "$work/files.tsv")

# ---------------------------------------------------------------------------------------------
# Ports. lib.sh's port() asks python for each one (3 per participant): too slow for a join every
# second on a loaded machine. Here the main loop keeps a file of ports drawn in batches (free
# when drawn, never twice in the run: the same ports.used as msrpcast_free_port), and port()
# reads the next line through a descriptor the subshells share with us (bash's read leaves the
# shared offset after the line it read), so $(port) works.

e2e_ports
ports_drawn=0
draw_ports() { # draw_ports N [media]: N more ports at the end of ports.pool (media.pool: P and P+2)
    python3 - "$MSRPCAST_PORTS_USED" "$1" "${2:-}" >>"$work/${2:-ports}.pool" <<'EOF2'
import random, socket, sys

used_file, n, media = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "media"
step = (0, 2) if media else (0,)
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
low = max(low, 12000)
try:
    used = {int(x) for x in open(used_file).read().split()}
except OSError:
    used = set()


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


got = []
for _ in range(100 * n):
    if len(got) == n:
        break
    port = random.randrange(10000, low - 2)
    if all(port + k not in used and free(port + k) for k in step):
        used.update(port + k for k in step)
        got.append(port)
if len(got) < n:
    sys.exit("draw_ports: not enough free ports below the ephemeral range")
with open(used_file, "a") as f:
    f.write("".join(f"{p + k}\n" for p in got for k in step))
print("\n".join(map(str, got)))
EOF2
    if [[ ${2:-} == media ]]; then
        media_drawn=$((media_drawn + $1))
    else
        ports_drawn=$((ports_drawn + $1))
    fi
}
: >"$work/ports.pool"
: >"$work/media.pool"
exec {portfd}<"$work/ports.pool"
exec {mediafd}<"$work/media.pool"
port() {
    local p
    read -r p <&"$portfd" || { echo "port: the pool ran dry" >&2; return 1; }
    echo "$p"
}
# sipp binds its media port P and P+2: both are free when drawn and neither is handed out again.
media_port() {
    local p
    read -r p <&"$mediafd" || { echo "media_port: the pool ran dry" >&2; return 1; }
    echo "$p"
}
media_drawn=0
ports_used=0  # counted in this shell: 3 ports and 2 media ports per participant
media_used=0
keep_ports() { # at least 30 of each drawn ahead
    if ((ports_drawn - ports_used < 30)); then draw_ports 60; fi
    if ((media_drawn - media_used < 20)); then draw_ports 40 media; fi
}
token=soak-token-$RANDOM
total_secs=$((warmup + secs + drain + 600))
export E2E_MIXER_TIMEOUT=$((total_secs + 600)) E2E_SIPP_TIMEOUT=$((total_secs + 600))
# A participant's UAS answers every file INVITE (E2E_UAS_CALLS=0) until the soak ends it.
export E2E_UAS_CALLS=0
keep_ports
if ! e2e_start_kamailio "$work/kamailio.log" -A DEBUG_LEVEL=2; then
    fail "kamailio starts with msrpcast.so"
    tail -30 "$work/kamailio.log"
    exit 1
fi
e2e_start_mixer
media_used=$((media_used + 1))
infra=("${pids[@]}")

engine_pid() {
    kam core.psx 2>/dev/null | awk '/PID:/ {p = $2} /DSC: msrpcast engine/ {print p; exit}'
}
# The engine process's resident memory (KiB): VmRSS is RssAnon (its heap and stacks) + RssFile
# (mapped files: the binaries) + RssShmem (the pages of Kamailio's shared memory pool it has
# touched: they stay resident in it once touched, whatever the pool's allocator does with them).
# The check is on its own memory, RssAnon + RssFile; Kamailio's pool is checked by what its
# allocator says is used (core.shmmem), which is where a leak of the module's would show.
rss_kib() { awk '/^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} END {print a + f}' "/proc/$1/status" 2>/dev/null; }
# VmRSS ANON FILE SHMEM (KiB)
rss_parts() {
    awk '/^VmRSS:/ {v = $2} /^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} /^RssShmem:/ {s = $2}
        END {print v, a, f, s}' "/proc/$1/status" 2>/dev/null
}
shm_used() { kam core.shmmem 2>/dev/null | awk '$1 == "real_used:" {print $2}'; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
kam_procs() { kam core.psx 2>/dev/null | grep -c 'PID:'; }
# The spool's files (its lock file .msrpcast.lock, held while the engine runs, aside).
spool_list() { find "$work/spool" -type f ! -name .msrpcast.lock "$@"; }
spool_files() { spool_list | wc -l; }
spool_bytes() { spool_list -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }

epid=$(engine_pid)
[[ -n $epid ]] || { fail "the engine process is listed by core.psx"; exit 1; }
procs0=$(kam_procs)
sleep 1
rss_cold=$(rss_kib "$epid")
parts_cold=$(rss_parts "$epid")
shm_cold=$(shm_used)
fds_cold=$(fds "$epid")
say "kamailio up (SIP $sip_port, MSRP $msrp_port, HTTP $http_port); engine $epid: RSS $rss_cold KiB, $fds_cold fds"

# ---------------------------------------------------------------------------------------------
# Participants and conferences

# Conference slots: slot i's conference is s<i>g<generation>; a generation takes joins for
# SOAK_CONF_SECS (slots staggered so that conferences end at different times).
declare -A slot_gen slot_since
conf_of_slot() { echo "s$1g${slot_gen[$1]}"; }
rotate_slots() { # rotate_slots NOW_US
    local i
    for ((i = 1; i <= confs_n; i++)); do
        if (($1 - ${slot_since[$i]} >= conf_secs * 1000000)); then
            slot_gen[$i]=$((slot_gen[$i] + 1))
            slot_since[$i]=$1
        fi
    done
}
init_slots() { # init_slots NOW_US
    local i
    for ((i = 1; i <= confs_n; i++)); do
        slot_gen[$i]=${slot_gen[$i]:-0}
        slot_gen[$i]=$((slot_gen[$i] + 1))
        # Staggered: slot i's first conference is shorter by i/confs of conf_secs.
        slot_since[$i]=$(($1 - (i - 1) * conf_secs * 1000000 / confs_n))
    done
}
live_in() { # live_in CONF -> participants present in CONF by our books
    local n c=0
    for n in "${live[@]}"; do [[ ${p_conf[$n]} == "$1" ]] && c=$((c + 1)); done
    echo "$c"
}

join_one() { # join_one NOW_US: a new participant in the open conference with fewest members
    local i best= bestn=1000000 c n name mode=
    for ((i = 1; i <= confs_n; i++)); do
        c=$(conf_of_slot "$i")
        n=$(live_in "$c")
        ((n < bestn)) && { best=$c; bestn=$n; }
    done
    seq_no=$((seq_no + 1))
    name=p$seq_no
    # Every (100 / SOAK_MISBEHAVE_PCT)-th participant misbehaves, the modes in turn.
    if ((bad_pct > 0 && seq_no * bad_pct / 100 != (seq_no - 1) * bad_pct / 100)); then
        mode=${modes[$(((seq_no * bad_pct / 100 - 1) % ${#modes[@]}))]}
    fi
    keep_ports
    ports_used=$((ports_used + 3))
    media_used=$((media_used + 2))
    p_conf[$name]=$best
    p_joined[$name]=$1
    p_mode[$name]=${mode:--}
    local args=(--discard)
    [[ -n $mode ]] && args+=(--misbehave "$mode")
    if ! participant "$name" "$best" participant_uas.xml "${args[@]}"; then
        # Its receiver did not listen (E2E_ON_ERROR said why; another program may have taken
        # its port since it was drawn): it is ended and counted, the soak goes on.
        join_failures=$((join_failures + 1))
        kill "${recv_pid[$name]}" 2>/dev/null
        wait "${recv_pid[$name]}" 2>/dev/null
        pids=("${infra[@]}")
        return 1
    fi
    pids=("${infra[@]}")
    live+=("$name")
    all_names+=("$name")
}

leave_oldest() { # leave_oldest NOW_US
    local name=${live[0]}
    live=("${live[@]:1}")
    hangup "$name"
    p_left[$name]=$1
    leaving+=("$name")
}

# Ends the processes of participants that hung up SOAK_LINGER_SECS ago (or all with "all").
reap() { # reap NOW_US|all
    local keep=() n p
    for n in "${leaving[@]}"; do
        if [[ $1 != all ]] && (($1 - ${p_left[$n]} < linger * 1000000)); then
            keep+=("$n")
            continue
        fi
        for p in "${recv_pid[$n]:-}" "${uas_pid[$n]:-}" "${uac_pid[$n]:-}"; do
            [[ -n $p ]] || continue
            kill "$p" 2>/dev/null
            wait "$p" 2>/dev/null
        done
    done
    leaving=("${keep[@]}")
}

# ---------------------------------------------------------------------------------------------
# Uploads: over HTTP with curl, in the background (the churn goes on meanwhile); one line per
# upload in uploads.tsv: phase, conference, file, HTTP status.
upload_pids=()
uploads_sent=0
soak_upload() { # soak_upload PHASE CONF FILE
    curl -s -o /dev/null -w "$1\t$2\t${3##*/}\t%{http_code}\n" --max-time 120 \
        -H "Authorization: Bearer $token" \
        -H "Content-Disposition: attachment; filename*=UTF-8''${3##*/}" \
        --data-binary @"$3" "http://127.0.0.1:$http_port/conferences/$2/files" \
        >>"$work/uploads.tsv" 2>/dev/null </dev/null &
    upload_pids+=("$!")
}
upload_one() { # upload_one PHASE NOW_US: to an open conference with 2 or more settled members
    local i c n m cands=()
    for ((i = 1; i <= confs_n; i++)); do
        c=$(conf_of_slot "$i")
        m=0
        for n in "${live[@]}"; do
            [[ ${p_conf[$n]} == "$c" ]] && (($2 - ${p_joined[$n]} > 3000000)) && m=$((m + 1))
        done
        ((m >= 2)) && cands+=("$c")
    done
    ((${#cands[@]})) || return 1
    soak_upload "$1" "${cands[RANDOM % ${#cands[@]}]}" "${pool[RANDOM % ${#pool[@]}]}"
    uploads_sent=$((uploads_sent + 1))
}
reap_uploads() {
    local keep=() p
    for p in "${upload_pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then keep+=("$p"); else wait "$p" 2>/dev/null; fi
    done
    upload_pids=("${keep[@]}")
}

sample() { # sample PHASE
    local parts
    parts=$(rss_parts "$epid")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%H:%M:%S)" "$1" "$(rss_kib "$epid")" \
        "$(fds "$epid")" "$(spool_bytes)" "${#live[@]}" "$uploads_sent" "${parts// /$'\t'}" \
        "$(shm_used)" >>"$work/samples.tsv"
}
printf 'time\tphase\trss_kib\tfds\tspool_bytes\tparticipants\tuploads\tvm_rss_kib\trss_anon_kib\trss_file_kib\trss_shmem_kib\tshm_used\n' \
    >"$work/samples.tsv"

# churn PHASE SECS UPLOADS: joins and leaves every SOAK_CHURN_SECS, UPLOADS uploads spread over
# SECS; returns when both are done.
churn() {
    local phase=$1 dur=$2 n=$3 t0 t end next_churn next_up next_sample gap sent0=$uploads_sent
    t0=$(now_us)
    end=$((t0 + dur * 1000000))
    gap=$((n > 0 ? dur * 1000000 / n : 0))
    next_churn=$t0
    next_up=$((t0 + 3000000))
    next_sample=$t0
    init_slots "$t0"
    while :; do
        t=$(now_us)
        ((t >= end && uploads_sent - sent0 >= n)) && break
        if ((t >= next_churn && t < end)); then
            rotate_slots "$t"
            ((${#live[@]} >= present)) && leave_oldest "$t"
            join_one "$t"
            next_churn=$((next_churn + churn_secs * 1000000))
            ((next_churn < t)) && next_churn=$t
        fi
        # An upload that finds no conference with 2 settled members waits for the next turn.
        if ((uploads_sent - sent0 < n && t >= next_up)) && upload_one "$phase" "$t"; then
            next_up=$((next_up + gap))
        fi
        if ((t >= next_sample)); then
            sample "$phase"
            next_sample=$((next_sample + sample_secs * 1000000))
        fi
        reap "$t"
        reap_uploads
        sleep 0.1
    done
}

# The transfers' deliveries by state (JSON through jsonrpcs).
delivery_states() {
    status_json msrpcast.transfers 2>/dev/null | python3 -c '
import collections, json, sys
try:
    d = json.loads(sys.stdin.read())
except ValueError:
    print("unreadable"); sys.exit()
c = collections.Counter(x["state"] for t in d["transfers"] for x in t["deliveries"])
print(" ".join(f"{k}={v}" for k, v in sorted(c.items())) or "none")'
}
running_deliveries() { # lines of deliveries not done, failed or cancelled (or "unreadable")
    status_json msrpcast.transfers 2>/dev/null | python3 -c '
import json, sys
try:
    d = json.loads(sys.stdin.read())
except ValueError:
    print("unreadable reply of msrpcast.transfers"); sys.exit()
for t in d["transfers"]:
    for x in t["deliveries"]:
        if x["state"] not in ("done", "failed", "cancelled"):
            print(t["id"], t["conference"], x["participant"], x["state"], x.get("bytes", "-"))'
}
none_running() { [[ -z $(running_deliveries) ]]; }
conference_count() {
    status_json msrpcast.conferences 2>/dev/null | python3 -c '
import json, sys
print(len(json.loads(sys.stdin.read())["conferences"]))'
}
no_conferences() { [[ $(conference_count) == 0 ]]; }

# quiesce PHASE: churn stopped: uploads finish, running deliveries end (hang guard
# SOAK_DRAIN_SECS), everybody hangs up, every conference ends; then the figures are taken.
quiesce() {
    local phase=$1 n p
    for p in "${upload_pids[@]}"; do wait "$p" 2>/dev/null; done
    upload_pids=()
    say "$phase: churn stopped, $uploads_sent uploads sent; deliveries: $(delivery_states)"
    if ! wait_for "$drain" none_running; then
        fail "$phase: deliveries still running ${drain} s after the churn stopped"
        running_deliveries | head -20 | sed 's/^/   running: /'
    fi
    say "$phase: deliveries: $(delivery_states)"
    while ((${#live[@]})); do leave_oldest "$(now_us)"; done
    if ! wait_for 60 no_conferences; then
        fail "$phase: conferences still there 60 s after everybody hung up"
        status_json msrpcast.conferences | head -c 2000
        echo
    fi
    sleep "$linger"
    reap all
    # Deliveries cancelled by the leaves end on the I/O threads; spool files go with them.
    wait_for 30 test "$(spool_files)" -eq 0
    sleep 2
    sample "$phase-end"
}

# ---------------------------------------------------------------------------------------------
# Warm-up, baseline, soak

t_start=$(now_us)
warm_uploads=$(((uploads_n * warmup + secs - 1) / secs))
((warmup > 0)) || warm_uploads=0
if ((warmup > 0)); then
    say "warm-up: ${warmup} s, $warm_uploads uploads"
    churn warmup "$warmup" "$warm_uploads"
    quiesce warmup
fi
rss_base=$(rss_kib "$epid")
parts_base=$(rss_parts "$epid")
shm_base=$(shm_used)
fds_base=$(fds "$epid")
spool_base=$(spool_bytes)
say "baseline after the warm-up: engine RSS $rss_base KiB, $fds_base fds, spool $spool_base bytes"
[[ $spool_base == 0 ]] || fail "warm-up: the spool holds $spool_base bytes once every conference ended"

say "soak: ${secs} s, $uploads_n uploads, $present participants at once in $confs_n conferences," \
    "one joins and one leaves every ${churn_secs} s, ${bad_pct} % misbehave"
t_soak=$(now_us)
churn soak "$secs" "$uploads_n"
t_churn_end=$(now_us)
quiesce soak
rss_end=$(rss_kib "$epid")
parts_end=$(rss_parts "$epid")
shm_end=$(shm_used)
cp "/proc/$epid/smaps" "$work/smaps.end" 2>/dev/null
fds_end=$(fds "$epid")
spool_end=$(spool_bytes)
spool_left=$(spool_files)
t_end=$(now_us)

# ---------------------------------------------------------------------------------------------
# Checks and summary

within() { # within VALUE BASE PCT
    (($1 * 100 <= $2 * (100 + $3)))
}
[[ -n $(engine_pid) && $(engine_pid) == "$epid" ]] || fail "the engine process is still $epid"
[[ $(kam_procs) == "$procs0" ]] || fail "Kamailio's processes: $(kam_procs), were $procs0"

within "$rss_end" "$rss_base" "$tolerance" ||
    fail "engine RSS $rss_end KiB, more than ${tolerance} % over the baseline $rss_base KiB"
within "$shm_end" "$shm_base" "$tolerance" ||
    fail "Kamailio's shared memory in use: $shm_end bytes, more than ${tolerance} % over the baseline $shm_base"
within "$fds_end" "$fds_base" "$tolerance" ||
    fail "engine descriptors $fds_end, more than ${tolerance} % over the baseline $fds_base"
[[ $spool_left == 0 ]] || {
    fail "the spool holds $spool_left files ($spool_end bytes) once every conference ended"
    spool_list -printf '   %p %s\n' | head
}

# Participants' books for analyze.py: name, call id (the participant key), conference, mode,
# receiver output. A participant whose sipp could not bind its ports (another program took one
# after it was drawn) is "not-started": its file INVITEs rightly go unanswered.
not_started=0
for n in "${all_names[@]}"; do
    mode=${p_mode[$n]}
    if cat "$work/$n/uas.err" "$work/$n/uac.err" 2>/dev/null | grep -v 'remote control socket' |
        grep -q 'Unable to bind'; then
        mode=not-started
        not_started=$((not_started + 1))
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$n" "${cid[$n]}" "${p_conf[$n]}" "$mode" "${recv_out[$n]}"
done >"$work/participants.tsv"

# Kamailio shuts down cleanly. Its log up to here is the soak's; the rest is the shutdown's.
log_lines=$(wc -l <"$work/kamailio.log")
kill -TERM "$kam_pid"
for ((i = 0; i < 200; i++)); do kill -0 "$kam_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$kam_pid" 2>/dev/null; then
    fail "kamailio did not exit 20 s after SIGTERM"
elif ! wait "$kam_pid"; then
    fail "kamailio exited with status $? on SIGTERM"
fi
pids=("$mixer_pid")

durations=$(python3 -c 'import sys; a = [int(x) for x in sys.argv[1:]]; print(f"warm-up {(a[1]-a[0])/1e6:.0f} s, soak churn {(a[2]-a[1])/1e6:.0f} s, drain and hang-ups {(a[3]-a[2])/1e6:.0f} s, total {(a[3]-a[0])/1e6:.0f} s")' \
    "$t_start" "$t_soak" "$t_churn_end" "$t_end")

echo
echo "== soak summary"
echo "duration:     $durations"
echo "participants: ${#all_names[@]} joined (at most $present at once), $(awk -F'\t' '$4 != "-" && $4 != "not-started"' "$work/participants.tsv" | wc -l) misbehaving; $join_failures could not start their receiver, $not_started their sipp (a port taken)"
pct() { python3 -c "import sys; print(f'{(int(sys.argv[1]) / int(sys.argv[2]) - 1) * 100:+.1f} %')" "$1" "$2"; }
echo "engine RSS:   (anon + file) cold $rss_cold KiB, baseline $rss_base KiB, end $rss_end KiB ($(pct "$rss_end" "$rss_base"))"
echo "  VmRSS anon file shmem (KiB): cold $parts_cold; baseline $parts_base; end $parts_end"
echo "  over the soak (anon + file, KiB): $(awk -F'\t' '$2 == "soak" {v[n++] = $3} END {if (n) printf "first %s, 1/4 %s, 1/2 %s, 3/4 %s, last %s", v[0], v[int(n/4)], v[int(n/2)], v[int(3*n/4)], v[n-1]}' "$work/samples.tsv")"
echo "kamailio shm: used cold $shm_cold, baseline $shm_base, end $shm_end bytes ($(pct "$shm_end" "$shm_base"))"
echo "engine fds:   cold $fds_cold, baseline $fds_base, end $fds_end"
echo "spool:        $spool_end bytes in $spool_left files at the end"
echo "samples:      max RSS $(awk -F'\t' 'NR > 1 && $3 > m {m = $3} END {print m + 0}' "$work/samples.tsv") KiB, max fds $(awk -F'\t' 'NR > 1 && $4 > m {m = $4} END {print m + 0}' "$work/samples.tsv"), max spool $(awk -F'\t' 'NR > 1 && $5 > m {m = $5} END {print m + 0}' "$work/samples.tsv") bytes"
if ! python3 "$here/analyze.py" "$work" "$log_lines"; then
    fail "analysis (above)"
fi
echo
if ((${#failures[@]})); then
    echo "soak: FAIL (${#failures[@]}):"
    printf '   %s\n' "${failures[@]}"
    exit 1
fi
echo "soak: PASS"
