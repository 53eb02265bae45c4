-- 0002: look-alike usernames are one account; renewal is staged so that no
-- one can take an account that was ever activated; pending 2FA secrets are
-- marked as ours.
--
-- Idempotent, like 0001. The Python version keeps working on the result: it
-- never writes the new columns, and the trigger below fills the compared
-- username for the rows it inserts.

BEGIN;

DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('cofrap_schema_migrations')); END $$;

-- The compared form of the username (RFC 8265 UsernameCaseMapped, computed
-- by the functions, common/src/username.rs). Unique: the database itself
-- refuses two accounts that look alike.
ALTER TABLE users ADD COLUMN IF NOT EXISTS username_key text;
-- Renewal in progress: the new password until generate-2fa proves it was
-- received, then the new 2FA secret until its first good code. Meanwhile
-- password_hash, mfa_secret and expired keep their meaning.
ALTER TABLE users ADD COLUMN IF NOT EXISTS renewal_password_hash text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS renewal_mfa_secret text;
-- A copy of mfa_secret as our generate-2fa stored it on a pending account,
-- cleared at activation. An mfa_secret that differs (the Python version
-- wrote it) makes the account one that can never be taken afresh.
ALTER TABLE users ADD COLUMN IF NOT EXISTS pending_mfa_secret text;

-- Rows written without a key (the Python version, and every row before this
-- migration) get an approximation of the profile that SQL can compute:
-- compatibility normalisation (which includes width mapping) and lower case.
-- For the names the profile accepts, that is the same key, except for rare
-- case mappings; the functions always write the exact key.
CREATE OR REPLACE FUNCTION cofrap_username_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.username_key IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.username IS DISTINCT FROM OLD.username
           AND NEW.username_key IS NOT DISTINCT FROM OLD.username_key) THEN
        NEW.username_key := lower(normalize(btrim(NEW.username), NFKC));
    END IF;
    RETURN NEW;
END $$;

-- Called only when there is something to do (the WHEN clauses, evaluated
-- without calling PL/pgSQL): the functions always write the key, and a
-- backend that never runs PL/pgSQL neither loads nor compiles it, which is
-- most of what a fresh connection's first statement costs.
DROP TRIGGER IF EXISTS users_username_key ON users;
CREATE OR REPLACE TRIGGER users_username_key_on_insert
    BEFORE INSERT ON users
    FOR EACH ROW WHEN (NEW.username_key IS NULL)
    EXECUTE FUNCTION cofrap_username_key();
CREATE OR REPLACE TRIGGER users_username_key_on_rename
    BEFORE UPDATE ON users
    FOR EACH ROW
    WHEN (NEW.username_key IS NULL
          OR (NEW.username IS DISTINCT FROM OLD.username
              AND NEW.username_key IS NOT DISTINCT FROM OLD.username_key))
    EXECUTE FUNCTION cofrap_username_key();

DO $$
BEGIN
    -- Refuse, with the list, to upgrade a table holding names that now
    -- compare equal (as 0001 does for case).
    IF EXISTS (SELECT 1 FROM users
                GROUP BY coalesce(username_key, lower(normalize(btrim(username), NFKC)))
               HAVING count(*) > 1) THEN
        RAISE EXCEPTION 'users holds usernames that now name one account: %',
            (SELECT string_agg(username, ', ' ORDER BY username) FROM users
              WHERE coalesce(username_key, lower(normalize(btrim(username), NFKC))) IN
                    (SELECT coalesce(username_key, lower(normalize(btrim(username), NFKC)))
                       FROM users GROUP BY 1 HAVING count(*) > 1))
            USING HINT = 'Rename one of each group (they look alike), then run the migration again.';
    END IF;
END $$;

UPDATE users SET username_key = lower(normalize(btrim(username), NFKC))
 WHERE username_key IS NULL;
ALTER TABLE users ALTER COLUMN username_key SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS users_username_key_key ON users (username_key);

INSERT INTO cofrap_schema_migrations (version) VALUES (2) ON CONFLICT DO NOTHING;

COMMIT;
