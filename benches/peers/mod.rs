//! Peer implementations for the overhead benchmark.
//!
//! Every peer protects the same trivial body (`work`, which returns its
//! argument through `black_box`) with a rate limit, a circuit breaker and a
//! concurrency bound (plus a timeout where the doc says so), configured so
//! that nothing is ever refused during a benchmark: rate 1 000 000 000/s with
//! a burst of 1 000 000 000 (or the closest the crate allows), 1024 concurrent
//! calls, 10 s timeout, breaker enabled with its default thresholds.
//!
//! The hand-written peers ([`Composite`], [`Floor`]) panic if they would ever
//! refuse a call: a refusal means the limits above are misconfigured, and a
//! silently refused call would make the figure meaningless.
//!
//! Included from a bench as `#[path = "peers/mod.rs"] mod peers;`.
#![allow(dead_code)]

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// Rate every peer is configured with, per second.
const RATE_PER_SEC: u32 = 1_000_000_000;
/// Burst every peer is configured with (one second's worth of the rate).
const BURST: u32 = 1_000_000_000;
/// Concurrency bound every peer is configured with.
const MAX_CONCURRENT: usize = 1024;
/// Timeout of the peers that have one.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Breaker state value meaning "closed" in the hand-written peers.
const CLOSED: u8 = 0;

/// The protected body shared by the tower-based peers.
async fn work(x: u64) -> Result<u64, BoxError> {
    Ok(black_box(x))
}

#[cold]
#[inline(never)]
fn refused(what: &str) -> ! {
    panic!("benchmark peer refused a call ({what}): limits are misconfigured")
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

// ---------------------------------------------------------------------------
// tower
// ---------------------------------------------------------------------------

/// Plain tower middleware, outermost first:
/// `ConcurrencyLimitLayer::new(1024)` → `TimeoutLayer::new(10 s)` →
/// `RateLimitLayer::new(1_000_000_000, 1 s)` → `service_fn(work)`.
///
/// tower has no circuit breaker, so this stack is rate limit + bulkhead +
/// timeout only. `ConcurrencyLimit` *waits* for a permit in `poll_ready`
/// (it never rejects); `RateLimit` is a fixed window (1e9 calls per 1 s
/// window, then `poll_ready` pends until the window ends), it is not
/// `Clone` and keeps its state per service value. `Timeout` arms a
/// `tokio::time::Sleep` per call.
///
/// Must be called inside a tokio runtime context (`rt.enter()` or within
/// `block_on`): `RateLimit::new` creates its `Sleep` eagerly. Drive it with
/// [`call_tower`].
pub fn tower_stack() -> impl Service<u64, Response = u64, Error = BoxError> + Send + 'static {
    ServiceBuilder::new()
        .concurrency_limit(MAX_CONCURRENT)
        .timeout(TIMEOUT)
        .rate_limit(u64::from(RATE_PER_SEC), Duration::from_secs(1))
        .service_fn(work)
}

/// One call through a tower service: `svc.ready().await.unwrap().call(x).await.unwrap()`.
pub async fn call_tower<S>(svc: &mut S, x: u64) -> u64
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    svc.ready().await.unwrap().call(x).await.unwrap()
}

/// One call through `OpLayer` over `service_fn(cases::work)`.
pub async fn call_op_layer<S>(svc: &mut S, x: u64) -> u64
where
    S: Service<u64, Response = u64, Error = limiter::LimitError>,
{
    svc.ready().await.unwrap().call(x).await.unwrap()
}

// ---------------------------------------------------------------------------
// tower-resilience
// ---------------------------------------------------------------------------

