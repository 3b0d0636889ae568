use limiter::limit_blocking;

#[limit_blocking(fallback = 42)]
async fn load() -> u32 {
    1
}

fn main() {}
