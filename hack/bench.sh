#!/usr/bin/env bash
# `make bench`: the operator against the limit of this machine and against the peer, in one run
# on one local control plane. BENCH_TENANTS (default 1000) three-environment tenants (dev,
# staging, production), each with two secrets: its own Tenant-scope ml-platform bundle of 9
# values and one Cluster-scope ghcr bundle shared by the fleet, read by one ServiceAccount
# (so 3 namespaces, 6 Secrets, 3 Roles and 3 RoleBindings per tenant).
#
# Scenarios (BENCH_SCENARIOS, comma-separated; default all, in this order):
#   decrypt         one RSA-4096 OAEP decryption's time (cargo bench --bench decrypt): the RSA floor
#   floor           the raw write floor: benches/fleet.rs writes the fleet's objects, built by the
#                   operator's own builders, with concurrent server-side apply and no reads
#   live            the operator running, the manifests applied while it runs
#   profile         (not in the default set) a backlog converge of its own fleet with the operator
#                   under `perf record`: where its CPU goes (hack/bench-profile.py), a flame graph
#                   when inferno is installed (cargo install inferno)
#   heap            (not in the default set) a backlog converge of its own fleet under heaptrack:
#                   what the operator's heap holds at its peak (target/bench/heap.txt)
#   backlog         every MLTenant and SealedBundle present before the operator starts (failover,
#                   upgrade); then, while it runs:
#     resync        one full resync (expect 0 writes, 0 decryptions) and the steady CPU
#     reseal        the shared bundle re-sealed: time until all 3N ghcr Secrets carry it
#     rotation      a new sealing key added: the decryptions it causes
#     failover      the operator stopped on the converged fleet, one Secret deleted meanwhile, a
#                   new one started: time until that Secret is back (the new leader's first
#                   write), RSA operations and decryptions until it is quiet
#   sealed-secrets  the sealed-secrets controller (built from its Go module) on the same values in
#                   the same number of namespaces: defaults (client QPS 5, stopped after
#                   BENCH_SS_DEFAULTS_BUDGET seconds and projected if unfinished), then QPS unlimited
#   unrelated       peak RSS of a restart on the converged fleets without and with
#                   BENCH_UNRELATED_SECRETS (50000) unrelated Secrets, ours and sealed-secrets'
# Each fleet has its own names (floor-*, live-*, backlog-*, ss-*); a fleet that is done is
# released (its Secrets and RBAC deleted, namespaces unlabelled) so the next run's caches do
# not hold it. Timed parts never include kubectl apply of a backlog.
#
# BENCH_OPERATOR_BIN runs that operator binary instead of building the release one.
# BENCH_APISERVER_PROFILE=SECONDS takes a CPU profile of kube-apiserver for that long at the start
# of the write floor and of each converge (its /debug/pprof, turned on for this run) and says
# where the server's time went (hack/bench-apiserver.py; target/bench/run/NAME.apiserver.*).
# Prints one table and writes it as JSON to target/bench/<UTC time>.json and latest.json.
#   BENCH_TENANTS=300 BENCH_SCENARIOS=decrypt,floor,backlog make bench
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${BENCH_TENANTS:-1000}
# The sealed format of the fleets' bundles: v2 (one RSA operation per bundle) or kubeseal (one per
# value), to compare the two on one machine.
FORMAT=${BENCH_FORMAT:-v2}
SCENARIOS=${BENCH_SCENARIOS:-decrypt,floor,live,backlog,resync,reseal,rotation,sealed-secrets,unrelated}
RESYNC=${BENCH_RESYNC:-60s}
TIMEOUT=${BENCH_TIMEOUT:-1800}
SS_DEFAULTS_BUDGET=${BENCH_SS_DEFAULTS_BUDGET:-300}
APISERVER_PROFILE=${BENCH_APISERVER_PROFILE:-}
UNRELATED=${BENCH_UNRELATED_SECRETS:-50000}
CONCURRENCY=${BENCH_FLOOR_CONCURRENCY:-32}
STATE=$REPO_DIR/target/controlplane-bench
OUT=$REPO_DIR/target/bench
RUN=$OUT/run
FLEET_LABEL=bench.mltenant.io/fleet
CHILDREN=app.kubernetes.io/managed-by=mltenant-operator,mltenant.io/tenant

has() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
# resync, reseal and rotation happen on the backlog fleet while the operator runs.
{ has resync || has reseal || has rotation || has failover; } && ! has backlog && SCENARIOS=$SCENARIOS,backlog
need python3 python3
need unshare util-linux
cd "$REPO_DIR"
rm -rf "$RUN"
mkdir -p "$RUN"

