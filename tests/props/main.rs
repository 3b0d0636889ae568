//! Property tests of the bulkhead, the rate limiters and the breaker through
//! the facade's public API, on generated sequences of calls.
//!
//! Every case builds its own [`Registry`] and a current-thread tokio runtime
//! whose clock is paused: ops created inside it follow tokio's clock, so a
//! case runs in simulated time (no real sleeping) and is deterministic.

mod breaker;
mod bulkhead;
mod rate;
mod regressions;

use std::sync::Once;
use std::time::Duration;

use limiter::{Op, OpConfig, Registry};

/// A current-thread runtime with tokio's clock paused: idle time jumps to
/// the next timer.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
}

/// The op `name` of `reg`, configured with `cfg`. Call it inside the
/// paused runtime so that the op's clock follows tokio's.
pub fn configured(reg: &Registry, name: &str, cfg: OpConfig) -> Op {
    reg.configure(name, cfg).expect("a valid generated config");
    reg.op(name)
}

/// The payload of the panics the generated bodies raise on purpose.
pub const INJECTED_PANIC: &str = "injected panic (property test)";

/// Keeps the panics bodies raise on purpose out of the output; any other
/// panic is reported as usual.
pub fn quiet_injected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INJECTED_PANIC) {
                default(info);
            }
        }));
    });
}

/// The configuration of every property: 512 cases, or `PROPTEST_CASES`
/// when set (for longer runs by hand); no failure files (a failing case is
/// printed, and kept as a regression test in `regressions.rs`).
pub fn props_config() -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Nanoseconds of `d`.
pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).expect("test durations fit in u64")
}
