#!/usr/bin/env bash
# Builds helm from its Go module into a version-keyed cache directory and prints the binary's
# path. The kube version helm assumes for `lint` and `template` (Capabilities.KubeVersion) is
# linked in as the control plane's (hack/controlplane/go.mod), as helm's own Makefile does.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODULE=helm.sh/helm/v3
VERSION=${HELM_VERSION:-v3.22.0}
K8S=$(module_version k8s.io/kubernetes)
minor=${K8S#v1.}; minor=${minor%%.*}
DIR=$CACHE_DIR/tools/helm-$VERSION-kube-1.$minor
need go golang-go
if [ ! -x "$DIR/helm" ]; then
  log "helm $VERSION: a few minutes cold"
  ldflags="-s -w -X $MODULE/internal/version.version=$VERSION"
  for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X $MODULE/$pkg.k8sVersionMajor=1 -X $MODULE/$pkg.k8sVersionMinor=$minor"
  done
  module_build "$MODULE" "$VERSION" ./cmd/helm "$DIR/helm" "$ldflags"
fi
echo "$DIR/helm"
