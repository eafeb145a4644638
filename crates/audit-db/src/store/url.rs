//! Parsing `--db` values: `sqlite://PATH` or `postgres://...`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use crate::error::Error;

/// Where the audit log lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbUrl {
    /// A SQLite file (the embedded default).
    Sqlite(PathBuf),
    /// A PostgreSQL server, as a libpq-style URL.
    Postgres(String),
}

impl DbUrl {
    /// The SQLite database inside a data directory.
    pub fn in_data_dir(dir: impl Into<PathBuf>) -> Self {
        DbUrl::Sqlite(dir.into().join("audit.db"))
    }
}

impl FromStr for DbUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(bad("no file path after sqlite://"));
            }
            if path.contains('?') {
                return Err(bad("options are not accepted in a sqlite:// URL"));
            }
            return Ok(DbUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url).map_err(|e| bad(&e.to_string()))?;
            return Ok(DbUrl::Postgres(url.to_owned()));
        }
        Err(bad(
            "expected sqlite://PATH or postgres://[USER@]HOST[:PORT]/DB",
        ))
    }
}

impl fmt::Display for DbUrl {
    /// Shows the URL with any password replaced, so it can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DbUrl::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_relative_and_absolute() {
        assert_eq!(
            "sqlite://./vigil-data/audit.db".parse::<DbUrl>().unwrap(),
            DbUrl::Sqlite("./vigil-data/audit.db".into())
        );
        assert_eq!(
            "sqlite:///var/lib/vigil/audit.db".parse::<DbUrl>().unwrap(),
            DbUrl::Sqlite("/var/lib/vigil/audit.db".into())
        );
    }

    #[test]
    fn malformed_urls_say_why() {
        for (url, why) in [
            ("sqlite://", "no file path"),
            ("mysql://localhost/x", "expected sqlite://"),
            ("audit.db", "expected sqlite://"),
            ("postgres://host:notaport/db", "invalid port"),
        ] {
            let err = url.parse::<DbUrl>().unwrap_err().to_string();
            assert!(err.contains(url) && err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn passwords_are_not_displayed() {
        let url: DbUrl = "postgres://vigil:s3cret@db:5432/audit".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://vigil:***@db:5432/audit");
    }
}
