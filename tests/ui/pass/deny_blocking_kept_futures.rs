//! Under `deny_blocking`, a call whose future is kept for later (bound,
//! passed on, returned) is not a blocking call, even under a name that
//! `std` uses for one (`sleep`).

use std::time::Duration;

use limiter::limit_blocking;
use tokio::sync::oneshot;

/// The timer is bound, pinned and raced: nothing blocks.
#[limit_blocking(op = "kept.select", deny_blocking)]
async fn first(wait: Duration, rx: oneshot::Receiver<u8>) -> Option<u8> {
    use tokio::time::sleep;
    let d = sleep(wait);
    tokio::pin!(d);
    tokio::select! {
        _ = &mut d => None,
        v = rx => v.ok(),
    }
}

/// The timer is passed on to `timeout`.
#[limit_blocking(op = "kept.passed", deny_blocking)]
async fn passed_on(wait: Duration) -> bool {
    use tokio::time::{sleep, timeout};
    timeout(wait, sleep(wait * 20)).await.is_err()
}

/// The timer is returned, for the caller to await.
#[limit_blocking(op = "kept.returned", deny_blocking)]
async fn returned(wait: Duration) -> tokio::time::Sleep {
    use tokio::time::sleep;
    sleep(wait)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (tx, rx) = oneshot::channel();
        tx.send(7).unwrap();
        assert_eq!(first(Duration::from_secs(5), rx).await, Ok(Some(7)));
        let (_tx, rx) = oneshot::channel::<u8>();
        assert_eq!(first(Duration::from_millis(1), rx).await, Ok(None));
        assert_eq!(passed_on(Duration::from_millis(1)).await, Ok(true));
        returned(Duration::from_millis(1)).await.unwrap().await;
    });
}
