#!/usr/bin/env bash
# `make deb-test` (part of `make test`): the Debian package as an operator gets it.
#
#   1. `make deb` (scripts/deb.sh) builds target/deb/msrpcast_<version>_<arch>.deb;
#   2. its contents and control fields are checked (module in the directory `kamailio -I` names,
#      /usr/bin/msrpcast, docs, copyright in Debian's machine-readable format, Depends on the
#      Kamailio it was built against and on libc);
#   3. `apt-get install <the .deb>` installs it (as root; --reinstall when the same version is
#      installed already), `dpkg --verify` checks the installed files against the md5sums;
#   4. the installed example configuration passes `kamailio -c` with the module found by name
#      in Kamailio's module directory (nothing given on the command line);
#   5. scripts/demo.sh --check runs Kamailio with the INSTALLED msrpcast.so and example cfg and
#      participants that receive with the INSTALLED /usr/bin/msrpcast: one file to three
#      participants over SIP and MSRP, checked by SHA-1;
#   6. lintian, when installed (optional: it is not in scripts/install-deps.sh), must report no
#      error and no warning (tags that do not apply are overridden in the package, with reasons);
#   7. the package is removed again (apt-get purge) and its files must be gone — unless msrpcast
#      was installed before the test, in which case the freshly built one stays installed.
# Exit 0 when all pass. Must run as root (apt-get install).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/../../scripts/lib.sh"
root=$(msrpcast_root)
cd "$root" || exit 1

[[ $(id -u) == 0 ]] || msrpcast_die "must run as root: it installs the package with apt-get"

failed=0
ok() { printf 'deb-test: ok   - %s\n' "$*"; }
fail() {
    printf 'deb-test: FAIL - %s\n' "$*"
    failed=1
}
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
apt() {
    DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 "$@" </dev/null
}

# ---------------------------------------------------------------------------------------------
# 1. Build

echo '==> make deb'
deb=$(scripts/deb.sh | tail -1) || msrpcast_die "make deb failed"
[[ -f $deb ]] || msrpcast_die "scripts/deb.sh printed '$deb', which is no file"
ok "built $deb ($(stat -c %s "$deb") bytes)"

# ---------------------------------------------------------------------------------------------
# 2. What is in it

moddir=$(kamailio -I 2>/dev/null | sed -n 's/^ *Default paths to modules: *//p' | cut -d: -f1)
[[ -n $moddir ]] || msrpcast_die "kamailio -I names no module directory"
contents=$(dpkg-deb --contents "$deb" | awk '{ sub(/^\./, "", $6); print $1, $6 }')
has() { grep -qx -- "$1 $2" <<<"$contents"; }
check "msrpcast.so in Kamailio's module directory $moddir, mode 644" has -rw-r--r-- "$moddir/msrpcast.so"
check "/usr/bin/msrpcast, mode 755" has -rwxr-xr-x /usr/bin/msrpcast
for f in copyright changelog.Debian.gz README.md.gz kamailio-module.md.gz http-api.md.gz \
    examples/kamailio.cfg rust-crates.txt.gz; do
    check "/usr/share/doc/msrpcast/$f" has -rw-r--r-- "/usr/share/doc/msrpcast/$f"
done
check "bash completion" has -rw-r--r-- /usr/share/bash-completion/completions/msrpcast
check "manual page msrpcast(1)" has -rw-r--r-- /usr/share/man/man1/msrpcast.1.gz
check "every file is owned by root:root" \
    bash -c '! dpkg-deb --contents "$1" | awk "\$2 != \"root/root\"" | grep -q .' _ "$deb"

kam_deb=$(dpkg-query -W -f='${Version}' kamailio)
kam_up=$(sed 's/^[0-9]*://; s/-[^-]*$//; s/^\([0-9][0-9.]*[0-9]\).*/\1/' <<<"$kam_deb")
depends=$(dpkg-deb --field "$deb" Depends)
echo "    Depends: $depends"
check "Depends on kamailio (>= $kam_up) and below the next upstream version" \
    grep -Eq "kamailio \(>= ([0-9]+:)?$kam_up\), kamailio \(<< ([0-9]+:)?[0-9.]+~\)" <<<"$depends"
check "Depends on libc6 with a version (dpkg-shlibdeps)" grep -Eq 'libc6 \(>= [0-9.]+\)' <<<"$depends"
check "Version matches Cargo.toml" \
    grep -q "^$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)-" <<<"$(dpkg-deb --field "$deb" Version)"
copyright=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/doc/msrpcast/copyright)
check "copyright: machine-readable format, Expat or Apache-2.0, both license paragraphs" \
    bash -c 'grep -qx "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/" <<<"$1" &&
        grep -qx "License: Expat or Apache-2.0" <<<"$1" && grep -qx "License: Expat" <<<"$1" &&
        grep -qx "License: Apache-2.0" <<<"$1"' _ "$copyright"
scratch=$(mktemp -d /tmp/msrpcast-deb-test.XXXXXX)
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/doc/msrpcast/rust-crates.txt.gz |
    gzip -dc >"$scratch/rust-crates.txt"
