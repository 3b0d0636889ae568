use limiter::limit_blocking;

#[limit_blocking(rate = "100")]
async fn f() {}

fn main() {}
