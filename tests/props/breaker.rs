//! Breaker: generated outcomes, latencies, gaps and breaker settings. The
//! state is read from the op's snapshot before and after every call and
//! compared with a reference model of the documented state machine.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use limiter::{BreakerConfig, BreakerState, LimitError, Op, OpConfig, Registry};
use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

#[derive(Debug, Clone)]
pub struct Settings {
    pub failure_rate: f64,
    pub window: u32,
    pub min_calls: u32,
    pub consecutive_failures: Option<u32>,
    pub slow_call_ms: Option<u64>,
    pub recovery_ms: u64,
    pub half_open_calls: u32,
    pub success_threshold: u32,
    /// The op's bulkhead, without a queue: a call over it is refused after
    /// the breaker let it through (a probe must then get its place back).
    pub max_concurrent: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
pub struct CallSpec {
    pub fail: bool,
    pub latency_ms: u64,
    /// The caller drops the call this long after starting it.
    pub cancel_after_ms: Option<u64>,
}

/// Calls started together after a gap.
#[derive(Debug, Clone)]
pub struct Group {
    pub gap_ms: u64,
    pub calls: Vec<CallSpec>,
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        prop_oneof![
            Just(0.1),
            Just(0.25),
            Just(1.0 / 3.0),
            Just(0.5),
            Just(0.75),
            Just(1.0)
        ],
        (1u32..=6).prop_flat_map(|w| (Just(w), 1..=w)),
        proptest::option::weighted(0.4, 1u32..=4),
        proptest::option::weighted(0.4, 5u64..=40),
        10u64..=100,
        1u32..=3,
        1u32..=3,
        proptest::option::weighted(0.3, 1u32..=4),
    )
        .prop_map(
            |(
                failure_rate,
                (window, min_calls),
                consecutive_failures,
                slow_call_ms,
                recovery_ms,
                half_open_calls,
                success_threshold,
                max_concurrent,
            )| Settings {
                failure_rate,
                window,
                min_calls,
                consecutive_failures,
                slow_call_ms,
                recovery_ms,
                half_open_calls,
                success_threshold,
                max_concurrent,
            },
        )
}

fn group() -> impl Strategy<Value = Group> {
    let call = (
        proptest::bool::weighted(0.4),
        0u64..=60,
        proptest::option::weighted(0.15, 0u64..=60),
    )
        .prop_map(|(fail, latency_ms, cancel_after_ms)| CallSpec {
            fail,
            latency_ms,
            cancel_after_ms,
        });
    (
        prop_oneof![0u64..=20, 20u64..=150],
        proptest::collection::vec(call, 1..=4),
    )
        .prop_map(|(gap_ms, calls)| Group { gap_ms, calls })
}

