-- 0005: names that read the same are one name.
--
-- An account is keyed on the Unicode confusable skeleton (UTS #39, section
-- 4) of its case-folded name, and a new name may not look, as written, like
-- an existing account's (common/src/username.rs says why both). SQL cannot
-- compute skeletons (their tables live in the functions), so:
-- - the functions write both skeletons with every name they store;
-- - rows written before this migration, and rows the Python version inserts,
--   have none until `cofrap-admin rekey` (run by `make db-migrate` and by the
--   schema Job after these files) computes them; until then the functions
--   find such a row by `username_key`, as before;
-- - rows whose names already collide stay usable (nobody loses an account):
--   the first keeps its skeleton, the others keep none, are found by their
--   own `username_key`, and are listed by every `cofrap-admin rekey`. Only
--   new collisions are refused, by the unique indexes below.
--
-- Idempotent. The Python version never reads these columns.

BEGIN;

DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('cofrap_schema_migrations')); END $$;

ALTER TABLE users ADD COLUMN IF NOT EXISTS username_skeleton text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS username_display_skeleton text;
CREATE UNIQUE INDEX IF NOT EXISTS users_username_skeleton_key ON users (username_skeleton);
CREATE UNIQUE INDEX IF NOT EXISTS users_username_display_skeleton_key
    ON users (username_display_skeleton);

-- A name changed without its skeletons (by hand, or by a writer that does not
-- know them) loses them: stale skeletons would name another account.
CREATE OR REPLACE FUNCTION cofrap_forget_stale_skeletons() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.username IS DISTINCT FROM OLD.username
       AND NEW.username_skeleton IS NOT DISTINCT FROM OLD.username_skeleton THEN
        NEW.username_skeleton := NULL;
        NEW.username_display_skeleton := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER users_forget_stale_skeletons BEFORE UPDATE ON users
    FOR EACH ROW
    WHEN (NEW.username IS DISTINCT FROM OLD.username
          AND NEW.username_skeleton IS NOT DISTINCT FROM OLD.username_skeleton)
    EXECUTE FUNCTION cofrap_forget_stale_skeletons();

INSERT INTO cofrap_schema_migrations (version) VALUES (5) ON CONFLICT DO NOTHING;

COMMIT;
