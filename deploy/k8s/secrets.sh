#!/usr/bin/env bash
# Prints the Secrets the Custody manifests reference, as YAML for `kubectl apply -f -`; nothing is committed:
#   custody-credentials      key credentials       sha256 hashes of every token        -> all four servers
#   <service>-token          key token             that service's own bearer token     -> that server only
#   <service>-database       key url               PostgreSQL URL of the runtime role  -> that server only
#                                                  (stateful; <SERVICE>_DATABASE_URL)
#   <service>-migration-database  key url          PostgreSQL URL of the owner role    -> that service's Job only
#                                                  (stateful; <SERVICE>_MIGRATION_DATABASE_URL)
#   <service>-page-token     key key               page-token signing key (stateful)   -> that server only
#   <service>-ledger-key     key key               ledger checkpoint signing key       -> that server only
#                                                  (stateful; keys/<service>.ledger.key)
#   ai-gateway-provider      key OPENAI_API_KEY    provider key (may be empty: local)  -> ai-gateway server only
#   <service>-tls            type kubernetes.io/tls, keys tls.crt, tls.key, ca.crt: the service's certificate
#                                                  (tls/<service>/, issued by custody init's local CA)
#                                                  -> that server only; CERT_MANAGER=true leaves them out
#                                                  (cert-manager issues them: deploy/k8s/components/cert-manager)
#   console-tls              the same for the review console (tls/console/); its only Secret -> the console only
#   runs-c2pa                keys signer.key, chain.pem: the content-credentials (C2PA) signer (c2pa/runs/)
#                                                  -> runs server only
#   runs-s3                  keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: runs' S3 key pair, only when
#                                                  S3_CREDENTIALS_FILE names one (deploy/k8s/components/s3-blobs)
#                                                  -> runs server only
# and two ConfigMaps, as they hold public keys only:
#   ledger-verifier-keys     key <service>.ledger.vkey for each stateful service (keys/<service>.ledger.vkey)
#                                                  the authorities' checkpoint verifier keys -> lineage (witness);
#                                                  also what auditors check checkpoints and evidence bundles with
#   content-credentials-anchors  key anchors.pem: the content-credentials root (c2pa/anchors.pem) -> runs;
#                                                  also what consumers check assets' credentials with
#
#   custody init --state-dir var/k8s                       # tokens (once; --force rotates them)
#   AI_GATEWAY_DATABASE_URL=postgresql://custody_ai_gateway_runtime:...@HOST:5432/custody_ai_gateway \
#   AI_GATEWAY_MIGRATION_DATABASE_URL=postgresql://custody_ai_gateway:...@HOST:5432/custody_ai_gateway \
#   RUNS_DATABASE_URL=... RUNS_MIGRATION_DATABASE_URL=... LINEAGE_DATABASE_URL=... LINEAGE_MIGRATION_DATABASE_URL=... \
#   OPENAI_API_KEY_FILE=~/openai.key deploy/k8s/secrets.sh var/k8s | kubectl apply -f -
# (the roles: README, Least-privilege database roles; the two URLs of a service must name different roles)
#
# After `custody users add|rotate|revoke --state-dir var/k8s` only custody-credentials changed; print just that one
# (no database URLs needed). The kubelet updates the mounted file within about a minute and the services re-read it
# within a second of that:
#   deploy/k8s/secrets.sh --credentials-only var/k8s | kubectl apply -f -
#
# Environment: NAMESPACE (default custody), KUBECTL (default kubectl; works offline, nothing is sent),
# CERT_MANAGER (true: no <service>-tls Secrets, cert-manager writes them), S3_CREDENTIALS_FILE (for the s3-blobs
# component: a file of two lines, the access key id then the secret access key).
set -euo pipefail

credentials_only=false
if [ "${1:-}" = "--credentials-only" ]; then credentials_only=true; shift; fi
state_dir="${1:?usage: secrets.sh [--credentials-only] STATE_DIR (written by custody init)}"
namespace="${NAMESPACE:-custody}"
kubectl="${KUBECTL:-kubectl}"
cert_manager="${CERT_MANAGER:-false}"

# Values go through --from-file=<(...) rather than --from-literal, so they never appear in a process listing.
secret() {  # name, then --from-file arguments (and --type)
  local name="$1"; shift
  echo "---"
  "$kubectl" create secret generic "$name" --namespace "$namespace" --dry-run=client --output yaml "$@"
}

configmap() {  # name, then --from-file arguments
  local name="$1"; shift
  echo "---"
  "$kubectl" create configmap "$name" --namespace "$namespace" --dry-run=client --output yaml "$@"
}

setting_of() {  # a setting custody init wrote into config/<service>.yaml: service, setting
  local value
  value="$(sed -n "s/^$2: *//p" "$state_dir/config/$1.yaml")"
  [ -n "$value" ] || { echo "no $2 in $state_dir/config/$1.yaml: run custody init" >&2; exit 1; }
  printf '%s' "$value"
}

url_user() {  # the role a postgresql://ROLE[:PASSWORD]@HOST/... URL connects as
  printf '%s' "$1" | sed -nE 's#^[a-z+]+://([^:@/]*)(:[^@/]*)?@.*#\1#p'
}

