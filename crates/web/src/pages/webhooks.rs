//! Webhook endpoints and their deliveries (administrators only): add,
//! enable, disable, remove, rotate the secret, send a test post; each
//! delivery with its attempts, and replays that queue a post again with
//! its original id. Changes go through `webhook::admin`, as `vigil admin
//! webhook` makes them. A session's page lists its deliveries (`of_session`).

use std::sync::Arc;
use std::time::Duration;

use audit_db::webhooks::{Attempt, DeliveryFilter, Endpoint, Message, Webhooks};
use audit_db::Source;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use maud::{html, Markup};
use uuid::Uuid;
use webhook::admin::{EndpointAdmin, NewEndpoint};

use super::admin::{self, admin_only, csrf, outcome, Posted, Said};
use super::sessions::some;
use super::when;
use crate::error::WebError;
use crate::visit::Viewer;
use crate::App;

const DOING: &str = "change webhook endpoints";
/// Deliveries listed at most on a page.
const LISTED: i64 = 100;
/// How long a rotated-out secret still signs.
const ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);
const STATUSES: [&str; 3] = ["pending", "delivered", "failed"];

fn acting(app: &App, viewer: &Viewer) -> EndpointAdmin {
    EndpointAdmin::new(
        app.log.clone(),
        &viewer.email,
        Source::web(&app.config.host),
    )
}

/// Which deliveries the page lists.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Shown {
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    status: String,
}

impl Shown {
    fn filter(&self) -> Result<DeliveryFilter, WebError> {
        let status = some(&self.status);
        if let Some(s) = &status {
            if !STATUSES.contains(&s.as_str()) {
                return Err(WebError::BadRequest(format!("no delivery status {s:?}")));
            }
        }
        Ok(DeliveryFilter {
            endpoint: some(&self.endpoint),
            status,
            ..DeliveryFilter::default()
        })
    }
}

/// `GET /admin/webhooks`.
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Query(shown): Query<Shown>,
) -> Result<(StatusCode, Markup), WebError> {
    admin_only(&viewer, "administer webhooks")?;
    render(&app, &viewer, &shown, None).await
}

/// The deliveries with their attempts, as a table.
fn deliveries(
    messages: &[(Message, Vec<Attempt>)],
    endpoints: &[Endpoint],
    replay: Option<&Viewer>,
) -> Markup {
    html! {
        @if messages.is_empty() { p.empty { "No delivery." } } @else {
            table.deliveries {
                thead { tr { th { "Made" } th { "Id" } th { "Endpoint" } th { "Type" } th { "Status" } th { "Attempts" }
                    @if replay.is_some() { th {} } } }
                tbody { @for (m, attempts) in messages { tr data-delivery=(m.id) data-status=(m.status) {
                    td { (when(m.created_at)) }
                    td.mono { (m.id) }
                    td { (endpoints.iter().find(|e| e.id == m.endpoint_id).map_or(m.endpoint_id.as_str(), |e| e.url.as_str())) }
                    td { (m.event_type) }
                    td { span.badge.(match m.status.as_str() { "delivered" => "ok", "failed" => "bad", _ => "warn" }) { (m.status) }
                        @if let Some(e) = &m.last_error { " " span.small { (e) } } }
                    td { ol.attempts { @for a in attempts { li {
                        (when(a.at)) " · "
                        @match a.http_status { Some(s) => { "HTTP " (s) }, None => { "no answer" } }
                        " · " (a.latency_ms) " ms"
                        @if let Some(e) = &a.error { " · " (e) }
                    } } } }
                    @if let Some(viewer) = replay { td {
                        form.inline method="post" action="/admin/webhooks/replay" {
                            (csrf(viewer)) input type="hidden" name="delivery" value=(m.id);
                            button type="submit" { "Replay" }
                        }
                    } }
                } } }
            }
        }
    }
}

/// Messages `filter` selects, newest first, with their attempts.
async fn with_attempts(
    hooks: &Webhooks,
    filter: &DeliveryFilter,
) -> Result<Vec<(Message, Vec<Attempt>)>, WebError> {
    let mut out = Vec::new();
    for m in hooks.messages(filter, LISTED).await? {
        let attempts = hooks.attempts(&m.id).await?;
        out.push((m, attempts));
    }
    Ok(out)
}

