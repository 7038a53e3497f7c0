#!/usr/bin/env bash
# Prints the path of promtool, extracted (once, cached) from Debian's prometheus package without
# installing or starting the Prometheus service.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need apt-get
need dpkg-deb
version=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed (needed to find the prometheus package)"
  version=$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')
fi
[ -n "$version" ] && [ "$version" != "(none)" ] || die "Debian package prometheus (for promtool) not found"
dir=$CACHE_DIR/tools/promtool-${version//[^A-Za-z0-9._-]/_}
if [ ! -x "$dir/promtool" ]; then
  log "extracting promtool from Debian's prometheus $version (once)"
  tmp=$(mktemp -d)
  chmod 777 "$tmp"  # apt's download sandbox user must be able to write here
  (cd "$tmp" && apt-get download -qq "prometheus=$version" >/dev/null 2>&1) || die "apt-get download prometheus failed"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$dir"
  mv "$tmp/x/usr/bin/promtool" "$dir/promtool"
  rm -rf "$tmp"
fi
echo "$dir/promtool"
