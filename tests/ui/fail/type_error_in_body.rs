use limiter::limit_blocking;

#[limit_blocking(timeout = "1s")]
async fn count() -> u32 {
    let n = 3;
    "three"
}

fn main() {}
