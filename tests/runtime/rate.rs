use limiter::{Algorithm, LimitError, OpConfig};

use super::*;

fn rated(text: &str, burst: Option<u32>, algorithm: Algorithm) -> OpConfig {
    OpConfig {
        burst,
        algorithm: Some(algorithm),
        ..OpConfig::default()
    }
    .with_rate(text)
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn gcra_admits_exactly_burst_plus_rate_times_t() {
    let (_reg, op) = op_with("gcra", rated("10/s", Some(5), Algorithm::TokenBucket));
    assert_eq!(admitted_now(&op, 100).await, 5, "the burst, all at once");
    // Then exactly one per 100 ms over 2 s, however often we knock.
    let mut total = 5;
    for _ in 0..200 {
        tokio::time::advance(ms(10)).await;
        total += admitted_now(&op, 3).await;
    }
    assert_eq!(total, 5 + 10 * 2);
}

#[tokio::test(start_paused = true)]
async fn gcra_reports_retry_after() {
    let (_reg, op) = op_with("gcra", rated("2/s", Some(1), Algorithm::TokenBucket));
    let _p = take(&op).await;
    match op.acquire(None).await {
        Err(LimitError::RateLimited {
            retry_after,
            op: name,
            quota,
        }) => {
            assert_eq!(retry_after, ms(500));
            assert_eq!(&*name, "gcra");
            assert_eq!(
                quota,
                limiter::Quota::rate(2, limiter::spec::parse_duration("1s").unwrap(), false)
            );
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    tokio::time::advance(ms(500)).await;
    assert_eq!(admitted_now(&op, 2).await, 1);
}

#[tokio::test(start_paused = true)]
async fn fixed_window_counts_per_window() {
    let (_reg, op) = op_with("fixed", rated("5/s", None, Algorithm::FixedWindow));
    assert_eq!(admitted_now(&op, 10).await, 5);
    tokio::time::advance(ms(999)).await;
    assert_eq!(admitted_now(&op, 10).await, 0);
    tokio::time::advance(ms(1)).await;
    assert_eq!(admitted_now(&op, 10).await, 5);
}

#[tokio::test(start_paused = true)]
async fn sliding_window_weights_the_previous_window() {
    let (_reg, op) = op_with("sliding", rated("10/s", None, Algorithm::SlidingWindow));
    assert_eq!(admitted_now(&op, 20).await, 10);
    // Half-way through the next window, half of the previous still counts.
    tokio::time::advance(ms(1500)).await;
    assert_eq!(admitted_now(&op, 20).await, 5);
    tokio::time::advance(secs(2)).await;
    assert_eq!(admitted_now(&op, 20).await, 10);
}

#[tokio::test(start_paused = true)]
async fn several_windows_at_once() {
    let (_reg, op) = op_with(
        "multi",
        rated("5/s, 8/min", Some(5), Algorithm::TokenBucket),
    );
    assert_eq!(admitted_now(&op, 10).await, 5);
    tokio::time::advance(secs(1)).await;
    assert_eq!(
        admitted_now(&op, 10).await,
        3,
        "the minute window caps at 8"
    );
}

#[tokio::test(start_paused = true)]
async fn per_key_rates_are_isolated() {
    let cfg = OpConfig {
        burst: Some(2),
        ..OpConfig::default()
    }
    .with_rate_per_key("2/s")
    .unwrap();
    let (_reg, op) = op_with("keyed", cfg);
    let (alice, bob) = ("alice".to_string(), "bob".to_string());
    assert!(op.acquire(Some(&alice)).await.is_ok());
    assert!(op.acquire(Some(&alice)).await.is_ok());
    assert!(matches!(
        op.acquire(Some(&alice)).await,
        Err(LimitError::RateLimited { .. })
    ));
    assert!(
        op.acquire(Some(&bob)).await.is_ok(),
        "bob has his own bucket"
    );
    assert!(
        op.acquire(None).await.is_ok(),
        "no key: per-key limits do not apply"
    );
    assert!(op.reset_key(&alice));
    assert!(
        op.acquire(Some(&alice)).await.is_ok(),
        "reset gives alice a full bucket"
    );
}
