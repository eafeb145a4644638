//! The policies (administrators only): the access policy (passwords,
//! lockout, throttling, idle logoff, PINs) and the retention policy (how
//! long each class of record is kept online and archived, by default and
//! per group), changed through the same checks as `vigil admin policy` and
//! `vigil admin retention`.

use std::sync::Arc;

use audit_db::Source;
use axum::extract::State;
use axum::http::StatusCode;
use gateway::auth::Policy as AccessPolicy;
use maud::{html, Markup};
use retention::admin::RetentionAdmin;
use retention::policy::{ClassPolicy, Periods, Policy as RetentionPolicy, RecordClass};

use super::admin::{self, admin_only, csrf, outcome, Fields, Posted, Said};
use crate::error::WebError;
use crate::visit::Viewer;
use crate::App;

const DOING: &str = "change the policies";

/// The access policy's fields: form name, label, and whether blank means "never".
const ACCESS: [(&str, &str, bool); 12] = [
    (
        "min_password_length",
        "Shortest password (characters)",
        false,
    ),
    (
        "password_max_age_days",
        "Password expires after (days; blank: never)",
        true,
    ),
    (
        "lockout_threshold",
        "Failed logins that lock an account",
        false,
    ),
    (
        "lockout_s",
        "A lock lasts (seconds; blank: until unlocked)",
        true,
    ),
    (
        "ip_failure_limit",
        "Failed logins from one address that throttle it",
        false,
    ),
    ("ip_window_s", "…within (seconds)", false),
    ("idle_timeout_s", "Idle logoff (seconds)", false),
    (
        "pin_ttl_s",
        "A session's PIN expires after (seconds)",
        false,
    ),
    (
        "pin_failure_limit",
        "Wrong PINs from one address that throttle it",
        false,
    ),
    ("pin_window_s", "…within (seconds)", false),
    (
        "pin_guess_budget",
        "Wrong PINs that withdraw a session's PIN",
        false,
    ),
    (
        "pin_gateway_limit",
        "Wrong PINs gateway-wide that pause PIN joins",
        false,
    ),
];

/// The access policy's fields as the form shows them.
fn access_values(p: &AccessPolicy) -> [String; 12] {
    let never = |v: Option<String>| v.unwrap_or_default();
    [
        p.min_password_length.to_string(),
        never(p.password_max_age_days.map(|v| v.to_string())),
        p.lockout_threshold.to_string(),
        never(p.lockout_s.map(|v| v.to_string())),
        p.ip_failure_limit.to_string(),
        p.ip_window_s.to_string(),
        p.idle_timeout_s.to_string(),
        p.pin_ttl_s.to_string(),
        p.pin_failure_limit.to_string(),
        p.pin_window_s.to_string(),
        p.pin_guess_budget.to_string(),
        p.pin_gateway_limit.to_string(),
    ]
}

/// The access policy the form describes (its ranges are checked when stored).
fn access_from(f: &Fields) -> Result<AccessPolicy, String> {
    let n = |i: usize| ACCESS[i];
    Ok(AccessPolicy {
        min_password_length: f.number(n(0).0, n(0).1)?,
        password_max_age_days: f.optional_number(n(1).0, n(1).1)?,
        lockout_threshold: f.number(n(2).0, n(2).1)?,
        lockout_s: f.optional_number(n(3).0, n(3).1)?,
        ip_failure_limit: f.number(n(4).0, n(4).1)?,
        ip_window_s: f.number(n(5).0, n(5).1)?,
        idle_timeout_s: f.number(n(6).0, n(6).1)?,
        pin_ttl_s: f.number(n(7).0, n(7).1)?,
        pin_failure_limit: f.number(n(8).0, n(8).1)?,
        pin_window_s: f.number(n(9).0, n(9).1)?,
        pin_guess_budget: f.number(n(10).0, n(10).1)?,
        pin_gateway_limit: f.number(n(11).0, n(11).1)?,
    })
}

/// `GET /admin/policy`.
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    viewer: Viewer,
) -> Result<(StatusCode, Markup), WebError> {
    admin_only(&viewer, "see the policies")?;
    render(&app, &viewer, None).await
}

