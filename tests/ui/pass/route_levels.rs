#![deny(warnings)]
use limiter::{optimize_route, LimitError};

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: u64,
}

#[optimize_route(level = Basic, name = "GET /health")]
pub async fn health() -> &'static str {
    "ok"
}

#[optimize_route(level = Advanced, name = "POST /orders", rate = "50/s", max_concurrent = 8)]
pub async fn create_order(body: String) -> Result<usize, LimitError> {
    Ok(body.len())
}

#[optimize_route(level = Ultra, name = "GET /users/{id}", key = id, cache_ttl = "500ms", strategy = "cancel")]
pub async fn get_user(id: u64) -> Result<User, LimitError> {
    Ok(User { id })
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(health().await, Ok("ok"));
        assert_eq!(create_order("abc".into()).await, Ok(3));
        assert_eq!(get_user(9).await, Ok(User { id: 9 }));
    });
}
