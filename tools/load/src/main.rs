//! HTTP load generator for the example server: shows that the limits work.
//!
//! Start the server in one terminal and the load in another:
//!
//! ```text
//! cargo run --release --example server
//! cargo run --release -p limiter-load -- --duration 20s
//! ```
//!
//! Workers (`--concurrency`) send requests back to back to the server's routes
//! for `--duration`, optionally capped at `--rate` requests per second overall.
//! Each request picks one of `--users` client identities: about 30% send
//! `x-api-key: key-<n>` (class api), 30% `Authorization: Bearer user-<n>`
//! (class authenticated) and the rest send nothing (class anonymous: they all
//! share the peer address, so they share one limit).
//!
//! While it runs it shows a progress bar (or, when stdout is not a terminal,
//! one line a second). At the end it prints, per route, how many requests got
//! 2xx, 202, 408, 429, 503, 504, another status or a connection error, with
//! p50/p95/p99 latencies, then a word on what the 429s and 503s mean and the
//! `Retry-After`/`RateLimit` headers of the first 429 as an example.
//!
//! Streams and batches: `speech` asks `GET /api/speech/{words}` for a
//! chunked "audio" stream and reads it to the end, one request in four
//! slowly (a pause between chunks, as a client playing it back would), so
//! the server's backpressure handler has to drop chunks; the summary says
//! how many bytes arrived of those synthesized. `batch` posts 1-20 items to
//! `POST /api/batch`, which charges one per item against the client's
//! budget: a 429 there is a refusal, like any other. A server without that
//! route answers 404 or 405, shown in the `other` column.
//!
//! Chaos: the route `chaos` (only when named in `--routes`) calls the
//! misbehaving `GET /chaos` and `GET /chaos/{key}` of a server started with
//! `--chaos`; its panics show as `err` (the connection drops), its hangs as
//! 504. `--disconnect 0.1` makes one request in ten give up after 1-50 ms,
//! dropping its connection mid-call as a client that went away would; the
//! table then has a `gone` column counting them.
//!
//! ```text
//! cargo run --release -p limiter-load -- --concurrency 64 --users 200 --duration 1m
//! cargo run --release -p limiter-load -- --routes hash,reports --rate 200
//! cargo run --release -p limiter-load -- --routes chaos,users --disconnect 0.1
//! cargo run --release -p limiter-load -- --help
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};

/// How long in-flight requests may still finish once the duration is over.
const GRACE: Duration = Duration::from_secs(2);
/// Progress refresh period (the plain, non-terminal output prints every 10th).
const REFRESH: Duration = Duration::from_millis(100);
/// Pause of a worker after a failed connect, so a missing server isn't spun on.
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// How soon a `--disconnect` request gives up: uniform in this range, in ms.
const DISCONNECT_MS: (u64, u64) = (1, 50);

const CITIES: [&str; 8] = [
    "london", "paris", "berlin", "madrid", "tokyo", "sydney", "toronto", "nairobi",
];
const FILES: [&str; 3] = ["readme.txt", "config.toml", "missing.txt"];
/// Few distinct terms, so that coalescing and caching have something to do.
const TERMS: [&str; 5] = ["rust", "tokio", "limits", "breaker", "bulkhead"];
/// Bytes of one spoken word in `GET /api/speech/{words}`.
const SPEECH_WORD_BYTES: u64 = 1024;
/// Words asked of the speech route: most streams are short, a slow
/// reader's long enough to fill the server's 64 KiB buffer and more.
const SPEECH_WORDS: (u64, u64) = (10, 100);
const SPEECH_WORDS_SLOW: (u64, u64) = (300, 1000);
/// A slow reader's pause after each chunk it reads.
const SLOW_READ_PAUSE: Duration = Duration::from_millis(5);
/// Items in one `POST /api/batch` (the server accepts 1 to 20).
const BATCH_ITEMS: (u64, u64) = (1, 20);

// ---------------------------------------------------------------- routes ---

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Users,
    Weather,
    Files,
    Hash,
    Reports,
    Search,
    Speech,
    Batch,
    Chaos,
}

