use limiter::limit_blocking;

#[limit_blocking(deny_blocking, allow_blocking)]
async fn f() {}

fn main() {}
