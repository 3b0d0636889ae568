use limiter::limit_blocking;

async fn cached(id: String) -> u32 {
    id.len() as u32
}

#[limit_blocking(rate = "1/s", fallback = cached)]
async fn load(id: u64) -> u32 {
    id as u32
}

fn main() {}
