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
