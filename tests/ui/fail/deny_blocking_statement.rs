use limiter::limit_blocking;

#[limit_blocking(deny_blocking)]
async fn f(wait: std::time::Duration) {
    use std::thread::sleep;
    // Bound for later: a future, not a blocking call.
    let pending = tokio::time::sleep(wait);
    // In statement position: its value is thrown away, so it blocks.
    sleep(wait);
    // From `std`: blocking wherever it is.
    let _done = std::thread::sleep(wait);
    pending.await;
}

fn main() {}
