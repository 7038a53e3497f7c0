#!/usr/bin/env bash
# Makes sure the tools `make test` needs are present: rustfmt and clippy (rustup components),
# cargo-deny (built once from crates.io into ~/.cargo/bin), Go >= 1.24 for the control plane.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need cargo
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  command -v rustup >/dev/null || die "cargo fmt/clippy missing and no rustup to install them"
  rustup component add rustfmt clippy >&2
fi
if ! cargo deny --version >/dev/null 2>&1; then
  log "installing cargo-deny (once; takes a few minutes)"
  cargo install --locked --quiet cargo-deny@0.18.9 >&2
fi
command -v go >/dev/null || die "missing 'go' (Go >= 1.24 is needed to build the local control plane)"
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "$go_minor" -ge 24 ] || die "Go $(go env GOVERSION) is too old: the control plane needs Go >= 1.24"