impl Route {
    const ALL: [Route; 9] = [
        Route::Users,
        Route::Weather,
        Route::Files,
        Route::Hash,
        Route::Reports,
        Route::Search,
        Route::Speech,
        Route::Batch,
        Route::Chaos,
    ];
    /// Name on the command line (`--routes`).
    fn name(self) -> &'static str {
        match self {
            Route::Users => "users",
            Route::Weather => "weather",
            Route::Files => "files",
            Route::Hash => "hash",
            Route::Reports => "reports",
            Route::Search => "search",
            Route::Speech => "speech",
            Route::Batch => "batch",
            Route::Chaos => "chaos",
        }
    }

    /// Route template, as the report shows it.
    fn label(self) -> &'static str {
        match self {
            Route::Users => "GET /api/users/{id}",
            Route::Weather => "GET /api/weather/{city}",
            Route::Files => "GET /api/files/{name}",
            Route::Hash => "POST /api/hash",
            Route::Reports => "POST /api/reports",
            Route::Search => "GET /api/search?q={q}",
            Route::Speech => "GET /api/speech/{words}",
            Route::Batch => "POST /api/batch",
            Route::Chaos => "GET /chaos[/{key}]",
        }
    }

    /// Share of the traffic, relative to the other selected routes.
    fn weight(self) -> u64 {
        match self {
            Route::Users => 40,
            Route::Weather => 15,
            Route::Files => 12,
            Route::Hash => 8,
            Route::Reports => 5,
            Route::Search => 20,
            Route::Speech => 6,
            Route::Batch => 10,
            Route::Chaos => 40,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Client class, as the server's limits see it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Api,
    Authenticated,
    Anonymous,
}

impl Class {
    /// Identities interleave so that even a handful of users has all three.
    fn of(user: u64) -> Class {
        match (user - 1) % 10 {
            0 | 3 | 6 => Class::Api,
            1 | 4 | 7 => Class::Authenticated,
            _ => Class::Anonymous,
        }
    }
}

// ------------------------------------------------------------------- cli ---

/// Load generator for the limiter example server: shows that the limits
/// work. Start the server first: `cargo run --release --example server`.
#[derive(Debug, Parser)]
#[command(name = "limiter-load", version)]
struct Config {
    /// Server base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:3000", value_parser = parse_url)]
    url: String,
    /// Concurrent workers.
    #[arg(long, value_name = "N", default_value = "32", value_parser = parse_count)]
    concurrency: u64,
    /// Distinct client identities: ~30% send `x-api-key: key-<n>`, ~30%
    /// `Authorization: Bearer user-<n>`, the rest nothing (anonymous: they
    /// share the peer address).
    #[arg(long, value_name = "N", default_value = "50", value_parser = parse_count)]
    users: u64,
    /// How long to run, e.g. 500ms, 20s, 2m.
    #[arg(long, value_name = "D", default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Cap on requests per second, all workers together [default: no cap].
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Comma-separated subset of users,weather,files,hash,reports,search,
    /// speech,batch,chaos (weights 40,15,12,8,5,20,6,10,40) [default: all
    /// but chaos, which needs a server started with --chaos].
    #[arg(long, value_name = "LIST", default_value = DEFAULT_ROUTES, hide_default_value = true, value_parser = parse_routes)]
    routes: ::std::vec::Vec<Route>,
    /// Fraction of requests (0 to 1, e.g. 0.1) that give up after 1-50 ms,
    /// dropping the connection mid-call.
    #[arg(long, value_name = "F", default_value = "0", value_parser = parse_fraction)]
    disconnect: f64,
}

/// `--routes` when not given: every route but chaos.
const DEFAULT_ROUTES: &str = "users,weather,files,hash,reports,search,speech,batch";

fn parse_url(value: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(value)
        .map_err(|e| format!("{e}; expected a URL such as http://127.0.0.1:3000"))?;
    match url.scheme() {
        "http" => {}
        "https" => return Err("https is not supported (built without TLS); use http://".into()),
        _ => return Err("expected an http:// URL such as http://127.0.0.1:3000".into()),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("expected a base URL without ?query or #fragment".into());
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn parse_count(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) if n > 100_000 => Err("must be at most 100000".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number such as 32".into()),
    }
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a number with a unit: ms, s, m or h (e.g. 500ms, 20s, 2m)";
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().map_err(|_| EXPECTED.to_string())?;
    let secs = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(EXPECTED.into()),
    };
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d >= Duration::from_millis(1) => Ok(d),
        Ok(_) => Err("must be at least 1ms".into()),
        Err(_) => Err(EXPECTED.into()),
    }
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        Ok(_) => Err("must be a number of requests per second above 0".into()),
        Err(_) => Err("expected requests per second, e.g. 500".into()),
    }
}

fn parse_fraction(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        Ok(_) => Err("must be between 0 and 1".into()),
        Err(_) => Err("expected a fraction such as 0.1".into()),
    }
}

fn parse_routes(value: &str) -> Result<Vec<Route>, String> {
    let mut routes = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let route = Route::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Route::ALL.iter().map(|r| r.name()).collect();
                format!("unknown route `{name}`; choose from {}", names.join(","))
            })?;
        if !routes.contains(&route) {
            routes.push(route);
        }
    }
    if routes.is_empty() {
        return Err("name at least one route".into());
    }
    // Keep the table in the usual order whatever order the flag gave.
    routes.sort_by_key(|r| r.index());
    Ok(routes)
}

// ------------------------------------------------------------ randomness ---

/// splitmix64: plenty for picking request parameters.
struct Rng(u64);

impl Rng {
    fn new(stream: u64) -> Rng {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng(now ^ stream.wrapping_mul(0xA076_1D64_78BD_642F))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Bytes for `POST /api/hash`; bodies are slices of it, so no copy per request.
fn payload() -> &'static [u8] {
    static PAYLOAD: OnceLock<Vec<u8>> = OnceLock::new();
    PAYLOAD.get_or_init(|| {
        let mut rng = Rng(0x5EED);
        (0..64 * 1024).map(|_| rng.next() as u8).collect()
    })
}

// ------------------------------------------------------------ statistics ---

/// What a request came back with, in the classes the report shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Accepted,
    RequestTimeout,
    TooMany,
    Unavailable,
    GatewayTimeout,
    Other,
    Error,
    /// Given up by the client on purpose (`--disconnect`).
    Gone,
}

const OUTCOMES: usize = 9;

impl Outcome {
    fn of(status: u16) -> Outcome {
        match status {
            202 => Outcome::Accepted,
            200..=299 => Outcome::Ok,
            408 => Outcome::RequestTimeout,
            429 => Outcome::TooMany,
            503 => Outcome::Unavailable,
            504 => Outcome::GatewayTimeout,
            _ => Outcome::Other,
        }
    }
}

