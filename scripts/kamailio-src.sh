#!/usr/bin/env bash
# Fetches the Kamailio source that matches the installed Debian kamailio package and derives the
# compile flags a module needs to pass Kamailio's load check (module_version / module_flags).
#
# Output (KAMAILIO_SRC_CACHE, default <repo>/.cache/kamailio-src, git-ignored):
#   <version>/kamailio-<upstream>/   pristine source tree (headers: -I<it>/src)
#   <version>/cfg-scratch/           scratch copy where `make cfg` ran (src/config.mak)
#   cflags                           one line: C_DEFS + CC_PMUTEX_OPTS of src/config.mak and
#                                    -I<tree>/src (use with eval or a Makefile: it holds quotes)
#   ldflags                          MOD_LDFLAGS of src/config.mak (-shared ... -rdynamic -ldl)
#   srcdir                           the pristine tree's path
#   version                          the Debian version the flags belong to
# A module adds its own -DMOD_NAME='"name"'. Idempotent: a second run only checks and exits.
#
# Needs root only the first time (to add the deb-src entry and `apt-get update`):
# /etc/apt/sources.list.d/msrpcast-debian-src.sources mirrors debian.sources with Types: deb-src.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
root=$(msrpcast_root)
cache=${KAMAILIO_SRC_CACHE:-$root/.cache/kamailio-src}

version=$(dpkg-query -W -f='${Version}' kamailio 2>/dev/null) ||
    msrpcast_die "kamailio is not installed (run scripts/install-deps.sh)"
vdir=$cache/$version

# Fast path: everything derived for this version already.
if [[ -s $cache/cflags && -s $cache/ldflags && $(cat "$cache/version" 2>/dev/null) == "$version" &&
    -d $(cat "$cache/srcdir" 2>/dev/null)/src/core ]]; then
    msrpcast_log "kamailio $version source and flags present in $cache"
    exit 0
fi

# 1. A deb-src entry mirroring the binary sources.
srcfile=/etc/apt/sources.list.d/msrpcast-debian-src.sources
if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    wanted=$(sed -e 's/^Types:.*$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources)
elif [[ -r /etc/apt/sources.list ]]; then
    # Classic one-line format: turn each `deb ...` line into a deb822 stanza.
    wanted=$(awk '$1 == "deb" {
        opts = ""; i = 2
        if ($2 ~ /^\[/) { while ($i !~ /\]$/) { opts = opts " " $i; i++ } opts = opts " " $i; i++ }
        signed = ""
        if (match(opts, /signed-by=[^] ]+/)) signed = substr(opts, RSTART + 10, RLENGTH - 10)
        printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents:", $i, $(i + 1)
        for (j = i + 2; j <= NF; j++) printf " %s", $j
        printf "\n"
        if (signed != "") printf "Signed-By: %s\n", signed
        printf "\n"
    }' /etc/apt/sources.list)
else
    msrpcast_die "no /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list to mirror"
fi
wanted="# Added by msrpcast scripts/kamailio-src.sh: source packages for the Kamailio module build.
$wanted"
if [[ ! -r $srcfile || $(cat "$srcfile") != "$wanted" ]]; then
    [[ $(id -u) == 0 ]] || msrpcast_die "must run as root once to add $srcfile"
    printf '%s\n' "$wanted" >"$srcfile"
    msrpcast_log "wrote $srcfile"
    MSRPCAST_APT_UPDATE=force msrpcast_apt_update
elif ! compgen -G '/var/lib/apt/lists/*_Sources*' >/dev/null; then
    MSRPCAST_APT_UPDATE=force msrpcast_apt_update
fi

# 2. The source package, pinned to the installed binary's version.
upstream=${version#*:}
upstream=${upstream%-*}
tree=$vdir/kamailio-$upstream
if [[ ! -d $tree/src/core ]]; then
    mkdir -p "$vdir"
    t0=$(date +%s.%N)
    (cd "$vdir" && apt-get source -q --only-source "kamailio=$version" </dev/null)
    msrpcast_log "apt-get source kamailio=$version: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)") s"
fi
[[ -d $tree/src/core ]] || msrpcast_die "expected source tree at $tree"

# 3. `make cfg` as debian/rules runs it, in a scratch copy (the pristine tree stays untouched).
scratch=$vdir/cfg-scratch
rm -rf "$scratch"
cp -a "$tree" "$scratch"
t0=$(date +%s.%N)
make -s -C "$scratch" cfg prefix=/usr cfg_target=/etc/kamailio/ FLAVOUR=kamailio \
    </dev/null >"$vdir/make-cfg.log" 2>&1 ||
    { tail -20 "$vdir/make-cfg.log" >&2; msrpcast_die "make cfg failed (log: $vdir/make-cfg.log)"; }
msrpcast_log "make cfg: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)") s"

# Only the first `C_DEFS=` line holds values (a later `C_DEFS:=$(filter-out ...)` only filters).
mak=$scratch/src/config.mak
defs=$(sed -n '0,/^C_DEFS=/s/^C_DEFS=[[:space:]]*//p' "$mak")
[[ -n $defs ]] || msrpcast_die "no C_DEFS line in $mak"
# -DKSR_PTHREAD_MUTEX_SHARED (shown by -V as TLS_PTHREAD_MUTEX_SHARED) lives in CC_PMUTEX_OPTS.
pmutex=$(sed -n 's/^CC_PMUTEX_OPTS=[[:space:]]*//p' "$mak")
ldflags=$(sed -n 's/^MOD_LDFLAGS=[[:space:]]*//p' "$mak")
cflags=$(tr -s " " <<<"$defs $pmutex -I$tree/src")

# Proof: a probe compiled with these flags prints the exact strings Kamailio's module loader
# compares (module_version, module_flags) — they must equal the installed binary's `-V`.
probe=$vdir/flags-probe
printf '%s\n' '#include <stdio.h>' '#include "core/ver_defs.h"' \
    'int main(void) { printf("%s\n%s\n", SER_FULL_VERSION, SER_COMPILE_FLAGS); return 0; }' \
    >"$probe.c"
eval "gcc $cflags -o \"\$probe\" \"\$probe.c\"" || msrpcast_die "probe did not compile"
got=$("$probe")
kv=$(kamailio -V 2>/dev/null)
want_version=$(sed -n 's/^version: *//p' <<<"$kv" | sed 's/ *$//')
want_flags=$(sed -n 's/^flags: *//p' <<<"$kv" | sed 's/ *$//')
[[ $(sed -n 1p <<<"$got") == "$want_version" ]] ||
    msrpcast_die "module_version would be '$(sed -n 1p <<<"$got")', kamailio has '$want_version'"
[[ $(sed -n 2p <<<"$got") == "$want_flags" ]] ||
    msrpcast_die "module_flags would be '$(sed -n 2p <<<"$got")', kamailio has '$want_flags'"
for d in USE_TCP USE_SCTP USE_TLS PKG_MALLOC F_MALLOC Q_MALLOC TLSF_MALLOC DBG_SR_MEMORY; do
    [[ " $cflags " == *" -D$d "* ]] || msrpcast_die "derived flags lack -D$d: $cflags"
done
msrpcast_log "probe: module_version and module_flags equal kamailio -V"

printf '%s\n' "$cflags" >"$cache/cflags"
printf '%s\n' "$ldflags" >"$cache/ldflags"
printf '%s\n' "$tree" >"$cache/srcdir"
printf '%s\n' "$version" >"$cache/version"
msrpcast_log "flags for kamailio $version in $cache/cflags"
