//! `vigil login`: authenticates a technician against a gateway and prints
//! what the gateway granted.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use protocol::tls::Trust;
use session_core::client::Connector;

use crate::cli::{ConnectArgs, LoginArgs};

/// A connector to the gateway the arguments name, trusted as they say;
/// `client` names the program to the gateway.
pub fn connector(args: &ConnectArgs, client: &str) -> Result<Connector> {
    let trust = match (&args.trust.ca, &args.trust.fingerprint) {
        (Some(ca), _) => Trust::ca_file(ca)?,
        (None, Some(fp)) => Trust::fingerprint(fp)?,
        (None, None) => bail!("give --ca FILE or --fingerprint HEX"),
    };
    Ok(Connector::new(&args.gateway, &trust, client)?)
}

/// Logs in with the password from stdin (and a new one from its second line).
pub async fn run(args: LoginArgs) -> Result<ExitCode> {
    let connector = connector(&args.connect, "vigil login")?;
    let mut lines = crate::admin::stdin_lines(if args.new_password { 2 } else { 1 })
        .context("reading the password from stdin")?
        .into_iter();
    let password = lines.next().unwrap_or_default();
    let new_password = lines.next();
    let tech = connector
        .login(&args.user, &password, new_password.as_deref())
        .await
        .context("cannot log in")?;
    let info = &tech.info;
    let permissions: Vec<_> = info.permissions.iter().map(|p| p.as_str()).collect();
    println!("logged in as {} ({})", info.email, info.role);
    println!("group: {}", info.group);
    println!(
        "permissions: {}",
        if permissions.is_empty() {
            "none".to_owned()
        } else {
            permissions.join(", ")
        }
    );
    if let Some(expires) = info.password_expires_us {
        println!("password expires: {}", audit_db::time_us::format(expires));
    }
    tech.logout().await?;
    Ok(ExitCode::SUCCESS)
}
