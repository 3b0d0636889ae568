//! Hostile input over HTTP: a flood of distinct client keys, malformed and
//! oversized forwarding and credential headers, odd paths, and every wrong
//! way to present the admin token. Each request gets a clean answer (a
//! status line, never a reset or a panic), the server keeps serving, key
//! tables stay capped and client ids stay short.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path};
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use limiter::http::{Client, ForwardedHeader, LimiterLayer, Monitoring, Rule, Verified, Verifier};
use limiter::{OpConfig, Registry};
use serde_json::Value;
use tower::ServiceExt;

use super::{client, registry, serve};

/// The longest client id the layer may derive: `bearer:` and a credential
/// of at most 128 bytes (longer ones become a 16-hex-digit fingerprint).
const MAX_ID: usize = "bearer:".len() + 128;

/// The resident set size of this process, in bytes (`VmRSS`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Sends `head` (request line and headers, with the final blank line) on a
/// fresh connection and reads the answer: its status and its body. A
/// connection reset or closed before a status line, or no answer in 10 s,
/// fails the test.
async fn raw(base: &str, head: Vec<u8>) -> (u16, String) {
    let addr = base.strip_prefix("http://").unwrap().to_owned();
    let what = String::from_utf8_lossy(&head[..head.len().min(80)]).into_owned();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&head)
            .unwrap_or_else(|e| panic!("{what:?}: write: {e}"));
        let mut answer = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                // A reset after a complete answer is the server closing a
                // connection it will not read further: the answer counts.
                Err(e) if answer.windows(4).any(|w| w == b"\r\n\r\n") => {
                    eprintln!("{what:?}: {e} after the answer");
                    break;
                }
                Err(e) => panic!("{what:?}: no answer: {e}"),
            }
        }
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|t| t.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{what:?}: not an HTTP answer: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        (status, body)
    })
    .await
    .unwrap()
}

