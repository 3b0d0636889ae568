use limiter::limit_blocking;

#[limit_blocking(max_concurrent = "many")]
async fn f() {}

fn main() {}
