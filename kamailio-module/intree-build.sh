#!/usr/bin/env bash
# Proves that the module builds with Kamailio's own build system: copies the Kamailio source
# that matches the installed binary (scripts/kamailio-src.sh) into a scratch folder, runs
# `make cfg` there as Debian's rules do, drops the module (kamailio-module/*.c, *.h, Makefile)
# into its src/modules/msrpcast/, and runs Kamailio's module build for it:
#
#   make modules=modules/msrpcast modules MSRPCAST_DIR=<this repository>
#
# Then checks the result as build.sh checks its own: `kamailio -c` loads it (dlopen with
# RTLD_NOW, module_version and module_flags compared with the installed Kamailio's), and no
# Rust symbol is exported.
#
#   kamailio-module/intree-build.sh [--keep]     (--keep: leave the scratch tree, print its path)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/../scripts/lib.sh"
root=$(msrpcast_root)

"$root/scripts/kamailio-src.sh"
cache=${KAMAILIO_SRC_CACHE:-$root/.cache/kamailio-src}
tree=$(cat "$cache/srcdir")

scratch=$(mktemp -d "${TMPDIR:-/tmp}/msrpcast-intree.XXXXXX")
if [[ ${1:-} == --keep ]]; then
    trap 'msrpcast_log "scratch tree kept: $scratch/kamailio"' EXIT
else
    trap 'rm -rf "$scratch"' EXIT
fi
cp -a "$tree" "$scratch/kamailio"
kam=$scratch/kamailio
make -s -C "$kam" cfg prefix=/usr cfg_target=/etc/kamailio/ FLAVOUR=kamailio \
    </dev/null >"$scratch/make-cfg.log" 2>&1 ||
    { tail -20 "$scratch/make-cfg.log" >&2; msrpcast_die "make cfg failed"; }

mod=$kam/src/modules/msrpcast
mkdir "$mod"
cp "$here"/*.c "$here"/*.h "$here/Makefile" "$mod/"

t0=$(date +%s.%N)
if ! make -C "$kam" modules=modules/msrpcast modules MSRPCAST_DIR="$root" \
    </dev/null >"$scratch/make.log" 2>&1; then
    tail -40 "$scratch/make.log" >&2
    msrpcast_die "Kamailio's module build failed (log: $scratch/make.log)"
fi
secs=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" \
    "$(date +%s.%N)")
[[ -f $mod/msrpcast.so ]] || msrpcast_die "the build did not produce $mod/msrpcast.so"
grep -E '^(CC|LD) ' "$scratch/make.log" >&2 || true

# The same load check as build.sh.
{
    echo '#!KAMAILIO'
    echo 'loadmodule "tm.so"'
    echo "loadmodule \"$mod/msrpcast.so\""
    echo 'request_route { drop; }'
} >"$scratch/load.cfg"
if ! kamailio -c -f "$scratch/load.cfg" >"$scratch/load.log" 2>&1; then
    cat "$scratch/load.log" >&2
    msrpcast_die "kamailio refuses to load the in-tree $mod/msrpcast.so"
fi
# The library's C ABI (msrpcast_engine_start, ...) and Rust's own symbols (_ZN..., rust_...)
# must stay inside the module; the module's C functions (msrpcast_sip_*, ...) may show.
rust=$(nm -D --defined-only "$mod/msrpcast.so" | awk '{print $3}' |
    grep -cE '^(msrpcast_engine_start|msrpcast_config_new|msrpcast_version)$|^_ZN|^rust_' || true)
((rust == 0)) || msrpcast_die "$rust library symbols exported by the in-tree msrpcast.so"
msrpcast_log "Kamailio's build made msrpcast.so in ${secs} s ($(stat -c %s "$mod/msrpcast.so") bytes); kamailio -c loads it; no Rust symbol exported"
