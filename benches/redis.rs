//! Redis-backed rate checks against the Redis on 127.0.0.1:6379 (or
//! `LIMITER_BENCH_REDIS`): latency of one check (criterion), then
//! throughput from 1 and from 64 concurrent tasks over one multiplexed
//! connection, beside the in-process check, with the Redis time each
//! script costs per call (`INFO commandstats`, reset before each run).
//!
//! ```text
//! cargo bench -p limiter-benches --features redis --bench redis
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};

#[path = "redis_common/mod.rs"]
mod redis_common;
use limiter::config::RateSpec;
use limiter::redis::{RedisBackend, RedisConfig, Take};
use limiter::spec::parse_rates;
use limiter::{Algorithm, LimitError, OpConfig, Registry};
use redis_common::url;

fn backend() -> RedisBackend {
    RedisBackend::new(RedisConfig {
        prefix: format!("limiter-bench-{}", std::process::id()),
        timeout: Duration::from_secs(1),
        ..RedisConfig::new(url())
    })
    .expect("valid settings")
}

/// A limit that never refuses, so every check does the full script.
fn spec(algorithm: Algorithm) -> RateSpec {
    RateSpec {
        windows: parse_rates("1000000000/s").unwrap(),
        burst: None,
        algorithm,
    }
}

/// Worker threads of the client's runtime (`LIMITER_BENCH_WORKERS`,
/// default 2): on a 2-core machine Redis shares the cores with them.
fn workers() -> usize {
    std::env::var("LIMITER_BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .enable_all()
        .build()
        .unwrap()
}

fn latency(c: &mut Criterion) {
    let rt = runtime();
    let b = backend();
    let mut g = c.benchmark_group("redis_check");
    for (name, alg) in [
        ("gcra", Algorithm::TokenBucket),
        ("sliding_window", Algorithm::SlidingWindow),
    ] {
        let s = spec(alg);
        g.bench_function(name, |bench| {
            bench
                .to_async(&rt)
                .iter(|| async { b.check("bench", None, &s, Take::Tokens(1)).await.unwrap() })
        });
    }
    g.finish();

    let reg = Registry::new();
    reg.configure(
        "local",
        OpConfig::default().with_rate("1000000000/s").unwrap(),
    )
    .unwrap();
    let op = reg.op("local");
    c.bench_function("local_check_for_comparison", |bench| {
        bench.to_async(&rt).iter(|| async {
            op.run(None, || async { Ok::<_, LimitError>(()) })
                .await
                .unwrap()
        })
    });
}

/// Checks per second from `tasks` concurrent tasks over `span`.
fn throughput(tasks: usize, span: Duration, algorithm: Algorithm) -> f64 {
    let rt = runtime();
    let b = Arc::new(backend());
    let s = Arc::new(spec(algorithm));
    let done = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        b.check("warm", None, &s, Take::Tokens(1)).await.unwrap();
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (b, s, done) = (Arc::clone(&b), Arc::clone(&s), Arc::clone(&done));
            handles.push(tokio::spawn(async move {
                while start.elapsed() < span {
                    b.check("throughput", None, &s, Take::Tokens(1))
                        .await
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    })
}

criterion_group!(benches, latency);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    let span = Duration::from_secs(3);
    println!();
    println!(
        "redis throughput (one multiplexed connection, {} client worker threads, {span:?} each; Redis µs per EVALSHA):",
        workers()
    );
    for (name, alg) in [
        ("gcra", Algorithm::TokenBucket),
        ("sliding_window", Algorithm::SlidingWindow),
        ("fixed_window", Algorithm::FixedWindow),
        ("sliding_exact", Algorithm::SlidingExact),
    ] {
        for tasks in [1, 64] {
            redis_common::evalsha_stats(); // reset
            let rate = throughput(tasks, span, alg);
            let usec = redis_common::evalsha_stats().1;
            println!("  {name:<15} {tasks:>2} tasks: {rate:>9.0} checks/s, {usec:>5.2} µs of Redis per call");
        }
    }
}