/// Latencies in microseconds, to 3 significant figures, up to an hour.
#[derive(Clone)]
struct Histogram(hdrhistogram::Histogram<u64>);

impl Default for Histogram {
    fn default() -> Self {
        Self(hdrhistogram::Histogram::new_with_max(3_600_000_000, 3).expect("valid bounds"))
    }
}

impl Histogram {
    fn record(&mut self, micros: u64) {
        self.0.saturating_record(micros);
    }

    fn merge(&mut self, other: &Histogram) {
        self.0.add(&other.0).expect("same bounds");
    }

    /// Percentile `p` (0..=100) in microseconds.
    fn percentile(&self, p: f64) -> Option<u64> {
        (!self.0.is_empty()).then(|| self.0.value_at_quantile(p / 100.0))
    }
}

#[derive(Clone, Copy)]
enum ErrorKind {
    Connect,
    Timeout,
    Other,
}

#[derive(Clone, Default)]
struct RouteStats {
    counts: [u64; OUTCOMES],
    /// Status codes that fall in the "other" column.
    other: BTreeMap<u16, u64>,
    /// Connection errors by kind: connect, timeout, other.
    errors: [u64; 3],
    /// Latency of every request that got a status, any status.
    latency: Histogram,
}

impl RouteStats {
    fn requests(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn merge(&mut self, other: &RouteStats) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        for (code, n) in &other.other {
            *self.other.entry(*code).or_default() += n;
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.latency.merge(&other.latency);
    }
}

/// What the stream and batch routes add to the report.
#[derive(Clone, Copy, Default)]
struct Extras {
    /// Speech streams answered 200 and read to the end.
    streams: u64,
    /// Of those, streams read slowly.
    slow_streams: u64,
    /// Bytes the server synthesized for those streams, and bytes received.
    synthesized: u64,
    received: u64,
    /// Batch items answered (200) and refused (429).
    items_ok: u64,
    items_refused: u64,
}

impl Extras {
    /// Counts what `sent` came back with: its status and the body's length.
    fn count(&mut self, sent: &Sent, status: u16, received: u64) {
        match (sent.route, status) {
            (Route::Speech, 200) => {
                self.streams += 1;
                self.slow_streams += u64::from(matches!(sent.read, Read::Slowly(_)));
                self.synthesized += sent.units * SPEECH_WORD_BYTES;
                self.received += received;
            }
            (Route::Batch, 200) => self.items_ok += sent.units,
            (Route::Batch, 429) => self.items_refused += sent.units,
            _ => {}
        }
    }

    fn merge(&mut self, other: &Extras) {
        self.streams += other.streams;
        self.slow_streams += other.slow_streams;
        self.synthesized += other.synthesized;
        self.received += other.received;
        self.items_ok += other.items_ok;
        self.items_refused += other.items_refused;
    }
}

/// What one worker saw; merged at the end, so the hot path takes no lock.
#[derive(Clone)]
struct Stats {
    routes: Vec<RouteStats>,
    extras: Extras,
    /// 429s by client class (api, authenticated, anonymous).
    limited: [u64; 3],
    /// Requests still in flight when the run was cut short (not counted).
    abandoned: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            routes: vec![RouteStats::default(); Route::ALL.len()],
            extras: Extras::default(),
            limited: [0; 3],
            abandoned: 0,
        }
    }

    fn merge(&mut self, other: &Stats) {
        for (a, b) in self.routes.iter_mut().zip(&other.routes) {
            a.merge(b);
        }
        for (a, b) in self.limited.iter_mut().zip(other.limited) {
            *a += b;
        }
        self.extras.merge(&other.extras);
        self.abandoned += other.abandoned;
    }
}

// ---------------------------------------------------------------- runner ---

/// Run phases, broadcast to the workers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Phase {
    /// Send requests.
    Running,
    /// Start no new request; let the ones in flight finish.
    Draining,
    /// Drop whatever is still in flight.
    Stopped,
}

#[derive(Clone, Copy)]
enum Reply {
    /// A status, and the bytes of the body read to its end.
    Status(u16, u64),
    Failed(ErrorKind),
    /// The client gave up on purpose (`--disconnect`).
    Gone,
}

/// How a response body is read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Read {
    /// As fast as it comes.
    Whole,
    /// Chunk by chunk with a pause after each: a slow consumer.
    Slowly(Duration),
}

/// What the report needs to know of a request sent.
#[derive(Clone, Copy, Debug)]
struct Sent {
    route: Route,
    class: Class,
    read: Read,
    /// Words asked of the speech route, items sent to the batch route.
    units: u64,
}

/// The first 429, kept as an example of the headers the server sends.
struct Example429 {
    route: Route,
    class: Class,
    headers: Vec<(String, String)>,
}

/// State shared by the workers and the progress display.
struct Shared {
    client: reqwest::Client,
    base: String,
    users: u64,
    /// Selected routes with cumulative weights.
    routes: Vec<(Route, u64)>,
    total_weight: u64,
    /// Rate tokens, when `--rate` is given.
    tokens: Option<Arc<Semaphore>>,
    /// Fraction of requests that give up early.
    disconnect: f64,
    done: AtomicU64,
    too_many: AtomicU64,
    unavailable: AtomicU64,
    errors: AtomicU64,
    gone: AtomicU64,
    in_flight: AtomicU64,
    first_429: OnceLock<Example429>,
    first_location: OnceLock<String>,
    first_error: OnceLock<String>,
}

