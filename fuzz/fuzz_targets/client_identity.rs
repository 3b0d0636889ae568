//! Client identity as `http::LimiterLayer` resolves it (the `Client` it
//! puts in the request's extensions), through the public API: a layer
//! without rules in front of a service that hands the `Client` back. Inputs
//! are arbitrary header maps (values from arbitrary bytes, non-UTF-8
//! included, and long ones; forwarded chains built from addresses in the
//! forms proxies write, mixed with garbage), arbitrary peer addresses, an
//! optional application-inserted `Client`, and layers that differ in
//! identity sources, trusted proxies (none, some, all), forwarded header
//! (`X-Forwarded-For` or `Forwarded`) and internal secret.
//!
//! Checks:
//! - no panic, and the layer answers at once (the future is ready on its
//!   first poll);
//! - the same request gives the same client;
//! - every id the layer makes is at most `bearer:` + 128 bytes
//!   (`MAX_CREDENTIAL_ID` in `identity.rs`), whatever the headers hold; a
//!   longer credential, or one starting with `#`, becomes `key:#`/`bearer:#`
//!   and the 16 hex digits of its fixed-key SipHash;
//! - class and id follow the sources in order: internal exactly when a
//!   header carries the secret, the application's client (never one that
//!   claims to be internal), the API key or bearer token as sent (trimmed),
//!   else the address;
//! - an address id is `ip:` and an IPv4 address or an IPv6 /64; without a
//!   trusted proxy in front, it is the peer's, whatever forwarded headers
//!   say.

#![no_main]

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request};
use axum::response::Response;
use libfuzzer_sys::fuzz_target;
use limiter_runtime::http::{Client, ClientClass, ForwardedHeader, IdentitySource, LimiterLayer};
use tower::{service_fn, Layer, Service};

/// `MAX_CREDENTIAL_ID` of `limiter-runtime/src/http/identity.rs`.
const MAX_CREDENTIAL: usize = 128;
/// The longest id the layer may make: `bearer:` and a credential.
const MAX_ID: usize = "bearer:".len() + MAX_CREDENTIAL;
const SECRET_HEADER: &str = "x-internal-secret";
const SECRET: &[u8] = b"s3cret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    None,
    /// 10.0.0.0/8, ::1 and 2001:db8::/32.
    Some,
    All,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    trust: Trust,
    sources: usize,
    secret: bool,
}

const SOURCES: [&[Src]; 4] = [
    &[Src::Extension, Src::ApiKey, Src::Bearer, Src::Peer],
    &[Src::Peer],
    &[Src::Bearer, Src::ApiKey, Src::Peer],
    &[Src::Extension],
];

#[derive(Debug, Clone, Copy)]
enum Src {
    Extension,
    ApiKey,
    Bearer,
    Peer,
}

impl Src {
    fn source(self) -> IdentitySource {
        match self {
            Src::Extension => IdentitySource::Extension,
            Src::ApiKey => IdentitySource::ApiKeyHeader(HeaderName::from_static("x-api-key")),
            Src::Bearer => IdentitySource::BearerToken,
            Src::Peer => IdentitySource::PeerAddress,
        }
    }
}

/// Every combination of the settings, each with its layer (built once:
/// a layer registers itself with the global registry's monitor).
fn layers() -> &'static [(Config, LimiterLayer)] {
    static LAYERS: OnceLock<Vec<(Config, LimiterLayer)>> = OnceLock::new();
    LAYERS.get_or_init(|| {
        let mut all = Vec::new();
        for trust in [Trust::None, Trust::Some, Trust::All] {
            for forwarded in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
                for (sources, list) in SOURCES.iter().enumerate() {
                    for secret in [false, true] {
                        let config = Config {
                            trust,
                            sources,
                            secret,
                        };
                        let proxies: &[&str] = match trust {
                            Trust::None => &[],
                            Trust::Some => &["10.0.0.0/8", "::1", "2001:db8::/32"],
                            Trust::All => &["0.0.0.0/0", "::/0"],
                        };
                        let mut b = LimiterLayer::builder()
                            .identity(list.iter().map(|s| s.source()))
                            .trust_proxies(proxies)
                            .forwarded_header(forwarded);
                        if secret {
                            b = b.internal_secret(SECRET_HEADER, SECRET);
                        }
                        all.push((config, b.build().expect("valid layer")));
                    }
                }
            }
        }
        all
    })
}

