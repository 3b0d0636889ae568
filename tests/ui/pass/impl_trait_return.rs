use limiter::limit_blocking;

#[limit_blocking(op = "numbers")]
async fn numbers(n: u32) -> impl Iterator<Item = u32> + Send {
    0..n
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sum: u32 = rt.block_on(numbers(4)).unwrap().sum();
    assert_eq!(sum, 6);
}
