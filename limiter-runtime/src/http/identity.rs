//! Who is calling: the client's class and identity, from a configurable
//! list of sources, with forwarded chains honoured only from trusted proxies
//! and internal callers recognised only by a secret compared in constant
//! time.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderName, Request};
use ipnet::IpNet;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::client_id::credential_id;
pub(crate) use crate::client_id::normalize_id;
#[cfg(test)]
use crate::client_id::MAX_CREDENTIAL_ID;

/// The kind of caller a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientClass {
    /// Known only by its network address.
    Anonymous,
    /// Sent a bearer token (or was identified by the application).
    Authenticated,
    /// Sent an API key.
    Api,
    /// Another service of ours, proven by the internal secret: not limited.
    Internal,
}

impl fmt::Display for ClientClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientClass::Anonymous => "anonymous",
            ClientClass::Authenticated => "authenticated",
            ClientClass::Api => "api",
            ClientClass::Internal => "internal",
        })
    }
}

/// The caller of a request. The layer puts it in the request's extensions,
/// so handlers can take `Extension<Client>` and use `client.id` as the key
/// of their own limits. An application that authenticates callers itself
/// can insert a `Client` before the layer runs (see
/// [`IdentitySource::Extension`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Client {
    /// Its class.
    pub class: ClientClass,
    /// Its identity, prefixed by where it came from: `ip:203.0.113.9`,
    /// `key:…`, `bearer:…`, `internal`. An API key or bearer token longer
    /// than 128 bytes appears as a fingerprint, `key:#` and 16 hex digits
    /// (stable within the process), so an id is short whatever a client
    /// sends.
    pub id: String,
}

/// Where the identity of a caller is read from, tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A [`Client`] the application inserted into the request extensions
    /// (e.g. after verifying a token): the only source that is verified.
    Extension,
    /// An API key header (class [`ClientClass::Api`]). The key is not
    /// checked here: a client inventing keys gets a fresh budget per key, so
    /// where API-key budgets are larger than anonymous ones, check keys in
    /// the application and use [`IdentitySource::Extension`].
    ApiKeyHeader(HeaderName),
    /// `Authorization: Bearer <token>` (class
    /// [`ClientClass::Authenticated`]). The token is not verified here, and a
    /// client can send a new one with every request: verify tokens in the
    /// application and use [`IdentitySource::Extension`] where that matters.
    BearerToken,
    /// The peer address (class [`ClientClass::Anonymous`]), or the client
    /// address a trusted proxy forwarded.
    PeerAddress,
}

/// Which forwarded-chain header trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// Most hops read from a forwarded chain (from the right); a longer chain
/// is cut, so a huge header costs no more than this.
const MAX_HOPS: usize = 32;

/// How callers are identified.
#[derive(Clone)]
pub(crate) struct IdentityConfig {
    pub(crate) sources: Vec<IdentitySource>,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) forwarded: ForwardedHeader,
    pub(crate) internal: Option<(HeaderName, Vec<u8>)>,
}

impl fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityConfig")
            .field("sources", &self.sources)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("forwarded", &self.forwarded)
            .field(
                "internal",
                &self.internal.as_ref().map(|(h, _)| (h, "<secret>")),
            )
            .finish()
    }
}

impl Default for IdentityConfig {
    /// API key in `x-api-key`, then a bearer token, then the peer address;
    /// no trusted proxies; no internal secret.
    fn default() -> Self {
        Self {
            sources: vec![
                IdentitySource::Extension,
                IdentitySource::ApiKeyHeader(HeaderName::from_static("x-api-key")),
                IdentitySource::BearerToken,
                IdentitySource::PeerAddress,
            ],
            trusted_proxies: Vec::new(),
            forwarded: ForwardedHeader::XForwardedFor,
            internal: None,
        }
    }
}

/// Constant-time equality of a presented secret and the configured one.
///
/// Why this does not leak the secret's content through timing:
/// `subtle::ConstantTimeEq` on two slices of the same length compares every
/// pair of bytes branch-free (`u8::ct_eq`: XOR, then folding the bits of
/// the difference) and ANDs all the results with no early exit, behind an
/// optimisation barrier (`black_box`), so the time is the same wherever
/// (and whether) the values differ. The only branch is on the lengths: a
/// presented value of another length is refused at once. That reveals at
/// most the secret's *length* (as Go's `subtle.ConstantTimeCompare` and
/// `subtle`'s own slice impl do), never a byte of it; the length check is
/// written out here, rather than left inside `ct_eq`, so it is plain that
/// nothing else short-circuits.
/// Tests cannot check timing reliably; `secrets_compare_whole` checks the
/// result for every position and length instead.
pub(crate) fn secret_matches(presented: &[u8], secret: &[u8]) -> bool {
    presented.len() == secret.len() && bool::from(presented.ct_eq(secret))
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive,
/// spaces trimmed), as sent.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Parses one element of a forwarded chain: an IPv4 or IPv6 address, with
/// or without port, IPv6 possibly bracketed and quoted (`"[::1]:80"`).
fn parse_hop(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[')?;
    let end = inner.find(']')?;
    inner[..end].parse().ok()
}

/// The client key of an address: IPv4 (also when IPv4-mapped) as itself,
/// IPv6 as its /64, since one client holds a whole /64 and could otherwise
/// take a fresh budget per address.
fn client_net(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

/// The `for=` values of a `Forwarded` header value, in order.
fn forwarded_for(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').filter_map(|element| {
        element.split(';').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
        })
    })
}

