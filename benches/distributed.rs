//! A shared limit across instances, simulated: K registries (each with its
//! own Redis connection, as K processes would have) share one op limited
//! to 1 000/s (burst 20) in the Redis on 127.0.0.1:6379 (or
//! `LIMITER_BENCH_REDIS`), under a skewed load: one instance gets 70 % of
//! the callers. Callers call as fast as they can, refused or not. Run in
//! `mode = "exact"` (one Redis script per call) and `mode = "lease"`
//! (slices of the bucket served in process), it prints, per mode: the
//! calls admitted in every 1 s window against the limit and the stated
//! bound (`limiter::redis::over_admission_bound`), Redis calls per
//! admitted call, checks per second, and Redis's own time per script
//! (`INFO commandstats`, reset per mode: use a Redis of the bench's own).
//!
//! ```text
//! cargo bench -p limiter-benches --features redis --bench distributed
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "redis_common/mod.rs"]
mod redis_common;
use redis_common::url;

use limiter::redis::{over_admission_bound, RedisConfig};
use limiter::{Backend, LimitError, OpConfig, Registry, SharedMode};

const INSTANCES: usize = 4;
const TASKS: usize = 64;
const LIMIT: u32 = 1_000;
const BURST: u32 = 20;
const SECONDS: usize = 10;

/// One instance: a registry of its own with its own Redis connection.
fn instance(prefix: &str, mode: SharedMode) -> Arc<Registry> {
    let reg = Registry::new();
    reg.set_redis(RedisConfig {
        prefix: prefix.into(),
        timeout: Duration::from_secs(1),
        ..RedisConfig::new(url())
    })
    .expect("valid settings");
    reg.configure(
        "sim",
        OpConfig {
            backend: Some(Backend::Redis),
            mode: Some(mode),
            burst: Some(BURST),
            max_concurrent: Some(100_000),
            instances: Some(INSTANCES as u32),
            ..OpConfig::default()
        }
        .with_rate(&format!("{LIMIT}/s"))
        .expect("valid rate"),
    )
    .expect("valid op");
    Arc::new(reg)
}

/// What one mode's run measured.
struct Run {
    windows: Vec<u64>,
    checks: u64,
    admitted: u64,
    elapsed: Duration,
    redis_calls: u64,
    usec_per_call: f64,
}

fn run(mode: SharedMode) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let prefix = format!("limiter-sim-{}-{mode}", std::process::id());
    let instances: Vec<_> = (0..INSTANCES).map(|_| instance(&prefix, mode)).collect();
    let windows: Arc<Vec<AtomicU64>> =
        Arc::new((0..SECONDS + 1).map(|_| AtomicU64::new(0)).collect());
    let checks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        // Warm the connections, then start the clock.
        for reg in &instances {
            let _ = reg
                .op("sim")
                .run(None, || async { Ok::<_, LimitError>(()) })
                .await;
        }
        // The callers start a second before the count does: every window
        // counted is under steady load.
        let warm_up = Duration::from_secs(1);
        let start = Instant::now() + warm_up;
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            // 70 % of the callers on instance 0, the rest spread evenly.
            let i = if t < TASKS * 7 / 10 {
                0
            } else {
                1 + t % (INSTANCES - 1)
            };
            let op = instances[i].op("sim");
            let (windows, checks, stop) =
                (Arc::clone(&windows), Arc::clone(&checks), Arc::clone(&stop));
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let admitted = op
                        .run(None, || async { Ok::<_, LimitError>(()) })
                        .await
                        .is_ok();
                    n += 1;
                    if admitted {
                        let now = Instant::now();
                        if now >= start {
                            let w = (now - start).as_secs() as usize;
                            if let Some(c) = windows.get(w) {
                                c.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if n == 64 {
                        checks.fetch_add(n, Ordering::Relaxed);
                        n = 0;
                        tokio::task::yield_now().await;
                    }
                }
                checks.fetch_add(n, Ordering::Relaxed);
            }));
        }
        tokio::time::sleep(warm_up).await;
        redis_common::evalsha_stats();
        let counted_from = checks.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(SECONDS as u64)).await;
        stop.store(true, Ordering::Relaxed);
        let elapsed = start.elapsed();
        for t in tasks {
            t.await.expect("task");
        }
        let (redis_calls, usec_per_call) = redis_common::evalsha_stats();
        let windows: Vec<u64> = windows
            .iter()
            .take(SECONDS)
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        Run {
            admitted: windows.iter().sum(),
            windows,
            checks: checks.load(Ordering::Relaxed) - counted_from,
            elapsed,
            redis_calls,
            usec_per_call,
        }
    })
}

fn main() {
    let bound = over_admission_bound(f64::from(LIMIT), INSTANCES as u32);
    println!(
        "{INSTANCES} instances, {TASKS} callers (70 % on instance 0), limit {LIMIT}/s burst {BURST}, {SECONDS} s per mode; stated lease bound: +{bound} over an exact check"
    );
    let mut rates = Vec::new();
    for mode in [SharedMode::Exact, SharedMode::Lease] {
        let r = run(mode);
        let rate = r.checks as f64 / r.elapsed.as_secs_f64();
        rates.push(rate);
        println!("\nmode = {mode}:");
        for (i, w) in r.windows.iter().enumerate() {
            let off = (*w as f64 - f64::from(LIMIT)) / f64::from(LIMIT) * 100.0;
            let within = *w <= u64::from(LIMIT + BURST) + bound;
            println!(
                "  window {i:>2}: {w:>5} admitted ({off:+5.1} % of the limit){}",
                if within { "" } else { "  ABOVE THE BOUND" }
            );
        }
        let worst = r
            .windows
            .iter()
            .map(|w| (*w as f64 - f64::from(LIMIT)).abs() / f64::from(LIMIT) * 100.0)
            .fold(0.0, f64::max);
        println!("  every window: worst {worst:.2} % from the limit");
        println!(
            "  {} checks in {:.1} s: {rate:.0} checks/s; {} admitted; {} Redis scripts: {:.1} admitted per Redis call; Redis {:.2} µs per script, busy {:.1} ms per second",
            r.checks,
            r.elapsed.as_secs_f64(),
            r.admitted,
            r.redis_calls,
            r.admitted as f64 / r.redis_calls.max(1) as f64,
            r.usec_per_call,
            r.redis_calls as f64 * r.usec_per_call / 1_000.0 / r.elapsed.as_secs_f64()
        );
    }
    println!(
        "\nlease / exact checks per second: {:.1}×",
        rates[1] / rates[0]
    );
}
