//! Behaviour of `#[limit_blocking]`: each argument really applies, and
//! metrics appear in `registry().snapshot()` under the op name.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use limiter::{limit_blocking, registry, LimitError, TaskState};

#[derive(Debug, PartialEq)]
enum AppError {
    Limit(LimitError),
    NotFound,
}

impl From<LimitError> for AppError {
    fn from(e: LimitError) -> Self {
        AppError::Limit(e)
    }
}

#[limit_blocking(op = "attr.rate", rate = "2/s", burst = 2)]
async fn rated() -> u32 {
    7
}

#[tokio::test(start_paused = true)]
async fn rate_applies_and_return_type_gains_limit_error() {
    assert_eq!(rated().await, Ok(7));
    assert_eq!(rated().await, Ok(7));
    assert!(matches!(rated().await, Err(LimitError::RateLimited { .. })));
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(rated().await, Ok(7));
    let snap = registry().op("attr.rate").snapshot();
    assert_eq!(snap.counters.rejected_rate_limited, 1);
    assert_eq!(snap.counters.succeeded, 3);
}

#[limit_blocking(op = "attr.user", rate = "1/s", burst = 1, key = user)]
async fn per_user(user: String) -> Result<String, AppError> {
    if user.is_empty() {
        return Err(AppError::NotFound);
    }
    Ok(user)
}

#[tokio::test(start_paused = true)]
async fn key_isolates_users_and_result_errors_stay_the_users() {
    assert_eq!(per_user("ann".into()).await, Ok("ann".to_string()));
    assert!(matches!(
        per_user("ann".into()).await,
        Err(AppError::Limit(LimitError::RateLimited { .. }))
    ));
    assert_eq!(per_user("bob".into()).await, Ok("bob".to_string()));
    assert_eq!(per_user(String::new()).await, Err(AppError::NotFound));
}

#[limit_blocking(op = "attr.timeout", timeout = "100ms")]
async fn slow() -> u32 {
    tokio::time::sleep(Duration::from_secs(5)).await;
    1
}

#[limit_blocking(op = "attr.background", timeout = "100ms", strategy = "background")]
async fn report(n: u32) -> u32 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    n
}

