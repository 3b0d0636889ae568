use limiter::limit_blocking;

#[limit_blocking(timeout = "1s")]
struct S;

fn main() {}
