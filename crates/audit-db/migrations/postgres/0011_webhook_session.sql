-- A session's webhook deliveries are listed on its page in the portal.
CREATE INDEX webhook_messages_session ON webhook_messages (session_id, created_at) WHERE session_id IS NOT NULL;