#[derive(Arbitrary, Debug)]
struct Input {
    layer: u8,
    peer: Option<Peer>,
    headers: Vec<(Name, Val)>,
    /// A client the application inserted: class, id.
    extension: Option<(u8, String)>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Peer {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
    /// 10.0.0.x, trusted by `Trust::Some`.
    Ten(u8),
    /// ::ffff:10.0.0.x, IPv4-mapped.
    MappedTen(u8),
    Loopback6,
}

#[derive(Arbitrary, Debug)]
enum Name {
    XForwardedFor,
    Forwarded,
    ApiKey,
    Authorization,
    Internal,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Val {
    Raw(Vec<u8>),
    Chain(Vec<Hop>),
    Bearer(Vec<u8>),
    Secret,
    /// `chunk` repeated `times` (up to 64 KiB in all).
    Long {
        chunk: Vec<u8>,
        times: u16,
    },
}

#[derive(Arbitrary, Debug)]
enum Hop {
    Ip(Ip, Form),
    Garbage(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
    Ten(u8),
    Doc6(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Form {
    Plain,
    Port(u16),
    Quoted,
    For,
    ForQuotedPort(u16),
}

impl Ip {
    fn addr(self) -> IpAddr {
        match self {
            Ip::V4(b) => IpAddr::from(b),
            Ip::V6(b) => IpAddr::from(b),
            Ip::Ten(x) => IpAddr::V4(Ipv4Addr::new(10, 0, 0, x)),
            Ip::Doc6(x) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, x)),
        }
    }
}

impl Hop {
    fn bytes(&self) -> Vec<u8> {
        let (ip, form) = match self {
            Hop::Garbage(g) => return g.clone(),
            Hop::Ip(ip, form) => (ip.addr(), form),
        };
        let with_port = |port: u16| SocketAddr::new(ip, port).to_string();
        match form {
            Form::Plain => ip.to_string(),
            Form::Port(p) => with_port(*p),
            Form::Quoted => format!("\"{ip}\""),
            Form::For => format!("for={ip}"),
            Form::ForQuotedPort(p) => format!("for=\"{}\";proto=https", with_port(*p)),
        }
        .into_bytes()
    }
}

impl Peer {
    fn addr(self) -> SocketAddr {
        let ip = match self {
            Peer::V4(b, _) => IpAddr::from(b),
            Peer::V6(b, _) => IpAddr::from(b),
            Peer::Ten(x) => IpAddr::V4(Ipv4Addr::new(10, 0, 0, x)),
            Peer::MappedTen(x) => IpAddr::V6(Ipv4Addr::new(10, 0, 0, x).to_ipv6_mapped()),
            Peer::Loopback6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let port = match self {
            Peer::V4(_, p) | Peer::V6(_, p) => p,
            _ => 443,
        };
        SocketAddr::new(ip, port)
    }
}

fn class_of(n: u8) -> ClientClass {
    match n % 4 {
        0 => ClientClass::Anonymous,
        1 => ClientClass::Authenticated,
        2 => ClientClass::Api,
        _ => ClientClass::Internal,
    }
}

fn header_map(headers: &[(Name, Val)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, val) in headers {
        let name = match name {
            Name::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            Name::Forwarded => HeaderName::from_static("forwarded"),
            Name::ApiKey => HeaderName::from_static("x-api-key"),
            Name::Authorization => HeaderName::from_static("authorization"),
            Name::Internal => HeaderName::from_static(SECRET_HEADER),
            Name::Other(n) => match HeaderName::from_bytes(n.as_bytes()) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        let bytes = match val {
            Val::Raw(b) => b.clone(),
            Val::Chain(hops) => hops
                .iter()
                .map(Hop::bytes)
                .collect::<Vec<_>>()
                .join(&b", "[..]),
            Val::Bearer(token) => [&b"Bearer "[..], token].concat(),
            Val::Secret => SECRET.to_vec(),
            Val::Long { chunk, times } => {
                let n = (usize::from(*times) + 1).min((64 << 10) / chunk.len().max(1));
                chunk.repeat(n)
            }
        };
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            map.append(name, v);
        }
    }
    map
}

fn request(input: &Input, headers: &HeaderMap) -> Request<Body> {
    let mut req = Request::new(Body::empty());
    *req.headers_mut() = headers.clone();
    if let Some(peer) = input.peer {
        req.extensions_mut().insert(ConnectInfo(peer.addr()));
    }
    if let Some((class, id)) = &input.extension {
        req.extensions_mut().insert(Client {
            class: class_of(*class),
            id: id.clone(),
        });
    }
    req
}

/// Polls `fut` once: the layer must not wait.
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the layer waited"),
    }
}

/// The client the layer gives `req`.
fn identify(layer: &LimiterLayer, req: Request<Body>) -> Client {
    let echo = service_fn(|req: Request<Body>| async move {
        let client = req.extensions().get::<Client>().cloned();
        let mut resp = Response::new(Body::empty());
        resp.extensions_mut().insert(client);
        Ok::<_, Infallible>(resp)
    });
    let mut svc = layer.layer(echo);
    let Ok(resp) = ready(svc.call(req));
    resp.extensions()
        .get::<Option<Client>>()
        .cloned()
        .flatten()
        .expect("the layer puts a Client in the extensions")
}

/// The id of an address: IPv4 (also IPv4-mapped) as it is, IPv6 as its /64.
fn ip_id(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!(
                "ip:{}/64",
                Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)
            )
        }
    }
}

