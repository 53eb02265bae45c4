-- 0008: what the functions' role may write, narrowed to what they write.
--
-- The schema version (cofrap_schema_migrations) is read by the functions
-- and written only by migrations: the functions' role keeps SELECT alone,
-- so that a compromised function cannot claim a schema it does not have
-- (0001 skips a step whose version row exists).
--
-- The audit trail (0006) is append-only for the functions; here, what they
-- append is narrowed too. They may INSERT only the columns they write,
-- never `id` (so no event takes an id ahead of the honest ones), `at` (the
-- server's clock writes it: no event dated in the past) nor `operator`
-- (cofrap-admin's, connected as an administrator). A new column,
-- `recorded_by`, holds the database role that wrote each event, and nobody
-- but the server writes it: an event that claims to be an operator's but
-- was written by the functions' role shows it. Rows from before this
-- migration have it NULL (unknown). Nor may it draw event ids from their
-- sequence (an identity column's inserts need no privilege on it).
--
-- Idempotent; roles.psql does the same every time it runs.

BEGIN;
DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('cofrap_schema_migrations')); END $$;

ALTER TABLE account_events ADD COLUMN IF NOT EXISTS recorded_by name;
ALTER TABLE account_events ALTER COLUMN recorded_by SET DEFAULT current_user;

DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
         WHERE g.table_schema = 'public'
           AND g.table_name IN ('account_events', 'cofrap_schema_migrations')
           AND g.grantee <> current_user AND g.grantee <> 'PUBLIC'
    LOOP
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE '
                       'ON cofrap_schema_migrations FROM %I', grantee);
        EXECUTE format('REVOKE INSERT ON account_events FROM %I', grantee);
        EXECUTE format('GRANT INSERT (account_id, source, kind, outcome, reason, detail, '
                       'client_address, user_agent, request_id) ON account_events TO %I',
                       grantee);
        -- An identity column's sequence needs no privilege of the inserter:
        -- none, so that nobody else draws (and skips) event ids.
        EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I',
                       pg_get_serial_sequence('account_events', 'id'), grantee);
    END LOOP;
END $$;

INSERT INTO cofrap_schema_migrations (version) VALUES (8) ON CONFLICT DO NOTHING;

COMMIT;
