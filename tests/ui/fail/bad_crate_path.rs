use limiter::limit_blocking;

#[limit_blocking(crate = "not a path")]
async fn f() {}

fn main() {}
