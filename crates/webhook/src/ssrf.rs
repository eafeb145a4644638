//! The guard against server-side request forgery through endpoint URLs:
//! which schemes and addresses a post may go to, checked on the addresses
//! the connection will really use (the sender resolves the name itself, so
//! a name that resolves elsewhere on the second lookup gains nothing).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;

/// Why an endpoint URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("{url:?} is not a URL: {reason}")]
    Malformed {
        /// What was given.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Not `https` (or `http` where allowed).
    #[error("{url:?}: the scheme {scheme:?} is not allowed (https, or http with --allow-http)")]
    Scheme {
        /// What was given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// No host to post to.
    #[error("{url:?} names no host")]
    NoHost {
        /// What was given.
        url: String,
    },
    /// Credentials in the URL would be sent to whoever answers.
    #[error("{url:?}: user names and passwords in webhook URLs are not allowed")]
    Credentials {
        /// What was given.
        url: String,
    },
    /// The host is, or resolves to, an address posts may not go to.
    #[error("{host} is {addr} ({range}): webhooks may not post there without --allow-private")]
    Private {
        /// The URL's host.
        host: String,
        /// The address it is or resolves to.
        addr: IpAddr,
        /// Which kind of range.
        range: &'static str,
    },
    /// The host's name does not resolve.
    #[error("{host} does not resolve: {reason}")]
    Unresolved {
        /// The URL's host.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
}

/// Parses an endpoint URL and checks its scheme, and its host when that is
/// an address. Names are checked when resolved ([`check_resolved`]).
pub fn parse(url: &str, allow_http: bool, allow_private: bool) -> Result<Url, UrlError> {
    let parsed = Url::parse(url).map_err(|e| UrlError::Malformed {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        other => {
            return Err(UrlError::Scheme {
                url: url.to_owned(),
                scheme: other.to_owned(),
            })
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlError::Credentials {
            url: url.to_owned(),
        });
    }
    let host = match parsed.host() {
        Some(host) => host,
        None => {
            return Err(UrlError::NoHost {
                url: url.to_owned(),
            })
        }
    };
    let literal = match host {
        url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
        url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
        url::Host::Domain(_) => None,
    };
    if let (Some(addr), false) = (literal, allow_private) {
        check_addr(&host.to_string(), addr)?;
    }
    Ok(parsed)
}

/// Resolves `url`'s host as the sender will and refuses it if any of its
/// addresses is one posts may not go to.
pub async fn check_resolved(url: &Url, allow_private: bool) -> Result<(), UrlError> {
    let Some(host) = url.host_str() else {
        return Err(UrlError::NoHost {
            url: url.to_string(),
        });
    };
    if allow_private
        || url
            .host()
            .is_some_and(|h| !matches!(h, url::Host::Domain(_)))
    {
        return Ok(());
    }
    for addr in lookup(host).await? {
        check_addr(host, addr.ip())?;
    }
    Ok(())
}

async fn lookup(host: &str) -> Result<Vec<SocketAddr>, UrlError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| UrlError::Unresolved {
            host: host.to_owned(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(UrlError::Unresolved {
            host: host.to_owned(),
            reason: "no addresses".to_owned(),
        });
    }
    Ok(addrs)
}

fn check_addr(host: &str, addr: IpAddr) -> Result<(), UrlError> {
    match forbidden_range(addr) {
        Some(range) => Err(UrlError::Private {
            host: host.to_owned(),
            addr,
            range,
        }),
        None => Ok(()),
    }
}

/// The kind of range `addr` is in if posts may not go there: loopback,
/// private, link-local (cloud metadata), CGNAT, unique-local, unspecified,
/// multicast and broadcast, and the IPv4-mapped and NAT64 forms of those.
pub fn forbidden_range(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(a) => forbidden_v4(a),
        IpAddr::V6(a) => forbidden_v6(a),
    }
}

fn forbidden_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [b0, b1, ..] = a.octets();
    Some(match () {
        _ if b0 == 0 => "this-network (0.0.0.0/8)",
        _ if a.is_loopback() => "loopback",
        _ if a.is_private() => "private",
        _ if a.is_link_local() => "link-local",
        _ if b0 == 100 && (64..128).contains(&b1) => "carrier-grade NAT",
        _ if b0 == 192 && b1 == 0 && a.octets()[2] == 0 => "IETF protocol assignment",
        _ if a.is_multicast() => "multicast",
        _ if a.is_broadcast() || b0 >= 240 => "reserved",
        _ => return None,
    })
}

fn forbidden_v6(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    if let Some(v4) = a.to_ipv4_mapped() {
        return forbidden_v4(v4).map(|_| "IPv4-mapped non-public");
    }
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return forbidden_v4(v4).map(|_| "NAT64 non-public");
    }
    Some(match () {
        _ if a.is_unspecified() => "unspecified",
        _ if a.is_loopback() => "loopback",
        _ if s[0] & 0xfe00 == 0xfc00 => "unique-local",
        _ if s[0] & 0xffc0 == 0xfe80 => "link-local",
        _ if s[0] & 0xff00 == 0xff00 => "multicast",
        // IPv4-compatible (deprecated) ::a.b.c.d
        _ if s[..6] == [0; 6] => "IPv4-compatible",
        _ => return None,
    })
}

