#!/usr/bin/env bash
# Lints the scripts beside the Rust code (part of `make lint`): shellcheck on every shell script
# the repository tracks (settings in hack/.shellcheckrc), ruff on every Python one (its default
# rules at the pinned version, settings in ruff.toml). shellcheck comes from Debian's package;
# ruff, pinned, is installed once from PyPI into a virtual environment in the cache.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUFF_VERSION=0.17.6

need shellcheck shellcheck
need python3 python3
ruff_env=$CACHE_DIR/ruff-$RUFF_VERSION
if [ ! -x "$ruff_env/bin/ruff" ]; then
  log "installing ruff $RUFF_VERSION (once, into $ruff_env)"
  rm -rf "$ruff_env"
  python3 -m venv "$ruff_env" >/dev/null 2>&1 || die "python3 -m venv failed (Debian package: python3-venv)"
  "$ruff_env/bin/pip" install --quiet --disable-pip-version-check "ruff==$RUFF_VERSION" >&2 \
    || die "pip install ruff==$RUFF_VERSION failed"
fi

cd "$REPO_DIR"
mapfile -t shell < <(git ls-files -- '*.sh' .ci/run)
shellcheck "${shell[@]}"
mapfile -t python < <(git ls-files -- '*.py')
"$ruff_env/bin/ruff" check --quiet "${python[@]}"
log "shellcheck (${#shell[@]} scripts) and ruff (${#python[@]} files) clean"
