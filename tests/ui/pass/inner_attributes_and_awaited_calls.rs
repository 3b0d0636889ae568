#![deny(deprecated)]
use limiter::limit_blocking;

#[inline]
#[must_use = "the result says whether the call was limited"]
#[limit_blocking(op = "awaited")]
async fn awaited() -> u8 {
    #![allow(clippy::needless_return)]
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    return 3;
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(awaited()), Ok(3));
}
