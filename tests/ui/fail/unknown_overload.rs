use limiter::limit_blocking;

#[limit_blocking(queue = 5, overload = "drop_all")]
async fn f() {}

fn main() {}
