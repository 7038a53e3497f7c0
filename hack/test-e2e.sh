#!/usr/bin/env bash
# `make e2e`: the operator as users run it. Builds (or takes from the cache) the control plane,
# the node (kubelet, kube-proxy, kube-scheduler, the pause image), Argo CD, helm, Prometheus and
# the operator image, then creates a network namespace and runs the whole cluster inside it
# (hack/e2e-cluster.sh): the node's address, the pod network and the Service network exist
# only there; the machine's own namespace sees nothing of it. The tests (tests/e2e/) run in it
# too, in two phases: everything but `finale::`, then `finale::` (helm uninstall, and the
# operator-down alert, which needs the pods gone for 5 minutes).
#
# Whatever happens, everything started is stopped and removed again: processes (the network
# namespace's and the pods' cgroup tree's), the network namespace (with its bridge, veths and
# iptables chains), the cgroups, and the host sysctls kubelet rewrites; then that is checked.
# The components' logs stay in target/e2e/logs and are printed when a test fails.
#
#   hack/test-e2e.sh [cargo test filter]      (one run at a time per machine: a lock waits)
#
# MLTENANT_E2E_COMMAND='sleep 3600' runs that instead of the tests, to look at the cluster from
# another shell: nsenter --net=/run/netns/mltenant-e2e-PID --mount=/proc/CLUSTER_PID/ns/mnt, then
# source target/e2e/env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || die "the e2e tier runs a node (network namespace, cgroups, mounts): run it as root"
need flock util-linux
# One run per machine (whatever its cache directory): the host sysctls and the cgroup
# hierarchy are the machine's. Each run keeps a record here of what it changes on the host,
# so that the next run can undo what a killed one left (/run outlives a killed run, and on
# some machines even a restart of everything but the kernel, whose sysctls stay too).
RUNS=/run/mltenant-e2e
mkdir -p "$RUNS"
exec 9>"$RUNS/lock"
flock -n 9 || { log "another e2e run holds $RUNS/lock: waiting"; flock 9; }

# --- The tier's network namespace, cgroup root and private directories. ---
run=$$
RUN=mltenant-e2e-$run
NETNS=$RUN
CGROUP_ROOT=$RUN
STATE=$REPO_DIR/target/e2e
# Node address, pod and Service networks: they exist only inside $NETNS.
NODE_IP=10.201.0.2 POD_CIDR=10.244.0.0/24 SERVICE_CIDR=10.0.0.0/24
# Directories that containerd, CNI and kubelet use whatever their configuration; inside the
# cluster's mount namespace each is a tmpfs of its own (created here first when missing).
# /run/secrets holds the in-cluster credentials of Argo CD's application controller, a process
# here, as a pod would have them.
PRIVATE_DIRS="/run/netns /run/containerd /var/lib/cni /var/log/pods /var/log/containers /run/secrets"
# The host sysctls kubelet sets (setupKernelTunables); those under net/ belong to the namespace.
SYSCTLS="vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes"

