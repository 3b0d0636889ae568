use limiter::limit_blocking;

#[limit_blocking(rate = "100/min", cost = "items.len()")]
async fn quoted(items: Vec<u8>) -> usize {
    items.len()
}

#[limit_blocking(rate = "100/min", cost = 0)]
async fn zero(items: Vec<u8>) -> usize {
    items.len()
}

#[limit_blocking(rate = "100/min", cost = -3)]
async fn negative(items: Vec<u8>) -> usize {
    items.len()
}

#[limit_blocking(rate = "100/min", cost = 2.5)]
async fn float(items: Vec<u8>) -> usize {
    items.len()
}

#[limit_blocking(rate = "100/min", cost = 5000000000)]
async fn too_large(items: Vec<u8>) -> usize {
    items.len()
}

fn main() {}