#[limit_blocking(op = "attr.cache", timeout = "100ms", strategy = "cache_fallback", key = city)]
async fn weather(city: String, slow: bool) -> u32 {
    if slow {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    city.len() as u32
}

#[limit_blocking(
    op = "attr.drain",
    timeout = "100ms",
    strategy = "drain",
    max_concurrent = 1
)]
async fn query(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

/// `strategy = "drain"`: `Timeout` at the deadline, the body finishes
/// holding the op's one place (the next call waits for it).
#[tokio::test(start_paused = true)]
async fn drain_strategy() {
    let start = tokio::time::Instant::now();
    assert!(matches!(query(300).await, Err(LimitError::Timeout { .. })));
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(query(10).await.unwrap(), 10);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(310),
        "waited for the drained body"
    );
    let c = limiter::registry().op("attr.drain").snapshot().counters;
    assert_eq!((c.drained, c.timeouts), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn each_timeout_strategy() {
    assert!(matches!(slow().await, Err(LimitError::Timeout { .. })));
    let task = match report(3).await {
        Err(LimitError::MovedToBackground { task_id, .. }) => task_id,
        other => panic!("expected MovedToBackground, got {other:?}"),
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        registry().tasks().get(task).unwrap().state,
        TaskState::Succeeded
    );
    assert_eq!(weather("paris".into(), false).await, Ok(5));
    assert_eq!(weather("paris".into(), true).await, Ok(5), "from the cache");
    assert!(matches!(
        weather("rome".into(), true).await,
        Err(LimitError::Timeout { .. })
    ));
}

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[limit_blocking(
    op = "attr.retry",
    retries = 2,
    backoff = "constant",
    backoff_base = "10ms"
)]
async fn flaky(label: String) -> Result<String, AppError> {
    if ATTEMPTS.fetch_add(1, Ordering::SeqCst) < 2 {
        return Err(AppError::NotFound);
    }
    Ok(label)
}

#[tokio::test(start_paused = true)]
async fn retries_rerun_the_body_with_cloned_arguments() {
    assert_eq!(flaky("ok".into()).await, Ok("ok".to_string()));
    assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 3);
    assert_eq!(registry().op("attr.retry").snapshot().counters.retries, 2);
}

#[limit_blocking(op = "attr.cpu", kind = cpu_intensive)]
fn checksum(data: Vec<u8>) -> u64 {
    let _ = std::thread::current().name().map(str::to_owned);
    data.iter().map(|b| u64::from(*b)).sum()
}

#[limit_blocking(op = "attr.file", kind = file_io, retries = 1)]
fn read_len(path: String) -> std::io::Result<usize> {
    std::fs::read(path).map(|b| b.len())
}

#[tokio::test]
async fn plain_fns_become_async_and_run_offloaded() {
    assert_eq!(checksum(vec![1, 2, 3]).await, Ok(6));
    assert!(read_len("Cargo.toml".into()).await.unwrap() > 0);
    assert!(read_len("/no/such/file".into()).await.is_err());
    assert_eq!(registry().op("attr.file").snapshot().counters.retries, 1);
}

struct Repo {
    calls: AtomicU32,
}

impl Repo {
    /// Doc comments and attributes stay.
    #[limit_blocking(op = "attr.method", max_concurrent = 1, queue = 0)]
    async fn get<T>(&self, value: T) -> T
    where
        T: Clone + Send + std::fmt::Debug,
    {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        value
    }
}

#[tokio::test(start_paused = true)]
async fn methods_generics_and_concurrency_bounds() {
    let repo = Repo {
        calls: AtomicU32::new(0),
    };
    let (a, b) = tokio::join!(repo.get(1u8), repo.get("x"));
    assert_eq!(a, Ok(1));
    assert!(matches!(b, Err(LimitError::QueueFull { .. })));
    assert_eq!(repo.calls.load(Ordering::SeqCst), 1);
}

#[limit_blocking(op = "attr.prio", max_concurrent = 1, queue = 10, priority = level)]
async fn prioritised(level: u8, log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    log.lock().unwrap().push(level);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(start_paused = true)]
async fn priority_orders_waiters() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for level in [0u8, 1, 9, 5] {
        tasks.push(tokio::spawn(prioritised(level, log.clone())));
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(*log.lock().unwrap(), [0, 9, 5, 1]);
}

#[limit_blocking(
    op = "attr.breaker",
    breaker(min_calls = 2, window = 2, failure_rate = 1.0, recovery = "10s")
)]
async fn fragile(fail: bool) -> Result<(), AppError> {
    if fail {
        Err(AppError::NotFound)
    } else {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_from_the_attribute() {
    let _ = fragile(true).await;
    let _ = fragile(true).await;
    assert!(matches!(
        fragile(false).await,
        Err(AppError::Limit(LimitError::CircuitOpen { .. }))
    ));
    let snap = registry().snapshot();
    let op = snap
        .ops
        .iter()
        .find(|o| &*o.name == "attr.breaker")
        .unwrap();
    assert_eq!(op.counters.rejected_circuit_open, 1);
}

#[limit_blocking]
async fn default_name() -> u8 {
    1
}

#[tokio::test]
async fn the_default_op_name_is_the_function_path() {
    assert_eq!(default_name().await, Ok(1));
    assert!(registry()
        .ops()
        .iter()
        .any(|o| o.name() == "attributes::default_name"));
}

static REPORTS: AtomicU32 = AtomicU32::new(0);

#[limiter::background_task(name = "attr.report", max_concurrent = 1, queue = 1, timeout = "5s")]
async fn build_report(id: u32) -> Result<u32, String> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    if id == 0 {
        return Err("no such report".into());
    }
    REPORTS.fetch_add(1, Ordering::SeqCst);
    Ok(id)
}

static FLAKY_TASK: AtomicU32 = AtomicU32::new(0);

#[limiter::background_task(name = "attr.flaky_task", retries = 2)]
async fn flaky_task(label: String) -> Result<(), String> {
    if FLAKY_TASK.fetch_add(1, Ordering::SeqCst) < 2 {
        return Err(format!("{label} not yet"));
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn background_tasks_are_tracked_and_bounded() {
    let a = build_report(1).unwrap();
    let b = build_report(0).unwrap();
    assert!(matches!(build_report(2), Err(LimitError::QueueFull { .. })));
    let a = a.wait().await;
    assert_eq!((a.state, &*a.name), (TaskState::Succeeded, "attr.report"));
    let b = b.wait().await;
    assert_eq!(b.state, TaskState::Failed);
    assert_eq!(b.error.as_deref(), Some("\"no such report\""));
    assert_eq!(REPORTS.load(Ordering::SeqCst), 1);
    let f = flaky_task("x".into()).unwrap().wait().await;
    assert_eq!((f.state, f.attempts), (TaskState::Succeeded, 3));
}

async fn cached_price(item: String) -> u32 {
    item.len() as u32
}

#[limit_blocking(op = "attr.fallback", rate = "1/s", burst = 1, fallback = cached_price)]
async fn price(item: String) -> u32 {
    100 + item.len() as u32
}

fn stale_stock(_sku: u64) -> Result<u32, AppError> {
    Ok(0)
}

#[limit_blocking(op = "attr.fallback_result", timeout = "50ms", fallback = stale_stock)]
fn stock(sku: u64) -> Result<u32, AppError> {
    if sku == 0 {
        return Err(AppError::NotFound);
    }
    if sku == 1 {
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(7)
}

#[tokio::test(start_paused = true)]
async fn fallback_answers_when_a_limit_refuses() {
    assert_eq!(price("tea".into()).await, 103);
    assert_eq!(
        price("tea".into()).await,
        3,
        "rate-limited: the fallback answered"
    );
    assert_eq!(
        registry()
            .op("attr.fallback")
            .snapshot()
            .counters
            .rejected_rate_limited,
        1
    );
}

#[tokio::test]
async fn fallback_leaves_the_bodys_own_errors_alone() {
    assert_eq!(stock(5).await, Ok(7));
    assert_eq!(
        stock(0).await,
        Err(AppError::NotFound),
        "the body's error is passed on"
    );
    assert_eq!(stock(1).await, Ok(0), "timed out: the fallback answered");
}

#[async_trait::async_trait]
trait Store {
    async fn get(&self, id: u64) -> Result<u64, AppError>;
}

struct MemStore;

#[async_trait::async_trait]
impl Store for MemStore {
    #[limit_blocking(op = "attr.async_trait", rate = "1/s", burst = 1, key = id)]
    async fn get(&self, id: u64) -> Result<u64, AppError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(id * 2)
    }
}

#[tokio::test(start_paused = true)]
async fn async_trait_methods_limit_the_inner_future() {
    let store: Box<dyn Store + Send + Sync> = Box::new(MemStore);
    assert_eq!(store.get(4).await, Ok(8));
    assert!(matches!(
        store.get(4).await,
        Err(AppError::Limit(LimitError::RateLimited { .. }))
    ));
    assert_eq!(store.get(5).await, Ok(10), "another key");
    let snap = registry().op("attr.async_trait").snapshot();
    assert_eq!(snap.counters.succeeded, 2);
    assert!(
        snap.latency.max_ms >= 1.0,
        "the inner future was timed, not its boxing"
    );
}

#[limiter::optimize_route(level = Basic, name = "GET /health")]
async fn health() -> &'static str {
    "ok"
}

#[limiter::optimize_route(level = Advanced, name = "GET /slow", timeout = "100ms")]
async fn slow_route(n: u32) -> Result<u32, LimitError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(n)
}

static ULTRA_RUNS: AtomicU32 = AtomicU32::new(0);

#[limiter::optimize_route(level = Ultra, name = "GET /users/{id}", key = id, cache_ttl = "2s")]
async fn get_user(id: u64) -> Result<String, LimitError> {
    ULTRA_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(format!("user-{id}"))
}

#[tokio::test(start_paused = true)]
async fn each_route_level() {
    // Basic: metrics, no limits.
    for _ in 0..3 {
        assert_eq!(health().await, Ok("ok"));
    }
    let basic = registry().op("GET /health").snapshot();
    assert_eq!(basic.counters.succeeded, 3);
    assert_eq!(basic.config.timeout, None);
    assert!(basic.config.breaker.is_none());
    // Advanced: a timeout that moves the call to the background, a breaker.
    assert!(matches!(
        slow_route(1).await,
        Err(LimitError::MovedToBackground { .. })
    ));
    let advanced = registry().op("GET /slow").snapshot();
    assert!(advanced.config.breaker.is_some());
    assert!(advanced.config.rate.is_some());
    // Ultra: identical concurrent calls run once, then the cache answers.
    let (a, b, c) = tokio::join!(get_user(1), get_user(1), get_user(2));
    assert_eq!(
        (a.unwrap(), b.unwrap(), c.unwrap()),
        ("user-1".into(), "user-1".into(), "user-2".into())
    );
    assert_eq!(ULTRA_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(get_user(1).await.unwrap(), "user-1");
    assert_eq!(
        ULTRA_RUNS.load(Ordering::SeqCst),
        2,
        "answered from the cache"
    );
    let ultra = registry().op("GET /users/{id}").snapshot();
    assert_eq!(
        (ultra.counters.coalesced, ultra.counters.cache_hits),
        (1, 1)
    );
    assert_eq!(ultra.adaptive_limit, Some(100));
}

#[limit_blocking(op = "attr.window", rate = "2/s", algorithm = "fixed_window")]
async fn windowed() -> u8 {
    1
}

#[limit_blocking(
    op = "attr.per_key",
    key = user,
    max_concurrent_per_key = 1,
    queue = 1,
    queue_timeout = "50ms",
    overload = "drop_oldest"
)]
async fn per_key_slot(user: u32, hold: Duration) -> u32 {
    tokio::time::sleep(hold).await;
    user
}

