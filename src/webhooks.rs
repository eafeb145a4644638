//! `vigil admin webhook ...` and `vigil webhook ...`: wiring and printing.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use audit_db::webhooks::{DeliveryFilter, Webhooks};
use audit_db::{time_us, AuditLog, Source};
use tokio_util::sync::CancellationToken;
use webhook::admin::{EndpointAdmin, NewEndpoint};
use webhook::schedule::SystemClock;
use webhook::worker::{self, Worker};

use crate::cli::{AsAdmin, WebhookAdminCommand, WebhookCommand};

fn admin_for(log: &AuditLog, by: &AsAdmin) -> EndpointAdmin {
    let (name, source) = crate::admin::acting(by);
    EndpointAdmin::new(log.clone(), &name, source)
}

/// `vigil admin webhook ...`
pub async fn admin(log: &AuditLog, command: WebhookAdminCommand) -> Result<ExitCode> {
    match command {
        WebhookAdminCommand::Add {
            url,
            groups,
            events,
            exclude_chat,
            ca,
            allow_private,
            allow_http,
            description,
            by,
        } => {
            let ca_pem = match ca {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading --ca {}", path.display()))?,
                ),
                None => None,
            };
            let e = admin_for(log, &by)
                .add(NewEndpoint {
                    url,
                    groups,
                    events: events.into_iter().map(|e| e.trim().to_owned()).collect(),
                    exclude_chat,
                    ca_pem,
                    allow_private,
                    allow_http,
                    description,
                })
                .await?;
            println!("endpoint {} added: {}", e.id, e.url);
            println!("signing secret (shown only now): {}", e.secret);
        }
        WebhookAdminCommand::List { json } => {
            let hooks = Webhooks::new(log.store().clone());
            for e in hooks.endpoints().await? {
                if json {
                    println!("{}", serde_json::to_string(&e)?);
                    continue;
                }
                let state = match (&e.disabled, &e.disabled_reason) {
                    (false, _) => "enabled".to_owned(),
                    (true, Some(why)) => format!("disabled ({why})"),
                    (true, None) => "disabled".to_owned(),
                };
                let groups = if e.groups.is_empty() {
                    "every group"
                } else {
                    &e.groups
                };
                println!(
                    "{}  {}  {}  events {}  {}{}{}",
                    e.id,
                    e.url,
                    state,
                    e.events,
                    groups,
                    if e.exclude_chat { "  no chat" } else { "" },
                    if e.description.is_empty() {
                        String::new()
                    } else {
                        format!("  \"{}\"", e.description)
                    }
                );
            }
        }
        WebhookAdminCommand::Disable { id, by } => {
            admin_for(log, &by).set_enabled(&id, false).await?;
            println!("endpoint {id} disabled");
        }
        WebhookAdminCommand::Enable { id, by } => {
            admin_for(log, &by).set_enabled(&id, true).await?;
            println!("endpoint {id} enabled");
        }
        WebhookAdminCommand::Remove { id, by } => {
            admin_for(log, &by).remove(&id).await?;
            println!("endpoint {id} removed");
        }
        WebhookAdminCommand::RotateSecret { id, grace, by } => {
            let secret = admin_for(log, &by).rotate(&id, grace).await?;
            println!("new signing secret (shown only now): {secret}");
            println!(
                "the old secret also signs for {}",
                humantime::format_duration(grace)
            );
        }
        WebhookAdminCommand::Test { id } => {
            let outcome = admin_for(log, &AsAdmin { admin: None }).test(&id).await?;
            let status = outcome
                .status
                .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
            match &outcome.error {
                None => println!("test post delivered: {status} in {} ms", outcome.latency_ms),
                Some(error) => {
                    println!(
                        "test post failed: {error} ({status}, {} ms)",
                        outcome.latency_ms
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the delivery worker on `log`'s database; it stops with `stop`.
pub fn start_worker(log: &AuditLog, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let worker = Worker::new(
        log.clone(),
        Arc::new(SystemClock),
        worker::Config::default(),
        Source::from_stored(format!("webhooks@{host}")),
    );
    tokio::spawn(worker.run(stop))
}

/// `vigil webhook receive`: prints each post as a JSON line until stopped.
pub async fn receive(listen: std::net::SocketAddr, secret: Option<String>) -> Result<ExitCode> {
    use axum::http::{HeaderMap, StatusCode};
    let secret = match secret {
        Some(text) => {
            Some(webhook::sign::Secret::parse(&text).context("--secret is not a whsec_ secret")?)
        }
        None => None,
    };
    let secret = Arc::new(secret);
    let app = axum::Router::new().fallback(axum::routing::post(
        move |headers: HeaderMap, body: axum::body::Bytes| {
            let secret = secret.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let (id, signature) = (header("webhook-id"), header("webhook-signature"));
                let timestamp = header("webhook-timestamp");
                let verified = secret.as_ref().as_ref().map(|s| {
                    timestamp.parse().is_ok_and(|ts: i64| {
                        let skew = (time_us::now() / 1_000_000 - ts).abs();
                        skew <= 300 && webhook::sign::verify(s, &id, ts, &body, &signature)
                    })
                });
                let parsed: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let line = serde_json::json!({
                    "webhook_id": id,
                    "timestamp": timestamp,
                    "signature": signature,
                    "type": parsed["type"],
                    "signature_verified": verified,
                    // As received, byte for byte: what a signature is checked against.
                    "body": String::from_utf8_lossy(&body),
                });
                println!("{line}");
                if verified == Some(false) {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                }
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    // Scripts (and vigil demo) wait for this line.
    println!("listening on {}", listener.local_addr()?);
    let signal = crate::gateway::shutdown_signal()?;
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await
        .context("serving webhook posts")?;
    Ok(ExitCode::SUCCESS)
}

/// `vigil webhook ...`
pub async fn run(log: &AuditLog, command: WebhookCommand) -> Result<ExitCode> {
    let hooks = Webhooks::new(log.store().clone());
    match command {
        WebhookCommand::Receive { listen, secret } => return receive(listen, secret).await,
        WebhookCommand::Run => {
            let stop = CancellationToken::new();
            let signal = crate::gateway::shutdown_signal()?;
            let worker = start_worker(log, stop.clone());
            // Scripts and tests wait for this line.
            println!("delivering webhooks");
            signal.await;
            stop.cancel();
            let _ = worker.await;
            println!("webhook delivery stopped");
        }
        WebhookCommand::Deliveries {
            endpoint,
            status,
            since,
            limit,
            json,
        } => {
            let filter = DeliveryFilter {
                endpoint,
                status: status.map(|s| s.as_str().to_owned()),
                since,
                ..DeliveryFilter::default()
            };
            for m in hooks.messages(&filter, i64::from(limit)).await? {
                let attempts = hooks.attempts(&m.id).await?;
                if json {
                    let mut v = serde_json::to_value(&m)?;
                    v["attempt_log"] = serde_json::to_value(&attempts)?;
                    println!("{v}");
                    continue;
                }
                println!(
                    "{}  {}  {}  {}  {}  attempts {}{}",
                    time_us::format(m.created_at),
                    m.id,
                    m.endpoint_id,
                    m.event_type,
                    m.status,
                    m.attempts,
                    m.last_error
                        .as_deref()
                        .map(|e| format!("  last error: {e}"))
                        .unwrap_or_default()
                );
                for a in attempts {
                    println!(
                        "    #{} {}  {}  {} ms{}",
                        a.attempt,
                        time_us::format(a.at),
                        a.http_status
                            .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}")),
                        a.latency_ms,
                        a.error.map(|e| format!("  {e}")).unwrap_or_default()
                    );
                }
            }
        }
        WebhookCommand::Replay {
            delivery,
            endpoint,
            since,
            until,
        } => {
            if let Some(id) = &delivery {
                if hooks
                    .messages(
                        &DeliveryFilter {
                            message: Some(id.clone()),
                            ..Default::default()
                        },
                        1,
                    )
                    .await?
                    .is_empty()
                {
                    anyhow::bail!("no webhook delivery has the id {id:?}");
                }
            }
            if let Some(id) = &endpoint {
                hooks.existing(id).await?;
            }
            let filter = DeliveryFilter {
                endpoint,
                message: delivery,
                since,
                until,
                ..DeliveryFilter::default()
            };
            let n = admin_for(log, &AsAdmin { admin: None })
                .replay(&filter)
                .await?;
            println!("{n} post(s) queued again with their original ids");
        }
    }
    Ok(ExitCode::SUCCESS)
}