/// A session's deliveries, for its page.
pub(crate) async fn of_session(app: &App, session: Uuid) -> Result<Markup, WebError> {
    let hooks = Webhooks::new(app.log.store().clone());
    let filter = DeliveryFilter {
        session: Some(session.to_string()),
        ..DeliveryFilter::default()
    };
    let messages = with_attempts(&hooks, &filter).await?;
    Ok(html! {
        div id="session-deliveries" { (deliveries(&messages, &hooks.endpoints().await?, None)) }
    })
}

async fn render(
    app: &App,
    viewer: &Viewer,
    shown: &Shown,
    said: Option<Said>,
) -> Result<(StatusCode, Markup), WebError> {
    let hooks = Webhooks::new(app.log.store().clone());
    let endpoints = hooks.endpoints().await?;
    let filter = shown.filter()?;
    let messages = with_attempts(&hooks, &filter).await?;
    let action = |id: &str, value: &str, label: &str| {
        let confirm = (value == "remove")
            .then(|| format!("Remove endpoint {id} with its pending posts and delivery log?"));
        html! {
            form.inline method="post" action="/admin/webhooks/endpoint" data-confirm=[confirm] {
                (csrf(viewer)) input type="hidden" name="id" value=(id);
                button type="submit" name="action" value=(value) { (label) }
            }
        }
    };
    let body = html! {
        h2 { "Webhook endpoints" }
        p { "Each endpoint receives signed posts (Standard Webhooks) of the events it subscribes to, from the delivery worker ("
            code { "vigil webhook run" } ", or the gateway). Schema: docs/webhooks.md." }
        table id="endpoints" {
            thead { tr { th { "Id" } th { "URL" } th { "State" } th { "Events" } th { "Groups" } th { "Chat" } th { "Change" } } }
            tbody { @for e in &endpoints { tr data-endpoint=(e.id) {
                td.mono { (e.id) }
                td { (e.url) @if !e.description.is_empty() { br; span.small { (e.description) } } }
                td { @if e.disabled { span.badge.bad { "disabled" } @if let Some(why) = &e.disabled_reason { " " span.small { (why) } } }
                     @else if e.failing_since.is_some() { span.badge.warn { "failing" } }
                     @else { span.badge.ok { "enabled" } } }
                td { (e.events) }
                td { @if e.groups.is_empty() { "every group" } @else { (e.groups) } }
                td { @if e.exclude_chat { "left out" } @else { "included" } }
                td {
                    @if e.disabled { (action(&e.id, "enable", "Enable")) } @else { (action(&e.id, "disable", "Disable")) }
                    (action(&e.id, "test", "Send a test post"))
                    (action(&e.id, "rotate", "Rotate the secret"))
                    (action(&e.id, "remove", "Remove"))
                    form.inline method="post" action="/admin/webhooks/replay" {
                        (csrf(viewer)) input type="hidden" name="endpoint" value=(e.id);
                        input type="hidden" name="status" value="failed";
                        button type="submit" { "Replay its failed posts" }
                    }
                }
            } } }
        }
        h3 { "Add an endpoint" }
        form.group method="post" action="/admin/webhooks/endpoint" id="add-endpoint" {
            (csrf(viewer)) input type="hidden" name="action" value="add";
            label { "URL (https)" input type="url" name="url" id="w-url" required; }
            label { "Events (comma-separated; blank: session.started, session.ended)" input type="text" name="events" id="w-events"; }
            label { "Groups (comma-separated; blank: every group)" input type="text" name="groups"; }
            label { "Description" input type="text" name="description"; }
            label { "Trusted CA certificates (PEM; blank: the system's)" textarea name="ca" rows="3" {} }
            label.check { input type="checkbox" name="exclude_chat"; "leave chat transcripts out" }
            label.check { input type="checkbox" name="allow_private" id="w-private"; "may be on a private or loopback address" }
            label.check { input type="checkbox" name="allow_http" id="w-http"; "may be plain http (testing only)" }
            button type="submit" id="w-add" { "Add" }
        }
        h2 { "Deliveries" }
        form.filters method="get" action="/admin/webhooks" {
            label { "Endpoint" select name="endpoint" {
                option value="" { "all" }
                @for e in &endpoints { option value=(e.id) selected[shown.endpoint == e.id] { (e.url) } }
            } }
            label { "Status" select name="status" {
                option value="" { "any" }
                @for s in STATUSES { option value=(s) selected[shown.status == s] { (s) } }
            } }
            button type="submit" { "Show" }
        }
        div id="deliveries" { (deliveries(&messages, &endpoints, Some(viewer))) }
        @if messages.len() as i64 >= LISTED { p.message.info { "The newest " (LISTED) " are listed." } }
    };
    Ok(admin::page(
        "Webhooks",
        "/admin/webhooks",
        viewer,
        said,
        body,
    ))
}

