//! The delivery worker: one task per endpoint, so a dead or slow CRM
//! delays no other. Each task turns new audit events into messages
//! (moving the endpoint's cursor in the same transaction), leases the
//! messages that are due, posts them, records every attempt, schedules
//! retries and audits every final outcome as `webhook.delivery`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use audit_db::event::WebhookDelivery;
use audit_db::webhooks::{Attempt, Endpoint, Message, NewMessage, Next, Webhooks};
use audit_db::{Actor, AuditLog, EventKind, NewEvent, Source};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::deliver::{Outcome, Target};
use crate::payload::{Builder, Subscription};
use crate::schedule::{self, Clock};
use crate::sign::Secret;
use crate::ssrf;

/// How the worker paces itself.
#[derive(Clone, Debug)]
pub struct Config {
    /// Messages leased at once per endpoint.
    pub batch: i64,
    /// Posts in flight at once per endpoint.
    pub concurrency: usize,
    /// How long a lease lasts: longer than a batch can take, so that
    /// another worker does not post the same message while this one still is.
    pub lease: Duration,
    /// How often the endpoint list, and the log (without a wake-up from an
    /// in-process writer), are looked at.
    pub poll: Duration,
    /// Audit events read per dispatch step.
    pub dispatch_page: i64,
    /// The whole of one attempt.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            batch: 64,
            concurrency: 16,
            lease: Duration::from_secs(5 * 60),
            poll: Duration::from_millis(200),
            dispatch_page: 500,
            timeout: crate::deliver::TIMEOUT,
        }
    }
}

/// Something the worker could not do; logged, and tried again.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The database.
    #[error(transparent)]
    Db(#[from] audit_db::Error),
    /// Building a body from the log.
    #[error(transparent)]
    Build(#[from] crate::payload::BuildError),
}

/// The delivery worker of one process.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    log: AuditLog,
    hooks: Webhooks,
    clock: Arc<dyn Clock>,
    owner: String,
    config: Config,
    appended: Option<watch::Receiver<i64>>,
    source: Source,
}

/// What one [`Worker::step`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Messages made from new events.
    pub dispatched: usize,
    /// Posts attempted.
    pub attempted: usize,
    /// Of which delivered.
    pub delivered: usize,
}

impl Worker {
    /// A worker over `log`'s database. `owner` names it in leases (unique
    /// per process); `source` is what its audit events say reported them.
    pub fn new(log: AuditLog, clock: Arc<dyn Clock>, config: Config, source: Source) -> Self {
        let hooks = Webhooks::new(log.store().clone());
        Self {
            inner: Arc::new(Inner {
                appended: Some(log.appended()),
                log,
                hooks,
                clock,
                owner: format!("{}-{}", std::process::id(), Uuid::new_v4().simple()),
                config,
                source,
            }),
        }
    }

