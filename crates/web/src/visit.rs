//! Web sessions ("visits", so as not to be confused with support
//! sessions): made by a login the gateway's rules accept, named by a random
//! cookie (`__Host-vigil`: HttpOnly, Secure, SameSite=Strict), ended by
//! logout or the policy's idle time, each with its own CSRF token; and what
//! each role may see.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_db::accounts::Role;
use audit_db::event::{Logout, LogoutReason};
use audit_db::{Actor, EventKind, NewEvent, Source};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::error::WebError;
use crate::App;

/// The cookie's name: `__Host-` makes browsers insist on Secure, Path=/ and no Domain.
pub(crate) const COOKIE: &str = "__Host-vigil";

/// A logged-in person, as a request sees them.
#[derive(Clone, Debug)]
pub(crate) struct Viewer {
    /// Their account's email.
    pub email: String,
    /// What they may see and do.
    pub role: Role,
    /// The token every form of theirs must carry.
    pub csrf: String,
    /// Where the request came from.
    pub ip: IpAddr,
}

impl Viewer {
    /// Who their events name.
    pub fn actor(&self) -> Actor {
        match self.role {
            Role::Admin => Actor::admin(&self.email),
            Role::Technician => Actor::technician(&self.email),
            Role::Compliance => Actor::compliance(&self.email),
        }
    }

    /// Whether they may see every session (a technician sees their own).
    pub fn sees_all(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Compliance)
    }

    /// Whether they may see a session run by `technician`.
    pub fn may_see(&self, technician: Option<&str>) -> bool {
        self.sees_all() || technician == Some(self.email.as_str())
    }

    /// Refused unless `token` is this visit's CSRF token.
    pub fn check_csrf(&self, token: Option<&str>) -> Result<(), WebError> {
        let given = token.unwrap_or_default().as_bytes();
        let ours = self.csrf.as_bytes();
        // Compared in constant time: the token is a secret.
        let same = given.len() == ours.len()
            && given
                .iter()
                .zip(ours)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(WebError::Csrf)
        }
    }
}

#[derive(Debug)]
struct Visit {
    viewer: Viewer,
    last_seen: Instant,
}

/// The open visits, by the SHA-256 of their cookie (the cookie itself is
/// kept nowhere on the server).
#[derive(Debug)]
pub(crate) struct Visits {
    idle: Duration,
    open: Mutex<HashMap<[u8; 32], Visit>>,
}

fn random_hex() -> Result<String, WebError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(WebError::internal)?;
    Ok(hex::encode(bytes))
}

