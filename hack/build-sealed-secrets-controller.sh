#!/usr/bin/env bash
# Builds the sealed-secrets controller (the peer `make bench` compares against) from the same Go
# module as kubeseal, into a version-keyed cache directory, and prints the binary's path.
# Nothing of it is committed; the bench runs it on loopback only.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_sealed_secrets_cmd controller \
  "${SEALED_SECRETS_VERSION:-$(cat "$REPO_DIR/tests/fixtures/crypto/kubeseal-version.txt")}" \
  sealed-secrets-controller "the sealed-secrets controller"
