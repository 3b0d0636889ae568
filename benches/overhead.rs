//! Per-call cost of the runtime on the hot path, beside its peers, in one run.
//!
//! `cargo bench -p limiter-benches --bench overhead`
//!
//! Every case runs admitted calls of a trivial body on a current-thread tokio
//! runtime, in a loop inside one `block_on` (so no case pays for entering the
//! runtime per call):
//!
//! * `bare_call`: the body alone.
//! * `limiter_stack`: an op with rate limit + breaker + bulkhead + metrics
//!   (counters and latency histogram), as `#[limit_blocking]` expands to;
//!   `limiter_stack_timeout`: the same with a 10 s timeout;
//!   `limiter_acquire_drop`: a permit taken and dropped.
//! * `limiter_keyed_100k`: an op with a per-key rate limit, keys cycling over
//!   100 000; `limiter_check_key_100k`: the per-key check alone
//!   ([`limiter::Op::check_key`]).
//! * `op_layer_service_fn`: [`limiter::OpLayer`] with the timeout op over
//!   a `tower::service_fn` of the body.
//! * Peers: `tower_stack` (ConcurrencyLimit + Timeout + RateLimit),
//!   `tower_resilience_stack` (CircuitBreaker + Bulkhead + RateLimiter +
//!   TimeLimiter), `composite` (governor + breaker-state load + tokio
//!   Semaphore + 2 counters + 2 clock reads, hand-composed), `floor` (a
//!   hand-written lower bound: CAS GCRA, state load, atomic permit, counter,
//!   2 clock reads, histogram bucket), `governor_check`,
//!   `governor_keyed_100k`, `semaphore_acquire_drop`.
//! * `contended/*`: the stack and the composite shared by 2 threads.
//!
//! The ratio table printed at the end divides the means criterion saved for
//! this run (`target/criterion/*/new/estimates.json`).

#[path = "cases/mod.rs"]
mod cases;
#[path = "peers/mod.rs"]
mod peers;

use std::hint::black_box;
use std::time::{Duration, Instant};

use cases::{keyed, stack, work, KEYS};
use criterion::Criterion;
use limiter::Registry;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Times `iters` awaits of `$call` (an expression using `$i`, the
/// iteration) inside one `block_on`.
macro_rules! timed_loop {
    ($rt:expr, $iters:expr, |$i:ident| $call:expr) => {
        $rt.block_on(async {
            let start = Instant::now();
            for $i in 0..$iters {
                let _ = black_box($call.await);
            }
            start.elapsed()
        })
    };
}

fn registry() -> Registry {
    let reg = Registry::new();
    reg.configure("stack", stack(None)).expect("config");
    reg.configure("stack_timeout", stack(Some(Duration::from_secs(10))))
        .expect("config");
    reg.configure("keyed", keyed()).expect("config");
    reg
}

fn single_thread(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let reg = registry();
    let stack = reg.op("stack");
    let stack_t = reg.op("stack_timeout");
    let keyed = reg.op("keyed");

    let mut g = c.benchmark_group("per_call");
    g.bench_function("bare_call", |b| {
        b.iter_custom(|n| timed_loop!(rt, n, |i| work(i)))
    });
    g.bench_function("limiter_stack", |b| {
        b.iter_custom(|n| timed_loop!(rt, n, |i| stack.run(None, || work(i))))
    });
    g.bench_function("limiter_stack_timeout", |b| {
        b.iter_custom(|n| timed_loop!(rt, n, |i| stack_t.run(None, || work(i))))
    });
    g.bench_function("limiter_acquire_drop", |b| {
        b.iter_custom(|n| timed_loop!(rt, n, |_i| async { drop(stack.acquire(None).await) }))
    });
    g.bench_function("limiter_keyed_100k", |b| {
        b.iter_custom(|n| timed_loop!(rt, n, |i| keyed.run(Some(&(i % KEYS)), || work(i))))
    });
    g.bench_function("limiter_check_key_100k", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for i in 0..n {
                black_box(keyed.check_key(&(i % KEYS)).is_ok());
            }
            start.elapsed()
        })
    });

    // `OpLayer` over the same `service_fn` as the tower stack: the stack's
    // op (rate + breaker + bulkhead + timeout + metrics) as a tower layer.
    let mut op_layer = tower::Layer::layer(
        &limiter::OpLayer::new(reg.op("stack_timeout")),
        tower::service_fn(work),
    );
    g.bench_function("op_layer_service_fn", |b| {
        b.iter_custom(|n| timed_loop!(rt, n, |i| peers::call_op_layer(&mut op_layer, i)))
    });
    let mut tower = peers::tower_stack();
    g.bench_function("tower_stack", |b| {
        b.iter_custom(|n| timed_loop!(rt, n, |i| peers::call_tower(&mut tower, i)))
    });
    let mut resilience = peers::resilience_stack();
    g.bench_function("tower_resilience_stack", |b| {
        b.iter_custom(|n| timed_loop!(rt, n, |i| peers::call_resilience(&mut resilience, i)))
    });
    let composite = peers::Composite::new();
    g.bench_function("composite", |b| {
        b.iter_custom(|n| timed_loop!(rt, n, |i| composite.call(async { black_box(i) })))
    });
    let floor = peers::Floor::new();
    g.bench_function("floor", |b| {
        b.iter_custom(|n| timed_loop!(rt, n, |i| floor.call(async { black_box(i) })))
    });
    let direct = peers::GovernorDirect::new();
    g.bench_function("governor_check", |b| b.iter(|| direct.check()));
    let gkeyed = peers::GovernorKeyed::new();
    g.bench_function("governor_keyed_100k", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for i in 0..n {
                black_box(gkeyed.check(i % KEYS));
            }
            start.elapsed()
        })
    });
    for op in [&stack, &stack_t, &keyed] {
        assert_nothing_refused(op);
    }
    let sem = tokio::sync::Semaphore::new(1024);
    g.bench_function("semaphore_acquire_drop", |b| {
        b.iter(|| peers::semaphore_try_acquire_drop(&sem))
    });
    g.finish();
}

