use limiter::{limit_blocking, LimitError};

fn is_failure(e: &String) -> bool {
    !e.is_empty()
}

#[limit_blocking(breaker(failure = is_failure))]
async fn load(id: u64) -> Result<u64, LimitError> {
    Ok(id)
}

fn main() {}
