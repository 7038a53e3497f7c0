#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the Go modules pinned in
# hack/controlplane/go.mod and caches them under a version-keyed directory. Prints that
# directory. A second run with the same versions does nothing.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need go golang-go
K8S=$(module_version k8s.io/kubernetes)
ETCD=$(module_version go.etcd.io/etcd/server/v3)
GOVER=$(GOTOOLCHAIN=local go env GOVERSION)
SUM=$(sha256sum "$HACK_DIR/controlplane/go.sum" | cut -c1-12)
BIN="$CACHE_DIR/controlplane/kube-$K8S-etcd-$ETCD-$GOVER-$SUM"

if [ -x "$BIN/etcd" ] && [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/kubectl" ]; then
  echo "$BIN"
  exit 0
fi

log "building control plane kube $K8S, etcd $ETCD with $GOVER into $BIN (cold: ~15-25 min on 2 cores)"
mkdir -p "$BIN.tmp"
minor=${K8S#v1.}; minor=${minor%%.*}
commit="0000000000000000000000000000000000000000"
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kver="-X k8s.io/component-base/version.gitVersion=$K8S \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitCommit=$commit \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=$date \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

cd "$HACK_DIR/controlplane"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
for cmd in kube-apiserver kube-controller-manager kubectl; do
  go build -trimpath -ldflags "-s -w $kver" -o "$BIN.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD" -o "$BIN.tmp/etcd" go.etcd.io/etcd/server/v3
rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
echo "$BIN"
