use limiter::limit_blocking;

#[limit_blocking(breaker(failure_rate = 1.5))]
async fn f() {}

fn main() {}
