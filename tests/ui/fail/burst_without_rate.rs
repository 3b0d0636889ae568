use limiter::limit_blocking;

#[limit_blocking(burst = 10)]
async fn f() {}

fn main() {}