/// A GET of `target` with `headers` (raw bytes) and `Connection: close`.
fn get_head(target: &str, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut h = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n").into_bytes();
    for (k, v) in headers {
        h.extend_from_slice(k.as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(v);
        h.extend_from_slice(b"\r\n");
    }
    h.extend_from_slice(b"Connection: close\r\n\r\n");
    h
}

// ---------------------------------------------------------------------
// 1. Key flood
// ---------------------------------------------------------------------

/// Cap of each key table in the flood: the layer rule's and the op's.
const CAP: usize = 10_000;
/// Distinct client keys sent over real TCP.
const OVER_TCP: u32 = 3_000;
/// Keys sent before the steady state: twice the cap, so both tables are
/// full and evicting.
const WARM: u32 = 2 * CAP as u32;
/// Bytes an idle per-key rate entry costs (the allocation test measures
/// 121 with dhat), rounded up for the maps' spare capacity.
const BYTES_PER_KEY: u64 = 256;
const MB: u64 = 1024 * 1024;
/// Allowed RSS growth over the whole flood: the two capped tables
/// (2 × 10 000 × 256 B ≈ 5 MB) plus 16 MB of allocator slack, worker
/// arenas and the other tests of this binary running at the same time.
/// Tables keeping every key would take 2 × 121 B per key: 242 MB for the
/// 1 000 000 keys of the flood.
const RSS_BOUND: u64 = 2 * CAP as u64 * BYTES_PER_KEY + 16 * MB;
/// Allowed RSS growth once both tables are full (after [`WARM`] keys): the
/// tables no longer grow, so only noise. Keeping every key would add
/// 2 × 121 B × 980 000 ≈ 237 MB over the rest of the flood.
const STEADY_BOUND: u64 = 12 * MB;

/// The flood's client `i`: an API key for even `i`, a forwarded address
/// (from the trusted proxy 127.0.0.1) for odd `i`; `base` keeps the
/// in-process and TCP keys apart.
fn flood_header(i: u32, base: u32) -> (&'static str, String) {
    if i.is_multiple_of(2) {
        ("x-api-key", format!("k{base}-{i}"))
    } else {
        ("x-forwarded-for", Ipv4Addr::from(base + i).to_string())
    }
}

fn flood_id(i: u32, base: u32) -> String {
    match flood_header(i, base) {
        ("x-api-key", k) => format!("key:{k}"),
        (_, ip) => format!("ip:{ip}"),
    }
}

/// Sends `in_process` distinct client keys through the real router and
/// `LimiterLayer` in process (`oneshot` with built requests, no sockets),
/// then [`OVER_TCP`] more over TCP, to a route whose rule limits each
/// client and whose handler limits it again in an op keyed by the id the
/// layer derived; both tables are capped at [`CAP`].
async fn key_flood(in_process: u32) {
    let reg: &'static Registry = registry();
    // A burst of 5: each flood key keeps 4 calls, so it may be forgotten to
    // make room. (With the default burst of 1 every flood key is refused
    // after its call, and since issue 15 a refused key is never evicted:
    // the full table would refuse new keys as `Overloaded` instead.)
    reg.configure(
        "per-client",
        OpConfig {
            max_keys: Some(CAP),
            burst: Some(5),
            ..OpConfig::default()
        }
        .with_rate_per_key("5/min")
        .unwrap(),
    )
    .unwrap();
    let op = reg.op("per-client");
    let layer = LimiterLayer::builder()
        .registry(reg)
        .api_keys("x-api-key", anyone())
        .rule(Rule::new("/flood").name("flood").per_minute(5))
        .trust_proxies(["127.0.0.1"])
        .max_keys(CAP)
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/flood",
            get(move |Extension(c): Extension<Client>| {
                let op = op.clone();
                async move {
                    match op.check_key(&c.id) {
                        Ok(()) => StatusCode::OK.into_response(),
                        Err(e) => e.into_response(),
                    }
                }
            }),
        )
        .layer(layer);
    const IN_BASE: u32 = 0x0B00_0000; // 11.0.0.0: not a trusted proxy
    const TCP_BASE: u32 = 0x6440_0000; // 100.64.0.0

    // Two tasks (one per worker), each sending keys `w`, `w + 2`, … of
    // `range`; returns how many were admitted.
    let send = |range: std::ops::Range<u32>| {
        let tasks: Vec<_> = (0..2u32)
            .map(|w| {
                let app = app.clone();
                let range = range.clone();
                tokio::spawn(async move {
                    let peer = ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000)));
                    let mut ok = 0u32;
                    for i in range.skip(w as usize).step_by(2) {
                        let (name, value) = flood_header(i, IN_BASE);
                        let mut req = Request::get("/flood")
                            .header(name, value)
                            .body(Body::empty())
                            .unwrap();
                        req.extensions_mut().insert(peer);
                        let resp = app.clone().oneshot(req).await.unwrap();
                        assert_eq!(resp.status(), 200, "client {}", flood_id(i, IN_BASE));
                        ok += 1;
                    }
                    ok
                })
            })
            .collect();
        async move {
            let mut ok = 0;
            for t in tasks {
                ok += t.await.unwrap();
            }
            ok
        }
    };

    let before = rss();
    let start = Instant::now();
    let mut admitted = send(0..WARM).await;
    let warm = rss();
    admitted += send(WARM..in_process).await;
    let in_process_time = start.elapsed();
    assert_eq!(admitted, in_process, "every new client has a full budget");

    // A few thousand more over real TCP, on one keep-alive connection.
    let base = serve(app).await;
    let c = client();
    let start_tcp = Instant::now();
    for i in 0..OVER_TCP {
        let (name, value) = flood_header(i, TCP_BASE);
        let resp = c
            .get(format!("{base}/flood"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "client {}", flood_id(i, TCP_BASE));
    }
    let over_tcp = start_tcp.elapsed();
    let after = rss();

    let keyed = reg
        .op("per-client")
        .snapshot()
        .rate_per_key
        .expect("a per-key rate");
    let (keys, evicted) = (keyed.keys.unwrap(), keyed.keys_evicted.unwrap());
    let growth = after.saturating_sub(before);
    let steady = after.saturating_sub(warm);
    eprintln!(
        "key flood: {in_process} distinct keys in process in {in_process_time:.2?} \
         ({:.0} req/s), {OVER_TCP} over TCP in {over_tcp:.2?}; op key table \
         {keys}/{CAP} (evicted {evicted}); RSS {:.1} MB before, {:.1} MB with \
         full tables ({WARM} keys), {:.1} MB after: +{:.1} MB (bound {:.1}), \
         +{:.1} MB after the tables filled (bound {:.1})",
        f64::from(in_process) / in_process_time.as_secs_f64(),
        mb(before),
        mb(warm),
        mb(after),
        mb(growth),
        mb(RSS_BOUND),
        mb(steady),
        mb(STEADY_BOUND),
    );
    assert!(keys <= CAP, "{keys} keys tracked, cap {CAP}");
    assert_eq!(
        keys as u64 + evicted,
        u64::from(in_process + OVER_TCP),
        "every key sent was tracked, then kept or evicted"
    );
    // The layer's rule table: the first clients were evicted, the last
    // ones are tracked (by the rule and by the op).
    let sources =
        |id: &str| -> Vec<String> { reg.key_limits(id).into_iter().map(|v| v.source).collect() };
    for first in [flood_id(0, IN_BASE), flood_id(1, IN_BASE)] {
        assert!(sources(&first).is_empty(), "{first}: {:?}", sources(&first));
    }
    let last = flood_id(OVER_TCP - 1, TCP_BASE);
    assert_eq!(sources(&last), ["op per-client", "rule flood"], "{last}");
    assert!(
        growth < RSS_BOUND,
        "RSS grew by {:.1} MB with {CAP} keys per table (bound {:.1} MB)",
        mb(growth),
        mb(RSS_BOUND)
    );
    assert!(
        steady < STEADY_BOUND,
        "RSS grew by {:.1} MB after the tables were full (bound {:.1} MB)",
        mb(steady),
        mb(STEADY_BOUND)
    );
}

