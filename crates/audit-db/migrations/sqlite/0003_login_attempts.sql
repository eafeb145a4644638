-- Failed logins are counted per email tried, whether or not an account has
-- it: a login for an unknown email runs the same statements and is locked
-- after as many failures as a real one, so neither the timing nor the
-- answers tell which accounts exist. A password check is counted in
-- pending_logins before it runs (see session-core's login), so checks that
-- arrive at once can never outnumber the lockout threshold.
CREATE TABLE login_attempts (
    email          TEXT    PRIMARY KEY,  -- lower case
    failed_logins  INTEGER NOT NULL,  -- wrong passwords since the last right one
    pending_logins INTEGER NOT NULL DEFAULT 0,  -- checks under way
    locked_until   INTEGER,              -- NULL: not locked
    updated_at     INTEGER NOT NULL
);
INSERT INTO login_attempts (email, failed_logins, locked_until, updated_at)
    SELECT email, failed_logins, locked_until, updated_at FROM technicians
    WHERE failed_logins > 0 OR locked_until IS NOT NULL;
ALTER TABLE technicians DROP COLUMN failed_logins;
ALTER TABLE technicians DROP COLUMN locked_until;
