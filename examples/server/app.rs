//! The example service: handlers doing realistic fake work behind all three
//! attributes, the `LimiterLayer` rules and the monitoring router. Shared
//! by `examples/server/main.rs` and the dashboard browser test.
//!
//! With [`Options::chaos`] (off by default; `--chaos` or
//! `EXAMPLE_CHAOS=1` on the server) two more routes misbehave on
//! purpose, for the soak test (`tools/load/tests/soak.rs`):
//!
//! - `GET /chaos`: op `chaos`, an `async fn` with a 100 ms timeout, 16 in
//!   flight, 16 queued and a breaker. Each call at random panics (10%: the
//!   connection drops, the client sees no response), sleeps past its
//!   timeout (10%: 504), fails (10%: 502) or answers after 2-40 ms.
//! - `GET /chaos/{key}`: op `chaos_keyed`, a plain `fn` on the blocking
//!   pool, keyed (one in flight per key, 4 in all, 8 queued, `drop_oldest`):
//!   the same mix, where a timed-out call is an orphan left to finish on
//!   its thread.
//!
//! Afterwards every bulkhead, queue and orphan count of these ops must be
//! back at zero, whatever the clients did (the load tool's `--disconnect`
//! drops some requests mid-call).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use limiter::http::{
    Client, ClientClass, ErrorStatus, KeySet, LimiterLayer, Monitoring, Rule, Verified, Verifier,
};
use limiter::monitor::MonitorConfig;
use limiter::stream::{self, Strategy, StreamConfig};
use limiter::{background_task, limit_blocking, optimize_route, registry, LimitError};
use serde::{Deserialize, Serialize};

/// What a handler can fail with.
#[derive(Debug)]
pub enum AppError {
    /// A limit refused the call: 429 / 503 / 408 / 504 / 202.
    Limit(LimitError),
    /// 404.
    NotFound(String),
    /// The external API failed: 502.
    Upstream(String),
}

impl From<LimitError> for AppError {
    fn from(e: LimitError) -> Self {
        AppError::Limit(e)
    }
}

/// The route breakers of `#[optimize_route]` count only server failures:
/// a 404 is the client's mistake, a 502 the upstream's failure.
impl ErrorStatus for AppError {
    fn status(&self) -> StatusCode {
        match self {
            AppError::Limit(e) => e.status(),
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, error, message) = match self {
            AppError::Limit(e) => return e.into_response(),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            AppError::Upstream(m) => (StatusCode::BAD_GATEWAY, "upstream", m),
        };
        let body = serde_json::json!({ "error": error, "message": message, "retry_after": null });
        (status, Json(body)).into_response()
    }
}

/// Settings of the example.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bearer token of the monitoring router's mutating endpoints.
    pub admin_token: String,
    /// Secret internal callers send in `x-internal-secret`.
    pub internal_secret: String,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Monitor sampling interval (the dashboard chart's resolution).
    pub sample_interval: Duration,
    /// Adds the misbehaving `GET /chaos` and `GET /chaos/{key}` routes.
    pub chaos: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            admin_token: "demo-admin-token".into(),
            internal_secret: "demo-internal-secret".into(),
            trusted_proxies: Vec::new(),
            sample_interval: Duration::from_secs(2),
            chaos: false,
        }
    }
}

fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// A cheap deterministic pseudo-random number from a counter.
fn jitter(seed: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 7
}

static CALLS: AtomicU64 = AtomicU64::new(0);

fn next() -> u64 {
    jitter(CALLS.fetch_add(1, Ordering::Relaxed))
}

/// What the ops' breakers (and the monitor's error rates) count as a
/// failure: a server-side error. A missing user or file is an answer, the
/// client's mistake, not an outage of the store.
fn is_server_failure(e: &AppError) -> bool {
    e.status().is_server_error()
}

// ---- the database -------------------------------------------------------

/// A user row.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    id: u64,
    name: String,
    plan: &'static str,
}

