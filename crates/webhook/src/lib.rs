//! Will own the CRM webhook outbox in the audit database, Standard Webhooks
//! signing, and the at-least-once delivery worker with retries and replay.
//! Nothing here yet.
#![forbid(unsafe_code)]
