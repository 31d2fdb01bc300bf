#!/usr/bin/env bash
# Writes the compose secrets (once; re-running keeps existing tokens and passwords):
#   credentials                 sha256 hashes of every token (all four services)      custody init
#   config/<service>.yaml       that service's own token (+ page_token_key, database_url) custody init + this script
#   operator.token              your token for the custody CLI                          custody init
#   keys/<service>.ledger.key   ledger checkpoint signing key, one per stateful service custody init
#   keys/<service>.ledger.vkey  its public verifier key (lineage gets them; so do auditors) custody init
#   postgres/*.password         PostgreSQL superuser and one role per stateful service  this script
#   openai_api_key              provider key for ai_gateway only (empty: offline local provider)
#
# Usage: deploy/compose/init-secrets.sh [DIR]        (DIR defaults to var/compose, git-ignored)
#        OPENAI_API_KEY_FILE=~/openai.key deploy/compose/init-secrets.sh   copies the key in
# Needs the custody CLI (`make install`, then .venv/bin on PATH or CUSTODY=.venv/bin/custody).
#
# After `custody users add|rotate|revoke --state-dir var/compose`, re-run this script (it makes the rewritten, 0600
# credentials file readable to the containers again) and restart the four servers: compose bind-mounts the file, and
# a running container keeps seeing the file it was started with, not the one that replaced it.
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:-$repo_root/var/compose}"
custody="${CUSTODY:-$(command -v custody || echo "$repo_root/.venv/bin/custody")}"

umask 077
mkdir -p "$dir/postgres"
"$custody" init --state-dir "$dir"

random_password() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

[ -s "$dir/postgres/postgres.password" ] || random_password > "$dir/postgres/postgres.password"
for service in ai_gateway runs lineage; do
  password_file="$dir/postgres/$service.password"
  [ -s "$password_file" ] || random_password > "$password_file"
  config="$dir/config/$service.yaml"
  if ! grep -q '^database_url:' "$config"; then
    printf 'database_url: postgresql://custody_%s:%s@postgres:5432/custody_%s\n' \
      "$service" "$(cat "$password_file")" "$service" >> "$config"
  fi
done

if [ -n "${OPENAI_API_KEY_FILE:-}" ]; then
  tr -d '\r\n' < "$OPENAI_API_KEY_FILE" > "$dir/openai_api_key"
elif [ ! -e "$dir/openai_api_key" ]; then
  : > "$dir/openai_api_key"
fi

# Compose mounts file secrets as they are on the host (it cannot change their owner or mode), and the services
# run as uid 10001: the files become readable, the directory stays private to you. (The ledger keys too: each
# authority's entry point copies its key to a 0600 file of its own before starting, see compose.yaml.)
chmod 0700 "$dir"
find "$dir" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
chmod 0700 "$dir"
chmod 0600 "$dir/operator.token"
echo "compose secrets in $dir; operator token: $dir/operator.token"
