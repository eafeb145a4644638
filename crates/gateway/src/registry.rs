//! The gateway's sessions in memory: GUIDs, PINs, technicians' queues, and
//! each session's state from creation to pairing. Every transition happens
//! under one lock, so a PIN is used once and a session is picked up once.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use audit_db::accounts::Group;
use audit_db::event::{JoinMethod, JoinRefusal};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use protocol::wire::Waiting;

/// What the applet's task receives when its session is picked up.
#[derive(Debug)]
pub(crate) struct Pickup {
    pub certificate: String,
    pub console: oneshot::Receiver<super::Attaching>,
}

/// A session the registry knows.
#[derive(Debug)]
struct Entry {
    technician: String,
    /// When it was created (microseconds since the epoch).
    created_us: i64,
    group: Group,
    expires: Instant,
    pin: Option<String>,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Created; no applet yet.
    Open,
    /// An applet joined and waits in the technician's queue.
    Waiting {
        waiting: Waiting,
        csr: String,
        notify: oneshot::Sender<Pickup>,
    },
    /// Picked up: certificates issued, the console's session link is awaited.
    PickedUp {
        ticket: String,
        console: oneshot::Sender<super::Attaching>,
    },
    /// Both links are relayed; `end` ends the relay.
    Live { end: CancellationToken },
}

/// A session that was joined: what the applet's task needs.
#[derive(Debug)]
pub(crate) struct Joined {
    pub guid: Uuid,
    pub technician: String,
    pub pickup: oneshot::Receiver<Pickup>,
}

/// What a pickup takes from the registry to finish outside the lock.
#[derive(Debug)]
pub(crate) struct PickingUp {
    pub applet_csr: String,
    pub notify: oneshot::Sender<Pickup>,
    pub ticket: String,
    pub console: oneshot::Receiver<super::Attaching>,
}

/// A session could not be created.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
    #[error("no randomness from the operating system: {0}")]
    Random(#[from] getrandom::Error),
    #[error("no free PIN: too many sessions are waiting to be joined")]
    NoFreePin,
}

/// A session that ended before it was relayed (it is no longer in the registry).
#[derive(Debug)]
pub(crate) struct Dropped {
    pub guid: Uuid,
    pub technician: String,
}

/// A join that was refused: how it named the session, why, and what it
/// changed (an expired session dropped, PINs whose guess budget ran out).
#[derive(Debug)]
pub(crate) struct JoinRefused {
    pub via: JoinMethod,
    pub why: JoinRefusal,
    pub dropped: Option<Dropped>,
    pub withdrawn: Vec<Uuid>,
}

/// All sessions of one gateway.
#[derive(Debug)]
pub(crate) struct Registry {
    sessions: HashMap<Uuid, Entry>,
    pins: HashMap<String, Uuid>,
    /// Wrong PINs guessed at this gateway so far, from any address.
    wrong_pins: u64,
    /// Sessions given a PIN, in the order they got it, each with the
    /// `wrong_pins` count at which its PIN is withdrawn.
    budgets: VecDeque<(u64, Uuid)>,
    /// Wrong PINs a PIN survives.
    pin_guess_budget: u64,
}

impl Registry {
    /// No sessions yet; every PIN is withdrawn after `pin_guess_budget`
    /// wrong PINs guessed after it was issued.
    pub fn new(pin_guess_budget: u32) -> Self {
        Self {
            sessions: HashMap::new(),
            pins: HashMap::new(),
            wrong_pins: 0,
            budgets: VecDeque::new(),
            pin_guess_budget: u64::from(pin_guess_budget),
        }
    }