/// A simulated database query: 5-40 ms, and one query in 50 hangs for 2 s
/// (past the 300 ms timeout: 504). Simulated, so nothing keeps running on
/// a server after a timeout and `cancel` is right; a real async client
/// writes `strategy = "drain"` (README, "Databases").
#[limit_blocking(
    op = "db",
    kind = database,
    strategy = "cancel",
    timeout = "300ms",
    max_concurrent = 8,
    queue = 16,
    queue_timeout = "250ms",
    breaker(
        failure_rate = 0.6,
        min_calls = 20,
        window = 50,
        recovery = "5s",
        failure = is_server_failure
    )
)]
async fn query_user(id: u64) -> Result<User, AppError> {
    let r = next();
    let ms = if r.is_multiple_of(50) {
        2000
    } else {
        5 + r % 36
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    if id == 0 || id > 1_000_000 {
        return Err(AppError::NotFound(format!("no user {id}")));
    }
    Ok(User {
        id,
        name: format!("user-{id}"),
        plan: if id.is_multiple_of(3) { "pro" } else { "free" },
    })
}

#[optimize_route(level = Advanced, name = "GET /api/users/{id}", timeout = "1s")]
async fn user_route(id: u64) -> Result<User, AppError> {
    query_user(id).await
}

async fn get_user(Path(id): Path<u64>) -> Result<Json<User>, AppError> {
    Ok(Json(user_route(id).await?))
}

// ---- the flaky external API --------------------------------------------

/// A forecast.
#[derive(Debug, Clone, Serialize)]
pub struct Weather {
    city: String,
    celsius: i32,
    stale: bool,
}

/// An external API that fails for 4 s of every 15 s and is sometimes slow
/// (past the 200 ms timeout the last good answer for the city is served).
#[limit_blocking(
    op = "weather",
    kind = external_api,
    key = city,
    timeout = "200ms",
    strategy = "cache_fallback",
    retries = 2,
    backoff_base = "20ms",
    breaker(failure_rate = 0.5, min_calls = 10, window = 20, recovery = "2s")
)]
async fn fetch_weather(city: String) -> Result<Weather, AppError> {
    let phase = started().elapsed().as_millis() % 15_000;
    let r = next();
    tokio::time::sleep(Duration::from_millis(if r.is_multiple_of(10) {
        400
    } else {
        20 + r % 40
    }))
    .await;
    if phase >= 11_000 {
        return Err(AppError::Upstream("weather API answered 503".into()));
    }
    Ok(Weather {
        celsius: (city.len() as i32 * 3 + (r % 5) as i32) % 35,
        city,
        stale: false,
    })
}

async fn get_weather(Path(city): Path<String>) -> Result<Json<Weather>, AppError> {
    Ok(Json(fetch_weather(city).await?))
}

// ---- blocking file read -------------------------------------------------

fn data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("limiter-example-files")
}

/// A blocking read from disk (with a slow disk simulated): a plain `fn`,
/// so the attribute runs it on the blocking pool, bounded.
#[limit_blocking(
    op = "files",
    kind = file_io,
    timeout = "1s",
    max_concurrent = 4,
    queue = 8,
    breaker(recovery = "5s", failure = is_server_failure)
)]
fn read_file(name: String) -> Result<String, AppError> {
    if name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(AppError::NotFound(format!("no file {name:?}")));
    }
    std::thread::sleep(Duration::from_millis(10 + next() % 20));
    std::fs::read_to_string(data_dir().join(&name))
        .map_err(|_| AppError::NotFound(format!("no file {name:?}")))
}

async fn get_file(Path(name): Path<String>) -> Result<String, AppError> {
    read_file(name).await
}

// ---- CPU-heavy hash -----------------------------------------------------

/// A deliberately slow hash: on the CPU pool, two at a time, one per client.
#[limit_blocking(
    op = "hash",
    kind = cpu_intensive,
    key = client,
    max_concurrent = 2,
    max_concurrent_per_key = 1,
    queue = 2,
    queue_timeout = "500ms",
    timeout = "2s"
)]
fn hash(client: String, body: Vec<u8>) -> Result<String, AppError> {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for round in 0..200u64 {
        for b in &body {
            h = (h ^ u64::from(*b) ^ round).wrapping_mul(0x100_0000_01B3);
        }
    }
    Ok(format!("{h:016x}"))
}

async fn post_hash(
    Extension(client): Extension<Client>,
    body: axum::body::Bytes,
) -> Result<String, AppError> {
    hash(client.id, body.to_vec()).await
}

// ---- reports: slow work that moves to the background ------------------

/// A report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    rows: u32,
    total: u64,
}

/// Report request body.
#[derive(Debug, Deserialize)]
pub struct ReportRequest {
    rows: u32,
}

