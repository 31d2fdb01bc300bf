-- One role and one database per stateful service (each stateful service owns its own database;
-- no service reads another's tables). Run by 10-custody-databases.sh with psql, which supplies the passwords
-- as psql variables read from the compose secrets; it runs once, when the data volume is empty.
\set ON_ERROR_STOP on

CREATE ROLE custody_ai_gateway LOGIN PASSWORD :'ai_gateway_password';
CREATE DATABASE custody_ai_gateway OWNER custody_ai_gateway;
REVOKE ALL ON DATABASE custody_ai_gateway FROM PUBLIC;

CREATE ROLE custody_runs LOGIN PASSWORD :'runs_password';
CREATE DATABASE custody_runs OWNER custody_runs;
REVOKE ALL ON DATABASE custody_runs FROM PUBLIC;

CREATE ROLE custody_lineage LOGIN PASSWORD :'lineage_password';
CREATE DATABASE custody_lineage OWNER custody_lineage;
REVOKE ALL ON DATABASE custody_lineage FROM PUBLIC;
