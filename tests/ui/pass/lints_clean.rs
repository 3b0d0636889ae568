#![deny(warnings, unused_qualifications, clippy::all)]

use limiter::limit_blocking;

/// Documented, and still documented after expansion.
#[limit_blocking(op = "clean", timeout = "1s", rate = "10/s", key = id, retries = 1)]
pub async fn clean(id: u64) -> u64 {
    id * 2
}

#[limit_blocking(op = "sleepy", allow_blocking)]
async fn sleepy() {
    std::thread::sleep(std::time::Duration::from_millis(1));
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(clean(2).await, Ok(4));
        assert_eq!(sleepy().await, Ok(()));
    });
}
