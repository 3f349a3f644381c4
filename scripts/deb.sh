#!/usr/bin/env bash
# `make deb`: builds the Debian package msrpcast_<version>_<arch>.deb in target/deb/ (or DEB_OUT).
#
#   scripts/deb.sh             build the module and the tool (release), stage, package; prints
#                              the .deb's path as its last line
#
# Contents:
#   <Kamailio's module directory>/msrpcast.so   asked of the installed kamailio (`kamailio -I`:
#                                               "Default paths to modules"), e.g. Debian's
#                                               /usr/lib/<multiarch triplet>/kamailio/modules
#   /usr/bin/msrpcast                           the command-line tool
#   /usr/share/bash-completion/completions/msrpcast   `msrpcast completions bash`
#   /usr/share/man/man1/msrpcast.1.gz           the --help of the tool and of each command
#   /usr/share/lintian/overrides/msrpcast       packaging/debian/msrpcast.lintian-overrides
#                                               (tags that do not apply, each with its reason)
#   /usr/share/doc/msrpcast/                    README.md.gz, kamailio-module.md.gz (the module's
#                                               parameters and RPC commands), http-api.md.gz,
#                                               tls.md.gz, openapi.json.gz, copyright,
#                                               changelog.Debian.gz, rust-crates.txt.gz,
#                                               examples/kamailio.cfg (uncompressed: usable as is
#                                               with kamailio -f)
# Two builds of the same tree give the same .deb: files dated by the changelog (SOURCE_DATE_EPOCH).
#
# How: a staged tree and the dpkg-dev tools, without debhelper. The templates are in
# packaging/debian/ (control, changelog, copyright); dpkg-shlibdeps computes ${shlibs:Depends}
# from the two ELF files, dpkg-gencontrol writes DEBIAN/control (version from the changelog,
# Installed-Size), and `dpkg-deb --root-owner-group` builds the archive as an ordinary user.
# debhelper is not used because its build entry (dpkg-buildpackage + debian/rules) would either
# declare a Build-Depends on Debian's cargo/rustc, which is older than the rust-version this
# crate needs (the toolchain comes from rustup), or have to be told to ignore it; the module is
# built by kamailio-module/build.sh either way. What dh would add is done here: stripping as
# dh_strip does, gzip -9n of documentation as dh_compress does, DEBIAN/md5sums as dh_md5sums.
#
# Depends: Kamailio loads a module only when the version string compiled into it equals its own
# ("kamailio 5.6.3 (x86_64/linux)"), so the package depends on the upstream version of the
# kamailio package it was built against, any Debian revision of it:
#   kamailio (>= 5.6.3), kamailio (<< 5.6.4~)
# and on what dpkg-shlibdeps finds (libc6, libgcc-s1).
#
# Environment: CARGO_TARGET_DIR, DEB_OUT (default <target>/deb).
# Needs: kamailio and its source (scripts/install-deps.sh, scripts/kamailio-src.sh via the
# module's build.sh), dpkg-dev, binutils, gzip.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"
root=$(msrpcast_root)
cd "$root"

target_dir=${CARGO_TARGET_DIR:-$root/target}
out=${DEB_OUT:-$target_dir/deb}
tmpl=$root/packaging/debian

for t in kamailio dpkg-deb dpkg-shlibdeps dpkg-gencontrol dpkg-parsechangelog strip gzip cargo; do
    command -v "$t" >/dev/null || msrpcast_die "$t not installed (scripts/install-deps.sh)"
done

# ---------------------------------------------------------------------------------------------
# Versions and paths

crate_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
deb_version=$(dpkg-parsechangelog -l "$tmpl/changelog" -S Version)
[[ ${deb_version%-*} == "$crate_version" ]] ||
    msrpcast_die "packaging/debian/changelog is at $deb_version, Cargo.toml at $crate_version: add a changelog entry"

