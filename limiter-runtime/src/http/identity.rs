//! Who is calling: the client's class and identity, from a configurable
//! list of sources, with forwarded chains honoured only from trusted proxies
//! and internal callers recognised only by a secret compared in constant
//! time.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{header, Extensions, HeaderMap, HeaderName};
use ipnet::IpNet;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::client_id::credential_id;

use super::verify::{Verdict, Verifier};
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

/// Where the identity of a caller is read from, tried in order. A
/// credential counts only once its [`Verifier`] accepts it; a missing or
/// refused one moves on to the next source, down to the peer address, so a
/// client inventing credentials is an anonymous client.
///
/// ```
/// use limiter_runtime::http::{IdentitySource, KeySet, Verifier};
/// let sources = [
///     IdentitySource::Extension,
///     IdentitySource::api_key("x-api-key", KeySet::new().key("k-123", "acme")),
///     IdentitySource::PeerAddress,
/// ];
/// # let _ = sources;
/// ```
#[derive(Debug, Clone)]
pub enum IdentitySource {
    /// A [`Client`] the application inserted into the request extensions
    /// (after its own authentication).
    Extension,
    /// An API key in a header, accepted by the verifier (class
    /// [`ClientClass::Api`], id `key:<identity>`).
    ApiKeyHeader(HeaderName, Verifier),
    /// `Authorization: Bearer <token>`, accepted by the verifier (class
    /// [`ClientClass::Authenticated`] unless the verifier says otherwise,
    /// id `bearer:<identity>`).
    BearerToken(Verifier),
    /// The peer address (class [`ClientClass::Anonymous`]), or the client
    /// address a trusted proxy forwarded.
    PeerAddress,
}

impl IdentitySource {
    /// API keys in `header`, accepted by `verifier`. Panics on a header
    /// name that is not valid (a programming error, like a bad literal).
    pub fn api_key(header: &'static str, verifier: impl Into<Verifier>) -> Self {
        Self::ApiKeyHeader(HeaderName::from_static(header), verifier.into())
    }

