#!/usr/bin/env bash
# Builds kubeseal (the sealed-secrets CLI) from its Go module into a version-keyed cache
# directory and prints the binary's path (see build_sealed_secrets_cmd in lib.sh for why it is
# built inside the module source). Used by the compatibility tests and hack/kubeseal-vectors.sh.
# KUBESEAL_VERSION defaults to the version the vectors were made with.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_sealed_secrets_cmd kubeseal "${KUBESEAL_VERSION:-$(cat "$REPO_DIR/tests/fixtures/crypto/kubeseal-version.txt")}" \
  kubeseal kubeseal