impl Shared {
    fn pick_route(&self, rng: &mut Rng) -> Route {
        let r = rng.below(self.total_weight);
        self.routes
            .iter()
            .find(|(_, cumulative)| r < *cumulative)
            .map_or(self.routes[0].0, |(route, _)| *route)
    }

    /// A request with realistic parameters for a random route and identity.
    fn plan(&self, rng: &mut Rng) -> (Sent, reqwest::RequestBuilder) {
        let route = self.pick_route(rng);
        let user = rng.range(1, self.users);
        let class = Class::of(user);
        let (base, client) = (&self.base, &self.client);
        let (mut read, mut units) = (Read::Whole, 0);
        let request = match route {
            Route::Users => client.get(format!("{base}/api/users/{}", rng.range(1, 1000))),
            Route::Weather => client.get(format!("{base}/api/weather/{}", rng.pick(&CITIES))),
            Route::Files => client.get(format!("{base}/api/files/{}", rng.pick(&FILES))),
            Route::Hash => {
                let len = rng.range(4 * 1024, 64 * 1024) as usize;
                client
                    .post(format!("{base}/api/hash"))
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(&payload()[..len])
            }
            Route::Reports => {
                // Mostly small reports, now and then a big one that may go
                // to the background.
                let rows = if rng.below(5) == 0 {
                    rng.range(1_000, 50_000)
                } else {
                    rng.range(10, 1_000)
                };
                client
                    .post(format!("{base}/api/reports"))
                    .json(&serde_json::json!({ "rows": rows }))
            }
            Route::Search => client.get(format!("{base}/api/search?q={}", rng.pick(&TERMS))),
            Route::Speech => {
                // One listener in four plays it back as it comes: slowly.
                let slow = rng.below(4) == 0;
                let (lo, hi) = if slow {
                    SPEECH_WORDS_SLOW
                } else {
                    SPEECH_WORDS
                };
                units = rng.range(lo, hi);
                if slow {
                    read = Read::Slowly(SLOW_READ_PAUSE);
                }
                client.get(format!("{base}/api/speech/{units}"))
            }
            Route::Batch => {
                units = rng.range(BATCH_ITEMS.0, BATCH_ITEMS.1);
                let items: Vec<String> = (0..units)
                    .map(|i| format!("{} {i}", rng.pick(&TERMS)))
                    .collect();
                client.post(format!("{base}/api/batch")).json(&items)
            }
            // Two in three to the async op, the rest to the keyed blocking one.
            Route::Chaos if rng.below(3) < 2 => client.get(format!("{base}/chaos")),
            Route::Chaos => client.get(format!("{base}/chaos/{}", rng.range(1, 8))),
        };
        let request = match class {
            Class::Api => request.header("x-api-key", format!("key-{user}")),
            Class::Authenticated => request.bearer_auth(format!("user-{user}")),
            Class::Anonymous => request,
        };
        let sent = Sent {
            route,
            class,
            read,
            units,
        };
        (sent, request)
    }

    async fn execute(&self, sent: Sent, request: reqwest::RequestBuilder) -> Reply {
        let Sent { route, class, .. } = sent;
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Reply::Failed(self.failed(&e)),
        };
        let status = response.status().as_u16();
        if status == 429 && self.first_429.get().is_none() {
            let headers = response
                .headers()
                .iter()
                .filter(|(name, _)| {
                    let name = name.as_str();
                    name == "retry-after"
                        || name.starts_with("ratelimit")
                        || name.starts_with("x-ratelimit")
                })
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_string(), value)
                })
                .collect();
            let _ = self.first_429.set(Example429 {
                route,
                class,
                headers,
            });
        }
        if status == 202 && self.first_location.get().is_none() {
            if let Some(location) = response.headers().get(reqwest::header::LOCATION) {
                let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
                let _ = self.first_location.set(location);
            }
        }
        // Read the body, so the connection goes back to the pool.
        match read_body(response, sent.read).await {
            Ok(bytes) => Reply::Status(status, bytes),
            Err(e) => Reply::Failed(self.failed(&e)),
        }
    }

    fn failed(&self, e: &reqwest::Error) -> ErrorKind {
        let _ = self.first_error.set(error_chain(e));
        if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_connect() {
            ErrorKind::Connect
        } else {
            ErrorKind::Other
        }
    }
}

/// Reads a response body to its end, as `read` says; returns its length.
async fn read_body(mut response: reqwest::Response, read: Read) -> Result<u64, reqwest::Error> {
    match read {
        Read::Whole => Ok(response.bytes().await?.len() as u64),
        Read::Slowly(pause) => {
            let mut total = 0;
            while let Some(chunk) = response.chunk().await? {
                total += chunk.len() as u64;
                tokio::time::sleep(pause).await;
            }
            Ok(total)
        }
    }
}