async fn render(
    app: &App,
    viewer: &Viewer,
    said: Option<Said>,
) -> Result<(StatusCode, Markup), WebError> {
    let accounts = app.gate.accounts();
    let access = AccessPolicy::load(accounts)
        .await
        .map_err(WebError::internal)?;
    let retention = RetentionPolicy::load(accounts)
        .await
        .map_err(WebError::internal)?;
    let groups = accounts.groups().await?;
    let values = access_values(&access);
    let class_form = |group: Option<&str>, p: &ClassPolicy| {
        html! {
            form.inline method="post" action="/admin/policy/retention" {
                (csrf(viewer))
                input type="hidden" name="group" value=(group.unwrap_or(""));
                @for class in RecordClass::ALL {
                    @let periods = p.periods(class);
                    label { (class.as_str())
                        input type="text" name=(class.as_str()) size="8"
                            value=(format!("{}+{}", periods.online, periods.archive)); }
                }
                button type="submit" name="action" value="set" { "Save" }
                @if group.is_some() { button type="submit" name="action" value="inherit" { "Use the default" } }
            }
        }
    };
    let body = html! {
        h2 { "Access policy" }
        p { "Applies from the next start of the gateway and the portal." }
        form.group method="post" action="/admin/policy/access" id="access-policy" {
            (csrf(viewer))
            @for ((name, label, _), value) in ACCESS.iter().zip(&values) {
                label { (label) input type="number" min="0" name=(name) id=(format!("p-{name}")) value=(value); }
            }
            button type="submit" id="save-access" { "Save the access policy" }
        }
        h2 { "Retention" }
        p { "How long each class of record is kept: " code { "ONLINE+ARCHIVED" } ", as in "
            code { "2y+2y" } ", " code { "18m+0" } " or " code { "90d+1y" }
            ". Security events are kept at least a year. " a href="/admin/holds" { "Legal holds" }
            " keep what they cover past these periods." }
        table id="retention" {
            thead { tr { th { "Whose" } th { "Periods" } } }
            tbody {
                tr data-group="" { td { "Default" } td { (class_form(None, &retention.default)) } }
                @for g in &groups {
                    @let own = retention.groups.get(&g.name);
                    tr data-group=(g.name) {
                        td { "Group " (g.name) @if own.is_none() { " " span.badge { "default" } } }
                        td { (class_form(Some(&g.name), own.unwrap_or(&retention.default))) }
                    }
                }
            }
        }
    };
    Ok(admin::page("Policy", "/admin/policy", viewer, said, body))
}

/// `POST /admin/policy/access`.
pub(crate) async fn access(
    State(app): State<Arc<App>>,
    Posted { viewer, fields: f }: Posted,
) -> Result<(StatusCode, Markup), WebError> {
    admin_only(&viewer, DOING)?;
    let said = match access_from(&f) {
        Err(refused) => Said::Refused(refused),
        Ok(policy) => {
            let admin = super::accounts::acting(&app, &viewer);
            outcome(admin.set_policy(&policy).await.map(|()| {
                "access policy saved; it applies from the next start of the gateway and the portal"
                    .to_owned()
            }))?
        }
    };
    render(&app, &viewer, Some(said)).await
}

/// `POST /admin/policy/retention`: one group's periods (or the default's), or
/// a group back to the default.
pub(crate) async fn retention(
    State(app): State<Arc<App>>,
    Posted { viewer, fields: f }: Posted,
) -> Result<(StatusCode, Markup), WebError> {
    admin_only(&viewer, DOING)?;
    let mut policy = RetentionPolicy::load(app.gate.accounts())
        .await
        .map_err(WebError::internal)?;
    let group = f.some("group").map(str::to_owned);
    let whose = group
        .as_deref()
        .map_or("the default".to_owned(), |g| format!("group {g}"));
    let changed: Result<(), retention::policy::PolicyError> = match (f.get("action"), &group) {
        ("inherit", Some(g)) => {
            policy.groups.remove(g);
            Ok(())
        }
        ("set", _) => (|| {
            let mut periods = ClassPolicy::default();
            for class in RecordClass::ALL {
                periods
                    .0
                    .insert(class, f.get(class.as_str()).parse::<Periods>()?);
            }
            match &group {
                Some(g) => {
                    policy.groups.insert(g.clone(), periods);
                }
                None => policy.default = periods,
            }
            Ok(())
        })(),
        (other, _) => return Err(WebError::BadRequest(format!("no action {other:?}"))),
    };
    let said = match changed {
        Err(e) => outcome::<retention::policy::PolicyError>(Err(e))?,
        Ok(()) => {
            let admin = RetentionAdmin::new(&app.log, &viewer.email, Source::web(&app.config.host));
            outcome(
                admin
                    .set_policy(&policy)
                    .await
                    .map(|()| format!("retention periods of {whose} saved")),
            )?
        }
    };
    render(&app, &viewer, Some(said)).await
}
