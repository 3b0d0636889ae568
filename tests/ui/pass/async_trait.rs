use limiter::{limit_blocking, LimitError};

#[async_trait::async_trait]
pub trait Users {
    async fn name(&self, id: u64) -> Result<String, LimitError>;
    async fn count(&self) -> u64;
}

pub struct Db;

async fn zero(_db: &Db) -> u64 {
    0
}

#[async_trait::async_trait]
impl Users for Db {
    #[limit_blocking(op = "users.name", timeout = "1s", retries = 1, key = id)]
    async fn name(&self, id: u64) -> Result<String, LimitError> {
        Ok(format!("user-{id}"))
    }

    #[limit_blocking(op = "users.count", fallback = zero)]
    async fn count(&self) -> u64 {
        42
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert_eq!(Db.name(1).await.unwrap(), "user-1");
        assert_eq!(Db.count().await, 42);
    });
}