    /// Records a new session with a fresh random GUID and an unused PIN.
    pub fn create(
        &mut self,
        technician: &str,
        group: Group,
        expires: Instant,
    ) -> Result<(Uuid, String), CreateError> {
        let guid = loop {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes)?;
            let guid = Uuid::from_bytes(bytes);
            if !self.sessions.contains_key(&guid) {
                break guid;
            }
        };
        // With a million PINs, a free one is found at once unless nearly all
        // are taken; then creation fails instead of spinning.
        let pin = (0..64)
            .map(|_| random_pin())
            .find(|pin| pin.as_ref().map_or(true, |p| !self.pins.contains_key(p)))
            .ok_or(CreateError::NoFreePin)??;
        self.pins.insert(pin.clone(), guid);
        // Budgets of PINs already used, expired or withdrawn are dropped from
        // the front (PINs end in about the order they began), so the queue
        // holds about one PIN lifetime's sessions, not every session ever.
        while let Some(&(_, oldest)) = self.budgets.front() {
            if self.sessions.get(&oldest).is_some_and(|e| e.pin.is_some()) {
                break;
            }
            self.budgets.pop_front();
        }
        self.budgets
            .push_back((self.wrong_pins + self.pin_guess_budget, guid));
        self.sessions.insert(
            guid,
            Entry {
                technician: technician.to_owned(),
                created_us: audit_db::time_us::now(),
                group,
                expires,
                pin: Some(pin.clone()),
                state: State::Open,
            },
        );
        Ok((guid, pin))
    }

    /// An applet joins by PIN (six digits) or GUID. The PIN is spent whatever
    /// happens next; an expired session is removed and reported as expired.
    /// A wrong PIN counts against every PIN issued: those whose guess budget
    /// it spends are withdrawn (their sessions stay, joinable by GUID).
    pub fn join(
        &mut self,
        code: &str,
        csr: String,
        ip: IpAddr,
        joined_us: i64,
        now: Instant,
    ) -> Result<Joined, JoinRefused> {
        let refused = |via, why, dropped| JoinRefused {
            via,
            why,
            dropped,
            withdrawn: Vec::new(),
        };
        let (guid, via) = match Uuid::parse_str(code) {
            Ok(guid) => (guid, JoinMethod::Guid),
            Err(_) => match self.pins.remove(code.trim()) {
                Some(guid) => (guid, JoinMethod::Pin),
                None => {
                    return Err(JoinRefused {
                        withdrawn: self.wrong_pin(),
                        ..refused(JoinMethod::Pin, JoinRefusal::Unknown, None)
                    })
                }
            },
        };
        let Some(entry) = self.sessions.get_mut(&guid) else {
            return Err(refused(via, JoinRefusal::Unknown, None));
        };
        if !matches!(entry.state, State::Open) {
            return Err(refused(via, JoinRefusal::Unknown, None));
        }
        if now >= entry.expires {
            let dropped = self.remove_open(guid);
            return Err(refused(via, JoinRefusal::Expired, dropped));
        }
        if let Some(pin) = entry.pin.take() {
            self.pins.remove(&pin);
        }
        let (notify, pickup) = oneshot::channel();
        entry.state = State::Waiting {
            waiting: Waiting {
                guid,
                joined_us,
                ip,
                via,
            },
            csr,
            notify,
        };
        Ok(Joined {
            guid,
            technician: entry.technician.clone(),
            pickup,
        })
    }

    /// Counts a wrong PIN and withdraws the PINs whose budget it spent.
    fn wrong_pin(&mut self) -> Vec<Uuid> {
        self.wrong_pins += 1;
        let mut withdrawn = Vec::new();
        while let Some(&(end, guid)) = self.budgets.front() {
            if end > self.wrong_pins {
                break;
            }
            self.budgets.pop_front();
            if let Some(pin) = self.sessions.get_mut(&guid).and_then(|e| e.pin.take()) {
                self.pins.remove(&pin);
                withdrawn.push(guid);
            }
        }
        withdrawn
    }

    /// The applets waiting for `technician`, oldest first.
    pub fn queue(&self, technician: &str) -> Vec<Waiting> {
        let mut waiting: Vec<_> = self
            .sessions
            .values()
            .filter(|e| e.technician == technician)
            .filter_map(|e| match &e.state {
                State::Waiting { waiting, .. } => Some(waiting.clone()),
                _ => None,
            })
            .collect();
        waiting.sort_by_key(|w| w.joined_us);
        waiting
    }

    /// When `guid` was created, if this gateway still holds it.
    pub fn created_us(&self, guid: Uuid) -> Option<i64> {
        self.sessions.get(&guid).map(|e| e.created_us)
    }

    /// Whether `guid` waits in `technician`'s queue.
    pub fn is_waiting_for(&self, technician: &str, guid: Uuid) -> bool {
        self.sessions
            .get(&guid)
            .is_some_and(|e| e.technician == technician && matches!(e.state, State::Waiting { .. }))
    }

    /// `technician` picks up `guid`, which must be waiting in their queue.
    pub fn pick_up(&mut self, technician: &str, guid: Uuid) -> Option<PickingUp> {
        let entry = self
            .sessions
            .get_mut(&guid)
            .filter(|e| e.technician == technician && matches!(e.state, State::Waiting { .. }))?;
        let ticket = random_hex().ok()?;
        let (console_tx, console) = oneshot::channel();
        let State::Waiting { csr, notify, .. } = std::mem::replace(
            &mut entry.state,
            State::PickedUp {
                ticket: ticket.clone(),
                console: console_tx,
            },
        ) else {
            return None;
        };
        Some(PickingUp {
            applet_csr: csr,
            notify,
            ticket,
            console,
        })
    }

    /// The console's session link presents `ticket` for `guid`: the session
    /// goes live. Returns where to hand the link, the token that ends the
    /// relay, and the group (for its address allow-list).
    pub fn attach(
        &mut self,
        guid: Uuid,
        ticket: &str,
    ) -> Option<(oneshot::Sender<super::Attaching>, CancellationToken, Group)> {
        let entry = self.sessions.get_mut(&guid)?;
        match &entry.state {
            State::PickedUp { ticket: t, .. } if t == ticket => {}
            _ => return None,
        }
        let end = CancellationToken::new();
        let State::PickedUp { console, .. } =
            std::mem::replace(&mut entry.state, State::Live { end: end.clone() })
        else {
            return None;
        };
        Some((console, end, entry.group.clone()))
    }

    /// Forgets a session (it ended); returns its technician if it was known.
    pub fn remove(&mut self, guid: Uuid) -> Option<String> {
        let entry = self.sessions.remove(&guid)?;
        if let Some(pin) = entry.pin {
            self.pins.remove(&pin);
        }
        Some(entry.technician)
    }

    fn remove_open(&mut self, guid: Uuid) -> Option<Dropped> {
        self.remove(guid)
            .map(|technician| Dropped { guid, technician })
    }

    /// Removes sessions nobody joined before they expired.
    pub fn expire(&mut self, now: Instant) -> Vec<Dropped> {
        let expired: Vec<Uuid> = self
            .sessions
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Open) && now >= e.expires)
            .map(|(g, _)| *g)
            .collect();
        expired
            .into_iter()
            .filter_map(|g| self.remove_open(g))
            .collect()
    }

    /// Removes every session nobody joined (at shutdown).
    pub fn drain_open(&mut self) -> Vec<Dropped> {
        let open: Vec<Uuid> = self
            .sessions
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Open))
            .map(|(g, _)| *g)
            .collect();
        open.into_iter()
            .filter_map(|g| self.remove_open(g))
            .collect()
    }

    /// Whether `technician` has a session being relayed (which counts as activity).
    pub fn has_live(&self, technician: &str) -> bool {
        self.sessions
            .values()
            .any(|e| e.technician == technician && matches!(e.state, State::Live { .. }))
    }

    /// Ends every live relay (at shutdown, after the grace period).
    pub fn end_all(&self) {
        for e in self.sessions.values() {
            if let State::Live { end } = &e.state {
                end.cancel();
            }
        }
    }
}

