use limiter::limit_blocking;

#[limit_blocking(rate = "10/s", algorithm = "leaky")]
async fn f() {}

fn main() {}
