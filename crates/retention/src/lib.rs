//! Will own retention policy: the online period, zstd archives that keep the
//! hash chain verifiable, purging, and legal holds. Nothing here yet.
#![forbid(unsafe_code)]
