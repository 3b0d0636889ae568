use limiter::{limit_blocking, LimitError};

#[derive(Debug)]
pub enum ReadError {
    Limited(LimitError),
}

impl From<LimitError> for ReadError {
    fn from(e: LimitError) -> Self {
        ReadError::Limited(e)
    }
}

// The bad `timeout` is the only error: the function is still expanded (with
// the default settings) into an `async fn`, so its callers' `.await?`
// type-check.
#[limit_blocking(kind = file_io, timeout = "2x")]
fn read_len(path: String) -> Result<usize, ReadError> {
    Ok(path.len())
}

async fn total(paths: Vec<String>) -> Result<usize, ReadError> {
    let mut sum = 0;
    for path in paths {
        sum += read_len(path).await?;
    }
    Ok(sum)
}

fn main() {
    let _ = total(Vec::new());
}
