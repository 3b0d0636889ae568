use limiter::limit_blocking;

#[limit_blocking(max_concurrent = 0)]
async fn f() {}

fn main() {}
