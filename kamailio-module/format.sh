#!/usr/bin/env bash
# clang-format for the Kamailio module's C files, with kamailio-module/.clang-format (Kamailio's
# style).
#
#   kamailio-module/format.sh            format kamailio-module/*.c *.h in place
#   kamailio-module/format.sh --check    exit 1 (and show the diff) when a file is not formatted
#   kamailio-module/format.sh --compare  prove the style is Kamailio's: format Kamailio's own
#                                        core and a few modules (the source tree of
#                                        scripts/kamailio-src.sh) with this file and with the
#                                        tree's .clang-format; the outputs must be identical
#
# Needs clang-format (Debian: apt-get install clang-format; written for version 14).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/../scripts/lib.sh"
root=$(msrpcast_root)
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
command -v "$CLANG_FORMAT" >/dev/null ||
    msrpcast_die "$CLANG_FORMAT not found (Debian: apt-get install clang-format)"
style=$here/.clang-format
files=("$here"/*.c "$here"/*.h)

case ${1:-} in
"")
    "$CLANG_FORMAT" --style="file:$style" -i "${files[@]}"
    msrpcast_log "formatted ${#files[@]} files"
    ;;
--check)
    bad=0
    for f in "${files[@]}"; do
        if ! "$CLANG_FORMAT" --style="file:$style" "$f" | diff -u "$f" - >&2; then
            bad=$((bad + 1))
        fi
    done
    ((bad == 0)) || msrpcast_die "$bad file(s) not formatted: run kamailio-module/format.sh"
    msrpcast_log "${#files[@]} files formatted as .clang-format says"
    ;;
--compare)
    "$root/scripts/kamailio-src.sh"
    src=$(cat "${KAMAILIO_SRC_CACHE:-$root/.cache/kamailio-src}/srcdir")
    [[ -r $src/.clang-format ]] || msrpcast_die "no .clang-format in $src"
    n=0
    differ=()
    for f in "$src"/src/core/*.c "$src"/src/modules/{tm,dialog,msrp,uac,ctl,jsonrpcs,sl,rr}/*.c; do
        n=$((n + 1))
        if [[ $("$CLANG_FORMAT" --style="file:$src/.clang-format" "$f" | md5sum) != \
            $("$CLANG_FORMAT" --style="file:$style" "$f" | md5sum) ]]; then
            differ+=("${f#"$src"/}")
        fi
    done
    ((${#differ[@]} == 0)) ||
        msrpcast_die "${#differ[@]} of $n Kamailio files format differently: ${differ[*]}"
    msrpcast_log "$n Kamailio source files: identical output with Kamailio's .clang-format and ours"
    ;;
*) msrpcast_die "usage: kamailio-module/format.sh [--check | --compare]" ;;
esac
