use limiter::{limit_blocking, LimitError};

// A plain `T` still becomes `Result<T, LimitError>` after an error in the
// attribute, so the callers' `.await?` type-check: the only error is the
// attribute's.
#[limit_blocking(kind = cpu_intensive, max_concurrent = 0)]
fn checksum(data: Vec<u8>) -> u32 {
    data.iter().map(|b| u32::from(*b)).sum()
}

async fn check(data: Vec<u8>) -> Result<u32, LimitError> {
    let sum = checksum(data).await?;
    Ok(sum + 1)
}

fn main() {
    let _ = check(Vec::new());
}
