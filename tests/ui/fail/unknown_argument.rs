use limiter::limit_blocking;

#[limit_blocking(timout = "1s")]
async fn f() {}

fn main() {}