now() { date +%s.%N; }
# json_get FILE KEY: one field of a JSON object, as JSON.
json_get() { python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))[sys.argv[2]]))' "$1" "$2"; }
minus() { python3 -c "print(f'{$1 - $2:.3f}')"; }
# save NAME KEY=VALUE...: one scenario's results, as $RUN/NAME.json (numbers stay numbers).
save() {
  local name=$1
  shift
  python3 - "$RUN/$name.json" "$@" <<'PY'
import json, sys
out, pairs = sys.argv[1], sys.argv[2:]
def value(v):
    try:
        return json.loads(v)
    except ValueError:
        return v
data = {}
try:
    data = json.load(open(out))
except FileNotFoundError:
    pass
for pair in pairs:
    k, _, v = pair.partition("=")
    data[k] = value(v)
json.dump(data, open(out, "w"), indent=1)
PY
}
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f\n", ($14 + $15) / hz}' "/proc/$1/stat"; }
peak_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# The control plane's CPU seconds so far, per component: who the machine's time went to.
controlplane_cpu() {
  local name pid
  while read -r name pid; do printf '%s=%s ' "cpu_${name//-/_}" "$(cpu_seconds "$pid")"; done <"$STATE/pids"
}
# The API server's own request counters and latency sums (every client), for per-verb deltas.
apiserver_metrics() {
  kubectl get --raw /metrics | grep -E '^apiserver_request_(total|duration_seconds_(sum|count))\{' >"$1"
}
# profile_apiserver NAME: with BENCH_APISERVER_PROFILE, a CPU profile of kube-apiserver over the
# next that many seconds, taken in the background ($RUN/NAME.apiserver.pprof); summarised by
# profile_summary NAME once the measured part is over.
profiler=
profile_apiserver() {
  [ -n "$APISERVER_PROFILE" ] || return 0
  kubectl get --raw "/debug/pprof/profile?seconds=$APISERVER_PROFILE" >"$RUN/$1.apiserver.pprof" &
  profiler=$!
}
profile_summary() {
  [ -n "$profiler" ] || return 0
  wait "$profiler" || die "$1: the API server's CPU profile failed"
  profiler=
  python3 "$HACK_DIR/bench-apiserver.py" "$RUN/$1.apiserver.pprof" >"$RUN/$1.apiserver.profile.json"
  save "$1" "apiserver_profile=$(cat "$RUN/$1.apiserver.profile.json")"
}
# wait_pid PID SECONDS WHAT [PIDS...]: wait for a background waiter, checking that PIDS stay alive.
wait_pid() {
  local pid=$1 secs=$2 what=$3
  shift 3
  for _ in $(seq $((secs * 5))); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; return; }
    for other in "$@"; do kill -0 "$other" 2>/dev/null || die "$what: process $other exited"; done
    sleep 0.2
  done
  die "$what: not done after ${secs}s"
}
# alive_until DEADLINE PID WHO LATE: one turn of a wait loop; dies saying LATE once SECONDS
# reaches DEADLINE, or that WHO exited if PID is gone.
alive_until() {
  [ $SECONDS -lt "$1" ] || die "$4"
  kill -0 "$2" 2>/dev/null || die "$3 exited"
}
# wait_file FILE SECONDS PID: wait until FILE exists while PID lives.
wait_file() {
  for _ in $(seq $(($2 * 5))); do
    [ -e "$1" ] && return 0
    kill -0 "$3" 2>/dev/null || die "process $3 exited before $1 appeared"
    sleep 0.2
  done
  die "$1 did not appear within $2s"
}

# --- The RSA floor's input: one decryption's time, measured now on this machine. ---
if has decrypt; then
  log "decrypt: one RSA-4096 OAEP decryption (cargo bench --bench decrypt)"
  line=$(cargo bench --locked --bench decrypt 2>/dev/null | grep '^decrypt:')
  echo "$line" >&2
  ms=$(sed -n 's/.*(\([0-9.]*\) ms per value).*/\1/p' <<<"$line")
  save decrypt ms_per_value="$ms" cores="$(nproc)"
fi

log "building the release binary and the bench client"
# The binary the image ships (hack/build-release.sh is the Dockerfile's build step), or
# BENCH_OPERATOR_BIN to compare a variant (an allocator, a flag) against the same floors.
MLTENANT=${BENCH_OPERATOR_BIN:-$("$HACK_DIR/build-release.sh")}
FLEET=$(cargo bench --locked --bench fleet --no-run --message-format json 2>/dev/null \
  | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("target", {}).get("name") == "fleet" and m.get("executable")][-1])')
[ -x "$FLEET" ] || die "could not build benches/fleet.rs"

