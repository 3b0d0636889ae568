//! Rate limits: generated rates, bursts and knocking patterns; every
//! algorithm is held to the bound it documents, and every refusal's
//! `retry_after` to being exact.

use std::time::Duration;

use limiter::{Algorithm, LimitError, Op, OpConfig, Rate, Registry};
use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

#[derive(Debug, Clone)]
pub struct RateCase {
    pub algorithm: Algorithm,
    /// (count, period in microseconds), shortest period first.
    pub windows: Vec<(u32, u64)>,
    /// Token bucket only.
    pub burst: Option<u32>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Let time pass: this many hundredths of the first window's period,
    /// plus some microseconds.
    Wait(u64, u64),
    /// Try this many calls at once.
    Knock(u8),
    /// After a refusal, wait exactly its `retry_after` and call again.
    FollowRetry,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u64..=150, 0u64..=999).prop_map(|(p, us)| Step::Wait(p, us)),
        4 => (1u8..=6).prop_map(Step::Knock),
        3 => Just(Step::FollowRetry),
    ]
}

fn case() -> impl Strategy<Value = RateCase> {
    let algorithm = prop_oneof![
        Just(Algorithm::TokenBucket),
        Just(Algorithm::SlidingWindow),
        Just(Algorithm::FixedWindow),
        Just(Algorithm::SlidingExact),
    ];
    let period_us = prop_oneof![(1u64..=1000).prop_map(|m| m * 1000), 1u64..=2_000_000,];
    (
        algorithm,
        1u32..=12,
        period_us,
        proptest::option::weighted(0.3, (1u32..=12, 2u64..=6, 0u64..=999)),
        proptest::option::of(1u32..=12),
        proptest::collection::vec(step(), 1..=60),
    )
        .prop_map(|(algorithm, count, period_us, second, burst, steps)| {
            let mut windows = vec![(count, period_us)];
            if let Some((c, factor, extra)) = second {
                windows.push((c, period_us * factor + extra));
            }
            RateCase {
                algorithm,
                windows,
                burst: burst.filter(|_| algorithm == Algorithm::TokenBucket),
                steps,
            }
        })
}

pub fn config(c: &RateCase) -> OpConfig {
    OpConfig {
        algorithm: Some(c.algorithm),
        burst: c.burst,
        rate: Some(
            c.windows
                .iter()
                .map(|&(n, us)| Rate::new(n, Duration::from_micros(us)).expect("non-zero"))
                .collect(),
        ),
        max_concurrent: Some(1000),
        ..OpConfig::default()
    }
}

/// What a run recorded: admission times (ns since the op's clock began)
/// and the violations seen on the way.
pub struct Run {
    pub admitted: Vec<u64>,
    pub violations: Vec<String>,
    /// The token-bucket capacity of the first window in force.
    pub burst: Option<u32>,
}

async fn knock(op: &Op) -> Result<(), Result<Duration, LimitError>> {
    match op.acquire(None).await {
        Ok(permit) => {
            drop(permit);
            Ok(())
        }
        Err(LimitError::RateLimited { retry_after, .. }) => Err(Ok(retry_after)),
        Err(e) => Err(Err(e)),
    }
}

fn available(op: &Op) -> Option<u64> {
    op.snapshot().rate.and_then(|r| r.available)
}

pub fn run_case(c: &RateCase) -> Run {
    let rt = paused_runtime();
    rt.block_on(async {
        let reg = Registry::new();
        let op = configured(&reg, "rate", config(c));
        // The op's clock started at this instant (tokio's clock is paused).
        let base = Instant::now();
        let now = || ns(base.elapsed());
        let mut run = Run {
            admitted: Vec::new(),
            violations: Vec::new(),
            burst: op.config().rate.and_then(|r| r.burst),
        };
        // The latest refusal, when nothing happened since.
        let mut refused: Option<Duration> = None;
        for (i, step) in c.steps.iter().enumerate() {
            match *step {
                Step::Wait(hundredths, us) => {
                    let d = Duration::from_micros(c.windows[0].1 * hundredths / 100 + us);
                    tokio::time::advance(d).await;
                    refused = None;
                }
                Step::Knock(n) => {
                    for _ in 0..n {
                        match knock(&op).await {
                            Ok(()) => {
                                run.admitted.push(now());
                                refused = None;
                            }
                            Err(Ok(retry_after)) => {
                                if retry_after.is_zero() {
                                    run.violations.push(format!(
                                        "step {i}: refused at {} ns with a zero retry_after",
                                        now()
                                    ));
                                }
                                refused = Some(retry_after);
                            }
                            Err(Err(e)) => run
                                .violations
                                .push(format!("step {i}: unexpected refusal {e:?}")),
                        }
                    }
                }
                Step::FollowRetry => {
                    let Some(retry_after) = refused.take() else {
                        continue;
                    };
                    let at = now();
                    let tick = Duration::from_nanos(1);
                    if retry_after > tick {
                        tokio::time::advance(retry_after - tick).await;
                        if available(&op) != Some(0) {
                            run.violations.push(format!(
                                "step {i}: refused at {at} ns with retry_after {retry_after:?}, but a call fits 1 ns earlier"
                            ));
                        }
                        tokio::time::advance(tick).await;
                    } else {
                        tokio::time::advance(retry_after).await;
                    }
                    match knock(&op).await {
                        Ok(()) => run.admitted.push(now()),
                        Err(e) => run.violations.push(format!(
                            "step {i}: refused at {at} ns with retry_after {retry_after:?}; refused again at {} ns: {e:?}",
                            now()
                        )),
                    }
                }
            }
        }
        run
    })
}