cgroup_dirs() { for h in /sys/fs/cgroup/*/; do [ -d "$h$1" ] && echo "$h$1"; done; true; }
# leftover_pids RUN: every process run RUN left: the pods' (in its cgroup tree), the
# components' and the containerd shims' (in its network namespace).
leftover_pids() {
  local dir
  for dir in $(cgroup_dirs "$1"); do find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null; done
  [ -e "/run/netns/$1" ] && ip netns pids "$1" 2>/dev/null
  true
}

# remove_run RUN: stop and remove everything of run RUN (this one, or one that was killed):
# its processes, cgroups and network namespace (with its bridge, veths and iptables chains);
# the host sysctls and directories as its record ($RUNS/RUN.record) says they were. What could
# not be undone is appended to the array `problems`.
remove_run() {
  local name=$1 record=$RUNS/$1.record pids signal dir key value
  for signal in TERM KILL KILL KILL; do
    pids=$(leftover_pids "$name" | sort -u)
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill "-$signal" $pids 2>/dev/null || true
    for _ in $(seq 25); do [ -z "$(leftover_pids "$name")" ] && break; sleep 0.2; done
  done
  [ -z "$(leftover_pids "$name")" ] || problems+=("$name: processes still running: $(leftover_pids "$name" | sort -u | paste -sd ' ')")
  # Deepest first: a cgroup goes once its children have.
  for dir in $(cgroup_dirs "$name"); do find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  [ -z "$(cgroup_dirs "$name")" ] || problems+=("$name: cgroups left: $(cgroup_dirs "$name" | paste -sd ' ')")
  ip netns del "$name" 2>/dev/null || true
  ! ip netns list | grep -qw "$name" || problems+=("network namespace $name left")
  if [ -f "$record" ]; then
    while read -r key value; do
      case $key in
        sysctl)
          read -r key value <<<"$value"
          [ "$(cat "/proc/sys/$key")" = "$value" ] || echo "$value" >"/proc/sys/$key"
          [ "$(cat "/proc/sys/$key")" = "$value" ] || problems+=("$name: sysctl $key not restored to $value")
          ;;
        dir) rmdir "$value" 2>/dev/null || true ;;
      esac
    done <"$record"
  else
    # A run of a version of this script that kept no record.
    log "warning: $name kept no record of the host sysctls it found: check ${SYSCTLS// /, } by hand"
  fi
  [ ${#problems[@]} -gt 0 ] || rm -f "$record"
}

# What killed runs left (they cannot have cleaned up): their records, network namespaces and
# cgroups. This run holds the lock, so none of them is running.
problems=()
for name in $({
  for record in "$RUNS"/mltenant-e2e-*.record; do [ -f "$record" ] && basename "$record" .record; done
  ip netns list | grep -o '^mltenant-e2e-[0-9]*'
  for dir in /sys/fs/cgroup/*/mltenant-e2e-*; do [ -d "$dir" ] && basename "$dir"; done
  true
} | sort -u); do
  log "removing what run $name left (it was killed before its cleanup)"
  remove_run "$name"