/// The resolver posts go through: it gives the connection only addresses
/// that passed the check, so what was checked is what is connected to.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    /// A resolver for an endpoint with or without `--allow-private`.
    pub fn new(allow_private: bool) -> Arc<Self> {
        Arc::new(Self { allow_private })
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let mut addrs = lookup(&host).await?;
            if !allow_private {
                for addr in &addrs {
                    check_addr(&host, addr.ip())?;
                }
            }
            addrs.dedup();
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_refused_in_every_form() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "ff02::1",
        ] {
            let addr: IpAddr = bad.parse().unwrap();
            assert!(forbidden_range(addr).is_some(), "{bad} was allowed");
        }
        for good in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "100.128.0.1",
            "::ffff:93.184.216.34",
        ] {
            let addr: IpAddr = good.parse().unwrap();
            assert_eq!(forbidden_range(addr), None, "{good} was refused");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_credentials_and_literal_hosts() {
        assert!(parse("https://crm.example.com/hook", false, false).is_ok());
        assert!(matches!(
            parse("http://crm.example.com/", false, false),
            Err(UrlError::Scheme { .. })
        ));
        assert!(parse("http://crm.example.com/", true, false).is_ok());
        assert!(matches!(
            parse("ftp://crm.example.com/", true, true),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            parse("not a url", true, true),
            Err(UrlError::Malformed { .. })
        ));
        assert!(matches!(
            parse("https://u:p@crm.example.com/", false, false),
            Err(UrlError::Credentials { .. })
        ));
        assert!(matches!(
            parse("https://127.0.0.1:8443/", false, false),
            Err(UrlError::Private { .. })
        ));
        assert!(matches!(
            parse("https://[::ffff:127.0.0.1]/", false, false),
            Err(UrlError::Private { .. })
        ));
        assert!(matches!(
            parse("https://[::ffff:7f00:1]/", false, false),
            Err(UrlError::Private { .. })
        ));
        assert!(matches!(
            parse("https://169.254.169.254/latest", false, false),
            Err(UrlError::Private { .. })
        ));
        // Another spelling of 127.0.0.1: the URL parser reads it as the address.
        assert!(matches!(
            parse("https://2130706433/", false, false),
            Err(UrlError::Private { .. })
        ));
        assert!(parse("https://127.0.0.1:8443/", false, true).is_ok());
    }

    #[tokio::test]
    async fn names_are_checked_by_what_they_resolve_to() {
        let url = parse("https://localhost:9/", false, false).unwrap();
        assert!(matches!(
            check_resolved(&url, false).await,
            Err(UrlError::Private { .. })
        ));
        assert!(check_resolved(&url, true).await.is_ok());
    }
}
