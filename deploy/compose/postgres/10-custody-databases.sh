#!/bin/sh
# PostgreSQL image init hook (/docker-entrypoint-initdb.d/): creates the Custody roles and databases with the
# passwords from the compose secrets. SQL cannot read files, so the passwords travel as psql variables.
set -eu
secret() { cat "/run/secrets/postgres_$1_password"; }
psql --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
  --set ai_gateway_password="$(secret ai_gateway)" \
  --set runs_password="$(secret runs)" \
  --set lineage_password="$(secret lineage)" \
  --file /custody/custody-databases.sql
