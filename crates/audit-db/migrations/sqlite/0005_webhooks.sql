-- CRM webhooks. An endpoint's cursor is the last audit seq it has looked
-- at: a dispatcher turns the events after it into messages and moves it on
-- in one transaction, so a message exists as soon as its event is durable
-- and a crash at any moment only makes the next dispatcher look again
-- (UNIQUE (endpoint_id, event_seq) keeps that idempotent).
CREATE TABLE webhook_endpoints (
    id               TEXT    PRIMARY KEY,          -- "wh_" + 16 hex digits
    url              TEXT    NOT NULL,
    groups           TEXT    NOT NULL,             -- comma-separated; empty: every group
    events           TEXT    NOT NULL,             -- comma-separated webhook types
    exclude_chat     BOOLEAN NOT NULL,
    ca_pem           TEXT,                         -- extra trust anchors for its TLS
    allow_private    BOOLEAN NOT NULL,
    allow_http       BOOLEAN NOT NULL,
    description      TEXT    NOT NULL,
    secret           TEXT    NOT NULL,             -- whsec_...
    old_secret       TEXT,                         -- still signing until old_secret_until
    old_secret_until BIGINT,
    disabled         BOOLEAN NOT NULL,
    disabled_reason  TEXT,
    cursor_seq       BIGINT  NOT NULL,
    failing_since    BIGINT,                       -- first failure since the last success
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

-- One post to one endpoint; its id is the Standard Webhooks webhook-id,
-- the same on every attempt and replay. The body is kept as first built,
-- so every attempt sends the same bytes.
CREATE TABLE webhook_messages (
    id              TEXT    PRIMARY KEY,
    endpoint_id     TEXT    NOT NULL,
    event_seq       BIGINT  NOT NULL,              -- 0 for test posts
    event_type      TEXT    NOT NULL,
    session_id      TEXT,
    body            TEXT    NOT NULL,
    status          TEXT    NOT NULL,              -- pending, delivered, failed
    attempts        INTEGER NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    finished_at     BIGINT
);
CREATE UNIQUE INDEX webhook_messages_event ON webhook_messages (endpoint_id, event_seq) WHERE event_seq > 0;
-- A worker's lease and the due check read one endpoint's pending posts in
-- due order: a dead endpoint's 100,000 must not be scanned for a live one's.
CREATE INDEX webhook_messages_due ON webhook_messages (endpoint_id, status, next_attempt_at, created_at);
CREATE INDEX webhook_messages_created ON webhook_messages (created_at);

-- Every attempt, as the delivery log operators read.
CREATE TABLE webhook_attempts (
    message_id  TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    at          BIGINT  NOT NULL,
    http_status INTEGER,
    latency_ms  BIGINT  NOT NULL,
    error       TEXT,
    response    TEXT,                              -- the first 1 KiB
    PRIMARY KEY (message_id, attempt)
);
