//! Where an op keeps the state every instance of a service shares: the
//! [`SharedState`] trait (the shape of governor's `StateStore`), what its
//! checks answer, and why one could not be made.
//!
//! An op knows only this trait; `limiter::redis` is its implementation.
//! What a limit does while its store cannot answer is the op's
//! degradation, applied by the op in one place.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::keys::LimitKey;
use crate::settings::{BreakerPolicy, RateSpec};

/// The future of one call to a store.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// A store of rate and breaker state shared by every instance of a
/// service. Each method is one atomic step on the store's side.
pub trait SharedState: Send + Sync + Debug + 'static {
    /// The name of `key` in the store: the same in every instance.
    fn key_name(&self, key: &dyn LimitKey) -> u64;

    /// Takes `take` from every window of `spec` for `op` (and `key`, a
    /// name from [`key_name`](Self::key_name)): the tokens of one call
    /// (or says how long until every window would admit it), or a charge
    /// after the fact, taken whatever is left (always `Admitted`).
    fn check<'a>(
        &'a self,
        op: &'a str,
        key: Option<u64>,
        spec: &'a RateSpec,
        take: Take,
    ) -> StoreFuture<'a, Check>;

    /// Asks the breaker of `op` for a place: `Ok(Err(wait))` while it is
    /// open (or every probe is taken).
    fn breaker_admit<'a>(
        &'a self,
        op: &'a str,
        policy: &'a BreakerPolicy,
    ) -> StoreFuture<'a, Result<SharedTicket, Duration>>;

    /// Records how a call admitted by [`breaker_admit`](Self::breaker_admit)
    /// ended (`None`: it ended without an outcome, and only gives back a
    /// probe's place); returns the breaker's state after it.
    fn breaker_settle<'a>(
        &'a self,
        op: &'a str,
        ticket: SharedTicket,
        failed: Option<bool>,
        policy: &'a BreakerPolicy,
    ) -> StoreFuture<'a, SharedBreakerState>;

    /// Holds the breaker of `op` open (`true`) until it is reset
    /// (`false`: closed, its window cleared).
    fn breaker_set<'a>(&'a self, op: &'a str, open: bool) -> StoreFuture<'a, ()>;

    /// Leases a slice of the token bucket `spec` (`mode = "lease"`): at
    /// least `least` and at most `most` tokens, none usable later than
    /// `reach` from now; `tokens == 0` with the wait when fewer fit. The
    /// default store leases nothing.
    fn lease<'a>(
        &'a self,
        op: &'a str,
        key: Option<u64>,
        spec: &'a RateSpec,
        least: u32,
        most: u32,
        reach: Duration,
    ) -> StoreFuture<'a, Grant> {
        let _ = (op, key, spec, least, most, reach);
        Box::pin(async { Err(BackendError::Unsupported("leases")) })
    }

    /// Gives `tokens` unused tokens of a slice back, if nobody took tokens
    /// after it (`ends_us`: each window's arrival time the slice left, as
    /// [`Grant::ends_us`] said). Returns whether they went back.
    fn give_back<'a>(
        &'a self,
        op: &'a str,
        key: Option<u64>,
        spec: &'a RateSpec,
        ends_us: &'a [u64],
        tokens: u32,
    ) -> StoreFuture<'a, bool> {
        let _ = (op, key, spec, ends_us, tokens);
        Box::pin(async { Ok(false) })
    }

    /// How many instances of the service use this store now (at least 1):
    /// the share of a shared limit each applies while the store cannot
    /// answer (`degradation = "local"`). The default knows only itself.
    fn instances(&self) -> u32 {
        1
    }

    /// Takes one of the `max` places of the bulkhead of `op` shared by
    /// every instance (`concurrency = "shared"`): `Held` while the call
    /// runs, or `Full` with a hint of how long until a place may free.
    /// A place held by an instance that stops answering comes back by
    /// itself after the store's lease. `Ok(None)`: the store keeps no
    /// bulkhead, and the call runs with its local place only (the
    /// default).
    fn place_acquire<'a>(&'a self, op: &'a str, max: u32) -> StoreFuture<'a, Option<SharedPlace>> {
        let _ = (op, max);
        Box::pin(async { Ok(None) })
    }

    /// Gives back a place taken by [`place_acquire`](Self::place_acquire):
    /// it stops being renewed when this is called (before the future is
    /// polled, so a future that never runs still lets the lease return
    /// it), and the future removes it from the store. The default holds
    /// none.
    fn place_release(self: Arc<Self>, op: Arc<str>, hold: HoldId) -> StoreFuture<'static, ()> {
        let _ = (op, hold);
        Box::pin(async { Ok(()) })
    }

    /// The state of the breaker of `op` kept in the store, for monitoring
    /// (`None`: the store keeps none for it). Changes nothing. The default
    /// knows none.
    fn breaker_view<'a>(&'a self, op: &'a str) -> StoreFuture<'a, Option<SharedBreakerView>> {
        let _ = op;
        Box::pin(async { Ok(None) })
    }
}