fn trusted(trust: Trust, ip: IpAddr) -> bool {
    match (trust, ip.to_canonical()) {
        (Trust::None, _) => false,
        (Trust::All, _) => true,
        (Trust::Some, IpAddr::V4(v4)) => v4.octets()[0] == 10,
        (Trust::Some, IpAddr::V6(v6)) => {
            let s = v6.segments();
            v6 == Ipv6Addr::LOCALHOST || (s[0], s[1]) == (0x2001, 0xdb8)
        }
    }
}

/// The id of a credential as the layer must give it: the value itself, or,
/// when it is longer than `MAX_CREDENTIAL` or starts with `#`, `#` and the
/// fixed-key SipHash of its bytes (the same in every instance).
fn check_credential(kind: &str, value: &str, id: &str) {
    if value.len() <= MAX_CREDENTIAL && !value.starts_with('#') {
        assert_eq!(id, format!("{kind}:{value}"));
    } else {
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hasher::write(&mut h, value.as_bytes());
        let fingerprint = std::hash::Hasher::finish(&h);
        assert_eq!(id, format!("{kind}:#{fingerprint:016x}"));
    }
}

fn check(config: Config, input: &Input, headers: &HeaderMap, client: &Client) {
    let internal = config.secret
        && headers
            .get_all(SECRET_HEADER)
            .iter()
            .any(|v| v.as_bytes() == SECRET);
    if internal {
        assert_eq!(
            (client.class, client.id.as_str()),
            (ClientClass::Internal, "internal")
        );
        return;
    }
    assert_ne!(
        client.class,
        ClientClass::Internal,
        "internal without the secret"
    );
    for src in SOURCES[config.sources] {
        match src {
            Src::Extension => {
                if let Some((class, id)) = &input.extension {
                    if class_of(*class) != ClientClass::Internal {
                        assert_eq!((client.class, &client.id), (class_of(*class), id));
                        return;
                    }
                }
            }
            Src::ApiKey => {
                let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
                if let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) {
                    assert_eq!(client.class, ClientClass::Api);
                    check_credential("key", key, &client.id);
                    return;
                }
            }
            Src::Bearer => {
                let token = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim())
                    .filter(|t| !t.is_empty());
                if let Some(token) = token {
                    assert_eq!(client.class, ClientClass::Authenticated);
                    check_credential("bearer", token, &client.id);
                    return;
                }
            }
            Src::Peer => {
                let Some(peer) = input.peer else { continue };
                let peer = peer.addr().ip();
                assert_eq!(client.class, ClientClass::Anonymous);
                if !trusted(config.trust, peer) {
                    assert_eq!(client.id, ip_id(peer), "untrusted peer {peer}");
                }
                let addr = client.id.strip_prefix("ip:").expect("an address id");
                let valid = match addr.strip_suffix("/64") {
                    Some(net) => net.parse::<Ipv6Addr>().is_ok(),
                    None => addr.parse::<Ipv4Addr>().is_ok(),
                };
                assert!(valid, "{:?}", client.id);
                return;
            }
        }
    }
    assert_eq!(
        (client.class, client.id.as_str()),
        (ClientClass::Anonymous, "ip:unknown")
    );
}

fuzz_target!(|input: Input| {
    let all = layers();
    let (config, layer) = &all[usize::from(input.layer) % all.len()];
    let headers = header_map(&input.headers);
    let client = identify(layer, request(&input, &headers));
    let again = identify(layer, request(&input, &headers));
    assert_eq!(client, again, "not deterministic");
    let from_app = input
        .extension
        .as_ref()
        .is_some_and(|(_, id)| *id == client.id);
    if !from_app {
        assert!(client.id.len() <= MAX_ID, "id of {} bytes", client.id.len());
    }
    check(*config, &input, &headers, &client);
});