#[tokio::test(start_paused = true)]
async fn algorithm_per_key_bound_queue_timeout_and_overload() {
    assert_eq!(windowed().await, Ok(1));
    assert_eq!(windowed().await, Ok(1));
    assert!(matches!(
        windowed().await,
        Err(LimitError::RateLimited { .. })
    ));
    // One call per key at a time; a second waits at most 50 ms.
    let long = tokio::spawn(per_key_slot(1, Duration::from_secs(1)));
    tokio::task::yield_now().await;
    assert!(matches!(
        per_key_slot(1, Duration::ZERO).await,
        Err(LimitError::QueueTimeout { .. })
    ));
    assert_eq!(
        per_key_slot(2, Duration::ZERO).await,
        Ok(2),
        "other keys run"
    );
    // drop_oldest: a newer waiter of key 1 takes the place of an older one.
    let older = tokio::spawn(per_key_slot(1, Duration::ZERO));
    tokio::task::yield_now().await;
    let newer = tokio::spawn(per_key_slot(1, Duration::ZERO));
    tokio::task::yield_now().await;
    assert!(matches!(
        older.await.unwrap(),
        Err(LimitError::QueueFull { .. })
    ));
    assert!(matches!(
        newer.await.unwrap(),
        Err(LimitError::QueueTimeout { .. })
    ));
    assert_eq!(long.await.unwrap(), Ok(1));
}

