#!/usr/bin/env bash
# Regenerates the kubeseal compatibility vectors in tests/fixtures/crypto/ (see its README.md).
#
#   hack/kubeseal-vectors.sh                   # reuse the committed TEST-ONLY key, re-seal everything
#   hack/kubeseal-vectors.sh --regenerate-key  # new TEST-ONLY key first (then commit the new fixtures)
#   KUBESEAL_VERSION=latest hack/kubeseal-vectors.sh   # newest kubeseal the Go module proxy serves
#
# Steps:
#   1. build kubeseal from its Go module into $CACHE_DIR/tools/kubeseal-<version>/ (once);
#   2. make sure the TEST-ONLY fixture key pair exists (made by openssl);
#   3. write the plaintexts, seal each with `kubeseal --raw` for its scope (vectors.txt) into
#      <name>.kubeseal.b64, and with `mltenant seal --from-file` into <name>.mltenant.b64;
#   4. check both directions with kubeseal itself: `kubeseal --recovery-unseal` must turn every
#      .kubeseal.b64 *and* every .mltenant.b64 back into the plaintext;
#   5. run the crypto unit tests, which open the committed vectors with the fixture key.
# Nothing here is needed at test time: the outputs are committed.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODULE=github.com/bitnami-labs/sealed-secrets
KUBESEAL_VERSION=${KUBESEAL_VERSION:-$(cat "$REPO_DIR/tests/fixtures/crypto/kubeseal-version.txt")}
FIX="$REPO_DIR/tests/fixtures/crypto"
REGENERATE_KEY=false

for arg in "$@"; do
  case "$arg" in
    --regenerate-key) REGENERATE_KEY=true ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done

need go
need cargo
need python3 python3

if [ "$KUBESEAL_VERSION" = latest ]; then
  KUBESEAL_VERSION=$(cd "$(mktemp -d)" && GOTOOLCHAIN=local go list -m -f '{{.Version}}' "$MODULE@latest")
  log "newest kubeseal on the module proxy: $KUBESEAL_VERSION"
fi

KUBESEAL=$(KUBESEAL_VERSION=$KUBESEAL_VERSION "$HACK_DIR/build-kubeseal.sh")
log "$("$KUBESEAL" --version)"

# kubeseal must never talk to a cluster here.
export KUBECONFIG=/dev/null

cargo_test() { (cd "$REPO_DIR" && cargo test --quiet --lib "$@"); }
(cd "$REPO_DIR" && cargo build --quiet --bin mltenant)
MLTENANT=$REPO_DIR/target/debug/mltenant

mkdir -p "$FIX"
if $REGENERATE_KEY || [ ! -f "$FIX/sealing-key.crt" ]; then
  # A TEST-ONLY key, made by openssl (PKCS#8), so loading it also checks interoperability.
  log "new fixture key (TEST ONLY); update FIXTURE_FINGERPRINT in src/crypto/tests.rs"
  openssl req -x509 -newkey rsa:4096 -nodes -days 36500 -subj "/CN=mltenant-operator test fixture (TEST ONLY)" \
    -keyout "$FIX/sealing-key.key" -out "$FIX/sealing-key.crt" 2>/dev/null
fi

# Plaintexts, one per vector in vectors.txt.
printf '%s' 'AKIAIOSFODNN7EXAMPLE' >"$FIX/cluster.plain"
head -c 20000 < <(yes 'mltenant-operator kubeseal vector 0123456789') >"$FIX/large.plain"
printf '%s' '{"auths":{"ghcr.io":{"auth":"Z2hjcjp0b2tlbg=="}}}' >"$FIX/tenant.plain"
# shellcheck disable=SC2059 # the format is the octal escape of byte i, on purpose
for i in $(seq 0 255); do printf "\\$(printf '%03o' "$i")"; done >"$FIX/binary.plain"
printf 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n' >"$FIX/environment.plain"
: >"$FIX/empty.plain"

vectors() { grep -v -e '^#' -e '^[[:space:]]*$' "$FIX/vectors.txt"; }

log "sealing with kubeseal --raw"
while read -r name scope tenant environment; do
  [ -f "$FIX/$name.plain" ] || die "no plaintext for vector $name"
  case "$scope" in
    Cluster) args=(--scope cluster-wide) ;;
    Tenant) args=(--scope namespace-wide --namespace "$tenant") ;;
    Environment) args=(--scope strict --namespace "$tenant" --name "$environment") ;;
    *) die "vector $name: unknown scope $scope" ;;
  esac
  { "$KUBESEAL" --raw --cert "$FIX/sealing-key.crt" --from-file="$FIX/$name.plain" "${args[@]}"; echo; } \
    >"$FIX/$name.kubeseal.b64"
done < <(vectors)

log "sealing with mltenant seal"
while read -r name scope tenant environment; do
  args=(--scope "$scope")
  [ "$tenant" = - ] || args+=(--tenant "$tenant")
  [ "$environment" = - ] || args+=(--environment "$environment")
  [ "$scope" = Cluster ] && args+=(--tenant-selector '')
  "$MLTENANT" seal --format kubeseal --name "$name" "${args[@]}" --from-file "v=$FIX/$name.plain" --cert "$FIX/sealing-key.crt" \
    | sed -n 's/^    v: //p' >"$FIX/$name.mltenant.b64"
  [ -s "$FIX/$name.mltenant.b64" ] || die "mltenant seal produced nothing for vector $name"
done < <(vectors)

# Reverse direction and self-check: kubeseal's own decryption (--recovery-unseal with the
# private key) must give back every plaintext, for its own output and for ours.
log "opening both with kubeseal --recovery-unseal"
unseal_check() { # name scope tenant environment producer
  local name=$1 scope=$2 tenant=$3 environment=$4 producer=$5 ns name_meta annotation got want
  ns=$([ "$tenant" = - ] && echo default || echo "$tenant")
  name_meta=$([ "$environment" = - ] && echo vector || echo "$environment")
  case "$scope" in
    Cluster) annotation='sealedsecrets.bitnami.com/cluster-wide: "true"' ;;
    Tenant) annotation='sealedsecrets.bitnami.com/namespace-wide: "true"' ;;
    Environment) annotation='mltenant.io/scope: strict' ;;
  esac
  got=$(cat <<EOF | "$KUBESEAL" --recovery-unseal --recovery-private-key "$FIX/sealing-key.key" -o json \
    | python3 -c 'import json,sys; print((json.load(sys.stdin).get("data") or {}).get("value") or "")'
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata:
  name: $name_meta
  namespace: $ns
  annotations:
    $annotation
spec:
  template:
    metadata:
      name: $name_meta
      namespace: $ns
  encryptedData:
    value: $(tr -d '\n' <"$FIX/$name.$producer.b64")
EOF
  ) || die "kubeseal could not open $name.$producer.b64"
  want=$(base64 -w0 <"$FIX/$name.plain")
  [ "$got" = "$want" ] || die "kubeseal opened $name.$producer.b64 to different bytes"
  echo "   ok  $name ($scope) from $producer" >&2
}
while read -r name scope tenant environment; do
  unseal_check "$name" "$scope" "$tenant" "$environment" kubeseal
  unseal_check "$name" "$scope" "$tenant" "$environment" mltenant
done < <(vectors)

echo "$KUBESEAL_VERSION" >"$FIX/kubeseal-version.txt"

log "crypto unit tests (open the committed vectors)"
cargo_test crypto >&2
log "done: tests/fixtures/crypto is up to date (kubeseal $KUBESEAL_VERSION); commit it"
