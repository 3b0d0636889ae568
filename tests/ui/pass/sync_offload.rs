use limiter::limit_blocking;

#[limit_blocking(op = "hash", kind = cpu_intensive, timeout = "5s")]
fn hash(data: Vec<u8>) -> u64 {
    data.iter().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(*b))
}

#[limit_blocking(op = "read", kind = file_io, retries = 1)]
fn read(path: String) -> std::io::Result<usize> {
    std::fs::read(path).map(|b| b.len())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert!(hash(vec![1, 2, 3]).await.is_ok());
        assert!(read("Cargo.toml".into()).await.is_ok());
    });
}
