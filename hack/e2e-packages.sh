#!/usr/bin/env bash
# Installs the Debian packages the e2e tier runs (once; apt-get skips what is installed):
# containerd and runc (the node's container runtime), containernetworking-plugins (bridge,
# host-local, loopback), iptables (kube-proxy and the bridge plugin, inside the tier's network
# namespace only), redis (Argo CD's cache), buildah (`make image`, without a daemon), git (the
# Git repository Argo CD syncs from), util-linux (unshare, nsenter) and gcc's static libc
# (the pause binary). No service is started: a policy-rc.d refuses every start while apt runs
# (Debian's redis-server would otherwise start one on this machine's loopback).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# command|package, one per line.
PACKAGES="containerd|containerd
runc|runc
/usr/lib/cni/bridge|containernetworking-plugins
iptables|iptables
redis-server|redis-server
buildah|buildah
git|git
nsenter|util-linux
gcc|gcc
/usr/lib/x86_64-linux-gnu/libc.a|libc6-dev
ip|iproute2"

missing=()
while IFS='|' read -r cmd package; do
  if [[ $cmd == /* ]]; then [ -e "$cmd" ] && continue; else command -v "$cmd" >/dev/null 2>&1 && continue; fi
  missing+=("$package")
done <<<"$PACKAGES"
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    die "missing Debian packages: ${missing[*]} (install them as root)"
  fi
  log "installing ${missing[*]} (once)"
  policy=/usr/sbin/policy-rc.d
  created_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Written by mltenant-operator hack/e2e-packages.sh while apt runs: start no service.\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    created_policy=1
  fi
  trap '[ -z "$created_policy" ] || rm -f "$policy"' EXIT
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"${TMPDIR:-/tmp}/mltenant-e2e-apt.log" 2>&1 \
    || { tail -20 "${TMPDIR:-/tmp}/mltenant-e2e-apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
fi