/// tower-resilience 0.13 layers, outermost first, around `service_fn(work)`,
/// with the error boxed at the top (`ServiceExt::map_err(BoxError::from)`,
/// only touched on the error path):
///
/// - `CircuitBreakerLayer::builder().build()`: all defaults (failure rate
///   threshold 0.5, count-based sliding window of 100 calls, 30 s open,
///   1 half-open probe, rejection mode). Closed-state readiness is one atomic
///   load, but every call locks the circuit's `tokio::sync::Mutex` twice
///   (admission, then recording the outcome).
/// - `BulkheadLayer::builder().max_concurrent_calls(1024).reject_when_full()`:
///   a `tokio::sync::Semaphore` acquired in `call` under
///   `tokio::time::timeout(Duration::ZERO, ..)`, i.e. fail fast like the
///   hand-written peers' `try_acquire`. (The crate's default would wait for a
///   permit indefinitely, like tower's `ConcurrencyLimit`.)
/// - `RateLimiterLayer::builder().limit_for_period(1e9).refresh_period(1 s)
///   .burst_size(1e9).timeout_duration(0)`: the token-bucket variant
///   (capacity 2e9, refilled at 1e9/s) behind a `std::sync::Mutex`; a zero
///   permit-wait timeout means "refuse rather than wait", though the first
///   attempt is always made.
/// - `TimeLimiterLayer::builder().timeout_duration(10 s)`: default
///   `cancel_running_future(true)`, i.e. `tokio::time::timeout` around the
///   inner call, no spawned task.
///
/// Every layer boxes its response future, clones its inner service per call,
/// and builds an event (cloning the layer's name `String`) for each step even
/// with no listener registered. Names are left at the crate defaults. The
/// service is `Clone`; clones share all state. Drive it with
/// [`call_resilience`] (same as [`call_tower`]).
pub fn resilience_stack(
) -> impl Service<u64, Response = u64, Error = BoxError> + Clone + Send + 'static {
    use tower_resilience::bulkhead::BulkheadLayer;
    use tower_resilience::circuitbreaker::CircuitBreakerLayer;
    use tower_resilience::ratelimiter::RateLimiterLayer;
    use tower_resilience::timelimiter::TimeLimiterLayer;

    let breaker = CircuitBreakerLayer::builder()
        .build()
        .expect("circuit breaker config");
    let bulkhead = BulkheadLayer::builder()
        .max_concurrent_calls(MAX_CONCURRENT)
        .reject_when_full()
        .build()
        .expect("bulkhead config");
    let rate = RateLimiterLayer::builder()
        .limit_for_period(RATE_PER_SEC as usize)
        .refresh_period(Duration::from_secs(1))
        .burst_size(BURST as usize)
        .timeout_duration(Duration::ZERO)
        .build()
        .expect("rate limiter config");
    let time = TimeLimiterLayer::builder()
        .timeout_duration(TIMEOUT)
        .build();

    ServiceBuilder::new()
        .layer(breaker)
        .layer(bulkhead)
        .layer(rate)
        .layer(time)
        .service_fn(work)
        .map_err(BoxError::from)
}

/// One call through [`resilience_stack`]; identical to [`call_tower`]
/// (`ready().await.unwrap().call(x).await.unwrap()`).
pub async fn call_resilience<S>(svc: &mut S, x: u64) -> u64
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    call_tower(svc, x).await
}

// ---------------------------------------------------------------------------
// Hand-composed composite from off-the-shelf parts
// ---------------------------------------------------------------------------

/// Hand-composed composite of off-the-shelf parts, per call in this order:
///
/// 1. governor direct `RateLimiter::check()` (default clock, i.e. quanta;
///    `Quota::per_second(1e9).allow_burst(1e9)`, GCRA on one `AtomicU64`);
/// 2. one `AtomicU8` breaker-state load (must be closed);
/// 3. `tokio::sync::Semaphore::try_acquire` on a 1024-permit semaphore, the
///    permit held across the call and dropped after it;
/// 4. `calls.fetch_add(1)` before the call;
/// 5. `std::time::Instant::now()` before the call and `elapsed()` after it,
///    the elapsed time fed to `black_box` (not accumulated);
/// 6. `succeeded.fetch_add(1)` after the call.
///
/// No timeout. Panics instead of refusing. `Send + Sync`.
pub struct Composite {
    rate: DefaultDirectRateLimiter,
    state: AtomicU8,
    bulkhead: tokio::sync::Semaphore,
    calls: AtomicU64,
    succeeded: AtomicU64,
}

impl Composite {
    /// A composite with the limits described on [`Composite`].
    pub fn new() -> Self {
        Composite {
            rate: RateLimiter::direct(Quota::per_second(nz(RATE_PER_SEC)).allow_burst(nz(BURST))),
            state: AtomicU8::new(CLOSED),
            bulkhead: tokio::sync::Semaphore::new(MAX_CONCURRENT),
            calls: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
        }
    }

