//! Password hashing off the async threads, in bounded memory: a fixed pool
//! of threads, each holding one argon2 working area allocated once, fed by a
//! bounded queue. A check that finds the queue full is refused as [`Busy`]
//! instead of waiting, so a burst of logins costs a known amount of memory
//! (threads × 19 MiB) and never more.
//!
//! Allocating the 19 MiB per check instead (what `argon2` does by default)
//! leaves each blocking thread's malloc arena holding freed working areas:
//! a burst of failed logins grew the gateway from 60 MB to 1.16 GB.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::password_hash::PasswordHash;
use argon2::{Argon2, Block, Params};
use tokio::sync::oneshot;

use crate::auth::{self, HashError};

/// The queue is full: the check was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks are waiting; try again shortly")]
pub struct Busy;

/// A password hash could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HashFailed {
    /// The queue is full.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Hashing itself failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The pool's threads are gone.
    #[error("the password hashing threads stopped")]
    Stopped,
}

enum Job {
    Verify {
        hash: String,
        password: String,
        reply: oneshot::Sender<bool>,
    },
    Hash {
        password: String,
        reply: oneshot::Sender<Result<String, HashError>>,
    },
}

/// A pool of password-hashing threads. Dropping it lets the threads end
/// once the queue is drained.
#[derive(Debug)]
pub struct Hasher {
    queue: SyncSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.write_str(match self {
            Job::Verify { .. } => "Job::Verify",
            Job::Hash { .. } => "Job::Hash",
        })
    }
}

impl Hasher {
    /// `workers` threads (at least one) and room for `queue` checks waiting.
    pub fn start(workers: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(queue);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..workers.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("vigil-hasher-{n}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Self { queue: tx })
    }

    /// Whether `password` matches the PHC string `hash`; [`Busy`] when the
    /// queue is full. A malformed hash matches nothing.
    pub async fn verify(&self, hash: &str, password: &str) -> Result<bool, Busy> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify {
            hash: hash.to_owned(),
            password: password.to_owned(),
            reply,
        })?;
        // A worker that panicked dropped the reply: no match.
        Ok(answer.await.unwrap_or(false))
    }

    /// The argon2id PHC string of `password`, with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, HashFailed> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash {
            password: password.to_owned(),
            reply,
        })?;
        Ok(answer.await.map_err(|_| HashFailed::Stopped)??)
    }

    fn submit(&self, job: Job) -> Result<(), Busy> {
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            // A stopped pool answers nothing, which the caller sees as a failed check.
            Err(TrySendError::Full(_)) => Err(Busy),
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }
}

/// One worker: takes jobs until the pool is dropped, hashing in its own
/// working area (grown only for a stored hash with a larger memory cost).
fn work(queue: &Mutex<Receiver<Job>>) {
    let mut memory = vec![Block::default(); auth::ARGON2_MEMORY_KIB as usize];
    loop {
        // The lock is held only while waiting for the next job; a poisoned
        // lock still guards a usable receiver.
        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = job else { return };
        match job {
            Job::Verify {
                hash,
                password,
                reply,
            } => {
                let _ = reply.send(verify_in(&mut memory, &hash, &password));
            }
            Job::Hash { password, reply } => {
                let _ = reply.send(auth::hash_password(&password));
            }
        }
    }
}

/// [`auth::verify_password`] in the worker's own memory: the same PHC
/// parsing and constant-time comparison, without allocating the working area.
fn verify_in(memory: &mut Vec<Block>, hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut out,
        &mut memory[..],
    );
    // `Output`'s equality is constant-time.
    computed.is_ok()
        && argon2::password_hash::Output::new(&out).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_agree_with_the_library_and_a_full_queue_is_busy() {
        let hasher = Hasher::start(1, 2).unwrap();
        let hash = hasher.hash("a long enough passphrase").await.unwrap();
        assert!(auth::verify_password(&hash, "a long enough passphrase"));
        assert_eq!(
            hasher.verify(&hash, "a long enough passphrase").await,
            Ok(true)
        );
        assert_eq!(
            hasher.verify(&hash, "a long enough passphrasf").await,
            Ok(false)
        );
        assert_eq!(hasher.verify("not a hash", "x").await, Ok(false));
        // A hash made elsewhere with other parameters still verifies.
        let other = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            Params::new(32 * 1024, 1, 1, None).unwrap(),
        );
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let bigger = other.hash_password(b"pw", &salt).unwrap().to_string();
        assert_eq!(hasher.verify(&bigger, "pw").await, Ok(true));
        assert_eq!(hasher.verify(&bigger, "pW").await, Ok(false));

        // One worker, two waiting: of ten submitted at once, some are refused.
        let checks: Vec<_> = (0..10).map(|_| hasher.verify(&hash, "nope")).collect();
        let results = futures::future::join_all(checks).await;
        assert!(results.contains(&Err(Busy)), "{results:?}");
        assert!(results.contains(&Ok(false)), "{results:?}");
    }
}
