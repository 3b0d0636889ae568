use limiter::limit_blocking;

#[limit_blocking(rate = "10/s", burst = 10, algorithm = "fixed_window")]
async fn f() {}

fn main() {}