    /// Runs `f` behind rate limit, breaker check and bulkhead, counting it and
    /// timing it.
    pub async fn call<F: Future<Output = u64>>(&self, f: F) -> u64 {
        if self.rate.check().is_err() {
            refused("rate limit");
        }
        if self.state.load(Ordering::Acquire) != CLOSED {
            refused("breaker");
        }
        let Ok(permit) = self.bulkhead.try_acquire() else {
            refused("bulkhead");
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let start = std::time::Instant::now();
        let out = f.await;
        black_box(start.elapsed());
        self.succeeded.fetch_add(1, Ordering::Relaxed);
        drop(permit);
        out
    }
}

impl Default for Composite {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------
// Hand-written floor
// ---------------------------------------------------------------------------

/// GCRA emission interval of [`Floor`], ns (1e9/s).
const FLOOR_INTERVAL_NS: u64 = 1_000_000_000 / RATE_PER_SEC as u64;
/// GCRA tolerance of [`Floor`], ns: a burst of 1e9 calls.
const FLOOR_TOLERANCE_NS: u64 = FLOOR_INTERVAL_NS * BURST as u64;

/// Floor sketch: the least a rate limit + breaker + bulkhead + metrics
/// wrapper can do per call, all lock-free, in this order:
///
/// 1. `clock.now()` on a `quanta::Clock` (start reading);
/// 2. GCRA: a compare-exchange loop on one `AtomicU64` theoretical arrival
///    time, in ns since a base `quanta::Instant` taken at construction,
///    interval 1 ns, tolerance 1e9 ns (burst 1e9); it reuses the start
///    reading, so there is no separate clock read for the limiter;
/// 3. one `AtomicU8` breaker-state load (must be closed);
/// 4. an atomic permit: `AtomicU32::fetch_add(1)` with a bound check against
///    1024 (undone with `fetch_sub` if over), `fetch_sub(1)` after the call
///    (from a drop guard, so it is released on cancellation too);
/// 5. one counter `fetch_add(1)` (calls);
/// 6. `clock.now()` after the call (end reading);
/// 7. one histogram bucket `fetch_add(1)` in a `[AtomicU64; 64]`, indexed by
///    `(elapsed_ns | 1).leading_zeros()`.
///
/// No timeout. Panics instead of refusing. `Send + Sync`.
pub struct Floor {
    clock: quanta::Clock,
    base: quanta::Instant,
    tat: AtomicU64,
    state: AtomicU8,
    inflight: AtomicU32,
    calls: AtomicU64,
    histogram: [AtomicU64; 64],
}

/// Releases one [`Floor`] permit when dropped.
struct FloorPermit<'a>(&'a AtomicU32);

impl Drop for FloorPermit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl Floor {
    /// A floor with the limits described on [`Floor`].
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let base = clock.now();
        Floor {
            clock,
            base,
            tat: AtomicU64::new(0),
            state: AtomicU8::new(CLOSED),
            inflight: AtomicU32::new(0),
            calls: AtomicU64::new(0),
            histogram: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Runs `f` behind the GCRA, breaker check and atomic permit, counting it
    /// and recording its latency bucket.
    pub async fn call<F: Future<Output = u64>>(&self, f: F) -> u64 {
        let start = self.clock.now();
        let now = start.saturating_duration_since(self.base).as_nanos() as u64;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now) + FLOOR_INTERVAL_NS;
            if next - now > FLOOR_TOLERANCE_NS {
                refused("rate limit");
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => tat = actual,
            }
        }
        if self.state.load(Ordering::Acquire) != CLOSED {
            refused("breaker");
        }
        if self.inflight.fetch_add(1, Ordering::Acquire) >= MAX_CONCURRENT as u32 {
            self.inflight.fetch_sub(1, Ordering::Relaxed);
            refused("bulkhead");
        }
        let permit = FloorPermit(&self.inflight);
        self.calls.fetch_add(1, Ordering::Relaxed);
        let out = f.await;
        let end = self.clock.now();
        let ns = end.saturating_duration_since(start).as_nanos() as u64;
        self.histogram[(ns | 1).leading_zeros() as usize].fetch_add(1, Ordering::Relaxed);
        drop(permit);
        out
    }
}

impl Default for Floor {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------
// governor alone
// ---------------------------------------------------------------------------

/// governor keyed limiter alone: `RateLimiter::keyed(Quota::per_second(1e6)
/// .allow_burst(1e6))` over `u64` keys with the default keyed state store
/// (`DashMapStateStore`, default hasher) and default (quanta) clock. The
/// store is unbounded: unlike a `max_keys` bound, keys are only dropped by an
/// explicit `retain_recent()`, which this peer never calls.
pub struct GovernorKeyed {
    limiter: DefaultKeyedRateLimiter<u64>,
}

impl GovernorKeyed {
    /// A keyed limiter at 1e6/s per key, burst 1e6.
    pub fn new() -> Self {
        GovernorKeyed {
            limiter: RateLimiter::keyed(
                Quota::per_second(nz(1_000_000)).allow_burst(nz(1_000_000)),
            ),
        }
    }

    /// `check_key(&key).is_ok()`.
    pub fn check(&self, key: u64) -> bool {
        self.limiter.check_key(&key).is_ok()
    }
}

impl Default for GovernorKeyed {
    fn default() -> Self {
        Self::new()
    }
}

/// governor direct limiter alone (reference figure for [`Composite`]'s rate
/// step): `RateLimiter::direct(Quota::per_second(1e9).allow_burst(1e9))`,
/// default (quanta) clock.
pub struct GovernorDirect {
    limiter: DefaultDirectRateLimiter,
}

impl GovernorDirect {
    /// A direct limiter at 1e9/s, burst 1e9.
    pub fn new() -> Self {
        GovernorDirect {
            limiter: RateLimiter::direct(
                Quota::per_second(nz(RATE_PER_SEC)).allow_burst(nz(BURST)),
            ),
        }
    }

    /// `check().is_ok()`.
    pub fn check(&self) -> bool {
        self.limiter.check().is_ok()
    }
}

impl Default for GovernorDirect {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------
// tokio semaphore alone
// ---------------------------------------------------------------------------

/// One `tokio::sync::Semaphore::try_acquire` and the permit dropped at once
/// (reference figure for [`Composite`]'s bulkhead step). Panics if no permit
/// is free.
pub fn semaphore_try_acquire_drop(s: &tokio::sync::Semaphore) {
    let permit = s.try_acquire().expect("semaphore has a free permit");
    drop(permit);
}
