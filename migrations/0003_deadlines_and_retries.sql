-- 0003: a creation whose reply was lost can be retried by its own client.
--
-- (This migration also refused commits arriving after their request's
-- deadline, with a deferred trigger; migration 0007 replaced it with a
-- check the functions send with their COMMIT.)
-- Idempotent: it can run any number of times.

BEGIN;

DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('cofrap_schema_migrations')); END $$;

-- generate-password's `request_id` (docs/API.md: "a commit whose reply is lost").
-- creation_request holds the SHA-256 (hex) of the request id of whoever set
-- the current password, or NULL. A function session that carries a request
-- id sets `cofrap.creation_request`; this trigger records it with every new
-- password (insert, reset, renewal, reissue) and forgets it when a session
-- without one sets the password (the Python functions), so that only the
-- client who set the current password can have it reissued. The functions
-- write the same value themselves, so that the trigger (its WHEN clause,
-- evaluated without PL/pgSQL) has nothing to do for them.
ALTER TABLE users ADD COLUMN IF NOT EXISTS creation_request text;

CREATE OR REPLACE FUNCTION cofrap_record_creation_request() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.creation_request := nullif(current_setting('cofrap.creation_request', true), '');
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER cofrap_creation_request
    BEFORE INSERT OR UPDATE OF password_hash ON users
    FOR EACH ROW
    WHEN (NEW.creation_request IS DISTINCT FROM
          nullif(current_setting('cofrap.creation_request', true), ''))
    EXECUTE FUNCTION cofrap_record_creation_request();

INSERT INTO cofrap_schema_migrations (version) VALUES (3) ON CONFLICT DO NOTHING;

COMMIT;
