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

need python3 python3
venv=$CACHE_DIR/python-cryptography-$CRYPTOGRAPHY_VERSION
if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -c 'import cryptography' 2>/dev/null; then
  log "installing cryptography $CRYPTOGRAPHY_VERSION (once, into $venv)"
  rm -rf "$venv"
  python3 -m venv "$venv" >/dev/null 2>&1 || die "python3 -m venv failed (Debian package: python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "cryptography==$CRYPTOGRAPHY_VERSION" >&2 \
    || die "pip install cryptography==$CRYPTOGRAPHY_VERSION failed"
fi

cd "$REPO_DIR"
cargo build --locked --quiet --bin mltenant
"$venv/bin/python3" "$HACK_DIR/v2-vectors.py" "$REPO_DIR/target/debug/mltenant" --check
log "format v2: mltenant's output and the committed vectors open in an independent implementation"
