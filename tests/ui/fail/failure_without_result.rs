use limiter::{limit_blocking, LimitError};

fn is_failure(_: &LimitError) -> bool {
    true
}

#[limit_blocking(breaker(failure = is_failure))]
async fn load(id: u64) -> u64 {
    id
}

fn main() {}
