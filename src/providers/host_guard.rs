//! Hosts that users control (a Mastodon instance, a Bluesky PDS) are
//! attacker-chosen URLs fetched from inside the deployment. Before any
//! request: https only, and every address the name resolves to must be
//! public. The check lives in the client's DNS resolver, so the addresses
//! checked are the ones connected to (no second lookup to rebind). Literal
//! IPs never reach a resolver and are checked when the origin is parsed;
//! the URL parser has already turned decimal, octal and hex IPv4 spellings
//! into plain addresses by then. Redirects are never followed (see
//! `HttpClient`).
//!
//! Origins listed in `allowed_origins` are trusted as given: tests and
//! private deployments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

/// Whether an address may be connected to on a user's behalf.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // includes 169.254.169.254, the cloud metadata address
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT; Alibaba metadata)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d) and -compatible (::a.b.c.d) addresses
    // reach IPv4 hosts through the IPv6 stack: refused outright.
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return false;
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, incl. fd00:ec2::254 (AWS metadata)
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64, well-known and local-use prefixes
        || s[0] == 0x2002 // 6to4: embeds an IPv4 address
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || (s[0] == 0x2001 && s[1] == 0xdb8)) // documentation
}

/// Parses and checks users' hosts against the allowlist.
#[derive(Clone, Debug, Default)]
pub struct HostGuard {
    allowed: Arc<Vec<Url>>,
}

impl HostGuard {
    pub fn new(allowed_origins: &[Url]) -> Self {
        Self {
            allowed: Arc::new(allowed_origins.to_vec()),
        }
    }

    fn is_allowed(&self, origin: &Url) -> bool {
        self.allowed.iter().any(|a| {
            a.scheme() == origin.scheme()
                && a.host() == origin.host()
                && a.port_or_known_default() == origin.port_or_known_default()
        })
    }

    /// The origin of a user-supplied host (`example.social`,
    /// `example.social:8443` or `https://example.social`), refused unless it
    /// is https and, for a literal IP, public. Names are checked when
    /// resolved, by `resolve`.
    pub fn origin(&self, input: &str) -> Result<Url, String> {
        let input = input.trim();
        let with_scheme = if input.contains("://") {
            input.to_owned()
        } else {
            format!("https://{input}")
        };
        let url = Url::parse(&with_scheme).map_err(|_| "not a valid host".to_owned())?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err("not a bare host: credentials, paths and queries are refused".into());
        }
        if self.is_allowed(&url) {
            return Ok(url);
        }
        if url.scheme() != "https" {
            return Err("only https is allowed".into());
        }
        match url.host() {
            Some(Host::Ipv4(ip)) if !is_public(IpAddr::V4(ip)) => {
                Err(format!("{ip} is not a public address"))
            }
            Some(Host::Ipv6(ip)) if !is_public(IpAddr::V6(ip)) => {
                Err(format!("{ip} is not a public address"))
            }
            Some(_) => Ok(url),
            None => Err("no host".into()),
        }
    }

    /// A full URL on a user-controlled host (an authorization server's token
    /// endpoint named by its metadata): its origin passes `origin`, and it
    /// carries no credentials or fragment.
    pub fn endpoint(&self, input: &str) -> Result<Url, String> {
        let url = Url::parse(input.trim()).map_err(|_| "not a valid URL".to_owned())?;
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err("credentials and fragments are refused".into());
        }
        let origin = url.origin();
        if !origin.is_tuple() {
            return Err("no host".into());
        }
        self.origin(&origin.ascii_serialization())?;
        Ok(url)
    }

    /// Resolves a name and keeps only public addresses; an allowlisted name
    /// keeps all. Refused when nothing is left.
    pub async fn resolve(&self, name: &str) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, 0))
            .await
            .map_err(|e| format!("cannot resolve {name}: {e}"))?
            .collect();
        let trusted = self
            .allowed
            .iter()
            .any(|a| a.host_str().is_some_and(|h| h.eq_ignore_ascii_case(name)));
        let kept: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| trusted || is_public(a.ip()))
            .collect();
        if kept.is_empty() {
            return Err(format!("{name} does not resolve to a public address"));
        }
        Ok(kept)
    }
}

impl reqwest::dns::Resolve for HostGuard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let addrs = HostGuard::resolve(&guard, name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tricky_hosts_are_refused() {
        let guard = HostGuard::default();
        for host in [
            "127.0.0.1",
            "2130706433", // 127.0.0.1 in decimal
            "0177.0.0.1", // 127.0.0.1 in octal
            "0x7f.0.0.1", // hex
            "127.1",      // short form
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[::1]",
            "[::]",
            "0.0.0.0",
            "169.254.169.254", // cloud metadata
            "[fd00:ec2::254]", // AWS metadata over IPv6
            "100.100.100.200", // Alibaba metadata (shared address space)
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "[fe80::1]",
            "[fc00::1]",
            "[64:ff9b::7f00:1]", // NAT64 of 127.0.0.1
            "[2002:7f00:1::]",   // 6to4 of 127.0.0.1
            "http://mastodon.social",
            "https://user:pw@mastodon.social",
            "mastodon.social/path",
            "mastodon.social?x=1",
        ] {
            assert!(guard.origin(host).is_err(), "{host} was accepted");
        }
        // A name that resolves to loopback passes parsing and fails resolution.
        let origin = guard.origin("localhost").unwrap();
        assert!(guard.resolve(origin.host_str().unwrap()).await.is_err());
    }

    #[test]
    fn public_hosts_are_accepted() {
        let guard = HostGuard::default();
        for host in [
            "mastodon.social",
            "https://mastodon.social",
            "mastodon.social:8443",
            "93.184.216.34",
            "[2606:4700::1111]",
        ] {
            assert!(guard.origin(host).is_ok(), "{host} was refused");
        }
    }

    #[test]
    fn endpoints_are_checked_by_their_origin() {
        let guard = HostGuard::new(&[Url::parse("http://127.0.0.1:4000").unwrap()]);
        assert!(guard.endpoint("https://bsky.social/oauth/token").is_ok());
        assert!(guard.endpoint("http://127.0.0.1:4000/oauth/token").is_ok());
        for bad in [
            "http://bsky.social/oauth/token",
            "https://10.0.0.1/oauth/token",
            "https://[::1]/token",
            "https://u:p@bsky.social/token",
            "https://bsky.social/token#x",
            "http://127.0.0.1:4001/oauth/token",
            "data:text/plain,x",
        ] {
            assert!(guard.endpoint(bad).is_err(), "{bad} was accepted");
        }
    }

    #[tokio::test]
    async fn allowlisted_origins_are_trusted_as_given() {
        let allowed = Url::parse("http://127.0.0.1:4000").unwrap();
        let guard = HostGuard::new(&[allowed, Url::parse("https://localhost").unwrap()]);
        assert!(guard.origin("http://127.0.0.1:4000").is_ok());
        assert!(
            guard.origin("http://127.0.0.1:4001").is_err(),
            "the port is part of the origin"
        );
        assert!(guard.origin("https://127.0.0.1:4000").is_err());
        assert!(guard.resolve("localhost").await.is_ok());
    }
}
