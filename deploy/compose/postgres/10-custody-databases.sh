#!/bin/sh
# PostgreSQL image init hook (/docker-entrypoint-initdb.d/): creates the Custody roles (an owner and a runtime role
# per stateful service) and databases with the passwords from the compose secrets. SQL cannot read files, so the
# passwords travel as psql variables.
set -eu
secret() { cat "/run/secrets/postgres_$1_password"; }
psql --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
  --set ai_gateway_password="$(secret ai_gateway)" \
  --set ai_gateway_runtime_password="$(secret ai_gateway_runtime)" \
  --set runs_password="$(secret runs)" \
  --set runs_runtime_password="$(secret runs_runtime)" \
  --set lineage_password="$(secret lineage)" \
  --set lineage_runtime_password="$(secret lineage_runtime)" \
  --file /custody/custody-databases.sql
