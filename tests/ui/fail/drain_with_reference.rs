use limiter::limit_blocking;

#[limit_blocking(timeout = "1s", strategy = "drain")]
async fn f(name: &str) -> usize {
    name.len()
}

fn main() {}
