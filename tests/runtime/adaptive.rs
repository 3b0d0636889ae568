use limiter::Load;
use limiter::{LimitError, OpConfig};

use super::*;

async fn call(op: &Op, latency: Duration) {
    op.run(None, move || async move {
        tokio::time::sleep(latency).await;
        Ok::<_, LimitError>(())
    })
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn slow_calls_lower_the_bound_and_good_calls_raise_it() {
    let cfg = OpConfig {
        max_concurrent: Some(10),
        queue: Some(100),
        adaptive: Some(true),
        adaptive_min: Some(2),
        adaptive_target: Some(ms(50)),
        ..OpConfig::default()
    };
    let (_reg, op) = op_with("aimd", cfg);
    assert_eq!(op.snapshot().adaptive_limit, Some(10));
    for _ in 0..30 {
        call(&op, ms(80)).await;
    }
    assert_eq!(op.snapshot().adaptive_limit, Some(2), "down to the minimum");
    // The bulkhead obeys it: a third concurrent call waits.
    let a = take(&op).await;
    let b = take(&op).await;
    let c = tokio::spawn({
        let op = op.clone();
        async move { op.acquire(None).await.map(drop) }
    });
    settle().await;
    assert_eq!(
        op.load(),
        Load {
            in_flight: 2,
            queued: 1,
            blocked: 0
        }
    );
    drop((a, b));
    c.await.unwrap().unwrap();
    // Good calls grow it back by one per round of `limit` calls.
    for _ in 0..200 {
        call(&op, ms(5)).await;
    }
    assert_eq!(
        op.snapshot().adaptive_limit,
        Some(10),
        "back up to max_concurrent"
    );
}

#[test]
fn adaptive_min_above_max_is_rejected() {
    let reg = limiter::Registry::new();
    let err = reg
        .configure(
            "aimd",
            OpConfig {
                max_concurrent: Some(4),
                adaptive: Some(true),
                adaptive_min: Some(8),
                ..OpConfig::default()
            },
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "op `aimd`: adaptive_min = 8: must not exceed max_concurrent (4)"
    );
}