env_file=$(CONTROLPLANE_PROFILING=$([ -n "$APISERVER_PROFILE" ] && echo true || echo false) "$HACK_DIR/controlplane-up.sh" "$STATE")
op='' ss=''
stop() { # PID: SIGTERM, then wait for it
  [ -n "${1:-}" ] || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
trap 'stop "$op"; stop "$ss"; "$HACK_DIR/controlplane-down.sh" "$STATE"' EXIT
# shellcheck disable=SC1090
source "$env_file"
"$HACK_DIR/install.sh"
API_SERVER=$(sed -n 's/^ *server: //p' "$KUBECONFIG")
save machine tenants="$N" cores="$(nproc)" scenarios="\"$SCENARIOS\"" \
  cpu="\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)\"" date="\"$(date -u +%FT%TZ)\""

export RUST_LOG=warn
metric() { # NAME [LABEL-FILTER]: sum of the operator's matching samples
  curl -fsS "$OPERATOR_URL/metrics" | awk -v n="$1" -v f="${2:-}" '($1 == n || index($1, n"{") == 1) && index($1, f) {s += $2} END {printf "%d\n", s}'
}
writes() { echo $(( $(metric mltenant_kube_requests_total POST) + $(metric mltenant_kube_requests_total PATCH) + $(metric mltenant_kube_requests_total PUT) + $(metric mltenant_kube_requests_total DELETE) )); }
# settled WHAT MIN METRIC [LABEL-FILTER]: wait until the operator's ($op) counter METRIC is at
# least MIN and has not moved for 10s; prints it. Dies on timeout or exit.
settled() {
  local what=$1 min=$2 last=-1 still=0 d deadline=$((SECONDS + TIMEOUT))
  shift 2
  while [ $still -lt 5 ] || [ "$last" -lt "$min" ]; do
    alive_until $deadline "$op" "$what: the operator" "$what: $1 not settled at $min or more after ${TIMEOUT}s"
    sleep 2
    d=$(metric "$@")
    if [ "$d" = "$last" ]; then still=$((still + 1)); else still=0 last=$d; fi
  done
  echo "$last"
}
# quiet WHAT: wait until the operator ($op) has used under 5% of a core in each of five 2-second
# windows in a row (a full resync of 1,000 tenants every 60 s averages under 2%). Dies on
# timeout or exit.
quiet() {
  local what=$1 calm=0 c0 c1 deadline=$((SECONDS + TIMEOUT))
  c0=$(cpu_seconds "$op")
  while [ $calm -lt 5 ]; do
    alive_until $deadline "$op" "$what: the operator" "$what: the operator did not go quiet within ${TIMEOUT}s"
    sleep 2
    c1=$(cpu_seconds "$op")
    if python3 -c "import sys; sys.exit(0 if $c1 - $c0 < 0.1 else 1)"; then calm=$((calm + 1)); else calm=0; fi
    c0=$c1
  done
}
reconciles() { metric mltenant_reconcile_total 'controller="tenant",result="success"'; }

# The operator's first start creates its sealing key; every fleet is sealed to it offline.
start_operator "$MLTENANT" "$RUN/operator-first.log"
op=$OPERATOR_PID
curl -fsS "$OPERATOR_URL/v1/cert.pem" >"$RUN/operator.crt"
stop "$op"; op=

# fleet NAME: write the manifests of N tenants NAME-0001... and their bundles to $RUN/NAME/.
fleet() {
  local name=$1 dir=$RUN/$1
  mkdir -p "$dir"
  echo "demo-registry-token" | "$MLTENANT" seal --format "$FORMAT" --name "ghcr-$name" --scope Cluster --tenant-selector '' \
    --docker-server ghcr.io --docker-username bot --docker-password-stdin --cert "$RUN/operator.crt" >"$dir/ghcr-$name.yaml"
  for i in $(seq -f '%04g' 1 "$N"); do
    cat <<T
---
apiVersion: mltenant.io/v1alpha1
kind: MLTenant
metadata: {name: $name-$i, labels: {$FLEET_LABEL: $name}}
spec:
  environments: [{name: dev}, {name: staging}, {name: production}]
  secrets: [{name: ml-platform, bundle: $name-$i-platform}, {name: ghcr, bundle: ghcr-$name}]
  secretReaders: [{serviceAccount: {namespace: argowf, name: argo-workflow}}]
T
  done >"$dir/tenants.yaml"
  # One process per bundle, as a platform engineer would run it; both cores.
  # shellcheck disable=SC2016 # expanded by the inner sh, from its arguments
  seq -f '%04g' 1 "$N" | xargs -P "$(nproc)" -I{} sh -c '"$1" seal --format "$5" --name "$2-{}-platform" --scope Tenant --tenant "$2-{}" \
    --from-env-file examples/credentials/ml-platform.env --cert "$3" >"$4/$2-{}-platform.yaml"' _ "$MLTENANT" "$name" "$RUN/operator.crt" "$dir" "$FORMAT"
}
apply_fleet() { kubectl apply --server-side --field-manager bench -f "$RUN/$1" >/dev/null; }

# converge NAME MODE [BINARY]: the operator's cold converge of fleet NAME, MODE backlog
# (everything applied before it starts; the clock starts when it is started) or live (applied
# while it runs; the clock starts with the apply). Leaves the operator running ($op).
converge() {
  local name=$1 mode=$2 bin=${3:-$MLTENANT} waiter start applied=
  rm -f "$RUN/$name.listed" "$RUN/operator.pid"
  "$FLEET" wait --tenants "$FLEET_LABEL=$name" --tenants-ready "$N" \
    --secrets "$CHILDREN" --secrets-count $((6 * N)) --namespace-prefix "$name-" \
    --ready-file "$RUN/$name.listed" --pid-file "$RUN/operator.pid" --timeout "$TIMEOUT" >"$RUN/$name.wait" &
  waiter=$!
  wait_file "$RUN/$name.listed" 120 "$waiter"
  if [ "$mode" = backlog ]; then
    log "$name: applying $N tenants and $((N + 1)) bundles, then starting the operator"
    apply_fleet "$name"
  fi
  apiserver_metrics "$RUN/$name.apiserver.before"
  # shellcheck disable=SC2046 # key=value words, split on purpose
  save "$name" $(controlplane_cpu | sed 's/=/_before=/g')
  start=$(now)
  [ "$mode" = live ] || profile_apiserver "$name"
  start_operator "$bin" "$RUN/operator-$name.log" --resync-period "$RESYNC"
  op=$OPERATOR_PID
  echo "$op" >"$RUN/operator.pid"
  if [ "$mode" = live ]; then
    log "$name: operator running; applying $N tenants and $((N + 1)) bundles"
    start=$(now)
    profile_apiserver "$name"
    apply_fleet "$name"
    applied=$(minus "$(now)" "$start")
  fi
  wait_pid "$waiter" "$TIMEOUT" "$name converge" "$op"
  local cpu_op peak_converged
  cpu_op=$(cpu_seconds "$op") peak_converged=$(peak_kib "$op")
  # shellcheck disable=SC2046 # key=value words, split on purpose
  save "$name" $(controlplane_cpu | sed 's/=/_after=/g')
  apiserver_metrics "$RUN/$name.apiserver.after"
  profile_summary "$name"
  local tenants_at secrets_at
  tenants_at=$(json_get "$RUN/$name.wait" tenants_ready_at) secrets_at=$(json_get "$RUN/$name.wait" secrets_at)
  # The peak is taken once the operator is quiet: the reconciles its own writes' watch events
  # trigger come after the last Secret (and once raised the peak by 14 MiB). Late status
  # writes still count as the converge's.
  quiet "$name"
  save "$name" mode="\"$mode\"" converge_s="$(python3 -c "print(f'{max($tenants_at, $secrets_at) - $start:.2f}')")" \
    secrets_s="$(minus "$secrets_at" "$start")" ready_s="$(minus "$tenants_at" "$start")" ${applied:+apply_s=$applied} \
    writes="$(writes)" decryptions="$(metric mltenant_decryptions_total)" reconciles="$(reconciles)" \
    rsa_operations="$(metric mltenant_rsa_operations_total)" format="\"$FORMAT\"" \
    cpu_s="$cpu_op" peak_rss_kib="$(peak_kib "$op")" peak_rss_converged_kib="$peak_converged" \
    reconcile_seconds="$(curl -fsS "$OPERATOR_URL/metrics" | awk '/^mltenant_reconcile_duration_seconds_sum\{controller="tenant"\}/ {print $2}')"
  log "$name: converged in $(python3 -c "import json; print(json.load(open('$RUN/$name.json'))['converge_s'])")s"
}

release() { "$FLEET" release --operator-kubeconfig "$MLTENANT_TEST_OPERATOR_KUBECONFIG" "$@"; }

# --- The raw write floor. ---
if has floor; then
  log "floor: sealing and applying $N MLTenants (not their bundles: nothing reconciles them)"
  fleet floor
  kubectl apply --server-side --field-manager bench -f "$RUN/floor/tenants.yaml" >/dev/null
  log "floor: writing the fleet's objects, $CONCURRENCY requests in flight"
  apiserver_metrics "$RUN/floor.apiserver.before"
  # shellcheck disable=SC2046 # key=value words, split on purpose
  save floor $(controlplane_cpu | sed 's/=/_before=/g')
  profile_apiserver floor
  "$FLEET" floor --tenants "$FLEET_LABEL=floor" --manifests "$RUN/floor" --concurrency "$CONCURRENCY" \
    --writer-kubeconfig "$MLTENANT_TEST_OPERATOR_KUBECONFIG" >"$RUN/floor.out"
  # shellcheck disable=SC2046 # key=value words, split on purpose
  save floor $(controlplane_cpu | sed 's/=/_after=/g') \
    $(for k in objects seconds decryptions concurrency; do echo "$k=$(json_get "$RUN/floor.out" $k)"; done)
  apiserver_metrics "$RUN/floor.apiserver.after"
  profile_summary floor
  cat "$RUN/floor.out" >&2
  release --tenants "$FLEET_LABEL=floor"
fi

# --- The operator, manifests applied while it runs. ---
if has live; then
  fleet live
  converge live live
  stop "$op"; op=
  release --tenants "$FLEET_LABEL=live"
fi

# --- Where the operator's CPU goes during a backlog converge (before the backlog fleet, which
# stays for the restarts of `unrelated`, so the profile sees only its own fleet). ---
if has profile; then
  need perf linux-perf
  fleet profile
  # perf runs the operator (so its first instruction is sampled); DWARF call graphs, as the
  # release build keeps symbols but no frame pointers.
  cat >"$RUN/perf-mltenant" <<SH
#!/bin/sh
exec perf record -q -F 199 --call-graph dwarf,16384 -o "$RUN/perf.data" -- "$MLTENANT" "\$@"
SH
  chmod +x "$RUN/perf-mltenant"
  converge profile backlog "$RUN/perf-mltenant"
  # $op is perf: stop the operator under it, then perf writes its data and exits.
  stop "$(cat "/proc/$op/task/$op/children")"
  wait "$op" 2>/dev/null || true
  op=
  perf script -i "$RUN/perf.data" -F comm,tid,period,ip,sym,dso 2>/dev/null >"$RUN/perf.script"
  python3 "$HACK_DIR/bench-profile.py" "$RUN/perf.script" "$RUN/profile.folded" >"$RUN/profile.txt"
  cat "$RUN/profile.txt" >&2
  if command -v inferno-flamegraph >/dev/null; then
    inferno-flamegraph --title "mltenant-operator: backlog converge of $N tenants" <"$RUN/profile.folded" >"$OUT/flamegraph.svg"
    log "flame graph: $OUT/flamegraph.svg"
  fi
  cp "$RUN/profile.txt" "$OUT/profile.txt"
  release --tenants "$FLEET_LABEL=profile"
fi

# --- Where the operator's memory goes at its peak: a backlog converge under heaptrack (Debian's
# heaptrack; not in the default set). ---
if has heap; then
  need heaptrack heaptrack
  fleet heap
  cat >"$RUN/heaptrack-mltenant" <<SH
#!/bin/sh
exec heaptrack -o "$RUN/heaptrack" "$MLTENANT" "\$@"
SH
  chmod +x "$RUN/heaptrack-mltenant"
  converge heap backlog "$RUN/heaptrack-mltenant"
  # $op is heaptrack's script: stop the operator it runs (beside heaptrack's own interpreter).
  stop "$(pgrep -P "$op" -x mltenant)"
  wait "$op" 2>/dev/null || true
  op=
  heaptrack_print --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
    --peak-limit 25 --sub-peak-limit 4 "$RUN"/heaptrack.*[zg][sz]* >"$RUN/heap.txt" 2>/dev/null || true
  grep -E "^PEAK MEMORY|peak memory consumed" "$RUN/heap.txt" >&2 || true
  cp "$RUN/heap.txt" "$OUT/heap.txt"
  release --tenants "$FLEET_LABEL=heap"
fi

# --- The operator started on the whole backlog, then resync, re-seal, rotation. ---
if has backlog; then
  fleet backlog
  converge backlog backlog
  if has resync; then
    log "resync: waiting for every tenant to be reconciled again (resync period $RESYNC)"
    w0=$(writes) d0=$(metric mltenant_decryptions_total) r0=$(reconciles) c0=$(cpu_seconds "$op") t0=$(now)
    resync_s=$(python3 -c "import re; v, u = re.fullmatch(r'(\d+)([smh])', '$RESYNC').groups(); print(int(v) * {'s': 1, 'm': 60, 'h': 3600}[u])")
    deadline=$((SECONDS + resync_s * 3 + 120))
    until [ "$(minus "$(now)" "$t0" | cut -d. -f1)" -ge $((resync_s + 5)) ] && [ "$(reconciles)" -ge $((r0 + N)) ]; do
      alive_until $deadline "$op" "resync: the operator" "resync: fewer than $N reconciles after $((resync_s * 3 + 120))s"
      sleep 2
    done
    window=$(minus "$(now)" "$t0")
    save resync writes=$(( $(writes) - w0 )) decryptions=$(( $(metric mltenant_decryptions_total) - d0 )) \
      reconciles=$(( $(reconciles) - r0 )) window_s="$window" \
      cpu_percent="$(python3 -c "print(f'{100 * ($(cpu_seconds "$op") - $c0) / $window:.2f}')")"
  fi
  if has reseal; then
    log "reseal: re-sealing the shared bundle ghcr-backlog (used in $((3 * N)) namespaces)"
    old=$(kubectl get secret ghcr -n backlog-0001-dev -o jsonpath='{.metadata.annotations.mltenant\.io/source-hash}')
    echo "rotated-registry-token" | "$MLTENANT" seal --merge-into "$RUN/backlog/ghcr-backlog.yaml" \
      --docker-server ghcr.io --docker-username bot --docker-password-stdin --cert "$RUN/operator.crt"
    rm -f "$RUN/reseal.listed"
    "$FLEET" wait --secrets "$CHILDREN" --secret-fields metadata.name=ghcr --namespace-prefix backlog- \
      --annotation-not "mltenant.io/source-hash=$old" --secrets-count $((3 * N)) \
      --ready-file "$RUN/reseal.listed" --pid-file "$RUN/operator.pid" --timeout "$TIMEOUT" >"$RUN/reseal.wait" &
    waiter=$!
    wait_file "$RUN/reseal.listed" 120 "$waiter"
    w0=$(writes) d0=$(metric mltenant_decryptions_total) start=$(now)
    kubectl apply --server-side --field-manager bench -f "$RUN/backlog/ghcr-backlog.yaml" >/dev/null
    wait_pid "$waiter" "$TIMEOUT" reseal "$op"
    sleep 2
    save reseal secrets=$((3 * N)) seconds="$(minus "$(json_get "$RUN/reseal.wait" secrets_at)" "$start")" \
      writes=$(( $(writes) - w0 )) decryptions=$(( $(metric mltenant_decryptions_total) - d0 ))
  fi
  if has rotation; then
    log "rotation: adding a sealing key the way the operator does (a labelled kubernetes.io/tls Secret)"
    openssl req -x509 -newkey rsa:4096 -nodes -days 60 -subj "/CN=mltenant-bench-rotation" \
      -keyout "$RUN/rotation.key" -out "$RUN/rotation.crt" 2>/dev/null
    w0=$(writes) d0=$(metric mltenant_decryptions_total) start=$(now)
    kubectl create secret tls bench-rotation -n mltenant-system --cert "$RUN/rotation.crt" --key "$RUN/rotation.key" \
      --dry-run=client -o yaml \
      | kubectl label --local -f - -o yaml mltenant.io/sealing-key=active app.kubernetes.io/managed-by=mltenant-operator \
      | kubectl apply --server-side --field-manager bench -f - >/dev/null
    rm -f "$RUN/rotation.key"
    # Done when the decryption counter has not moved for 10s.
    last=$(settled rotation 0 mltenant_decryptions_total)
    save rotation decryptions=$((last - d0)) writes=$(( $(writes) - w0 )) \
      quiet_after_s="$(python3 -c "print(f'{$(now) - $start - 10:.1f}')")"
    # Back to one key, so later restarts cost what they cost without the bench's extra key.
    kubectl delete secret bench-rotation -n mltenant-system >/dev/null
  fi
  if has failover; then
    log "failover: the operator stopped on the converged fleet, a Secret deleted, a new operator started"
    stop "$op"; op=
    kubectl delete secret ml-platform -n backlog-0001-dev >/dev/null
    start=$(now)
    start_operator "$MLTENANT" "$RUN/operator-failover.log" --resync-period "$RESYNC"
    op=$OPERATOR_PID
    echo "$op" >"$RUN/operator.pid"
    deadline=$((SECONDS + TIMEOUT))
    until kubectl get secret ml-platform -n backlog-0001-dev >/dev/null 2>&1; do
      alive_until $deadline "$op" "failover: the operator" "failover: the Secret was not written back within ${TIMEOUT}s"
      sleep 0.1
    done
    first_write=$(minus "$(now)" "$start")
    quiet failover
    save failover first_write_s="$first_write" quiet_s="$(minus "$(now)" "$start")" writes="$(writes)" \
      rsa_operations="$(metric mltenant_rsa_operations_total)" decryptions="$(metric mltenant_decryptions_total)" \
      reconciles="$(reconciles)" format="\"$FORMAT\""
  fi
  stop "$op"; op=
fi

# --- The peer: the sealed-secrets controller, in-cluster only. ---
SS_DIR=$RUN/sealed-secrets
if has sealed-secrets || has unrelated; then
  SS_BIN=$("$HACK_DIR/build-sealed-secrets-controller.sh")
  KUBESEAL=$("$HACK_DIR/build-kubeseal.sh")
  ss_src=$(module_source github.com/bitnami-labs/sealed-secrets "$(cat tests/fixtures/crypto/kubeseal-version.txt)")
  kubectl apply --server-side --field-manager bench -f "$ss_src/helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml" >/dev/null
  kubectl wait --for condition=Established --timeout 60s crd/sealedsecrets.bitnami.com >/dev/null
  # What a pod gets mounted at /var/run/secrets/kubernetes.io/serviceaccount. The identity is
  # the admin token: the control plane's identities are a static token file fixed at start.
  mkdir -p "$SS_DIR/run/secrets/kubernetes.io/serviceaccount"
  sa=$SS_DIR/run/secrets/kubernetes.io/serviceaccount
  sed -n 's/^ *token: //p' "$KUBECONFIG" >"$sa/token"
  cp "$STATE/pki/ca.crt" "$sa/ca.crt"
  echo kube-system >"$sa/namespace"
  chmod 600 "$sa/token"
fi
# start_sealed_secrets LOG [ARGS...]: run the controller in a private mount namespace where
# $SS_DIR/run is bind-mounted over /run (/var/run points there), so it finds its service-account
# files and the host is untouched. HTTP and metrics on loopback. Sets SS_PID and SS_METRICS.
start_sealed_secrets() {
  local logfile=$1 port metrics_port
  shift
  port=$(free_port) metrics_port=$(free_port)
  # shellcheck disable=SC2016 # expanded by the inner sh, from its arguments
  KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=${API_SERVER##*:} \
    unshare --mount --propagation private sh -c 'mount --bind "$1" /run && shift && exec "$@"' _ "$SS_DIR/run" \
    "$SS_BIN" --listen-addr "127.0.0.1:$port" --listen-metrics-addr "127.0.0.1:$metrics_port" "$@" >"$logfile" 2>&1 &
  SS_PID=$!
  SS_URL=http://127.0.0.1:$port
  SS_METRICS=http://127.0.0.1:$metrics_port/metrics
  await_http "$SS_URL/healthz" "$SS_PID" "$logfile" "the sealed-secrets controller" 120
}
ss_unsealed() { curl -fsS "$SS_METRICS" | awk '/^sealed_secrets_controller_unseal_requests_total / {print int($2)}'; }

# ss_converge NAME TIMEOUT [ARGS...]: the controller started on every SealedSecret present
# (the same backlog case as ours); how long until all 6N Secrets exist. With a budget, a run that
# does not finish is stopped and its rate projected.
ss_converge() {
  local name=$1 budget=$2 waiter start
  shift 2
  log "sealed-secrets $name: applying $((6 * N)) SealedSecrets in $((3 * N)) namespaces, then starting it $*"
  kubectl apply --server-side --field-manager bench -f "$SS_DIR/manifests" >/dev/null
  rm -f "$RUN/ss-$name.listed" "$RUN/ss.pid"
  "$FLEET" wait --secrets "$FLEET_LABEL=ss" --secrets-count $((6 * N)) --partial --timeout "$budget" \
    --ready-file "$RUN/ss-$name.listed" --pid-file "$RUN/ss.pid" >"$RUN/ss-$name.wait" &
  waiter=$!
  wait_file "$RUN/ss-$name.listed" 120 "$waiter"
  apiserver_metrics "$RUN/ss-$name.apiserver.before"
  # shellcheck disable=SC2046 # key=value words, split on purpose
  save "ss-$name" $(controlplane_cpu | sed 's/=/_before=/g')
  start=$(now)
  start_sealed_secrets "$RUN/sealed-secrets-$name.log" "$@"
  ss=$SS_PID
  echo "$ss" >"$RUN/ss.pid"
  wait_pid "$waiter" $((budget + 60)) "sealed-secrets $name" "$ss"
  local got at timed_out elapsed
  got=$(json_get "$RUN/ss-$name.wait" secrets) timed_out=$(json_get "$RUN/ss-$name.wait" timed_out)
  at=$(json_get "$RUN/ss-$name.wait" secrets_at)
  [ "$at" != null ] || at=$(json_get "$RUN/ss-$name.wait" now)
  elapsed=$(minus "$at" "$start")
  # Unfinished within the budget: the time all 6N would take at the rate it reached.
  # shellcheck disable=SC2046 # key=value words, split on purpose
  save "ss-$name" $(controlplane_cpu | sed 's/=/_after=/g') cpu_s="$(cpu_seconds "$ss")" peak_rss_kib="$(peak_kib "$ss")" \
    unsealed="$(ss_unsealed)" args="\"$*\"" secrets="$got" elapsed_s="$elapsed" finished="$([ "$timed_out" = false ] && echo true || echo false)" \
    converge_s="$(python3 -c "print(round($elapsed * $((6 * N)) / max($got, 1), 1))")"
  apiserver_metrics "$RUN/ss-$name.apiserver.after"
  stop "$ss"; ss=
}

if has sealed-secrets; then
  # First start: it creates its sealing key in kube-system and serves the certificate.
  start_sealed_secrets "$RUN/sealed-secrets-first.log"
  ss=$SS_PID
  curl -fsS "$SS_URL/v1/cert.pem" >"$SS_DIR/cert.pem"
  stop "$ss"; ss=
  log "sealed-secrets: sealing the same values with kubeseal into $((6 * N)) SealedSecrets"
  mkdir -p "$SS_DIR/manifests"
  # The same 9 values and the same dockerconfigjson bytes `mltenant seal` makes, as Secrets
  # labelled for the bench's watch (sealed-secrets copies the template's labels).
  python3 - examples/credentials/ml-platform.env "$SS_DIR" "$FLEET_LABEL" <<'PY'
import base64, json, sys
env, out, label = sys.argv[1:]
data = {}
for line in open(env):
    line = line.strip()
    if line and not line.startswith("#"):
        k, _, v = line.partition("=")
        data[k] = base64.b64encode(v.encode()).decode()
meta = lambda name: {"name": name, "namespace": "NAMESPACE", "labels": {label: "ss"}}
json.dump({"apiVersion": "v1", "kind": "Secret", "metadata": meta("ml-platform"), "data": data}, open(f"{out}/ml-platform.json", "w"))
auth = base64.b64encode(b"bot:demo-registry-token").decode()
config = json.dumps({"auths": {"ghcr.io": {"auth": auth, "password": "demo-registry-token", "username": "bot"}}}, separators=(",", ":"))
ghcr = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson", "metadata": meta("ghcr"),
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}}
json.dump(ghcr, open(f"{out}/ghcr.json", "w"))
PY
  # The shared registry credential: cluster-wide scope, sealed once, copied to every namespace.
  "$KUBESEAL" --cert "$SS_DIR/cert.pem" --scope cluster-wide -o yaml <"$SS_DIR/ghcr.json" >"$SS_DIR/ghcr.yaml"
  rm "$SS_DIR/ghcr.json"
  for i in $(seq -f '%04g' 1 "$N"); do printf '%s\n' "ss-$i-dev" "ss-$i-staging" "ss-$i"; done >"$SS_DIR/namespaces"
  awk '{printf "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", $1}' "$SS_DIR/namespaces" >"$SS_DIR/manifests/0-namespaces.yaml"
  # ml-platform with kubeseal's default (strict) scope: one sealing per namespace, both cores.
  # shellcheck disable=SC2016 # expanded by the inner sh, from its arguments
  xargs -P "$(nproc)" -I{} sh -c 'sed "s/NAMESPACE/{}/" "$2/ml-platform.json" | "$1" --cert "$2/cert.pem" -o yaml >"$2/manifests/{}.yaml" &&
    { echo ---; sed "s/NAMESPACE/{}/" "$2/ghcr.yaml"; } >>"$2/manifests/{}.yaml"' _ "$KUBESEAL" "$SS_DIR" <"$SS_DIR/namespaces"
  rm "$SS_DIR/ml-platform.json"
  kubectl apply --server-side --field-manager bench -f "$SS_DIR/manifests/0-namespaces.yaml" >/dev/null

  ss_converge defaults "$SS_DEFAULTS_BUDGET"
  release --sealed-secrets "$FLEET_LABEL=ss"
  ss_converge unlimited "$TIMEOUT" --kubeclient-qps=-1
