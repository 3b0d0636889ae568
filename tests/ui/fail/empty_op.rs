use limiter::limit_blocking;

#[limit_blocking(op = " ")]
async fn f() {}

fn main() {}
