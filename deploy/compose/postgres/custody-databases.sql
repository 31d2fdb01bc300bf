-- Two roles and one database per stateful service (each stateful service owns its own database; no service reads
-- another's tables). Run by 10-custody-databases.sh with psql, which supplies the passwords as psql variables read
-- from the compose secrets; it runs once, when the data volume is empty.
--
--   custody_<service>           owner: owns the database and its public schema; `custody migrate` connects as it
--                               and creates every table, trigger and function (no superuser needed)
--   custody_<service>_runtime   the service itself: CONNECT (and TEMPORARY for lineage) here; everything on the
--                               tables (SELECT and INSERT, UPDATE on the compare-and-set state, DELETE where the
--                               store deletes) is granted by the migrations, which refuse a role that could do more
--
-- The same statements provision a database you run yourself (README, Least-privilege database roles).
\set ON_ERROR_STOP on

CREATE ROLE custody_ai_gateway LOGIN PASSWORD :'ai_gateway_password';
CREATE ROLE custody_ai_gateway_runtime LOGIN PASSWORD :'ai_gateway_runtime_password';
CREATE DATABASE custody_ai_gateway OWNER custody_ai_gateway;
REVOKE ALL ON DATABASE custody_ai_gateway FROM PUBLIC;
GRANT CONNECT ON DATABASE custody_ai_gateway TO custody_ai_gateway_runtime;
\connect custody_ai_gateway
ALTER SCHEMA public OWNER TO custody_ai_gateway;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

\connect postgres
CREATE ROLE custody_runs LOGIN PASSWORD :'runs_password';
CREATE ROLE custody_runs_runtime LOGIN PASSWORD :'runs_runtime_password';
CREATE DATABASE custody_runs OWNER custody_runs;
REVOKE ALL ON DATABASE custody_runs FROM PUBLIC;
GRANT CONNECT ON DATABASE custody_runs TO custody_runs_runtime;
\connect custody_runs
ALTER SCHEMA public OWNER TO custody_runs;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

\connect postgres
CREATE ROLE custody_lineage LOGIN PASSWORD :'lineage_password';
CREATE ROLE custody_lineage_runtime LOGIN PASSWORD :'lineage_runtime_password';
CREATE DATABASE custody_lineage OWNER custody_lineage;
REVOKE ALL ON DATABASE custody_lineage FROM PUBLIC;
-- TEMPORARY: staleness propagation stages its rows in a temporary table.
GRANT CONNECT, TEMPORARY ON DATABASE custody_lineage TO custody_lineage_runtime;
\connect custody_lineage
ALTER SCHEMA public OWNER TO custody_lineage;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
