-- Least privilege: each service connects as a role of its own that may do to each table only what the
-- service needs. None of them may UPDATE or DELETE ledger rows, holds, hold resolutions or usage rows:
-- the ledger is append-only in the database, not only by convention. Only the migrator (the owner) runs
-- DDL; the services only check at start that the schema is current.
--
-- The roles are created here without a password (NOLOGIN); the bootstrap (`fsg bootstrap`, which `make run`,
-- docker-compose and the Kubernetes Job run) gives each one LOGIN and its password, and each service is given
-- its own role's DATABASE_URL. Creating roles needs CREATEROLE: on a managed PostgreSQL whose migrating user
-- lacks it, create the three roles beforehand (CREATE ROLE fsg_auth; ... fsg_billing; ... fsg_generation).
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['fsg_auth', 'fsg_billing', 'fsg_generation'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO fsg_auth, fsg_billing, fsg_generation;
-- Every service checks the schema version at start.
GRANT SELECT ON schema_migrations, schema_functions TO fsg_auth, fsg_billing, fsg_generation;

-- auth: accounts and keys (rotating and disabling update a row; nothing is ever deleted).
GRANT SELECT, INSERT, UPDATE ON user_accounts TO fsg_auth;

-- billing: the cached balances and limits change in place; the ledger, holds, resolutions and usage rows are
-- only ever added; the pending list, replay results and void markers are its own caches and come and go.
GRANT SELECT, INSERT, UPDATE ON credit_accounts TO fsg_billing;
GRANT SELECT, INSERT ON credit_transactions, credit_holds, credit_hold_resolutions, usage_logs TO fsg_billing;
GRANT SELECT, INSERT, DELETE ON pending_holds, idempotent_results, voided_hold_ids TO fsg_billing;

-- generation: projects and their parts; of billing's, only what it publishes (which holds were posted).
GRANT SELECT, INSERT, UPDATE, DELETE ON projects, project_parts TO fsg_generation;
GRANT SELECT ON hold_outcomes TO fsg_generation;
