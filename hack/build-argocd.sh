#!/usr/bin/env bash
# Builds Argo CD (one binary, `argocd`, that is the repo-server or the application controller
# by the name it is called with) from its Go module, into a version-keyed cache directory, and
# prints that directory: argocd, argocd-repo-server and argocd-application-controller (links),
# git-verify-wrapper.sh (Argo CD's, which the repo-server runs from its PATH) and crds/ (the
# Application and AppProject CRDs of the module's manifests/crds).
#
# The module's go.mod replaces github.com/argoproj/argo-cd/gitops-engine/v3 with its own
# ./gitops-engine directory, which a module download does not carry as a module: the replace
# is dropped and the published gitops-engine of the same version required instead. Argo CD
# v3.6 needs Go 1.27 (ARGOCD_GOTOOLCHAIN, taken from the Go module proxy like a module).
# Cold: about 6 minutes on 2 cores, 2.4 GB of memory at peak.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODULE=github.com/argoproj/argo-cd/v3
VERSION=${ARGOCD_VERSION:-v3.6.2}
TOOLCHAIN=${ARGOCD_GOTOOLCHAIN:-go1.27.4}
DIR=$CACHE_DIR/tools/argocd-$VERSION-$TOOLCHAIN
need go golang-go
if [ ! -x "$DIR/argocd" ] || [ ! -x "$DIR/git-verify-wrapper.sh" ] || [ ! -f "$DIR/crds/application-crd.yaml" ]; then
  log "building Argo CD $VERSION from $MODULE with $TOOLCHAIN (once; about 6 minutes cold)"
  start=$SECONDS
  export GOTOOLCHAIN=$TOOLCHAIN
  src=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || die "could not download $MODULE@$VERSION"
  work=$(mktemp -d)
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  # The module cache is read-only: build in a writable copy (without the UI's sources; its
  # built assets under ui/dist are embedded).
  cp -r "$src/." "$work/"
  chmod -R u+w "$work"
  cd "$work"
  go mod edit -dropreplace github.com/argoproj/argo-cd/gitops-engine/v3 \
    -require "github.com/argoproj/argo-cd/gitops-engine/v3@$VERSION"
  GOFLAGS=-mod=mod go mod download github.com/argoproj/argo-cd/gitops-engine/v3 >&2
  pkg=$MODULE/common
  ldflags="-s -w -X $pkg.version=${VERSION#v} -X $pkg.buildDate=1970-01-01T00:00:00Z -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean -X $pkg.gitTag=$VERSION"
  mkdir -p "$DIR.tmp"
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$DIR.tmp/argocd" ./cmd >&2
  ln -sf argocd "$DIR.tmp/argocd-repo-server"
  ln -sf argocd "$DIR.tmp/argocd-application-controller"
  install -m 0755 hack/git-verify-wrapper.sh "$DIR.tmp/git-verify-wrapper.sh"
  mkdir -p "$DIR.tmp/crds"
  install -m 0644 manifests/crds/application-crd.yaml manifests/crds/appproject-crd.yaml "$DIR.tmp/crds/"
  rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"
  log "built Argo CD $VERSION in $((SECONDS - start))s"
fi
echo "$DIR"
