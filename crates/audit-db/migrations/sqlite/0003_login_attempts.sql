-- Failed logins are counted per email tried, whether or not an account has
-- it: a login for an unknown email runs the same statements and is locked
-- after as many failures as a real one, so neither the timing nor the
-- answers tell which accounts exist. A row is a reservation counter: a
-- password check takes a unit before it runs (see session-core's login).
CREATE TABLE login_attempts (
    email          TEXT    PRIMARY KEY,  -- lower case
    failed_logins  INTEGER NOT NULL,
    locked_until   INTEGER,              -- NULL: not locked
    updated_at     INTEGER NOT NULL
);
INSERT INTO login_attempts (email, failed_logins, locked_until, updated_at)
    SELECT email, failed_logins, locked_until, updated_at FROM technicians
    WHERE failed_logins > 0 OR locked_until IS NOT NULL;
ALTER TABLE technicians DROP COLUMN failed_logins;
ALTER TABLE technicians DROP COLUMN locked_until;