fn key(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Visits {
    pub(crate) fn new(idle: Duration) -> Self {
        Self {
            idle,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Visit>> {
        // Each update completes under the lock: a poisoned map is still consistent.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a visit for a login the gateway's rules accepted; returns the
    /// `Set-Cookie` value.
    pub(crate) fn open(&self, email: &str, role: Role, ip: IpAddr) -> Result<String, WebError> {
        let cookie = random_hex()?;
        let viewer = Viewer {
            email: email.to_owned(),
            role,
            csrf: random_hex()?,
            ip,
        };
        self.lock().insert(
            key(&cookie),
            Visit {
                viewer,
                last_seen: Instant::now(),
            },
        );
        Ok(format!(
            "{COOKIE}={cookie}; Path=/; Secure; HttpOnly; SameSite=Strict"
        ))
    }

    /// The visit `cookie` names, if it is open and not idle past the
    /// policy; its idle time starts again. `Err` with the viewer of a
    /// visit that idled out (it is closed).
    fn touch(&self, cookie: &str, ip: IpAddr, now: Instant) -> Result<Option<Viewer>, Viewer> {
        let mut open = self.lock();
        let k = key(cookie);
        let Some(visit) = open.get_mut(&k) else {
            return Ok(None);
        };
        if now.saturating_duration_since(visit.last_seen) > self.idle {
            let gone = open.remove(&k).map(|v| v.viewer);
            return gone.map_or(Ok(None), Err);
        }
        visit.last_seen = now;
        let mut viewer = visit.viewer.clone();
        viewer.ip = ip;
        Ok(Some(viewer))
    }

    /// Ends the visit `cookie` names; its viewer, if it was open.
    pub(crate) fn close(&self, cookie: &str) -> Option<Viewer> {
        self.lock().remove(&key(cookie)).map(|v| v.viewer)
    }

    /// Ends (and audits) every visit, at shutdown.
    pub(crate) async fn end_all(&self, app: &App) {
        let all: Vec<Viewer> = self.lock().drain().map(|(_, v)| v.viewer).collect();
        for viewer in all {
            logout(app, &viewer, LogoutReason::Shutdown).await;
        }
    }

    fn idle_ones(&self, now: Instant) -> Vec<Viewer> {
        let mut open = self.lock();
        let idle = self.idle;
        let gone: Vec<[u8; 32]> = open
            .iter()
            .filter(|(_, v)| now.saturating_duration_since(v.last_seen) > idle)
            .map(|(k, _)| *k)
            .collect();
        gone.iter()
            .filter_map(|k| open.remove(k).map(|v| v.viewer))
            .collect()
    }
}

/// Audits the end of a visit, as the gateway audits a technician's logout.
pub(crate) async fn logout(app: &App, viewer: &Viewer, reason: LogoutReason) {
    let event = NewEvent::now(
        viewer.actor(),
        Source::web(&app.config.host),
        EventKind::Logout(Logout {
            email: viewer.email.clone(),
            ip: viewer.ip,
            reason,
        }),
    );
    if let Err(e) = app.log.append_one(event).await {
        tracing::error!("could not audit the logout of {}: {e}", viewer.email);
    }
}

/// Closes visits idle past the policy, every few seconds, auditing each.
pub(crate) async fn sweep(app: Arc<App>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for viewer in app.visits.idle_ones(Instant::now()) {
            tracing::info!(
                "{} logged off after {:?} idle",
                viewer.email,
                app.visits.idle
            );
            logout(&app, &viewer, LogoutReason::Idle).await;
        }
    }
}

/// The value of the portal's cookie in `headers`, if any.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The address a request came from.
pub(crate) fn peer(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

impl FromRequestParts<Arc<App>> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, WebError> {
        let ip = peer(parts);
        // A page goes back to the login form; the player's requests get 401.
        let out = if parts.uri.path().starts_with("/api/") {
            WebError::Unauthenticated
        } else {
            WebError::LoggedOut
        };
        let Some(value) = cookie(&parts.headers) else {
            return Err(out);
        };
        match app.visits.touch(value, ip, Instant::now()) {
            Ok(Some(viewer)) => Ok(viewer),
            Ok(None) => Err(out),
            Err(idle) => {
                logout(app, &idle, LogoutReason::Idle).await;
                Err(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(role: Role) -> Viewer {
        Viewer {
            email: "ann@example.com".into(),
            role,
            csrf: "a".repeat(64),
            ip: IpAddr::from([127, 0, 0, 1]),
        }
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let v = viewer(Role::Admin);
        assert!(v.check_csrf(Some(&"a".repeat(64))).is_ok());
        assert!(v.check_csrf(Some(&"a".repeat(63))).is_err());
        assert!(v.check_csrf(Some(&format!("{}b", "a".repeat(63)))).is_err());
        assert!(v.check_csrf(None).is_err());
    }

    #[test]
    fn a_technician_sees_only_their_own_sessions() {
        let t = viewer(Role::Technician);
        assert!(t.may_see(Some("ann@example.com")));
        assert!(!t.may_see(Some("bob@example.com")));
        assert!(!t.may_see(None));
        assert!(viewer(Role::Compliance).may_see(Some("bob@example.com")));
    }

    #[test]
    fn visits_idle_out_and_close() {
        let visits = Visits::new(Duration::from_secs(60));
        let ip = IpAddr::from([127, 0, 0, 1]);
        let later = Instant::now() + Duration::from_secs(61);
        let set = visits.open("ann@example.com", Role::Admin, ip).unwrap();
        let value = set
            .split(';')
            .next()
            .and_then(|p| p.split_once('='))
            .unwrap()
            .1
            .to_owned();
        assert!(visits.idle_ones(Instant::now()).is_empty());
        assert!(matches!(visits.touch(&value, ip, later), Err(v) if v.email == "ann@example.com"));
        assert!(
            matches!(visits.touch(&value, ip, later), Ok(None)),
            "closed once idle"
        );
        let set = visits.open("ann@example.com", Role::Admin, ip).unwrap();
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
        assert!(matches!(
            visits.touch(value, ip, Instant::now()),
            Ok(Some(_))
        ));
        assert_eq!(
            visits.idle_ones(later).len(),
            1,
            "the sweeper finds it idle"
        );
        assert!(visits.close(value).is_none(), "and it is closed");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; __Host-vigil=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h), Some("abc"));
        h.insert(header::COOKIE, "__Host-vigilx=abc".parse().unwrap());
        assert_eq!(cookie(&h), None);
    }
}