# Kamailio's own answer: "Default paths to modules: DIR[:DIR...]"; the first one is where
# loadmodule "name.so" looks first.
moddir=$(kamailio -I 2>/dev/null | sed -n 's/^ *Default paths to modules: *//p' | cut -d: -f1)
[[ $moddir == /* && -d $moddir ]] ||
    msrpcast_die "kamailio -I names no module directory that exists (got '$moddir')"
kam_deb=$(dpkg-query -W -f='${Version}' kamailio 2>/dev/null) ||
    msrpcast_die "the kamailio package is not installed (the module is built against it)"
kam_running=$(kamailio -v 2>/dev/null | sed -n 's/^version: kamailio \([0-9][0-9.]*\).*/\1/p')
# The package's upstream version: no epoch, no Debian revision, no +dfsg-like suffix.
epoch=
[[ $kam_deb == *:* ]] && epoch=${kam_deb%%:*}:
kam_up=${kam_deb#*:}
kam_up=${kam_up%-*}
kam_up=$(sed 's/^\([0-9][0-9.]*[0-9]\).*/\1/' <<<"$kam_up")
[[ $kam_up == "$kam_running" ]] ||
    msrpcast_die "kamailio -v reports $kam_running but the kamailio package is $kam_deb"
# Next upstream version: the last number plus one (5.6.3 -> 5.6.4); ~ sorts before anything.
kam_next=$(awk -F. -v OFS=. '{ $NF = $NF + 1; print }' <<<"$kam_up")
kam_depends="kamailio (>= $epoch$kam_up), kamailio (<< $epoch$kam_next~)"

# ---------------------------------------------------------------------------------------------
# Build

msrpcast_log "building the Kamailio module (kamailio-module/build.sh)"
kamailio-module/build.sh
msrpcast_log "building the msrpcast tool (cargo build --release --locked --bin msrpcast)"
cargo build --release --locked --bin msrpcast
so=$root/kamailio-module/build/msrpcast.so
bin=$target_dir/release/msrpcast
[[ -f $so && -x $bin ]] || msrpcast_die "build products missing: $so, $bin"

# ---------------------------------------------------------------------------------------------
# Stage: <out>/build/debian/msrpcast is the package's file system, debhelper's layout

build=$out/build
pkg=$build/debian/msrpcast
rm -rf "$build"
mkdir -p "$build/debian" "$pkg/DEBIAN"
cp "$tmpl/control" "$tmpl/changelog" "$build/debian/"
doc=$pkg/usr/share/doc/msrpcast
install -d -m 755 "$pkg$moddir" "$pkg/usr/bin" "$doc/examples" \
    "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/lintian/overrides"

# dh_strip's choices: shared objects --strip-unneeded (the dynamic symbols Kamailio looks up,
# module_version, module_flags and exports, stay), executables fully; .comment and .note go.
install -m 644 "$so" "$pkg$moddir/msrpcast.so"
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$pkg$moddir/msrpcast.so"
install -m 755 "$bin" "$pkg/usr/bin/msrpcast"
strip --remove-section=.comment --remove-section=.note "$pkg/usr/bin/msrpcast"
"$pkg/usr/bin/msrpcast" completions bash >"$pkg/usr/share/bash-completion/completions/msrpcast"
chmod 644 "$pkg/usr/share/bash-completion/completions/msrpcast"

# msrpcast(1): the tool's own --help texts (top level and every command) as a manual page.
man_text() { # plain text for roff: a backslash printed as \e, a leading . or ' behind \&
    sed -e 's/\\/\\e/g' -e 's/^\([.'"'"']\)/\\\&\1/'
}
man=$pkg/usr/share/man/man1/msrpcast.1
install -d -m 755 "${man%/*}"
date_man=$(date -u -d "@$(dpkg-parsechangelog -l "$tmpl/changelog" -S Timestamp)" +%Y-%m-%d)
{
    echo ".TH MSRPCAST 1 \"$date_man\" \"msrpcast $crate_version\" \"User Commands\""
    echo '.SH NAME'
    echo 'msrpcast \- push files to SIP conference participants over MSRP'
    echo '.SH SYNOPSIS'
    echo '.B msrpcast'
    echo '.I COMMAND'
    echo '[\fIOPTIONS\fR]'
    echo '.SH DESCRIPTION'
    echo '.nf'
    # Wrapped at 72 columns (clap reads COLUMNS): the page's indent still fits 80.
    COLUMNS=72 "$bin" --help | man_text
    echo '.fi'
    for c in send receive serve settings completions; do
        echo ".SH \"MSRPCAST ${c^^}\""
        echo '.nf'
        COLUMNS=72 "$bin" "$c" --help | man_text
        echo '.fi'
    done
    echo '.SH SEE ALSO'
    echo '.BR kamailio (8),'
    echo '/usr/share/doc/msrpcast/README.md.gz,'
    echo '/usr/share/doc/msrpcast/kamailio-module.md.gz'
} >"$man"
gzip -9n "$man"
chmod 644 "$man.gz"

install -m 644 "$tmpl/copyright" "$doc/copyright"
install -m 644 "$tmpl/msrpcast.lintian-overrides" "$pkg/usr/share/lintian/overrides/msrpcast"
install -m 644 README.md "$doc/README.md"
install -m 644 kamailio-module/README.md "$doc/kamailio-module.md"
install -m 644 docs/http-api.md docs/tls.md docs/openapi.json "$doc/"
install -m 644 "$tmpl/changelog" "$doc/changelog.Debian"
install -m 644 cfg/kamailio.cfg "$doc/examples/kamailio.cfg"

# The Rust crates linked into both files (dependencies of the msrpcast package that are neither
# dev-, build- nor proc-macro crates), with their license expressions and license files.
cargo metadata --format-version 1 --locked --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" |
    python3 "$here/deb-crates.py" >"$doc/rust-crates.txt"
chmod 644 "$doc/rust-crates.txt"

# dh_compress: documentation except the copyright file and the examples.
find "$doc" -maxdepth 1 -type f ! -name copyright -exec gzip -9n {} +
# Reproducible: every file dated by the changelog entry (dpkg-deb also reads SOURCE_DATE_EPOCH).
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$tmpl/changelog" -S Timestamp)
export SOURCE_DATE_EPOCH
find "$pkg" -path "$pkg/DEBIAN" -prune -o -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# ---------------------------------------------------------------------------------------------
# Control file, checksums, archive

(
    cd "$build"
    dpkg-shlibdeps -Tdebian/msrpcast.substvars "debian/msrpcast$moddir/msrpcast.so" \
        debian/msrpcast/usr/bin/msrpcast
    dpkg-gencontrol -pmsrpcast -ldebian/changelog -cdebian/control -Pdebian/msrpcast \
        -Tdebian/msrpcast.substvars -fdebian/files -V"kamailio:Depends=$kam_depends" -Vmisc:Depends=
)
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)
chmod 644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"
find "$pkg" -type d -exec chmod 755 {} +

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=$out/msrpcast_${deb_version}_$arch.deb
rm -f "$deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
msrpcast_log "built $deb:"
dpkg-deb --field "$deb" Package Version Architecture Depends Installed-Size >&2
echo "$deb"
