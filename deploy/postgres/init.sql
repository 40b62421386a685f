-- Databases and roles of the compose stack. The postgres image runs this once, as the superuser,
-- when its data volume is empty (/docker-entrypoint-initdb.d). Passwords come from the
-- environment (deploy/postgres.env), never from this file.
--
--   airflow         owns database `airflow` (Airflow's metadata DB; `airflow db migrate` fills it)
--   impactwatch     owns database `impactwatch` (collector and router state: iw_* and rt_* tables)
--   impactwatch_ro  reads database `airflow`, nothing else: the collector's user
\set ON_ERROR_STOP on

\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv impactwatch_password IMPACTWATCH_DB_PASSWORD
\getenv reader_password IMPACTWATCH_RO_PASSWORD

SELECT :{?airflow_password} AND :{?impactwatch_password} AND :{?reader_password} AS all_set \gset
\if :all_set
  SELECT :'airflow_password' = '' OR :'impactwatch_password' = '' OR :'reader_password' = ''
      AS missing_password \gset
\else
  \set missing_password true
\endif
\if :missing_password
  DO $$ BEGIN RAISE EXCEPTION 'AIRFLOW_DB_PASSWORD, IMPACTWATCH_DB_PASSWORD and '
    'IMPACTWATCH_RO_PASSWORD must be set: copy deploy/postgres.env.example to '
    'deploy/postgres.env and fill them in'; END $$;
\endif

CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE ROLE impactwatch LOGIN PASSWORD :'impactwatch_password';
CREATE ROLE impactwatch_ro LOGIN PASSWORD :'reader_password';

CREATE DATABASE airflow OWNER airflow;
CREATE DATABASE impactwatch OWNER impactwatch;

-- Only the owner, and the reader on Airflow's DB, may connect (PUBLIC may by default).
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE impactwatch FROM PUBLIC;
GRANT CONNECT ON DATABASE airflow TO impactwatch_ro;

-- Read-only, belt and braces: every transaction of the reader is read-only, and it may only
-- SELECT. Airflow creates its tables later (`airflow db migrate`, as role airflow), so the grant
-- is a default privilege on what airflow creates, plus whatever exists already.
ALTER ROLE impactwatch_ro SET default_transaction_read_only = on;
\connect airflow
ALTER SCHEMA public OWNER TO airflow;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO impactwatch_ro;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO impactwatch_ro;
ALTER DEFAULT PRIVILEGES FOR ROLE airflow IN SCHEMA public GRANT SELECT ON TABLES TO impactwatch_ro;

\connect impactwatch
ALTER SCHEMA public OWNER TO impactwatch;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
