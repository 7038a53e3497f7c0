#!/usr/bin/env bash
# Assembles the operator image's whole file tree in OUT_DIR: the `mltenant` binary, exactly the
# shared libraries it links and their loader (from Debian 12's libc6 and libgcc-s1 at pinned
# versions, with their copyright files), and a passwd/group naming the non-root user 65532.
# Nothing else: no shell, no package manager. The Dockerfile's build stage runs this script and
# its final stage is `FROM scratch` plus this tree, and `make image` (hack/build-image.sh) builds
# that same final stage from the same tree, so both give the same files.
#
#   hack/image-rootfs.sh BINARY OUT_DIR
#
# Every file is root-owned with a fixed mode and the time SOURCE_DATE_EPOCH (default 0).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# = 2 ] || die "usage: $0 BINARY OUT_DIR"
bin=$1 out=$2
[ -x "$bin" ] || die "no executable $bin"
need readelf binutils
need dpkg-deb dpkg
need apt-get

# Debian 12's glibc and libgcc, the ones the binary is linked against (hack/build-release.sh
# builds on bookworm). Pinned, so that one commit gives one image; a new point release is a
# deliberate change. Dies, naming what apt offers, once the pinned version is gone.
# gcc-12-base only for libgcc-s1's copyright file (its doc directory links there).
declare -A PINNED=([libc6]=2.36-9+deb12u14 [libgcc-s1]=12.2.0-14+deb12u1 [gcc-12-base]=12.2.0-14+deb12u1)
ARCH_DIR=lib/x86_64-linux-gnu
LOADER=ld-linux-x86-64.so.2

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 777 "$tmp" # apt's download sandbox user writes here
for package in "${!PINNED[@]}"; do
  version=${PINNED[$package]}
  deb_cache=$CACHE_DIR/debs/${package}_${version//[^A-Za-z0-9.+-]/_}_amd64.deb
  if [ ! -f "$deb_cache" ]; then
    if ! (cd "$tmp" && apt-get download -qq "$package=$version" >/dev/null 2>&1); then
      offered=$(apt-cache madison "$package" 2>/dev/null | awk -F' [|] ' '{print $2}' | paste -sd ' ')
      die "Debian package $package $version is pinned (hack/image-rootfs.sh), apt offers: ${offered:-nothing} (apt-get update first?). Pin an offered version."
    fi
    mkdir -p "$(dirname "$deb_cache")"
    mv "$tmp/${package}_"*.deb "$deb_cache"
  fi
  dpkg-deb -x "$deb_cache" "$tmp/$package"
done

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/$ARCH_DIR" "$out/lib64" "$out/etc"
install -m 0755 "$bin" "$out/usr/local/bin/mltenant"

# The libraries the binary names (NEEDED), each from the package that ships it, and the loader.
needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
[ -n "$needed" ] || die "readelf found no NEEDED entries in $bin"
declare -A used=()
for lib in $needed $LOADER; do
  found=
  for package in "${!PINNED[@]}"; do
    if [ -e "$tmp/$package/$ARCH_DIR/$lib" ]; then
      # Debian ships some as links to the versioned file: copy the file under the linked name.
      install -m 0755 "$(readlink -f "$tmp/$package/$ARCH_DIR/$lib")" "$out/$ARCH_DIR/$lib"
      used[$package]=1
      found=1
    fi
  done
  [ -n "$found" ] || die "$bin needs $lib, which neither ${!PINNED[*]} ships"
done
# The binary asks for /lib64/$LOADER (its PT_INTERP), as libc6 provides it.
ln -s "/$ARCH_DIR/$LOADER" "$out/lib64/$LOADER"
# Each package's copyright file (the licences that come with the libraries), found through
# its doc directory, which may link to another package's (libgcc-s1's to gcc-12-base's).
for package in "${!used[@]}"; do
  doc=$package
  [ -L "$tmp/$package/usr/share/doc/$package" ] && doc=$(readlink "$tmp/$package/usr/share/doc/$package")
  copyrights=("$tmp"/*/usr/share/doc/"$doc"/copyright)
  copyright=${copyrights[0]}
  [ -f "$copyright" ] || die "no copyright file for $package (usr/share/doc/$doc/copyright in ${!PINNED[*]})"
  install -D -m 0644 "$copyright" "$out/usr/share/doc/$package/copyright"
done

# distroless's users: root, and nonroot (65532), which the chart runs as.
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$out/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$out/etc/group"
printf '%s\n' 'hosts: files dns' >"$out/etc/nsswitch.conf"
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"

# Fixed owner, directory modes and times: the tree is the same wherever it is built.
find "$out" -type d -exec chmod 0755 {} +
chown -hR 0:0 "$out" 2>/dev/null || true
find "$out" -exec touch -h -d "@${SOURCE_DATE_EPOCH:-0}" {} +
log "image file tree in $out: $(find "$out" -type f | wc -l) files, $(du -sk "$out" | cut -f1) KiB"