/// "error sending request: ...: Connection refused" rather than just the top.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn worker(id: u64, shared: Arc<Shared>, mut phase: watch::Receiver<Phase>) -> Stats {
    let mut rng = Rng::new(id + 1);
    let mut stats = Stats::new();
    loop {
        if *phase.borrow() != Phase::Running {
            break;
        }
        if let Some(tokens) = &shared.tokens {
            // The semaphore is closed when the run ends.
            match tokens.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            }
        }
        let (sent, request) = shared.plan(&mut rng);
        let route = sent.route;
        let give_up = rng
            .chance(shared.disconnect)
            .then(|| Duration::from_millis(rng.range(DISCONNECT_MS.0, DISCONNECT_MS.1)));
        shared.in_flight.fetch_add(1, Relaxed);
        let started = Instant::now();
        let call = async {
            let execute = shared.execute(sent, request);
            match give_up {
                // Dropping the request future drops its connection: the
                // server sees the client go away mid-call.
                Some(after) => tokio::time::timeout(after, execute)
                    .await
                    .unwrap_or(Reply::Gone),
                None => execute.await,
            }
        };
        let reply = tokio::select! {
            reply = call => Some(reply),
            _ = phase.wait_for(|p| *p == Phase::Stopped) => None,
        };
        shared.in_flight.fetch_sub(1, Relaxed);
        let Some(reply) = reply else {
            stats.abandoned += 1;
            break;
        };
        let elapsed = started.elapsed();
        let route_stats = &mut stats.routes[route.index()];
        match reply {
            Reply::Status(status, received) => {
                stats.extras.count(&sent, status, received);
                let outcome = Outcome::of(status);
                route_stats.counts[outcome as usize] += 1;
                route_stats.latency.record(elapsed.as_micros() as u64);
                match outcome {
                    Outcome::Other => *route_stats.other.entry(status).or_default() += 1,
                    Outcome::TooMany => {
                        stats.limited[sent.class as usize] += 1;
                        shared.too_many.fetch_add(1, Relaxed);
                    }
                    Outcome::Unavailable => {
                        shared.unavailable.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
            }
            Reply::Failed(kind) => {
                route_stats.counts[Outcome::Error as usize] += 1;
                route_stats.errors[kind as usize] += 1;
                shared.errors.fetch_add(1, Relaxed);
            }
            Reply::Gone => {
                route_stats.counts[Outcome::Gone as usize] += 1;
                shared.gone.fetch_add(1, Relaxed);
            }
        }
        shared.done.fetch_add(1, Relaxed);
        if matches!(reply, Reply::Failed(ErrorKind::Connect)) {
            // Nobody listening: don't spin; retry soon.
            tokio::select! {
                _ = tokio::time::sleep(CONNECT_BACKOFF) => {}
                _ = phase.wait_for(|p| *p != Phase::Running) => break,
            }
        }
    }
    stats
}

/// Hands out `rate` tokens a second from a tokio interval, with a small burst
/// allowance so that idle moments are not made up for later in a rush.
async fn feed_tokens(tokens: Arc<Semaphore>, rate: f64) {
    let burst = (rate * 0.05).ceil().max(1.0) as usize;
    let start = Instant::now();
    let mut granted: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while !tokens.is_closed() {
        tick.tick().await;
        let due = (rate * start.elapsed().as_secs_f64()) as u64;
        let new = (due - granted) as usize;
        granted = due;
        let room = burst.saturating_sub(tokens.available_permits());
        tokens.add_permits(new.min(room));
    }
}

/// Resolves on Ctrl-C: the run stops at once and prints what it has.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handler to be had: run for the whole duration.
        std::future::pending::<()>().await;
    }
}

// -------------------------------------------------------------- progress ---

struct Progress {
    shared: Arc<Shared>,
    bar: Option<ProgressBar>,
    start: Instant,
    total: Duration,
    /// (when, requests done) over the last second, for the current req/s.
    samples: VecDeque<(Instant, u64)>,
    /// When the next plain (non-terminal) line is due.
    next_line: Instant,
}

impl Progress {
    fn new(shared: Arc<Shared>, start: Instant, total: Duration) -> Progress {
        let bar = std::io::stdout()
            .is_terminal()
            .then(|| {
                let target = ProgressDrawTarget::stdout_with_hz(20);
                let bar = ProgressBar::with_draw_target(Some(total.as_millis() as u64), target);
                let style = ProgressStyle::with_template(
                    "{spinner:.green} {prefix:>13} [{bar:30.cyan/blue}] {msg}",
                )
                .expect("valid template")
                .progress_chars("=> ");
                bar.set_style(style);
                bar
            })
            .filter(|bar| !bar.is_hidden());
        Progress {
            shared,
            bar,
            start,
            total,
            samples: VecDeque::new(),
            next_line: start + Duration::from_secs(1),
        }
    }

    fn update(&mut self, phase: Phase) {
        self.draw(phase, false);
    }

    fn draw(&mut self, phase: Phase, last: bool) {
        let now = Instant::now();
        let done = self.shared.done.load(Relaxed);
        self.samples.push_back((now, done));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(1))
        {
            self.samples.pop_front();
        }
        let (t0, d0) = self.samples[0];
        let window = now.duration_since(t0).as_secs_f64();
        let rps = if window > 0.0 {
            (done - d0) as f64 / window
        } else {
            0.0
        };
        let elapsed = now.duration_since(self.start).min(self.total);
        let too_many = self.shared.too_many.load(Relaxed);
        let unavailable = self.shared.unavailable.load(Relaxed);
        let mut msg = if last {
            format!("done: {done} req · 429: {too_many} · 503: {unavailable}")
        } else {
            format!("{done} req · {rps:.0} req/s · 429: {too_many} · 503: {unavailable}")
        };
        let errors = self.shared.errors.load(Relaxed);
        if errors > 0 {
            msg.push_str(&format!(" · err: {errors}"));
        }
        let gone = self.shared.gone.load(Relaxed);
        if gone > 0 {
            msg.push_str(&format!(" · gone: {gone}"));
        }
        if phase != Phase::Running && !last {
            let in_flight = self.shared.in_flight.load(Relaxed);
            msg.push_str(&format!(" · stopping, {in_flight} in flight"));
        }
        let clock = format!(
            "{:.1}s/{:.1}s",
            elapsed.as_secs_f64(),
            self.total.as_secs_f64()
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(elapsed.as_millis() as u64);
                bar.set_prefix(clock);
                bar.set_message(msg);
                bar.tick();
            }
            None => {
                if now >= self.next_line {
                    while self.next_line <= now {
                        self.next_line += Duration::from_secs(1);
                    }
                    println!("[{clock}] {msg}");
                }
            }
        }
    }

    fn finish(&mut self) {
        // Force a last plain line too, so the final count is always shown.
        self.next_line = self.start;
        self.draw(Phase::Stopped, true);
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

// ------------------------------------------------------------------ main ---

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let cfg = Config::parse();
    run(cfg).await
}

