#!/usr/bin/env bash
# Builds the Rust library and the C tests of the C ABI, runs them, prints one line per test and
# a final "N passed, M failed"; exits non-zero when any failed.
#
#   header_c99, header_cpp17   the header compiles as C99 and C++17 (-Wall -Wextra -Werror -pedantic)
#   engine_roundtrip[asan]     engine + client + signals + two `msrpcast receive`, ASan/UBSan
#   engine_roundtrip[valgrind] the same binary without sanitizers under valgrind
#   multiprocess               8 forked clients x 1000 join/leave pairs, none lost, calls < 5 ms (1 in 5,000 tolerated)
#   misuse[asan], misuse[valgrind]  NULLs, zero lengths, bad UTF-8, after stop, NULL frees
#   peer_gone                  a participant closes mid-file: the delivery fails, the host (SIGPIPE
#                              at its default action) lives
#   example                    the complete minimal host of docs/c-api.md compiles and runs
#
# Environment: CARGO_TARGET_DIR (default: target), KEEP=1 keeps the temporary folder,
# NO_VALGRIND=1 skips the valgrind runs.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target=$root/$target ;; esac
lib=$target/debug
work=$(mktemp -d /tmp/msrpcast-ctest.XXXXXX)
pass=0
fail=0
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    if [[ "${KEEP:-}" == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

result() { # name status detail
    if [[ $2 == 0 ]]; then
        pass=$((pass + 1)); echo "PASS $1${3:+ — $3}"
    else
        fail=$((fail + 1)); echo "FAIL $1${3:+ — $3} (log: $work/$1.log)"
        [[ -f "$work/$1.log" ]] && tail -n 30 "$work/$1.log" | sed 's/^/    /'
    fi
}

echo "building the library and the CLI (cargo build --locked)"
# `cargo rustc --crate-type cdylib` makes the shared library whatever Cargo.toml's crate-type says.
(cd "$root" && cargo build --locked --quiet --bin msrpcast &&
    cargo rustc --locked --quiet --lib --crate-type cdylib) ||
    { echo "cargo build failed"; echo "0 passed, 1 failed"; exit 1; }
[[ -f "$lib/libmsrpcast.so" ]] || { echo "no $lib/libmsrpcast.so"; echo "0 passed, 1 failed"; exit 1; }

warn=(-Wall -Wextra -Werror -pedantic)
cflags=(-std=c11 -D_GNU_SOURCE -g -O1 "${warn[@]}" -I"$root/include" -I"$here")
link=(-L"$lib" -lmsrpcast -Wl,-rpath,"$lib" -lpthread)
san=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)

# --- header ---------------------------------------------------------------------------------
gcc -std=c99 "${warn[@]}" -I"$root/include" "$here/header_c99.c" "${link[@]}" -o "$work/header_c99" \
    >"$work/header_c99.log" 2>&1 && "$work/header_c99" >>"$work/header_c99.log" 2>&1
result header_c99 $?
g++ -std=c++17 "${warn[@]}" -I"$root/include" "$here/header_cpp17.cpp" "${link[@]}" -o "$work/header_cpp17" \
    >"$work/header_cpp17.log" 2>&1 && "$work/header_cpp17" >>"$work/header_cpp17.log" 2>&1
result header_cpp17 $?

# --- build the tests ------------------------------------------------------------------------
build_ok=1
for t in engine_roundtrip multiprocess misuse peer_gone; do
    gcc "${cflags[@]}" "${san[@]}" "$here/$t.c" "${link[@]}" -o "$work/$t.asan" >"$work/build-$t.log" 2>&1 || build_ok=0
    gcc "${cflags[@]}" "$here/$t.c" "${link[@]}" -o "$work/$t.plain" >>"$work/build-$t.log" 2>&1 || build_ok=0
    if [[ $build_ok == 0 ]]; then cat "$work/build-$t.log"; result "build-$t" 1; build_ok=1; fi
done
# Rust's runtime keeps a few process-lifetime allocations (thread-locals, the stdout buffer):
# LeakSanitizer and valgrind may see them as reachable; only definite leaks count.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
vg=(valgrind --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
    --error-exitcode=1 --quiet)

# --- engine round trip with two receivers -----------------------------------------------------
start_receiver() { # session dir: starts a receiver (killed at exit); sets $uri
    local out=$work/$1.out
    uri=
    "$lib/msrpcast" receive --listen 127.0.0.1:0 --session-id "$1" --dir "$2" >"$out" 2>"$work/$1.err" &
    pids+=($!)
    for _ in $(seq 100); do
        [[ -s "$out" ]] && { uri=$(head -n 1 "$out"); return 0; }
        sleep 0.05
    done
    cat "$work/$1.err"
    return 1
}

roundtrip() { # name session-prefix command...
    local name=$1 sid=$2; shift 2
    local d=$work/$sid
    mkdir -p "$d"
    head -c $((3 * 1024 * 1024 + 12345)) /dev/urandom >"$d/file.bin"
    local u1 u2
    start_receiver "${sid}r1" "$d/r1" || { result "$name" 1 "receiver 1 did not start"; return; }
    u1=$uri
    start_receiver "${sid}r2" "$d/r2" || { result "$name" 1 "receiver 2 did not start"; return; }
    u2=$uri
    TEST_DIR=$d TEST_FILE=$d/file.bin RECV1_URI=$u1 RECV2_URI=$u2 timeout 120 "$@" >"$work/$name.log" 2>&1
    local rc=$?
    if [[ $rc == 0 ]]; then
        local want got1 got2
        want=$(sha1sum <"$d/file.bin" | cut -d' ' -f1)
        for _ in $(seq 40); do
            got1=$(cat "$d"/r1/* 2>/dev/null | sha1sum | cut -d' ' -f1)
            got2=$(cat "$d"/r2/* 2>/dev/null | sha1sum | cut -d' ' -f1)
            [[ "$got1" == "$want" && "$got2" == "$want" ]] && break
            sleep 0.05
        done
        if [[ "$got1" != "$want" || "$got2" != "$want" ]]; then
            echo "sha1 source $want, receiver 1 $got1, receiver 2 $got2" >>"$work/$name.log"
            rc=1
        fi
    fi
    kill "${pids[@]: -2}" 2>/dev/null
    result "$name" $rc "$(grep -h '^engine_roundtrip:' "$work/$name.log" | head -n 1)"
}

roundtrip "engine_roundtrip[asan]" rta "$work/engine_roundtrip.asan"
if [[ "${NO_VALGRIND:-}" != 1 ]]; then
    roundtrip "engine_roundtrip[valgrind]" rtv "${vg[@]}" "$work/engine_roundtrip.plain"
fi

# --- a participant that closes mid-file -----------------------------------------------------------
peer_gone() {
    local d=$work/pg out=$work/pg.out
    mkdir -p "$d/up"
    head -c $((32 * 1024 * 1024)) /dev/urandom >"$d/up/file.bin"
    python3 "$here/hangup_peer.py" 3000000 >"$out" 2>"$work/pg.err" &
    pids+=($!)
    uri=
    for _ in $(seq 100); do
        [[ -s "$out" ]] && { uri=$(head -n 1 "$out"); break; }
        sleep 0.05
    done
    [[ -n $uri ]] || { result peer_gone 1 "peer did not start"; return; }
    TEST_DIR=$d TEST_FILE=$d/up/file.bin RECV_URI=$uri timeout 120 "$work/peer_gone.plain" \
        >"$work/peer_gone.log" 2>&1
    local rc=$?
    ((rc > 128)) && echo "ended by signal $((rc - 128))" >>"$work/peer_gone.log"
    kill "${pids[@]: -1}" 2>/dev/null
    result peer_gone $rc "$(grep -h '^peer_gone:' "$work/peer_gone.log" | cut -c1-80)"
}
peer_gone

# --- multi-process ------------------------------------------------------------------------------
mkdir -p "$work/mp"
# Without sanitizers: it measures how long each call takes.
TEST_DIR=$work/mp timeout 120 "$work/multiprocess.plain" >"$work/multiprocess.log" 2>&1
result "multiprocess" $? "$(grep -h '^multiprocess:' "$work/multiprocess.log" | head -n 1)"

# --- misuse -------------------------------------------------------------------------------------
mkdir -p "$work/mis1" "$work/mis2"
TEST_DIR=$work/mis1 timeout 60 "$work/misuse.asan" >"$work/misuse[asan].log" 2>&1
result "misuse[asan]" $?
if [[ "${NO_VALGRIND:-}" != 1 ]]; then
    TEST_DIR=$work/mis2 MSRPCAST_MAX_CALL_MS=250 timeout 120 "${vg[@]}" "$work/misuse.plain" \
        >"$work/misuse[valgrind].log" 2>&1
    result "misuse[valgrind]" $?
fi

# --- the minimal host of docs/c-api.md ---------------------------------------------------------
mkdir -p "$work/ex"
awk '/^## A complete minimal host/ {on=1} on && /^```c$/ {code=1; next} code && /^```$/ {exit} code' \
    "$root/docs/c-api.md" | sed "s|/tmp/msrpcast-example|$work/ex|g" >"$work/example.c"
if [[ -s "$work/example.c" ]] &&
    gcc "${cflags[@]}" "${san[@]}" "$work/example.c" "${link[@]}" -o "$work/example" >"$work/example.log" 2>&1; then
    timeout 60 "$work/example" >>"$work/example.log" 2>&1 && grep -q 'worker: join: MSRPCAST_OK' "$work/example.log"
    result example $? "docs/c-api.md host compiled and ran"
else
    result example 1 "docs/c-api.md host does not compile"
fi

echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
