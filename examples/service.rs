//! A simulated service under load, protected by `limiter`: through the
//! attributes (`#[limit_blocking]` on the file read, the hash and the
//! report) and through the runtime API (the database and the upstream API).
//!
//! Five operations do realistic fake work — a database with latency and
//! per-user limits, a flaky external API behind a breaker with retries and a
//! cache fallback, a blocking file read offloaded to the blocking pool, a
//! CPU-heavy hash on the CPU pool, and a slow report that moves to the
//! background when it runs out of time. Simulated users hammer them for a
//! few seconds; a table per second shows what each limit did.
//!
//! ```text
//! cargo run --release --example service -- [--seconds 8] [--users 100]
//! ```
//!
//! The environment variables of the README (`LIMITS_*`, `LIMITER_OP_*`) and
//! `LIMITER_CONFIG=limiter.toml` are applied at start, so every limit can be
//! tuned without recompiling.

use limiter::Load;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use limiter::{
    config, limit_blocking, registry, BreakerConfig, LimitError, OpConfig, OpKind, RetryConfig,
};

#[derive(Debug)]
enum AppError {
    Limit(LimitError),
    Upstream(#[allow(dead_code)] &'static str),
}

impl From<LimitError> for AppError {
    fn from(e: LimitError) -> Self {
        AppError::Limit(e)
    }
}

struct Args {
    seconds: u64,
    users: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 8,
        users: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: `{value}` is not a whole number"))?;
        match flag.as_str() {
            "--seconds" => a.seconds = n.max(1),
            "--users" => a.users = n.max(1),
            other => {
                return Err(format!(
                    "unknown flag {other}; expected --seconds N, --users N"
                ))
            }
        }
    }
    Ok(a)
}

fn declare() -> Result<(), Box<dyn std::error::Error>> {
    let reg = registry();
    reg.declare(
        "db.get_user",
        OpConfig {
            kind: Some(OpKind::Database),
            timeout: Some(Duration::from_millis(250)),
            max_concurrent: Some(16),
            max_concurrent_per_key: Some(2),
            queue: Some(32),
            queue_per_key: Some(2),
            queue_timeout: Some(Duration::from_millis(200)),
            ..OpConfig::default()
        }
        .with_rate_per_key("10/s")?,
    )?;
    reg.declare(
        "api.weather",
        OpConfig {
            kind: Some(OpKind::ExternalApi),
            timeout: Some(Duration::from_millis(150)),
            retry: RetryConfig {
                retries: Some(1),
                base: Some(Duration::from_millis(20)),
                ..RetryConfig::default()
            },
            breaker: BreakerConfig {
                min_calls: Some(10),
                window: Some(20),
                recovery: Some(Duration::from_secs(1)),
                ..BreakerConfig::default()
            },
            ..OpConfig::default()
        },
    )?;
    Ok(())
}

/// A database whose latency grows with load.
async fn get_user(user: u64, in_db: &AtomicU64) -> Result<String, AppError> {
    let load = in_db.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(5 + 3 * load)).await;
    in_db.fetch_sub(1, Ordering::Relaxed);
    Ok(format!("user-{user}"))
}

/// An upstream that fails for 1.5 s out of every 4 s and is sometimes slow.
async fn weather(started: Instant, n: u64) -> Result<u32, AppError> {
    let phase = started.elapsed().as_millis() % 4000;
    if phase > 2500 {
        return Err(AppError::Upstream("weather API returned 503"));
    }
    let slow = n.is_multiple_of(10);
    tokio::time::sleep(Duration::from_millis(if slow { 300 } else { 20 })).await;
    Ok(20 + (n % 7) as u32)
}

/// Blocking file I/O, offloaded to the blocking pool by the attribute.
#[limit_blocking(
    op = "file.read_template",
    kind = file_io,
    max_concurrent = 4,
    queue = 8,
    overload = "drop_oldest"
)]
fn read_template() -> Result<usize, AppError> {
    // Blocking file I/O: a real read of this example's own source.
    let text = std::fs::read_to_string(file!()).or_else(|_| std::fs::read_to_string("Cargo.toml"));
    std::thread::sleep(Duration::from_millis(15));
    text.map(|t| t.len())
        .map_err(|_| AppError::Upstream("template missing"))
}

/// CPU-heavy work, run on the bounded CPU pool.
#[limit_blocking(op = "cpu.hash_password", kind = cpu_intensive, queue = 16)]
fn hash_password(seed: u64) -> Result<u64, AppError> {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for _ in 0..2_000_000 {
        h = h.rotate_left(5).wrapping_mul(0x100_0000_01B3) ^ 0xCBF2_9CE4_8422_2325;
    }
    Ok(h)
}

