use limiter::limit_blocking;

#[limit_blocking(rate = "100/min", cost = delta)]
async fn signed(delta: i32) -> i32 {
    delta
}

#[limit_blocking(rate = "100/min", cost = name)]
fn text(name: String) -> usize {
    name.len()
}

#[limit_blocking(rate = "100/min", cost = missing.len())]
async fn unknown(items: Vec<u8>) -> usize {
    items.len()
}

fn main() {}
