//! Instruction counts of the runtime's hot path beside its peers, measured
//! with Callgrind through [gungraun](https://docs.rs/gungraun).
//!
//! `cargo bench -p limiter-benches --bench instructions`
//!
//! Needs valgrind and the runner of the same version as the `gungraun`
//! dev-dependency: `cargo install gungraun-runner --version 0.20.0`.
//!
//! The cases mirror `benches/overhead.rs` (same op configurations, same
//! peers from `benches/peers/mod.rs`):
//!
//! * `limiter_stack`: `op.run(None, || work(i)).await` on an op with rate
//!   limit + breaker + bulkhead + metrics (`stack(None)`);
//!   `limiter_stack_timeout`: the same with a 10 s timeout;
//!   `limiter_acquire_drop`: `drop(op.acquire(None).await)` on the first op.
//! * `limiter_check_key`: `keyed.check_key(&(i % 100_000))` after each of the
//!   100 000 keys was checked once.
//! * Peers: `composite` ([`peers::Composite::call`]), `tower_stack`
//!   ([`peers::call_tower`] on [`peers::tower_stack`]), `governor_keyed`
//!   ([`peers::GovernorKeyed::check`] with `i % 100_000`, after each of the
//!   100 000 keys was checked once).
//! * `bare_call`: the body alone (`work(i).await`), for reference: the cost
//!   of the loop, of `work` and of entering `block_on` once, which every
//!   async case pays too.
//!
//! # How to read the figures
//!
//! Each benchmark function runs a loop of **N = 1000 calls** and nothing
//! else; gungraun reports the instructions ("Instructions", Callgrind's
//! `Ir`) of that whole function, so
//!
//! **per call = Ir / 1000** (the reported total with the decimal point moved
//! three places to the left).
//!
//! The async cases run their loop inside one `block_on` of a current-thread
//! tokio runtime (as overhead.rs does), so entering the runtime is paid once
//! per 1000 calls. Everything else is setup and is not counted: building the
//! runtime, the registry, the ops and the peers; the 100 000 keys of the
//! keyed cases; and a warm-up loop of the same N = 1000 calls run right
//! before the measured one on the same thread, so one-time costs such as
//! thread-local slot leasing or first-touch allocations are not counted.
//!
//! gungraun has no per-iteration scaling of its own; the main `teardown`
//! below reads the Callgrind totals after the run, divides them by N and
//! writes the table to `target/gungraun/limiter-benches/instructions/per_call.txt`
//! (also printed when run with `-- --nocapture`: gungraun captures the
//! output of setup and teardown functions by default).
//!
//! # Nothing refused
//!
//! A refused call is cheaper than an admitted one and would make a figure
//! meaningless, so every case checks it after its run (in the per-benchmark
//! teardown, not counted) and fails the benchmark otherwise: the ops count
//! calls and admissions (every call of the warm-up and of the measured loop
//! must have been admitted), `check_key` and governor refusals are counted
//! in the loop, and the composite and tower peers panic on a refusal.

#[path = "cases/mod.rs"]
mod cases;
#[path = "peers/mod.rs"]
mod peers;

use std::hint::black_box;
use std::time::Duration;

use cases::{keyed, stack, work, KEYS};
use gungraun::prelude::*;
use limiter::{Op, OpConfig, Registry};
use tokio::runtime::Runtime;
use tower::{BoxError, Service};

/// Calls per measured loop (and per warm-up loop). Per call = Ir / N.
const N: u64 = 1000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// One op `name` configured with `cfg` in a fresh registry, built inside
/// `rt` (as overhead.rs builds its registry with the runtime entered).
fn op(rt: &Runtime, name: &str, cfg: OpConfig) -> Op {
    let _guard = rt.enter();
    let reg = Registry::new();
    reg.configure(name, cfg).expect("config");
    reg.op(name)
}

/// Fails the benchmark if the op refused a call, or did not see the
/// `calls` calls it was given (warm-up + measured loop).
fn assert_nothing_refused(op: &Op, calls: u64) {
    let c = op.snapshot().counters;
    assert_eq!(
        c.calls,
        c.admitted,
        "op `{}` refused calls: {c:?}",
        op.name()
    );
    assert_eq!(c.calls, calls, "op `{}` saw other calls: {c:?}", op.name());
}

// ---------------------------------------------------------------------------
// The loops: used for the warm-up (setup) and for the measured run
// ---------------------------------------------------------------------------

fn loop_bare(rt: &Runtime) {
    rt.block_on(async {
        for i in 0..N {
            let _ = black_box(work(i).await);
        }
    });
}