/// Builds a report, 2 ms a row (at most 4 s): past 1 s it goes on as a background task
/// and the caller gets 202 with the task's location.
#[limit_blocking(
    op = "reports",
    timeout = "1s",
    strategy = "background",
    max_concurrent = 4,
    queue = 8,
    queue_timeout = "2s"
)]
async fn build_report(rows: u32) -> Result<Report, AppError> {
    tokio::time::sleep(Duration::from_millis(u64::from(rows.min(2000)) * 2)).await;
    Ok(Report {
        rows,
        total: (0..u64::from(rows)).sum(),
    })
}

async fn post_report(Json(req): Json<ReportRequest>) -> Result<Json<Report>, AppError> {
    Ok(Json(build_report(req.rows).await?))
}

async fn get_task(Path(id): Path<u64>) -> Result<Json<limiter::TaskInfo>, AppError> {
    registry()
        .tasks()
        .get(id)
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("no task {id}")))
}

// ---- batches and answers priced by their size ---------------------------

/// Embeds a batch of texts: each item takes one token from the client's
/// budget (`cost = items.len()`), so a batch of 20 takes 20, not 1. The
/// budget is 600 a minute, 100 of which may be spent at once: a batch
/// larger than 100 is admitted only from a full budget and the next calls
/// wait out the rest; one larger than a minute's 600 is refused with 413;
/// one larger than what is left waits for it (429 with `retry-after`).
#[limit_blocking(
    op = "batch",
    key = client,
    rate = "600/min",
    burst = 100,
    cost = items.len(),
    timeout = "2s"
)]
async fn embed_batch(client: String, items: Vec<String>) -> Result<Vec<Embedding>, AppError> {
    tokio::time::sleep(Duration::from_millis(5 + 2 * items.len() as u64)).await;
    let _ = client;
    Ok(items
        .into_iter()
        .map(|text| Embedding {
            dims: 8,
            norm: (text.len() as f64).sqrt(),
            text,
        })
        .collect())
}

/// One embedded text.
#[derive(Debug, Clone, Serialize)]
pub struct Embedding {
    text: String,
    dims: u32,
    norm: f64,
}

/// `POST /api/batch` with a JSON array of texts.
async fn post_batch(
    Extension(client): Extension<Client>,
    Json(items): Json<Vec<String>>,
) -> Result<Json<Vec<Embedding>>, AppError> {
    Ok(Json(embed_batch(client.id, items).await?))
}

/// A generated answer and what it used.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    text: String,
    tokens: u32,
}

/// Prompt query.
#[derive(Debug, Deserialize)]
pub struct PromptQuery {
    prompt: String,
}

/// `GET /api/complete?prompt=…`: an LLM-like answer whose size is known
/// only once it is written. The call takes 1 from the client's budget of
/// 2 000 tokens a minute and is charged the answer's tokens afterwards
/// (`Call::charge`): a client that used more than its budget owes it, and
/// its next calls wait until the debt is paid.
async fn get_complete(
    Extension(client): Extension<Client>,
    Query(q): Query<PromptQuery>,
) -> Result<Json<Answer>, AppError> {
    let answer = registry()
        .op("llm")
        .call()
        .key(&client.id)
        .charge(|a: &Answer| a.tokens)
        .run(|| {
            let prompt = q.prompt.clone();
            async move {
                let tokens = 20 + (prompt.len() as u32 * 7 + (next() % 200) as u32);
                tokio::time::sleep(Duration::from_millis(u64::from(tokens) / 4)).await;
                Ok::<_, AppError>(Answer {
                    text: format!("an answer to {prompt:?} in {tokens} tokens"),
                    tokens,
                })
            }
        })
        .await?;
    Ok(Json(answer))
}

// ---- search: coalesced and cached ---------------------------------------

/// Search query.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: String,
}

#[optimize_route(level = Ultra, name = "GET /api/search", key = q, cache_ttl = "2s", rate = "200/s")]
async fn search(q: String) -> Result<Vec<String>, AppError> {
    tokio::time::sleep(Duration::from_millis(30 + next() % 50)).await;
    Ok((1..=5).map(|i| format!("{q} result {i}")).collect())
}

async fn get_search(Query(q): Query<SearchQuery>) -> Result<Json<Vec<String>>, AppError> {
    Ok(Json(search(q.q).await?))
}

// ---- a background job ----------------------------------------------------

/// Nightly-style cleanup, run every few seconds here so the dashboard's task
/// table has something to show.
#[background_task(name = "cleanup", max_concurrent = 1, queue = 2, timeout = "5s")]
async fn cleanup(round: u64) -> Result<(), AppError> {
    tokio::time::sleep(Duration::from_millis(200 + jitter(round) % 600)).await;
    if round % 7 == 6 {
        return Err(AppError::Upstream(format!(
            "cleanup round {round}: storage busy"
        )));
    }
    Ok(())
}

