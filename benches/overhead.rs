//! Per-call cost of the runtime on the hot path.
//!
//! `cargo bench --bench overhead`
//!
//! Each case runs one admitted call on a current-thread tokio runtime:
//! the bare async call for reference, then the call through an op with
//! rate limit + breaker + bulkhead + metrics, the same with a timeout, a
//! permit taken and dropped, and a per-key check over 100 000 keys.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use limiter::{BreakerConfig, LimitError, OpConfig, Registry};

fn stack(timeout: Option<Duration>) -> OpConfig {
    OpConfig {
        timeout,
        max_concurrent: Some(1024),
        breaker: BreakerConfig {
            enabled: Some(true),
            ..BreakerConfig::default()
        },
        ..OpConfig::default()
    }
    .with_rate("1000000000/s")
    .expect("valid rate")
}

async fn work(x: u64) -> Result<u64, LimitError> {
    Ok(black_box(x))
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let reg = Registry::new();
    reg.configure("stack", stack(None)).expect("config");
    reg.configure("stack_timeout", stack(Some(Duration::from_secs(10))))
        .expect("config");
    let keyed = OpConfig {
        max_keys: Some(200_000),
        ..OpConfig::default()
    }
    .with_rate_per_key("1000000/s")
    .expect("valid rate");
    reg.configure("keyed", keyed).expect("config");

    let mut g = c.benchmark_group("per_call");
    g.bench_function("bare_call", |b| b.to_async(&rt).iter(|| work(1)));
    let op = reg.op("stack");
    g.bench_function("rate+breaker+bulkhead+metrics", |b| {
        b.to_async(&rt).iter(|| op.run(None, || work(1)))
    });
    let op_t = reg.op("stack_timeout");
    g.bench_function("same+timeout", |b| {
        b.to_async(&rt).iter(|| op_t.run(None, || work(1)))
    });
    g.bench_function("acquire+drop", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(op.acquire(None).await) })
    });
    let op_k = reg.op("keyed");
    let mut key = 0u64;
    g.bench_function("keyed_100k", |b| {
        b.to_async(&rt).iter(|| {
            key = (key + 1) % 100_000;
            op_k.run(Some(&key), || work(1))
        })
    });
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
