//! Bulkhead: generated arrivals against generated limits. Bodies count
//! themselves in shared counters; the op's counts are read at every event.

use limiter::Load;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use limiter::{LimitError, Op, OpConfig, OverloadPolicy, QueueScope, Registry};
use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

/// Keys are drawn from `0..KEYS`.
const KEYS: u8 = 3;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max: u32,
    /// `u32::MAX`: a key's running calls are unbounded.
    pub max_per_key: u32,
    pub queue: u32,
    pub queue_per_key: u32,
    pub overload: OverloadPolicy,
    pub queue_timeout_ms: u64,
    /// The op's timeout (cancels the body).
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Ok,
    Fail,
    Panic,
}

#[derive(Debug, Clone)]
pub struct Arrival {
    /// Time since the previous arrival.
    pub gap_ms: u64,
    /// How long the body runs.
    pub latency_ms: u64,
    pub end: End,
    /// The caller drops the call's future this long after it arrives.
    pub cancel_after_ms: Option<u64>,
    pub key: Option<u8>,
    pub priority: i64,
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        1u32..=4,
        prop_oneof![4 => 1u32..=4, 1 => Just(u32::MAX)],
        0u32..=4,
        0u32..=3,
        prop_oneof![
            Just(OverloadPolicy::DropNewest),
            Just(OverloadPolicy::DropOldest),
            Just(OverloadPolicy::Block),
        ],
        1u64..=60,
        proptest::option::weighted(0.3, 1u64..=40),
    )
        .prop_map(
            |(max, max_per_key, queue, queue_per_key, overload, queue_timeout_ms, timeout_ms)| {
                Limits {
                    max,
                    max_per_key,
                    queue,
                    queue_per_key,
                    overload,
                    queue_timeout_ms,
                    timeout_ms,
                }
            },
        )
}

fn arrival() -> impl Strategy<Value = Arrival> {
    (
        0u64..=8,
        0u64..=30,
        prop_oneof![6 => Just(End::Ok), 2 => Just(End::Fail), 1 => Just(End::Panic)],
        proptest::option::weighted(0.2, 0u64..=40),
        proptest::option::weighted(0.6, 0..KEYS),
        -2i64..=2,
    )
        .prop_map(
            |(gap_ms, latency_ms, end, cancel_after_ms, key, priority)| Arrival {
                gap_ms,
                latency_ms,
                end,
                cancel_after_ms,
                key,
                priority,
            },
        )
}

/// The body's own error, or a limit's.
#[derive(Debug)]
pub enum Failed {
    Body,
    Limit(LimitError),
}

impl From<LimitError> for Failed {
    fn from(e: LimitError) -> Self {
        Failed::Limit(e)
    }
}

/// What the bodies and callers share.
struct World {
    op: Op,
    limits: Limits,
    base: Instant,
    /// Bodies running now, op-wide and per key.
    running: u32,
    running_key: [u32; KEYS as usize],
    started: Vec<bool>,
    violations: Vec<String>,
}

type Shared = Arc<Mutex<World>>;

fn lock(w: &Shared) -> MutexGuard<'_, World> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

impl World {
    fn fail(&mut self, what: String) {
        let at = self.base.elapsed().as_millis();
        self.violations.push(format!("at {at} ms: {what}"));
    }

    /// Checks the op's counts against the limits and the running bodies.
    fn observe(&mut self, when: &str) {
        let Load {
            in_flight,
            queued,
            blocked,
        } = self.op.load();
        let l = self.limits.clone();
        if in_flight > l.max {
            self.fail(format!(
                "{when}: {in_flight} in flight > max_concurrent {}",
                l.max
            ));
        }
        if queued > l.queue {
            self.fail(format!("{when}: {queued} queued > queue {}", l.queue));
        }
        if self.running > in_flight {
            self.fail(format!(
                "{when}: {} bodies run on {in_flight} places",
                self.running
            ));
        }
        let mut key_queued = 0;
        let mut key_queue_full = false;
        for k in 0..KEYS {
            let (k_in, k_queued) = self
                .op
                .key_usage(&k)
                .map_or((0, 0), |u| (u.in_flight, u.queued));
            if k_in > l.max_per_key {
                self.fail(format!(
                    "{when}: key {k} has {k_in} in flight > max_concurrent_per_key {}",
                    l.max_per_key
                ));
            }
            if k_queued > l.queue_per_key {
                self.fail(format!(
                    "{when}: key {k} has {k_queued} queued > queue_per_key {}",
                    l.queue_per_key
                ));
            }
            // Unbounded keys take the fast path: only waiters are counted.
            if l.max_per_key != u32::MAX && self.running_key[k as usize] > k_in {
                self.fail(format!(
                    "{when}: {} bodies of key {k} run on {k_in} places",
                    self.running_key[k as usize]
                ));
            }
            if in_flight < l.max && k_queued > 0 && k_in < l.max_per_key {
                self.fail(format!(
                    "{when}: key {k} has {k_queued} waiting while it and the op have room ({in_flight}/{}, key {k_in}/{})",
                    l.max, l.max_per_key
                ));
            }
            key_queued += k_queued;
            key_queue_full |= k_queued >= l.queue_per_key;
        }
        if in_flight < l.max && queued > key_queued {
            self.fail(format!(
                "{when}: {} calls without a key wait while {in_flight}/{} places are taken",
                queued - key_queued,
                l.max
            ));
        }
        if blocked > 0 && queued < l.queue && !key_queue_full {
            self.fail(format!(
                "{when}: {blocked} blocked while the queue has room ({queued}/{})",
                l.queue
            ));
        }
    }
}

