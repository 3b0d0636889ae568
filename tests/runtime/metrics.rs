use limiter::Load;
use limiter::{LimitError, OpConfig};

use super::*;

#[tokio::test(start_paused = true)]
async fn latency_and_counters_appear_in_the_snapshot() {
    let (reg, op) = op_with("db", OpConfig::default());
    for i in 1..=100u64 {
        op.run(None, || async move {
            tokio::time::sleep(ms(i)).await;
            Ok::<_, LimitError>(())
        })
        .await
        .unwrap();
    }
    let _: Result<(), LimitError> = op
        .run(None, || async {
            Err(LimitError::Timeout { op: "x".into() })
        })
        .await;
    let snap = reg.snapshot();
    let db = snap.ops.iter().find(|o| &*o.name == "db").unwrap();
    assert_eq!(db.counters.calls, 101);
    assert_eq!(db.counters.admitted, 101);
    assert_eq!(db.counters.succeeded, 100);
    assert_eq!(db.counters.failed, 1);
    let l = &db.latency;
    assert_eq!(l.count, 101);
    assert!((l.p50_ms / 50.0 - 1.0).abs() < 0.04, "p50 {}", l.p50_ms);
    assert!((l.p95_ms / 95.0 - 1.0).abs() < 0.04, "p95 {}", l.p95_ms);
    assert!((l.p99_ms / 99.0 - 1.0).abs() < 0.04, "p99 {}", l.p99_ms);
    assert_eq!(l.max_ms, 100.0);
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["ops"][0]["name"], "db");
    assert_eq!(json["ops"][0]["counters"]["succeeded"], 100);
    assert_eq!(json["ops"][0]["breaker"]["state"], "disabled");
    assert_eq!(json["ops"][0]["config"]["queue_timeout"], "30s");
}

#[tokio::test]
async fn a_blocking_poll_is_counted_as_slow() {
    let cfg = OpConfig {
        slow_poll: Some(ms(2)),
        ..OpConfig::default()
    };
    let (_reg, op) = op_with("blocky", cfg);
    op.run(None, || async {
        // Blocks the executor thread: exactly what slow-poll detection is for.
        std::thread::sleep(ms(5));
        Ok::<_, LimitError>(())
    })
    .await
    .unwrap();
    op.run(None, || async { Ok::<_, LimitError>(()) })
        .await
        .unwrap();
    let c = op.snapshot().counters;
    assert_eq!(c.slow_polls, 1);
    assert!(c.max_poll_ns >= 5_000_000);
}

#[tokio::test(start_paused = true)]
async fn disabled_limits_keep_metrics_only() {
    let cfg = OpConfig {
        max_concurrent: Some(1),
        queue: Some(0),
        ..OpConfig::default()
    };
    let (reg, op) = op_with("off", cfg);
    reg.set_enabled(false);
    let _a = take(&op).await;
    let _b = take(&op).await;
    assert_eq!(
        op.load(),
        Load {
            in_flight: 0,
            queued: 0,
            blocked: 0
        },
        "no places are counted while disabled"
    );
    drop((_a, _b));
    assert_eq!(op.snapshot().counters.succeeded, 2);
    reg.set_enabled(true);
    let _a = take(&op).await;
    assert!(matches!(
        op.acquire(None).await,
        Err(LimitError::QueueFull { .. })
    ));
}
