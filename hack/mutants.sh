#!/usr/bin/env bash
# Mutation testing of the pure modules (`make mutants`, not part of `make test`: it builds the
# crate once per mutant, hours on 2 cores): cargo-mutants (pinned, installed once into the
# cache) changes one thing at a time in src/api, src/unseal, src/crypto, the decide / desired /
# build functions of src/reconcile/tenant and its undone.rs, and runs the unit tests alone
# (`cargo test --lib`) against each change. A mutant the tests do not notice is "missed".
#   MUTANTS_SHARD=0/8 hack/mutants.sh   # one shard of eight (round-robin: a sample of each module)
# Results: target/mutants/mutants.out/ (outcomes.json, missed.txt, ...),
# and a table of caught / missed / unviable / timeout per part, printed at the end.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MUTANTS_VERSION=27.1.0
root=$CACHE_DIR/cargo-mutants-$MUTANTS_VERSION
if [ ! -x "$root/bin/cargo-mutants" ]; then
  log "installing cargo-mutants $MUTANTS_VERSION (once; takes a few minutes)"
  cargo install --locked --quiet "cargo-mutants@$MUTANTS_VERSION" --root "$root" >&2
fi
shard=()
[ -n "${MUTANTS_SHARD:-}" ] && shard=(--shard "$MUTANTS_SHARD" --sharding round-robin)
out=$REPO_DIR/target/mutants
mkdir -p "$out"

status=0
# One run (one copy of the tree, one baseline build): every mutant of the three modules, and
# those of the decide / desired / build functions and of undone.rs in the tenant controller.
# Without debug info each mutant's build is faster, and nothing here needs a debugger.
CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0 nice -n 10 "$root/bin/cargo-mutants" mutants --dir "$REPO_DIR" --output "$out" "${shard[@]}" \
  --cargo-test-arg=--lib --timeout-multiplier 3 \
  -f 'src/api/**' -f 'src/unseal/**' -f 'src/crypto/**' -f 'src/reconcile/tenant/**' \
  -F '^src/(api|unseal|crypto)/' -F '^src/reconcile/tenant/.*\b(decide|desired|build|build_worked)\b' \
  -F '^src/reconcile/tenant/undone\.rs' || status=$?
# 2: some mutants were missed, 3: some timed out; the table below reports both.
[ "$status" -eq 0 ] || [ "$status" -eq 2 ] || [ "$status" -eq 3 ] || die "cargo-mutants failed ($status)"

python3 - "$out" <<'PY'
import json, sys, collections
out = sys.argv[1]
table = collections.OrderedDict()
with open(f"{out}/mutants.out/outcomes.json") as f:
    outcomes = json.load(f)["outcomes"]
names = {"CaughtMutant": "caught", "MissedMutant": "missed", "Unviable": "unviable", "Timeout": "timeout"}
for o in outcomes:
    scenario = o["scenario"]
    if scenario == "Baseline":
        continue
    path = scenario["Mutant"]["file"]
    part = "/".join(path.split("/")[:3 if path.startswith("src/reconcile/") else 2])
    table.setdefault(part, collections.Counter())[names.get(o["summary"], o["summary"])] += 1
print("| part | caught | missed | unviable | timeout | caught of viable |")
print("|---|---|---|---|---|---|")
for part, c in table.items():
    viable = c["caught"] + c["missed"] + c["timeout"]
    share = f"{100 * c['caught'] / viable:.1f}%" if viable else "-"
    print(f"| {part} | {c['caught']} | {c['missed']} | {c['unviable']} | {c['timeout']} | {share} |")
PY