/// Starts the cleanup job every `every`.
pub fn schedule_cleanup(every: Duration) {
    tokio::spawn(async move {
        let mut round = 0;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = cleanup(round) {
                tracing_note(&format!("cleanup not started: {e}"));
            }
            round += 1;
        }
    });
}

fn tracing_note(msg: &str) {
    eprintln!("{msg}");
}

// ---- chaos: handlers that misbehave on purpose (`Options::chaos`) ------

/// The panic message of an injected panic: the server's panic hook keeps
/// quiet about these.
pub const CHAOS_PANIC: &str = "chaos: injected panic";

/// What a chaos call does, from a roll in `0..100` and a delay in ms.
enum Fate {
    Panic,
    Hang,
    Fail,
    Answer(u64),
}

fn fate() -> Fate {
    let r = next();
    match r % 100 {
        0..=9 => Fate::Panic,
        10..=19 => Fate::Hang,
        20..=29 => Fate::Fail,
        _ => Fate::Answer(2 + (r >> 8) % 39),
    }
}

/// How long a hanging call sleeps: three times the chaos ops' timeout.
const HANG: Duration = Duration::from_millis(300);

/// An async call that panics, hangs past its timeout, fails or answers.
#[limit_blocking(
    op = "chaos",
    timeout = "100ms",
    max_concurrent = 16,
    queue = 16,
    queue_timeout = "200ms",
    breaker(failure_rate = 0.5, min_calls = 20, window = 40, recovery = "250ms")
)]
async fn chaos_call() -> Result<String, AppError> {
    match fate() {
        Fate::Panic => panic!("{CHAOS_PANIC}"),
        Fate::Hang => tokio::time::sleep(HANG).await,
        Fate::Fail => {
            tokio::time::sleep(Duration::from_millis(5)).await;
            return Err(AppError::Upstream("chaos: injected failure".into()));
        }
        Fate::Answer(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
    }
    Ok("ok\n".into())
}

async fn get_chaos() -> Result<String, AppError> {
    chaos_call().await
}

/// The same on the blocking pool, keyed: a timed-out call goes on as an
/// orphan on its thread, a panic unwinds from the pool into the caller.
#[limit_blocking(
    op = "chaos_keyed",
    kind = file_io,
    key = key,
    timeout = "100ms",
    max_concurrent = 4,
    max_concurrent_per_key = 1,
    queue = 8,
    queue_timeout = "150ms",
    overload = "drop_oldest"
)]
fn chaos_blocking(key: u64) -> Result<String, AppError> {
    match fate() {
        Fate::Panic => panic!("{CHAOS_PANIC}"),
        Fate::Hang => std::thread::sleep(HANG),
        Fate::Fail => return Err(AppError::Upstream(format!("chaos {key}: injected failure"))),
        Fate::Answer(ms) => std::thread::sleep(Duration::from_millis(ms)),
    }
    Ok(format!("ok {key}\n"))
}

async fn get_chaos_keyed(Path(key): Path<u64>) -> Result<String, AppError> {
    chaos_blocking(key).await
}

/// Installs a panic hook that keeps quiet about injected chaos panics and
/// reports every other panic as usual.
pub fn quiet_chaos_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        if msg != Some(CHAOS_PANIC) {
            default(info);
        }
    }));
}

// ---- the app ------------------------------------------------------------

/// Writes the files the file route serves.
pub fn prepare_files() -> std::io::Result<()> {
    let dir = data_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("readme.txt"),
        "limiter example: a file read on the blocking pool\n",
    )?;
    std::fs::write(dir.join("config.toml"), "[defaults]\ntimeout = \"5s\"\n")?;
    Ok(())
}

/// Demo API keys and session tokens the example accepts (`key-<n>`,
/// `user-<n>` for `n` below this).
pub const DEMO_CLIENTS: u32 = 1000;

/// The demo API keys: `key-<n>` stands for the customer `customer-<n>`.
/// A real service loads its keys (or their SHA-256 digests, with
/// `KeySet::sha256_hex`) from its store.
fn demo_keys() -> KeySet {
    (0..DEMO_CLIENTS).fold(KeySet::new(), |set, n| {
        set.key(format!("key-{n}"), format!("customer-{n}"))
    })
}