static DB_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[limit_blocking(op = "attr.kind_db", kind = database, strategy = "cancel")]
async fn kind_db() -> Result<u32, AppError> {
    DB_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    Err(AppError::NotFound)
}

#[tokio::test]
async fn without_retries_n_the_call_runs_once_and_says_so() {
    assert_eq!(kind_db().await, Err(AppError::NotFound));
    assert_eq!(DB_ATTEMPTS.load(Ordering::SeqCst), 1);
    let cfg = registry().op("attr.kind_db").config();
    assert!(
        cfg.retry.is_none(),
        "the database preset's retries are not promised"
    );
    assert_eq!(
        cfg.timeout,
        Some(Duration::from_secs(10)),
        "the rest of the preset applies"
    );
}

#[limit_blocking(op = "attr.shared", max_concurrent = 1, queue = 0)]
async fn first_declarer() -> u8 {
    tokio::time::sleep(Duration::from_millis(10)).await;
    1
}

#[limit_blocking(op = "attr.shared", timeout = "10s")]
async fn second_declarer() -> u8 {
    2
}

#[tokio::test(start_paused = true)]
async fn the_first_declaration_of_an_op_is_kept() {
    assert_eq!(first_declarer().await, Ok(1));
    assert_eq!(second_declarer().await, Ok(2));
    let cfg = registry().op("attr.shared").config();
    assert_eq!(cfg.max_concurrent, 1);
    assert_eq!(cfg.timeout, None);
}

