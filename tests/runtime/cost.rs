//! Costs (a batch takes its size from the budget) and charges after the
//! fact (the debt delays the key's next calls), through the public API.

use limiter::{Algorithm, LimitError, OpConfig};

use super::*;

fn per_key(text: &str) -> OpConfig {
    OpConfig::default().with_rate_per_key(text).unwrap()
}

/// `"100/min"` per key as a token bucket holding the whole minute.
fn bucket_of_100() -> OpConfig {
    OpConfig {
        burst: Some(100),
        ..per_key("100/min")
    }
}

async fn call(op: &Op, key: &str, cost: u32) -> Result<(), LimitError> {
    op.call()
        .key(&key)
        .cost(cost)
        .run(|| async { Ok::<_, LimitError>(()) })
        .await
}

/// `"100/min"` as a quota: every window algorithm, and a token bucket
/// whose burst is the whole minute.
fn quotas() -> Vec<(&'static str, OpConfig)> {
    let with = |algorithm, burst| OpConfig {
        algorithm: Some(algorithm),
        burst,
        ..per_key("100/min")
    };
    vec![
        ("token_bucket", with(Algorithm::TokenBucket, Some(100))),
        ("fixed_window", with(Algorithm::FixedWindow, None)),
        ("sliding_window", with(Algorithm::SlidingWindow, None)),
        ("sliding_exact", with(Algorithm::SlidingExact, None)),
    ]
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_20_under_100_a_minute_leaves_80() {
    for (name, cfg) in quotas() {
        let (_reg, op) = op_with("batch", cfg);
        call(&op, "alice", 20).await.unwrap();
        assert_eq!(op.available(Some(&"alice")), Some(80), "{name}");
        // 80 more single calls fit, the 81st does not.
        for i in 0..80 {
            call(&op, "alice", 1)
                .await
                .unwrap_or_else(|e| panic!("{name}: call {i}: {e}"));
        }
        assert!(
            matches!(
                call(&op, "alice", 1).await,
                Err(LimitError::RateLimited { .. })
            ),
            "{name}"
        );
        // Other keys have their own budget.
        call(&op, "bob", 100).await.unwrap();
    }
}

/// With the default burst (the rate per second: 2 for `"100/min"`), a
/// token bucket admits a batch larger than the burst from a full bucket
/// and makes the next calls wait it out: over the minute the batch and
/// the single calls add up to the rate.
#[tokio::test(start_paused = true)]
async fn a_token_bucket_admits_a_batch_past_its_burst_and_the_next_calls_pay() {
    let (_reg, op) = op_with("batch", per_key("100/min"));
    call(&op, "alice", 20).await.unwrap();
    let Err(LimitError::RateLimited { retry_after, .. }) = call(&op, "alice", 1).await else {
        panic!("the batch left nothing");
    };
    // 20 tokens of 0.6 s run 12 s ahead; a bucket of 2 lets the next call
    // in 1.2 s before that, and it takes 0.6 s itself.
    assert_eq!(retry_after, ms(11_400));
    let mut singles = 0;
    let mut t = Duration::ZERO;
    while t < Duration::from_secs(60) {
        singles += u32::from(call(&op, "alice", 1).await.is_ok());
        tokio::time::advance(ms(100)).await;
        t += ms(100);
    }
    assert_eq!(singles, 81, "11.4 s, then one per 0.6 s until 59.4 s");
}

#[tokio::test(start_paused = true)]
async fn a_batch_larger_than_what_is_left_waits_for_that_many() {
    let (_reg, op) = op_with("batch", bucket_of_100());
    call(&op, "alice", 90).await.unwrap();
    let Err(LimitError::RateLimited { retry_after, .. }) = call(&op, "alice", 20).await else {
        panic!("20 of 10 left admitted");
    };
    // 10 more tokens at 0.6 s each.
    assert_eq!(retry_after, ms(6000));
    assert_eq!(
        op.available(Some(&"alice")),
        Some(10),
        "a refusal takes nothing"
    );
    tokio::time::advance(retry_after).await;
    call(&op, "alice", 20).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cost_no_window_can_hold_is_refused_at_once_not_delayed() {
    let (_reg, op) = op_with("batch", per_key("100/min"));
    let err = call(&op, "alice", 101).await.unwrap_err();
    match &err {
        LimitError::CostExceedsLimit { op, cost, quota } => {
            assert_eq!((&**op, *cost, quota.limit), ("batch", 101, 100));
        }
        other => panic!("expected CostExceedsLimit, got {other:?}"),
    }
    assert_eq!(err.retry_after(), None, "waiting never helps");
    assert_eq!(
        err.to_string(),
        "op `batch`: a call of cost 101 can never be admitted: the limit holds 100 per window"
    );
    // Nothing was taken: the whole bucket (2, the default burst) is left.
    call(&op, "alice", 2).await.unwrap();
    // The op-wide rate is judged the same way.
    let (_reg, wide) = op_with("wide", OpConfig::default().with_rate("10/s").unwrap());
    let r = wide
        .call()
        .cost(11u64)
        .run(|| async { Ok::<_, LimitError>(()) })
        .await;
    assert!(matches!(
        r,
        Err(LimitError::CostExceedsLimit { cost: 11, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_charge_after_the_call_delays_the_keys_next_call_by_the_debt() {
    let (_reg, op) = op_with("llm", per_key("100/min"));
    let tokens = op
        .call()
        .key(&"alice")
        .charge(|tokens: &u32| *tokens)
        .run(|| async { Ok::<u32, LimitError>(500) })
        .await
        .unwrap();
    assert_eq!(tokens, 500);
    // The call took 1 of the bucket's 2 (the default burst), the charge
    // 500 more: the next call waits the debt's time, 500 tokens of 0.6 s.
    let debt = ms(500 * 600);
    let Err(LimitError::RateLimited { retry_after, .. }) = call(&op, "alice", 1).await else {
        panic!("a key in debt admitted");
    };
    assert_eq!(retry_after, debt);
    tokio::time::advance(debt - ms(1)).await;
    assert!(call(&op, "alice", 1).await.is_err(), "still in debt");
    tokio::time::advance(ms(1)).await;
    call(&op, "alice", 1).await.unwrap();
    // Bob pays nothing of it.
    call(&op, "bob", 100).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn errors_are_not_charged_and_a_charge_may_come_from_outside_a_call() {
    let (_reg, op) = op_with("llm", bucket_of_100());
    let r = op
        .call()
        .key(&"alice")
        .charge(|tokens: &u32| *tokens)
        .run(|| async { Err::<u32, LimitError>(LimitError::Timeout { op: "x".into() }) })
        .await;
    assert!(r.is_err());
    assert_eq!(
        op.available(Some(&"alice")),
        Some(99),
        "only the call's cost"
    );
    // A charge outside a call (a stream's total known at its end).
    op.charge(Some(&"alice"), 50u32);
    assert_eq!(op.available(Some(&"alice")), Some(49));
}

#[tokio::test(start_paused = true)]
async fn a_permit_takes_its_cost_too() {
    let cfg = OpConfig {
        burst: Some(100),
        ..OpConfig::default().with_rate("100/min").unwrap()
    };
    let (_reg, op) = op_with("batch", cfg);
    let permit = op.call().cost(30u8).acquire().await.unwrap();
    drop(permit);
    assert_eq!(op.available(None), Some(70));
}

#[tokio::test(start_paused = true)]
async fn a_key_refusal_gives_back_the_op_wide_take() {
    let cfg = OpConfig {
        algorithm: Some(Algorithm::FixedWindow),
        ..OpConfig::default()
            .with_rate("100/min")
            .unwrap()
            .with_rate_per_key("10/min")
            .unwrap()
    };
    let (_reg, op) = op_with("shared", cfg);
    call(&op, "alice", 10).await.unwrap();
    assert_eq!(op.available(None), Some(90));
    // Alice's own budget refuses: the others' op-wide budget stays whole.
    assert!(call(&op, "alice", 5).await.is_err());
    assert_eq!(op.available(None), Some(90));
}
