use limiter::limit_blocking;

#[limit_blocking(op = "io.read", kind = file_io)]
fn read_config(path: std::path::PathBuf) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

#[limit_blocking(op = "unit")]
async fn touch() {}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert!(read_config("Cargo.toml".into()).await.is_ok());
        assert!(read_config("/no/such/file".into()).await.is_err());
        assert_eq!(touch().await, Ok(()));
    });
}