pub fn config(s: &Settings) -> OpConfig {
    OpConfig {
        breaker: BreakerConfig {
            enabled: Some(true),
            failure_rate: Some(s.failure_rate),
            min_calls: Some(s.min_calls),
            window: Some(s.window),
            slow_call: s.slow_call_ms.map(ms),
            recovery: Some(ms(s.recovery_ms)),
            half_open_calls: Some(s.half_open_calls),
            success_threshold: Some(s.success_threshold),
            consecutive_failures: s.consecutive_failures,
        },
        max_concurrent: s.max_concurrent,
        queue: Some(0),
        ..OpConfig::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ticket {
    Closed(u64),
    Probe(u64),
}

/// The breaker as the module docs describe it.
#[derive(Debug)]
struct Model {
    s: Settings,
    state: BreakerState,
    round: u64,
    window: VecDeque<bool>,
    failures: u32,
    consecutive: u32,
    open_until: u64,
    probes: u32,
    probe_successes: u32,
    opened: u64,
    half_opened: u64,
    closed: u64,
}

impl Model {
    fn new(s: Settings) -> Self {
        Model {
            s,
            state: BreakerState::Closed,
            round: 0,
            window: VecDeque::new(),
            failures: 0,
            consecutive: 0,
            open_until: 0,
            probes: 0,
            probe_successes: 0,
            opened: 0,
            half_opened: 0,
            closed: 0,
        }
    }

    fn go(&mut self, to: BreakerState) {
        self.state = to;
        self.round += 1;
        self.window.clear();
        self.failures = 0;
        self.consecutive = 0;
        self.probes = 0;
        self.probe_successes = 0;
        match to {
            BreakerState::Open => self.opened += 1,
            BreakerState::HalfOpen => self.half_opened += 1,
            BreakerState::Closed => self.closed += 1,
            _ => unreachable!(),
        }
    }

    fn admit(&mut self, now: u64) -> Result<Ticket, Duration> {
        match self.state {
            BreakerState::Closed => Ok(Ticket::Closed(self.round)),
            BreakerState::Open if now < self.open_until => {
                Err(Duration::from_nanos(self.open_until - now))
            }
            _ => {
                if self.state == BreakerState::Open {
                    self.go(BreakerState::HalfOpen);
                }
                if self.probes < self.s.half_open_calls {
                    self.probes += 1;
                    Ok(Ticket::Probe(self.round))
                } else {
                    Err(ms(self.s.recovery_ms).min(Duration::from_secs(1)))
                }
            }
        }
    }

    /// A call that ends without an outcome gives its probe place back.
    fn release(&mut self, ticket: Ticket) {
        if let Ticket::Probe(round) = ticket {
            if self.state == BreakerState::HalfOpen && self.round == round {
                self.probes -= 1;
            }
        }
    }

    fn record(&mut self, ticket: Ticket, failed: bool, now: u64) {
        let recovery = ns(ms(self.s.recovery_ms));
        match ticket {
            Ticket::Closed(round) => {
                if self.state != BreakerState::Closed || self.round != round {
                    return;
                }
                self.window.push_back(failed);
                if failed {
                    self.failures += 1;
                    self.consecutive += 1;
                } else {
                    self.consecutive = 0;
                }
                while self.window.len() > self.s.window as usize {
                    if self.window.pop_front() == Some(true) {
                        self.failures -= 1;
                    }
                }
                let calls = self.window.len() as u32;
                let rate_trips = calls >= self.s.min_calls
                    && f64::from(self.failures) / f64::from(calls) >= self.s.failure_rate;
                let streak_trips = self
                    .s
                    .consecutive_failures
                    .is_some_and(|n| self.consecutive >= n);
                if rate_trips || streak_trips {
                    self.open_until = now + recovery;
                    self.go(BreakerState::Open);
                }
            }
            Ticket::Probe(round) => {
                if self.state != BreakerState::HalfOpen || self.round != round {
                    return;
                }
                self.probes -= 1;
                if failed {
                    self.open_until = now + recovery;
                    self.go(BreakerState::Open);
                } else {
                    self.probe_successes += 1;
                    if self.probe_successes >= self.s.success_threshold {
                        self.go(BreakerState::Closed);
                    }
                }
            }
        }
    }
}

struct World {
    op: Op,
    model: Model,
    base: Instant,
    /// Every state read from the snapshot, in order, with the transition
    /// counters (opened, half-opened, closed) read with it.
    seen: Vec<(BreakerState, [u64; 3])>,
    /// Bodies running, and those admitted as probes by half-open round.
    running: u32,
    probes_running: Vec<u32>,
    violations: Vec<String>,
}

type Shared = Arc<Mutex<World>>;

fn lock(w: &Shared) -> MutexGuard<'_, World> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

fn legal(from: BreakerState, to: BreakerState) -> bool {
    use BreakerState::*;
    matches!(
        (from, to),
        (Closed, Closed)
            | (Closed, Open)
            | (Open, Open)
            | (Open, HalfOpen)
            | (HalfOpen, HalfOpen)
            | (HalfOpen, Closed)
            | (HalfOpen, Open)
    )
}

impl World {
    fn now(&self) -> u64 {
        ns(self.base.elapsed())
    }

    fn fail(&mut self, what: String) {
        let at = self.base.elapsed().as_millis();
        self.violations.push(format!("at {at} ms: {what}"));
    }

    /// Reads the snapshot: the transition from the previous reading must
    /// be legal and counted, and the state must be the model's.
    fn observe(&mut self, when: &str) -> BreakerState {
        let b = self.op.snapshot().breaker;
        let counts = [b.opened, b.half_opened, b.closed];
        if let Some(&(prev, prev_counts)) = self.seen.last() {
            if !legal(prev, b.state) {
                self.fail(format!(
                    "{when}: illegal transition {prev:?} -> {:?}",
                    b.state
                ));
            }
            let steps: u64 = counts.iter().zip(prev_counts).map(|(c, p)| c - p).sum();
            if steps != u64::from(prev != b.state) {
                self.fail(format!(
                    "{when}: {prev:?} -> {:?} with transition counters {prev_counts:?} -> {counts:?}",
                    b.state
                ));
            }
        }
        self.seen.push((b.state, counts));
        let m = &self.model;
        let want = (m.state, [m.opened, m.half_opened, m.closed]);
        if (b.state, counts) != want {
            self.fail(format!(
                "{when}: breaker {:?} {counts:?}, model {want:?}",
                b.state
            ));
        } else if b.state == BreakerState::Closed {
            let got = (b.window_calls, b.window_failures, b.consecutive_failures);
            let m = &self.model;
            let want = (m.window.len() as u32, m.failures, m.consecutive);
            if got != want {
                self.fail(format!(
                    "{when}: closed window (calls, failures, in a row) {got:?}, model {want:?}"
                ));
            }
        }
        b.state
    }
}

/// A body running, counted out when it ends or is dropped.
struct Running {
    world: Shared,
    /// The half-open round it probes in.
    probe: Option<usize>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut w = lock(&self.world);
        w.running -= 1;
        if let Some(round) = self.probe {
            w.probes_running[round] -= 1;
        }
    }
}

/// What the model says a call gets.
#[derive(Debug)]
enum Expect {
    Run(Ticket),
    /// Let through by the breaker, refused by the full bulkhead.
    QueueFull,
    CircuitOpen(Duration),
}

fn body_starts(world: &Shared, i: usize) -> Running {
    let mut w = lock(world);
    let state = w.observe(&format!("call {i} runs"));
    w.running += 1;
    let probe = match state {
        BreakerState::HalfOpen => {
            let round = w.op.snapshot().breaker.half_opened as usize;
            if w.probes_running.len() <= round {
                w.probes_running.resize(round + 1, 0);
            }
            w.probes_running[round] += 1;
            let (running, max) = (w.probes_running[round], w.model.s.half_open_calls);
            if running > max {
                w.fail(format!(
                    "call {i}: {running} probes run at once > half_open_calls {max}"
                ));
            }
            Some(round)
        }
        BreakerState::Closed => None,
        other => {
            w.fail(format!("call {i}: body runs while {other:?}"));
            None
        }
    };
    Running {
        world: world.clone(),
        probe,
    }
}

async fn one_call(world: Shared, op: Op, i: usize, spec: CallSpec) {
    let (expect, now) = {
        let mut w = lock(&world);
        w.observe(&format!("before call {i}"));
        let now = w.now();
        let expect = match w.model.admit(now) {
            Ok(t) if w.model.s.max_concurrent.is_some_and(|m| w.running >= m) => {
                w.model.release(t);
                Expect::QueueFull
            }
            Ok(t) => Expect::Run(t),
            Err(wait) => Expect::CircuitOpen(wait),
        };
        (expect, now)
    };
    let body = {
        let world = world.clone();
        move || {
            let world = world.clone();
            async move {
                let _running = body_starts(&world, i);
                tokio::time::sleep(ms(spec.latency_ms)).await;
                if spec.fail {
                    Err(LimitError::Timeout { op: "body".into() })
                } else {
                    Ok(())
                }
            }
        }
    };
    let run = op.run(None, body);
    let out = match spec.cancel_after_ms {
        Some(d) => tokio::time::timeout(ms(d), run).await.ok(),
        None => Some(run.await),
    };
    let mut w = lock(&world);
    let end = w.now();
    match (expect, out) {
        (Expect::Run(t), Some(Ok(()) | Err(LimitError::Timeout { .. }))) => {
            let slow = w.model.s.slow_call_ms.is_some_and(|s| spec.latency_ms > s);
            w.model.record(t, spec.fail || slow, end);
        }
        (Expect::Run(t), None) => w.model.release(t),
        (Expect::QueueFull, Some(Err(LimitError::QueueFull { .. }))) => {}
        (Expect::CircuitOpen(wait), Some(Err(LimitError::CircuitOpen { retry_after, .. }))) => {
            if wait != retry_after {
                w.fail(format!(
                    "call {i} at {now} ns: CircuitOpen retry_after {retry_after:?}, model {wait:?}"
                ));
            }
        }
        (expect, out) => {
            w.fail(format!(
                "call {i} at {now} ns ({spec:?}): model {expect:?}, op {out:?}"
            ));
        }
    }
    w.observe(&format!("after call {i}"));
}

pub fn run_case(s: &Settings, groups: &[Group]) -> Vec<String> {
    let rt = paused_runtime();
    rt.block_on(async {
        let reg = Registry::new();
        let op = configured(&reg, "br", config(s));
        let base = Instant::now();
        let world: Shared = Arc::new(Mutex::new(World {
            op: op.clone(),
            model: Model::new(s.clone()),
            base,
            seen: Vec::new(),
            running: 0,
            probes_running: Vec::new(),
            violations: Vec::new(),
        }));
        let mut at = 0;
        let mut calls = Vec::new();
        let mut i = 0;
        for g in groups {
            at += g.gap_ms;
            for &spec in &g.calls {
                let (world, op) = (world.clone(), op.clone());
                calls.push(tokio::spawn(async move {
                    tokio::time::sleep_until(base + ms(at)).await;
                    one_call(world, op, i, spec).await;
                }));
                i += 1;
            }
        }
        for c in calls {
            c.await.expect("a call task");
        }
        let mut w = lock(&world);
        w.observe("the end");
        std::mem::take(&mut w.violations)
    })
}

proptest! {
    #![proptest_config(props_config())]

    /// Every observed state change is a legal, counted transition and the
    /// state is the documented machine's; calls are refused exactly while
    /// open (or half-open with every probe place taken), with the exact
    /// retry_after; half-open runs at most `half_open_calls` probes at once.
    #[test]
    fn breaker_transitions_refusals_and_probes(
        s in settings(),
        groups in proptest::collection::vec(group(), 1..=16),
    ) {
        let violations = run_case(&s, &groups);
        prop_assert!(
            violations.is_empty(),
            "{:?}\ngroups {:?}\nviolations:\n{}",
            s,
            groups,
            violations.join("\n")
        );
    }
}

/// resilience4j's count-based sliding window, written from its documented
/// behaviour: a ring of the last `window` outcomes; after every recorded
/// outcome, once the ring holds `min(min_calls, window)` calls, a failure
/// rate at or above the threshold opens the breaker.
struct CountWindow {
    window: usize,
    min_calls: usize,
    failure_rate: f64,
    ring: VecDeque<bool>,
    open: bool,
}

impl CountWindow {
    fn record(&mut self, failed: bool) {
        if self.open {
            return;
        }
        self.ring.push_back(failed);
        if self.ring.len() > self.window {
            self.ring.pop_front();
        }
        let calls = self.ring.len();
        let failures = self.ring.iter().filter(|f| **f).count();
        if calls >= self.min_calls.min(self.window)
            && failures as f64 * 100.0 / calls as f64 >= self.failure_rate * 100.0
        {
            self.open = true;
        }
    }
}

/// Runs `outcomes` one call after another through an op (paused clock, a
/// recovery far beyond the run) and returns the index of the first call
/// after which the op's breaker and the reference model disagree.
fn first_divergence(window: u32, min_calls: u32, rate: f64, outcomes: &[bool]) -> Option<usize> {
    paused_runtime().block_on(async {
        let reg = Registry::new();
        let op = configured(
            &reg,
            "r4j",
            OpConfig {
                breaker: BreakerConfig {
                    enabled: Some(true),
                    failure_rate: Some(rate),
                    min_calls: Some(min_calls),
                    window: Some(window),
                    recovery: Some(Duration::from_secs(3600)),
                    ..BreakerConfig::default()
                },
                ..OpConfig::default()
            },
        );
        let mut model = CountWindow {
            window: window as usize,
            min_calls: min_calls as usize,
            failure_rate: rate,
            ring: VecDeque::new(),
            open: false,
        };
        for (i, &failed) in outcomes.iter().enumerate() {
            let out = op
                .run(None, || async move {
                    if failed {
                        Err(LimitError::Timeout { op: "body".into() })
                    } else {
                        Ok(())
                    }
                })
                .await;
            if model.open {
                // Refused while open, never run.
                if !matches!(out, Err(LimitError::CircuitOpen { .. })) {
                    return Some(i);
                }
            } else {
                model.record(failed);
            }
            let open = op.snapshot().breaker.state == BreakerState::Open;
            if open != model.open {
                return Some(i);
            }
        }
        None
    })
}

#[test]
fn s_f_f_s_opens_a_window_of_four_at_half() {
    // The window holds 50 % failures after the last success: it opens.
    assert_eq!(
        first_divergence(4, 4, 0.5, &[false, true, true, false]),
        None
    );
    assert_eq!(
        first_divergence(4, 4, 0.5, &[false, true, true, false, false]),
        None
    );
}

proptest! {
    #![proptest_config(props_config())]

    /// Random outcome sequences against the reference model of
    /// resilience4j's count-based window: the op's breaker is open after
    /// exactly the same calls (0 divergences).
    #[test]
    fn breaker_matches_a_count_based_reference_window(
        (window, min_calls) in (1u32..=10).prop_flat_map(|w| (Just(w), 1..=w)),
        rate in prop_oneof![Just(0.2), Just(0.25), Just(1.0 / 3.0), Just(0.5), Just(0.6), Just(1.0)],
        outcomes in proptest::collection::vec(proptest::bool::weighted(0.35), 1..=40),
    ) {
        let diverged = first_divergence(window, min_calls, rate, &outcomes);
        prop_assert!(
            diverged.is_none(),
            "window {window}, min_calls {min_calls}, rate {rate}: diverged after call {diverged:?} of {outcomes:?}"
        );
    }
}