/// A uniformly random six-digit PIN from the system CSPRNG.
fn random_pin() -> Result<String, getrandom::Error> {
    // Reject the top of the u32 range so every PIN is equally likely.
    const LIMIT: u32 = u32::MAX - (u32::MAX % 1_000_000);
    loop {
        let n = getrandom::u32()?;
        if n < LIMIT {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

/// 128 random bits as hex (pickup tickets).
fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn group() -> Group {
        Group {
            name: "g".into(),
            permissions: vec![],
            ip_allow: vec![],
            single_prompt: false,
            force_recording: false,
            store_chat: true,
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_pin_joins_once() {
        let mut r = Registry::new(99);
        let now = Instant::now();
        let (guid, pin) = r
            .create("ann", group(), now + Duration::from_secs(60))
            .unwrap();
        assert_eq!(pin.len(), 6);
        let joined = r.join(&pin, "csr".into(), IP, 1, now).unwrap();
        assert_eq!(joined.guid, guid);
        let again = r.join(&pin, "csr".into(), IP, 2, now).unwrap_err();
        assert_eq!(again.why, JoinRefusal::Unknown);
        let by_guid = r
            .join(&guid.to_string(), "csr".into(), IP, 2, now)
            .unwrap_err();
        assert_eq!(
            by_guid.why,
            JoinRefusal::Unknown,
            "a joined session cannot be joined again"
        );
        assert_eq!(r.queue("ann").len(), 1);
        assert!(r.queue("bob").is_empty());
    }

    #[test]
    fn an_expired_pin_is_refused_and_the_session_dropped() {
        let mut r = Registry::new(99);
        let now = Instant::now();
        let (guid, pin) = r.create("ann", group(), now).unwrap();
        let refused = r.join(&pin, "csr".into(), IP, 1, now).unwrap_err();
        assert_eq!(
            (refused.via, refused.why),
            (JoinMethod::Pin, JoinRefusal::Expired)
        );
        assert_eq!(refused.dropped.unwrap().guid, guid);
        assert!(r.expire(now).is_empty());
    }

    #[test]
    fn pickup_needs_the_owner_and_attach_needs_the_ticket() {
        let mut r = Registry::new(99);
        let now = Instant::now();
        let (guid, pin) = r
            .create("ann", group(), now + Duration::from_secs(60))
            .unwrap();
        r.join(&pin, "csr".into(), IP, 1, now).unwrap();
        assert!(r.pick_up("bob", guid).is_none());
        let p = r.pick_up("ann", guid).unwrap();
        assert!(r.pick_up("ann", guid).is_none(), "picked up once");
        assert!(r.attach(guid, "wrong").is_none());
        assert!(!r.has_live("ann"));
        assert!(r.attach(guid, &p.ticket).is_some());
        assert!(r.has_live("ann"));
        assert!(r.attach(guid, &p.ticket).is_none(), "attached once");
    }

    #[test]
    fn a_pin_is_withdrawn_once_its_guess_budget_is_spent() {
        let mut r = Registry::new(3);
        let now = Instant::now();
        let later = now + Duration::from_secs(600);
        let (first, first_pin) = r.create("ann", group(), later).unwrap();
        let wrong = |r: &mut Registry, pins: &[&str]| {
            let pin = (0..1_000_000)
                .map(|n| format!("{n:06}"))
                .find(|p| !pins.contains(&p.as_str()))
                .unwrap();
            r.join(&pin, "csr".into(), IP, 1, now).unwrap_err()
        };
        assert!(wrong(&mut r, &[&first_pin]).withdrawn.is_empty());
        let (second, second_pin) = r.create("ann", group(), later).unwrap();
        let pins = [first_pin.as_str(), second_pin.as_str()];
        assert!(wrong(&mut r, &pins).withdrawn.is_empty());
        // The third wrong PIN since the first was issued spends its budget.
        assert_eq!(wrong(&mut r, &pins).withdrawn, vec![first]);
        let gone = r.join(&first_pin, "csr".into(), IP, 1, now).unwrap_err();
        assert_eq!(gone.why, JoinRefusal::Unknown);
        // That refusal was a wrong PIN too: the second PIN's third.
        assert_eq!(gone.withdrawn, vec![second]);
        // The session itself stays, joinable by its GUID.
        assert!(r.join(&first.to_string(), "csr".into(), IP, 1, now).is_ok());
    }

    #[test]
    fn budgets_of_pins_that_ended_are_forgotten() {
        let mut r = Registry::new(99);
        let now = Instant::now();
        for _ in 0..100 {
            let (_, pin) = r
                .create("ann", group(), now + Duration::from_secs(60))
                .unwrap();
            r.join(&pin, "csr".into(), IP, 1, now).unwrap();
        }
        r.create("ann", group(), now + Duration::from_secs(60))
            .unwrap();
        assert_eq!(r.budgets.len(), 1, "only the PIN still waiting");
    }

    #[test]
    fn pins_are_six_digits() {
        for _ in 0..1000 {
            let pin = random_pin().unwrap();
            assert!(pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
