//! `vigil login`: authenticates a technician against a gateway and prints
//! what the gateway granted.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use session_core::client::Connector;
use session_core::tls::Trust;

use crate::cli::{LoginArgs, TrustArgs};

/// The trust a client was told to place in the gateway.
pub fn trust(args: &TrustArgs) -> Result<Trust> {
    match (&args.ca, &args.fingerprint) {
        (Some(ca), _) => Ok(Trust::ca_file(ca)?),
        (None, Some(fp)) => Ok(Trust::fingerprint(fp)?),
        (None, None) => bail!("give --ca FILE or --fingerprint HEX"),
    }
}

/// Logs in with the password from stdin (and a new one from its second line).
pub async fn run(args: LoginArgs) -> Result<ExitCode> {
    let connector = Connector::new(&args.gateway, &trust(&args.trust)?, "vigil login")?;
    let mut lines = crate::admin::stdin_lines(if args.new_password { 2 } else { 1 })
        .context("reading the password from stdin")?
        .into_iter();
    let password = lines.next().unwrap_or_default();
    let new_password = lines.next();
    let tech = connector
        .login(&args.user, &password, new_password.as_deref())
        .await
        .with_context(|| format!("cannot log in to {}", args.gateway))?;
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
