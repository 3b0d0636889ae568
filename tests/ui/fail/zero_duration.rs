use limiter::limit_blocking;

#[limit_blocking(queue_timeout = "0s")]
async fn f() {}

fn main() {}
