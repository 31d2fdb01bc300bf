#!/usr/bin/env bash
# Writes the compose secrets (once; re-running keeps existing tokens and passwords):
#   credentials                 sha256 hashes of every token (all four services)      custody init
#   config/<service>.yaml       that service's own token (+ page_token_key, database_url) custody init + this script
#                               (database_url: the runtime role, custody_<service>_runtime)
#   config/<service>.migration.yaml  its migration's: the owner role's URL (custody_<service>), no token  this script
#   operator.token              your token for the custody CLI                          custody init
#   keys/<service>.ledger.key   ledger checkpoint signing key, one per stateful service custody init
#   keys/<service>.ledger.vkey  its public verifier key (lineage gets them; so do auditors) custody init
#   tls/<service>/tls.crt|key   the service's certificate and key (local CA, SPIFFE ID) custody init
#   tls/console/tls.crt|key     the review console's HTTPS certificate (console, localhost) custody init
#   tls/ca.crt                  the CA certificate servers and clients trust            custody init
#   tls/ca/                     the CA's private key: stays 0700/0600, never mounted     custody init
#   c2pa/runs/signer.key|chain.pem  runs' content-credentials (C2PA) signer and its chain custody init
#   c2pa/anchors.pem            the content-credentials root: what verifiers of assets trust custody init
#   c2pa/root/, c2pa/ca/        the content-credentials CAs' private keys: stay 0700/0600, never mounted
#   postgres/*.password         PostgreSQL superuser, and an owner and a runtime role   this script
#                               per stateful service (<service>, <service>_runtime)
#   openai_api_key              provider key for ai_gateway only (empty: offline local provider)
#   s3/credentials, s3/identities.json  compose.s3.yaml: runs' S3 key pair (boto3's shared-credentials file) and
#                               the one identity SeaweedFS accepts (the same pair)              this script
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
url() {  # role, password file, database
  printf 'postgresql://%s:%s@postgres:5432/%s' "$1" "$(cat "$2")" "$3"
}
for service in ai_gateway runs lineage; do
  owner_password="$dir/postgres/$service.password"
  runtime_password="$dir/postgres/${service}_runtime.password"
  [ -s "$owner_password" ] || random_password > "$owner_password"
  [ -s "$runtime_password" ] || random_password > "$runtime_password"
  # The server connects as the runtime role (rewritten on every run: a config from before the roles moves over).
  config="$dir/config/$service.yaml"
  grep -v '^database_url:' "$config" > "$config.new" || true
  printf 'database_url: %s\n' "$(url "custody_${service}_runtime" "$runtime_password" "custody_$service")" >> "$config.new"
  mv "$config.new" "$config"
  # Its migration connects as the owner and grants the runtime role its privileges; it gets nothing else.
  printf 'migration_database_url: %s\ndatabase_runtime_role: custody_%s_runtime\n' \
    "$(url "custody_$service" "$owner_password" "custody_$service")" "$service" > "$dir/config/$service.migration.yaml"
done

# compose.s3.yaml: one S3 identity, known to SeaweedFS (identities.json) and used by runs (a shared-credentials file).
mkdir -p "$dir/s3"
[ -s "$dir/s3/access_key_id" ] || printf 'custody-runs-%s' "$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')" > "$dir/s3/access_key_id"
[ -s "$dir/s3/secret_access_key" ] || random_password > "$dir/s3/secret_access_key"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
  "$(cat "$dir/s3/access_key_id")" "$(cat "$dir/s3/secret_access_key")" > "$dir/s3/credentials"
printf '{"identities": [{"name": "custody-runs", "credentials": [{"accessKey": "%s", "secretKey": "%s"}], %s}]}\n' \
  "$(cat "$dir/s3/access_key_id")" "$(cat "$dir/s3/secret_access_key")" \
  '"actions": ["Admin", "Read", "Write", "List", "Tagging"]' > "$dir/s3/identities.json"

if [ -n "${OPENAI_API_KEY_FILE:-}" ]; then
  tr -d '\r\n' < "$OPENAI_API_KEY_FILE" > "$dir/openai_api_key"
elif [ ! -e "$dir/openai_api_key" ]; then
  : > "$dir/openai_api_key"
fi

# Compose mounts file secrets as they are on the host (it cannot change their owner or mode), and the services
# run as uid 10001: the files become readable, the directory stays private to you. (The ledger and TLS keys too:
# each server's entry point copies its keys to 0600 files of its own before starting, see compose.yaml.) The CA's
# private key is no container's business: tls/ca/ keeps custody init's modes, and so do the content-credentials
# CAs (c2pa/root/, c2pa/ca/).
chmod 0700 "$dir"
find "$dir" \( -path "$dir/tls/ca" -o -path "$dir/c2pa/ca" -o -path "$dir/c2pa/root" \) -prune \
  -o -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
chmod 0700 "$dir"
chmod 0600 "$dir/operator.token"
echo "compose secrets in $dir; operator token: $dir/operator.token; CA certificate: $dir/tls/ca.crt"
