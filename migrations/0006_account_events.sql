-- 0006: an audit trail of every account, and what operators need to act on
-- one (cofrap-admin).
--
-- account_events is append-only for the functions: each event is written in
-- the transaction of the change it records, so it exists if and only if that
-- change committed (a refusal's transaction commits too). It holds no
-- username (an erased account's events keep its id and lose its name), no
-- password, hash, secret, code or token: request ids only as their SHA-256,
-- as users.creation_request holds them.
--
-- users gains two states an operator sets: disabled (refused exactly like a
-- wrong password, its sessions ended) and a 2FA reset (a lost phone: the
-- owner enrolls again with the password, within the enrollment window).
--
-- Idempotent. The Python version never reads these.

BEGIN;

DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('cofrap_schema_migrations')); END $$;

CREATE TABLE IF NOT EXISTS account_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- users.id; not a foreign key: events outlive an erased account.
    account_id     bigint,
    -- The function (generate-password...) or cofrap-admin.
    source         text NOT NULL,
    -- What happened: created, refused, locked, signed_in... (docs/OPERATIONS.md).
    kind           text NOT NULL,
    -- The answer's code (ok, invalid_credentials...).
    outcome        text NOT NULL,
    -- Why, for a refusal (wrong_password, wrong_code...); details as JSON
    -- (a lock's seconds, a session's id).
    reason         text,
    detail         jsonb,
    -- As the edge passed them (X-Forwarded-For's trusted hop, User-Agent).
    client_address inet,
    user_agent     text,
    -- SHA-256 (hex) of generate-password's request_id, when it had one.
    request_id     text,
    -- Who, for cofrap-admin's actions.
    operator       text
);
CREATE INDEX IF NOT EXISTS account_events_by_account ON account_events (account_id, at DESC);
CREATE INDEX IF NOT EXISTS account_events_by_address ON account_events (client_address, at DESC);
CREATE INDEX IF NOT EXISTS account_events_by_time ON account_events (at);

-- The default privileges of roles.psql give every role that has them on
-- new tables (the functions') SELECT, INSERT and UPDATE: here, INSERT only.
-- roles.psql does the same every time it runs.
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
         WHERE g.table_schema = 'public' AND g.table_name = 'account_events'
           AND g.grantee <> current_user AND g.grantee <> 'PUBLIC'
    LOOP
        EXECUTE format('REVOKE SELECT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER '
                       'ON account_events FROM %I', grantee);
    END LOOP;
END $$;

-- Set by an operator (cofrap-admin disable / enable).
ALTER TABLE users ADD COLUMN IF NOT EXISTS disabled_at timestamptz;
-- Set by an operator (cofrap-admin reset-2fa), cleared by the first good
-- code of the new secret: until then the owner may enroll again with the
-- password, within the enrollment window counted from this instant.
ALTER TABLE users ADD COLUMN IF NOT EXISTS two_factor_reset_at timestamptz;

-- Sessions end when their account is disabled or its 2FA reset, as they do
-- when it is renewed, expires or is locked (0004).
CREATE OR REPLACE FUNCTION cofrap_end_sessions() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    reason text;
BEGIN
    IF NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        reason := 'renewed';
    ELSIF NEW.expired AND NOT OLD.expired THEN
        reason := 'expired';
    ELSIF NEW.locked_until IS DISTINCT FROM OLD.locked_until AND NEW.locked_until > now() THEN
        reason := 'locked';
    ELSIF NEW.disabled_at IS NOT NULL AND OLD.disabled_at IS NULL THEN
        reason := 'disabled';
    ELSIF NEW.two_factor_reset_at IS NOT NULL
          AND NEW.two_factor_reset_at IS DISTINCT FROM OLD.two_factor_reset_at THEN
        reason := 'two_factor_reset';
    ELSE
        RETURN NULL;
    END IF;
    UPDATE sessions SET ended_at = now(), end_reason = reason
     WHERE user_id = NEW.id AND ended_at IS NULL;
    RETURN NULL;
END $$;

-- Called only when a session must end (evaluated without PL/pgSQL: a
-- sign-in, which changes none of these, loads and compiles nothing).
CREATE OR REPLACE TRIGGER users_end_sessions AFTER UPDATE ON users
    FOR EACH ROW
    WHEN (NEW.created_at IS DISTINCT FROM OLD.created_at
          OR (NEW.expired AND NOT OLD.expired)
          OR (NEW.locked_until IS DISTINCT FROM OLD.locked_until AND NEW.locked_until > now())
          OR (NEW.disabled_at IS NOT NULL AND OLD.disabled_at IS NULL)
          OR (NEW.two_factor_reset_at IS NOT NULL
              AND NEW.two_factor_reset_at IS DISTINCT FROM OLD.two_factor_reset_at))
    EXECUTE FUNCTION cofrap_end_sessions();

INSERT INTO cofrap_schema_migrations (version) VALUES (6) ON CONFLICT DO NOTHING;

COMMIT;
