#!/usr/bin/env bash
# Tests the Argo CD health checks (argocd/health/*.lua) under Lua 5.1, the dialect of the
# gopher-lua that Argo CD embeds: every fixture argocd/tests/<Kind>/<case>.yaml runs through
# argocd/health/mltenant.io_<Kind>.lua and must give the status and message in
# argocd/tests/<Kind>/expected.yaml. Also checks that the argocd-cm snippet in docs/argocd.md
# carries exactly these scripts. Prints one line per check and "N passed, M failed".
#
#   hack/test-argocd-health.sh                 run the tests
#   hack/test-argocd-health.sh --update-docs   regenerate the snippet in docs/argocd.md first
#
# Installs Debian's lua5.1 (and python3-yaml when python3 cannot import yaml) if missing.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need python3 python3
need lua5.1 lua5.1

# A python3 that can import yaml: the one on PATH, else Debian's with python3-yaml.
yaml_python() {
  local py
  for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml' >/dev/null 2>&1; then
      echo "$py"
      return 0
    fi
  done
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing python3-yaml (for the fixtures)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml; } >/dev/null 2>&1 \
      || die "python3 cannot import yaml: 'apt-get install python3-yaml' failed"
    /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 && { echo /usr/bin/python3; return 0; }
  fi
  die "python3 cannot import yaml (Debian package: python3-yaml, or: pip install pyyaml)"
}
PY=$(yaml_python)

TESTS=$REPO_DIR/argocd/tests
if [ "${1:-}" = "--update-docs" ]; then
  "$PY" "$TESTS/cases.py" update-docs "$REPO_DIR"
elif [ $# -gt 0 ]; then
  die "usage: $0 [--update-docs]"
fi

plan=$(mktemp "${TMPDIR:-/tmp}/argocd-health.XXXXXX")
trap 'rm -f "$plan"' EXIT
"$PY" "$TESTS/cases.py" lua "$REPO_DIR" >"$plan"
lua5.1 "$TESTS/run.lua" "$plan"