/// `breaker(failure = …)` names the errors that count against the breaker:
/// "not found" is the client's mistake, a dead database is a failure.
fn is_server_failure(e: &AppError) -> bool {
    !matches!(e, AppError::NotFound)
}

#[limit_blocking(
    op = "attr.classified",
    breaker(failure_rate = 0.5, min_calls = 4, window = 4, failure = is_server_failure)
)]
async fn classified(found: bool) -> Result<u32, AppError> {
    if found {
        Ok(1)
    } else {
        Err(AppError::NotFound)
    }
}

#[limit_blocking(
    op = "attr.classified_blocking",
    breaker(failure_rate = 0.5, min_calls = 4, window = 4, failure = is_server_failure)
)]
fn classified_blocking(fail: bool) -> Result<u32, AppError> {
    if fail {
        Err(AppError::Limit(LimitError::Timeout {
            op: "a dead dependency".into(),
        }))
    } else {
        Err(AppError::NotFound)
    }
}

#[tokio::test]
async fn a_failure_classifier_excuses_client_errors() {
    for _ in 0..12 {
        assert_eq!(classified(false).await, Err(AppError::NotFound));
    }
    let snap = registry().op("attr.classified").snapshot();
    assert_eq!(snap.breaker.state, limiter::BreakerState::Closed);
    assert_eq!(snap.counters.failed, 12, "still counted as failed calls");
    // The blocking form: excused errors keep it closed, real ones open it.
    for _ in 0..6 {
        assert_eq!(classified_blocking(false).await, Err(AppError::NotFound));
    }
    let op = registry().op("attr.classified_blocking");
    assert_eq!(op.snapshot().breaker.state, limiter::BreakerState::Closed);
    for _ in 0..4 {
        let _ = classified_blocking(true).await;
    }
    assert_eq!(op.snapshot().breaker.state, limiter::BreakerState::Open);
}

/// `registry = path`: the op lives in the registry the path returns, not
/// in the global one, so a test can run an annotated function against a
/// registry of its own (here behind an `Arc`).
fn isolated() -> std::sync::Arc<limiter::Registry> {
    static REG: std::sync::OnceLock<std::sync::Arc<limiter::Registry>> = std::sync::OnceLock::new();
    std::sync::Arc::clone(REG.get_or_init(|| std::sync::Arc::new(limiter::Registry::new())))
}

#[limit_blocking(op = "attr.isolated", registry = isolated, rate = "2/min", burst = 2)]
async fn in_isolated_registry() -> u32 {
    7
}

#[tokio::test]
async fn an_attribute_can_name_the_registry_its_op_lives_in() {
    assert_eq!(in_isolated_registry().await, Ok(7));
    assert_eq!(in_isolated_registry().await, Ok(7));
    assert!(matches!(
        in_isolated_registry().await,
        Err(LimitError::RateLimited { .. })
    ));
    let snap = isolated().op("attr.isolated").snapshot();
    assert_eq!(snap.counters.admitted, 2);
    assert_eq!(snap.counters.rejected_rate_limited, 1);
    assert!(
        registry()
            .ops()
            .iter()
            .all(|op| op.name() != "attr.isolated"),
        "the global registry never saw it"
    );
}