fn loop_run(rt: &Runtime, op: &Op) {
    rt.block_on(async {
        for i in 0..N {
            let _ = black_box(op.run(None, || work(i)).await);
        }
    });
}

fn loop_acquire_drop(rt: &Runtime, op: &Op) {
    rt.block_on(async {
        for _ in 0..N {
            drop(black_box(op.acquire(None).await));
        }
    });
}

/// Returns how many checks were refused.
fn loop_check_key(rt: &Runtime, op: &Op) -> u64 {
    let _guard = rt.enter();
    let mut refused = 0;
    for i in 0..N {
        refused += u64::from(black_box(op.check_key(&(i % KEYS)).is_err()));
    }
    refused
}

fn loop_composite(rt: &Runtime, composite: &peers::Composite) {
    rt.block_on(async {
        for i in 0..N {
            black_box(composite.call(async { black_box(i) }).await);
        }
    });
}

fn loop_tower<S>(rt: &Runtime, svc: &mut S)
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    rt.block_on(async {
        for i in 0..N {
            black_box(peers::call_tower(svc, i).await);
        }
    });
}

/// Returns how many checks were refused.
fn loop_governor_keyed(g: &peers::GovernorKeyed) -> u64 {
    let mut refused = 0;
    for i in 0..N {
        refused += u64::from(!black_box(g.check(i % KEYS)));
    }
    refused
}

// ---------------------------------------------------------------------------
// Setup (not counted): build, then warm up with one loop of N calls
// ---------------------------------------------------------------------------

/// A runtime and an op, warmed up.
struct OpCase {
    rt: Runtime,
    op: Op,
}

fn setup_bare() -> Runtime {
    let rt = runtime();
    loop_bare(&rt);
    rt
}

fn setup_stack(timeout: Option<Duration>) -> OpCase {
    let rt = runtime();
    let op = op(&rt, "stack", stack(timeout));
    loop_run(&rt, &op);
    OpCase { rt, op }
}

fn setup_acquire_drop() -> OpCase {
    let rt = runtime();
    let op = op(&rt, "stack", stack(None));
    loop_acquire_drop(&rt, &op);
    OpCase { rt, op }
}

/// A runtime and a per-key op, every key seen once, warmed up; refusals
/// counted so far.
struct KeyedCase {
    rt: Runtime,
    op: Op,
    refused: u64,
}

fn setup_check_key() -> KeyedCase {
    let rt = runtime();
    let op = op(&rt, "keyed", keyed());
    let mut refused = {
        let _guard = rt.enter();
        (0..KEYS).filter(|k| op.check_key(k).is_err()).count() as u64
    };
    refused += loop_check_key(&rt, &op);
    KeyedCase { rt, op, refused }
}

struct CompositeCase {
    rt: Runtime,
    composite: peers::Composite,
}

fn setup_composite() -> CompositeCase {
    let rt = runtime();
    let composite = peers::Composite::new();
    loop_composite(&rt, &composite);
    CompositeCase { rt, composite }
}

/// Generic over the service because [`peers::tower_stack`] returns an
/// unnameable type (boxing it would add an allocation per call).
struct TowerCase<S> {
    rt: Runtime,
    svc: S,
}

fn setup_tower() -> TowerCase<impl Service<u64, Response = u64, Error = BoxError>> {
    let rt = runtime();
    // `RateLimit::new` needs the runtime context.
    let mut svc = {
        let _guard = rt.enter();
        peers::tower_stack()
    };
    loop_tower(&rt, &mut svc);
    TowerCase { rt, svc }
}

/// A governor keyed limiter, every key seen once, warmed up; refusals
/// counted so far.
struct GovernorCase {
    limiter: peers::GovernorKeyed,
    refused: u64,
}

fn setup_governor_keyed() -> GovernorCase {
    let limiter = peers::GovernorKeyed::new();
    let mut refused = (0..KEYS).filter(|&k| !limiter.check(k)).count() as u64;
    refused += loop_governor_keyed(&limiter);
    GovernorCase { limiter, refused }
}

// ---------------------------------------------------------------------------
// Teardown (not counted): nothing refused
// ---------------------------------------------------------------------------

fn check_op(case: OpCase) {
    assert_nothing_refused(&case.op, 2 * N);
}

fn check_keyed(case: KeyedCase) {
    assert_eq!(case.refused, 0, "check_key refused keys");
    // A refusal is also counted by the op (rejected_*): none either.
    let c = case.op.snapshot().counters;
    assert_eq!(c.calls, c.admitted, "keyed op refused calls: {c:?}");
}

