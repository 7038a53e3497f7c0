#!/usr/bin/env bash
# Checks the binary the image would contain, without a Docker engine: builds it with
# hack/build-release.sh (the Dockerfile's build stage) and checks that it runs on
# distroless/cc-debian12 (libraries, glibc symbol versions, packed relocations), as its
# non-root user, that it is the crate's version and prints the committed CRDs, that no path of
# the build machine is in it, and that the Dockerfile still builds it this way. One line per
# check; the first failure ends the script with one "error:" line.
#   hack/test-release-binary.sh [BINARY]   (BINARY: check that file instead of building, e.g.
#                                           one copied out of the image)
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need readelf binutils
need objdump binutils
need strings binutils

ok() { echo "ok    $*"; }

if [ -n "${1:-}" ]; then
  built=$1
  [ -f "$built" ] || die "no such file: $built"
else
  built=$("$HACK_DIR/build-release.sh")
fi
# As the image has it: root-owned, 0755, in a directory anyone may enter.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"
bin=$tmp/mltenant
install -m 0755 "$built" "$bin"
ok "binary: $built ($(du -k "$bin" | cut -f1) KiB)"

# (a) Only libraries distroless/cc-debian12 ships (glibc and libgcc_s), through the usual loader.
allowed="libc.so.6 libm.so.6 libgcc_s.so.1 ld-linux-x86-64.so.2 libpthread.so.0 libdl.so.2 librt.so.1"
needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' | tr '\n' ' ')
[ -n "$needed" ] || die "libraries: readelf found no NEEDED entries in $bin (not a dynamic ELF binary?)"
for lib in $needed; do
  [[ " $allowed " == *" $lib "* ]] \
    || die "libraries: the binary needs $lib, which distroless/cc-debian12 does not ship (it has: $allowed)"
done
interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')
[ "$interp" = /lib64/ld-linux-x86-64.so.2 ] \
  || die "libraries: program interpreter is '$interp', not /lib64/ld-linux-x86-64.so.2"
ok "libraries: ${needed% } (interpreter $interp)"

# (b) glibc symbol versions: bookworm (distroless/cc-debian12) has glibc 2.36.
max_glibc=2.36
glibc=$(objdump -T "$bin" | { grep -o 'GLIBC_[0-9][0-9.]*' || true; } | sed 's/^GLIBC_//' | sort -uV | tail -1)
[ -n "$glibc" ] || die "glibc: objdump found no GLIBC_ symbol versions in $bin"
[ "$(printf '%s\n' "$glibc" "$max_glibc" | sort -V | tail -1)" = "$max_glibc" ] \
  || die "glibc: the binary needs GLIBC_$glibc, newer than bookworm's $max_glibc (build on Debian 12)"
ok "glibc: highest symbol version GLIBC_$glibc <= $max_glibc"
# Packed relative relocations (hack/build-release.sh); bookworm's glibc 2.36 is the first
# with GLIBC_ABI_DT_RELR.
readelf -d "$bin" | grep -q '(RELR)' || die "relocations: no DT_RELR in $bin (built without -z pack-relative-relocs?)"
ok "relocations: relative ones packed (DT_RELR)"

# (c) The crate's version.
version=$(awk -F'"' '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version *=/ { print $2; exit }' "$REPO_DIR/Cargo.toml")
[ -n "$version" ] || die "version: no [package] version in Cargo.toml"
got=$("$bin" --version) || die "version: '$bin --version' failed"
[ "$got" = "mltenant $version" ] || die "version: '--version' printed '$got', expected 'mltenant $version'"
ok "version: $got"

# (d) The CRDs it serves are the committed ones.
"$bin" crds >"$tmp/crds.yaml" || die "crds: '$bin crds' failed"
cmp -s "$tmp/crds.yaml" "$REPO_DIR/crds/mltenant.io.yaml" \
  || die "crds: 'mltenant crds' differs from crds/mltenant.io.yaml (run 'make crds')"
ok "crds: output equals crds/mltenant.io.yaml"

# (e) No path of this machine: the checkout, CARGO_HOME, the target dir, $HOME (as given and
# with symlinks resolved). They would be there if hack/build-release.sh's remapping broke.
paths=("$REPO_DIR" "${CARGO_HOME:-$HOME/.cargo}" "$(dirname "$(dirname "$built")")")
[ -z "${HOME:-}" ] || [ "$HOME" = / ] || paths+=("$HOME")
for p in "${paths[@]}"; do
  if real=$(cd "$p" 2>/dev/null && pwd -P) && [ "$real" != "$p" ]; then paths+=("$real"); fi
done
strings -a "$bin" >"$tmp/strings"
for p in "${paths[@]}"; do
  hit=$(grep -F -m1 -e "$p/" "$tmp/strings" || true)
  [ -z "$hit" ] || die "paths: the binary contains the build path $p: ${hit:0:200}"
done
ok "paths: none of ${paths[*]} in the binary"

# (f) It runs as the image's non-root user.
if [ "$(id -u)" = 0 ]; then
  need setpriv util-linux
  got=$(setpriv --reuid 65532 --regid 65532 --clear-groups "$bin" --version) \
    || die "non-root: '$bin --version' failed as uid 65532"
  [ "$got" = "mltenant $version" ] || die "non-root: as uid 65532 '--version' printed '$got'"
  ok "non-root: runs as uid/gid 65532"
else
  ok "non-root: ran the checks above as uid $(id -u)"
fi

# (g) The Dockerfile builds it this way and runs it as 65532 (continuation lines joined).
dockerfile=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$REPO_DIR/Dockerfile")
grep -Eq '^RUN .*hack/build-release\.sh' <<<"$dockerfile" \
  || die "Dockerfile: its build stage does not RUN hack/build-release.sh"
user=$(sed -n 's/^USER[[:space:]]\{1,\}//p' <<<"$dockerfile" | tail -1)
[[ $user =~ ^65532(:65532)?$ ]] || die "Dockerfile: the image's USER is '$user', not 65532:65532"
arg_default() { sed -n "s/^ARG $1=//p" <<<"$dockerfile" | head -1; }
[ "$(arg_default VERSION)" = "$version" ] \
  || die "Dockerfile: ARG VERSION defaults to '$(arg_default VERSION)', the crate is $version"
ok "Dockerfile: RUN hack/build-release.sh, USER $user, VERSION $version"
rust=$(rustc --version | cut -d' ' -f2)
if [ "$(arg_default RUST_VERSION)" = "$rust" ]; then
  ok "toolchain: rustc $rust, the Dockerfile's RUST_VERSION"
else
  echo "warn  toolchain: rustc $rust here, the image builds with $(arg_default RUST_VERSION): its binary may differ" >&2
fi