    /// Runs until `stop`: one task per enabled endpoint, started and
    /// stopped as endpoints are added, enabled, disabled and removed.
    pub async fn run(self, stop: CancellationToken) {
        let mut tasks: HashMap<String, (CancellationToken, tokio::task::JoinHandle<()>)> =
            HashMap::new();
        loop {
            match self.inner.hooks.endpoints().await {
                Ok(endpoints) => {
                    let live: Vec<&Endpoint> = endpoints.iter().filter(|e| !e.disabled).collect();
                    tasks.retain(|id, (token, task)| {
                        let keep = live.iter().any(|e| &e.id == id) && !task.is_finished();
                        if !keep {
                            token.cancel();
                        }
                        keep
                    });
                    for e in live {
                        if !tasks.contains_key(&e.id) {
                            let token = stop.child_token();
                            let task = tokio::spawn(
                                self.clone().endpoint_task(e.id.clone(), token.clone()),
                            );
                            tasks.insert(e.id.clone(), (token, task));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading webhook endpoints"),
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.inner.config.poll * 5) => {}
            }
        }
        // Every task has stopped writing before the log may close.
        for (_, (token, task)) in tasks {
            token.cancel();
            let _ = task.await;
        }
    }

    /// One endpoint's loop: dispatch, deliver what is due, wait.
    async fn endpoint_task(self, id: String, stop: CancellationToken) {
        let mut builder = Builder::new(self.inner.log.store().clone());
        let mut appended = self.inner.appended.clone();
        let mut target: Option<(String, Option<String>, Target)> = None;
        // Set when every post of a round failed: the endpoint is down, and
        // its other due posts wait until then instead of failing as fast as
        // they can be leased (a dead endpoint with 100,000 queued would
        // otherwise keep the database busy for every other endpoint).
        // Dispatching goes on meanwhile.
        let mut resting_until: Option<tokio::time::Instant> = None;
        while !stop.is_cancelled() {
            let deliver = resting_until.is_none_or(|t| tokio::time::Instant::now() >= t);
            // A stop abandons the round: a post under way is tried again
            // once its lease runs out, with the same webhook-id.
            let round = tokio::select! {
                () = stop.cancelled() => break,
                r = self.endpoint_round(&id, &mut builder, &mut target, deliver) => r,
            };
            let step = match round {
                Ok(Some(step)) => step,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(endpoint = %id, error = %e, "webhook worker");
                    Step::default()
                }
            };
            if step.attempted > 0 {
                resting_until = (step.delivered == 0)
                    .then(|| tokio::time::Instant::now() + schedule::RETRY_AFTER[0]);
            }
            if step.dispatched > 0 || (step.attempted > 0 && step.delivered > 0) {
                continue;
            }
            let mut wait = self.idle_wait(&id).await;
            if let Some(t) = resting_until {
                wait = wait.max(t.saturating_duration_since(tokio::time::Instant::now()));
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
                _ = changed(&mut appended) => {}
            }
        }
    }

    /// How long an idle endpoint task may sleep: until its next retry is
    /// due, at most one poll.
    async fn idle_wait(&self, id: &str) -> Duration {
        let poll = self.inner.config.poll;
        match self.inner.hooks.next_due(id).await {
            Ok(Some(due)) => {
                let left = due - self.inner.clock.now_us();
                Duration::from_micros(left.clamp(0, poll.as_micros() as i64) as u64)
            }
            _ => poll,
        }
    }

    /// Dispatches and delivers once for every enabled endpoint, at the
    /// clock's now: what the tests drive instead of waiting.
    pub async fn step(&self) -> Result<Step, WorkerError> {
        let mut total = Step::default();
        let mut builder = Builder::new(self.inner.log.store().clone());
        for e in self.inner.hooks.endpoints().await? {
            if e.disabled {
                continue;
            }
            let mut target = None;
            if let Some(step) = self
                .endpoint_round(&e.id, &mut builder, &mut target, true)
                .await?
            {
                total.dispatched += step.dispatched;
                total.attempted += step.attempted;
                total.delivered += step.delivered;
            }
        }
        Ok(total)
    }

    /// One round for one endpoint (posting only if `deliver`); `None` if it
    /// is gone or disabled.
    async fn endpoint_round(
        &self,
        id: &str,
        builder: &mut Builder,
        target: &mut Option<(String, Option<String>, Target)>,
        deliver: bool,
    ) -> Result<Option<Step>, WorkerError> {
        let Some(endpoint) = self.inner.hooks.endpoint(id).await? else {
            return Ok(None);
        };
        if endpoint.disabled {
            return Ok(None);
        }
        let dispatched = self.dispatch(&endpoint, builder).await?;
        let (attempted, delivered) = if deliver {
            self.deliver(&endpoint, target).await?
        } else {
            (0, 0)
        };
        Ok(Some(Step {
            dispatched,
            attempted,
            delivered,
        }))
    }

    /// Turns the events after the endpoint's cursor into messages, a page
    /// at a time, each page stored with the cursor's move.
    async fn dispatch(&self, e: &Endpoint, builder: &mut Builder) -> Result<usize, WorkerError> {
        let sub = Subscription {
            types: e.event_list(),
            groups: e.group_list(),
            exclude_chat: e.exclude_chat,
        };
        let store = self.inner.log.store();
        // Everything up to the head is durable: once the page comes back
        // short, the cursor may move to the head, past events of types
        // nobody here subscribed to, without reading them.
        let head = store.head().await?.seq;
        if head <= e.cursor_seq {
            return Ok(0);
        }
        let filter = audit_db::Filter {
            kinds: crate::payload::audit_types(&sub.types),
            until_seq: Some(head),
            ..audit_db::Filter::default()
        };
        let page = self.inner.config.dispatch_page;
        let events = store.page(&filter, e.cursor_seq, page).await?;
        let last = match events.last() {
            Some(ev) if events.len() as i64 == page => ev.seq,
            _ => head,
        };
        let mut messages = Vec::new();
        for event in &events {
            if let Some(built) = builder.build(&sub, event).await? {
                messages.push(NewMessage {
                    id: Uuid::now_v7(),
                    event_seq: event.seq,
                    event_type: built.kind,
                    session: built.session,
                    body: built.body,
                });
            }
        }
        let now = self.inner.clock.now_us();
        if self
            .inner
            .hooks
            .advance(&e.id, e.cursor_seq, last, &messages, now)
            .await?
        {
            Ok(messages.len())
        } else {
            // Another worker moved the cursor; its messages stand.
            Ok(0)
        }
    }

    /// Leases the endpoint's due messages and posts them.
    async fn deliver(
        &self,
        e: &Endpoint,
        target: &mut Option<(String, Option<String>, Target)>,
    ) -> Result<(usize, usize), WorkerError> {
        let now = self.inner.clock.now_us();
        let lease_until = now + self.inner.config.lease.as_micros() as i64;
        let claimed = self
            .inner
            .hooks
            .claim(
                &e.id,
                &self.inner.owner,
                now,
                lease_until,
                self.inner.config.batch,
            )
            .await?;
        if claimed.is_empty() {
            return Ok((0, 0));
        }
        let secrets = signing_secrets(e, now);
        let client = match client_for(e, target, self.inner.config.timeout) {
            Ok(client) => Some(client),
            Err(reason) => {
                tracing::warn!(endpoint = %e.id, %reason, "webhook endpoint unusable");
                None
            }
        };
        let posts = futures::stream::iter(claimed.into_iter().map(|m| {
            let client = client.clone();
            let secrets = &secrets;
            async move {
                let outcome = match &client {
                    Some(c) => {
                        let ts = self.inner.clock.now_us() / 1_000_000;
                        c.post(&m.id, ts, &m.body, secrets).await
                    }
                    None => Outcome {
                        status: None,
                        retry_after: None,
                        latency_ms: 0,
                        error: Some("the endpoint's URL or CA cannot be used".into()),
                        response: None,
                    },
                };
                (m, outcome)
            }
        }))
        .buffer_unordered(self.inner.config.concurrency)
        .collect::<Vec<_>>()
        .await;
        self.settle(e, posts).await
    }

    /// Records what came of each post, audits final outcomes, and disables
    /// the endpoint if it is gone or has failed everything for too long.
    async fn settle(
        &self,
        e: &Endpoint,
        posts: Vec<(Message, Outcome)>,
    ) -> Result<(usize, usize), WorkerError> {
        let now = self.inner.clock.now_us();
        let clock = self.inner.clock.as_ref();
        let mut results = Vec::with_capacity(posts.len());
        let mut finals = Vec::new();
        let mut gone = false;
        let mut any_ok = false;
        for (m, o) in &posts {
            let attempt = m.attempts + 1;
            gone |= o.gone();
            any_ok |= o.delivered();
            let next = if o.delivered() {
                Next::Delivered
            } else if o.gone() {
                Next::Failed
            } else {
                match schedule::next_attempt(attempt as u32, now, o.asked_wait(), clock) {
                    Some(at) => Next::RetryAt(at),
                    None => Next::Failed,
                }
            };
            results.push((
                Attempt {
                    message_id: m.id.clone(),
                    attempt,
                    at: now,
                    http_status: o.status.map(i32::from),
                    latency_ms: o.latency_ms,
                    error: o.error.clone(),
                    response: o.response.clone(),
                },
                next,
            ));
            if !matches!(next, Next::RetryAt(_)) {
                let outcome = match next {
                    Next::Delivered => "delivered",
                    _ if o.gone() => "endpoint_gone",
                    _ => "exhausted",
                };
                finals.push((m, o, attempt, outcome));
            }
        }
        let recorded = self.inner.hooks.record(&self.inner.owner, &results).await?;
        let failing_since = self.inner.hooks.note_health(&e.id, any_ok, now).await?;
        let events: Vec<NewEvent> = finals
            .into_iter()
            .filter(|(m, ..)| recorded.contains(&m.id))
            .filter_map(|(m, o, attempt, outcome)| {
                let message = Uuid::parse_str(&m.id).ok()?;
                Some(self.audit_event(
                    m,
                    WebhookDelivery {
                        endpoint: e.id.clone(),
                        message,
                        attempt: attempt as u32,
                        status: o.status,
                        delivered: o.delivered(),
                        error: o.error.clone(),
                        outcome: Some(outcome.to_owned()),
                        event_type: Some(m.event_type.clone()),
                    },
                ))
            })
            .collect();
        if !events.is_empty() {
            self.inner.log.append(events).await?;
        }
        let stale = failing_since
            .is_some_and(|since| now - since >= schedule::GIVE_UP_AFTER.as_micros() as i64);
        if gone || stale {
            let reason = if gone {
                "the endpoint answered 410 Gone".to_owned()
            } else {
                "every attempt failed for 5 days".to_owned()
            };
            self.disable(e, &reason).await?;
        }
        let delivered = posts.iter().filter(|(_, o)| o.delivered()).count();
        Ok((posts.len(), delivered))
    }

    async fn disable(&self, e: &Endpoint, reason: &str) -> Result<(), WorkerError> {
        let now = self.inner.clock.now_us();
        self.inner
            .hooks
            .set_disabled(&e.id, true, Some(reason), now)
            .await?;
        tracing::warn!(endpoint = %e.id, %reason, "webhook endpoint disabled");
        let event = NewEvent::now(
            Actor::system("webhooks"),
            self.inner.source.clone(),
            EventKind::WebhookDelivery(WebhookDelivery {
                endpoint: e.id.clone(),
                message: Uuid::nil(),
                attempt: 0,
                status: None,
                delivered: false,
                error: Some(reason.to_owned()),
                outcome: Some("endpoint_disabled".to_owned()),
                event_type: None,
            }),
        );
        self.inner.log.append_one(event).await?;
        Ok(())
    }

    fn audit_event(&self, m: &Message, payload: WebhookDelivery) -> NewEvent {
        let mut event = NewEvent::now(
            Actor::system("webhooks"),
            self.inner.source.clone(),
            EventKind::WebhookDelivery(payload),
        );
        event.session = m
            .session_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok());
        event
    }
}