/// The whole service: API routes behind the limiter layer, plus monitoring.
pub fn app(opts: &Options) -> Result<Router, Box<dyn std::error::Error>> {
    started();
    prepare_files()?;
    let monitor = registry().monitor();
    monitor.configure(MonitorConfig {
        sample_interval: opts.sample_interval,
        ..monitor.config()
    })?;
    // The LLM-like route's budget: 2 000 tokens a minute per client, which
    // may be spent at once; answers are charged after they are written.
    registry().configure(
        "llm",
        limiter::OpConfig {
            burst: Some(2000),
            timeout: Some(Duration::from_secs(2)),
            ..limiter::OpConfig::default().with_rate_per_key("2000/min")?
        },
    )?;
    let layer = LimiterLayer::builder()
        // Shadow mode: see what a 50/s limit on search would refuse.
        .rule(
            Rule::new("/api/search")
                .name("search (shadow)")
                .per_second(50)
                .shadow(true),
        )
        .rule(
            Rule::new("/api/hash")
                .name("hash clients")
                .methods([Method::POST])
                .per_second(5)
                .per_minute(120),
        )
        .rule(
            Rule::new("/api/{*rest}")
                .name("api keys")
                .classes([ClientClass::Api])
                .per_second(50)
                .burst(100),
        )
        .rule(
            Rule::new("/api/{*rest}")
                .name("signed in")
                .classes([ClientClass::Authenticated])
                .per_second(20)
                .per_hour(20_000),
        )
        .rule(
            Rule::new("/api/{*rest}")
                .name("anonymous")
                .classes([ClientClass::Anonymous])
                .per_second(10)
                .per_minute(300)
                .per_day(50_000),
        )
        // A credential is an identity only once verified: the demo API keys
        // `key-0` … `key-999` (what the load tool sends) and the demo
        // session tokens `user-0` … `user-999`. Any other key or token is
        // an anonymous caller: inventing keys buys no budget.
        .api_keys("x-api-key", demo_keys())
        .bearer(Verifier::from_fn(|token| {
            let n: u32 = token.strip_prefix("user-")?.parse().ok()?;
            (n < DEMO_CLIENTS).then(|| Verified::new(format!("user-{n}")))
        }))
        .trust_proxies(&opts.trusted_proxies)
        .internal_secret("x-internal-secret", opts.internal_secret.clone())
        .build()?;
    let mut api = Router::new()
        .route("/api/users/{id}", get(get_user))
        .route("/api/weather/{city}", get(get_weather))
        .route("/api/files/{name}", get(get_file))
        .route("/api/hash", post(post_hash))
        .route("/api/reports", post(post_report))
        .route("/api/tasks/{id}", get(get_task))
        .route("/api/search", get(get_search))
        .route("/api/speech/{words}", get(get_speech))
        .route("/api/batch", post(post_batch))
        .route("/api/complete", get(get_complete))
        .route(
            "/",
            get(|| async { "limiter example: see /monitoring/dashboard\n" }),
        );
    if opts.chaos {
        // Outside /api: no client rule limits it, only its ops' own limits.
        api = api
            .route("/chaos", get(get_chaos))
            .route("/chaos/{key}", get(get_chaos_keyed));
    }
    let api = api.layer(layer);
    let monitoring = Monitoring::new()
        .admin_token(opts.admin_token.clone())
        .router()?;
    Ok(api.merge(monitoring))
}

/// `GET /api/speech/{words}`: synthesized "audio" (1 KiB a word) streamed
/// through a backpressure handler, a word synthesized every millisecond:
/// a client that reads at least that fast gets every chunk; one that reads
/// slower, once the connection's socket buffers are full too, gets the
/// freshest, the oldest being dropped beyond 64 KiB buffered; see
/// `/monitoring/backpressure` (stream `tts.audio`).
async fn get_speech(Path(words): Path<u32>) -> Response {
    let words = words.min(1000);
    let chunks = futures::stream::unfold(0u32, move |i| async move {
        if i >= words {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await; // synthesis of one word
        let chunk = axum::body::Bytes::from(vec![i as u8; 1024]);
        Some((Ok::<_, std::io::Error>(chunk), i + 1))
    });
    let config = StreamConfig::new("tts.audio")
        .max_items(64)
        .max_bytes(64 * 1024)
        .strategy(Strategy::DropOldest);
    match stream::weighed_buffered(chunks, config, |c| c.as_ref().map_or(0, |b| b.len())) {
        Ok(body) => axum::body::Body::from_stream(body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