/// Runs `per_thread` calls on each of 2 threads at once; returns the wall
/// time divided so that the figure is per call overall.
fn two_threads<F>(iters: u64, call: F) -> Duration
where
    F: Fn(tokio::runtime::Runtime, u64) -> Duration + Send + Sync + Copy + 'static,
{
    let per_thread = iters.div_ceil(2);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                barrier.wait();
                call(rt, per_thread)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("bench thread"))
        .max()
        .unwrap_or_default()
}

fn contended(c: &mut Criterion) {
    static REG: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    static COMPOSITE: std::sync::OnceLock<peers::Composite> = std::sync::OnceLock::new();
    let rt = runtime();
    rt.block_on(async {
        REG.get_or_init(registry);
    });
    COMPOSITE.get_or_init(peers::Composite::new);
    let mut g = c.benchmark_group("contended");
    g.bench_function("limiter_stack", |b| {
        b.iter_custom(|n| {
            two_threads(n, |rt, n| {
                let op = REG.get().expect("set").op("stack");
                timed_loop!(rt, n, |i| op.run(None, || work(i)))
            })
        })
    });
    assert_nothing_refused(&REG.get().expect("set").op("stack"));
    g.bench_function("composite", |b| {
        b.iter_custom(|n| {
            two_threads(n, |rt, n| {
                let composite = COMPOSITE.get().expect("set");
                timed_loop!(rt, n, |i| composite.call(async { black_box(i) }))
            })
        })
    });
    g.finish();
}

/// The mean of a case in this run, in nanoseconds.
fn mean_ns(group: &str, case: &str) -> Option<f64> {
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_owned());
    let path = format!("{target}/criterion/{group}/{case}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

/// A ratio to print: name, our case, the peer's case (group, case), goal.
type Row = (&'static str, Case, Case, f64);
type Case = (&'static str, &'static str);

/// Fails the run if an op refused a call: a refused call is cheaper than an
/// admitted one and would make its figure meaningless.
fn assert_nothing_refused(op: &limiter::Op) {
    let c = op.snapshot().counters;
    assert_eq!(
        c.calls,
        c.admitted,
        "op `{}` refused calls: {c:?}",
        op.name()
    );
}

/// Prints ours / peer for each goal of the benchmark.
fn ratios() {
    let rows: [Row; 8] = [
        (
            "stack vs composite",
            ("per_call", "limiter_stack"),
            ("per_call", "composite"),
            0.8,
        ),
        (
            "stack vs tower-resilience",
            ("per_call", "limiter_stack"),
            ("per_call", "tower_resilience_stack"),
            0.1,
        ),
        (
            "stack vs floor",
            ("per_call", "limiter_stack"),
            ("per_call", "floor"),
            1.5,
        ),
        (
            "stack+timeout vs tower",
            ("per_call", "limiter_stack_timeout"),
            ("per_call", "tower_stack"),
            0.8,
        ),
        (
            "OpLayer vs tower stack",
            ("per_call", "op_layer_service_fn"),
            ("per_call", "tower_stack"),
            1.0,
        ),
        (
            "check_key vs governor keyed",
            ("per_call", "limiter_check_key_100k"),
            ("per_call", "governor_keyed_100k"),
            1.0,
        ),
        (
            "keyed call vs governor keyed",
            ("per_call", "limiter_keyed_100k"),
            ("per_call", "governor_keyed_100k"),
            f64::NAN,
        ),
        (
            "2 threads: stack vs composite",
            ("contended", "limiter_stack"),
            ("contended", "composite"),
            1.0,
        ),
    ];
    println!();
    println!(
        "{:<32} {:>10} {:>10} {:>7} {:>6}",
        "ratio (ours / peer)", "ours ns", "peer ns", "ratio", "goal"
    );
    for (name, ours, peer, goal) in rows {
        match (mean_ns(ours.0, ours.1), mean_ns(peer.0, peer.1)) {
            (Some(a), Some(b)) => {
                let r = a / b;
                let verdict = if goal.is_nan() {
                    "-".to_owned()
                } else if r <= goal {
                    format!("≤{goal} ok")
                } else {
                    format!("≤{goal} MISS")
                };
                println!("{name:<32} {a:>10.1} {b:>10.1} {r:>7.3} {verdict:>6}");
            }
            _ => println!("{name:<32} (not measured in this run)"),
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(50)
        .configure_from_args();
    single_thread(&mut c);
    contended(&mut c);
    c.final_summary();
    ratios();
}
