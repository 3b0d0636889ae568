use limiter::limit_blocking;

#[limit_blocking(timeout = "1s", strategy = "retry_later")]
async fn f() {}

fn main() {}