check "rust-crates.txt lists rustls and ring with their licenses and license texts" \
    bash -c 'grep -Eq "^rustls [0-9.]+ +Apache-2.0 OR ISC OR MIT$" "$1" &&
        grep -Eq "^ring [0-9.]+ +Apache-2.0 AND ISC$" "$1" &&
        grep -q "^Permission to use, copy, modify, and/or distribute this software" "$1"' _ "$scratch/rust-crates.txt"

# ---------------------------------------------------------------------------------------------
# 3. Install

was_installed=
[[ $(dpkg-query -W -f='${db:Status-Status}' msrpcast 2>/dev/null) == installed ]] && was_installed=1
removed=
remove_pkg() {
    [[ -n $was_installed || -n $removed ]] && return
    removed=1
    echo '==> apt-get purge msrpcast'
    apt purge msrpcast >/dev/null
}
trap remove_pkg EXIT

echo "==> apt-get install $deb${was_installed:+ (--reinstall: msrpcast was installed before)}"
if ! apt install --no-install-recommends ${was_installed:+--reinstall} "$deb"; then
    fail "apt-get install $deb"
    exit 1
fi
check "dpkg says msrpcast is installed" \
    test "$(dpkg-query -W -f='${db:Status-Status} ${Version}' msrpcast)" == "installed $(dpkg-deb --field "$deb" Version)"
check "dpkg --verify msrpcast: installed files match the package's md5sums" \
    bash -c 'out=$(dpkg --verify msrpcast) && [[ -z $out ]] || { echo "$out"; false; }'
so=$moddir/msrpcast.so
check "dpkg -L lists $so and /usr/bin/msrpcast" \
    bash -c 'l=$(dpkg -L msrpcast) && grep -qx "$1" <<<"$l" && grep -qx /usr/bin/msrpcast <<<"$l"' _ "$so"
# The manual page renders without a warning and shows every command's options.
if command -v man >/dev/null; then
    check "man msrpcast renders without warnings and documents send --to" \
        bash -c 'out=$(MANWIDTH=100 man --warnings -l /usr/share/man/man1/msrpcast.1.gz 2>&1 >/dev/null) &&
            [[ -z $out ]] || { echo "$out"; exit 1; }
            MANWIDTH=100 man -l /usr/share/man/man1/msrpcast.1.gz 2>/dev/null | grep -q -- "--to <MSRP_URI>"'
else
    echo 'deb-test: man is not installed; the manual page is not rendered (apt-get install man-db)'
fi
version=$(/usr/bin/msrpcast --version)
check "/usr/bin/msrpcast --version: $version" \
    test "$version" == "msrpcast $(dpkg-deb --field "$deb" Version | sed 's/-[^-]*$//')"

# ---------------------------------------------------------------------------------------------
# 4. The installed example configuration, module by name

cfg=/usr/share/doc/msrpcast/examples/kamailio.cfg
if kamailio -c -f "$cfg" >"$scratch/cfg-check.log" 2>&1; then
    ok "kamailio -c -f $cfg loads msrpcast.so by name from $moddir"
else
    fail "kamailio -c -f $cfg:"
    tail -20 "$scratch/cfg-check.log" | sed 's/^/    /'
fi

# ---------------------------------------------------------------------------------------------
# 5. The demo against what was installed

echo "==> scripts/demo.sh --check --bin /usr/bin/msrpcast --module $so --cfg $cfg"
if scripts/demo.sh --check --bin /usr/bin/msrpcast --module "$so" --cfg "$cfg" 2>&1 |
    tee "$scratch/demo.log" | sed 's/^/    /'; then
    ok "demo --check with the installed module, tool and configuration"
else
    fail "demo --check with the installed module, tool and configuration"
fi
grep -q "^==> using prebuilt /usr/bin/msrpcast and $so$" "$scratch/demo.log" ||
    fail "the demo did not say it used the installed files"

# ---------------------------------------------------------------------------------------------
# 6. lintian (optional)

if command -v lintian >/dev/null; then
    # Tags that do not apply are overridden in the package, each with its reason
    # (packaging/debian/msrpcast.lintian-overrides): what is left is to be fixed.
    if lintian --fail-on error,warning "$deb" >"$scratch/lintian.log" 2>&1; then
        ok "lintian: no error, no warning"
    else
        fail "lintian reports errors or warnings"
    fi
    sed 's/^/    /' "$scratch/lintian.log"
else
    echo 'deb-test: lintian is not installed; the package is not linted (apt-get install lintian)'
fi

# ---------------------------------------------------------------------------------------------
# 7. Remove

if [[ -n $was_installed ]]; then
    echo "deb-test: msrpcast was installed before this test; the new build stays installed"
else
    remove_pkg
    check "apt-get purge removed msrpcast, $so and /usr/bin/msrpcast" \
        bash -c '[[ $(dpkg-query -W -f="\${db:Status-Status}" msrpcast 2>/dev/null) != installed ]] &&
            [[ ! -e $1 && ! -e /usr/bin/msrpcast && ! -e /usr/share/doc/msrpcast ]]' _ "$so"
fi

if ((failed)); then
    echo "deb-test: FAILED (logs in $scratch)"
    exit 1
fi
rm -rf "$scratch"
echo 'deb-test: all checks passed'
