# shellcheck shell=bash
# Shared helpers for the hack/ scripts. Sourced, not executed.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
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

# python_venv PACKAGE VERSION READY: a virtual environment in the cache holding PACKAGE==VERSION
# from PyPI (installed once, when its file READY, relative to it, is missing); prints its path.
python_venv() {
  local venv=$CACHE_DIR/$1-$2
  if [ ! -e "$venv/$3" ]; then
    need python3 python3
    log "installing $1 $2 (once, into $venv)"
    rm -rf "$venv"
    python3 -m venv "$venv" >/dev/null 2>&1 || die "python3 -m venv failed (Debian package: python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$1==$2" >&2 || die "pip install $1==$2 failed"
    touch "$venv/.installed"
  fi
  echo "$venv"
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

# go_build DIR PACKAGE OUTPUT LDFLAGS: build Go PACKAGE in module directory DIR, with that
# module's own go.mod and go.sum (GOFLAGS=-mod=readonly), the local Go (GOTOOLCHAIN=local), no
# cgo and no build paths, into OUTPUT: written whole or not at all.
go_build() {
  local dir=$1 package=$2 output=$3 ldflags=$4
  mkdir -p "$(dirname "$output")"
  (cd "$dir" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0 \
    go build -trimpath -ldflags "$ldflags" -o "$output.tmp" "$package") >&2
  mv "$output.tmp" "$output"
}

# module_build MODULE VERSION PACKAGE OUTPUT LDFLAGS: download Go module MODULE at VERSION (into
# the module cache) and build its PACKAGE with go_build into OUTPUT, saying how long it took.
module_build() {
  local module=$1 version=$2 package=$3 output=$4 ldflags=$5 start=$SECONDS src
  log "building $package of $module@$version (once, into $(dirname "$output"))"
  src=$(module_source "$module" "$version")
  go_build "$src" "$package" "$output" "$ldflags"
  log "built $package of $module@$version in $((SECONDS - start))s"
}

# build_sealed_secrets_cmd CMD VERSION CACHE NAME: build ./cmd/CMD of the sealed-secrets Go module
# at VERSION (once, into the tools cache's CACHE-VERSION) and print the binary's path; NAME is
# what the log calls it.
# Built inside the downloaded module source, with the module's own go.sum: `go install
# .../cmd/kubeseal@v0.40.0` fails, since from that release on go.mod declares
# github.com/bitnami/sealed-secrets while the proxy serves it as github.com/bitnami-labs/...
build_sealed_secrets_cmd() {
  local cmd=$1 version=$2 dir=$CACHE_DIR/tools/$3-$2 name=$4
  need go golang-go
  if [ ! -x "$dir/$cmd" ]; then
    log "$name $version: a minute or two"
    module_build github.com/bitnami-labs/sealed-secrets "$version" "./cmd/$cmd" "$dir/$cmd" "-X main.VERSION=$version"
  fi
  echo "$dir/$cmd"
}

# The Debian prometheus package whose promtool and server the tests and the demo run: bookworm's,
# with its security update (what this project's machines' apt offers). Pinned, so that a new
# package is a deliberate change (the alert and dashboard tests run against it, README names it),
# never whatever apt offers that day.
PROMETHEUS_DEB_VERSION=2.42.0+ds-5+deb12u1

# prometheus_package_dir: extract (once, cached by version) the binaries of Debian's prometheus
# package at PROMETHEUS_DEB_VERSION, promtool and the prometheus server, without installing the
# package or starting its service; prints the directory holding both (and a `version` file).
# Dies, saying which version apt offers, when apt does not offer the pinned one.
prometheus_package_dir() {
  local version=$PROMETHEUS_DEB_VERSION dir offered tmp
  dir=$CACHE_DIR/tools/prometheus-${version//[^A-Za-z0-9._-]/_}
  if [ -x "$dir/prometheus" ] && [ -x "$dir/promtool" ] && [ "$(cat "$dir/version" 2>/dev/null)" = "$version" ]; then
    echo "$dir"
    return 0
  fi
  need apt-get
  need dpkg-deb
  offered=$(apt-cache madison prometheus 2>/dev/null | awk -F' [|] ' '{print $2}')
  if [ -z "$offered" ]; then
    apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed (needed to find the prometheus package)"
    offered=$(apt-cache madison prometheus 2>/dev/null | awk -F' [|] ' '{print $2}')
  fi
  grep -qxF "$version" <<<"$offered" \
    || die "Debian package prometheus $version is pinned (PROMETHEUS_DEB_VERSION in hack/lib.sh), but apt offers: $(paste -sd ' ' <<<"${offered:-nothing}"). Pin the offered version there (and in docs/development.md) after running the monitoring tests with it."
  log "extracting prometheus and promtool from Debian's prometheus $version (once)"
  tmp=$(mktemp -d)
  chmod 777 "$tmp"  # apt's download sandbox user must be able to write here
  (cd "$tmp" && apt-get download -qq "prometheus=$version" >/dev/null 2>&1) || die "apt-get download prometheus=$version failed"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$dir"
  mv "$tmp/x/usr/bin/promtool" "$tmp/x/usr/bin/prometheus" "$dir/"
  echo "$version" >"$dir/version"
  rm -rf "$tmp"
  echo "$dir"
}

# write_env FILE NAME=VALUE...: the env.sh that tests and shells source: each NAME exported with
# its VALUE, and $BIN first on PATH.
write_env() {
  local file=$1 pair
  shift
  {
    for pair in "$@"; do printf 'export %s=%q\n' "${pair%%=*}" "${pair#*=}"; done
    printf 'export PATH=%q:%s\n' "$BIN" "\$PATH"
  } >"$file"
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
  await_http "$OPERATOR_URL/readyz" "$OPERATOR_PID" "$logfile" "the operator" 60
}

# await_http URL PID LOG WHAT SECONDS: return once URL answers; die with LOG's tail if process
# PID exits first or SECONDS pass.
await_http() {
  local url=$1 pid=$2 logfile=$3 what=$4 seconds=$5
  for _ in $(seq $((seconds * 5))); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { tail -20 "$logfile" >&2; die "$what exited"; }
    sleep 0.2
  done
  tail -20 "$logfile" >&2
  die "$what did not answer after ${seconds}s"
}

# oci_build CONTEXT DOCKERFILE REFERENCE ARCHIVE TIMESTAMP [BUILD_ARG...]: build DOCKERFILE
# (steps without RUN: no runtime is needed) on CONTEXT with Debian's buildah, no daemon, in a
# throwaway storage; write the image as an OCI archive naming it REFERENCE; print its manifest
# digest. Every time in it is TIMESTAMP (seconds), so the same inputs give the same digest.
oci_build() {
  local context=$1 dockerfile=$2 reference=$3 archive=$4 timestamp=$5 store args=() digest
  shift 5
  need buildah buildah
  for arg in "$@"; do args+=(--build-arg "$arg"); done
  store=$(mktemp -d)
  local buildah=(buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs)
  if ! "${buildah[@]}" build --quiet --timestamp "$timestamp" --pull=never "${args[@]}" \
    -f "$dockerfile" -t "$reference" "$context" >"$store/build.log" 2>&1 \
    || ! "${buildah[@]}" push --quiet "$reference" "oci-archive:$archive.tmp:$reference" >>"$store/build.log" 2>&1; then
    tail -20 "$store/build.log" >&2
    rm -rf "$store"
    die "buildah could not build $reference from $dockerfile"
  fi
  rm -rf "$store"
  mv "$archive.tmp" "$archive"
  digest=$(tar -xOf "$archive" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["digest"])')
  echo "$digest"
}
