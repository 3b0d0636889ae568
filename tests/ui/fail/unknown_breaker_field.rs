use limiter::limit_blocking;

#[limit_blocking(breaker(failure_rat = 0.5))]
async fn f() {}

fn main() {}