/// Checks the admissions against each window's documented bound.
pub fn check_bounds(c: &RateCase, run: &Run) -> Vec<String> {
    let mut out = Vec::new();
    let a = &run.admitted;
    for (w, &(count, us)) in c.windows.iter().enumerate() {
        let period = u128::from(us) * 1000;
        let count_u = u128::from(count);
        match c.algorithm {
            Algorithm::TokenBucket => {
                // GCRA: at most B + t/T calls over any span t, T = period/count;
                // B is the burst for the first window, the count for others.
                let cap = if w == 0 {
                    run.burst.expect("token bucket has a burst")
                } else {
                    count
                };
                let cap = u128::from(cap);
                for i in 0..a.len() {
                    for j in i..a.len() {
                        let n = (j - i + 1) as u128;
                        let span = u128::from(a[j] - a[i]);
                        if n > cap && (n - cap) * period > span * count_u {
                            out.push(format!(
                                "window {w} ({count} per {us} µs, capacity {cap}): {n} calls in {span} ns, from {} to {} ns; B + t/T = {:.6}",
                                a[i],
                                a[j],
                                cap as f64 + span as f64 * count as f64 / period as f64
                            ));
                            break;
                        }
                    }
                }
            }
            Algorithm::SlidingExact => {
                // At most `count` calls in any span shorter than the period,
                // wherever it starts.
                let n = count as usize;
                for i in 0..a.len().saturating_sub(n) {
                    let span = u128::from(a[i + n] - a[i]);
                    if span < period {
                        out.push(format!(
                            "window {w} ({count} per {us} µs): {} calls in {span} ns, from {} to {} ns",
                            n + 1,
                            a[i],
                            a[i + n]
                        ));
                    }
                }
            }
            Algorithm::FixedWindow | Algorithm::SlidingWindow => {
                // Both: at most `count` calls between two multiples of the
                // period (then at most count·(⌈t/P⌉ + 1) over any span t).
                let windex = |t: u64| u128::from(t) / period;
                let mut per_window = std::collections::BTreeMap::<u128, u128>::new();
                for &t in a {
                    *per_window.entry(windex(t)).or_default() += 1;
                }
                for (k, n) in &per_window {
                    if *n > count_u {
                        out.push(format!(
                            "window {w} ({count} per {us} µs): {n} calls in [{}, {}) ns",
                            k * period,
                            (k + 1) * period
                        ));
                    }
                }
                if c.algorithm == Algorithm::SlidingWindow {
                    // Each call was admitted with the previous window's
                    // count, weighted by its overlap with [now - P, now],
                    // plus the calls of this window so far, under `count`:
                    // prev·(P - e) + (current + 1)·P <= count·P.
                    let mut before = 0u128;
                    let mut last = None;
                    for &t in a {
                        let k = windex(t);
                        if last != Some(k) {
                            before = 0;
                            last = Some(k);
                        }
                        let prev = if k == 0 {
                            0
                        } else {
                            per_window.get(&(k - 1)).copied().unwrap_or(0)
                        };
                        let e = u128::from(t) - k * period;
                        if prev * (period - e) + (before + 1) * period > count_u * period {
                            out.push(format!(
                                "window {w} ({count} per {us} µs): call at {t} ns admitted over the estimate: previous {prev}, elapsed {e} ns, {before} before it"
                            ));
                        }
                        before += 1;
                    }
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(props_config())]

    /// Over any span every window admits no more than its algorithm
    /// promises, and a refused call that waits exactly its `retry_after`
    /// is admitted (and would not have been 1 ns earlier).
    #[test]
    fn rate_bounds_and_exact_retry_after(c in case()) {
        let run = run_case(&c);
        prop_assert!(
            run.violations.is_empty(),
            "{:?}\nadmitted at {:?}\n{}",
            c,
            run.admitted,
            run.violations.join("\n")
        );
        let bounds = check_bounds(&c, &run);
        prop_assert!(
            bounds.is_empty(),
            "{:?}\nadmitted at {:?}\n{}",
            c,
            run.admitted,
            bounds.join("\n")
        );
    }
}
