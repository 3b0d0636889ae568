use limiter::{LimitError, OpConfig};

use super::*;

#[tokio::test(start_paused = true)]
async fn key_table_stays_under_its_cap_with_100_000_keys() {
    let cfg = OpConfig {
        max_keys: Some(1000),
        burst: Some(1),
        ..OpConfig::default()
    }
    .with_rate_per_key("1/s")
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
    assert!(snap.bulkhead.keys <= 1000);
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
