#!/usr/bin/env bash
# Builds kubeseal (the sealed-secrets CLI) from its Go module into a version-keyed cache
# directory and prints the binary's path. Used by the compatibility tests and
# hack/kubeseal-vectors.sh. KUBESEAL_VERSION defaults to the version the vectors were made with.
#
# `go install github.com/bitnami-labs/sealed-secrets/cmd/kubeseal@v0.40.0` does not work: from
# that release on, go.mod declares `module github.com/bitnami/sealed-secrets` while the proxy
# serves it under github.com/bitnami-labs/sealed-secrets. Building inside the downloaded module
# source works for either path, with the module's own go.sum.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODULE=github.com/bitnami-labs/sealed-secrets
VERSION=${KUBESEAL_VERSION:-$(cat "$REPO_DIR/tests/fixtures/crypto/kubeseal-version.txt")}
DIR=$CACHE_DIR/tools/kubeseal-$VERSION
need go golang-go
if [ ! -x "$DIR/kubeseal" ]; then
  log "building kubeseal $VERSION from $MODULE (once; about a minute)"
  start=$SECONDS
  src=$(module_source "$MODULE" "$VERSION")
  mkdir -p "$DIR"
  (cd "$src" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0 \
    go build -trimpath -ldflags "-X main.VERSION=$VERSION" -o "$DIR/kubeseal.tmp" ./cmd/kubeseal) >&2
  mv "$DIR/kubeseal.tmp" "$DIR/kubeseal"
  log "built kubeseal in $((SECONDS - start))s"
fi
echo "$DIR/kubeseal"
