#!/usr/bin/env bash
# Builds the e2e tier's node from the same Kubernetes release as the control plane: kubelet,
# kube-proxy and kube-scheduler (hack/node/go.mod, which must name the k8s.io/kubernetes version
# of hack/controlplane/go.mod), and the pause image from the module's own
# build/pause/linux/pause.c (a static binary, as its Makefile builds it), as an OCI archive for
# `ctr images import`. Cached under a version-keyed directory, which it prints. A second run
# with the same versions does nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need go golang-go
need gcc gcc
K8S=$(module_version k8s.io/kubernetes)
NODE_K8S=$(cd "$HACK_DIR/node" && GOTOOLCHAIN=local go list -m -f '{{.Version}}' k8s.io/kubernetes)
[ "$K8S" = "$NODE_K8S" ] \
  || die "hack/node/go.mod builds the node from k8s.io/kubernetes $NODE_K8S, the control plane is $K8S: make them the same"
GOVER=$(GOTOOLCHAIN=local go env GOVERSION)
SUM=$(sha256sum "$HACK_DIR/node/go.sum" | cut -c1-12)
BUILDAH=$(buildah --version 2>/dev/null | cut -d" " -f3)
BIN="$CACHE_DIR/node/kube-$K8S-$GOVER-$SUM-buildah-${BUILDAH:-none}"
# The pause image's tag is the pause version of this Kubernetes release (build/pause/Makefile).
PAUSE_IMAGE_NAME=localhost/mltenant-e2e/pause

if [ -x "$BIN/kubelet" ] && [ -x "$BIN/kube-proxy" ] && [ -x "$BIN/kube-scheduler" ] && [ -f "$BIN/pause.oci.tar" ]; then
  echo "$BIN"
  exit 0
fi

log "building kubelet, kube-proxy, kube-scheduler $K8S and the pause image with $GOVER into $BIN (cold: ~3 min on 2 cores)"
start=$SECONDS
rm -rf "$BIN.tmp" && mkdir -p "$BIN.tmp"
minor=${K8S#v1.}; minor=${minor%%.*}
kver="-X k8s.io/component-base/version.gitVersion=$K8S \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitCommit=0000000000000000000000000000000000000000 \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
(
  cd "$HACK_DIR/node"
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
  for cmd in kubelet kube-proxy kube-scheduler; do
    go build -trimpath -ldflags "-s -w $kver" -o "$BIN.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
) >&2

src=$(cd "$HACK_DIR/node" && GOTOOLCHAIN=local go list -m -f '{{.Dir}}' k8s.io/kubernetes)
pause_tag=$(sed -n 's/^TAG ?= *//p' "$src/build/pause/Makefile")
[ -n "$pause_tag" ] || die "no TAG in $src/build/pause/Makefile"
context=$BIN.tmp/pause-context
mkdir -p "$context/bin"
# The Makefile's flags; its REV (git describe) is the Kubernetes release here.
gcc -Os -Wall -Werror -static "-DVERSION=v$pause_tag-$K8S" -o "$context/bin/pause-linux-amd64" "$src/build/pause/linux/pause.c"
# The module's own build/pause/Dockerfile, with the Makefile's arguments for linux/amd64.
oci_build "$context" "$src/build/pause/Dockerfile" "$PAUSE_IMAGE_NAME:$pause_tag" "$BIN.tmp/pause.oci.tar" 0 \
  BASE=scratch ARCH=amd64 >"$BIN.tmp/pause.digest"
echo "$PAUSE_IMAGE_NAME:$pause_tag" >"$BIN.tmp/pause.image"
rm -rf "$context"
rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
log "built the node in $((SECONDS - start))s"
echo "$BIN"
