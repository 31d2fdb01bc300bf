#!/usr/bin/env bash
# Installs the peer systems the benchmarks compare against, each into its own venv under bench/.peers/
# (never into the project's). Exact pinned releases (below), so every run compares against the same peers;
# LiteLLM 1.82.7 and 1.82.8 must never be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
mkdir -p bench/.peers

peer() {
  local name=$1 probe=$2
  shift 2
  if bench/.peers/"$name"/bin/python -c "import $probe" >/dev/null 2>&1; then
    return
  fi
  echo "installing peer $name: $*"
  rm -rf bench/.peers/"$name"
  "$PYTHON" -m venv bench/.peers/"$name"
  bench/.peers/"$name"/bin/python -m pip install --quiet --disable-pip-version-check "$@" \
    > bench/.peers/"$name"-install.log 2>&1 || { tail -20 bench/.peers/"$name"-install.log; exit 1; }
}

peer litellm litellm 'litellm[proxy]==1.106.2'
peer mlflow mlflow 'mlflow==3.17.2' psycopg2-binary
peer mlmd ml_metadata 'ml-metadata==1.17.1'