fi

# --- Memory with unrelated Secrets in the cluster, ours and the peer's. ---
# idle_restart NAME: restart on the converged fleets, until the start-up work is done; peak RSS.
idle_restart() {
  local name=$1 deadline
  if has backlog; then
    start_operator "$MLTENANT" "$RUN/operator-$name.log"
    op=$OPERATOR_PID
    # A restart decrypts every value again (the cache is in memory); done when all were and the
    # counter has been still for 10s. (Reconciles are no measure: while the caches sync they
    # return early, and count as successes.)
    local last
    last=$(settled "$name" $((9 * N + 1)) mltenant_decryptions_total)
    save "$name" ours_peak_rss_kib="$(peak_kib "$op")" ours_rss_kib="$(rss_kib "$op")" ours_cpu_s="$(cpu_seconds "$op")" ours_decryptions="$last"
    stop "$op"; op=
  fi
  if has sealed-secrets; then
    start_sealed_secrets "$RUN/sealed-secrets-$name.log" --kubeclient-qps=-1
    ss=$SS_PID deadline=$((SECONDS + TIMEOUT))
    until [ "$(ss_unsealed)" -ge $((6 * N)) ]; do
      alive_until $deadline "$ss" "$name: the sealed-secrets controller" \
        "$name: sealed-secrets did not go through its $((6 * N)) SealedSecrets"
      sleep 1
    done
    save "$name" ss_peak_rss_kib="$(peak_kib "$ss")" ss_rss_kib="$(rss_kib "$ss")" ss_cpu_s="$(cpu_seconds "$ss")"
    stop "$ss"; ss=
  fi
}
if has unrelated; then
  log "unrelated: restarts on the converged fleets, without unrelated Secrets"
  idle_restart restart-plain
  log "unrelated: creating $UNRELATED unrelated Secrets"
  "$FLEET" unrelated --count "$UNRELATED" >"$RUN/unrelated.out"
  save restart-unrelated unrelated_secrets="$UNRELATED" create_s="$(json_get "$RUN/unrelated.out" seconds)"
  log "unrelated: restarts on the converged fleets, with $UNRELATED unrelated Secrets"
  idle_restart restart-unrelated
fi

python3 "$HACK_DIR/bench-report.py" "$RUN" "$OUT"