/// A slow report: past 100 ms it goes on as a tracked background task.
#[limit_blocking(
    op = "report.build",
    timeout = "100ms",
    max_concurrent = 4,
    queue = 0,
    strategy = "background"
)]
async fn build_report(n: u64) -> Result<u64, AppError> {
    tokio::time::sleep(Duration::from_millis(50 + (n % 5) * 40)).await;
    Ok(n)
}

/// What callers saw, by error kind.
type Seen = Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>;

fn note<T>(seen: &Seen, r: Result<T, AppError>) {
    let kind = match r {
        Ok(_) => return,
        Err(AppError::Limit(e)) => e.code(),
        Err(AppError::Upstream(_)) => "upstream error",
    };
    *seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(kind)
        .or_default() += 1;
}

async fn request(user: u64, n: u64, started: Instant, in_db: Arc<AtomicU64>, seen: Seen) {
    let reg = registry();
    let r = reg
        .op("db.get_user")
        .run(Some(&user), || {
            let in_db = Arc::clone(&in_db);
            async move { get_user(user, &in_db).await }
        })
        .await;
    note(&seen, r);
    let r = reg
        .op("api.weather")
        .call()
        .key(&user)
        .cache_fallback()
        .run(|| weather(started, n))
        .await;
    note(&seen, r);
    match n % 4 {
        0 => note(&seen, read_template().await),
        1 => note(&seen, hash_password(n).await),
        2 if n % 16 == 2 => note(&seen, build_report(n).await),
        _ => {}
    }
}

fn print_table(elapsed: Duration) {
    let snap = registry().snapshot();
    println!("\n── t = {:>4.1}s ──────────────────────────────────────────────────────────────────────────", elapsed.as_secs_f64());
    println!(
        "{:<20} {:>6} {:>6} {:>5} {:>5} {:>6} {:>6} {:>6} {:>9} {:>5} {:>6} {:>8} {:>9}",
        "op",
        "calls",
        "ok",
        "err",
        "t/o",
        "rate",
        "queue",
        "open",
        "breaker",
        "bg",
        "cache",
        "p95 ms",
        "in flight"
    );
    for op in &snap.ops {
        let c = &op.counters;
        println!(
            "{:<20} {:>6} {:>6} {:>5} {:>5} {:>6} {:>6} {:>6} {:>9} {:>5} {:>6} {:>8.1} {:>9}",
            &*op.name,
            c.calls,
            c.succeeded,
            c.failed + c.panics,
            c.timeouts,
            c.rejected_rate_limited,
            c.rejected_queue_full_key + c.rejected_queue_full_global + c.rejected_queue_timeout,
            c.rejected_circuit_open,
            format!("{:?}", op.breaker.state).to_lowercase(),
            c.moved_to_background,
            c.cache_fallbacks,
            op.latency.p95_ms,
            op.bulkhead.in_flight,
        );
    }
    let bg = &snap.background;
    println!(
        "background tasks: {} running, {} spawned",
        bg.running, bg.spawned
    );
    let _ = std::io::stdout().flush();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    declare()?;
    config::load_env()?;
    println!(
        "limiter example service: {} users for {} s (set LIMITS_* / LIMITER_OP_* to tune)",
        args.users, args.seconds
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let in_db = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let seen: Seen = Arc::default();
    let mut users = Vec::new();
    for user in 0..args.users {
        let (in_db, counter, seen) = (Arc::clone(&in_db), Arc::clone(&counter), Arc::clone(&seen));
        users.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                request(user % 25, n, started, Arc::clone(&in_db), Arc::clone(&seen)).await;
                tokio::time::sleep(Duration::from_millis(5 + user % 10)).await;
            }
        }));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while Instant::now() < deadline {
        tick.tick().await;
        print_table(started.elapsed());
    }
    for u in users {
        u.await?;
    }
    let report = limiter::shutdown(Duration::from_secs(2)).await;
    print_table(started.elapsed());
    println!(
        "\nshutdown: {} background tasks drained, {} cancelled; {} requests made",
        report.drained,
        report.cancelled,
        counter.load(Ordering::Relaxed)
    );
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    let seen: Vec<String> = seen.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "errors callers saw: {}",
        if seen.is_empty() {
            "none".into()
        } else {
            seen.join(", ")
        }
    );
    for op in registry().ops() {
        let Load {
            in_flight,
            queued,
            blocked,
        } = op.load();
        if in_flight + queued + blocked != 0 {
            return Err(format!(
                "{} still holds {in_flight}/{queued}/{blocked} places",
                op.name()
            )
            .into());
        }
    }
    println!("every place released: in flight, queued and blocked are 0 for every op");
    Ok(())
}
