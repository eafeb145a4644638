//! Technicians and groups (administrators only): the accounts, their
//! state (locked, disabled, password to change), and the groups with the
//! permissions their sessions are granted; each change made through
//! `gateway::admin`, as `vigil admin user|group` makes it.

use std::sync::Arc;

use audit_db::accounts::{Group, Role};
use audit_db::event::Permission;
use audit_db::Source;
use axum::extract::State;
use axum::http::StatusCode;
use gateway::admin::Admin;
use maud::{html, Markup};

use super::admin::{self, admin_only, csrf, outcome, Posted, Said};
use super::when;
use crate::error::WebError;
use crate::visit::Viewer;
use crate::App;

const DOING: &str = "change technicians or groups";
const ROLES: [Role; 3] = [Role::Technician, Role::Compliance, Role::Admin];

/// The viewer acting on accounts and the access policy, from the portal.
pub(super) fn acting(app: &App, viewer: &Viewer) -> Admin {
    Admin::new(
        app.log.clone(),
        &viewer.email,
        Source::web(&app.config.host),
    )
}

/// `GET /admin/accounts`.
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    viewer: Viewer,
) -> Result<(StatusCode, Markup), WebError> {
    admin_only(&viewer, "administer accounts")?;
    render(&app, &viewer, None).await
}

async fn render(
    app: &App,
    viewer: &Viewer,
    said: Option<Said>,
) -> Result<(StatusCode, Markup), WebError> {
    let accounts = app.gate.accounts();
    let technicians = accounts.technicians().await?;
    let groups = accounts.groups().await?;
    let now = audit_db::time_us::now();
    let group_select = |name: &str, selected: &str| {
        html! {
            select name=(name) {
                @for g in &groups { option value=(g.name) selected[g.name == selected] { (g.name) } }
            }
        }
    };
    let role_select = |selected: Role| {
        html! {
            select name="role" {
                @for r in ROLES { option value=(r.as_str()) selected[r == selected] { (r.as_str()) } }
            }
        }
    };
    let body = html! {
        h2 { "Technicians" }
        p { "Everyone who logs in to the gateway or this portal: technicians run sessions, "
            "compliance staff read everything and place legal holds, administrators change everything." }
        table id="technicians" {
            thead { tr { th { "Email" } th { "Group" } th { "Role" } th { "State" } th { "Failed logins" } th { "Password set" } th { "Change" } } }
            tbody { @for t in &technicians {
                @let locked = t.locked_until_us.is_some_and(|u| u > now);
                tr data-email=(t.email) {
                    td { (t.email) }
                    td { (t.group) }
                    td { (t.role.as_str()) }
                    td.state {
                        @if t.disabled { span.badge.bad { "disabled" } }
                        @else if locked { span.badge.warn { "locked" } }
                        @else { span.badge.ok { "active" } }
                        @if t.must_change { " " span.badge.warn { "must change password" } }
                    }
                    td.num { (t.failed_logins) }
                    td { (when(t.password_set_us)) }
                    td { details {
                        summary { "Change…" }
                        @if locked || t.failed_logins > 0 {
                            form.inline method="post" action="/admin/accounts/user" {
                                (csrf(viewer)) input type="hidden" name="email" value=(t.email);
                                button type="submit" name="action" value="unlock" { "Unlock" }
                            }
                        }
                        form.inline method="post" action="/admin/accounts/user" {
                            (csrf(viewer)) input type="hidden" name="email" value=(t.email);
                            @if t.disabled {
                                button type="submit" name="action" value="enable" { "Enable" }
                            } @else {
                                button type="submit" name="action" value="disable" { "Disable" }
                            }
                        }
                        form.inline method="post" action="/admin/accounts/user" {
                            (csrf(viewer)) input type="hidden" name="email" value=(t.email);
                            (group_select("group", &t.group)) (role_select(t.role))
                            button type="submit" name="action" value="move" { "Move" }
                        }
                        form.inline method="post" action="/admin/accounts/user" {
                            (csrf(viewer)) input type="hidden" name="email" value=(t.email);
                            input type="password" name="password" placeholder="New password" autocomplete="new-password" required;
                            label.check { input type="checkbox" name="must_change" checked; "must change at next login" }
                            button type="submit" name="action" value="password" { "Set password" }
                        }
                    } }
                }
            } }
        }
        h3 { "Add a technician" }
        form.filters method="post" action="/admin/accounts/user" id="add-user" {
            (csrf(viewer))
            label { "Email" input type="email" name="email" id="u-email" required; }
            label { "Group" (group_select("group", "")) }
            label { "Role" (role_select(Role::Technician)) }
            label { "Password" input type="password" name="password" id="u-password" autocomplete="new-password" required; }
            label.check { input type="checkbox" name="must_change" checked; "must change at first login" }
            button type="submit" name="action" value="add" id="u-add" { "Add" }
        }
        h2 { "Groups" }
        table id="groups" {
            thead { tr { th { "Name" } th { "Permissions" } th { "Allowed from" } th { "Consent" } th { "Recording" } th { "Chat" } th { "Change" } } }
            tbody { @for g in &groups { tr data-group=(g.name) {
                td { (g.name) }
                td { @if g.permissions.is_empty() { "none" } @else {
                    @for (i, p) in g.permissions.iter().enumerate() { @if i > 0 { ", " } (p.as_str()) }
                } }
                td { @if g.ip_allow.is_empty() { "anywhere" } @else { (g.ip_allow.join(", ")) } }
                td { @if g.single_prompt { "one prompt per session" } @else { "a prompt per action" } }
                td { @if g.force_recording { "always" } @else { "when asked" } }
                td { @if g.store_chat { "text kept" } @else { "length only" } }
                td { details { summary { "Change…" } (group_form(viewer, Some(g))) } }
            } } }
        }
        h3 { "Add a group" }
        (group_form(viewer, None))
    };
    Ok(admin::page(
        "Technicians and groups",
        "/admin/accounts",
        viewer,
        said,
        body,
    ))
}

