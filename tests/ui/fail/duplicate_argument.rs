use limiter::limit_blocking;

#[limit_blocking(timeout = "1s", timeout = "2s")]
async fn f() {}

fn main() {}
