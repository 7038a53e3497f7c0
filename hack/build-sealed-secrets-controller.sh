#!/usr/bin/env bash
# Builds the sealed-secrets controller (the peer `make bench` compares against) from the same Go
# module as kubeseal (hack/build-kubeseal.sh, whose comment says why it is built inside the
# module source), into a version-keyed cache directory, and prints the binary's path. Nothing of
# it is committed; the bench runs it on loopback only.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODULE=github.com/bitnami-labs/sealed-secrets
VERSION=${SEALED_SECRETS_VERSION:-$(cat "$REPO_DIR/tests/fixtures/crypto/kubeseal-version.txt")}
DIR=$CACHE_DIR/tools/sealed-secrets-controller-$VERSION
need go golang-go
if [ ! -x "$DIR/controller" ]; then
  log "building the sealed-secrets controller $VERSION from $MODULE (once; a minute or two)"
  start=$SECONDS
  src=$(module_source "$MODULE" "$VERSION")
  mkdir -p "$DIR"
  (cd "$src" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0 \
    go build -trimpath -ldflags "-X main.VERSION=$VERSION" -o "$DIR/controller.tmp" ./cmd/controller) >&2
  mv "$DIR/controller.tmp" "$DIR/controller"
  log "built the sealed-secrets controller in $((SECONDS - start))s"
fi
echo "$DIR/controller"