impl IdentityConfig {
    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client address: the peer, or, when the peer is a trusted proxy,
    /// the rightmost address of the forwarded chain that is not a trusted
    /// proxy. An element that does not parse ends the walk at the hop that
    /// wrote it.
    pub(crate) fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusted(peer) {
            return Some(peer);
        }
        let name = match self.forwarded {
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::Forwarded => header::FORWARDED,
        };
        // Several header lines form one list, in order. Elements are split
        // on bytes, so a non-UTF-8 element is one unparseable hop (where the
        // walk stops), not a reason to ignore the whole chain.
        let mut hops: Vec<Option<&str>> = Vec::new();
        for value in headers.get_all(&name) {
            for element in value.as_bytes().split(|b| *b == b',') {
                let element = std::str::from_utf8(element).ok();
                match self.forwarded {
                    ForwardedHeader::XForwardedFor => hops.push(element),
                    ForwardedHeader::Forwarded => {
                        hops.push(element.and_then(|e| forwarded_for(e).next()))
                    }
                }
            }
        }
        let mut client = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let Some(ip) = hop.and_then(parse_hop) else {
                return Some(client);
            };
            client = ip;
            if !self.trusted(ip) {
                break;
            }
        }
        Some(client)
    }

    /// Whether the request carries the internal secret.
    pub(crate) fn is_internal(&self, headers: &HeaderMap) -> bool {
        let Some((name, secret)) = &self.internal else {
            return false;
        };
        headers
            .get_all(name)
            .iter()
            .any(|v| secret_matches(v.as_bytes(), secret))
    }

    /// Identifies the caller of `req`.
    pub(crate) fn identify<B>(&self, req: &Request<B>) -> Client {
        let headers = req.headers();
        if self.is_internal(headers) {
            return Client {
                class: ClientClass::Internal,
                id: "internal".into(),
            };
        }
        for source in &self.sources {
            match source {
                IdentitySource::Extension => {
                    if let Some(c) = req.extensions().get::<Client>() {
                        // An application cannot grant the bypass by
                        // extension: internal needs the secret.
                        if c.class != ClientClass::Internal {
                            return c.clone();
                        }
                    }
                }
                IdentitySource::ApiKeyHeader(name) => {
                    if let Some(key) = headers.get(name).and_then(|v| v.to_str().ok()) {
                        let key = key.trim();
                        if !key.is_empty() {
                            return Client {
                                class: ClientClass::Api,
                                id: credential_id("key", key),
                            };
                        }
                    }
                }
                IdentitySource::BearerToken => {
                    let token = bearer_token(headers).filter(|t| !t.is_empty());
                    if let Some(token) = token {
                        return Client {
                            class: ClientClass::Authenticated,
                            id: credential_id("bearer", token),
                        };
                    }
                }
                IdentitySource::PeerAddress => {
                    let peer = req
                        .extensions()
                        .get::<ConnectInfo<SocketAddr>>()
                        .map(|c| c.0.ip());
                    if let Some(ip) = self.client_ip(peer, headers) {
                        return Client {
                            class: ClientClass::Anonymous,
                            id: format!("ip:{}", client_net(ip)),
                        };
                    }
                }
            }
        }
        Client {
            class: ClientClass::Anonymous,
            id: "ip:unknown".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use std::hash::Hasher;

    fn cfg(trusted: &[&str], fwd: ForwardedHeader) -> IdentityConfig {
        IdentityConfig {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            forwarded: fwd,
            ..IdentityConfig::default()
        }
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarded_chains_only_from_trusted_proxies() {
        let c = cfg(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["198.51.100.7, 10.0.0.2"]);
        assert_eq!(
            c.client_ip(ip("203.0.113.5"), &h),
            ip("203.0.113.5"),
            "untrusted peer"
        );
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        // A client prepending a fake address gets its own address used.
        let h = headers("x-forwarded-for", &["1.2.3.4", "198.51.100.7"]);
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff, 198.51.100.7").unwrap(),
        );
        assert_eq!(
            c.client_ip(ip("10.0.0.1"), &h),
            ip("198.51.100.7"),
            "a non-UTF-8 element is one hop"
        );
        let h = headers("x-forwarded-for", &["garbage, 10.0.0.3"]);
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.3"));
        let huge = vec!["10.0.0.9"; 10_000].join(",");
        let h = headers("x-forwarded-for", &[&huge]);
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.9"));
        assert_eq!(
            c.client_ip(ip("::ffff:10.0.0.1"), &HeaderMap::new()),
            ip("::ffff:10.0.0.1")
        );
    }

    #[test]
    fn rfc7239_forwarded() {
        let c = cfg(&["10.0.0.1/32"], ForwardedHeader::Forwarded);
        let h = headers(
            "forwarded",
            &[r#"for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.1"#],
        );
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
        let h = headers("forwarded", &["for=_hidden"]);
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_mapped_v4_as_v4() {
        assert_eq!(
            client_net("2001:db8:1:2::7".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_net("2001:db8:1:2:ffff::1".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_net("::ffff:198.51.100.7".parse().unwrap()),
            "198.51.100.7"
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(!secret_matches(b"s3cre", b"s3cret"));
        assert!(!secret_matches(b"s3creT", b"s3cret"));
        assert!(!secret_matches(b"", b"s3cret"));
        // Prefixes and extensions of the secret, and the secret repeated:
        // a match needs every byte and the same length.
        let secret = b"correct horse battery staple";
        for n in 0..secret.len() {
            assert!(!secret_matches(&secret[..n], secret), "prefix {n}");
            assert!(!secret_matches(&secret[n + 1..], secret), "suffix {n}");
        }
        assert!(!secret_matches(b"correct horse battery staple!", secret));
        assert!(!secret_matches(b" correct horse battery staple", secret));
        assert!(!secret_matches(&secret.repeat(2), secret));
        assert!(!secret_matches(&vec![b'c'; 1 << 20], secret));
        // One flipped bit anywhere, including in the last byte.
        for i in 0..secret.len() {
            for bit in 0..8 {
                let mut p = secret.to_vec();
                p[i] ^= 1 << bit;
                assert!(!secret_matches(&p, secret), "byte {i} bit {bit}");
            }
        }
        assert!(
            secret_matches(b"\xff\x00\xfe", b"\xff\x00\xfe"),
            "any bytes"
        );
        assert!(!secret_matches(b"\xff\x00\xfe", b"\xff\x00\xff"));
    }

    fn identify(headers: &[(&str, &[u8])]) -> Client {
        let mut req = Request::new(());
        for (k, v) in headers {
            req.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        IdentityConfig::default().identify(&req)
    }

    #[test]
    fn long_credentials_become_bounded_fingerprints() {
        let max = "k".repeat(MAX_CREDENTIAL_ID);
        assert_eq!(
            identify(&[("x-api-key", max.as_bytes())]).id,
            format!("key:{max}"),
            "up to the bound, kept as sent"
        );
        let long = "k".repeat(60 * 1024);
        let a = identify(&[("x-api-key", long.as_bytes())]);
        assert_eq!(a.class, ClientClass::Api);
        assert!(
            a.id.starts_with("key:#") && a.id.len() == 4 + 1 + 16,
            "{}",
            a.id
        );
        assert_eq!(a, identify(&[("x-api-key", long.as_bytes())]), "stable");
        let other = format!("{long}x");
        assert_ne!(a.id, identify(&[("x-api-key", other.as_bytes())]).id);
        let bearer = format!("Bearer {long}");
        let b = identify(&[("authorization", bearer.as_bytes())]);
        assert_eq!(b.class, ClientClass::Authenticated);
        assert!(
            b.id.starts_with("bearer:#") && b.id.len() == 7 + 1 + 16,
            "{}",
            b.id
        );
        // The monitoring API finds a long credential by its raw form too.
        assert_eq!(normalize_id(&format!("key:{long}")), a.id);
        assert_eq!(normalize_id(&format!("bearer:{long}")), b.id);
        assert_eq!(normalize_id(&a.id), a.id);
        assert_eq!(normalize_id("ip:198.51.100.7"), "ip:198.51.100.7");
        // Every instance derives the same fingerprint (fixed-key SipHash):
        // a limit kept in Redis under the id is shared by the fleet.
        let mut h = std::hash::DefaultHasher::new();
        h.write(long.as_bytes());
        assert_eq!(a.id, format!("key:#{:016x}", h.finish()));
        // A raw value cannot pose as a fingerprint: one starting with `#`
        // is fingerprinted too, and found by its raw form.
        let posing = &a.id["key:".len()..];
        let p = identify(&[("x-api-key", posing.as_bytes())]);
        assert!(p.id.starts_with("key:#") && p.id != a.id, "{}", p.id);
        assert_eq!(
            normalize_id(&format!("key:{posing}x")),
            identify(&[("x-api-key", format!("{posing}x").as_bytes())]).id
        );
        assert_eq!(
            normalize_id("key:#short"),
            identify(&[("x-api-key", b"#short")]).id
        );
        // Non-UTF-8 credentials are skipped, down to the (absent) peer.
        let c = identify(&[
            ("x-api-key", b"\xff\xfe"),
            ("authorization", b"Bearer \xff\xfe"),
        ]);
        assert_eq!(
            (c.class, c.id.as_str()),
            (ClientClass::Anonymous, "ip:unknown")
        );
    }
}
