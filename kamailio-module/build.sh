#!/usr/bin/env bash
# Builds the Kamailio module kamailio-module/build/msrpcast.so from kamailio-module/*.c against
# the Kamailio source that matches the installed binary (scripts/kamailio-src.sh: headers and
# the exact compile flags Kamailio's module loader checks), and the Rust library.
#
#   kamailio-module/build.sh [--install]
#
# Linking (LINK=static, the default): the Rust staticlib (libmsrpcast.a, release profile) is
# linked into msrpcast.so, so the module is one file with no rpath and no second library to
# install; its Rust symbols are hidden (--exclude-libs,ALL) so that only the module's own C
# symbols are visible to Kamailio. LINK=rpath links libmsrpcast.so instead and copies it beside
# the module, found at run time through -Wl,-rpath,'$ORIGIN'.
#
# After linking, a throw-away cfg that loads CHECK_MODULES (default tm.so) and the module is
# checked with `kamailio -c`: that runs Kamailio's dlopen + module_version/module_flags check.
# --install copies the module (and libmsrpcast.so with LINK=rpath) into Kamailio's module
# directory (the one holding Debian's msrp.so).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/../scripts/lib.sh"
root=$(msrpcast_root)
cd "$root"

LINK=${LINK:-static}
CC=${CC:-gcc}
out=$here/build
target_dir=${CARGO_TARGET_DIR:-$root/target}
sources=("$here"/*.c)

# The RPC commands' doc strings and README.md's "RPC Commands" section must agree.
"$here/check-rpc-docs.py"

scripts/kamailio-src.sh
cache=${KAMAILIO_SRC_CACHE:-$root/.cache/kamailio-src}
kam_cflags=$(cat "$cache/cflags")
kam_ldflags=$(cat "$cache/ldflags")

cargo build --locked --release --lib
mkdir -p "$out"

objs=()
for src in "${sources[@]}"; do
    obj=$out/$(basename "${src%.c}").o
    eval "$CC -c -std=gnu99 -O2 -g -fPIC -DPIC -Wall -Wextra -Wno-unused-parameter \
        -Wno-sign-compare -Wno-missing-field-initializers -Wno-cast-function-type \
        -Wno-old-style-declaration \
        $kam_cflags -DMOD_NAME='\"msrpcast\"' -I\"$root/include\" -I\"$here\" \
        -o \"\$obj\" \"\$src\""
    objs+=("$obj")
done

lib=$target_dir/release/libmsrpcast.$([[ $LINK == rpath ]] && echo so || echo a)
[[ -f $lib ]] || msrpcast_die "$lib not built: Cargo.toml needs crate-type \"staticlib\" and \"cdylib\""

case $LINK in
static)
    # The system libraries Rust's std needs in a staticlib, as rustc reports them (e.g.
    # -lgcc_s for unwinding: without it dlopen fails on _Unwind_* unless Kamailio happens to
    # have libgcc_s loaded). Cached per rustc version; asking rustc rebuilds the lib once.
    native=$out/native-static-libs
    if [[ ! -s $native || $(sed -n 1p "$native") != "$(rustc -V)" ]]; then
        libs=$(cargo rustc --locked --release --lib --crate-type staticlib \
            -- --print native-static-libs 2>&1 | sed -n 's/.*native-static-libs: //p' | tail -1)
        [[ -n $libs ]] || msrpcast_die "cargo rustc did not print native-static-libs"
        printf '%s\n%s\n' "$(rustc -V)" "$libs" >"$native"
    fi
    eval "$CC $kam_ldflags -o \"$out/msrpcast.so\" \"\${objs[@]}\" \
        \"$target_dir/release/libmsrpcast.a\" -Wl,--exclude-libs,ALL $(sed -n 2p "$native") \
        -lpthread -lm -ldl"
    ;;
rpath)
    cp "$target_dir/release/libmsrpcast.so" "$out/"
    eval "$CC $kam_ldflags -o \"$out/msrpcast.so\" \"\${objs[@]}\" \
        -L\"$out\" -lmsrpcast -Wl,-rpath,'\$ORIGIN'"
    ;;
*) msrpcast_die "LINK must be static or rpath, not '$LINK'" ;;
esac

# Kamailio's own load check: dlopen with RTLD_NOW, module_version and module_flags compared.
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
{
    echo '#!KAMAILIO'
    for m in ${CHECK_MODULES:-tm.so}; do echo "loadmodule \"$m\""; done
    echo "loadmodule \"$out/msrpcast.so\""
    echo 'request_route { drop; }'
} >"$check/load.cfg"
if ! kamailio -c -f "$check/load.cfg" >"$check/log" 2>&1; then
    cat "$check/log" >&2
    msrpcast_die "kamailio refuses to load $out/msrpcast.so"
fi
msrpcast_log "built $out/msrpcast.so ($LINK); kamailio -c loads it"

if [[ ${1:-} == --install ]]; then
    moddir=$(dirname "$(dpkg -L kamailio | grep '/modules/msrp\.so$')")
    install -m 644 "$out/msrpcast.so" "$moddir/msrpcast.so"
    [[ $LINK == rpath ]] && install -m 644 "$out/libmsrpcast.so" "$moddir/libmsrpcast.so"
    msrpcast_log "installed into $moddir"
fi
