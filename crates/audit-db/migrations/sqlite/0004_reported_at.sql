-- The time a console or applet claimed for an event it reported, kept beside
-- occurred_at (which the gateway bounds by the session's life). Hashed from
-- encoding format 2 on; NULL in older rows and in events the gateway saw.
ALTER TABLE audit_events ADD COLUMN reported_at INTEGER;
