-- 0003: a commit that arrives after its request's deadline is refused; a
-- creation whose reply was lost can be retried by its own client.
--
-- Each function's session sets `cofrap.commit_by` (seconds since the epoch,
-- on this server's clock) when it checks the schema: a little before the
-- moment the function stops waiting and answers `database_timeout`. A
-- deferred constraint trigger checks it when the transaction commits, so a
-- commit that reaches a frozen or overloaded server which only gets to it
-- later (the function has long answered "timeout") is rolled back instead of
-- creating an account whose password nobody received.
--
-- Sessions that never set it (the Python functions, psql) are unaffected,
-- and pay nothing: the trigger's WHEN clause skips their rows.
-- Idempotent: it can run any number of times.

BEGIN;

DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('cofrap_schema_migrations')); END $$;

CREATE OR REPLACE FUNCTION cofrap_refuse_late_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    commit_by text := current_setting('cofrap.commit_by', true);
BEGIN
    IF commit_by <> '' AND extract(epoch FROM clock_timestamp()) > commit_by::double precision THEN
        RAISE EXCEPTION 'commit refused: the request''s deadline has passed'
            USING ERRCODE = 'CF001';
    END IF;
    RETURN NULL;
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgname = 'cofrap_commit_deadline' AND tgrelid = 'users'::regclass) THEN
        CREATE CONSTRAINT TRIGGER cofrap_commit_deadline
            AFTER INSERT OR UPDATE ON users
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW
            -- Checked when the row is written: sessions without the setting
            -- queue nothing (bulk loads, the Python functions, migrations).
            WHEN (current_setting('cofrap.commit_by', true) <> '')
            EXECUTE FUNCTION cofrap_refuse_late_commit();
    END IF;
END $$;

-- generate-password's `request_id` (README: "a commit whose reply is lost").
-- creation_request holds the SHA-256 (hex) of the request id of whoever set
-- the current password, or NULL. A function session that carries a request
-- id sets `cofrap.creation_request`; this trigger records it with every new
-- password (insert, reset, renewal, reissue) and forgets it when a session
-- without one sets the password (the Python functions), so that only the
-- client who set the current password can have it reissued.
ALTER TABLE users ADD COLUMN IF NOT EXISTS creation_request text;

CREATE OR REPLACE FUNCTION cofrap_record_creation_request() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.creation_request := nullif(current_setting('cofrap.creation_request', true), '');
    RETURN NEW;
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgname = 'cofrap_creation_request' AND tgrelid = 'users'::regclass) THEN
        CREATE TRIGGER cofrap_creation_request
            BEFORE INSERT OR UPDATE OF password_hash ON users
            FOR EACH ROW EXECUTE FUNCTION cofrap_record_creation_request();
    END IF;
END $$;

INSERT INTO cofrap_schema_migrations (version) VALUES (3) ON CONFLICT DO NOTHING;

COMMIT;
