#!/usr/bin/env bash
# Regenerates the format v2 vectors in tests/fixtures/crypto/ with an independent implementation
# (hack/v2-vectors.py: Python `cryptography`), both ways: it seals vectors our unit tests open,
# and opens what `mltenant seal --format v2` seals. Makes the second TEST-ONLY fixture key
# (sealing-key-2) with openssl when it is missing. Nothing here is needed at test time.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
FIX="$REPO_DIR/tests/fixtures/crypto"
need python3 python3
python3 -c 'import cryptography' 2>/dev/null || die "python3 needs the cryptography package (Debian: python3-cryptography)"
if [ ! -f "$FIX/sealing-key-2.crt" ]; then
  log "new second fixture key (TEST ONLY)"
  openssl req -x509 -newkey rsa:4096 -nodes -days 36500 -subj "/CN=mltenant-operator test fixture 2 (TEST ONLY)" \
    -keyout "$FIX/sealing-key-2.key" -out "$FIX/sealing-key-2.crt" 2>/dev/null
fi
(cd "$REPO_DIR" && cargo build --quiet --bin mltenant)
python3 "$HACK_DIR/v2-vectors.py" "$REPO_DIR/target/debug/mltenant"
(cd "$REPO_DIR" && cargo test --quiet --lib crypto::tests)
