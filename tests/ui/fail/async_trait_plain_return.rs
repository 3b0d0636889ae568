use limiter::limit_blocking;

#[async_trait::async_trait]
trait Users {
    async fn count(&self) -> u64;
}

struct Db;

#[async_trait::async_trait]
impl Users for Db {
    #[limit_blocking(op = "users.count", timeout = "1s")]
    async fn count(&self) -> u64 {
        42
    }
}

fn main() {}
