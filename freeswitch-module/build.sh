#!/usr/bin/env bash
# Builds freeswitch-module/build/mod_msrpcast.so from mod_msrpcast.c and the Rust library,
# against an installed FreeSWITCH's development files.
#
#   freeswitch-module/build.sh [--install]
#
# Where FreeSWITCH's headers are:
#   FREESWITCH_PREFIX=/usr/local/freeswitch   its install prefix (uses $prefix/lib/pkgconfig/
#                                             freeswitch.pc, else $prefix/include/freeswitch)
#   otherwise                                 `pkg-config freeswitch` (Cflags, modulesdir)
# Without either it says so and exits 1 (it is not part of `make test`).
#
# The Rust staticlib (libmsrpcast.a, release) is linked into the module, its symbols hidden
# (--exclude-libs,ALL): FreeSWITCH loads one file; it exports mod_msrpcast_module_interface and
# the load/shutdown functions (FreeSWITCH's SWITCH_MODULE_*_FUNCTION macros make them non-static),
# no msrpcast_* symbol.
# No -lfreeswitch: the core's symbols resolve from the running freeswitch binary.
# --install copies the module into FreeSWITCH's module folder (pkg-config's modulesdir; without
# freeswitch.pc, $prefix/lib/freeswitch/mod or $prefix/mod, whichever holds mod_sofia.so).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/../scripts/lib.sh"
root=$(msrpcast_root)
cd "$root"

CC=${CC:-gcc}
out=$here/build
target_dir=${CARGO_TARGET_DIR:-$root/target}

fs_cflags=
moddir=
if [[ -n ${FREESWITCH_PREFIX:-} ]]; then
    pc=$FREESWITCH_PREFIX/lib/pkgconfig/freeswitch.pc
    if [[ -f $pc ]]; then
        fs_cflags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags freeswitch)
        moddir=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --variable=modulesdir freeswitch)
    elif [[ -f $FREESWITCH_PREFIX/include/freeswitch/switch.h ]]; then
        fs_cflags="-I$FREESWITCH_PREFIX/include/freeswitch"
        # No freeswitch.pc: the folder that holds mod_sofia.so (a --prefix build keeps modules
        # in lib/freeswitch/mod; only the default /usr/local/freeswitch layout has mod/).
        for d in "$FREESWITCH_PREFIX/lib/freeswitch/mod" "$FREESWITCH_PREFIX/mod"; do
            [[ -f $d/mod_sofia.so ]] && moddir=$d && break
        done
    else
        msrpcast_die "FREESWITCH_PREFIX=$FREESWITCH_PREFIX has neither lib/pkgconfig/freeswitch.pc nor include/freeswitch/switch.h"
    fi
elif pkg-config --exists freeswitch 2>/dev/null; then
    fs_cflags=$(pkg-config --cflags freeswitch)
    moddir=$(pkg-config --variable=modulesdir freeswitch)
else
    msrpcast_die "FreeSWITCH development files not found: install FreeSWITCH (with its headers and freeswitch.pc) and set FREESWITCH_PREFIX=<its prefix>, or make \`pkg-config freeswitch\` work"
fi

# The installed headers must include the generated switch_am_config.h. fs_cflags is a list of
# flags: split on purpose.
# shellcheck disable=SC2086
hdr=$(printf '#include <switch.h>\n' | $CC $fs_cflags -E -M - 2>/dev/null | tr ' ' '\n' | grep '/switch\.h$' | head -1 || true)
[[ -n $hdr ]] || msrpcast_die "switch.h not usable with cflags '$fs_cflags'"

cargo build --locked --release --lib
mkdir -p "$out"
# shellcheck disable=SC2086
"$CC" -c -std=gnu99 -O2 -g -fPIC -DPIC -Wall -Wextra -Wno-unused-parameter \
    -Wno-missing-field-initializers $fs_cflags -I"$root/include" \
    -o "$out/mod_msrpcast.o" "$here/mod_msrpcast.c"

# The system libraries Rust's std needs in a staticlib, as rustc reports them.
native=$out/native-static-libs
if [[ ! -s $native || $(sed -n 1p "$native") != "$(rustc -V)" ]]; then
    libs=$(cargo rustc --locked --release --lib --crate-type staticlib \
        -- --print native-static-libs 2>&1 | sed -n 's/.*native-static-libs: //p' | tail -1)
    [[ -n $libs ]] || msrpcast_die "cargo rustc did not print native-static-libs"
    printf '%s\n%s\n' "$(rustc -V)" "$libs" >"$native"
fi
# shellcheck disable=SC2046
"$CC" -shared -o "$out/mod_msrpcast.so" "$out/mod_msrpcast.o" \
    "$target_dir/release/libmsrpcast.a" -Wl,--exclude-libs,ALL $(sed -n 2p "$native") \
    -lpthread -lm -ldl

# The visible entry points: the module interface and its load/shutdown functions, nothing else
# of ours (checked against FreeSWITCH 1.11.1: exactly these three).
exported=$(nm -D --defined-only "$out/mod_msrpcast.so" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort)
[[ $exported == *mod_msrpcast_module_interface* ]] ||
    msrpcast_die "mod_msrpcast_module_interface is not exported"
unexpected=$(grep -v -x -e mod_msrpcast_module_interface -e mod_msrpcast_load \
    -e mod_msrpcast_shutdown <<<"$exported" || true)
[[ -z $unexpected ]] || msrpcast_die "mod_msrpcast.so exports more than its entry points:" $unexpected
if nm -D --defined-only "$out/mod_msrpcast.so" | grep -q ' msrpcast_'; then
    msrpcast_die "Rust symbols leak out of mod_msrpcast.so"
fi
msrpcast_log "built $out/mod_msrpcast.so against $hdr"

if [[ ${1:-} == --install ]]; then
    [[ -n $moddir && -d $moddir ]] ||
        msrpcast_die "no FreeSWITCH module folder known (pkg-config modulesdir, or mod_sofia.so in $FREESWITCH_PREFIX/lib/freeswitch/mod or $FREESWITCH_PREFIX/mod)"
    install -m 644 "$out/mod_msrpcast.so" "$moddir/mod_msrpcast.so"
    msrpcast_log "installed into $moddir"
fi
