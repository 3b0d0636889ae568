//! `cost = expr` over the parameters, in every function shape: evaluated
//! before the body takes them.
use limiter::{limit_blocking, LimitError};

#[limit_blocking(op = "ui_cost_async", rate = "100/min", burst = 100, cost = items.len())]
async fn embed(items: Vec<String>) -> usize {
    items.len()
}

#[limit_blocking(op = "ui_cost_sync", rate = "100/min", burst = 100, cost = rows * 2)]
fn copy(rows: u32) -> Result<u32, LimitError> {
    Ok(rows)
}

#[limit_blocking(op = "ui_cost_key", rate = "10/s", key = user, cost = 3u8, retries = 1)]
async fn keyed(user: String, items: Vec<u8>) -> Result<usize, LimitError> {
    Ok(user.len() + items.len())
}

#[tokio::main]
async fn main() {
    assert_eq!(embed(vec!["a".into(); 20]).await.unwrap(), 20);
    assert_eq!(copy(10).await.unwrap(), 10);
    assert_eq!(keyed("al".into(), vec![1]).await.unwrap(), 3);
    let op = limiter::registry().op("ui_cost_async");
    assert_eq!(op.available(None), Some(80));
    let op = limiter::registry().op("ui_cost_sync");
    assert_eq!(op.available(None), Some(80));
    let op = limiter::registry().op("ui_cost_key");
    assert_eq!(op.available(Some(&"al".to_string())), Some(7));
}
