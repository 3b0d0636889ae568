use limiter::{LimitError, OpConfig};

use super::*;

#[tokio::test(start_paused = true)]
async fn key_table_stays_under_its_cap_with_100_000_keys() {
    // Each key keeps one of its two calls: it owes, but would be admitted,
    // so it may be forgotten to make room. (Before issue 15 this used a
    // burst of 1, and keys the limit refused were evicted too.)
    let cfg = OpConfig {
        max_keys: Some(1000),
        burst: Some(2),
        ..OpConfig::default()
    }
    .with_rate_per_key("2/s")
    .unwrap();
    let (_reg, op) = op_with("flood", cfg);
    let mut admitted = 0;
    for user in 0..100_000u64 {
        match op.acquire(Some(&user)).await {
            Ok(_) => admitted += 1,
            Err(e) => panic!("key {user}: {e}"),
        }
        if user % 10_000 == 0 {
            let snap = op.snapshot();
            assert!(snap.rate_per_key.unwrap().keys.unwrap() <= 1000);
            assert!(snap.bulkhead.keys <= 1000);
        }
    }
    assert_eq!(admitted, 100_000, "every new key gets its own bucket");
    let snap = op.snapshot();
    let rate = snap.rate_per_key.unwrap();
    assert!(
        rate.keys.unwrap() <= 1000,
        "{} keys tracked",
        rate.keys.unwrap()
    );
    assert!(rate.keys_evicted.unwrap() >= 99_000);
    assert_eq!(rate.keys_forgotten, rate.keys_evicted, "each owed a call");
    assert!(snap.bulkhead.keys <= 1000);
}

/// The victim's state through a flood: refused before, refused after.
fn assert_refused(op: &Op, victim: &str, when: &str) {
    match op.check_key(&victim) {
        Err(LimitError::RateLimited { .. }) => {}
        other => panic!("{when}: the refused key got {other:?}"),
    }
}

/// A key the limit refuses stays refused through a flood of a million
/// other keys (an attacker varying its key to clear its own limit), while
/// the table stays within `max_keys`: keys that owe part of their budget
/// are forgotten to make room (and counted), a refused one never is.
#[tokio::test(start_paused = true)]
async fn a_refused_key_stays_refused_through_a_million_key_flood() {
    // A token bucket (one word per key) through a million keys; the exact
    // window (boxed cells, the rules' default) through 200 000.
    for (rate, burst, flood) in [("10/h", Some(10), 1_000_000u64), ("10/h", None, 200_000)] {
        let cfg = OpConfig {
            max_keys: Some(1000),
            burst,
            algorithm: burst.map_or(Some(limiter::Algorithm::SlidingExact), |_| None),
            ..OpConfig::default()
        }
        .with_rate_per_key(rate)
        .unwrap();
        let (_reg, op) = op_with("flooded", cfg);
        let victim = "victim";
        for _ in 0..10 {
            op.check_key(&victim).unwrap();
        }
        assert_refused(&op, victim, "before");
        let mut admitted = 0u64;
        for k in 0..flood {
            if op.check_key(&k).is_ok() {
                admitted += 1;
            }
            if k % 100_000 == 0 {
                assert_refused(&op, victim, "during");
                let keys = op.snapshot().rate_per_key.unwrap().keys.unwrap();
                assert!(keys <= 1000, "{keys} keys tracked");
            }
        }
        assert_refused(&op, victim, "after");
        let snap = op.snapshot().rate_per_key.unwrap();
        assert!(snap.keys.unwrap() <= 1000);
        assert_eq!(admitted, flood, "{rate}: flood keys owe, but are admitted");
        assert!(
            snap.keys_forgotten.unwrap() >= flood - 2_000,
            "{rate}: forgotten {:?}",
            snap.keys_forgotten
        );
    }
}

/// When every tracked key is refused, a new key cannot take a place: it is
/// refused as `Overloaded` (the table is full), nothing is forgotten.
#[tokio::test(start_paused = true)]
async fn a_table_of_refused_keys_forgets_none() {
    let cfg = OpConfig {
        max_keys: Some(64),
        burst: Some(1),
        ..OpConfig::default()
    }
    .with_rate_per_key("1/h")
    .unwrap();
    let (_reg, op) = op_with("refusing", cfg);
    let mut overloaded = 0;
    for k in 0..10_000u64 {
        match op.check_key(&k) {
            Ok(()) => {}
            Err(LimitError::Overloaded { .. }) => overloaded += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let snap = op.snapshot().rate_per_key.unwrap();
    assert!(snap.keys.unwrap() <= 64);
    assert!(overloaded >= 10_000 - 64);
    assert_eq!(snap.keys_forgotten, Some(0));
    let again = (0..10_000u64).filter(|k| op.check_key(k).is_ok()).count();
    assert_eq!(again, 0, "no key was let through again");
}

#[tokio::test(start_paused = true)]
async fn a_table_full_of_busy_keys_sheds_new_keys() {
    let cfg = OpConfig {
        max_keys: Some(16), // one per shard
        ..OpConfig::default()
    };
    let (_reg, op) = op_with("busy", cfg);
    // Hold a place for many keys: shards fill with entries that are in use.
    let mut held = Vec::new();
    let mut shed = 0;
    for user in 0..200u32 {
        match op.acquire(Some(&user)).await {
            Ok(p) => held.push(p),
            Err(LimitError::Overloaded { .. }) => shed += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(held.len() <= 16);
    assert_eq!(held.len() + shed, 200);
    assert_eq!(op.snapshot().counters.rejected_overloaded, shed as u64);
    drop(held);
    assert!(
        op.acquire(Some(&1000u32)).await.is_ok(),
        "room again once idle"
    );
}
