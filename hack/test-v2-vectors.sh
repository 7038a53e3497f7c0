#!/usr/bin/env bash
# Format v2 against an implementation of its own (part of `make tools`): hack/v2-vectors.py
# --check, written from docs/sealing.md with Python's `cryptography` (OpenSSL underneath), opens
# what `mltenant seal --format v2` seals now for both TEST-ONLY fixture keys, and the committed
# vectors of both directions (the unit tests open the Python-sealed ones). Writes nothing;
# hack/v2-vectors.sh regenerates the vectors. `cryptography`, pinned, is installed once from
# PyPI into a virtual environment in the cache.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CRYPTOGRAPHY_VERSION=48.0.0

venv=$(python_venv cryptography "$CRYPTOGRAPHY_VERSION" .installed)

cd "$REPO_DIR"
cargo build --locked --quiet --bin mltenant
"$venv/bin/python3" "$HACK_DIR/v2-vectors.py" "$REPO_DIR/target/debug/mltenant" --check
log "format v2: mltenant's output and the committed vectors open in an independent implementation"
