-- Technician accounts, their groups, and access settings. Unlike the audit
-- log these rows change; every change is also an audit event.
CREATE TABLE tech_groups (
    name             TEXT    PRIMARY KEY,
    permissions      TEXT    NOT NULL,  -- comma-separated permission names
    ip_allow         TEXT    NOT NULL,  -- comma-separated CIDRs; empty: anywhere
    single_prompt    BOOLEAN NOT NULL,
    force_recording  BOOLEAN NOT NULL,
    store_chat       BOOLEAN NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

CREATE TABLE technicians (
    email            TEXT    PRIMARY KEY,  -- lower case
    group_name       TEXT    NOT NULL REFERENCES tech_groups (name),
    role             TEXT    NOT NULL,
    password_hash    TEXT    NOT NULL,     -- PHC string (argon2id)
    password_set_at  BIGINT  NOT NULL,
    must_change      BOOLEAN NOT NULL,
    disabled         BOOLEAN NOT NULL,
    failed_logins    BIGINT  NOT NULL,
    locked_until     BIGINT,               -- NULL: not locked
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

-- Typed settings kept as JSON text under a key (e.g. the access policy).
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