/// One million distinct clients: about 17 s in debug on two idle cores
/// (~60 000 requests/s through the router and layer in process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_flood_of_1m_clients_keeps_key_tables_capped_and_memory_bounded() {
    key_flood(1_000_000).await;
}

// ---------------------------------------------------------------------
// 2. Malformed headers and odd paths
// ---------------------------------------------------------------------

/// An app whose `/whoami` answers the client id the layer derived, under a
/// catch-all rule generous enough never to refuse.
fn whoami_app(layer: LimiterLayer) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|Extension(c): Extension<Client>| async move { c.id }),
        )
        .route("/api/{*rest}", get(|| async { "ok" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<String>| async move { id.len().to_string() }),
        )
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(layer)
}

/// A verifier accepting every credential as its own identity: these tests
/// are about what clients send (floods of distinct keys, huge or odd
/// credentials), as if each were a real customer's.
fn anyone() -> Verifier {
    Verifier::from_fn(|c| Some(Verified::new(c)))
}

fn generous(reg: &'static Registry, header: ForwardedHeader) -> LimiterLayer {
    LimiterLayer::builder()
        .registry(reg)
        .api_keys("x-api-key", anyone())
        .bearer(anyone())
        .rule(Rule::new("*").per_minute(1_000_000))
        .trust_proxies(["127.0.0.1"])
        .forwarded_header(header)
        .build()
        .unwrap()
}

/// One hostile request: headers, and the client id expected (`None`: any
/// id, as long as it is short).
type IdCase = (
    &'static str,
    Vec<(&'static str, Vec<u8>)>,
    Option<&'static str>,
);

async fn check_ids(base: &str, cases: Vec<IdCase>) {
    for (what, headers, expected) in cases {
        let h: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, &v[..])).collect();
        let (status, id) = raw(base, get_head("/whoami", &h)).await;
        assert_eq!(status, 200, "{what}: {id}");
        assert!(id.len() <= MAX_ID, "{what}: id of {} bytes", id.len());
        if let Some(e) = expected {
            assert_eq!(id, e, "{what}");
        }
    }
}

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

