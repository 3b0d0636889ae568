use limiter::limit_blocking;

#[limit_blocking(timeout = "10x")]
async fn f() {}

fn main() {}