/// A place of a shared bulkhead held in the store, by its number within
/// this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HoldId(pub u64);

/// What a shared bulkhead answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedPlace {
    /// A place is held until it is given back
    /// ([`SharedState::place_release`]) or its holder stops renewing it.
    Held(HoldId),
    /// Every place is taken.
    Full {
        /// Time until the earliest place's lease runs out (a bound, not a
        /// promise: a live holder renews it, and may release it sooner).
        wait: Duration,
    },
}

/// What monitoring shows of a breaker kept in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SharedBreakerView {
    /// Its state.
    pub state: SharedBreakerState,
    /// Time until probes are let through, while open (none when held open
    /// until reset).
    pub retry_after: Option<Duration>,
    /// Outcomes in its window.
    pub window_calls: u32,
    /// Failures in its window.
    pub window_failures: u32,
}

/// The store of a registry, once one is set.
pub(crate) type Store = Arc<dyn SharedState>;

/// Why a store did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No answer within the timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error or the connection failed.
    #[error("redis error: {0}")]
    Redis(String),
    /// Redis failed recently; it is left alone until the pause ends.
    #[error("redis is paused after repeated failures")]
    Paused,
    /// The store does not do this.
    #[error("this store does not support {0}")]
    Unsupported(&'static str),
}

/// A slice of a shared token bucket leased to this instance
/// (`mode = "lease"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Tokens granted; 0 when fewer than the least asked for fit.
    pub tokens: u32,
    /// With no tokens: how long until a lease would grant the least.
    pub wait: Duration,
    /// Per window: where the slice starts on the bucket's timeline, in µs
    /// from when the store answered (negative: in the past).
    pub starts_us: Vec<i64>,
    /// Per window: the bucket's arrival time after the grant, in the
    /// store's own µs (what [`SharedState::give_back`] compares).
    pub ends_us: Vec<u64>,
}

/// What a shared rate check takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// A call of this cost (1 for a plain call): admitted when every
    /// window has that many left, else refused.
    Tokens(u32),
    /// A charge after the fact: taken whatever is left, so a window may
    /// go into debt and refuse until it is paid back.
    Charge(u32),
}

impl Take {
    /// How many tokens it takes.
    pub fn tokens(self) -> u32 {
        match self {
            Take::Tokens(n) | Take::Charge(n) => n,
        }
    }

    /// Whether it is taken whatever is left.
    pub fn forced(self) -> bool {
        matches!(self, Take::Charge(_))
    }
}

/// What a shared rate check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Admitted; `remaining` more calls would be now.
    Admitted {
        /// Calls the tightest window still admits.
        remaining: u64,
    },
    /// Refused by window `window` (index in the spec) until `wait` passes.
    Limited {
        /// Time until every window would admit.
        wait: Duration,
        /// Index of the refusing window.
        window: usize,
    },
}

/// A place granted by a shared breaker, with the round it belongs to
/// (outcomes of an earlier round are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedTicket {
    /// The breaker is closed.
    Closed {
        /// Transition count when granted.
        round: u64,
    },
    /// A half-open probe.
    Probe {
        /// Transition count when granted.
        round: u64,
    },
}

/// State of a shared breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedBreakerState {
    /// Calls pass.
    Closed,
    /// Calls are refused until the recovery time passes.
    Open,
    /// Probes decide.
    HalfOpen,
}