async fn run(cfg: Config) -> ExitCode {
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.concurrency as usize)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: cannot build the HTTP client: {}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let mut cumulative = 0;
    let routes = cfg
        .routes
        .iter()
        .map(|route| {
            cumulative += route.weight();
            (*route, cumulative)
        })
        .collect();
    let tokens = cfg.rate.map(|_| Arc::new(Semaphore::new(0)));
    let shared = Arc::new(Shared {
        client,
        base: cfg.url.clone(),
        users: cfg.users,
        routes,
        total_weight: cumulative,
        tokens: tokens.clone(),
        disconnect: cfg.disconnect,
        done: AtomicU64::new(0),
        too_many: AtomicU64::new(0),
        unavailable: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        gone: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        first_429: OnceLock::new(),
        first_location: OnceLock::new(),
        first_error: OnceLock::new(),
    });

    print_plan(&cfg, cumulative);

    let start = Instant::now();
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let feeder = tokens
        .clone()
        .zip(cfg.rate)
        .map(|(tokens, rate)| tokio::spawn(feed_tokens(tokens, rate)));
    let workers: Vec<_> = (0..cfg.concurrency)
        .map(|id| tokio::spawn(worker(id, shared.clone(), phase_rx.clone())))
        .collect();
    let mut progress = Progress::new(shared.clone(), start, cfg.duration);
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);

    // Run until the deadline (or Ctrl-C).
    let deadline = tokio::time::sleep(cfg.duration);
    let interrupt = interrupted();
    tokio::pin!(deadline, interrupt);
    let mut stopped = loop {
        tokio::select! {
            _ = &mut deadline => break false,
            _ = &mut interrupt => break true,
            _ = tick.tick() => progress.update(Phase::Running),
        }
    };
    let interrupted_run = stopped;
    let window = start.elapsed();

    // Start nothing new; give requests in flight a moment, unless interrupted.
    phase_tx.send_replace(if stopped {
        Phase::Stopped
    } else {
        Phase::Draining
    });
    if let Some(tokens) = &tokens {
        tokens.close();
    }
    let grace = tokio::time::sleep(GRACE);
    let joined = futures::future::join_all(workers);
    tokio::pin!(grace, joined);
    let results = loop {
        tokio::select! {
            results = &mut joined => break results,
            _ = &mut grace, if !stopped => {
                phase_tx.send_replace(Phase::Stopped);
                stopped = true;
            }
            _ = &mut interrupt, if !stopped => {
                phase_tx.send_replace(Phase::Stopped);
                stopped = true;
            }
            _ = tick.tick() => progress.update(Phase::Draining),
        }
    };
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    progress.finish();

    let mut stats = Stats::new();
    for result in results {
        match result {
            Ok(worker_stats) => stats.merge(&worker_stats),
            Err(e) => eprintln!("warning: a worker failed: {e}"),
        }
    }
    report(&cfg, &shared, &stats, window, interrupted_run)
}

fn print_plan(cfg: &Config, total_weight: u64) {
    let api = (1..=cfg.users)
        .filter(|u| Class::of(*u) == Class::Api)
        .count();
    let authenticated = (1..=cfg.users)
        .filter(|u| Class::of(*u) == Class::Authenticated)
        .count();
    let anonymous = cfg.users as usize - api - authenticated;
    let mix: Vec<String> = cfg
        .routes
        .iter()
        .map(|r| {
            let share = 100.0 * r.weight() as f64 / total_weight as f64;
            format!("{} {share:.0}%", r.name())
        })
        .collect();
    let rate = cfg
        .rate
        .map_or("no rate cap".to_string(), |r| format!("at most {r} req/s"));
    println!(
        "Load on {} for {}, {} workers, {rate}",
        cfg.url,
        fmt_duration(cfg.duration),
        cfg.concurrency
    );
    println!(
        "{} users: {api} with an API key, {authenticated} with a bearer token, \
         {anonymous} anonymous (one shared address)",
        cfg.users
    );
    println!("routes: {}", mix.join(", "));
    if cfg.disconnect > 0.0 {
        println!(
            "disconnect: {:.0}% of requests give up after {}-{} ms",
            cfg.disconnect * 100.0,
            DISCONNECT_MS.0,
            DISCONNECT_MS.1
        );
    }
    println!();
}

fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{}ms", d.as_millis())
    } else if secs < 120.0 {
        format!("{secs:.1}s")
    } else {
        format!("{:.1}m", secs / 60.0)
    }
}

fn fmt_ms(micros: Option<u64>) -> String {
    micros.map_or("-".to_string(), |us| format!("{:.1}", us as f64 / 1000.0))
}

// ---------------------------------------------------------------- report ---