/// A body running; counted out when it ends however it ends.
struct Running {
    world: Shared,
    key: Option<u8>,
}

impl Running {
    fn start(world: &Shared, i: usize, key: Option<u8>) -> Self {
        let mut w = lock(world);
        if std::mem::replace(&mut w.started[i], true) {
            w.fail(format!("call {i}: body started twice"));
        }
        w.running += 1;
        if w.running > w.limits.max {
            let (r, m) = (w.running, w.limits.max);
            w.fail(format!("call {i}: {r} bodies running > max_concurrent {m}"));
        }
        if let Some(k) = key {
            w.running_key[k as usize] += 1;
            let (r, m) = (w.running_key[k as usize], w.limits.max_per_key);
            if r > m {
                w.fail(format!(
                    "call {i}: {r} bodies of key {k} running > max_concurrent_per_key {m}"
                ));
            }
        }
        w.observe(&format!("call {i} starts"));
        drop(w);
        Running {
            world: world.clone(),
            key,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut w = lock(&self.world);
        w.running -= 1;
        if let Some(k) = self.key {
            w.running_key[k as usize] -= 1;
        }
    }
}

/// How one call ended, as its caller saw it.
#[derive(Debug)]
enum Seen {
    Done(Result<(), Failed>),
    /// The caller dropped the future.
    Dropped,
    Panicked,
}

pub fn config(l: &Limits) -> OpConfig {
    OpConfig {
        max_concurrent: Some(l.max),
        max_concurrent_per_key: Some(l.max_per_key),
        queue: Some(l.queue),
        queue_per_key: Some(l.queue_per_key),
        overload: Some(l.overload),
        queue_timeout: Some(ms(l.queue_timeout_ms)),
        timeout: l.timeout_ms.map(ms),
        ..OpConfig::default()
    }
}

/// Runs the arrivals and returns every violation found.
pub fn run_case(limits: &Limits, arrivals: &[Arrival]) -> Vec<String> {
    quiet_injected_panics();
    let rt = paused_runtime();
    rt.block_on(async {
        let reg = Registry::new();
        let op = configured(&reg, "bulk", config(limits));
        let base = Instant::now();
        let world: Shared = Arc::new(Mutex::new(World {
            op: op.clone(),
            limits: limits.clone(),
            base,
            running: 0,
            running_key: [0; KEYS as usize],
            started: vec![false; arrivals.len()],
            violations: Vec::new(),
        }));
        let mut at = 0;
        let mut callers = Vec::new();
        for (i, a) in arrivals.iter().cloned().enumerate() {
            at += a.gap_ms;
            let (op, world) = (op.clone(), world.clone());
            callers.push(tokio::spawn(async move {
                tokio::time::sleep_until(base + ms(at)).await;
                lock(&world).observe(&format!("call {i} arrives"));
                let start = Instant::now();
                let body = {
                    let world = world.clone();
                    move || {
                        let world = world.clone();
                        async move {
                            let _running = Running::start(&world, i, a.key);
                            tokio::time::sleep(ms(a.latency_ms)).await;
                            match a.end {
                                End::Ok => Ok(()),
                                End::Fail => Err(Failed::Body),
                                End::Panic => std::panic::panic_any(INJECTED_PANIC),
                            }
                        }
                    }
                };
                let call = op.call().priority(a.priority);
                let call = match &a.key {
                    Some(k) => call.key(k),
                    None => call,
                };
                let run = call.run(body);
                let seen = match a.cancel_after_ms {
                    Some(d) => match tokio::time::timeout(ms(d), run).await {
                        Ok(out) => Seen::Done(out),
                        Err(_) => Seen::Dropped,
                    },
                    None => Seen::Done(run.await),
                };
                lock(&world).observe(&format!("call {i} returns"));
                (seen, start.elapsed())
            }));
        }
        let mut seen = Vec::new();
        for c in callers {
            seen.push(match c.await {
                Ok(out) => out,
                Err(e) if e.is_panic() => (Seen::Panicked, Duration::ZERO),
                Err(e) => panic!("caller task failed: {e}"),
            });
        }
        // Let anything left (timers of dropped calls) settle.
        tokio::time::sleep(ms(1)).await;
        let mut w = lock(&world);
        check_outcomes(&mut w, arrivals, &seen);
        w.observe("the end");
        std::mem::take(&mut w.violations)
    })
}

/// Every call ended admitted or refused with a fitting error, the op's
/// counters add up, and every place was given back.
fn check_outcomes(w: &mut World, arrivals: &[Arrival], seen: &[(Seen, Duration)]) {
    let l = w.limits.clone();
    let mut expect = limiter::CountersSnapshot::default();
    for (i, (a, (seen, waited))) in arrivals.iter().zip(seen).enumerate() {
        let started = w.started[i];
        let bad = match seen {
            Seen::Panicked => {
                expect.panics += 1;
                !(started && a.end == End::Panic)
            }
            Seen::Dropped => {
                expect.cancelled += u64::from(started);
                false
            }
            Seen::Done(Ok(())) => {
                expect.succeeded += 1;
                !(started && a.end == End::Ok && l.timeout_ms.is_none_or(|t| a.latency_ms <= t))
            }
            Seen::Done(Err(Failed::Body)) => {
                expect.failed += 1;
                !(started && a.end == End::Fail && l.timeout_ms.is_none_or(|t| a.latency_ms <= t))
            }
            Seen::Done(Err(Failed::Limit(e))) => match e {
                LimitError::Timeout { .. } => {
                    expect.timeouts += 1;
                    !(started && l.timeout_ms.is_some_and(|t| a.latency_ms >= t))
                }
                LimitError::QueueFull { scope, .. } => {
                    match scope {
                        QueueScope::Key => expect.rejected_queue_full_key += 1,
                        QueueScope::Global => expect.rejected_queue_full_global += 1,
                    }
                    started
                        || l.overload == OverloadPolicy::Block
                        || (*scope == QueueScope::Key && a.key.is_none())
                        || (l.overload == OverloadPolicy::DropNewest && !waited.is_zero())
                }
                LimitError::QueueTimeout { .. } => {
                    expect.rejected_queue_timeout += 1;
                    started || *waited != ms(l.queue_timeout_ms)
                }
                _ => true,
            },
        };
        if bad {
            w.fail(format!(
                "call {i} {a:?}: ended {seen:?} after {waited:?} (body started: {started})"
            ));
        }
    }
    expect.admitted = w.started.iter().filter(|s| **s).count() as u64;
    expect.calls = expect.admitted
        + expect.rejected_queue_full_key
        + expect.rejected_queue_full_global
        + expect.rejected_queue_timeout;
    let snap = w.op.snapshot();
    let got = &snap.counters;
    let pairs = [
        ("calls", got.calls, expect.calls),
        ("admitted", got.admitted, expect.admitted),
        ("succeeded", got.succeeded, expect.succeeded),
        ("failed", got.failed, expect.failed),
        ("timeouts", got.timeouts, expect.timeouts),
        ("panics", got.panics, expect.panics),
        ("cancelled", got.cancelled, expect.cancelled),
        (
            "rejected_queue_full_key",
            got.rejected_queue_full_key,
            expect.rejected_queue_full_key,
        ),
        (
            "rejected_queue_full_global",
            got.rejected_queue_full_global,
            expect.rejected_queue_full_global,
        ),
        (
            "rejected_queue_timeout",
            got.rejected_queue_timeout,
            expect.rejected_queue_timeout,
        ),
        ("rejected_rate_limited", got.rejected_rate_limited, 0),
        ("rejected_circuit_open", got.rejected_circuit_open, 0),
        ("rejected_overloaded", got.rejected_overloaded, 0),
    ];
    for (name, got, want) in pairs {
        if got != want {
            w.fail(format!("counter {name} is {got}, the calls say {want}"));
        }
    }
    let outcomes = got.succeeded + got.failed + got.timeouts + got.panics + got.cancelled;
    if got.admitted != outcomes {
        w.fail(format!(
            "{} admitted but {outcomes} outcomes recorded",
            got.admitted
        ));
    }
    if snap.bulkhead.peak_in_flight > l.max {
        w.fail(format!(
            "peak in flight {} > max_concurrent {}",
            snap.bulkhead.peak_in_flight, l.max
        ));
    }
    // Every permit and queue place is returned.
    if w.op.load() != Load::default() {
        let load = w.op.load();
        w.fail(format!(
            "after the last call: (in flight, queued, blocked) = {load:?}"
        ));
    }
    for k in 0..KEYS {
        if let Some(u) = w.op.key_usage(&k) {
            if (u.in_flight, u.queued) != (0, 0) {
                w.fail(format!("after the last call: key {k} holds {u:?}"));
            }
        }
    }
    if (w.running, w.running_key) != (0, [0; KEYS as usize]) {
        w.fail("bodies still counted as running".into());
    }
}

proptest! {
    #![proptest_config(props_config())]

    /// Running calls never exceed the op-wide and per-key bounds, queues
    /// never exceed theirs, no waiter is left waiting beside a free place,
    /// every call ends admitted or refused with a fitting error, the
    /// counters add up and every place is returned.
    #[test]
    fn bulkhead_bounds_outcomes_and_release(
        limits in limits(),
        arrivals in proptest::collection::vec(arrival(), 1..=24),
    ) {
        let violations = run_case(&limits, &arrivals);
        prop_assert!(
            violations.is_empty(),
            "limits {:?}\narrivals {:#?}\nviolations:\n{}",
            limits,
            arrivals,
            violations.join("\n")
        );
    }
}
