use limiter::limit_blocking;

struct Users;

impl Users {
    #[limit_blocking(timeout = "1s")]
    async fn get(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