/// The form that adds a group (`None`) or changes `group`.
fn group_form(viewer: &Viewer, group: Option<&Group>) -> Markup {
    let has = |p: Permission| group.is_some_and(|g| g.permissions.contains(&p));
    let flag = |f: fn(&Group) -> bool, default: bool| group.map_or(default, f);
    html! {
        form.group method="post" action="/admin/accounts/group" id=[group.is_none().then_some("add-group")] {
            (csrf(viewer))
            @match group {
                Some(g) => { input type="hidden" name="name" value=(g.name); input type="hidden" name="action" value="set"; }
                None => { label { "Name" input type="text" name="name" id="g-name" required; } input type="hidden" name="action" value="add"; }
            }
            fieldset { legend { "Permissions" }
                @for p in Permission::ALL {
                    label.check { input type="checkbox" name="permission" value=(p.as_str()) checked[has(p)]; (p.as_str()) }
                }
            }
            label { "Allowed from (networks, comma-separated; empty: anywhere)"
                input type="text" name="allow" value=(group.map(|g| g.ip_allow.join(", ")).unwrap_or_default()); }
            label.check { input type="checkbox" name="single_prompt" checked[flag(|g| g.single_prompt, false)]; "one consent prompt per session" }
            label.check { input type="checkbox" name="force_recording" checked[flag(|g| g.force_recording, false)]; "record every session" }
            label.check { input type="checkbox" name="store_chat" checked[flag(|g| g.store_chat, true)]; "keep chat text" }
            button type="submit" { @if group.is_some() { "Save" } @else { "Add the group" } }
        }
    }
}

/// `POST /admin/accounts/user`: add, unlock, disable, enable, move, password.
pub(crate) async fn user(
    State(app): State<Arc<App>>,
    Posted { viewer, fields: f }: Posted,
) -> Result<(StatusCode, Markup), WebError> {
    admin_only(&viewer, DOING)?;
    let admin = acting(&app, &viewer);
    let email = f.get("email").to_lowercase();
    let role = || {
        f.get("role")
            .parse::<Role>()
            .map_err(|e| Said::Refused(e.to_string()))
    };
    let result = match f.get("action") {
        "add" => match role() {
            Ok(role) => admin
                .add_user(
                    &email,
                    f.get("group"),
                    role,
                    f.get("password"),
                    f.checked("must_change"),
                )
                .await
                .map(|()| format!("{email} added to group {}", f.get("group"))),
            Err(refused) => return render(&app, &viewer, Some(refused)).await,
        },
        "unlock" => admin.unlock(&email).await.map(|was| {
            if was {
                format!("{email} unlocked")
            } else {
                format!("{email} was not locked; its failed logins were cleared")
            }
        }),
        "disable" => admin
            .set_disabled(&email, true)
            .await
            .map(|()| format!("{email} disabled")),
        "enable" => admin
            .set_disabled(&email, false)
            .await
            .map(|()| format!("{email} enabled")),
        "move" => match role() {
            Ok(role) => admin
                .set_group(&email, f.get("group"), role)
                .await
                .map(|()| {
                    format!(
                        "{email} is now {} in group {}",
                        role.as_str(),
                        f.get("group")
                    )
                }),
            Err(refused) => return render(&app, &viewer, Some(refused)).await,
        },
        "password" => admin
            .set_password(&email, f.get("password"), f.checked("must_change"))
            .await
            .map(|()| format!("the password of {email} was set")),
        other => return Err(WebError::BadRequest(format!("no action {other:?}"))),
    };
    let said = outcome(result)?;
    render(&app, &viewer, Some(said)).await
}

/// `POST /admin/accounts/group`: add or set.
pub(crate) async fn group(
    State(app): State<Arc<App>>,
    Posted { viewer, fields: f }: Posted,
) -> Result<(StatusCode, Markup), WebError> {
    admin_only(&viewer, DOING)?;
    let mut permissions = Vec::new();
    for name in f.all("permission") {
        match Permission::ALL.iter().find(|p| p.as_str() == name) {
            Some(p) => permissions.push(*p),
            None => {
                let refused = Said::Refused(format!("{name:?} is not a permission"));
                return render(&app, &viewer, Some(refused)).await;
            }
        }
    }
    let group = Group {
        name: f.get("name").to_owned(),
        permissions,
        ip_allow: f.list("allow"),
        single_prompt: f.checked("single_prompt"),
        force_recording: f.checked("force_recording"),
        store_chat: f.checked("store_chat"),
    };
    let admin = acting(&app, &viewer);
    let result = match f.get("action") {
        "add" => admin
            .add_group(&group)
            .await
            .map(|()| format!("group {} added", group.name)),
        "set" => admin
            .update_group(&group)
            .await
            .map(|()| format!("group {} changed", group.name)),
        other => return Err(WebError::BadRequest(format!("no action {other:?}"))),
    };
    let said = outcome(result)?;
    render(&app, &viewer, Some(said)).await
}