fn report(
    cfg: &Config,
    shared: &Shared,
    stats: &Stats,
    window: Duration,
    interrupted_run: bool,
) -> ExitCode {
    // The `gone` column only when some requests were meant to give up.
    let shown = if cfg.disconnect > 0.0 {
        OUTCOMES
    } else {
        Outcome::Gone as usize
    };
    let mut header = vec![
        "route", "requests", "ok", "202", "408", "429", "503", "504", "other", "err", "gone",
    ];
    header.truncate(2 + shown);
    header.extend(["p50 ms", "p95 ms", "p99 ms"]);
    let row = |label: &str, s: &RouteStats| -> Vec<String> {
        let c = &s.counts;
        let mut cells = vec![label.to_string(), s.requests().to_string()];
        cells.extend(c[..shown].iter().map(u64::to_string));
        cells.extend([50.0, 95.0, 99.0].map(|p| fmt_ms(s.latency.percentile(p))));
        cells
    };
    let mut total = RouteStats::default();
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for route in &cfg.routes {
        let s = &stats.routes[route.index()];
        total.merge(s);
        rows.push(row(route.label(), s));
    }
    rows.push(row("total", &total));
    let widths: Vec<usize> = (0..header.len())
        .map(|col| rows.iter().map(|r| r[col].len()).max().unwrap_or(0))
        .collect();
    println!();
    for (i, r) in rows.iter().enumerate() {
        if i == rows.len() - 1 {
            println!(
                "{}",
                "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
            );
        }
        let mut line = format!("{:<w$}", r[0], w = widths[0]);
        for (cell, w) in r.iter().zip(&widths).skip(1) {
            line.push_str(&format!("  {cell:>w$}"));
        }
        println!("{line}");
    }

    let requests = total.requests();
    let secs = window.as_secs_f64().max(1e-9);
    println!();
    println!(
        "{requests} requests in {:.1}s: {:.1} req/s overall{}",
        secs,
        requests as f64 / secs,
        if interrupted_run {
            " (interrupted)"
        } else {
            ""
        }
    );
    if stats.abandoned > 0 {
        println!(
            "{} requests still in flight at the end were dropped and are not counted.",
            stats.abandoned
        );
    }

    let count = |o: Outcome| total.counts[o as usize];
    let busiest = |o: Outcome| {
        cfg.routes
            .iter()
            .max_by_key(|r| stats.routes[r.index()].counts[o as usize])
            .map_or("", |r| r.label())
    };
    let mut notes = Vec::new();
    if count(Outcome::TooMany) > 0 {
        let [api, authenticated, anonymous] = stats.limited;
        notes.push(format!(
            "429s: the per-client limits held. Anonymous clients, who all share one \
             address, got {anonymous} of them; API keys {api}, bearer tokens {authenticated}."
        ));
    }
    if count(Outcome::Unavailable) > 0 {
        notes.push(format!(
            "503s: bulkheads and circuit breakers shed load instead of queueing it \
             (most on {}).",
            busiest(Outcome::Unavailable)
        ));
    }
    if count(Outcome::GatewayTimeout) > 0 {
        notes.push(format!(
            "504s: timeouts cut off calls that ran too long instead of letting them hang \
             (most on {}).",
            busiest(Outcome::GatewayTimeout)
        ));
    }
    if count(Outcome::RequestTimeout) > 0 {
        notes.push(format!(
            "408s: requests gave up waiting in a bulkhead queue (most on {}).",
            busiest(Outcome::RequestTimeout)
        ));
    }
    if count(Outcome::Accepted) > 0 {
        let example = shared
            .first_location
            .get()
            .map_or(String::new(), |l| format!(", e.g. {l}"));
        notes.push(format!(
            "202s: slow reports moved to the background; poll the Location{example}."
        ));
    }
    notes.extend(speech_note(&stats.extras));
    notes.extend(batch_note(
        &stats.extras,
        &stats.routes[Route::Batch.index()],
    ));
    if count(Outcome::Other) > 0 {
        let codes: Vec<String> = total
            .other
            .iter()
            .map(|(code, n)| format!("{code} x{n}"))
            .collect();
        let files_404 = if total.other.contains_key(&404) && cfg.routes.contains(&Route::Files) {
            " (the files route's 404s are expected: one file name is missing.txt)"
        } else {
            ""
        };
        notes.push(format!("other: {}{files_404}.", codes.join(", ")));
    }
    if count(Outcome::Error) > 0 {
        let [connect, timeout, other] = total.errors;
        let first = shared.first_error.get().map_or("", String::as_str);
        let chaos = if cfg.routes.contains(&Route::Chaos) {
            " (the chaos route's panics drop the connection)"
        } else {
            ""
        };
        notes.push(format!(
            "err: {} requests got no response (connect {connect}, timeout {timeout}, \
             other {other}){chaos}; first: {first}",
            count(Outcome::Error)
        ));
    }
    if count(Outcome::Gone) > 0 {
        notes.push(format!(
            "gone: {} requests gave up after {}-{} ms on purpose (--disconnect {}), \
             dropping their connection mid-call.",
            count(Outcome::Gone),
            DISCONNECT_MS.0,
            DISCONNECT_MS.1,
            cfg.disconnect
        ));
    }
    if !notes.is_empty() {
        println!();
        for note in &notes {
            println!("{note}");
        }
    }
    if let Some(example) = shared.first_429.get() {
        println!();
        println!(
            "First 429 ({}, {} client):",
            example.route.label(),
            match example.class {
                Class::Api => "api",
                Class::Authenticated => "authenticated",
                Class::Anonymous => "anonymous",
            }
        );
        if example.headers.is_empty() {
            println!("  (no Retry-After or RateLimit headers)");
        }
        for (name, value) in &example.headers {
            println!("  {name}: {value}");
        }
    }

    if requests > count(Outcome::Gone) && count(Outcome::Error) == requests - count(Outcome::Gone) {
        println!();
        println!(
            "No request got a response from {}: is the server running? \
             Start it with `cargo run --release --example server`.",
            cfg.url
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// What the speech streams got: bytes received of those synthesized (a
/// slow reader's stream loses its oldest chunks to the server's buffer).
fn speech_note(x: &Extras) -> Option<String> {
    if x.streams == 0 {
        return None;
    }
    let kib = |b: u64| b.div_ceil(1024);
    let lost = x.synthesized.saturating_sub(x.received);
    let dropped = if lost > 0 {
        format!(
            "; the server's backpressure dropped {} KiB for readers that fell behind \
             (see /monitoring/backpressure, stream tts.audio)",
            kib(lost)
        )
    } else {
        String::new()
    };
    Some(format!(
        "speech: {} streams read to the end ({} slowly, {} ms between chunks): \
         {} KiB received of {} KiB synthesized{dropped}.",
        x.streams,
        x.slow_streams,
        SLOW_READ_PAUSE.as_millis(),
        kib(x.received),
        kib(x.synthesized)
    ))
}

/// What the batches got: items answered and refused, or word that the
/// server has no batch route.
fn batch_note(x: &Extras, batch: &RouteStats) -> Option<String> {
    let missing: u64 = [404, 405]
        .iter()
        .filter_map(|code| batch.other.get(code))
        .sum();
    if missing > 0 {
        return Some(format!(
            "batch: {missing} batches answered 404/405: this server has no POST /api/batch."
        ));
    }
    (x.items_ok + x.items_refused > 0).then(|| {
        format!(
            "batch: {} items answered, {} refused (429: a batch costs one per item \
             against the client's budget).",
            x.items_ok, x.items_refused
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Config, String> {
        Config::try_parse_from(std::iter::once("load").chain(s.split_whitespace()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Config::command().debug_assert();
        // The default is every route but the last, chaos.
        let all_but_chaos = &Route::ALL[..Route::ALL.len() - 1];
        assert_eq!(parse_routes(DEFAULT_ROUTES).unwrap(), all_but_chaos);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("20").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn flags() {
        let Ok(cfg) = args("--users=3 --routes search,users --rate 10") else {
            panic!()
        };
        assert_eq!(cfg.users, 3);
        assert_eq!(cfg.routes, vec![Route::Users, Route::Search]);
        assert!(args("--concurrency x")
            .unwrap_err()
            .contains("--concurrency"));
        assert!(args("--bogus 1").unwrap_err().contains("--bogus"));
        assert!(args("--url").is_err());
        assert!(args("--routes users,nope").is_err());
        let Ok(cfg) = args("--routes chaos,users --disconnect 0.1") else {
            panic!()
        };
        assert_eq!(cfg.routes, vec![Route::Users, Route::Chaos]);
        assert_eq!(cfg.disconnect, 0.1);
        let Ok(cfg) = args("") else { panic!() };
        assert!(!cfg.routes.contains(&Route::Chaos), "chaos only on demand");
        assert_eq!(cfg.disconnect, 0.0);
        assert!(args("--disconnect 1.5").is_err());
        assert!(args("--disconnect x").is_err());
    }

    #[test]
    fn stream_and_batch_routes_with_their_notes() {
        let Ok(cfg) = args("--routes batch,speech") else {
            panic!()
        };
        assert_eq!(cfg.routes, vec![Route::Speech, Route::Batch]);
        let Ok(cfg) = args("") else { panic!() };
        assert!(cfg.routes.contains(&Route::Speech) && cfg.routes.contains(&Route::Batch));

        let mut old_server = RouteStats::default();
        old_server.other.insert(405, 3);
        let note = batch_note(&Extras::default(), &old_server).unwrap();
        assert!(note.contains("3 batches answered 404/405"), "{note}");
        let x = Extras {
            items_ok: 30,
            items_refused: 12,
            ..Extras::default()
        };
        let note = batch_note(&x, &RouteStats::default()).unwrap();
        assert!(note.contains("30 items answered, 12 refused"), "{note}");

        let mut x = Extras::default();
        let sent = |read| Sent {
            route: Route::Speech,
            class: Class::Api,
            read,
            units: 4,
        };
        x.count(&sent(Read::Whole), 200, 4096);
        x.count(&sent(Read::Slowly(SLOW_READ_PAUSE)), 200, 1024);
        x.count(&sent(Read::Whole), 429, 0);
        let note = speech_note(&x).unwrap();
        assert!(
            note.contains("2 streams read to the end (1 slowly")
                && note.contains("5 KiB received of 8 KiB synthesized")
                && note.contains("dropped 3 KiB"),
            "{note}"
        );
    }

    #[test]
    fn histogram_percentiles() {
        let mut h = Histogram::default();
        for v in 1..=10_000 {
            h.record(v);
        }
        let p50 = h.percentile(50.0).unwrap();
        let p99 = h.percentile(99.0).unwrap();
        assert!((4950..=5050).contains(&p50), "{p50}");
        assert!((9850..=10_000).contains(&p99), "{p99}");
        assert_eq!(Histogram::default().percentile(50.0), None);
    }
}