done
[ ${#problems[@]} = 0 ] || die "cleaning up after killed runs: $(printf '\n  %s' "${problems[@]}")"

tier_start=$SECONDS
"$HACK_DIR/e2e-packages.sh"
phase() { log "$1 ($((SECONDS - tier_start))s)"; }
BIN=$("$HACK_DIR/build-controlplane.sh")
NODE_BIN=$("$HACK_DIR/build-node.sh")
ARGOCD_DIR=$("$HACK_DIR/build-argocd.sh")
MLTENANT_TEST_HELM=$("$HACK_DIR/build-helm.sh")
# Prometheus 2.42 as Debian packages it, but from its Go module: Debian leaves out the
# Kubernetes service discovery (hack/build-prometheus.sh).
MLTENANT_TEST_PROMETHEUS=$("$HACK_DIR/build-prometheus.sh")
phase "tools built"
"$HACK_DIR/test-image.sh"
IMAGE_ARCHIVE=$REPO_DIR/target/image/mltenant-operator.oci.tar
IMAGE_REFERENCE=$(cat "$REPO_DIR/target/image/reference")
IMAGE_DIGEST=$(cat "$REPO_DIR/target/image/digest")
phase "image built and checked"
# The tests are built here: inside the namespace there is no registry to reach.
(cd "$REPO_DIR" && cargo test --locked --test e2e --no-run 2>&1 | grep -v '^ *\(Compiling\|Blocking\)' >&2)
phase "tests built"

# Every component's version, as it reports it.
first_line() { "$@" 2>&1 | head -1; }
log "versions:
    kube-apiserver $(first_line "$BIN/kube-apiserver" --version), etcd $(first_line "$BIN/etcd" --version)
    kubelet $(first_line "$NODE_BIN/kubelet" --version), kube-proxy $(first_line "$NODE_BIN/kube-proxy" --version), kube-scheduler $(first_line "$NODE_BIN/kube-scheduler" --version)
    $(first_line containerd --version); $(first_line runc --version); containernetworking-plugins $(dpkg-query -W -f '${Version}' containernetworking-plugins); $(first_line iptables --version)
    pause image $(cat "$NODE_BIN/pause.image") $(cat "$NODE_BIN/pause.digest")
    $(first_line redis-server --version)
    Argo CD $(first_line "$ARGOCD_DIR/argocd" version --client --short)
    helm $(first_line "$MLTENANT_TEST_HELM" version --short), $(first_line "$MLTENANT_TEST_PROMETHEUS" --version)
    $(first_line buildah --version), $(first_line git --version)
    operator image $IMAGE_REFERENCE $IMAGE_DIGEST"

cleanup() {
  local status=$? problems=()
  trap - EXIT INT TERM
  remove_run "$RUN"
  ! grep -qF "$STATE" /proc/self/mountinfo || problems+=("mounts left under $STATE")
  # The logs stay; what the cluster stored (images, etcd) goes.
  rm -rf "$STATE/containerd" "$STATE/etcd" "$STATE/kubelet/root" "$STATE/argocd" 2>/dev/null || true
  if [ ${#problems[@]} -gt 0 ]; then
    printf 'error: cleanup: %s\n' "${problems[@]}" >&2
    [ "$status" = 0 ] && status=1
  else
    log "cleaned up: no process, cgroup, mount or network namespace left; host sysctls as they were"
  fi
  if [ "$status" != 0 ]; then
    for file in "$STATE"/logs/*.log; do
      [ -f "$file" ] || continue
      echo "--- $(basename "$file") (last 15 lines; the whole log is $file):" >&2
      tail -15 "$file" >&2
    done
  fi
  log "e2e tier: $([ "$status" = 0 ] && echo passed || echo FAILED) in $((SECONDS - tier_start))s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# This run's record, written before anything is changed: the host sysctls kubelet will set, as
# they are now, and the directories this run creates.
record=$RUNS/$RUN.record
{
  for s in $SYSCTLS; do echo "sysctl $s $(cat "/proc/sys/$s")"; done
  for dir in $PRIVATE_DIRS; do [ -d "$dir" ] || echo "dir $dir"; done
} >"$record"
for dir in $PRIVATE_DIRS; do mkdir -p "$dir"; done

rm -rf "$STATE"
mkdir -p "$STATE/logs"
ip netns add "$NETNS"
for h in /sys/fs/cgroup/*/; do
  mkdir "$h$CGROUP_ROOT"
  # cpuset cgroups start empty: a task can join one only once it has CPUs and memory nodes.
  if [ -f "$h$CGROUP_ROOT/cpuset.cpus" ]; then
    cat "${h}cpuset.cpus" >"$h$CGROUP_ROOT/cpuset.cpus"
    cat "${h}cpuset.mems" >"$h$CGROUP_ROOT/cpuset.mems"
  fi
done

export BIN NODE_BIN ARGOCD_DIR NODE_IP POD_CIDR SERVICE_CIDR CGROUP_ROOT IMAGE_ARCHIVE IMAGE_REFERENCE \
  IMAGE_DIGEST PRIVATE_DIRS MLTENANT_TEST_HELM MLTENANT_TEST_PROMETHEUS
export MLTENANT_E2E_IMAGE=$IMAGE_REFERENCE MLTENANT_E2E_ARGOCD_DIR=$ARGOCD_DIR
threads=${TEST_THREADS:-4}
if [ -n "${MLTENANT_E2E_COMMAND:-}" ]; then
  tests=(bash -c "$MLTENANT_E2E_COMMAND")
elif [ $# -gt 0 ]; then
  tests=(cargo test --frozen --test e2e -- --show-output --test-threads "$threads" "$@")
else
  tests=(bash -c "cargo test --frozen --test e2e -- --show-output --skip finale:: --test-threads $threads \
    && cargo test --frozen --test e2e finale:: -- --show-output")
fi
phase "starting the cluster in network namespace $NETNS"
cd "$REPO_DIR"
# Without the lock's descriptor: were this script killed, what the cluster leaves running must
# not hold the lock (the next run removes it). Waited for in the background, so that a SIGTERM
# reaches the cleanup at once (bash runs a trap only once its foreground command has ended).
nsenter "--net=/run/netns/$NETNS" -- unshare --mount --propagation private -- \
  "$HACK_DIR/e2e-cluster.sh" "$STATE" "${tests[@]}" 9>&- &
wait $!
