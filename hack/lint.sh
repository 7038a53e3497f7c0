#!/usr/bin/env bash
# Lints the scripts beside the Rust code (part of `make lint`): shellcheck on every shell script
# the repository tracks (settings in hack/.shellcheckrc), ruff on every Python one (its default
# rules at the pinned version, settings in ruff.toml). shellcheck comes from Debian's package;
# ruff, pinned, is installed once from PyPI into a virtual environment in the cache.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUFF_VERSION=0.17.6

need shellcheck shellcheck
ruff_env=$(python_venv ruff "$RUFF_VERSION" bin/ruff)

cd "$REPO_DIR"
mapfile -t shell < <(git ls-files -- '*.sh' .ci/run)
shellcheck "${shell[@]}"
mapfile -t python < <(git ls-files -- '*.py')
"$ruff_env/bin/ruff" check --quiet "${python[@]}"
log "shellcheck (${#shell[@]} scripts) and ruff (${#python[@]} files) clean"
