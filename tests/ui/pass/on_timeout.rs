//! `on_timeout = path`: the hook gets what the body registered, while the
//! place is held.
use std::sync::atomic::{AtomicU32, Ordering};

use limiter::limit_blocking;

static CANCELLED: AtomicU32 = AtomicU32::new(0);

/// What a database client's cancel token would be.
struct CancelToken(u32);

async fn cancel_query(token: CancelToken) {
    CANCELLED.store(token.0, Ordering::SeqCst);
}

#[limit_blocking(op = "ui_on_timeout", timeout = "20ms", strategy = "drain", on_timeout = cancel_query)]
async fn slow_query(id: u32) -> u32 {
    limiter::on_timeout::register(CancelToken(id));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    id
}

#[tokio::main]
async fn main() {
    assert!(matches!(
        slow_query(9).await,
        Err(limiter::LimitError::Timeout { .. })
    ));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(CANCELLED.load(Ordering::SeqCst), 9);
}
