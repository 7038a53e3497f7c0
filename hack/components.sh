# shellcheck shell=bash
# The control plane's components by name: how each one is started, how it is known to be
# ready, how it is stopped. Sourced by hack/controlplane-up.sh (first start) and
# hack/controlplane-component.sh (a fault test killing and restarting one), so a restarted
# component runs with exactly the flags, ports and data directory of the first start.
#
# Everything a command line needs is in $STATE/config.env, written once by controlplane-up.sh;
# $STATE/pids holds "NAME PID" per component (the PID leads the component's process group).
# Requires lib.sh.

COMPONENTS="etcd kube-apiserver kube-controller-manager"

# load_config STATE: set STATE and the variables of $STATE/config.env.
load_config() {
  STATE=$(cd "$1" && pwd)
  [ -f "$STATE/config.env" ] || die "$STATE/config.env not found: start the control plane with hack/controlplane-up.sh"
  # shellcheck disable=SC1091
  source "$STATE/config.env"
}

# write_config STATE NAME...: $STATE/config.env (mode 600) with each variable NAME as it is now:
# what load_config sets again, for a component started later by another script.
write_config() {
  local state=$1 name
  shift
  for name in "$@"; do printf '%s=%q\n' "$name" "${!name}"; done >"$state/config.env"
  chmod 600 "$state/config.env"
}

# component_command NAME: the command line of NAME, one word per line.
component_command() {
  local pki=$STATE/pki
  case $1 in
    etcd) etcd_command local "$ETCD_PORT" "$PEER_PORT" --quota-backend-bytes=2147483648 ;;
    kube-apiserver)
      # The audit webhook backend sends Secret requests to the operator's audit sink (a test
      # starts one on $AUDIT_PORT; see controlplane-up.sh), batched for at most half a second.
      printf '%s\n' "$BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
        --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
        --authorization-mode RBAC \
        --service-account-issuer https://kubernetes.default.svc \
        --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
        --service-cluster-ip-range 10.0.0.0/24 \
        --audit-policy-file "$STATE/audit-policy.yaml" --audit-webhook-config-file "$STATE/audit-webhook.kubeconfig" \
        --audit-webhook-batch-max-wait 500ms \
        --enable-priority-and-fairness="$APF" --profiling="${PROFILING:-false}" --v=1
      ;;
    kube-controller-manager)
      # Only the controllers whose behaviour the operator relies on: namespace deletion,
      # ownerReference cascading, and ClusterRole aggregation (admin and edit read Secrets
      # through it; AccessIsolated's reviews ask the authoriser, which reads the aggregated rules).
      printf '%s\n' "$BIN/kube-controller-manager" \
        --kubeconfig "$STATE/kcm.kubeconfig" --controllers namespace-controller,garbage-collector-controller,clusterrole-aggregation-controller \
        --leader-elect=false --secure-port 0 --use-service-account-credentials=false --v=1
      ;;
    *) die "unknown component '$1' (one of: $COMPONENTS)" ;;
  esac
}

# etcd_command NAME CLIENT_PORT PEER_PORT [FLAG...]: the command line of a one-member etcd on
# loopback with its data in $STATE/etcd, without fsync (a test's data is thrown away), one word
# per line.
etcd_command() {
  local name=$1 client=http://127.0.0.1:$2 peer=http://127.0.0.1:$3
  shift 3
  printf '%s\n' "$BIN/etcd" --name "$name" --data-dir "$STATE/etcd" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$name=$peer" --unsafe-no-fsync "$@" --log-level=warn
}

component_pid() { awk -v n="$1" '$1 == n {print $2}' "$STATE/pids" 2>/dev/null; }
# pid_alive PID: running (a zombie, killed but not yet reaped by whoever inherited it, is not).
pid_alive() {
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
  [ -n "$state" ] && [ "$state" != Z ]
}
component_alive() { local pid; pid=$(component_pid "$1"); [ -n "$pid" ] && pid_alive "$pid"; }

# component_start NAME: run NAME in its own session (so stopping it stops the whole group),
# appending to its log, and record its PID.
component_start() {
  local name=$1 cmd=()
  component_alive "$name" && die "$name is already running (pid $(component_pid "$name"))"
  mapfile -t cmd < <(component_command "$name")
  echo "=== $(date -u +%FT%T.%NZ) starting $name" >>"$STATE/logs/$name.log"
  setsid "${cmd[@]}" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  local pid=$!
  # Replace NAME's line in place: hack/controlplane-down.sh stops in reverse start order.
  touch "$STATE/pids"
  awk -v n="$name" -v p="$pid" '$1 == n {print n, p; found = 1; next} {print} END {if (!found) print n, p}' \
    "$STATE/pids" >"$STATE/pids.new"
  mv "$STATE/pids.new" "$STATE/pids"
}

# component_stop NAME SIGNAL: signal NAME's process group and wait (up to 10s) until it exits.
component_stop() {
  local name=$1 signal=$2 pid
  pid=$(component_pid "$name")
  [ -n "$pid" ] || die "$name was never started"
  echo "=== $(date -u +%FT%T.%NZ) sending SIG$signal to $name" >>"$STATE/logs/$name.log"
  kill "-$signal" -- "-$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  die "$name (pid $pid) did not exit within 10s of SIG$signal"
}

# component_failed NAME: print NAME's log tail and fail.
component_failed() {
  echo "error: $1 failed to start; last lines of $STATE/logs/$1.log:" >&2
  tail -n 25 "$STATE/logs/$1.log" >&2
  exit 1
}

# component_ready_check NAME: succeeds once NAME serves.
component_ready_check() {
  case $1 in
    etcd) curl -fsS "http://127.0.0.1:$ETCD_PORT/health" ;;
    kube-apiserver)
      curl -fsS --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$API_PORT/readyz"
      ;;
    # No serving port (--secure-port 0): running for a second is all there is to see.
    kube-controller-manager) sleep 1 && component_alive kube-controller-manager ;;
  esac
}

# component_wait_ready NAME SECONDS: poll until NAME is ready; fail if it dies or times out.
component_wait_ready() {
  local name=$1 secs=$2
  for _ in $(seq $((secs * 5))); do
    component_ready_check "$name" >/dev/null 2>&1 && return 0
    component_alive "$name" || component_failed "$name"
    sleep 0.2
  done
  echo "error: $name not ready after ${secs}s" >&2
  component_failed "$name"
}