/// `POST /admin/webhooks/endpoint`: add, enable, disable, remove, rotate, test.
pub(crate) async fn endpoint(
    State(app): State<Arc<App>>,
    Posted { viewer, fields: f }: Posted,
) -> Result<(StatusCode, Markup), WebError> {
    admin_only(&viewer, DOING)?;
    let admin = acting(&app, &viewer);
    let id = f.get("id");
    let result = match f.get("action") {
        "add" => admin
            .add(NewEndpoint {
                url: f.get("url").to_owned(),
                groups: f.list("groups"),
                events: f.list("events"),
                exclude_chat: f.checked("exclude_chat"),
                ca_pem: f.some("ca").map(str::to_owned),
                allow_private: f.checked("allow_private"),
                allow_http: f.checked("allow_http"),
                description: f.get("description").to_owned(),
            })
            .await
            .map(|e| {
                format!(
                    "endpoint {} added for {}; its signing secret, shown only now: {}",
                    e.id, e.url, e.secret
                )
            }),
        "enable" => admin
            .set_enabled(id, true)
            .await
            .map(|()| format!("endpoint {id} enabled")),
        "disable" => admin
            .set_enabled(id, false)
            .await
            .map(|()| format!("endpoint {id} disabled")),
        "remove" => admin
            .remove(id)
            .await
            .map(|()| format!("endpoint {id} removed with its pending posts")),
        "rotate" => admin.rotate(id, ROTATION_GRACE).await.map(|secret| {
            format!("new signing secret of {id}, shown only now: {secret} (the old one also signs for 24 hours)")
        }),
        "test" => admin.test(id).await.map(|o| {
            let answer = o
                .status
                .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
            match &o.error {
                None => format!("test post to {id} delivered: {answer} in {} ms", o.latency_ms),
                Some(e) => format!("test post to {id} failed: {e} ({answer}, {} ms)", o.latency_ms),
            }
        }),
        other => return Err(WebError::BadRequest(format!("no action {other:?}"))),
    };
    let said = outcome(result)?;
    render(&app, &viewer, &Shown::default(), Some(said)).await
}

/// `POST /admin/webhooks/replay`: one delivery, or an endpoint's by status.
pub(crate) async fn replay(
    State(app): State<Arc<App>>,
    Posted { viewer, fields: f }: Posted,
) -> Result<(StatusCode, Markup), WebError> {
    admin_only(&viewer, DOING)?;
    let shown = Shown {
        endpoint: f.get("endpoint").to_owned(),
        status: f.get("status").to_owned(),
    };
    let filter = DeliveryFilter {
        message: f.some("delivery").map(str::to_owned),
        ..shown.filter()?
    };
    if filter.message.is_none() && filter.endpoint.is_none() {
        let refused = Said::Refused("say which delivery or endpoint to replay".into());
        return render(&app, &viewer, &shown, Some(refused)).await;
    }
    let said = match acting(&app, &viewer).replay(&filter).await {
        Ok(0) => Said::Refused("no delivery matched, so none was queued".into()),
        result => {
            outcome(result.map(|n| format!("{n} post(s) queued again with their original ids")))?
        }
    };
    render(&app, &viewer, &shown, Some(said)).await
}
