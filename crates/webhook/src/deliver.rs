//! One HTTP attempt: the client an endpoint is posted with (its own trust,
//! the SSRF-guarded resolver, no redirects, no proxy, 15 s) and what came
//! of a post.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::{StatusCode, Url};

use crate::sign::{self, Secret};
use crate::ssrf;

/// The whole of an attempt, from connecting to the end of the answer.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// How much of an answer's body is read; a longer body fails the attempt.
pub const MAX_RESPONSE: usize = 64 * 1024;
/// How much of it the delivery log keeps.
pub const LOGGED_RESPONSE: usize = 1024;

/// An endpoint's client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Its `--ca` holds no usable certificate.
    #[error("the endpoint's CA certificates cannot be used: {0}")]
    Ca(String),
    /// reqwest refused the configuration.
    #[error("making the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// How one endpoint is posted to.
#[derive(Clone, Debug)]
pub struct Target {
    url: Url,
    allow_private: bool,
    timeout: Duration,
    client: reqwest::Client,
}

impl Target {
    /// A client for `url`: the system's roots plus `ca_pem`, the resolver
    /// that refuses non-public addresses unless `allow_private`, and
    /// `timeout` for a whole attempt ([`TIMEOUT`] but in tests).
    pub fn new(
        url: Url,
        ca_pem: Option<&str>,
        allow_private: bool,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        // A system without a CA bundle can still post to endpoints with --ca.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(pem) = ca_pem {
            let certs = parse_pem(pem)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ClientError::Ca("no certificate in it".into()));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Ca(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(ssrf::GuardedResolver::new(allow_private))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(32)
            .build()?;
        Ok(Self {
            url,
            allow_private,
            timeout,
            client,
        })
    }

    /// Posts `body` once, signed with every secret in `secrets`, as message
    /// `id` at `timestamp` (seconds since the epoch).
    pub async fn post(&self, id: &str, timestamp: i64, body: &str, secrets: &[Secret]) -> Outcome {
        let started = Instant::now();
        let result = self.try_post(id, timestamp, body, secrets).await;
        let latency_ms = started.elapsed().as_millis() as i64;
        match result {
            Ok((status, retry_after, response)) => Outcome {
                status: Some(status.as_u16()),
                retry_after,
                latency_ms,
                error: if status.is_success() {
                    None
                } else if status.is_redirection() {
                    Some(format!("redirected ({status}); redirects are not followed"))
                } else {
                    Some(format!("answered {status}"))
                },
                response: Some(response),
            },
            Err((status, error)) => Outcome {
                status: status.map(|s| s.as_u16()),
                retry_after: None,
                latency_ms,
                error: Some(error),
                response: None,
            },
        }
    }

    async fn try_post(
        &self,
        id: &str,
        timestamp: i64,
        body: &str,
        secrets: &[Secret],
    ) -> Result<(StatusCode, Option<Duration>, String), (Option<StatusCode>, String)> {
        // An address in the URL itself never reaches the resolver.
        if !self.allow_private {
            ssrf::parse(self.url.as_str(), true, false).map_err(|e| (None, e.to_string()))?;
        }
        let mut headers = HeaderMap::new();
        let signature = sign::header(secrets, id, timestamp, body.as_bytes());
        for (name, value) in [
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ] {
            let value = HeaderValue::from_str(&value).map_err(|e| (None, e.to_string()))?;
            headers.insert(name, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("vigil-webhooks/", env!("CARGO_PKG_VERSION"))),
        );
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut response = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| (None, describe(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut read = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .map_err(|_| {
                    (
                        Some(status),
                        format!("the answer's body did not end within {:?}", self.timeout),
                    )
                })?
                .map_err(|e| (Some(status), describe(&e)))?;
            let Some(chunk) = chunk else { break };
            if read.len() + chunk.len() > MAX_RESPONSE {
                return Err((
                    Some(status),
                    format!(
                        "answered {status} with a body over {} KiB",
                        MAX_RESPONSE / 1024
                    ),
                ));
            }
            read.extend_from_slice(&chunk);
        }
        let mut logged = String::from_utf8_lossy(&read).into_owned();
        if logged.len() > LOGGED_RESPONSE {
            let mut cut = LOGGED_RESPONSE;
            while !logged.is_char_boundary(cut) {
                cut -= 1;
            }
            logged.truncate(cut);
        }
        Ok((status, retry_after, logged))
    }
}

/// What came of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// `Retry-After`, when the answer had one.
    pub retry_after: Option<Duration>,
    /// How long it took.
    pub latency_ms: i64,
    /// What went wrong; `None` when delivered.
    pub error: Option<String>,
    /// The start of the answer's body.
    pub response: Option<String>,
}

impl Outcome {
    /// The endpoint took the post (2xx).
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }

    /// The receiver says the endpoint is gone for good (410).
    pub fn gone(&self) -> bool {
        self.status == Some(410)
    }

    /// The receiver's wait, honoured only with 429 and 503.
    pub fn asked_wait(&self) -> Option<Duration> {
        matches!(self.status, Some(429 | 503))
            .then_some(self.retry_after)
            .flatten()
    }
}

/// `Retry-After` as seconds (HTTP dates are not honoured: a clock skew
/// between us and the receiver would make them meaningless).
fn parse_retry_after(text: &str) -> Option<Duration> {
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A reqwest error with its causes, in one line.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn parse_pem(pem: &str) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, ClientError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Ca(e.to_string()))
}

/// Checks that `pem` holds at least one certificate (for `--ca`).
pub fn check_ca(pem: &str) -> Result<(), ClientError> {
    if parse_pem(pem)?.is_empty() {
        return Err(ClientError::Ca("no certificate in it".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_only() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn waits_are_honoured_only_for_429_and_503() {
        let mut o = Outcome {
            status: Some(429),
            retry_after: Some(Duration::from_secs(9)),
            latency_ms: 1,
            error: Some("answered 429".into()),
            response: None,
        };
        assert_eq!(o.asked_wait(), Some(Duration::from_secs(9)));
        o.status = Some(500);
        assert_eq!(o.asked_wait(), None);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        assert!(check_ca("not a certificate").is_err());
    }
}
