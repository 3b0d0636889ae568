use limiter::limit_blocking;

#[limit_blocking(rate = "0/s")]
async fn f() {}

fn main() {}