/// Waits for the writer's next commit; never, without an in-process writer.
async fn changed(rx: &mut Option<watch::Receiver<i64>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// The secrets that sign now: the current one, and the previous one during
/// its grace.
pub fn signing_secrets(e: &Endpoint, now_us: i64) -> Vec<Secret> {
    let mut out: Vec<Secret> = Secret::parse(&e.secret).into_iter().collect();
    if let (Some(old), Some(until)) = (&e.old_secret, e.old_secret_until) {
        if now_us < until {
            out.extend(Secret::parse(old));
        }
    }
    out
}

/// The endpoint's client, made again only when its URL or CA changed.
fn client_for(
    e: &Endpoint,
    cache: &mut Option<(String, Option<String>, Target)>,
    timeout: Duration,
) -> Result<Target, String> {
    if let Some((url, ca, target)) = cache {
        if *url == e.url && *ca == e.ca_pem {
            return Ok(target.clone());
        }
    }
    let url = ssrf::parse(&e.url, e.allow_http, e.allow_private).map_err(|err| err.to_string())?;
    let target = Target::new(url, e.ca_pem.as_deref(), e.allow_private, timeout)
        .map_err(|err| err.to_string())?;
    *cache = Some((e.url.clone(), e.ca_pem.clone(), target.clone()));
    Ok(target)
}
