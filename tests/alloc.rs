//! Heap use of the hot path, counted by dhat's global allocator: an
//! admitted call allocates nothing, and an idle per-key entry costs at most
//! 64 bytes (one token bucket window per key: the key's cell in its table slot).
//!
//! One test in its own binary, so that no other test allocates meanwhile
//! (dhat counts every thread).

use std::hint::black_box;
use std::time::Duration;

use limiter::{BreakerConfig, LimitError, OpConfig, Registry};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

async fn work(x: u64) -> Result<u64, LimitError> {
    Ok(black_box(x))
}

/// Heap blocks allocated while `calls` calls of `f` run, after a warm-up
/// (first calls make the thread's metric slot and the keys' states).
async fn blocks_during<F, Fut>(calls: u64, mut f: F) -> u64
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..1_000 {
        f(i).await;
    }
    let before = dhat::HeapStats::get().total_blocks;
    for i in 0..calls {
        f(i).await;
    }
    dhat::HeapStats::get().total_blocks - before
}

#[test]
fn the_hot_path_does_not_allocate_and_idle_keys_are_small() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let reg = Registry::new();
        let stack = |timeout| {
            OpConfig {
                timeout,
                max_concurrent: Some(64),
                breaker: BreakerConfig {
                    enabled: Some(true),
                    ..BreakerConfig::default()
                },
                ..OpConfig::default()
            }
            .with_rate("1000000/s")
            .unwrap()
        };
        reg.configure("stack", stack(None)).unwrap();
        reg.configure("timed", stack(Some(Duration::from_secs(10))))
            .unwrap();
        reg.configure(
            "keyed",
            OpConfig {
                max_keys: Some(200_000),
                max_concurrent_per_key: Some(u32::MAX),
                ..OpConfig::default()
            }
            .with_rate_per_key("1000000/s")
            .unwrap(),
        )
        .unwrap();
        let (op, timed, keyed) = (&reg.op("stack"), &reg.op("timed"), &reg.op("keyed"));

        let n = blocks_during(10_000, |i| async move {
            assert_eq!(op.run(None, || work(i)).await.unwrap(), i);
        })
        .await;
        assert_eq!(n, 0, "rate + breaker + bulkhead + metrics: {n} allocations");

        let n = blocks_during(10_000, |i| async move {
            assert_eq!(timed.run(None, || work(i)).await.unwrap(), i);
        })
        .await;
        assert_eq!(n, 0, "with a timeout: {n} allocations");

        let n = blocks_during(10_000, |i| async move {
            let out = timed
                .run(None, || async move {
                    tokio::task::yield_now().await; // pending once: arms the timer
                    Ok::<_, LimitError>(i)
                })
                .await;
            assert_eq!(out.unwrap(), i);
        })
        .await;
        assert_eq!(n, 0, "a body that waits, under a timeout: {n} allocations");

        let n = blocks_during(10_000, |_| async move {
            drop(op.acquire(None).await.unwrap());
        })
        .await;
        assert_eq!(n, 0, "acquire + drop: {n} allocations");

        let n = blocks_during(10_000, |i| async move {
            keyed.check_key(&(i % 100)).unwrap();
        })
        .await;
        assert_eq!(n, 0, "check_key, known keys: {n} allocations");

        let n = blocks_during(10_000, |i| async move {
            assert_eq!(keyed.run(None, || work(i)).await.unwrap(), i);
        })
        .await;
        assert_eq!(n, 0, "keyed op without a key: {n} allocations");

        let n = blocks_during(10_000, |i| async move {
            let key = i % 100;
            assert_eq!(keyed.run(Some(&key), || work(i)).await.unwrap(), i);
        })
        .await;
        assert_eq!(n, 0, "per-key rate, known keys: {n} allocations");

        // Bytes held per idle key: 100 000 keys checked once each.
        let before = dhat::HeapStats::get().curr_bytes;
        for key in 0..100_000u64 {
            keyed.check_key(&(1_000_000 + key)).unwrap();
        }
        let bytes = dhat::HeapStats::get().curr_bytes - before;
        let per_key = bytes as f64 / 100_000.0;
        println!("idle per-key state: {per_key:.1} bytes per key ({bytes} bytes for 100 000 keys)");
        assert!(per_key <= 64.0, "{per_key:.1} bytes per idle key");
    });
}
