-- 0007: the commit deadline checked with the COMMIT itself, and no
-- PL/pgSQL on the functions' way.
--
-- A function that answered `database_timeout` must have stored nothing, yet
-- a commit sent to a server that then froze could be carried out when it
-- wakes up. Until now a deferred trigger (0003, 0004, 0006) refused such a
-- commit. Now the functions send, in the same message as their COMMIT, a
-- check that the instant they set for the transaction (`cofrap.commit_by`,
-- on the server's clock) has not passed: the server runs the two back to
-- back, so a server that wakes up late fails the check and never commits.
-- The check casts to this domain, whose constraint fails (SQLSTATE 23514,
-- constraint `cofrap_commit_in_time`) when the instant has passed: plain
-- SQL, where the trigger needed PL/pgSQL, which a fresh connection (every
-- request is one) had to load and compile on each request, most of what
-- its statements cost. With the WHEN clauses of the other triggers (0002 to
-- 0006), a function's statements call no PL/pgSQL at all.
--
-- Idempotent. Transactions that do not send the check (the Python
-- functions, psql, migrations) are not affected, as before.

BEGIN;

DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('cofrap_schema_migrations')); END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'cofrap_in_time') THEN
        CREATE DOMAIN cofrap_in_time AS boolean
            CONSTRAINT cofrap_commit_in_time CHECK (VALUE);
    END IF;
END $$;

-- The deferred triggers it replaces, and their function.
DROP TRIGGER IF EXISTS cofrap_commit_deadline ON users;
DROP TRIGGER IF EXISTS cofrap_commit_deadline ON sessions;
DROP TRIGGER IF EXISTS cofrap_commit_deadline ON refresh_tokens;
DROP TRIGGER IF EXISTS cofrap_commit_deadline ON account_events;
DROP FUNCTION IF EXISTS cofrap_refuse_late_commit();

INSERT INTO cofrap_schema_migrations (version) VALUES (7) ON CONFLICT DO NOTHING;

COMMIT;
