use limiter::{limit_blocking, LimitError};

#[limit_blocking(op = "cancel", timeout = "1s", strategy = "cancel")]
async fn cancel() -> u8 {
    1
}

#[limit_blocking(op = "background", timeout = "1s", strategy = "background")]
async fn background(n: u8) -> Result<u8, LimitError> {
    Ok(n)
}

#[limit_blocking(op = "cache", timeout = "1s", strategy = "cache_fallback", key = city)]
async fn cache(city: String) -> String {
    city
}

#[limit_blocking(op = "blocking_background", timeout = "1s", strategy = "background")]
fn blocking_background(n: u8) -> u8 {
    n
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(cancel().await, Ok(1));
        assert_eq!(background(2).await, Ok(2));
        assert_eq!(cache("x".into()).await, Ok("x".to_string()));
        assert_eq!(blocking_background(3).await, Ok(3));
    });
}