# Check every input before printing anything: a partial stream piped into kubectl apply would apply partly.
[ -s "$state_dir/credentials" ] || { echo "$state_dir/credentials missing: run custody init" >&2; exit 1; }
if "$credentials_only"; then
  secret custody-credentials --from-file=credentials="$state_dir/credentials"
  exit 0
fi
# (bash 3 compatible, for macOS: no associative arrays; token_<service> and url_<service> variables instead)
for service in ai_gateway runs art_studio lineage; do
  value="$(setting_of "$service" token)"
  printf -v "token_$service" '%s' "$value"
done
for service in ai_gateway runs lineage; do
  value="$(setting_of "$service" page_token_key)"
  printf -v "page_key_$service" '%s' "$value"
  upper="$(echo "$service" | tr '[:lower:]' '[:upper:]')"
  variable="${upper}_DATABASE_URL"
  [ -n "${!variable:-}" ] || { echo "$variable is not set (the PostgreSQL URL of $service's runtime role)" >&2; exit 1; }
  printf -v "url_$service" '%s' "${!variable}"
  owner_variable="${upper}_MIGRATION_DATABASE_URL"
  [ -n "${!owner_variable:-}" ] || {
    echo "$owner_variable is not set (the PostgreSQL URL of the owner role of $service's database)" >&2; exit 1
  }
  printf -v "owner_url_$service" '%s' "${!owner_variable}"
  user="$(url_user "${!variable}")"
  if [ "$user" = "$(url_user "${!owner_variable}")" ]; then
    echo "$variable and $owner_variable both connect as ${user:-the default user}: $service would run as its" \
      "database's owner; give it the runtime role's URL" >&2
    exit 1
  fi
  for file in "keys/$service.ledger.key" "keys/$service.ledger.vkey"; do
    [ -s "$state_dir/$file" ] || { echo "$state_dir/$file missing: run custody init" >&2; exit 1; }
  done
done
for file in c2pa/runs/signer.key c2pa/runs/chain.pem c2pa/anchors.pem; do
  [ -s "$state_dir/$file" ] || { echo "$state_dir/$file missing: run custody init" >&2; exit 1; }
done
# The servers' certificates and the review console's.
tls_processes="ai_gateway runs art_studio lineage console"
if [ "$cert_manager" != "true" ]; then
  for service in $tls_processes; do
    for file in tls.crt tls.key ca.crt; do
      [ -s "$state_dir/tls/$service/$file" ] || { echo "$state_dir/tls/$service/$file missing: run custody init" >&2; exit 1; }
    done
  done
fi
key=""
if [ -n "${OPENAI_API_KEY_FILE:-}" ]; then key="$(tr -d '\r\n' < "$OPENAI_API_KEY_FILE")"; fi
s3_key_id=""
s3_secret=""
if [ -n "${S3_CREDENTIALS_FILE:-}" ]; then
  s3_key_id="$(sed -n 1p "$S3_CREDENTIALS_FILE" | tr -d '\r\n')"
  s3_secret="$(sed -n 2p "$S3_CREDENTIALS_FILE" | tr -d '\r\n')"
  [ -n "$s3_key_id" ] && [ -n "$s3_secret" ] || {
    echo "$S3_CREDENTIALS_FILE must hold two lines: the S3 access key id, then the secret access key" >&2; exit 1
  }
fi

secret custody-credentials --from-file=credentials="$state_dir/credentials"
for service in ai_gateway runs art_studio lineage; do
  variable="token_$service"
  secret "${service//_/-}-token" --from-file=token=<(printf '%s' "${!variable}")
done
for service in ai_gateway runs lineage; do
  variable="url_$service"
  secret "${service//_/-}-database" --from-file=url=<(printf '%s' "${!variable}")
  variable="owner_url_$service"
  secret "${service//_/-}-migration-database" --from-file=url=<(printf '%s' "${!variable}")
  variable="page_key_$service"
  secret "${service//_/-}-page-token" --from-file=key=<(printf '%s' "${!variable}")
  secret "${service//_/-}-ledger-key" --from-file=key="$state_dir/keys/$service.ledger.key"
done
secret ai-gateway-provider --from-file=OPENAI_API_KEY=<(printf '%s' "$key")
if [ "$cert_manager" != "true" ]; then
  for service in $tls_processes; do
    tls="$state_dir/tls/$service"
    secret "${service//_/-}-tls" --type=kubernetes.io/tls \
      --from-file=tls.crt="$tls/tls.crt" --from-file=tls.key="$tls/tls.key" --from-file=ca.crt="$tls/ca.crt"
  done
fi
verifier_keys=()
for service in ai_gateway runs lineage; do
  verifier_keys+=("--from-file=$service.ledger.vkey=$state_dir/keys/$service.ledger.vkey")
done
configmap ledger-verifier-keys "${verifier_keys[@]}"
secret runs-c2pa --from-file=signer.key="$state_dir/c2pa/runs/signer.key" \
  --from-file=chain.pem="$state_dir/c2pa/runs/chain.pem"
configmap content-credentials-anchors --from-file=anchors.pem="$state_dir/c2pa/anchors.pem"
if [ -n "$s3_key_id" ]; then
  secret runs-s3 --from-file=AWS_ACCESS_KEY_ID=<(printf '%s' "$s3_key_id") \
    --from-file=AWS_SECRET_ACCESS_KEY=<(printf '%s' "$s3_secret")
fi