fn check_governor(case: GovernorCase) {
    assert_eq!(case.refused, 0, "governor refused keys");
}

// ---------------------------------------------------------------------------
// Benchmarks: each runs one loop of N calls and nothing else
// ---------------------------------------------------------------------------

#[library_benchmark]
#[bench::n1000(setup_bare())]
fn bare_call(rt: Runtime) -> Runtime {
    loop_bare(&rt);
    rt
}

#[library_benchmark(teardown = check_op)]
#[bench::n1000(setup_stack(None))]
fn limiter_stack(case: OpCase) -> OpCase {
    loop_run(&case.rt, &case.op);
    case
}

#[library_benchmark(teardown = check_op)]
#[bench::n1000(setup_stack(Some(Duration::from_secs(10))))]
fn limiter_stack_timeout(case: OpCase) -> OpCase {
    loop_run(&case.rt, &case.op);
    case
}

#[library_benchmark(teardown = check_op)]
#[bench::n1000(setup_acquire_drop())]
fn limiter_acquire_drop(case: OpCase) -> OpCase {
    loop_acquire_drop(&case.rt, &case.op);
    case
}

#[library_benchmark(teardown = check_keyed)]
#[bench::n1000(setup_check_key())]
fn limiter_check_key(mut case: KeyedCase) -> KeyedCase {
    case.refused += loop_check_key(&case.rt, &case.op);
    case
}

#[library_benchmark]
#[bench::n1000(setup_composite())]
fn composite(case: CompositeCase) -> CompositeCase {
    loop_composite(&case.rt, &case.composite);
    case
}

#[library_benchmark]
#[bench::n1000(setup_tower())]
fn tower_stack<S>(mut case: TowerCase<S>) -> TowerCase<S>
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    loop_tower(&case.rt, &mut case.svc);
    case
}

#[library_benchmark(teardown = check_governor)]
#[bench::n1000(setup_governor_keyed())]
fn governor_keyed(mut case: GovernorCase) -> GovernorCase {
    case.refused += loop_governor_keyed(&case.limiter);
    case
}

// ---------------------------------------------------------------------------
// Per-call table (main teardown, after all benchmarks; not measured)
// ---------------------------------------------------------------------------

/// The benchmark functions, in the order of the group.
const CASES: [&str; 8] = [
    "bare_call",
    "limiter_stack",
    "limiter_stack_timeout",
    "limiter_acquire_drop",
    "limiter_check_key",
    "composite",
    "tower_stack",
    "governor_keyed",
];

/// Where gungraun writes this bench's output: `$GUNGRAUN_HOME`, else
/// `$CARGO_TARGET_DIR/gungraun`, else `target/gungraun`, then
/// `<package>/<bench>`.
fn output_dir() -> std::path::PathBuf {
    let home = std::env::var_os("GUNGRAUN_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(|t| std::path::PathBuf::from(t).join("gungraun"))
        })
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/gungraun").into());
    home.join(env!("CARGO_PKG_NAME")).join("instructions")
}

/// The `Ir` total of a Callgrind output file (its `totals:` line).
fn read_ir(path: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("totals:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Writes `per_call.txt` (Ir / N of each case's last run) next to
/// gungraun's output, and prints it (shown with `-- --nocapture`).
fn write_per_call() {
    let dir = output_dir();
    let mut table = format!(
        "{:<24} {:>12} {:>10}\n",
        "case (N = 1000)", "Ir", "Ir / call"
    );
    for case in CASES {
        let file = dir.join(format!("per_call/{case}.n1000/callgrind.{case}.n1000.out"));
        match read_ir(&file) {
            Some(ir) => table += &format!("{case:<24} {ir:>12} {:>10.3}\n", ir as f64 / N as f64),
            None => table += &format!("{case:<24} {:>12} {:>10}\n", "-", "-"),
        }
    }
    print!("{table}");
    if let Err(e) = std::fs::write(dir.join("per_call.txt"), &table) {
        eprintln!("cannot write per_call.txt in {}: {e}", dir.display());
    }
}

library_benchmark_group!(
    name = per_call,
    benchmarks = [
        bare_call,
        limiter_stack,
        limiter_stack_timeout,
        limiter_acquire_drop,
        limiter_check_key,
        composite,
        tower_stack,
        governor_keyed
    ]
);

main!(
    teardown = write_per_call(),
    library_benchmark_groups = per_call
);