#[tokio::test]
async fn malformed_forwarding_and_credential_headers_get_clean_answers() {
    let xff_base = serve(whoami_app(generous(
        registry(),
        ForwardedHeader::XForwardedFor,
    )))
    .await;
    let fwd_base = serve(whoami_app(generous(registry(), ForwardedHeader::Forwarded))).await;
    let peer = Some("ip:127.0.0.1");
    let xff = "x-forwarded-for";
    let many: Vec<String> = (0..10_000)
        .map(|i| format!("198.51.100.{}", i % 256))
        .collect();
    check_ids(
        &xff_base,
        vec![
            (
                "10 000 hops",
                vec![(xff, v(&many.join(", ")))],
                Some("ip:198.51.100.15"),
            ),
            (
                "10 000 trusted hops (walk cut at 32)",
                vec![(xff, v(&vec!["127.0.0.1"; 10_000].join(",")))],
                peer,
            ),
            ("60 KB of junk", vec![(xff, vec![b'a'; 60 * 1024])], peer),
            (
                "60 KB of spaces then an address",
                vec![(xff, [vec![b' '; 60 * 1024], v("203.0.113.9")].concat())],
                Some("ip:203.0.113.9"),
            ),
            ("commas only", vec![(xff, v(",,,"))], peer),
            ("unknown", vec![(xff, v("unknown"))], peer),
            ("garbage", vec![(xff, v("g@rb@ge!!"))], peer),
            ("port out of range", vec![(xff, v("1.2.3.4:99999"))], peer),
            (
                "v4 with port",
                vec![(xff, v("1.2.3.4:80"))],
                Some("ip:1.2.3.4"),
            ),
            (
                "bracketed v6 with port",
                vec![(xff, v("[2001:db8:cafe::17]:4711"))],
                Some("ip:2001:db8:cafe::/64"),
            ),
            (
                "bracketed v6",
                vec![(xff, v("[2001:db8:cafe::17]"))],
                Some("ip:2001:db8:cafe::/64"),
            ),
            ("unclosed bracket", vec![(xff, v("[2001:db8::1"))], peer),
            ("bad v6", vec![(xff, v("[2001:db8:::1]:80"))], peer),
            ("non-UTF-8", vec![(xff, b"\xff\xfe".to_vec())], peer),
            (
                "non-UTF-8 rightmost",
                vec![(xff, b"203.0.113.9, \xff\xfe".to_vec())],
                peer,
            ),
            (
                "90 header lines",
                (0..90)
                    .map(|i| (xff, v(&format!("198.51.100.{i}"))))
                    .collect(),
                Some("ip:198.51.100.89"),
            ),
            // Credentials.
            (
                "non-UTF-8 API key",
                vec![("x-api-key", b"\xff\xfe".to_vec())],
                peer,
            ),
            (
                "non-UTF-8 bearer",
                vec![("authorization", b"Bearer \xff\xfe".to_vec())],
                peer,
            ),
            ("blank API key", vec![("x-api-key", v("   "))], peer),
            (
                "bearer without token",
                vec![("authorization", v("Bearer"))],
                peer,
            ),
            (
                "other scheme",
                vec![("authorization", v("Basic Zm9vOmJhcg=="))],
                peer,
            ),
            (
                "60 KB API key",
                vec![("x-api-key", vec![b'k'; 60 * 1024])],
                None,
            ),
            (
                "60 KB bearer token",
                vec![(
                    "authorization",
                    [v("Bearer "), vec![b't'; 60 * 1024]].concat(),
                )],
                None,
            ),
            (
                "non-UTF-8 Forwarded (ignored here)",
                vec![("forwarded", b"for=\xff".to_vec())],
                peer,
            ),
        ],
    )
    .await;

    let fwd = "forwarded";
    let many_for = vec!["for=198.51.100.7"; 10_000].join(", ");
    check_ids(
        &fwd_base,
        vec![
            ("obfuscated", vec![(fwd, v("for=_hidden"))], peer),
            ("obfuscated quoted", vec![(fwd, v("for=\"_gazonk\""))], peer),
            (
                "obfuscated then real",
                vec![(fwd, v("for=_hidden, for=198.51.100.7"))],
                Some("ip:198.51.100.7"),
            ),
            ("unknown", vec![(fwd, v("for=unknown"))], peer),
            (
                "missing for=",
                vec![(fwd, v("proto=https;by=10.0.0.1"))],
                peer,
            ),
            ("empty for=", vec![(fwd, v("for="))], peer),
            ("no value at all", vec![(fwd, v(";;;,,,=;"))], peer),
            ("bad quoting", vec![(fwd, v("for=\"[2001:db8::1"))], peer),
            ("lone quote", vec![(fwd, v("for=\""))], peer),
            (
                "quoted bracketed v6 with port",
                vec![(fwd, v("for=\"[2001:db8:cafe::17]:4711\";proto=https"))],
                Some("ip:2001:db8:cafe::/64"),
            ),
            (
                "key in capitals",
                vec![(fwd, v("FOR=198.51.100.7"))],
                Some("ip:198.51.100.7"),
            ),
            (
                "10 000 elements",
                vec![(fwd, v(&many_for))],
                Some("ip:198.51.100.7"),
            ),
            ("60 KB of junk", vec![(fwd, vec![b'x'; 60 * 1024])], peer),
            ("non-UTF-8", vec![(fwd, b"for=\xff\xfe".to_vec())], peer),
            (
                "XFF ignored here",
                vec![("x-forwarded-for", v("198.51.100.7"))],
                peer,
            ),
        ],
    )
    .await;

    // More header lines than hyper takes, and a head larger than its
    // buffer: refused by the server before the layer, cleanly.
    let mut too_many: Vec<(&str, &[u8])> = Vec::new();
    for _ in 0..200 {
        too_many.push((xff, b"198.51.100.7"));
    }
    let (status, _) = raw(&xff_base, get_head("/whoami", &too_many)).await;
    assert_eq!(status, 431, "200 header lines");
    let (status, _) = raw(
        &xff_base,
        get_head("/whoami", &[(xff, &vec![b'1'; 300 * 1024])]),
    )
    .await;
    assert!(matches!(status, 200 | 431), "a 300 KB header: {status}");

    // Both servers still serve ordinary requests.
    for base in [&xff_base, &fwd_base] {
        let resp = client().get(format!("{base}/whoami")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ip:127.0.0.1");
    }
}

#[tokio::test]
async fn long_credentials_give_short_stable_client_ids() {
    let reg = registry();
    let layer = LimiterLayer::builder()
        .registry(reg)
        .api_keys("x-api-key", anyone())
        .bearer(anyone())
        .rule(Rule::new("/api/{*rest}").per_minute(2))
        .build()
        .unwrap();
    let base = serve(
        whoami_app(layer).merge(
            Monitoring::new()
                .registry(reg)
                .admin_token("t")
                .router()
                .unwrap(),
        ),
    )
    .await;
    let c = client();
    let key = "k".repeat(60 * 1024);
    let id = |headers: Vec<(&'static str, String)>| {
        let c = c.clone();
        let base = base.clone();
        async move {
            let mut req = c.get(format!("{base}/whoami"));
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.text().await.unwrap()
        }
    };
    let a = id(vec![("x-api-key", key.clone())]).await;
    assert!(a.starts_with("key:#") && a.len() == 21, "{a}");
    assert_eq!(a, id(vec![("x-api-key", key.clone())]).await, "stable");
    let b = id(vec![("x-api-key", format!("{key}!"))]).await;
    assert!(b.starts_with("key:#") && b != a, "{b} vs {a}");
    let t = id(vec![("authorization", format!("Bearer {key}"))]).await;
    assert!(t.starts_with("bearer:#") && t.len() == 24, "{t}");
    let short = "k".repeat(128);
    assert_eq!(
        id(vec![("x-api-key", short.clone())]).await,
        format!("key:{short}")
    );

    // The long key is limited as one client, and the monitoring API finds
    // and resets it by its raw form as well as by its fingerprint.
    let api = |k: String| {
        let c = c.clone();
        let base = base.clone();
        async move {
            c.get(format!("{base}/api/x"))
                .header("x-api-key", k)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for expected in [200, 200, 429] {
        assert_eq!(api(key.clone()).await, expected);
    }
    let usage: Value = c
        .get(format!(
            "{base}/monitoring/limits/{}",
            a.replace('#', "%23")
        ))
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["limits"][0]["available"], 0, "{usage}");
    let reset: Value = c
        .post(format!(
            "{base}/monitoring/limits/key:{}/reset",
            &key[..32 * 1024]
        ))
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reset["reset"], 0, "another key: nothing to reset");
    // A URI holds at most 64 KB: reset the whole 60 KB key in process.
    assert_eq!(reg.reset_key_everywhere(&format!("key:{key}")), 1);
    assert_eq!(api(key.clone()).await, 200, "a fresh budget");

    // An op keyed by the client id is found and reset by the raw form too.
    reg.configure(
        "per-client-op",
        OpConfig::default().with_rate_per_key("1/min").unwrap(),
    )
    .unwrap();
    let op = reg.op("per-client-op");
    op.check_key(&a).unwrap();
    assert!(op.check_key(&a).is_err(), "one a minute");
    let views = reg.key_limits(&format!("key:{key}"));
    assert!(
        views
            .iter()
            .any(|v| v.source == "op per-client-op" && v.available == Some(0)),
        "{views:?}"
    );
    assert_eq!(
        reg.reset_key_everywhere(&format!("key:{key}")),
        2,
        "rule and op"
    );
    op.check_key(&a).unwrap();
}

#[tokio::test]
async fn long_and_odd_paths_get_clean_answers() {
    let reg = registry();
    let base = serve(
        whoami_app(generous(reg, ForwardedHeader::XForwardedFor))
            .merge(Monitoring::new().registry(reg).router().unwrap()),
    )
    .await;
    let huge_query = format!("/whoami?{}", "q=1&".repeat(15_000));
    let cases: Vec<(&str, String, &[u16])> = vec![
        ("64 KB path", format!("/{}", "a".repeat(64 * 1024)), &[414]),
        (
            "60 KB path",
            format!("/api/{}", "a".repeat(60 * 1024)),
            &[200],
        ),
        (
            "20 000 segments",
            format!("/api{}", "/a".repeat(20_000)),
            &[200],
        ),
        ("60 000 slashes", "/".repeat(60_000), &[200, 404]),
        ("doubled slashes", "//api//x//".into(), &[200, 404]),
        ("dot segments", "/api/../../../etc/passwd".into(), &[200]),
        ("dot segments only", "/../../..".into(), &[404]),
        (
            "encoded dots",
            format!("/api/{}", "%2e%2e/".repeat(5_000)),
            &[200],
        ),
        ("percent junk", "/api/%ff%fe%00%zz%%".into(), &[200, 400]),
        ("non-UTF-8 parameter", "/users/%ff%fe".into(), &[400]),
        ("NUL parameter", "/users/%00".into(), &[200]),
        ("60 KB query", huge_query, &[200]),
        ("absolute form", "http://example.com/api/x".into(), &[200]),
        ("asterisk form", "*".into(), &[400, 404]),
    ];
    for (what, target, allowed) in cases {
        let (status, body) = raw(&base, get_head(&target, &[])).await;
        assert!(allowed.contains(&status), "{what}: {status} {body:.200}");
    }
    // Methods of every shape: refused cleanly, counted under `OTHER`.
    for m in ["G@T", "GET\x01", ""] {
        let head = format!("{m} /api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, _) = raw(&base, head.into_bytes()).await;
        assert_eq!(status, 400, "method {m:?}");
    }
    for i in 0..50 {
        let head = format!("M{i} /api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, _) = raw(&base, head.into_bytes()).await;
        assert_eq!(status, 405, "method M{i}");
    }
    let routes: Value = client()
        .get(format!("{base}/monitoring/routes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let routes = routes["routes"].as_array().unwrap();
    let methods: Vec<&str> = routes.iter().filter_map(|r| r["method"].as_str()).collect();
    assert!(routes.len() <= 10, "{routes:?}");
    assert!(methods.contains(&"OTHER"), "{methods:?}");
    // Still serving.
    let resp = client().get(format!("{base}/api/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

// ---------------------------------------------------------------------
// 3. Admin token
// ---------------------------------------------------------------------

/// Every way of presenting the admin token that must fail, and the status.
fn wrong_tokens() -> Vec<(&'static str, Vec<Vec<u8>>, u16)> {
    let one = |s: &[u8]| vec![s.to_vec()];
    vec![
        ("no header", vec![], 401),
        ("wrong token", one(b"Bearer s3creT"), 403),
        ("other case", one(b"Bearer S3CRET"), 403),
        ("prefix added", one(b"Bearer xs3cret"), 403),
        ("suffix added", one(b"Bearer s3cretx"), 403),
        ("cut short", one(b"Bearer s3cre"), 403),
        ("twice", one(b"Bearer s3cret s3cret"), 403),
        ("quoted", one(b"Bearer \"s3cret\""), 403),
        ("basic scheme", one(b"Basic s3cret"), 401),
        ("basic credentials", one(b"Basic YWRtaW46czNjcmV0"), 401),
        ("token scheme", one(b"Token s3cret"), 401),
        ("bare token", one(b"s3cret"), 401),
        ("no space", one(b"Bearers3cret"), 401),
        ("empty bearer", one(b"Bearer"), 401),
        ("empty bearer, spaces", one(b"Bearer   "), 401),
        ("non-UTF-8", one(b"Bearer \xff\xfe"), 401),
        ("non-UTF-8 suffix", one(b"Bearer s3cret\xff"), 401),
        (
            "wrong line first",
            vec![b"Bearer nope".to_vec(), b"Bearer s3cret".to_vec()],
            403,
        ),
    ]
}

async fn status_with(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    auth: &[Vec<u8>],
) -> u16 {
    let mut req = c.request(method, url);
    for a in auth {
        req = req.header(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_bytes(a).unwrap(),
        );
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if status == 401 {
        assert_eq!(
            resp.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer realm=\"limiter\""),
            "{url}"
        );
    }
    status
}

#[tokio::test]
async fn admin_endpoints_refuse_every_wrong_token() {
    let reg = registry();
    reg.op("db");
    let layer = LimiterLayer::builder()
        .registry(reg)
        .rule(Rule::new("/api/{*rest}").per_minute(1))
        .build()
        .unwrap();
    let base = serve(
        whoami_app(layer).merge(
            Monitoring::new()
                .registry(reg)
                .admin_token("s3cret")
                .router()
                .unwrap(),
        ),
    )
    .await;
    let c = client();
    let api = format!("{base}/api/x");
    assert_eq!(c.get(&api).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&api).send().await.unwrap().status(), 429);

    // Every mutating endpoint of the monitoring router, and what it answers
    // with the right token.
    let writes = [
        ("/monitoring/alerts/1/acknowledge", 404),
        ("/monitoring/alerts/1/resolve", 404),
        ("/monitoring/breakers/db/reset", 200),
        ("/monitoring/limits/ip:127.0.0.1/reset", 200),
    ];
    for (path, _) in writes {
        let url = format!("{base}{path}");
        for (what, auth, expected) in wrong_tokens() {
            let got = status_with(&c, reqwest::Method::POST, &url, &auth).await;
            assert_eq!(got, expected, "{path}: {what}");
        }
    }
    // Nothing was reset by the refused calls.
    assert_eq!(c.get(&api).send().await.unwrap().status(), 429);
    assert_eq!(reg.key_limits("ip:127.0.0.1")[0].available, Some(0));
    for (path, expected) in writes {
        for auth in [&b"Bearer s3cret"[..], b"bearer s3cret", b"BEARER   s3cret"] {
            let got = status_with(
                &c,
                reqwest::Method::POST,
                &format!("{base}{path}"),
                &[auth.to_vec()],
            )
            .await;
            assert_eq!(got, expected, "{path}: {}", String::from_utf8_lossy(auth));
        }
    }
    assert_eq!(
        c.get(&api).send().await.unwrap().status(),
        200,
        "the reset took"
    );
    // Reads are open when not protected.
    assert_eq!(
        status_with(
            &c,
            reqwest::Method::GET,
            &format!("{base}/monitoring/summary"),
            &[]
        )
        .await,
        200
    );

    // With protected reads, every read endpoint refuses the same way; the
    // dashboard page holds no data and stays open.
    let base = serve(
        Monitoring::new()
            .registry(reg)
            .admin_token("s3cret")
            .protect_reads(true)
            .router()
            .unwrap(),
    )
    .await;
    let reads = [
        ("/monitoring/summary", 200),
        ("/monitoring/routes", 200),
        ("/monitoring/ops", 200),
        ("/monitoring/ops/db", 200),
        ("/monitoring/alerts", 200),
        ("/monitoring/breakers", 200),
        ("/monitoring/limits/ip:127.0.0.1", 200),
        ("/monitoring/background", 200),
        ("/monitoring/background/1", 404),
        ("/monitoring/backpressure", 200),
        ("/metrics", 200),
    ];
    for (path, expected) in reads {
        let url = format!("{base}{path}");
        for (what, auth, refused) in wrong_tokens() {
            let got = status_with(&c, reqwest::Method::GET, &url, &auth).await;
            assert_eq!(got, refused, "{path}: {what}");
        }
        let ok = status_with(&c, reqwest::Method::GET, &url, &[b"Bearer s3cret".to_vec()]).await;
        assert_eq!(ok, expected, "{path}");
    }
    assert_eq!(
        status_with(
            &c,
            reqwest::Method::GET,
            &format!("{base}/monitoring/dashboard"),
            &[]
        )
        .await,
        200
    );
}
