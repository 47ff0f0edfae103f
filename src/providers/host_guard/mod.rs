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
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (deprecated)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// An IPv6 address is public only inside global unicast (2000::/3) and
/// outside the special-purpose ranges there; the forms through which IPv6
/// reaches an IPv4 host today are judged by the IPv4 address they carry.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = reaches_ipv4(ip) {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // Outside 2000::/3: unspecified, loopback, IPv4-compatible (::a.b.c.d,
    // deprecated), discard-only 100::/64, NAT64 local-use 64:ff9b:1::/48
    // (its embedding depends on a prefix length only its network knows),
    // segment-routing SIDs 5f00::/16, unique local fc00::/7 (including
    // fd00:ec2::254, AWS metadata), link-local fe80::/10, site-local
    // fec0::/10, multicast ff00::/8.
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    let ietf_or_documentation = s[0] == 0x2001
        && (s[1] < 0x0200 // IETF protocol assignments 2001::/23, incl. Teredo 2001::/32
            || s[1] == 0x0db8); // documentation
    !(ietf_or_documentation
        || s[0] == 0x2002 // 6to4 (deprecated): embeds an IPv4 address
        || (s[0] & 0xfff0) == 0x3ff0) // documentation 3fff::/20
}

/// The IPv4 address an IPv6 address delivers to, for the forms in use:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d` (SIIT)
/// and the NAT64 well-known prefix `64:ff9b::/96`.
fn reaches_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    let translated = s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0;
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (mapped || translated || nat64).then(|| {
        let [.., a, b, c, d] = ip.octets();
        Ipv4Addr::new(a, b, c, d)
    })
}

/// Every IPv4 address an IPv6 address embeds, in any of the transition
/// forms (refused or not by `is_public_v6`): tests check that none that
/// carries a private address gets through.
#[cfg(test)]
fn embedded_ipv4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let o = ip.octets();
    let s = ip.segments();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let mut found = Vec::new();
    if let Some(v4) = reaches_ipv4(ip) {
        found.push(v4);
    }
    if s[..6] == [0; 6] {
        found.push(last); // IPv4-compatible
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        found.push(last); // NAT64 local-use, /96 embedding
    }
    if s[0] == 0x2002 {
        found.push(Ipv4Addr::new(o[2], o[3], o[4], o[5])); // 6to4
    }
    if s[0] == 0x2001 && s[1] == 0 {
        // Teredo: server in bits 32-63, client obfuscated (inverted) at the end.
        found.push(Ipv4Addr::new(o[4], o[5], o[6], o[7]));
        found.push(Ipv4Addr::from(!u32::from(last)));
    }
    found
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

    /// An origin is scheme, host and port, all three exact (the URL parser
    /// has lower-cased the host and dropped a default port already).
    fn is_allowed(&self, origin: &Url) -> bool {
        self.allowed.iter().any(|a| {
            a.scheme() == origin.scheme()
                && a.host() == origin.host()
                && a.port_or_known_default() == origin.port_or_known_default()
        })
    }

    /// Whether a host name belongs to an allowlisted origin. The resolver
    /// sees names only, so it trusts every address of such a name; every
    /// other origin on that name is therefore refused by `origin`.
    fn names_allowlisted_host(&self, url: &Url) -> bool {
        url.host_str().is_some_and(|host| {
            self.allowed
                .iter()
                .any(|a| a.host_str().is_some_and(|h| h.eq_ignore_ascii_case(host)))
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
        if self.names_allowlisted_host(&url) {
            return Err(
                "this host is trusted only at the exact origins listed in allowed_origins".into(),
            );
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

    /// The origin serving a bare name a user gave where no port or scheme
    /// can be written (a Bluesky handle, a `did:web` host, which may carry a
    /// port): https on the name, or the allowlisted origin on that name and
    /// port, as tests and private deployments serve them over plain HTTP or
    /// on another port.
    pub fn origin_of_name(&self, name: &str) -> Result<Url, String> {
        let name = name.trim();
        if name.contains("://") {
            return Err("not a bare host name".into());
        }
        let url =
            Url::parse(&format!("https://{name}")).map_err(|_| "not a valid host".to_owned())?;
        let listed = self.allowed.iter().find(|a| {
            a.host() == url.host()
                && (url.port().is_none() || a.port_or_known_default() == url.port())
        });
        let bare = url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        match listed {
            Some(origin) if bare => Ok(origin.clone()),
            _ => self.origin(name),
        }
    }

    /// Resolves a name and keeps only public addresses; an allowlisted name
    /// keeps all. Refused when nothing is left.
    pub async fn resolve(&self, name: &str) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = if is_localhost_name(name) {
            // RFC 6761 6.3: localhost names are loopback, whatever a DNS
            // server would answer for them.
            vec![
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
            ]
        } else {
            tokio::net::lookup_host((name, 0))
                .await
                .map_err(|e| format!("cannot resolve {name}: {e}"))?
                .collect()
        };
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

/// `localhost` and the names under it (RFC 6761 section 6.3).
fn is_localhost_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
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
mod tests;
