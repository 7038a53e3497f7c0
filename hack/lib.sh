# Shared helpers for the hack/ scripts. Sourced, not executed.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$HACK_DIR/.." && pwd)
CACHE_DIR=${MLTENANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mltenant}

die() { echo "error: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

# need CMD PACKAGE: make sure CMD exists, installing the Debian PACKAGE when we can.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ -n "${2:-}" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing $2 (for $1)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; } >/dev/null 2>&1 \
      || die "missing '$1': 'apt-get install $2' failed"
    command -v "$1" >/dev/null 2>&1 && return 0
  fi
  die "missing '$1'${2:+ (Debian package: $2)}"
}

# The pinned control-plane versions come from hack/controlplane/go.mod (one source of truth).
module_version() {
  (cd "$HACK_DIR/controlplane" && GOTOOLCHAIN=local go list -m -f '{{.Version}}' "$1")
}

# module_source MODULE VERSION: download a Go module (once, into the module cache) and print the
# directory of its source; tools are built inside it, with the module's own go.sum.
module_source() {
  local dir
  dir=$(cd "$(mktemp -d)" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "$1@$2" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || die "could not download $1@$2"
  echo "$dir"
}

# prometheus_package_dir: extract (once, cached by version) the binaries of Debian's prometheus
# package, promtool and the prometheus server, without installing the package or starting its
# service; prints the directory holding both.
prometheus_package_dir() {
  need apt-get
  need dpkg-deb
  local version dir tmp
  version=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed (needed to find the prometheus package)"
    version=$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')
  fi
  [ -n "$version" ] && [ "$version" != "(none)" ] || die "Debian package prometheus not found"
  dir=$CACHE_DIR/tools/prometheus-${version//[^A-Za-z0-9._-]/_}
  if [ ! -x "$dir/prometheus" ] || [ ! -x "$dir/promtool" ]; then
    log "extracting prometheus and promtool from Debian's prometheus $version (once)"
    tmp=$(mktemp -d)
    chmod 777 "$tmp"  # apt's download sandbox user must be able to write here
    (cd "$tmp" && apt-get download -qq "prometheus=$version" >/dev/null 2>&1) || die "apt-get download prometheus failed"
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
    mkdir -p "$dir"
    mv "$tmp/x/usr/bin/promtool" "$tmp/x/usr/bin/prometheus" "$dir/"
    echo "$version" >"$dir/version"
    rm -rf "$tmp"
  fi
  echo "$dir"
}

# free_port: a free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_operator BINARY LOG [ARGS...]: run `BINARY controller ARGS` in the background as the
# operator's identity (env.sh sourced) on a free port, logging to LOG. Returns once /readyz
# answers, with OPERATOR_PID and OPERATOR_URL set; dies with the log's tail otherwise.
start_operator() {
  local bin=$1 logfile=$2 port
  shift 2
  port=$(free_port)
  KUBECONFIG=$MLTENANT_TEST_OPERATOR_KUBECONFIG "$bin" controller --http-addr "127.0.0.1:$port" "$@" >"$logfile" 2>&1 &
  OPERATOR_PID=$!
  OPERATOR_URL=http://127.0.0.1:$port
  for _ in $(seq 300); do
    curl -fsS "$OPERATOR_URL/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$OPERATOR_PID" 2>/dev/null || { tail -20 "$logfile" >&2; die "the operator exited"; }
    sleep 0.2
  done
  tail -20 "$logfile" >&2
  die "the operator was not ready after 60s"
}