    /// Bearer tokens accepted by `verifier`.
    pub fn bearer(verifier: impl Into<Verifier>) -> Self {
        Self::BearerToken(verifier.into())
    }
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
    /// A client the application identified, else the peer address: no
    /// credential is an identity until a verifier is configured. No
    /// trusted proxies; no internal secret.
    fn default() -> Self {
        Self {
            sources: vec![IdentitySource::Extension, IdentitySource::PeerAddress],
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

    /// Identifies the caller of `req`. Waits only for an asynchronous
    /// verifier; every other source decides at once.
    pub(crate) async fn identify(&self, headers: &HeaderMap, extensions: &Extensions) -> Client {
        if self.is_internal(headers) {
            return Client {
                class: ClientClass::Internal,
                id: "internal".into(),
            };
        }
        for source in &self.sources {
            let found = match source {
                IdentitySource::Extension => extensions
                    .get::<Client>()
                    // An application cannot grant the bypass by extension:
                    // internal needs the secret.
                    .filter(|c| c.class != ClientClass::Internal)
                    .cloned(),
                IdentitySource::ApiKeyHeader(name, verifier) => {
                    let key = headers.get(name).and_then(|v| v.to_str().ok());
                    match key.map(str::trim).filter(|k| !k.is_empty()) {
                        Some(key) => verified(verifier, key, "key", ClientClass::Api).await,
                        None => None,
                    }
                }
                IdentitySource::BearerToken(verifier) => {
                    match bearer_token(headers).filter(|t| !t.is_empty()) {
                        Some(t) => {
                            verified(verifier, t, "bearer", ClientClass::Authenticated).await
                        }
                        None => None,
                    }
                }
                IdentitySource::PeerAddress => {
                    let peer = extensions
                        .get::<ConnectInfo<SocketAddr>>()
                        .map(|c| c.0.ip());
                    self.client_ip(peer, headers).map(|ip| Client {
                        class: ClientClass::Anonymous,
                        id: format!("ip:{}", client_net(ip)),
                    })
                }
            };
            if let Some(client) = found {
                return client;
            }
        }
        Client {
            class: ClientClass::Anonymous,
            id: "ip:unknown".into(),
        }
    }
}

/// How long an asynchronous verifier may take before its credential counts
/// as unverified.
pub(crate) const VERIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The client a credential stands for, if `verifier` accepts it: its
/// identity under `kind` (bounded in length), in the verifier's class or
/// `class`.
async fn verified(
    verifier: &Verifier,
    credential: &str,
    kind: &str,
    class: ClientClass,
) -> Option<Client> {
    let accepted = match verifier.check(credential) {
        Verdict::Ready(v) => v,
        // A verifier that does not answer in time refuses: the request is
        // then its address's, and a hung identity service cannot hang it.
        Verdict::Pending(fut) => tokio::time::timeout(VERIFY_TIMEOUT, fut)
            .await
            .ok()
            .flatten(),
    }?;
    let class = match accepted.class {
        Some(c) if c != ClientClass::Internal && c != ClientClass::Anonymous => c,
        _ => class,
    };
    Some(Client {
        class,
        id: credential_id(kind, &accepted.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_id::normalize_id;
    use axum::http::{HeaderValue, Request};
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

    /// Identifies a request with these headers, every credential accepted
    /// as its own identity (what bounds the length of ids is under test).
    fn identify(headers: &[(&str, &[u8])]) -> Client {
        let mut req = Request::new(());
        for (k, v) in headers {
            req.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        let anyone = Verifier::from_fn(|c| Some(super::super::Verified::new(c)));
        let cfg = IdentityConfig {
            sources: vec![
                IdentitySource::api_key("x-api-key", anyone.clone()),
                IdentitySource::bearer(anyone),
                IdentitySource::PeerAddress,
            ],
            ..IdentityConfig::default()
        };
        decided_at_once(&cfg, &req)
    }

    /// The caller of `req` under `cfg`, whose verifiers must decide at once.
    fn decided_at_once(cfg: &IdentityConfig, req: &Request<()>) -> Client {
        let fut = std::pin::pin!(cfg.identify(req.headers(), req.extensions()));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(fut, &mut cx) {
            std::task::Poll::Ready(c) => c,
            std::task::Poll::Pending => panic!("synchronous verifiers decide at once"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_verifier_that_hangs_refuses_after_a_second() {
        let hangs = Verifier::from_async_fn(|_| std::future::pending());
        let cfg = IdentityConfig {
            sources: vec![IdentitySource::bearer(hangs), IdentitySource::PeerAddress],
            ..IdentityConfig::default()
        };
        let mut req = Request::new(());
        req.headers_mut()
            .insert("authorization", HeaderValue::from_static("Bearer t"));
        let start = tokio::time::Instant::now();
        let c = cfg.identify(req.headers(), req.extensions()).await;
        assert_eq!(c.class, ClientClass::Anonymous);
        assert_eq!(start.elapsed(), VERIFY_TIMEOUT);
    }

    #[test]
    fn unverified_credentials_are_the_peer_address() {
        let mut req = Request::new(());
        req.headers_mut()
            .insert("x-api-key", HeaderValue::from_static("invented"));
        req.headers_mut()
            .insert("authorization", HeaderValue::from_static("Bearer invented"));
        let keys = crate::http::KeySet::new().key("real", "acme");
        for sources in [
            IdentityConfig::default().sources,
            vec![
                IdentitySource::api_key("x-api-key", keys.clone()),
                IdentitySource::bearer(keys),
                IdentitySource::PeerAddress,
            ],
        ] {
            let cfg = IdentityConfig {
                sources,
                ..IdentityConfig::default()
            };
            let c = decided_at_once(&cfg, &req);
            assert_eq!(c.class, ClientClass::Anonymous);
            assert_eq!(c.id, "ip:unknown", "no peer address in this request");
        }
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
